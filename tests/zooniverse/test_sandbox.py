"""The sandbox itself: state survives restarts, tokens expire and are renewed, the command prints how to
connect, and it refuses what Panoptes refuses."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import requests
from panoptes_client import Panoptes, Project, Subject, SubjectSet
from panoptes_client.panoptes import PanoptesAPIException

from tcupgan.zooniverse.testing.sandbox import Sandbox
from tcupgan.zooniverse.upload import upload_subjects


def test_state_persists_across_restarts(tmp_path, subjects, monkeypatch):
    with Sandbox(tmp_path / "state") as first:
        user, password = first.owner_credentials()
        monkeypatch.setenv("PANOPTES_USERNAME", user)
        monkeypatch.setenv("PANOPTES_PASSWORD", password)
        upload_subjects(subjects, first.project_id, "kept", endpoint=first.endpoint, backoff=0)
    with Sandbox(tmp_path / "state") as second:
        assert second.owner_credentials() == (user, password)
        with Panoptes(endpoint=second.endpoint, username=user, password=password):
            (subject_set,) = SubjectSet.where(project_id=second.project_id, display_name="kept")
            found = list(Subject.where(subject_set_id=subject_set.id, page_size=100))
            assert len(found) == 32
            assert requests.head(next(iter(found[0].locations[0].values())), timeout=10).status_code == 200
        again = upload_subjects(subjects, second.project_id, "kept", endpoint=second.endpoint, backoff=0)
        assert again.created == 0 and again.already_uploaded == 32


def test_short_lived_tokens_are_renewed(tmp_path, subjects, monkeypatch):
    with Sandbox(tmp_path / "state", token_ttl=60) as sandbox:  # under the client's 2-minute margin
        user, password = sandbox.owner_credentials()
        monkeypatch.setenv("PANOPTES_USERNAME", user)
        monkeypatch.setenv("PANOPTES_PASSWORD", password)
        report = upload_subjects(subjects, sandbox.project_id, "s", endpoint=sandbox.endpoint, backoff=0)
        assert report.linked == 32 and len(sandbox.state.data["tokens"]) > 10


def test_panoptes_rules_are_enforced(sandbox):
    user, password = sandbox.owner_credentials()
    with pytest.raises(PanoptesAPIException, match="Invalid login"):
        Panoptes(endpoint=sandbox.endpoint, username=user, password="wrong")
    base = f"{sandbox.endpoint}/api"
    headers = {"Accept": "application/vnd.api+json; version=1", "Content-Type": "application/json"}
    anonymous = requests.post(f"{base}/subject_sets", json={"subject_sets": {}}, headers=headers, timeout=10)
    assert anonymous.status_code == 401 and anonymous.json()["errors"][0]["message"]
    with Panoptes(endpoint=sandbox.endpoint, username=user, password=password) as client:
        project = Project.find(sandbox.project_id)
        assert Project.find(slug="tcupgan-owner/tcupgan-sandbox").id == project.id
        subject_set = SubjectSet()
        subject_set.links.project = project
        subject_set.display_name = "rules"
        subject_set.save()
        with pytest.raises(PanoptesAPIException, match="without repeats"):
            client.post(f"/subject_sets/{subject_set.id}/links/subjects", json={"subjects": ["1", "1"]})
        with pytest.raises(PanoptesAPIException, match="Couldn't find"):
            client.post(f"/subject_sets/{subject_set.id}/links/subjects", json={"subjects": ["99999"]})
        with pytest.raises(PanoptesAPIException, match="If-Match"):
            client.delete(f"/subject_sets/{subject_set.id}")
        with pytest.raises(PanoptesAPIException, match="Precondition Failed"):
            client.delete(f"/subject_sets/{subject_set.id}", etag='W/"stale"')
        subject_set.display_name = "renamed"
        subject_set.save()  # PUT with the ETag the client kept
        assert SubjectSet.find(subject_set.id).display_name == "renamed"
        with pytest.raises(PanoptesAPIException, match="MIME"):
            client.post(
                "/subjects",
                json={"subjects": {"locations": ["image/tiff"], "links": {"project": project.id}}},
            )


def test_sandbox_command_prints_how_to_connect(tmp_path):
    env = {**os.environ, "NO_PROXY": "127.0.0.1,localhost"}
    cmd = [sys.executable, "-m", "tcupgan.cli.main", "sandbox", "--port", "0", "--state", str(tmp_path / "s")]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env)
    try:
        lines = [proc.stdout.readline() for _ in range(6)]  # the banner; the last names volunteers
        assert "volunteer accounts" in lines[-1]
        exports = dict(
            item.split("=", 1)
            for line in lines
            if "export" in line
            for item in line.split()[1:]
            if "=" in item
        )
        with Panoptes(endpoint=exports["PANOPTES_ENDPOINT"], username=exports["PANOPTES_USERNAME"],
                      password=exports["PANOPTES_PASSWORD"]):  # fmt: skip
            assert Project.find(lines[1].split()[1].rstrip(",")).display_name == "tcupgan sandbox"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
