"""The real panoptes-client over loopback HTTP against the sandbox: complete, exactly-once uploads."""

from __future__ import annotations

import csv
import json
import logging

import pytest
import requests
from panoptes_client import Panoptes, Subject, SubjectSet, Workflow

from tcupgan.cli.main import main
from tcupgan.errors import InputError, TcupganError
from tcupgan.zooniverse.upload import LEDGER, SubjectLimitError, upload_subjects


def manifest(folder):
    with open(folder / "manifest.csv") as f:
        return list(csv.DictReader(f))


def server_view(sandbox, folder):
    """What the server holds for the set, listed through the client: tcupgan id → subject, media checked."""
    user, password = sandbox.owner_credentials()
    with Panoptes(endpoint=sandbox.endpoint, username=user, password=password):
        (subject_set,) = SubjectSet.where(project_id=sandbox.project_id, display_name="round-1")
        by_id: dict[str, list] = {}
        for subject in Subject.where(subject_set_id=subject_set.id):
            by_id.setdefault(subject.metadata["#tcupgan_id"], []).append(subject)
        workflow_sets = [s.id for s in Workflow.find(sandbox.workflow_id).links.subject_sets]
    rows = {r["#tcupgan_id"]: r for r in manifest(folder)}
    for tid, found in by_id.items():
        for location, frame in zip(
            found[0].locations, (rows[tid]["frame_0"], rows[tid]["frame_1"]), strict=True
        ):
            media = requests.get(next(iter(location.values())), timeout=10)
            assert media.status_code == 200 and media.content == (folder / frame).read_bytes()
    return by_id, subject_set.id in workflow_sets


def test_upload_creates_each_subject_once_with_media_and_links(sandbox, subjects):
    report = upload_subjects(subjects, sandbox.project_id, "round-1", workflow=sandbox.workflow_id, backoff=0)
    n = len(manifest(subjects))
    assert n == 32 and report.created == n and report.linked == n and report.failed == 0
    by_id, workflow_linked = server_view(sandbox, subjects)
    assert sorted(by_id) == sorted(r["#tcupgan_id"] for r in manifest(subjects))
    assert all(len(v) == 1 for v in by_id.values()) and workflow_linked
    meta = next(iter(by_id.values()))[0].metadata
    assert {"#cube", "#slice", "#store", "#checkpoint", "#frame_width"} <= set(meta)
    again = upload_subjects(subjects, sandbox.project_id, "round-1", workflow=sandbox.workflow_id, backoff=0)
    assert again.created == 0 and again.already_uploaded == n


@pytest.mark.parametrize("workers", [1, 6])
def test_workers_send_every_subject_once_to_the_endpoint_named(sandbox, subjects, monkeypatch, workers):
    """Subjects go out from worker threads: each must reach the endpoint given to upload (not the
    client's default, www.zooniverse.org), exactly once, with the same ledger as one at a time."""
    monkeypatch.delenv("PANOPTES_ENDPOINT")
    report = upload_subjects(subjects, sandbox.project_id, "round-1", endpoint=sandbox.endpoint, backoff=0,
                             workers=workers)  # fmt: skip
    assert report.created == report.linked == 32 and report.failed == report.retried_requests == 0
    by_id, _ = server_view(sandbox, subjects)
    assert len(by_id) == 32 and all(len(v) == 1 for v in by_id.values())
    events = [json.loads(line)["event"] for line in (subjects / LEDGER).read_text().splitlines()]
    assert events.count("created") == events.count("verified") == events.count("linked") == 32


def test_faults_then_rerun_end_with_exactly_one_subject_per_slice(sandbox, subjects, caplog, capsys):
    caplog.set_level(logging.DEBUG)
    sandbox.set_fail_rate(0.5)
    outcomes = []
    for _ in range(20):
        try:
            report = upload_subjects(subjects, sandbox.project_id, "round-1", attempts=2, backoff=0)
        except TcupganError as e:
            outcomes.append(type(e).__name__)
            continue
        outcomes.append("failed" if report.failed else "ok")
        if not report.failed:
            break
    assert outcomes[-1] == "ok" and len(outcomes) > 1, outcomes  # faults did interrupt runs
    sandbox.set_fail_rate(0)
    by_id, _ = server_view(sandbox, subjects)
    assert len(by_id) == 32 and all(len(v) == 1 for v in by_id.values())
    password = sandbox.owner_credentials()[1]
    ledger = (subjects / LEDGER).read_text()
    assert password not in ledger and password not in caplog.text and password not in capsys.readouterr().out
    assert all(json.loads(line)["tcupgan_id"] for line in ledger.splitlines())


def test_lost_ledger_and_duplicates_in_the_set_are_reconciled(sandbox, subjects):
    upload_subjects(subjects, sandbox.project_id, "round-1", backoff=0)
    (subjects / LEDGER).unlink()
    rows = manifest(subjects)
    user, password = sandbox.owner_credentials()
    with Panoptes(endpoint=sandbox.endpoint, username=user, password=password):  # a stray duplicate
        duplicate = Subject()
        duplicate.links.project = sandbox.project_id
        duplicate.add_location(str(subjects / rows[0]["frame_0"]))
        duplicate.metadata.update({"#tcupgan_id": rows[0]["#tcupgan_id"]})
        duplicate.save()
        (subject_set,) = SubjectSet.where(project_id=sandbox.project_id, display_name="round-1")
        subject_set.add(duplicate)
    report = upload_subjects(subjects, sandbox.project_id, "round-1", backoff=0)
    assert report.created == 0 and report.duplicates_removed == 1 and report.recovered_from_set == 32
    by_id, _ = server_view(sandbox, subjects)
    assert len(by_id) == 32 and all(len(v) == 1 for v in by_id.values())


def test_subject_limit_stops_cleanly_and_a_rerun_continues(sandbox, subjects):
    sandbox.server.subject_limit = 10
    with pytest.raises(SubjectLimitError, match="10 subjects of 10 maximum.*rerun"):
        upload_subjects(subjects, sandbox.project_id, "round-1", backoff=0)
    by_id, _ = server_view(sandbox, subjects)
    assert len(by_id) == 10  # created before the 403 and linked, nothing lost
    sandbox.server.subject_limit = None
    report = upload_subjects(subjects, sandbox.project_id, "round-1", backoff=0)
    assert report.already_uploaded == 10 and report.created == 22


def test_dry_run_makes_no_requests_and_bad_folders_fail_first(sandbox, subjects, tmp_path, capsys):
    before = sandbox.server.requests_seen
    assert (
        main(["upload", "--subjects", str(subjects), "--project", "1", "--subject-set", "x", "--dry-run"])
        == 0
    )
    assert "32 would be sent" in capsys.readouterr().out
    assert sandbox.server.requests_seen == before
    (subjects / manifest(subjects)[3]["frame_1"]).unlink()
    with pytest.raises(InputError, match="missing"):
        upload_subjects(subjects, sandbox.project_id, "round-1")
    assert sandbox.server.requests_seen == before
    with pytest.raises(InputError, match="manifest.csv"):
        upload_subjects(tmp_path, sandbox.project_id, "round-1")


def test_wrong_password_is_a_clear_error(sandbox, subjects, monkeypatch):
    monkeypatch.setenv("PANOPTES_PASSWORD", "not-the-password")
    with pytest.raises(TcupganError, match="could not log in") as err:
        upload_subjects(subjects, sandbox.project_id, "round-1")
    assert "not-the-password" not in str(err.value)


@pytest.mark.parametrize("frame", ["../secret.png", "/etc/hostname", "notes.txt"])
def test_a_manifest_naming_files_outside_its_folder_or_not_images_is_refused(sandbox, subjects, frame):
    """Only the subjects folder's own rendered images are uploaded: a manifest edited to name any other
    file is refused before a single request."""
    (subjects.parent / "secret.png").write_bytes(b"private")
    (subjects / "notes.txt").write_text("not an image")
    rows = manifest(subjects)
    rows[0]["frame_0"] = frame
    with open(subjects / "manifest.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    before = sandbox.server.requests_seen
    with pytest.raises(InputError, match="not an image inside"):
        upload_subjects(subjects, sandbox.project_id, "round-1")
    assert sandbox.server.requests_seen == before
