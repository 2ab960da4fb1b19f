"""BraTS 2023 lesion-wise Dice and HD95, as the official challenge scorer defines them.

Per region (WT = {1, 2, 3}, TC = {1, 3}, ET = {3}):
  1. Ground-truth (GT) components are 26-connected; GT components that fall in one component of the
     dilated GT (18-connected structure, ``dilation`` iterations) count as one lesion.
  2. GT lesions of volume <= the challenge's minimum (mm^3 at the cube's spacing) are dropped from both
     numerator and denominator.
  3. Each GT lesion is scored against the union of the 26-connected predicted components that touch its
     dilated mask: Dice, and HD95 as DeepMind's surface-element-weighted robust Hausdorff (the
     ``surface-distance`` package the scorer uses). A missed lesion scores Dice 0, HD95 374 mm.
  4. Predicted components that touch no GT lesion are false positives: Dice 0, HD95 374, and each adds
     one to the denominator. Predictions are not size-filtered.
  5. Both empty: Dice 1, HD95 0.
Legacy (whole-region) Dice and HD95 are returned beside them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import surface_distance
from scipy import ndimage

from tcupgan.errors import InputError

__all__ = ["CHALLENGES", "BRATS_REGIONS", "RegionScore", "lesion_wise", "mask_dice", "region_lesion_wise"]

#: challenge → (GT dilation iterations, minimum GT lesion volume in mm^3); from the 2023 scorer.
CHALLENGES: dict[str, tuple[int, float]] = {
    "GLI": (3, 50),
    "SSA": (3, 50),
    "PED": (3, 50),
    "MEN": (1, 50),
    "MET": (1, 2),
}
BRATS_REGIONS: dict[str, tuple[int, ...]] = {"WT": (1, 2, 3), "TC": (1, 3), "ET": (3,)}
MISS_HD95 = 374.0
_CONNECT_26 = np.ones((3, 3, 3), bool)
_DILATE = ndimage.generate_binary_structure(3, 2)


@dataclass
class RegionScore:
    """Scores of one region of one case."""

    lesion_dice: float
    lesion_hd95: float
    legacy_dice: float
    legacy_hd95: float
    tp: int
    fp: int
    fn: int
    n_gt_lesions: int

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def mask_dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice of two boolean masks of any shape; 1 where both are empty."""
    total = a.sum() + b.sum()
    return 1.0 if total == 0 else float(2 * np.logical_and(a, b).sum() / total)


def _hd95(gt: np.ndarray, pred: np.ndarray, spacing: Sequence[float]) -> float:
    """Robust 95% Hausdorff in mm; 0 if both empty, 374 if exactly one is empty (the scorer's rule)."""
    if not gt.any() and not pred.any():
        return 0.0
    if not gt.any() or not pred.any():
        return MISS_HD95
    distances = surface_distance.compute_surface_distances(gt, pred, tuple(float(s) for s in spacing))
    hd = float(surface_distance.compute_robust_hausdorff(distances, 95))
    return MISS_HD95 if not np.isfinite(hd) else hd


def region_lesion_wise(
    pred: np.ndarray, gt: np.ndarray, spacing: Sequence[float] = (1.0, 1.0, 1.0), challenge: str = "GLI"
) -> RegionScore:
    """Lesion-wise scores of one binary region: ``pred`` and ``gt`` boolean (D, H, W), spacing in mm."""
    if challenge not in CHALLENGES:
        raise InputError(f"unknown challenge '{challenge}'; choose one of {sorted(CHALLENGES)}")
    if pred.shape != gt.shape or pred.ndim != 3:
        raise InputError(f"prediction {pred.shape} and truth {gt.shape} must be 3D arrays of one shape")
    dilation, min_volume = CHALLENGES[challenge]
    pred, gt = pred.astype(bool), gt.astype(bool)
    voxel_volume = float(np.prod(spacing))
    legacy = (mask_dice(pred, gt), _hd95(gt, pred, spacing))
    if not gt.any() and not pred.any():
        return RegionScore(1.0, 0.0, *legacy, tp=0, fp=0, fn=0, n_gt_lesions=0)

    pred_cc, _ = ndimage.label(pred, structure=_CONNECT_26)
    dilated_cc, n_dilated = ndimage.label(
        ndimage.binary_dilation(gt, _DILATE, iterations=dilation), _CONNECT_26
    )
    lesions = np.where(gt, dilated_cc, 0)  # GT voxels carry the id of their dilated component: merged lesions

    touched: set[int] = set()
    dices, hds, tp, fn = [], [], 0, 0
    for lesion_id in range(1, n_dilated + 1):
        lesion = lesions == lesion_id
        if not lesion.any():
            continue
        roi = ndimage.binary_dilation(lesion, _DILATE, iterations=dilation)
        hits = np.unique(pred_cc[roi & (pred_cc > 0)])
        touched.update(int(h) for h in hits)
        if lesion.sum() * voxel_volume <= min_volume:
            continue  # too small to count, yet predictions touching it are not false positives
        matched = np.isin(pred_cc, hits) if len(hits) else np.zeros_like(pred)
        dices.append(mask_dice(matched, lesion))
        hds.append(_hd95(lesion, matched, spacing))
        tp, fn = (tp + 1, fn) if len(hits) else (tp, fn + 1)
    fp = len(set(np.unique(pred_cc[pred_cc > 0]).tolist()) - touched)
    denominator = len(dices) + fp
    if denominator == 0:  # only sub-threshold GT lesions and no false positives
        return RegionScore(1.0, 0.0, *legacy, tp=0, fp=0, fn=0, n_gt_lesions=0)
    return RegionScore(
        lesion_dice=sum(dices) / denominator,
        lesion_hd95=(sum(hds) + MISS_HD95 * fp) / denominator,
        legacy_dice=legacy[0],
        legacy_hd95=legacy[1],
        tp=tp,
        fp=fp,
        fn=fn,
        n_gt_lesions=len(dices),
    )


def lesion_wise(
    pred_labels: np.ndarray,
    true_labels: np.ndarray,
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    challenge: str = "GLI",
    regions: Mapping[str, Sequence[int]] | None = None,
) -> dict[str, RegionScore]:
    """BraTS 2023 lesion-wise scores per region from label maps (values 0-3 for BraTS).

    Args:
        pred_labels: predicted labels (D, H, W).
        true_labels: ground-truth labels (D, H, W).
        spacing: voxel size in mm, in the arrays' axis order.
        challenge: GLI, SSA, PED, MEN or MET (sets dilation and minimum lesion volume).
        regions: name → label values; BraTS WT/TC/ET by default. A binary task passes
            ``{"foreground": (1,)}`` for the same lesion-wise view with one region.
    """
    regions = regions or BRATS_REGIONS
    return {
        name: region_lesion_wise(
            np.isin(pred_labels, values), np.isin(true_labels, values), spacing, challenge
        )
        for name, values in regions.items()
    }
