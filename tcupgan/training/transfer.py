"""Start a model from another project's weights: load what fits, adapt the input stem, list the rest.

A new project rarely has the old one's channels or classes (liver EM, 1 channel → kelp tiles, 3 bands;
one class → two). Tensors whose names and shapes match are copied; the first convolution of the
generator, when only its input-channel count differs, is adapted (the mean filter over old channels,
repeated for the new ones and rescaled, so a constant image gives the same response); everything else
(e.g. the output head for a new class count) keeps its fresh initialisation. 3D → 2D needs nothing
special: every layer works per slice, and a 2D image is a cube of depth 1.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from tcupgan.errors import ConfigError

log = logging.getLogger(__name__)

__all__ = ["TransferReport", "read_weights", "transfer_weights", "freeze", "STEM", "FREEZE_CHOICES"]

STEM = "generator.encoders.0.input_convs.0.weight"
FREEZE_CHOICES = ("none", "encoder", "all-but-head", "generator")


@dataclass
class TransferReport:
    loaded: list[str] = field(default_factory=list)
    adapted: list[str] = field(default_factory=list)
    fresh: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return (
            f"{len(self.loaded)} tensors loaded, adapted: {self.adapted or 'none'}, "
            f"kept fresh: {self.fresh or 'none'}"
        )


def uncompiled(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Checkpoint keys without ``_orig_mod.``: until 2026-11-23, ``--model.compile true`` wrapped the
    generator in ``torch.compile`` and saved its tensors as ``generator._orig_mod.*``, which no model
    built here has (it now compiles in place and keeps the plain names)."""
    return {key.replace("_orig_mod.", ""): value for key, value in state.items()}


def read_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """Weights from a tcupgan training checkpoint, or a plain ``TCuPGenerator`` state dict (a user's own
    pretrained encoder); keys come back prefixed ``generator.`` / ``discriminator.``."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"pretrained weights '{path}' do not exist")
    try:  # weights only: a crafted checkpoint's pickled objects never run
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch.load raises many types for files that are not checkpoints
        raise ConfigError(
            f"'{path}' is not a PyTorch checkpoint of tensors that loads safely ({err.__class__.__name__}); "
            "give a tcupgan training checkpoint or a TCuPGenerator state dict"
        ) from err
    state = raw.get("state_dict", raw) if isinstance(raw, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ConfigError(f"'{path}' holds no state dict of tensors")
    state = uncompiled(state)
    if not any(k.startswith("generator.") for k in state):
        if any(k.startswith("encoders.") for k in state):  # a bare generator state dict
            state = {f"generator.{k}": v for k, v in state.items()}
        else:
            first = ", ".join(list(state)[:3])
            raise ConfigError(
                f"'{path}' holds no TCuP-GAN generator weights (first keys: {first}); give a tcupgan "
                "training checkpoint or a TCuPGenerator state dict (not a discriminator's or another net's)"
            )
    return state


def transfer_weights(
    model: nn.Module, path: str | Path, *, reset_discriminator: bool = False
) -> TransferReport:
    """Load ``path`` into ``model`` (a :class:`TCuPGAN`) as far as it fits; returns what happened."""
    source = read_weights(path)
    own = model.state_dict()
    report = TransferReport()
    merged = {}
    for name, tensor in own.items():
        old = source.get(name)
        if old is None or (reset_discriminator and name.startswith("discriminator.")):
            report.fresh.append(name)
            merged[name] = tensor
        elif old.shape == tensor.shape:
            report.loaded.append(name)
            merged[name] = old
        elif name == STEM and old.shape[0] == tensor.shape[0] and old.shape[2:] == tensor.shape[2:]:
            c_old, c_new = old.shape[1], tensor.shape[1]
            merged[name] = old.mean(dim=1, keepdim=True).expand_as(tensor) * (c_old / c_new)
            report.adapted.append(f"{name} ({c_old} → {c_new} input channels)")
        else:
            report.fresh.append(f"{name} {tuple(old.shape)} → {tuple(tensor.shape)}")
            merged[name] = tensor
    model.load_state_dict(merged)
    fixes = _pretrained_generator_settings(source, own)
    if fixes:
        log.warning(
            "'%s' holds a generator built otherwise (the paper's choices, or an older tcupgan's): where "
            "its tensors do not fit, fresh ones train; add %s to fine-tune its own network",
            path,
            " ".join(fixes),
        )
    return report


def _pretrained_generator_settings(
    source: dict[str, torch.Tensor], own: dict[str, torch.Tensor]
) -> list[str]:
    """The ``fit`` arguments that would rebuild the pretrained generator, where its level convolutions or
    its skip merging differ from the model's (e.g. a checkpoint from before these defaults changed)."""
    fixes = []
    if any(".encoder_convs." in n for n in own) and not any(".encoder_convs." in n for n in source):
        fixes.append("--model.level_conv false")
    decoder = "generator.decoders.0.input_convs.0.weight"
    if decoder in source and decoder in own:
        theirs, ours = source[decoder].shape[1], own[decoder].shape[1]
        if theirs == 2 * ours:
            fixes.append("--model.skip_merge concatenate")
        elif 2 * theirs == ours:
            fixes.append("--model.skip_merge add")
    return fixes


def freeze(model: nn.Module, what: str) -> list[str]:
    """Stop gradients to part of the generator: ``encoder`` (its encoder levels: ConvLSTMs and their
    level convolutions), ``all-but-head`` (everything but the output head), ``generator`` (all of it:
    the discriminator then trains alone against the fixed generator) or ``none``. Returns the frozen
    parameter names."""
    if what not in FREEZE_CHOICES:
        raise ConfigError(f"freeze must be one of {FREEZE_CHOICES}, got {what!r}")
    frozen = []
    for name, param in model.named_parameters():
        if not name.startswith("generator.") or what == "none":
            continue
        part = name.split(".")[1]
        if (
            what == "generator"
            or (what == "encoder" and part in ("encoders", "encoder_convs"))
            or (what == "all-but-head" and part != "head")
        ):
            param.requires_grad_(False)
            frozen.append(name)
    return frozen
