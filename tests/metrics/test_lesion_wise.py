"""Lesion-wise metrics on hand-built masks whose answers are known by construction."""

import numpy as np
import pytest

from tcupgan.metrics import lesion_wise, region_lesion_wise

SHAPE = (40, 40, 40)


def box(mask, z, y, x, size=6):
    mask[z : z + size, y : y + size, x : x + size] = True
    return mask


def empty():
    return np.zeros(SHAPE, bool)


def test_perfect_lesion():
    gt = box(empty(), 5, 5, 5)
    s = region_lesion_wise(gt.copy(), gt)
    assert (s.lesion_dice, s.lesion_hd95, s.tp, s.fp, s.fn) == (1.0, 0.0, 1, 0, 0)


def test_missed_lesion_scores_zero_and_374():
    gt = box(box(empty(), 5, 5, 5), 25, 25, 25)
    pred = box(empty(), 5, 5, 5)  # second lesion missed
    s = region_lesion_wise(pred, gt)
    assert s.lesion_dice == pytest.approx(0.5) and s.lesion_hd95 == pytest.approx(374 / 2)
    assert (s.tp, s.fn, s.fp, s.n_gt_lesions) == (1, 1, 0, 2)
    assert s.legacy_dice == pytest.approx(2 * 216 / (216 + 432))


def test_false_positive_blob_adds_to_denominator():
    gt = box(empty(), 5, 5, 5)
    pred = box(box(empty(), 5, 5, 5), 28, 28, 28, size=4)
    s = region_lesion_wise(pred, gt)
    assert s.lesion_dice == pytest.approx(0.5) and s.lesion_hd95 == pytest.approx(374 / 2)
    assert (s.tp, s.fp, s.fn) == (1, 1, 0)


def test_two_gt_lesions_merged_by_dilation():
    gt = box(box(empty(), 10, 10, 5), 10, 10, 13)  # 2-voxel gap between the boxes (x 11..12)
    pred = box(empty(), 10, 10, 5)  # only the first box predicted
    gli = region_lesion_wise(pred, gt, challenge="GLI")  # dilation 3 merges them into one lesion
    assert gli.n_gt_lesions == 1 and gli.fn == 0
    assert gli.lesion_dice == pytest.approx(2 * 216 / (216 + 432))
    far = box(box(empty(), 10, 10, 5), 10, 10, 16)  # 5-voxel gap: MEN's single dilation keeps two lesions
    men = region_lesion_wise(pred, far, challenge="MEN")
    assert men.n_gt_lesions == 2 and men.fn == 1 and men.lesion_dice == pytest.approx(0.5)


def test_tiny_lesion_under_volume_threshold_is_ignored():
    gt = box(box(empty(), 5, 5, 5), 25, 25, 25, size=3)  # 27 voxels = 27 mm^3 <= 50
    pred = box(box(empty(), 5, 5, 5), 25, 25, 25, size=2)  # touching the tiny lesion: not a false positive
    s = region_lesion_wise(pred, gt)
    assert (s.lesion_dice, s.lesion_hd95, s.n_gt_lesions, s.fp) == (1.0, 0.0, 1, 0)
    missed = region_lesion_wise(box(empty(), 5, 5, 5), gt)
    assert missed.lesion_dice == 1.0 and missed.fn == 0
    met = region_lesion_wise(box(empty(), 5, 5, 5), gt, challenge="MET")  # MET counts lesions > 2 mm^3
    assert met.n_gt_lesions == 2 and met.fn == 1


def test_both_empty_is_perfect_and_pred_only_is_all_false_positive():
    s = region_lesion_wise(empty(), empty())
    assert (s.lesion_dice, s.lesion_hd95, s.legacy_dice, s.legacy_hd95) == (1.0, 0.0, 1.0, 0.0)
    fp = region_lesion_wise(box(empty(), 5, 5, 5), empty())
    assert (fp.lesion_dice, fp.lesion_hd95, fp.fp) == (0.0, 374.0, 1)


def test_anisotropic_spacing_changes_volume_threshold_and_hd95_in_mm():
    gt = box(empty(), 10, 10, 10, size=3)  # 27 voxels
    assert region_lesion_wise(gt.copy(), gt, spacing=(1, 1, 1)).n_gt_lesions == 0
    assert region_lesion_wise(gt.copy(), gt, spacing=(2, 1, 1)).n_gt_lesions == 1  # 54 mm^3
    gt = box(empty(), 10, 10, 10)
    shifted = np.roll(gt, 1, axis=0)
    assert region_lesion_wise(shifted, gt, spacing=(1, 1, 1)).lesion_hd95 == pytest.approx(1.0)
    assert region_lesion_wise(shifted, gt, spacing=(2, 1, 1)).lesion_hd95 == pytest.approx(2.0)


def test_brats_regions_from_labels():
    true = np.zeros(SHAPE, np.uint8)
    true[5:20, 5:20, 5:20] = 2  # oedema
    true[8:16, 8:16, 8:16] = 3  # enhancing
    true[10:14, 10:14, 10:14] = 1  # necrosis
    pred = true.copy()
    pred[pred == 1] = 3  # necrosis called enhancing: TC and WT unchanged, ET over-segmented
    scores = lesion_wise(pred, true)
    assert scores["WT"].lesion_dice == 1.0 and scores["TC"].lesion_dice == 1.0
    et_true, et_pred = 8**3 - 4**3, 8**3
    assert scores["ET"].lesion_dice == pytest.approx(2 * et_true / (et_true + et_pred))
    binary = lesion_wise(pred > 0, true > 0, regions={"foreground": (1,)})
    assert list(binary) == ["foreground"] and binary["foreground"].lesion_dice == 1.0
