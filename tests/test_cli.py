import subprocess
import sys
from pathlib import Path

import pytest

from tcupgan.cli.main import main
from tcupgan.data import CubeStore

ROOT = Path(__file__).resolve().parents[1]

COMMANDS = [
    [],
    ["info"],
    ["synth"],
    ["ingest"],
    ["ingest", "brats"],
    ["ingest", "tiff"],
    ["ingest", "images"],
    ["export"],
    ["show"],
    ["predict"],
    ["evaluate"],
    ["select"],
    ["render"],
    ["galaxy", "ingest"],
    ["galaxy", "predict"],
    ["galaxy", "measure"],
    ["plan"],
    ["migrate"],
    ["clean"],
    ["view"],
    ["export-nnunet"],
    ["ingest", "nifti"],
    ["ingest", "nnunet"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "tcupgan")
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([*command, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "usage: tcupgan" in out and ("example" in out or command == ["ingest"])


def test_synth_info_export(tmp_path, capsys):
    store = tmp_path / "d.zarr"
    assert main(["synth", "fatchecker", "--store", str(store), "--n", "2", "--shape", "4", "32", "32"]) == 0
    assert main(["info", str(store)]) == 0
    out = capsys.readouterr().out
    assert "fatchecker-s0-0001" in out and "1x4x32x32" in out
    assert main(["export", str(store), "fatchecker-s0-0000", "--to", str(tmp_path / "x.tif")]) == 0
    assert (tmp_path / "x.tif").stat().st_size > 0
    assert len(CubeStore(store)) == 2
    for shift in (["--shift"], ["--shift", "0.5"]):  # a bare --shift is the full shift
        assert (
            main(
                ["synth", "fatchecker", "--store", str(store), "--n", "1", "--shape", "4", "32", "32", *shift]
            )
            == 0
        )
    assert {"fatchecker-shift-s0-0000", "fatchecker-shift0.5-s0-0000"} < set(CubeStore(store).names())
    assert main(["show", str(store), "fatchecker-s0-0000", "--out", str(tmp_path / "s.png")]) == 0
    assert (tmp_path / "s.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_every_command_takes_the_store_as_store_and_old_spellings_still_work(tmp_path, capsys):
    store, old = tmp_path / "d.zarr", tmp_path / "old.zarr"
    shape = ["--n", "1", "--shape", "4", "32", "32"]
    assert main(["synth", "fatchecker", "--store", str(store), *shape]) == 0
    assert main(["synth", "fatchecker", "--out", str(old), *shape]) == 0  # the old spelling
    assert CubeStore(old).names() == CubeStore(store).names()
    capsys.readouterr()
    assert main(["info", "--store", str(store)]) == 0
    assert "1 cube(s)" in capsys.readouterr().out
    cube = CubeStore(store).names()[0]
    assert (
        main(["export", "--store", str(store), cube, "--to", str(tmp_path / "x.tif"), "--what", "label"]) == 0
    )
    assert main(["show", cube, "--out", str(tmp_path / "s.png"), "--store", str(store)]) == 0
    assert (tmp_path / "x.tif").is_file() and (tmp_path / "s.png").is_file()


def test_the_device_defaults_to_a_gpu_where_there_is_one():
    import torch

    from tcupgan.inference.predict import resolve_device

    expected = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    assert resolve_device("cpu").type == "cpu"


def test_errors_are_one_line_without_traceback(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "tcupgan.cli.main", "info", str(tmp_path / "none.zarr")],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("error: no cube store") and "tcupgan ingest" in proc.stderr
    debug = subprocess.run(
        [sys.executable, "-m", "tcupgan.cli.main", "--debug", "info", str(tmp_path / "n.zarr")],
        capture_output=True,
        text=True,
    )
    assert debug.returncode != 0 and "Traceback" in debug.stderr


def test_fit_help_lists_model_and_data_options(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "--model.widths" in out and "--data.store" in out and "--trainer.max_epochs" in out


def test_bench_runs_a_benchmark_by_name(capsys):
    assert main(["bench", "--help"]) == 0
    assert "predict_speed" in capsys.readouterr().out
    assert main(["bench", "store_io", "--tiny"]) == 0
    assert '"slice_ratio"' in capsys.readouterr().out
    assert main(["bench", "nothing"]) == 2
    err = capsys.readouterr().err
    assert "no benchmark 'nothing'; choose one of: all, brats_predict, data_time" in err
    assert "original_layout" not in err and "common" not in err


@pytest.mark.slow
@pytest.mark.skipif(
    __import__("torch").cuda.is_available(), reason="checks the message on machines without a GPU"
)
def test_asking_for_a_gpu_without_one_says_what_to_do(tmp_path, capsys):
    store = tmp_path / "d.zarr"
    main(["synth", "fatchecker", "--store", str(store), "--n", "3", "--shape", "4", "32", "32"])
    assert main(["fit", "--config", str(ROOT / "configs" / "demo.yaml"), "--data.store", str(store),
                 "--trainer.accelerator", "gpu"]) == 2  # fmt: skip
    assert "--trainer.accelerator auto" in capsys.readouterr().err
    assert (
        main(["predict", "--ckpt", str(ROOT / "pyproject.toml"), "--store", str(store), "--device", "cuda"])
        == 2
    )
    assert "use --device auto or cpu" in capsys.readouterr().err


def test_ingest_images_names_the_class_and_extends_a_store_without_repeating_it(tmp_path, capsys):
    import numpy as np
    from PIL import Image

    for i in range(2):
        Image.fromarray(np.full((16, 16, 3), 40 * i, np.uint8)).save(tmp_path / f"tile{i}.png")
        Image.fromarray(np.eye(16, dtype=np.uint8) * 255).save(tmp_path / f"mask{i}.png")
    store = str(tmp_path / "kelp.zarr")
    first = ["ingest", "images", str(tmp_path / "tile0.png"), "--masks", str(tmp_path / "mask0.png")]
    assert main([*first, "--store", store, "--class-names", "kelp"]) == 0
    second = ["ingest", "images", str(tmp_path / "tile1.png"), "--masks", str(tmp_path / "mask1.png")]
    assert main([*second, "--store", store]) == 0
    assert CubeStore(store).class_names == ["kelp"] and len(CubeStore(store)) == 2


def test_a_read_only_store_is_one_line_and_stays_as_it_was(tmp_path, capsys, monkeypatch):
    """Writing into a store this user may not write (simulated: as root, permissions do not stop writes)
    gives one line naming the path, no traceback, and the store unchanged."""
    from tests.conftest import snapshot

    store = tmp_path / "ro.zarr"
    assert main(["synth", "fatchecker", "--store", str(store), "--n", "1", "--shape", "4", "32", "32"]) == 0
    before = snapshot(store)
    real_mkdir = Path.mkdir

    def read_only(self, *args, **kwargs):
        if str(self).startswith(str(store)):
            raise PermissionError(13, "Permission denied", str(self))
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", read_only)
    capsys.readouterr()
    assert (
        main(
            [
                "synth",
                "fatchecker",
                "--out",
                str(store),
                "--n",
                "1",
                "--seed",
                "3",
                "--shape",
                "4",
                "32",
                "32",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert err.startswith(f"error: permission denied writing '{store}") and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1 and snapshot(store) == before


def test_version(capsys):
    import tcupgan

    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out.strip() == f"tcupgan {tcupgan.__version__}"


@pytest.mark.slow
def test_training_output_is_quiet_unless_verbose(tmp_path):
    """Lightning's INFO lines (printed twice: its own handler and the root logger's), its advertisements
    and library deprecation warnings appear only with --verbose; tcupgan's own result line stays."""
    store = tmp_path / "d.zarr"
    assert main(["synth", "fatchecker", "--store", str(store), "--n", "4", "--shape", "8", "32", "32"]) == 0
    fit = [sys.executable, "-m", "tcupgan.cli.main", "fit", "--config", str(ROOT / "configs" / "demo.yaml"),
           "--data.store", str(store), "--trainer.max_epochs", "1", "--data.samples_per_epoch", "2",
           "--data.crop_size", "[8, 32, 32]", "--model.val_roi", "[8, 32, 32]", "--data.num_workers", "0",
           "--trainer.default_root_dir", str(tmp_path / "run"),
           "--trainer.logger.init_args.save_dir", str(tmp_path / "run")]  # fmt: skip
    quiet = subprocess.run(fit, cwd=tmp_path, capture_output=True, text=True, check=True)
    loud = subprocess.run([*fit, "--verbose"], cwd=tmp_path, capture_output=True, text=True, check=True)
    for noise in ("Seed set to", "GPU available", "Tip:", "Warning"):
        assert noise not in quiet.stderr, noise
    assert "Seed set to" in loud.stderr and "GPU available" in loud.stderr


def test_a_missing_extra_names_what_to_install(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "panoptes_client", None)  # as if panoptes-client were not installed
    monkeypatch.setitem(sys.modules, "napari", None)
    assert main(["demo", "--quick", "--out", str(tmp_path / "run")]) == 2
    assert "pip install 'tcupgan[zooniverse]'" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
    store = tmp_path / "d.zarr"
    main(["synth", "fatchecker", "--store", str(store), "--n", "1", "--shape", "4", "32", "32"])
    capsys.readouterr()
    assert main(["view", str(store), CubeStore(store).names()[0]]) == 2
    assert "pip install 'tcupgan[view]'" in capsys.readouterr().err
