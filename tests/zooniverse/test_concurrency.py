"""Two tcupgan processes on one store or one subjects folder: nothing lost, nothing doubled."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import numpy as np

from tcupgan.cli.main import main
from tcupgan.data import CubeStore
from tests.zooniverse.test_harvest import row, square
from tests.zooniverse.test_upload import manifest, server_view

SLOW_WRITES = """
import sys, time
from tcupgan.data.store import CubeStore
write = CubeStore.write_array
def slow(self, *args, **kwargs):  # widen the read-modify-write window of a harvest
    time.sleep(1.5)
    return write(self, *args, **kwargs)
CubeStore.write_array = slow
from tcupgan.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


def test_two_harvests_at_once_keep_both_slices(small_store, tmp_path):
    from tcupgan.zooniverse.testing.exports import write_export

    exports = []
    for z, sid in ((0, "101"), (2, "102")):
        rows = [row(f"{sid}{i}", user, [square(20, 20, 60, 60, tool=0, frame=0)], z=z, sid=sid)
                for i, user in enumerate(("ann", "bob", "cyd"))]  # fmt: skip
        exports.append(write_export(rows, tmp_path / f"export-{z}.csv"))
    runs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                SLOW_WRITES,
                "harvest",
                "--export",
                str(export),
                "--store",
                str(small_store),
            ],
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for export in exports
    ]
    errors = [run.communicate(timeout=120)[1] for run in runs]
    assert [run.returncode for run in runs] == [0, 0], errors
    assert CubeStore(small_store)["c"].corrected_slices == [0, 2]
    corrections = CubeStore(small_store)["c"]["corrections"][...]
    assert corrections[0].sum() == corrections[2].sum() == 400 and corrections[1].sum() == 0
    assert any("waiting: another tcupgan process is writing c" in e for e in errors)


def test_a_second_upload_of_the_same_folder_refuses_while_the_first_runs(sandbox, subjects, capsys):
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    first = subprocess.Popen([sys.executable, "-m", "tcupgan.cli.main", "upload", "--subjects", str(subjects),
                              "--project", str(sandbox.project_id), "--subject-set", "round-1"],
                             env=env, stderr=subprocess.PIPE, text=True)  # fmt: skip
    ledger = subjects / "upload-ledger.jsonl"
    deadline = time.monotonic() + 60
    while not (ledger.exists() and ledger.stat().st_size) and time.monotonic() < deadline:
        time.sleep(0.05)  # the first run holds the folder's lock once it records its first subject
    second = main(["upload", "--subjects", str(subjects), "--project", str(sandbox.project_id),
                   "--subject-set", "round-1"])  # fmt: skip
    assert first.wait(timeout=120) == 0, first.stderr.read()
    assert second == 2 and "another tcupgan process is uploading" in capsys.readouterr().err
    by_id, _ = server_view(sandbox, subjects)
    assert sorted(by_id) == sorted(r["#tcupgan_id"] for r in manifest(subjects))
    assert all(len(found) == 1 for found in by_id.values())
    assert np.all([len(found[0].locations) == 2 for found in by_id.values()])
