"""Cubes are OME-Zarr (NGFF 0.5) images that ome-zarr-py reads; older stores migrate in place."""

import json
import os
import shutil

import numpy as np
import pytest
import tifffile
import zarr

from tcupgan.cli.main import main
from tcupgan.data import CubeStore, ingest_tiff
from tcupgan.errors import StoreError

reader = pytest.importorskip("ome_zarr.reader")
ome_io = pytest.importorskip("ome_zarr.io")


def em_store(tmp_path):
    rng = np.random.default_rng(0)
    tifffile.imwrite(
        tmp_path / "im.tif", rng.integers(0, 255, (4, 32, 32)).astype(np.uint8), metadata={"axes": "ZYX"}
    )
    label = (rng.random((4, 32, 32)) > 0.7).astype(np.uint8)
    tifffile.imwrite(tmp_path / "lb.tif", label, metadata={"axes": "ZYX"})
    store = tmp_path / "em.zarr"
    ingest_tiff([tmp_path / "im.tif"], store, labels=[tmp_path / "lb.tif"], spacing=(50, 5, 5), unit="nm",
                class_names=["mitochondrion"])  # fmt: skip
    CubeStore(store, mode="r+").write_array("im", "prediction", 1 - label)
    return store, label


def ome_nodes(cube_path) -> dict[str, object]:
    return {
        n.zarr.path.rstrip("/").split("/")[-1]: n for n in reader.Reader(ome_io.parse_url(str(cube_path)))()
    }


def test_a_cube_opens_in_ome_zarr_with_its_axes_units_and_label_names(tmp_path):
    store, label = em_store(tmp_path)
    nodes = ome_nodes(store / "im")
    image = nodes["im"].metadata
    assert [a["name"] for a in image["axes"]] == ["c", "z", "y", "x"]
    assert [a.get("unit") for a in image["axes"]] == [None, "nanometer", "nanometer", "nanometer"]
    assert image["coordinateTransformations"][0][0]["scale"] == [1.0, 50.0, 5.0, 5.0]
    assert image["channel_names"] == ["intensity"]
    for key, expected in (("label", label), ("prediction", 1 - label)):
        node = nodes[key]
        assert node.metadata["properties"] == {1: {"class": "mitochondrion"}}
        np.testing.assert_array_equal(np.asarray(node.data[0]), expected)
    cube = CubeStore(store)["im"]
    assert cube.keys() == ["image", "label", "prediction"]  # the NGFF layout stays the store's business


def as_format_1(store) -> None:
    """Rewrite a store as format 1 wrote it: label maps beside the image, no OME metadata."""
    root = zarr.open_group(str(store), mode="r+")
    root.attrs["format_version"] = 1
    for cube in (p for p in store.iterdir() if (p / "zarr.json").is_file()):
        for key in ("label", "prediction", "corrections"):
            if (cube / "labels" / key / "0").exists():
                os.rename(cube / "labels" / key / "0", cube / key)
        shutil.rmtree(cube / "labels", ignore_errors=True)
        group = zarr.open_group(str(cube), mode="r+")
        group.attrs.put({k: v for k, v in group.attrs.items() if k != "ome"})


def test_migrate_upgrades_an_old_store_in_place_and_is_safe_to_rerun(tmp_path, capsys):
    store, label = em_store(tmp_path)
    as_format_1(store)
    with pytest.raises(StoreError, match="tcupgan migrate"):
        CubeStore(store)
    assert main(["migrate", str(store)]) == 0
    assert "1 cube(s) now OME-Zarr, 2 label map(s) moved" in capsys.readouterr().out
    cube = CubeStore(store)["im"]
    np.testing.assert_array_equal(cube.label[...], label)
    np.testing.assert_array_equal(cube["prediction"][...], 1 - label)
    assert ome_nodes(store / "im")["label"].metadata["properties"] == {1: {"class": "mitochondrion"}}
    before = json.loads((store / "im" / "zarr.json").read_text())
    assert main(["migrate", "--store", str(store)]) == 0
    assert "already current" in capsys.readouterr().out
    assert json.loads((store / "im" / "zarr.json").read_text()) == before


def test_an_interrupted_migration_finishes_when_run_again(tmp_path):
    store, label = em_store(tmp_path)
    as_format_1(store)
    cube = store / "im"  # killed after the label moved, before the prediction and the version
    zarr.open_group(str(cube / "labels" / "label"), mode="a")
    os.rename(cube / "label", cube / "labels" / "label" / "0")
    with pytest.raises(StoreError, match="tcupgan migrate"):
        CubeStore(store)
    assert main(["migrate", str(store)]) == 0
    np.testing.assert_array_equal(CubeStore(store)["im"]["prediction"][...], 1 - label)
    np.testing.assert_array_equal(CubeStore(store)["im"].label[...], label)
