import gzip
import logging
import re

import nibabel as nib
import numpy as np
import pytest
import tifffile
from PIL import Image

from tcupgan.data import CubeStore, export_cube, ingest_brats, ingest_images, ingest_tiff
from tcupgan.data.ingest import BRATS_MODALITIES
from tcupgan.errors import InputError, MissingModalityError, StoreError
from tests.conftest import shared, snapshot

AFFINE = np.array([[-1.0, 0, 0, 90], [0, -1.2, 0, 126], [0, 0, 1.5, -72], [0, 0, 0, 1]])
XYZ = (14, 12, 9)


def write_case(
    root, case="BraTS-GLI-00007-000", names=BRATS_MODALITIES, seg=True, sep="-", dtype=np.int16, seed=0
):
    """A BraTS-style case folder written by nibabel, with distinct voxels per modality."""
    rng = np.random.default_rng(seed)
    folder = root / case
    folder.mkdir(parents=True, exist_ok=True)
    volumes = {}
    for name in names:
        data = rng.integers(0, 2000, XYZ).astype(dtype)
        nib.save(nib.Nifti1Image(data, AFFINE), str(folder / f"{case}{sep}{name}.nii.gz"))
        volumes[name] = data
    if seg:
        labels = rng.choice([0, 0, 0, 1, 2, 3], XYZ).astype(np.uint8)
        nib.save(nib.Nifti1Image(labels, AFFINE), str(folder / f"{case}{sep}seg.nii.gz"))
        volumes["seg"] = labels
    return folder, volumes


def test_brats_ingest_layout_and_round_trip(tmp_path):
    _, vols = write_case(tmp_path / "src")
    report = ingest_brats(tmp_path / "src", tmp_path / "b.zarr")
    assert report.written == ["BraTS-GLI-00007-000"]
    store = CubeStore(tmp_path / "b.zarr")
    assert store.task == "brats" and store.channel_names == list(BRATS_MODALITIES)
    cube = store["BraTS-GLI-00007-000"]
    assert cube.shape == (4, 9, 12, 14)  # (C, z, y, x)
    np.testing.assert_array_equal(cube.image[1], vols["t1n"].transpose(2, 1, 0))
    np.testing.assert_array_equal(cube.label[...], vols["seg"].transpose(2, 1, 0))
    assert cube.attrs["spacing"] == [1.5, 1.2, 1.0]
    for modality in ("t2f", "seg"):
        out = export_cube(
            tmp_path / "b.zarr",
            cube.name,
            tmp_path / f"{modality}.nii.gz",
            what="label" if modality == "seg" else "image",
            channel=None if modality == "seg" else modality,
        )
        back = nib.load(str(out))
        np.testing.assert_array_equal(np.asanyarray(back.dataobj), vols[modality])
        assert back.get_data_dtype() == vols[modality].dtype
        np.testing.assert_allclose(back.affine, AFFINE)


def test_brats_legacy_names_and_label_4(tmp_path, caplog):
    folder, vols = write_case(
        tmp_path / "src", case="BraTS20_Training_001", names=("t1ce", "t1", "t2", "flair"), sep="_"
    )
    seg = vols["seg"].copy()
    seg[seg == 3] = 4
    nib.save(nib.Nifti1Image(seg, AFFINE), str(folder / "BraTS20_Training_001_seg.nii.gz"))
    with caplog.at_level(logging.WARNING):
        ingest_brats(tmp_path / "src", tmp_path / "b.zarr")
    assert "label 4" in caplog.text
    cube = CubeStore(tmp_path / "b.zarr")["BraTS20_Training_001"]
    np.testing.assert_array_equal(cube.image[0], vols["t1ce"].transpose(2, 1, 0))  # t1ce -> t1c, channel 0
    np.testing.assert_array_equal(cube.image[2], vols["flair"].transpose(2, 1, 0))  # flair -> t2f
    assert set(np.unique(cube.label[...])) <= {0, 1, 2, 3} and (cube.label[...] == 3).any()


@pytest.mark.parametrize(
    ("convention", "written", "stored"),
    [
        # 2012-2016: 1 necrosis, 2 edema, 3 non-enhancing tumour (part of the core, like 1), 4 enhancing
        ("2015", [0, 1, 2, 3, 4], [0, 1, 2, 1, 3]),
        ("2017", [0, 1, 2, 4], [0, 1, 2, 3]),  # 2017-2022: 1 NCR/NET, 2 edema, 4 enhancing
        ("2023", [0, 1, 2, 3], [0, 1, 2, 3]),
    ],
)
def test_each_brats_label_convention_is_stored_as_2023s(tmp_path, convention, written, stored):
    folder, vols = write_case(tmp_path / "src")
    rng = np.random.default_rng(1)
    seg = rng.choice(written, XYZ).astype(np.uint8)
    seg.flat[: len(written)] = written  # every value present
    nib.save(nib.Nifti1Image(seg, AFFINE), str(folder / f"{folder.name}-seg.nii.gz"))
    ingest_brats(tmp_path / "src", tmp_path / "b.zarr", labels=convention)
    expected = np.select([seg == w for w in written], stored).transpose(2, 1, 0)
    np.testing.assert_array_equal(CubeStore(tmp_path / "b.zarr")[folder.name].label[...], expected)


@pytest.mark.parametrize(
    ("convention", "written", "says"),
    [
        ("2023", [0, 1, 2, 4], "[4] are not BraTS 2023 labels"),
        ("2017", [0, 1, 2, 3], "[3] are not BraTS 2017 labels"),
        ("auto", [0, 1, 2, 3, 4], "--labels 2015"),  # 3 and 4 together: 2012-2016, said aloud
    ],
)
def test_labels_that_do_not_fit_the_named_convention_are_refused_and_nothing_written(
    tmp_path, convention, written, says
):
    folder, _ = write_case(tmp_path / "src")
    seg = np.resize(np.array(written, np.uint8), XYZ)
    nib.save(nib.Nifti1Image(seg, AFFINE), str(folder / f"{folder.name}-seg.nii.gz"))
    with pytest.raises(InputError, match=re.escape(says)):
        ingest_brats(tmp_path / "src", tmp_path / "b.zarr", labels=convention)
    assert not (tmp_path / "b.zarr").exists() or not CubeStore(tmp_path / "b.zarr").names()


def test_brats_missing_modality(tmp_path):
    write_case(tmp_path / "src", names=("t1c", "t1n", "t2w"))
    with pytest.raises(MissingModalityError, match=r"BraTS-GLI-00007-000.*t2f.*--allow-missing"):
        ingest_brats(tmp_path / "src", tmp_path / "b.zarr")
    assert not (tmp_path / "b.zarr").exists()
    ingest_brats(tmp_path / "src", tmp_path / "b.zarr", allow_missing=True)
    cube = CubeStore(tmp_path / "b.zarr")["BraTS-GLI-00007-000"]
    assert cube.attrs["missing_channels"] == ["t2f"] and not cube.image[2].any()


def _bad_sources(tmp_path):
    """(description, folder, expected message) for each kind of bad BraTS input."""
    cases = []
    folder, _ = write_case(tmp_path / "nan", dtype=np.float32)
    data = nib.load(str(folder / f"{folder.name}-t1c.nii.gz")).get_fdata().astype(np.float32)
    data[3, 3, 3] = np.nan
    nib.save(nib.Nifti1Image(data, AFFINE), str(folder / f"{folder.name}-t1c.nii.gz"))
    cases.append((tmp_path / "nan", "NaN"))

    folder, vols = write_case(tmp_path / "labels")
    seg = vols["seg"].copy()
    seg[0, 0, 0] = 7
    nib.save(nib.Nifti1Image(seg, AFFINE), str(folder / f"{folder.name}-seg.nii.gz"))
    cases.append((tmp_path / "labels", r"values \[7\]"))

    folder, _ = write_case(tmp_path / "shape")
    nib.save(
        nib.Nifti1Image(np.zeros((14, 12, 8), np.uint8), AFFINE), str(folder / f"{folder.name}-seg.nii.gz")
    )
    cases.append((tmp_path / "shape", "shape"))

    folder, _ = write_case(tmp_path / "truncated")
    path = folder / f"{folder.name}-t2w.nii.gz"
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    cases.append((tmp_path / "truncated", "truncated"))

    folder, _ = write_case(tmp_path / "registration")
    img = nib.load(str(folder / f"{folder.name}-t2w.nii.gz"))
    nib.save(
        nib.Nifti1Image(np.asanyarray(img.dataobj), AFFINE * 2), str(folder / f"{folder.name}-t2w.nii.gz")
    )
    cases.append((tmp_path / "registration", "co-registered"))
    return cases


def test_bad_brats_inputs_leave_existing_store_unchanged(tmp_path):
    write_case(tmp_path / "good", case="BraTS-GLI-00001-000")
    ingest_brats(tmp_path / "good", tmp_path / "b.zarr")
    before = snapshot(tmp_path / "b.zarr")
    for src, message in _bad_sources(tmp_path):
        with pytest.raises(InputError, match=message):
            ingest_brats(src, tmp_path / "b.zarr")
        assert snapshot(tmp_path / "b.zarr") == before, src
        with pytest.raises(InputError):
            ingest_brats(src, tmp_path / "fresh.zarr")
        assert not (tmp_path / "fresh.zarr").exists()


def test_reingest_is_idempotent(tmp_path):
    write_case(tmp_path / "src")
    ingest_brats(tmp_path / "src", tmp_path / "b.zarr")
    before = snapshot(tmp_path / "b.zarr")
    report = ingest_brats(tmp_path / "src", tmp_path / "b.zarr")
    assert report.written == [] and report.skipped == ["BraTS-GLI-00007-000"]
    assert snapshot(tmp_path / "b.zarr") == before
    report = ingest_brats(tmp_path / "src", tmp_path / "b.zarr", overwrite=True)
    assert report.written == ["BraTS-GLI-00007-000"] and len(CubeStore(tmp_path / "b.zarr")) == 1


def test_tiff_stack_and_slice_folder(tmp_path):
    rng = np.random.default_rng(0)
    stack = rng.integers(0, 255, (7, 30, 40)).astype(np.uint8)
    labels = np.where(rng.random((7, 30, 40)) > 0.8, 255, 0).astype(np.uint8)
    tifffile.imwrite(tmp_path / "cell.tif", stack)
    tifffile.imwrite(tmp_path / "cell_label.tif", labels)
    slices = tmp_path / "cell2"
    slices.mkdir()
    for z in range(7):  # slice_10 must sort after slice_9
        Image.fromarray(stack[z]).save(slices / f"slice_{z * 5}.png")
    report = ingest_tiff(
        [tmp_path / "cell.tif", slices],
        tmp_path / "em.zarr",
        labels=[tmp_path / "cell_label.tif", tmp_path / "cell_label.tif"],
        spacing=(50, 5, 5),
    )
    assert report.written == ["cell", "cell2"]
    store = CubeStore(tmp_path / "em.zarr")
    for name in ("cell", "cell2"):
        np.testing.assert_array_equal(store[name].image[0], stack)
        np.testing.assert_array_equal(store[name].label[...], labels > 0)
        assert store[name].attrs["spacing"] == [50, 5, 5]
    out = export_cube(tmp_path / "em.zarr", "cell", tmp_path / "back.tif")
    back = tifffile.imread(out)
    assert back.dtype == np.uint8
    np.testing.assert_array_equal(back, stack)
    nii = nib.load(str(export_cube(tmp_path / "em.zarr", "cell", tmp_path / "cell.nii.gz")))
    np.testing.assert_allclose(nib.affines.voxel_sizes(nii.affine), [5, 5, 50])


def test_tiff_bad_inputs(tmp_path):
    tifffile.imwrite(tmp_path / "a.tif", np.zeros((4, 10, 10), np.uint8), photometric="minisblack")
    tifffile.imwrite(tmp_path / "short.tif", np.zeros((3, 10, 10), np.uint8), photometric="minisblack")
    tifffile.imwrite(tmp_path / "float.tif", np.full((4, 10, 10), 0.5, np.float32), photometric="minisblack")
    with pytest.raises(InputError, match="label shape"):
        ingest_tiff([tmp_path / "a.tif"], tmp_path / "s.zarr", labels=[tmp_path / "short.tif"])
    with pytest.raises(InputError, match="non-integer"):
        ingest_tiff([tmp_path / "a.tif"], tmp_path / "s.zarr", labels=[tmp_path / "float.tif"])
    with pytest.raises(InputError, match="one label per image"):
        ingest_tiff([tmp_path / "a.tif"], tmp_path / "s.zarr", labels=[])
    with pytest.raises(InputError, match="does not exist"):
        ingest_tiff([tmp_path / "nope.tif"], tmp_path / "s.zarr")
    (tmp_path / "broken.tif").write_bytes(b"II*\x00garbage")
    with pytest.raises(InputError, match="cannot read"):
        ingest_tiff([tmp_path / "broken.tif"], tmp_path / "s.zarr")
    assert not (tmp_path / "s.zarr").exists()


def test_images_rgb_with_masks_and_png_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 255, (24, 30, 3)).astype(np.uint8)
    Image.fromarray(rgb).save(tmp_path / "g1.png")
    Image.fromarray(rgb).save(tmp_path / "g2.jpg", quality=95)
    mask = np.zeros((24, 30), np.uint8)
    mask[5:10, 6:20] = 255
    Image.fromarray(mask).save(tmp_path / "m.png")
    ingest_images(
        [tmp_path / "g1.png", tmp_path / "g2.jpg"],
        tmp_path / "i.zarr",
        masks=[tmp_path / "m.png", tmp_path / "m.png"],
    )
    store = CubeStore(tmp_path / "i.zarr")
    assert store.channel_names == ["red", "green", "blue"]
    assert store["g1"].shape == (3, 1, 24, 30) and store["g1"].label[...].sum() == 5 * 14
    np.testing.assert_array_equal(store["g1"].image[:, 0].transpose(1, 2, 0), rgb)
    back = np.asarray(Image.open(export_cube(tmp_path / "i.zarr", "g1", tmp_path / "g1_back.png")))
    np.testing.assert_array_equal(back, rgb)
    Image.fromarray(rgb[..., 0]).save(tmp_path / "grey.png")
    with pytest.raises(StoreError, match=r"holds .*'red', 'green', 'blue'"):
        ingest_images([tmp_path / "grey.png"], tmp_path / "i.zarr")


def test_truncated_gzip_nifti_message(tmp_path):
    path = tmp_path / "x.nii.gz"
    path.write_bytes(gzip.compress(b"\x00" * 100))
    from tcupgan.data.readers import read_nifti

    with pytest.raises(InputError, match="truncated"):
        read_nifti(path)


def test_real_brats_2023_case(tmp_path):
    src = shared("brats2023-sample")
    ingest_brats(src, tmp_path / "real.zarr")
    store = CubeStore(tmp_path / "real.zarr")
    cube = store["BraTS-GLI-00001-000"]
    assert cube.shape == (4, 155, 240, 240) and cube.label is None
    t1c = nib.load(str(src / "BraTS-GLI-00001-000-t1c.nii.gz"))
    np.testing.assert_array_equal(cube.image[0, 77], np.asanyarray(t1c.dataobj)[:, :, 77].T)
    assert cube.attrs["spacing"] == [1.0, 1.0, 1.0]


def test_real_floating_forests_tiles_with_box_labels_ingest_and_predict(tmp_path):
    """The real Landsat tiles with their weak kelp boxes: masks are the filled boxes, re-running skips,
    and a 3-band model predicts them (untrained: this checks the path, not the skill)."""
    import csv

    from tcupgan.inference import predict_store
    from tcupgan.training import TCuPGAN
    from tcupgan.training.module import write_checkpoint

    folder = shared("floating-forests-sample")
    tiles = sorted(folder.glob("*.jpg"))[:4]
    boxes = folder / "kelp_boxes.csv"
    with open(boxes, newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["image"] in {t.stem for t in tiles}]
    subset = tmp_path / "boxes.csv"
    with open(subset, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    store_path = tmp_path / "ff.zarr"
    report = ingest_images(tiles, store_path, boxes=subset, class_names=["kelp"], split="test")
    assert len(report.written) == 4
    store = CubeStore(store_path)
    cube = store[tiles[0].stem]
    assert cube.shape == (3, 1, 484, 532) and cube.attrs["sources"]["label"] == str(subset)
    expected = np.zeros((484, 532), bool)
    for r in rows:
        if r["image"] == tiles[0].stem:
            expected[int(r["y_min"]) : int(r["y_max"]) + 1, int(r["x_min"]) : int(r["x_max"]) + 1] = True
    assert expected.any()
    np.testing.assert_array_equal(cube.label[0] > 0, expected)
    again = ingest_images(tiles, store_path, boxes=subset, class_names=["kelp"])
    assert again.skipped == [t.stem for t in tiles]

    model = TCuPGAN(3, 1, ["kelp"], widths=(4, 8), disc_width=4, disc_layers=2, val_roi=(1, 128, 128))
    ckpt = write_checkpoint(model, tmp_path / "kelp.ckpt")
    assert len(predict_store(ckpt, store_path).predicted) == 4
    assert store[tiles[0].stem]["prediction"].shape == (1, 484, 532)


def test_box_csv_problems_are_clear_and_write_nothing(tmp_path):
    tile = sorted(shared("floating-forests-sample").glob("*.jpg"))[0]
    cases = {
        "image,x0,x1\n": "needs the columns",
        f"image,x_min,x_max,y_min,y_max\n{tile.stem},a,5,0,5\n": "must be numbers",
        f"image,x_min,x_max,y_min,y_max\n{tile.stem},9,5,0,5\n": "x_min <= x_max",
        f"image,x_min,x_max,y_min,y_max\n{tile.stem},900,905,0,5\n": "outside the 532x484 image",
        "image,x_min,x_max,y_min,y_max\nnot-a-tile,1,5,0,5\n": "images not given",
    }
    for text, message in cases.items():
        (tmp_path / "b.csv").write_text(text)
        with pytest.raises(InputError, match=message):
            ingest_images([tile], tmp_path / "ff.zarr", boxes=tmp_path / "b.csv")
        assert not (tmp_path / "ff.zarr").exists()


def test_two_files_that_map_to_one_cube_name_are_refused_not_skipped(tmp_path):
    """``tile ü.png`` and, in a later run, ``tile é.png`` both become cube ``tile__``: the second is another
    file, not the cube already present, so ingest refuses it in one line and writes nothing; the same
    file again is still skipped."""
    store = tmp_path / "tiles.zarr"
    rng = np.random.default_rng(0)
    for name in ("tile ü.png", "tile é.png"):
        Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(tmp_path / name)
    assert ingest_images([tmp_path / "tile ü.png"], store).written == ["tile__"]
    before = snapshot(store)
    with pytest.raises(InputError, match="already holds .*tile ü.png.*rename the file"):
        ingest_images([tmp_path / "tile é.png"], store)
    assert snapshot(store) == before
    assert ingest_images([tmp_path / "tile ü.png"], store).skipped == ["tile__"]
    assert ingest_images([tmp_path / "tile é.png"], store, names=["tile_e"]).written == ["tile_e"]


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_a_header_claiming_more_voxels_than_the_file_holds_is_refused_before_allocating(tmp_path, suffix):
    """A 1 KB file whose header claims a 2 GiB volume: one line, and no gigabytes allocated first."""
    import tracemalloc

    from tcupgan.data.readers import read_nifti

    header = nib.Nifti1Header()
    header.set_data_shape((1024, 1024, 512))
    header.set_data_dtype(np.float32)
    header["vox_offset"] = 352
    raw = header.binaryblock + b"\x00" * 4 + b"\x00" * 1000
    path = tmp_path / f"claims{suffix}"
    path.write_bytes(gzip.compress(raw) if suffix.endswith(".gz") else raw)
    tracemalloc.start()
    try:
        with pytest.raises(InputError, match=r"corrupt: its header claims 2,147,4[0-9,]+ bytes of voxels"):
            read_nifti(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 50 * 2**20
    folder, _ = write_case(tmp_path / "cases")  # one modality of a case so crafted: refused before writing
    (folder / "BraTS-GLI-00007-000-t2f.nii.gz").write_bytes(gzip.compress(raw))
    with pytest.raises(InputError, match="header claims"):
        ingest_brats(tmp_path / "cases", tmp_path / "s.zarr")
    assert not (tmp_path / "s.zarr").exists()
