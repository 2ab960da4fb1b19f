"""The end-to-end tools run as users run them (``python -m tools.X --quick``), on real data and HTTP."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tcupgan.data import CubeStore

ROOT = Path(__file__).resolve().parents[1]


def run_tool(module: str, *args: str) -> None:
    subprocess.run(
        [sys.executable, "-m", module, *args], cwd=ROOT, check=True, capture_output=True, timeout=600
    )


@pytest.mark.slow
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


def test_demo_refuses_a_folder_that_holds_files(tmp_path, capsys):
    from tcupgan.cli.main import main

    (tmp_path / "old.txt").write_text("keep me")
    assert main(["demo", "--out", str(tmp_path), "--quick"]) == 2
    assert (
        "already holds files" in capsys.readouterr().err and (tmp_path / "old.txt").read_text() == "keep me"
    )
