"""Galaxy Zoo 3D FITS files, written with astropy the way GZ3D lays them out, ingest as vote fractions."""

import numpy as np
import pytest

from tcupgan.data import CubeStore
from tcupgan.errors import InputError
from tcupgan.galaxy.gz3d import ingest_gz3d

fits = pytest.importorskip("astropy.io.fits")


def write_gz3d(path, spiral, bar, total=15, image=None):
    h, w = spiral.shape
    image = np.random.default_rng(0).integers(0, 255, (h, w, 3)).astype(np.uint8) if image is None else image
    hdus = [fits.PrimaryHDU(image), fits.ImageHDU(np.zeros((h, w))), fits.ImageHDU(np.zeros((h, w))),
            fits.ImageHDU(spiral), fits.ImageHDU(bar)]  # fmt: skip
    if total is not None:
        column = fits.Column("GZ_TOTAL_CLASSIFICATIONS", "K", array=[total])
        hdus.append(fits.BinTableHDU.from_columns([column]))
    fits.HDUList(hdus).writeto(path)
    return path


def test_counts_become_fractions_and_majority_labels(tmp_path):
    spiral = np.zeros((40, 50), np.int32)
    spiral[5:20, 5:30] = 12  # 12 of 15 volunteers
    spiral[25:30, 5:10] = 3
    bar = np.zeros((40, 50), np.int32)
    bar[18:22, 10:40] = 9
    path = write_gz3d(tmp_path / "1-12345_127_5679.fits.gz", spiral, bar)
    report = ingest_gz3d([path], tmp_path / "gz3d.zarr")
    store = CubeStore(tmp_path / "gz3d.zarr")
    cube = store[report.written[0]]
    assert report.written == ["1-12345_127_5679"] and store.class_names == ["spiral arm", "bar"]
    votes = cube["vote_fraction"][...]
    assert votes.shape == (2, 1, 40, 50)
    np.testing.assert_allclose(votes[0, 0], spiral / 15, rtol=1e-6)
    np.testing.assert_allclose(votes[1, 0], bar / 15, rtol=1e-6)
    label = cube.label[0]
    np.testing.assert_array_equal((label & 1) > 0, spiral >= 7.5)
    np.testing.assert_array_equal((label & 2) > 0, bar >= 7.5)
    assert cube.image.shape == (3, 1, 40, 50) and cube.attrs["classifications"] == 15
    assert ingest_gz3d([path], tmp_path / "gz3d.zarr").skipped == ["1-12345_127_5679"]


def test_bad_gz3d_files_are_refused_before_anything_is_written(tmp_path):
    ok = np.zeros((20, 20), np.int32)
    too_many = ok.copy()
    too_many[3, 3] = 16
    cases = {
        "votes": (write_gz3d(tmp_path / "a.fits", too_many, ok), "16 votes on a pixel but only 15"),
        "total": (write_gz3d(tmp_path / "b.fits", ok, ok, total=None), "give --volunteers"),
        "shape": (write_gz3d(tmp_path / "c.fits", ok, np.zeros((10, 10), np.int32)), "do not match"),
    }
    truncated = tmp_path / "d.fits"
    truncated.write_bytes((tmp_path / "a.fits").read_bytes()[:3000])
    cases["truncated"] = (truncated, "cannot read|has 1 HDUs")
    cases["few hdus"] = (tmp_path / "e.fits", "has 1 HDUs")
    fits.PrimaryHDU(np.zeros((4, 4))).writeto(cases["few hdus"][0])
    for path, message in cases.values():
        with pytest.raises(InputError, match=message):
            ingest_gz3d([path], tmp_path / "s.zarr")
        assert not (tmp_path / "s.zarr").exists()
    report = ingest_gz3d([tmp_path / "b.fits"], tmp_path / "s.zarr", volunteers=10)
    assert report.written == ["b"]
