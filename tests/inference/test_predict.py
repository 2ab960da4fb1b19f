import csv
import shutil

import nibabel as nib
import numpy as np
import pytest

from tcupgan.cli.main import main
from tcupgan.data import CubeStore, export_cube, synthesize
from tcupgan.data.export import cube_affine
from tcupgan.data.transforms import content_fraction
from tcupgan.errors import InputError
from tcupgan.inference import hard_labels, predict_store
from tcupgan.inference import predict as predict_mod
from tcupgan.inference import scorers as scorers_mod
from tcupgan.inference.predict import remove_small_components
from tcupgan.training import CubeDataModule, TCuPGAN
from tcupgan.training.plan import cpu_has_bf16
from tests.conftest import SMALL_MODEL, quiet_trainer


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A store with cubes of awkward sizes and a checkpoint of a few real training steps."""
    root = tmp_path_factory.mktemp("predict")
    store = root / "fc.zarr"
    synthesize("fatchecker", store, n=3, seed=0, shape=(10, 50, 45))  # not a multiple of the window
    data = CubeDataModule(str(store), crop_size=(8, 32, 32), batch_size=1, samples_per_epoch=4, num_workers=0)
    # the paper's generator: these tests hold predict's mechanics (windows, blocks, casts) to 1-4/255. After
    # four steps the default's level convolutions' per-slice instance norms (down to 16 x 16 planes here)
    # still swing with where a window sits: blocked against one pass a mean of 6-18/255, bf16 up to 7/255.
    # A real model settles them (real EM membranes, 35 steps: 0.36/255, bf16 0.16/255 mean; studies/real-em)
    model = TCuPGAN(1, 1, ["lipid droplet"], **SMALL_MODEL, level_conv=False)
    trainer = quiet_trainer(root, enable_checkpointing=False, limit_val_batches=0)
    trainer.fit(model, data)
    ckpt = root / "model.ckpt"
    trainer.save_checkpoint(ckpt)
    return store, ckpt


def test_predict_writes_outputs_for_odd_sizes(trained):
    store_path, ckpt = trained
    report = predict_store(ckpt, store_path, roi=(8, 32, 32))
    assert len(report.predicted) == 3
    cube = CubeStore(store_path)["fatchecker-s0-0000"]
    assert cube["probability"].shape == (1, 10, 50, 45) and cube["probability"].dtype == np.uint8
    pred = cube["prediction"][...]
    assert pred.shape == (10, 50, 45) and set(np.unique(pred)) <= {0, 1}
    np.testing.assert_array_equal(pred, (cube["probability"][0] > 127).astype(np.uint8))
    scores, entropy = cube["slice_realness"][...], cube["slice_entropy"][...]
    assert scores.shape == (10,) and scores.min() >= 0 and scores.max() <= 1
    assert entropy.shape == (10,) and entropy.min() >= 0 and entropy.max() <= 1


def test_labels_agree_with_the_stored_probabilities_at_exactly_one_half(trained, tmp_path):
    """A voxel the generator puts at exactly 0.5 (a zero logit, common in bf16) is stored as 128/255;
    its label says foreground too, so thresholding the stored probabilities gives the stored mask."""
    import torch

    _, ckpt = trained
    checkpoint = torch.load(ckpt, weights_only=False)
    for key in ("generator.head.weight", "generator.head.bias"):
        checkpoint["state_dict"][key] = torch.zeros_like(checkpoint["state_dict"][key])
    torch.save(checkpoint, tmp_path / "half.ckpt")
    store_path = tmp_path / "half.zarr"
    synthesize("fatchecker", store_path, n=1, seed=0, shape=(4, 32, 32))
    predict_store(tmp_path / "half.ckpt", store_path, roi=(4, 32, 32), precision="32")
    cube = CubeStore(store_path)[CubeStore(store_path).names()[0]]
    assert (cube["probability"][...] == 128).all() and (cube["prediction"][...] == 1).all()


def test_novelty_measures_distance_from_the_labelled_training_slices(trained, tmp_path, caplog):
    """slice_novelty: Mahalanobis distance of the discriminator's pooled first-layer responses from the
    train cubes'. A cube whose image is inverted, or a domain-shifted one, lies beyond most slices of the
    train cubes and of an unseen cube of their family. Without labelled train cubes there is no
    reference: novelty is left out and the run says how to get one."""
    from tcupgan.inference.novelty import FeatureReference, _evenly_spaced, fit_reference
    from tcupgan.inference.predict import load_model

    ref = FeatureReference(np.zeros(2), np.diag([1.0, 0.25]), slices=10, source="x")
    np.testing.assert_allclose(ref.distance(np.array([[3.0, 0.0], [0.0, 4.0], [0.0, 0.0]])), [3, 2, 0])

    store_path, ckpt = trained
    reference = fit_reference(load_model(ckpt), store_path)
    train = CubeStore(store_path).names(split="train")
    assert reference is not None and reference.slices >= 10
    assert reference.source == f"{store_path.resolve()}:train:{len(train)} cubes:first-layer"
    capped = fit_reference(load_model(ckpt), store_path, max_slices=2 * len(train))
    assert capped.slices == 2 * len(train)  # two per cube, from its whole depth, not its first two:
    np.testing.assert_array_equal(_evenly_spaced(np.arange(3, 10), 2), [3, 7])
    odd = tmp_path / "odd.zarr"
    synthesize("fatchecker", odd, n=1, seed=5, shape=(10, 50, 45))
    cube = CubeStore(odd)["fatchecker-s5-0000"]
    inverted = CubeStore(odd, mode="r+")
    inverted.write_cube(
        "inverted", cube.image[...].max() - cube.image[...], cube.label[...], attrs={"split": "test"}
    )
    synthesize("fatchecker", odd, n=1, seed=6, shift=1.0, shape=(10, 50, 45))  # blurred, dimmer, noisier
    predict_store(ckpt, odd, roi=(8, 32, 32), reference=store_path)
    predict_store(ckpt, store_path, roi=(8, 32, 32), cubes=train, overwrite=True)
    familiar = np.concatenate([CubeStore(store_path)[n]["slice_novelty"][...] for n in train])
    unseen = CubeStore(odd)["fatchecker-s5-0000"]["slice_novelty"][...]  # the training family, not trained on
    assert np.isfinite(familiar).all()
    for name in ("inverted", "fatchecker-shift-s6-0000"):
        median = np.median(CubeStore(odd)[name]["slice_novelty"][...])
        assert median > np.percentile(familiar, 90) and median > np.percentile(unseen, 90), name
    # the largest distance of the reference's own slices is recorded with the scores
    limit = CubeStore(odd)["inverted"]["slice_novelty"].attrs["familiar_limit"]
    assert limit == pytest.approx(reference.limit)
    store = CubeStore(store_path)
    own = [store[n]["slice_novelty"][...][content_fraction(store[n]) >= 0.05] for n in train]
    assert np.concatenate(own).max() == pytest.approx(limit, rel=1e-5)
    shifted = CubeStore(odd)["fatchecker-shift-s6-0000"]["slice_novelty"][...]
    assert (shifted > limit).all()  # every slice of the new domain lies beyond it

    unlabelled = tmp_path / "unlabelled.zarr"
    store = CubeStore.create(unlabelled, task="binary", channel_names=["em"], class_names=["lipid droplet"])
    store.write_cube("c", cube.image[...], attrs={"split": "train"})
    predict_store(ckpt, unlabelled, roi=(8, 32, 32))
    assert "slice_novelty" not in CubeStore(unlabelled)["c"] and "--reference" in caplog.text


def test_rerun_skips_and_interrupted_run_resumes(trained, tmp_path, monkeypatch):
    _, ckpt = trained
    store_path = tmp_path / "fresh.zarr"
    synthesize("fatchecker", store_path, n=3, seed=0, shape=(10, 50, 45))
    names = CubeStore(store_path).names()
    real = predict_mod.predict_cube
    calls = []

    def crash_mid_second_cube(ctx, name, **kwargs):
        calls.append(name)
        if len(calls) == 2:  # die inside the second cube, after its probability writer started
            with ctx.store.array_writer(name, "probability", (1, 10, 50, 45), "uint8"):
                raise KeyboardInterrupt
        return real(ctx, name, **kwargs)

    monkeypatch.setattr(predict_mod, "predict_cube", crash_mid_second_cube)
    with pytest.raises(KeyboardInterrupt):
        predict_store(ckpt, store_path, roi=(8, 32, 32))
    monkeypatch.setattr(predict_mod, "predict_cube", real)
    store = CubeStore(store_path)
    assert "slice_entropy" in store[names[0]] and store[names[1]].keys() == ["image", "label"]  # nothing half
    report = predict_store(ckpt, store_path, roi=(8, 32, 32))
    assert report.skipped == names[:1] and report.predicted == names[1:]
    fitted = []
    monkeypatch.setattr(scorers_mod, "fit_reference", lambda *a, **k: fitted.append(a))
    assert predict_store(ckpt, store_path, roi=(8, 32, 32)).skipped == names
    assert not fitted  # nothing to predict: no discriminator pass over the train cubes for the reference
    assert "slice_novelty" in CubeStore(store_path)[names[0]]  # there is a reference: its train cubes
    moved = shutil.move(store_path, tmp_path / "moved.zarr")  # its own train cubes: still the same reference
    assert predict_store(ckpt, moved, roi=(8, 32, 32)).skipped == names


def test_wrong_checkpoint_is_refused(trained, tmp_path):
    store_path, _ = trained
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="not a tcupgan training checkpoint"):
        predict_store(bad, store_path)
    with pytest.raises(InputError, match="does not exist"):
        predict_store(tmp_path / "none.ckpt", store_path)


def test_cli_predict(trained, capsys):
    store_path, ckpt = trained
    args = [
        "predict",
        "--ckpt",
        str(ckpt),
        "--store",
        str(store_path),
        "--split",
        "val",
        "--roi",
        "8",
        "32",
        "32",
    ]
    assert main(args) == 0
    val = CubeStore(store_path).names(split="val")
    assert f"0 cube(s) predicted, {len(val)} already done" in capsys.readouterr().out


def test_hard_labels_follow_task_rules():
    prob = np.array([[0.9, 0.2, 0.1, 0.8], [0.9, 0.7, 0.1, 0.9], [0.9, 0.9, 0.9, 0.95]])[:, None, None, :]
    np.testing.assert_array_equal(hard_labels(prob, "brats")[0, 0], [3, 1, 2, 3])  # ET, TC, WT nested
    np.testing.assert_array_equal(hard_labels(prob[:2], "multilabel")[0, 0], [3, 2, 0, 3])


def test_evaluate_and_export_prediction(trained, tmp_path, capsys):
    store_path, ckpt = trained
    predict_store(ckpt, store_path, roi=(8, 32, 32))
    out = tmp_path / "report"
    assert main(["evaluate", "--store", str(store_path), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "lesion_dice" in printed and "lipid droplet" in printed
    with open(out / "per_cube.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3 and {"dice", "hd95", "lesion_dice", "lesion_hd95", "tp", "fp", "fn"} <= set(rows[0])
    store = CubeStore(store_path)
    cube = store[rows[0]["cube"]]
    pred, truth = cube["prediction"][...] > 0, cube.label[...] > 0
    expected = (
        1.0 if not (pred.any() or truth.any()) else 2 * (pred & truth).sum() / (pred.sum() + truth.sum())
    )
    assert float(rows[0]["dice"]) == pytest.approx(expected, abs=1e-6)
    for name in ("summary.csv", "dice_distribution.png", "worst_slices.png"):
        assert (out / name).stat().st_size > 0
    nii = export_cube(store_path, cube.name, tmp_path / "pred.nii.gz", what="prediction")
    img = nib.load(str(nii))
    np.testing.assert_array_equal(np.asanyarray(img.dataobj), cube["prediction"][...].transpose(2, 1, 0))
    np.testing.assert_allclose(img.affine, cube_affine(cube.attrs))


def test_remove_small_components_per_region():
    labels = np.zeros((10, 20, 20), np.uint8)
    labels[1:5, 1:5, 1:5] = 2  # 64 voxels: kept
    labels[8, 15, 15] = 2  # a speck
    labels[2:4, 2:4, 2:4] = 3  # 8 voxels of another region inside: removed at min_size 10
    cleaned = remove_small_components(labels, 10)
    assert cleaned[8, 15, 15] == 0 and (cleaned == 3).sum() == 0 and (cleaned == 2).sum() == 64 - 8
    assert remove_small_components(labels, 0) is labels
    per_label = remove_small_components(labels, {2: 10, 3: 1})  # keep the small label-3 block
    assert per_label[8, 15, 15] == 0 and (per_label == 3).sum() == 8


def test_min_size_cleans_the_stored_prediction_and_changes_settings(trained, tmp_path):
    _, ckpt = trained
    store_path = tmp_path / "pp.zarr"
    synthesize("fatchecker", store_path, n=1, seed=0, shape=(10, 50, 45))
    predict_store(ckpt, store_path, roi=(8, 32, 32))
    name = CubeStore(store_path).names()[0]
    report = predict_store(ckpt, store_path, roi=(8, 32, 32), min_size=10**6)
    assert report.predicted == [name]  # other settings: not skipped
    cube = CubeStore(store_path)[name]
    assert not cube["prediction"][...].any() and cube["prediction"].attrs["min_size"] == 10**6


def test_predict_files_without_a_store(trained, tmp_path, capsys):
    _, ckpt = trained
    volume = np.random.default_rng(0).integers(0, 200, (45, 50, 10)).astype(np.int16)
    affine = np.diag([0.8, 0.8, 2.0, 1.0])
    nib.save(nib.Nifti1Image(volume, affine), str(tmp_path / "scan.nii.gz"))
    assert (
        main(
            [
                "predict",
                "--ckpt",
                str(ckpt),
                "--input",
                str(tmp_path / "scan.nii.gz"),
                "--out",
                str(tmp_path / "out"),
                "--roi",
                "8",
                "32",
                "32",
            ]
        )
        == 0
    )
    assert "scan_pred.nii.gz" in capsys.readouterr().out
    pred = nib.load(str(tmp_path / "out" / "scan_pred.nii.gz"))
    assert pred.shape == volume.shape and pred.get_data_dtype() == np.uint8
    np.testing.assert_allclose(pred.affine, affine)
    assert main(["predict", "--ckpt", str(ckpt), "--input", str(tmp_path / "scan.nii.gz")]) == 2


def test_ranks_split_cubes_without_overlap(trained, tmp_path, monkeypatch):
    _, ckpt = trained
    store_path = tmp_path / "ranks.zarr"
    synthesize("fatchecker", store_path, n=3, seed=1, shape=(8, 32, 32))
    first = predict_store(ckpt, store_path, roi=(8, 32, 32), rank=0, world_size=2)
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    second = predict_store(ckpt, store_path, roi=(8, 32, 32))
    assert sorted(first.predicted + second.predicted) == CubeStore(store_path).names()
    assert not set(first.predicted) & set(second.predicted) and len(first.predicted) == 2


def test_bf16_precision_matches_float32_and_is_its_own_setting(trained, tmp_path):
    _, ckpt = trained
    store_path = tmp_path / "bf16.zarr"
    synthesize("fatchecker", store_path, n=1, seed=0, shape=(10, 50, 45))
    name = CubeStore(store_path).names()[0]

    def outputs():
        cube = CubeStore(store_path)[name]
        return cube["probability"][0].astype(int), cube["slice_realness"][...], dict(cube["prediction"].attrs)

    predict_store(ckpt, store_path, roi=(8, 32, 32), precision="32")
    prob32, scores32, attrs32 = outputs()
    report = predict_store(ckpt, store_path, roi=(8, 32, 32), precision="bf16")
    assert report.predicted == [name]  # another precision is another prediction, not "already done"
    prob16, scores16, attrs16 = outputs()
    assert (attrs32["precision"], attrs16["precision"]) == ("32", "bf16")
    assert not np.array_equal(prob16, prob32)  # the generator really ran in bf16 ...
    assert np.abs(prob16 - prob32).max() <= 2  # ... within 2/255 of float32 everywhere
    np.testing.assert_allclose(scores16, scores32, atol=1e-3)
    assert predict_store(ckpt, store_path, roi=(8, 32, 32), precision="bf16").skipped == [name]
    auto = predict_store(ckpt, store_path, roi=(8, 32, 32))  # on a CPU: bf16 where it has bf16 instructions
    assert auto.skipped == ([name] if cpu_has_bf16() else [])
    with pytest.raises(InputError, match="precision must be auto or one of"):
        predict_store(ckpt, store_path, precision="fp8")


def _predicted(ckpt, store_path, roi=(4, 16, 16), **options) -> np.ndarray:
    predict_store(ckpt, store_path, roi=roi, overwrite=True, **options)
    cube = CubeStore(store_path)[CubeStore(store_path).names()[0]]
    return cube["probability"][...].astype(int)


def test_more_windows_per_call_give_the_same_prediction(trained, tmp_path):
    """Windows per generator call change speed, not numbers: 1, 4 and 27 windows at a time within 1/255
    everywhere."""
    _, ckpt = trained
    store_path = tmp_path / "batch.zarr"
    synthesize("fatchecker", store_path, n=1, seed=0, shape=(10, 50, 45))
    one, four, many = (_predicted(ckpt, store_path, window_batch=n) for n in (1, 4, 27))
    assert np.abs(four - one).max() <= 1 and np.abs(many - one).max() <= 1
    with pytest.raises(InputError, match="window_batch must be 1 or more"):
        predict_store(ckpt, store_path, window_batch=0)


def test_a_cpu_batches_small_bf16_windows_and_not_large_ones(trained):
    """On a CPU, float32 takes 4 windows a call; bf16 as many as 2^19 voxels hold: 4 of 32 x 64², one
    whole 1024² section (faster and half the memory of four, studies/cpu-inference)."""
    import torch

    from tcupgan.inference.predict import load_model, windows_per_batch

    generator = load_model(trained[1], "cpu").generator
    cpu = torch.device("cpu")
    assert windows_per_batch(generator, 1, (1, 1024, 1024), cpu) == 4
    generator.to(torch.bfloat16)
    assert windows_per_batch(generator, 1, (32, 64, 64), cpu) == 4
    assert windows_per_batch(generator, 1, (1, 512, 512), cpu) == 2
    assert windows_per_batch(generator, 1, (1, 1024, 1024), cpu) == 1


def test_blocks_follow_the_voxel_budget_and_a_cube_that_fits_is_one_pass(trained, tmp_path, monkeypatch):
    """A cube within the block budget is predicted as one sliding-window pass (MONAI's own, on the whole
    normalised cube); a larger one in blocks whose margins keep it close to that pass."""
    import torch
    from monai.inferers import sliding_window_inference

    from tcupgan.data.transforms import normalise
    from tcupgan.inference.predict import _network, block_windows, load_model

    assert block_windows((10, 50, 45), (4, 16, 16), 2**22) > 3  # the whole cube in one block
    assert block_windows((64, 1024, 1024), (32, 128, 128), 2**22) == 2  # a large cube: the smallest blocks
    _, ckpt = trained
    store_path = tmp_path / "blocks.zarr"
    synthesize("fatchecker", store_path, n=1, seed=0, shape=(10, 50, 45))
    cube = CubeStore(store_path)[CubeStore(store_path).names()[0]]
    model = load_model(ckpt, "cpu")
    with torch.no_grad():
        x = torch.from_numpy(normalise(cube.image[...], cube.attrs))[None]
        one_pass = sliding_window_inference(x, (4, 16, 16), 4, _network(model, False, False), overlap=0.25,
                                            mode="gaussian")[0].numpy()  # fmt: skip
    reference = np.round(one_pass * 255).astype(int)
    assert np.abs(_predicted(ckpt, store_path) - reference).max() <= 1
    monkeypatch.setattr(predict_mod, "BLOCK_VOXELS", 4 * 16 * 16 * 8)  # blocks of 2 windows across
    blocked = _predicted(ckpt, store_path)
    assert (blocked != reference).any()  # the blocked path ran: its windows sit elsewhere ...
    assert np.abs(blocked - reference).mean() < 4  # ... and its margins keep it near the one pass


def test_every_block_reads_at_least_a_window():
    """A block at the far edge reads back a whole window rather than one that MONAI would zero-pad (padding
    moves the per-slice instance norms of every window that holds it); the cores tile the cube once."""
    from tcupgan.inference.predict import blocks

    shape, roi = (10, 1024, 50), (4, 512, 16)
    covered = np.zeros(shape, int)
    for block in blocks(shape, roi, windows=2):
        read = [s.stop - s.start for s in block.read]
        assert all(n >= r for n, r in zip(read, roi, strict=True)), (block, read)
        covered[block.core] += 1
        inner = [(s.start, s.stop) for s in block.inner]
        core = [(c.start - r.start, c.stop - r.start) for c, r in zip(block.core, block.read, strict=True)]
        assert inner == core
    assert (covered == 1).all()


def test_compiled_predict_equals_eager_and_a_broken_compiler_falls_back(trained, tmp_path):
    """``compile=True`` (the default on CUDA, as CUDA graphs; here inductor's CPU code) gives eager's
    probabilities; with a C++ compiler that cannot run (and fresh caches, so nothing compiled earlier is
    loaded instead) predict warns once and finishes eagerly with the same numbers."""
    import warnings

    import torch
    import torch._inductor.config as inductor_config
    from torch._inductor.utils import fresh_cache

    _, ckpt = trained
    store_path = tmp_path / "compiled.zarr"
    synthesize("fatchecker", store_path, n=1, seed=0, shape=(3, 40, 40))
    roi = (3, 40, 40)  # one window: one graph to compile
    eager = _predicted(ckpt, store_path, roi, compile=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # a fallback to eager would fail here
        compiled = _predicted(ckpt, store_path, roi, compile=True)
    assert np.abs(compiled - eager).max() <= 1
    torch._dynamo.reset()
    broken = inductor_config.patch({"cpp.cxx": ("/nonexistent/c++",)})
    with broken, fresh_cache(), pytest.warns(UserWarning, match="(?s)compiled predict unavailable.*eagerly"):
        fallback = _predicted(ckpt, store_path, roi, compile=True)
    np.testing.assert_array_equal(fallback, eager)


def test_a_registered_scorer_is_written_by_predict_and_ranked_by_select(trained, tmp_path, monkeypatch):
    """A new slice score is one small class and one registration: predict writes ``slice_<name>``,
    select ranks by it, and the selection CSV gets its column."""
    from tcupgan.data.transforms import normalise
    from tcupgan.inference.scorers import SliceScorer, register
    from tcupgan.selection import SelectionRules, select_slices, write_selection

    class Brightness(SliceScorer):
        name, array, per_block = "brightness", "slice_brightness", True

        def block_map(self, model, image, prob):
            return image[0].mean(dim=0)

    monkeypatch.setattr(scorers_mod, "SCORERS", dict(scorers_mod.SCORERS))
    register(Brightness())
    _, ckpt = trained
    store_path = tmp_path / "toy.zarr"
    synthesize("fatchecker", store_path, n=2, seed=3, shape=(10, 50, 45))
    predict_store(ckpt, store_path, roi=(8, 32, 32))
    cube = CubeStore(store_path)[CubeStore(store_path).names()[0]]
    expected = normalise(cube.image[...], cube.attrs)[0].mean(axis=(1, 2))
    np.testing.assert_allclose(cube["slice_brightness"][...], expected, rtol=1e-5)
    rows = select_slices(store_path, 3, strategy="brightness", rules=SelectionRules(min_gap=1))
    every = np.concatenate([CubeStore(store_path)[n]["slice_brightness"][...] for n in CubeStore(store_path)])
    assert rows[0]["brightness"] == pytest.approx(every.max()) and rows[0]["strategy"] == "brightness"
    assert [r["brightness"] for r in rows] == sorted((r["brightness"] for r in rows), reverse=True)
    with open(write_selection(rows, tmp_path / "sel.csv")) as f:
        assert "brightness" in next(csv.reader(f))
