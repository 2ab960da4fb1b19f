"""nnU-Net v2 / Decathlon / plain NIfTI layouts, written here by nibabel, in and out of a store."""

import json

import nibabel as nib
import numpy as np
import pytest

from tcupgan.cli.main import main
from tcupgan.data import CubeStore
from tcupgan.data.nnunet import export_nnunet, ingest_nifti, ingest_nnunet
from tcupgan.errors import InputError

AFFINE = np.diag([0.8, 0.8, 2.5, 1.0])
XYZ = (12, 10, 6)


def save(array: np.ndarray, path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(array, AFFINE), str(path))


def nnunet_v2(root, cases=("prostate_001", "prostate_002"), channels=("T2", "ADC"), seed=0) -> dict:
    """A two-channel, two-class nnU-Net v2 raw dataset plus one unlabelled test case; returns the arrays."""
    rng = np.random.default_rng(seed)
    written = {}
    for case in (*cases, "prostate_900"):
        folder = "imagesTs" if case == "prostate_900" else "imagesTr"
        images = [rng.normal(size=XYZ).astype(np.float32) for _ in channels]
        for c, image in enumerate(images):
            save(image, root / folder / f"{case}_{c:04d}.nii.gz")
        label = rng.choice([0, 0, 1, 2], XYZ).astype(np.uint8)
        if folder == "imagesTr":
            save(label, root / "labelsTr" / f"{case}.nii.gz")
        written[case] = (images, label)
    meta = {"channel_names": {str(i): n for i, n in enumerate(channels)}, "numTraining": len(cases),
            "labels": {"background": 0, "PZ": 1, "TZ": 2}, "file_ending": ".nii.gz"}  # fmt: skip
    (root / "dataset.json").write_text(json.dumps(meta))
    return written


def test_an_nnunet_dataset_goes_in_and_comes_back_out_unchanged(tmp_path):
    written = nnunet_v2(tmp_path / "Dataset005_Prostate")
    assert (
        main(["ingest", "nnunet", str(tmp_path / "Dataset005_Prostate"), "--store", str(tmp_path / "p.zarr")])
        == 0
    )
    store = CubeStore(tmp_path / "p.zarr")
    assert (
        store.task == "multilabel"
        and store.class_names == ["PZ", "TZ"]
        and store.channel_names == ["T2", "ADC"]
    )
    images, label = written["prostate_001"]
    cube = store["prostate_001"]
    np.testing.assert_allclose(cube.image[1], images[1].transpose(2, 1, 0))  # (x, y, z) -> (z, y, x)
    np.testing.assert_array_equal(
        cube.label[...], np.choose(label, [0, 1, 2]).transpose(2, 1, 0)
    )  # bits 1, 2
    assert store["prostate_900"].label is None and store["prostate_900"].split == "test"
    assert cube.attrs["spacing"] == [2.5, 0.8, 0.8]

    out = export_nnunet(tmp_path / "p.zarr", tmp_path / "raw", name="Dataset501_Again")
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["labels"] == {"background": 0, "PZ": 1, "TZ": 2} and meta["numTraining"] == 2
    back = nib.load(str(out / "labelsTr" / "prostate_001.nii.gz"))
    np.testing.assert_array_equal(np.asarray(back.dataobj), label)  # the exclusive values 0..2 again
    np.testing.assert_allclose(back.affine, AFFINE)
    assert (out / "imagesTs" / "prostate_900_0001.nii.gz").is_file()
    again = ingest_nnunet(out, tmp_path / "again.zarr")
    assert sorted(again.written) == ["prostate_001", "prostate_002", "prostate_900"]
    np.testing.assert_array_equal(
        CubeStore(tmp_path / "again.zarr")["prostate_001"].label[...], cube.label[...]
    )


def test_a_decathlon_task_with_4d_images(tmp_path):
    root = tmp_path / "Task04_Hippocampus"
    image = np.random.default_rng(0).normal(size=(*XYZ, 3)).astype(np.float32)
    label = (image[..., 0] > 0.5).astype(np.uint8)
    save(image, root / "imagesTr" / "hippo_01.nii.gz")
    save(label, root / "labelsTr" / "hippo_01.nii.gz")
    meta = {"modality": {"0": "FLAIR", "1": "T1w", "2": "T2w"},
            "labels": {"0": "background", "1": "hippocampus"},
            "training": [{"image": "./imagesTr/hippo_01.nii.gz", "label": "./labelsTr/hippo_01.nii.gz"}],
            "test": []}  # fmt: skip
    (root / "dataset.json").write_text(json.dumps(meta))
    ingest_nnunet(root, tmp_path / "h.zarr")
    store = CubeStore(tmp_path / "h.zarr")
    assert store.task == "binary" and store.channel_names == ["FLAIR", "T1w", "T2w"]
    np.testing.assert_allclose(store["hippo_01"].image[2], image[..., 2].transpose(2, 1, 0))
    np.testing.assert_array_equal(store["hippo_01"].label[...], label.transpose(2, 1, 0))


def test_plain_nifti_pairs_by_pattern(tmp_path):
    rng = np.random.default_rng(0)
    for case in ("a", "b"):
        save(rng.normal(size=XYZ).astype(np.float32), tmp_path / "scans" / f"{case}_t2.nii.gz")
        save(rng.integers(0, 2, XYZ).astype(np.uint8), tmp_path / "masks" / f"{case}_mask.nii.gz")
    scans, masks = tmp_path / "scans" / "*_t2.nii.gz", tmp_path / "masks" / "*_mask.nii.gz"
    report = ingest_nifti(str(scans), tmp_path / "s.zarr", labels=str(masks), class_names=["lesion"])
    assert report.written == ["a", "b"]
    mask = np.asarray(nib.load(str(tmp_path / "masks" / "b_mask.nii.gz")).dataobj)
    np.testing.assert_array_equal(CubeStore(tmp_path / "s.zarr")["b"].label[...], mask.transpose(2, 1, 0))


def test_bad_layouts_are_one_line_and_write_nothing(tmp_path):
    root = tmp_path / "Dataset006_Bad"
    nnunet_v2(root)
    meta = json.loads((root / "dataset.json").read_text())
    store = tmp_path / "bad.zarr"
    (root / "dataset.json").write_text(json.dumps({k: v for k, v in meta.items() if k != "file_ending"}))
    with pytest.raises(InputError, match="file_ending"):
        ingest_nnunet(root, store)
    (root / "dataset.json").write_text(json.dumps({**meta, "channel_names": {"0": "T2"}}))  # 2 files per case
    with pytest.raises(InputError, match="names 1 channels"):
        ingest_nnunet(root, store)
    (root / "dataset.json").write_text(json.dumps(meta))
    save(np.zeros(XYZ, np.uint8), root / "labelsTr" / "prostate_404.nii.gz")
    with pytest.raises(InputError, match="labels without images.*prostate_404"):
        ingest_nnunet(root, store)
    (root / "labelsTr" / "prostate_404.nii.gz").unlink()
    (root / "dataset.json").unlink()
    with pytest.raises(InputError, match="no dataset.json"):
        ingest_nnunet(root, store)
    assert not store.exists()
