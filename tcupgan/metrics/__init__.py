"""Metrics: Dice and HD95 per cube and region, BraTS 2023 lesion-wise Dice/HD95 (and the same view for
binary tasks), and the evaluation report with its figures."""

from tcupgan.metrics.lesion_wise import (
    BRATS_REGIONS,
    CHALLENGES,
    RegionScore,
    lesion_wise,
    region_lesion_wise,
)

__all__ = ["BRATS_REGIONS", "CHALLENGES", "RegionScore", "lesion_wise", "region_lesion_wise"]
