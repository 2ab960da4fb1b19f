"""``tcupgan plan``: settings that follow the store's fingerprint and the machine, and ``fit --plan``."""

import numpy as np
import pytest
import yaml

from tcupgan.cli.main import main, with_plan
from tcupgan.data import CubeStore, synthesize
from tcupgan.errors import StoreError
from tcupgan.training.plan import PREDICT_WINDOW_VOXELS, Machine, fingerprint, plan, write_plan

CPU = Machine(cores=2, gpu_memory_gib=None)


def labelled_store(path, spacing, shape=(24, 256, 256), channels=1, cubes=2):
    store = CubeStore.create(path, task="binary", channel_names=[f"c{i}" for i in range(channels)],
                             class_names=["fg"])  # fmt: skip
    rng = np.random.default_rng(0)
    for i in range(cubes):
        image = rng.random((channels, *shape), dtype=np.float32)
        label = (image[0] > 0.9).astype(np.uint8)
        store.write_cube(f"c{i}", image, label, attrs={"spacing": list(spacing), "split": "train"})
    return path


def test_anisotropic_sections_get_thinner_crops_than_isotropic_voxels(tmp_path):
    em = plan(fingerprint(labelled_store(tmp_path / "em.zarr", (50, 4.6, 4.6))), CPU, "em.zarr")
    mri = plan(fingerprint(labelled_store(tmp_path / "mri.zarr", (1, 1, 1))), CPU, "mri.zarr")
    em_crop, mri_crop = em["data"]["crop_size"], mri["data"]["crop_size"]
    assert em_crop[0] == 1 < mri_crop[0]  # sections 11x farther apart than pixels: one per crop
    assert mri_crop[0] <= 24 and all(c % 16 == 0 for c in em_crop[1:])  # within the cubes; U-Net multiple
    assert em["model"]["widths"] == [16, 32, 48, 64, 128]  # 256 px planes hold the paper's five levels
    assert em["data"]["store"] == "em.zarr" and em["data"]["batch_size"] > mri["data"]["batch_size"] >= 2


def test_more_memory_gives_larger_batches_and_small_images_fewer_levels(tmp_path):
    fp = fingerprint(labelled_store(tmp_path / "s.zarr", (1, 1, 1)))
    on_cpu = plan(fp, CPU, "s.zarr")["data"]
    on_gpu = plan(fp, Machine(cores=2, gpu_memory_gib=80.0), "s.zarr")["data"]
    assert on_gpu["batch_size"] * np.prod(on_gpu["crop_size"]) > on_cpu["batch_size"] * np.prod(
        on_cpu["crop_size"]
    )
    tiles = tmp_path / "tiles.zarr"
    synthesize("kelp", tiles, n=6, seed=0, shape=(1, 64, 64))
    CubeStore(tiles, mode="r+").update_attrs(CubeStore(tiles).names()[0], split="train")
    flat = plan(fingerprint(tiles), CPU, tiles)
    assert flat["data"]["crop_size"][0] == 1 and len(flat["model"]["widths"]) == 4  # 64 px: 4 levels


def test_predict_windows_take_whole_sections_up_to_a_voxel_budget(tmp_path):
    def planned(name, spacing, shape):
        settings = plan(fingerprint(labelled_store(tmp_path / name, spacing, shape, cubes=1)), CPU, name)
        return settings["data"]["crop_size"], settings["model"]["val_roi"]

    crop, window = planned("em.zarr", (50, 4.6, 4.6), (2, 768, 768))
    assert crop == [1, 256, 256] and window == [1, 768, 768]  # the whole section, not twice the crop
    crop, window = planned("wide.zarr", (50, 4.6, 4.6), (2, 1536, 1536))
    assert window == [1, 1024, 1024] and np.prod(window) == PREDICT_WINDOW_VOXELS  # the budget bounds it
    crop, window = planned("mri.zarr", (1, 1, 1), (24, 256, 256))
    assert window[0] == crop[0] > 1 and window[1] == window[2] >= min(2 * crop[1], 256)
    assert np.prod(window) <= PREDICT_WINDOW_VOXELS  # deep crops: as much plane as the budget holds


def test_bf16_autocast_only_where_a_cpu_with_bf16_instructions_trains(tmp_path):
    fp = fingerprint(labelled_store(tmp_path / "s.zarr", (50, 4.6, 4.6)))
    hosts = Machine(2, None, cpu_bf16=True), Machine(2, None), Machine(2, 80.0, cpu_bf16=True)
    precisions = [plan(fp, host, "s.zarr")["trainer"]["precision"] for host in hosts]
    assert precisions == ["bf16-mixed", "32-true", "32-true"]  # with a GPU, the GPU trains, in float32


def test_stores_that_cannot_be_planned_say_why_in_one_line(tmp_path, capsys):
    empty = CubeStore.create(tmp_path / "e.zarr", task="binary", channel_names=["em"], class_names=["fg"])
    with pytest.raises(StoreError, match="holds no cubes"):
        fingerprint(empty.path)
    empty.write_cube("u", np.ones((1, 4, 32, 32), np.float32), attrs={"split": "train"})
    with pytest.raises(StoreError, match="no labelled cubes in split 'train'"):
        fingerprint(empty.path)
    one = labelled_store(tmp_path / "one.zarr", (1, 1, 1), shape=(1, 32, 32), cubes=1)
    with pytest.raises(StoreError, match="single slice"):
        fingerprint(one)
    assert main(["plan", "--store", str(tmp_path / "missing.zarr"), "--out", str(tmp_path / "p.yaml")]) == 2
    assert "no cube store at" in capsys.readouterr().err and not (tmp_path / "p.yaml").exists()


@pytest.mark.slow
def test_fit_reads_the_plan_first_so_the_users_options_win(tmp_path, capsys):
    store = tmp_path / "fc.zarr"
    synthesize("fatchecker", store, n=6, seed=0, shape=(8, 64, 64))
    cubes = CubeStore(store, mode="r+")
    for name, split in zip(cubes.names(), ["train"] * 4 + ["val"] * 2, strict=True):
        cubes.update_attrs(name, split=split)
    out = tmp_path / "plan.yaml"
    assert main(["plan", "--store", str(store), "--out", str(out)]) == 0
    assert "crop_size" in capsys.readouterr().out and yaml.safe_load(out.read_text())["data"]["crop_size"]
    assert with_plan(["--plan", str(out), "--config", "c.yaml"]) == [
        "--config",
        str(out),
        "--config",
        "c.yaml",
    ]
    planned = yaml.safe_load(out.read_text())
    run = tmp_path / "run"
    args = ["fit", "--plan", str(out), "--trainer.max_epochs", "1", "--data.samples_per_epoch", "2",
            "--data.num_workers", "0", "--data.batch_size", "1", "--trainer.default_root_dir", str(run),
            "--trainer.enable_progress_bar", "false"]  # fmt: skip
    assert main(args) == 0
    used = yaml.safe_load(next(run.rglob("config.yaml")).read_text())
    assert used["data"]["crop_size"] == planned["data"]["crop_size"]  # from the plan
    assert used["model"]["widths"] == planned["model"]["widths"]
    assert used["data"]["batch_size"] == 1  # the user's option wins
    capsys.readouterr()
    with pytest.raises(SystemExit) as printed:  # LightningCLI exits after printing
        main(["fit", "--plan", str(out), "--config", "fatchecker", "--print_config"])
    assert printed.value.code == 0
    merged = yaml.safe_load(capsys.readouterr().out)  # a shipped config holds what the plan cannot know
    assert (
        merged["data"]["store"] == str(store) and merged["data"]["crop_size"] == planned["data"]["crop_size"]
    )
    assert merged["model"]["seg_loss"] == "focal_tversky" and merged["trainer"]["max_epochs"] == 100
    assert main(["fit", "--plan", str(tmp_path / "none.yaml")]) == 2
    assert "tcupgan plan --store" in capsys.readouterr().err


def test_write_plan_writes_a_commented_config(tmp_path):
    store = labelled_store(tmp_path / "em.zarr", (50, 4.6, 4.6))
    settings, text = write_plan(store, tmp_path / "plan.yaml", host=CPU)
    assert text.startswith("# tcupgan plan for") and "median_spacing: (50.0, 4.6, 4.6)" in text
    assert yaml.safe_load((tmp_path / "plan.yaml").read_text()) == settings
