"""The selection study (studies/selection/study.py) run as its users run it."""

import json
import subprocess
import sys

import pytest

from tcupgan.data import CubeStore
from tests.test_tools import ROOT, run_tool


@pytest.mark.slow
def test_selection_study_reports_shares_and_draws_the_figure(tmp_path):
    study = ("studies.selection.study", "--out", str(tmp_path), "--quick")
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
    whole = ("studies.selection.study", "--out", str(tmp_path / "whole"), "--unlabelled-share", "1")
    refused = subprocess.run([sys.executable, "-m", *whole], cwd=ROOT, capture_output=True)
    assert refused.returncode == 2 and b"must be below 1" in refused.stderr
    assert not (tmp_path / "whole").exists()  # refused by argparse, before any store
