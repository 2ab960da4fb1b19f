import numpy as np
import pytest
from scipy import ndimage

from tcupgan.data import CubeStore, make_scene, synthesize
from tcupgan.errors import InputError


@pytest.mark.parametrize("kind", ["fatchecker", "brats", "galaxy", "kelp"])
def test_deterministic_by_seed(kind):
    shape = (8, 48, 48) if kind in ("fatchecker", "brats") else (1, 64, 64)
    a = make_scene(kind, seed=3, index=1, shape=shape)
    b = make_scene(kind, seed=3, index=1, shape=shape)
    c = make_scene(kind, seed=4, index=1, shape=shape)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])
    assert a[0].dtype == np.float32 and a[1].dtype == np.uint8
    assert a[0].shape[1:] == a[1].shape == shape and np.isfinite(a[0]).all()


def _ring(mask, width=3):
    return ndimage.binary_dilation(mask, iterations=width) & ~mask


def test_fatchecker_droplets_are_visible_in_the_image():
    image, label, _, _ = make_scene("fatchecker", 0, 0)
    inside = label.astype(bool)
    assert 0.005 < inside.mean() < 0.2
    contrast = image[0][inside].mean() - image[0][_ring(inside)].mean()
    assert contrast > 0.1
    shifted, slabel, _, _ = make_scene("fatchecker", 0, 0, shift=True)
    s_contrast = shifted[0][slabel > 0].mean() - shifted[0][_ring(slabel > 0)].mean()
    assert s_contrast < contrast  # the shift really makes droplets harder


def test_a_partial_shift_lies_between_the_plain_and_the_shifted_scene(tmp_path):
    def droplets(shift):  # (droplet volume, droplet contrast against a ring around it)
        image, label, _, _ = make_scene("fatchecker", 0, 0, shift=shift, shape=(16, 64, 64))
        inside = label > 0
        return inside.sum(), image[0][inside].mean() - image[0][_ring(inside)].mean()

    np.testing.assert_array_equal(
        make_scene("fatchecker", 0, 0, shift=True)[0], make_scene("fatchecker", 0, 0, shift=1.0)[0]
    )
    (full_volume, full_contrast), (half_volume, half_contrast) = droplets(1.0), droplets(0.5)
    assert half_volume > full_volume and half_contrast > full_contrast  # larger, clearer droplets
    plain = make_scene("fatchecker", 0, 0, shift=0.0, shape=(16, 64, 64))[0]
    assert not np.array_equal(plain, make_scene("fatchecker", 0, 0, shift=0.5, shape=(16, 64, 64))[0])
    synthesize("fatchecker", tmp_path / "f.zarr", n=1, shift=0.5, shape=(8, 32, 32))
    cube = CubeStore(tmp_path / "f.zarr")["fatchecker-shift0.5-s0-0000"]
    assert cube.attrs["synthetic"]["shift"] == 0.5
    with pytest.raises(InputError, match="between 0 and 1"):
        synthesize("fatchecker", tmp_path / "bad.zarr", n=1, shift=1.5)
    assert not (tmp_path / "bad.zarr").exists()  # refused before a store was made


def test_brats_nested_labels_and_modality_contrast():
    image, label, _, _ = make_scene("brats", 0, 0)
    assert set(np.unique(label)) == {0, 1, 2, 3}
    t1c, _, t2f, _ = image
    assert t1c[label == 3].mean() > 1.3 * t1c[label == 2].mean()  # enhancing rim bright on t1c
    assert t2f[label == 2].mean() > 1.3 * t2f[(label == 0) & (t2f > 100)].mean()  # oedema bright on FLAIR
    necrosis = label == 1
    assert (label[_ring(necrosis, 1)] != 0).all()  # the core is wrapped in tumour, never touches brain


def test_galaxy_bar_length_matches_mask_and_votes_are_fractions():
    found_bar = False
    for index in range(8):
        image, label, attrs, arrays = make_scene("galaxy", 0, index)
        votes = arrays["vote_fraction"]
        assert votes.shape == (2, 1, 64 * 2, 64 * 2) and votes.min() >= 0 and votes.max() <= 1
        assert votes[0][label & 1 > 0].mean() > votes[0][label & 1 == 0].mean() + 0.4
        bar = (label[0] & 2) > 0
        if attrs["bar_length_px"] == 0:
            assert not bar.any()
            continue
        found_bar = True
        ys, xs = np.nonzero(bar)
        angle = np.deg2rad(attrs["bar_angle_deg"])
        along = (xs - xs.mean()) * np.cos(angle) + (ys - ys.mean()) * np.sin(angle)
        assert abs((along.max() - along.min() + 1) - attrs["bar_length_px"]) < 2.5
    assert found_bar


def test_kelp_is_brighter_than_water_in_nir():
    image, label, _, _ = make_scene("kelp", 0, 2)
    kelp = label[0] > 0
    assert kelp.any()
    water_near = _ring(kelp, 2) & (image[3, 0] < 0.2)
    assert image[3, 0][kelp].mean() > image[3, 0][water_near].mean() + 0.05


def test_synthesize_store_splits_and_growth(tmp_path):
    report = synthesize("kelp", tmp_path / "k.zarr", n=4, seed=1)
    assert len(report.written) == 4
    store = CubeStore(tmp_path / "k.zarr")
    assert store.names(split="val") == ["kelp-s1-0002"]
    first = store["kelp-s1-0000"].image[...]
    report = synthesize("kelp", tmp_path / "k.zarr", n=6, seed=1)
    assert report.skipped == [f"kelp-s1-{i:04d}" for i in range(4)] and len(report.written) == 2
    np.testing.assert_array_equal(CubeStore(tmp_path / "k.zarr")["kelp-s1-0000"].image[...], first)
    synthesize("kelp", tmp_path / "k.zarr", n=1, seed=1, shift=True)
    assert "kelp-shift-s1-0000" in CubeStore(tmp_path / "k.zarr")
    with pytest.raises(InputError, match="D = 1"):
        synthesize("galaxy", tmp_path / "g.zarr", n=1, shape=(4, 32, 32))
    with pytest.raises(InputError, match="at least 32 x 32 px"):
        synthesize("fatchecker", tmp_path / "f.zarr", n=1, shape=(4, 16, 16))
    assert not CubeStore.exists(tmp_path / "f.zarr") or not CubeStore(tmp_path / "f.zarr").names()
