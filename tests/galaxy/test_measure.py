import csv

import numpy as np
import pytest
from skimage.draw import polygon

from tcupgan.data import CubeStore, make_scene, synthesize
from tcupgan.galaxy import bar_geometry, measure_galaxy, measure_store


@pytest.mark.parametrize("angle", [0.0, 23.0, 67.0, 135.0])
def test_rotated_bar_of_known_length(angle):
    length, width, centre = 40.0, 6.0, np.array([64.0, 64.0])
    a = np.deg2rad(angle)
    u, v = np.array([np.sin(a), np.cos(a)]), np.array([np.cos(a), -np.sin(a)])  # (row, col) along / across
    corners = [
        centre + su * length / 2 * u + sv * width / 2 * v for su, sv in ((-1, -1), (1, -1), (1, 1), (-1, 1))
    ]
    mask = np.zeros((128, 128))
    rr, cc = polygon([c[0] for c in corners], [c[1] for c in corners], mask.shape)
    mask[rr, cc] = 0.9  # a soft map above the threshold
    mask[5:9, 5:9] = 1.0  # a field star far from the centre is not the bar
    got = bar_geometry(mask)
    assert got["bar_length_px"] == pytest.approx(length, rel=0.05)
    assert min(abs(got["bar_angle_deg"] - angle), 180 - abs(got["bar_angle_deg"] - angle)) < 2
    assert got["bar_axis_ratio"] == pytest.approx(width / length, abs=0.05)


def test_synthetic_galaxies_median_bar_error_under_ten_percent():
    errors = []
    for i in range(30):
        _, label, attrs, _ = make_scene("galaxy", seed=1, index=i)
        if attrs["bar_length_px"]:
            got = measure_galaxy(label[0] & 1, (label[0] & 2) > 0, pixel_scale=0.262)
            errors.append(abs(got["bar_length_px"] / attrs["bar_length_px"] - 1))
            assert got["bar_length_arcsec"] == pytest.approx(got["bar_length_px"] * 0.262)
    assert len(errors) >= 8 and np.median(errors) < 0.05


def test_no_bar_and_catalogue_from_a_store(tmp_path):
    assert bar_geometry(np.zeros((32, 32)))["bar_length_px"] == 0
    synthesize("galaxy", tmp_path / "g.zarr", n=3, seed=0)
    path = measure_store(tmp_path / "g.zarr", tmp_path / "catalogue.csv", what="label")
    with open(path) as f:
        rows = list(csv.DictReader(f))
    assert [r["cube"] for r in rows] == CubeStore(tmp_path / "g.zarr").names()
    assert all(int(r["arm_count"]) >= 1 for r in rows)


def test_cli_measure(tmp_path, capsys):
    from tcupgan.cli.main import main

    synthesize("galaxy", tmp_path / "g.zarr", n=2, seed=0)
    args = ["galaxy", "measure", "--store", str(tmp_path / "g.zarr"), "--out", str(tmp_path / "c.csv")]
    assert main([*args, "--what", "vote_fraction", "--pixel-scale", "0.262"]) == 0
    with open(tmp_path / "c.csv") as f:
        assert "bar_length_arcsec" in next(csv.DictReader(f))
    assert main([*args, "--what", "probability"]) == 2 and "predict first" in capsys.readouterr().err
