"""The end-to-end tools run as users run them (``python -m tools.X --quick``), on real data and HTTP."""

import json
import subprocess
import sys
from pathlib import Path

from tcupgan.data import CubeStore

ROOT = Path(__file__).resolve().parents[1]


def run_tool(module: str, *args: str) -> None:
    subprocess.run(
        [sys.executable, "-m", module, *args], cwd=ROOT, check=True, capture_output=True, timeout=600
    )


def test_volunteer_loop_end_to_end_against_the_sandbox(tmp_path):
    out = tmp_path / "loop"
    run_tool("tools.volunteer_loop", "--out", str(out), "--quick", "--fail-rate", "0.3")
    summary = json.loads((out / "report.json").read_text())
    assert (
        summary["upload"]["last"]["failed"] == 0 and summary["classifications"] == 3 * summary["slices_sent"]
    )
    assert (
        summary["harvest"]["slices_written"] == summary["slices_sent"] and not summary["harvest"]["skipped"]
    )
    store = CubeStore(out / "work.zarr")
    corrected = sum(
        len(store[n]["corrections"].attrs["slices"]) for n in store.names() if "corrections" in store[n]
    )
    assert corrected == summary["slices_sent"]
    assert all(0 <= v <= 1 for v in (*summary["dice_before"].values(), *summary["dice_after"].values()))
    assert all(Path(c).is_file() for c in summary["checkpoints"])
    assert summary["set_audit"] == {
        "subjects_in_set": summary["slices_sent"],
        "duplicates": 0,
        "images_missing": 0,
    }
    assert all(Path(f).exists() for f in summary["figures"])


def test_selection_study_reports_shares_and_draws_the_figure(tmp_path):
    study = ("tools.selection_study", "--out", str(tmp_path), "--quick")
    fit = ("--fit-args", "--model.dropout 0.1", "--unlabelled-share", "0.3")
    run_tool(*study, *fit, "--normal", "3", "--shifted", "1")
    result = json.loads((tmp_path / "selection_quality.json").read_text())
    assert result["cubes"] == 4
    hparams = next(tmp_path.glob("run/**/hparams.yaml")).read_text()
    assert "dropout: 0.1" in hparams and "unlabelled_share: 0.3" in hparams  # both reached fit
    train = CubeStore(tmp_path / "train.zarr")  # the test cubes trained on as unlabelled cubes
    pool = [n for n in train.names(split="train") if train[n].label is None]
    assert sorted(pool) == CubeStore(tmp_path / "mixed.zarr").names()
    verdicts = ("discriminator", "discriminator_position", "discriminator_unfamiliar_first")
    for strategy in (*verdicts, "entropy", "hybrid", "random"):
        for table in ("error_share", "dice_error_share"):
            shares, oracle = result[table][strategy], result[table]["oracle"]
            assert 0 < shares["top10%"] <= shares["top20%"] <= 1
            assert shares["top10%"] <= oracle["top10%"] + 1e-9 and shares["top20%"] <= oracle["top20%"] + 1e-9
        assert 0 <= result["shifted_share_top20%"][strategy] <= 1
    assert -1 <= result["spearman_realness_vs_dice_error"] <= 1
    assert 0 <= result["unfamiliar_share"] <= 1 and 0 < result["shifted_share"] < 0.5  # 1 cube of 4
    assert (tmp_path / "selection_quality.png").stat().st_size > 10_000
    # another mix must not land in the same store (it would blend two studies): refused before any work
    refused = subprocess.run([sys.executable, "-m", *study, "--shifted", "2"], cwd=ROOT, capture_output=True)
    assert refused.returncode == 2 and b"other counts" in refused.stderr
    assert len(CubeStore(tmp_path / "mixed.zarr").names()) == 4
    whole = ("tools.selection_study", "--out", str(tmp_path / "whole"), "--unlabelled-share", "1")
    refused = subprocess.run([sys.executable, "-m", *whole], cwd=ROOT, capture_output=True)
    assert refused.returncode == 2 and b"must be below 1" in refused.stderr
    assert not (tmp_path / "whole").exists()  # refused by argparse, before any store


def test_demo_refuses_a_folder_that_holds_files(tmp_path, capsys):
    from tcupgan.cli.main import main

    (tmp_path / "old.txt").write_text("keep me")
    assert main(["demo", "--out", str(tmp_path), "--quick"]) == 2
    assert (
        "already holds files" in capsys.readouterr().err and (tmp_path / "old.txt").read_text() == "keep me"
    )
