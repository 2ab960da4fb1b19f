"""``tcupgan evaluate``: score the ``prediction`` of every labelled cube against its ``label``.

Per cube and region: Dice and HD95 from MONAI, and the BraTS 2023 lesion-wise view
(:mod:`tcupgan.metrics.lesion_wise`). Writes ``per_cube.csv``, ``summary.csv``, a per-cube Dice figure
and a montage of the worst cubes' worst slices, and returns the summary rows for printing.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from monai.metrics import compute_dice, compute_hausdorff_distance
from tqdm.auto import tqdm

from tcupgan.data.store import CubeStore
from tcupgan.errors import InputError, StoreError
from tcupgan.metrics.lesion_wise import BRATS_REGIONS, region_lesion_wise
from tcupgan.tables import write_csv

__all__ = ["region_masks", "evaluate_store", "slice_dice", "METRICS"]

METRICS = ("dice", "hd95", "lesionwise")


def region_masks(labels: np.ndarray, task: str, class_names: Sequence[str]) -> dict[str, np.ndarray]:
    """Boolean masks per evaluated region: BraTS WT/TC/ET, the binary foreground, or each multilabel bit."""
    if task == "brats":
        return {name: np.isin(labels, values) for name, values in BRATS_REGIONS.items()}
    if task == "binary":
        return {class_names[0]: labels == 1}
    return {name: ((labels >> k) & 1).astype(bool) for k, name in enumerate(class_names)}


def _monai_scores(pred: np.ndarray, truth: np.ndarray, spacing: Sequence[float]) -> tuple[float, float]:
    p = torch.from_numpy(pred)[None, None].float()
    t = torch.from_numpy(truth)[None, None].float()
    if not truth.any() and not pred.any():
        return 1.0, 0.0
    dice = float(compute_dice(p, t, include_background=True, ignore_empty=False))
    if not truth.any() or not pred.any():
        return dice, float("nan")  # undefined: reported empty, left out of means
    hd = float(
        compute_hausdorff_distance(p, t, include_background=True, percentile=95, spacing=list(spacing))
    )
    return dice, hd


def slice_dice(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Foreground Dice of each slice of two (D, H, W) boolean masks; 1 where both are empty."""
    total = pred.sum(axis=(1, 2)) + truth.sum(axis=(1, 2))
    return np.where(total > 0, 2 * (pred & truth).sum(axis=(1, 2)) / np.maximum(total, 1), 1.0)


def evaluate_store(
    store_path: str | Path,
    out: str | Path,
    *,
    cubes: Sequence[str] | None = None,
    split: str | None = None,
    metrics: Sequence[str] = METRICS,
    challenge: str = "GLI",
) -> list[dict]:
    """Score predictions; returns the summary rows (one per region and metric)."""
    unknown = set(metrics) - set(METRICS)
    if unknown:
        raise InputError(f"unknown metrics {sorted(unknown)}; choose from {METRICS}")
    store = CubeStore(store_path)
    names = list(cubes) if cubes else store.names(split=split)
    scored = [n for n in names if "prediction" in store[n] and store[n].label is not None]
    if not scored:
        raise StoreError(
            f"no cube among {len(names)} selected in '{store.path}' has both a label and a prediction; "
            "run `tcupgan predict` first"
        )
    rows, worst = [], []
    for name in tqdm(scored, desc="evaluate", unit="cube", disable=None):
        cube = store[name]
        spacing = cube.attrs.get("spacing", [1.0, 1.0, 1.0])
        truth_labels, pred_labels = cube.label[...], cube["prediction"][...]
        truth_regions = region_masks(truth_labels, store.task, store.class_names)
        pred_regions = region_masks(pred_labels, store.task, store.class_names)
        for region, truth in truth_regions.items():
            pred = pred_regions[region]
            row = {"cube": name, "region": region}
            if "dice" in metrics or "hd95" in metrics:
                row["dice"], row["hd95"] = _monai_scores(pred, truth, spacing)
            if "lesionwise" in metrics:
                row.update(region_lesion_wise(pred, truth, spacing, challenge).as_dict())
            rows.append(row)
        dice = slice_dice(pred_labels > 0, truth_labels > 0)
        z = int(np.argmin(dice))
        worst.append((float(dice.mean()), name, z))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_csv(rows, out / "per_cube.csv")
    summary = _summarise(rows)
    write_csv(summary, out / "summary.csv")
    _figures(store, rows, sorted(worst)[:4], out)
    return summary


def _summarise(rows: list[dict]) -> list[dict]:
    keys = [k for k in rows[0] if k not in ("cube", "region")]
    summary = []
    for region in dict.fromkeys(r["region"] for r in rows):
        values = [r for r in rows if r["region"] == region]
        for key in keys:
            v = np.array([r[key] for r in values], float)
            v = v[np.isfinite(v)]
            summary.append({
                "region": region, "metric": key, "n": len(v),
                "mean": float(v.mean()) if len(v) else float("nan"),
                "median": float(np.median(v)) if len(v) else float("nan"),
                "std": float(v.std()) if len(v) else float("nan"),
            })  # fmt: skip
    return summary


def _figures(store: CubeStore, rows: list[dict], worst: list[tuple[float, str, int]], out: Path) -> None:
    """Per-cube Dice per region (strip plot) and the worst slices of the worst cubes."""
    from tcupgan.viz import display_image, overlay, plt, save_panels

    key = "dice" if "dice" in rows[0] else "lesion_dice"
    regions = list(dict.fromkeys(r["region"] for r in rows))
    fig, ax = plt.subplots(figsize=(1.6 + 1.2 * len(regions), 3.2))
    for i, region in enumerate(regions):
        v = [r[key] for r in rows if r["region"] == region]
        ax.boxplot(v, positions=[i], widths=0.5, showfliers=False)
        ax.scatter(np.full(len(v), i) + np.random.default_rng(0).uniform(-0.12, 0.12, len(v)), v, s=10)
    ax.set_xticks(range(len(regions)), regions)
    ax.set_ylabel(f"{key} per cube")
    ax.set_ylim(-0.02, 1.02)
    fig.tight_layout()
    fig.savefig(out / "dice_distribution.png", dpi=100)
    plt.close(fig)
    panels = []
    for mean_dice, name, z in worst:
        cube = store[name]
        planes = cube.image[:, z]
        panels.append([
            (f"{name} z={z}", display_image(planes)),
            ("truth", overlay(planes, cube.label[z])),
            (f"prediction (slice-mean Dice {mean_dice:.2f})", overlay(planes, cube["prediction"][z])),
        ])  # fmt: skip
    save_panels(panels, out / "worst_slices.png")
