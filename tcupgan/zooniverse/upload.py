"""``tcupgan upload``: send rendered subjects to a Zooniverse subject set, each exactly once.

Panoptes does no duplicate check, and panoptes-client's own retries create duplicates (``Subject.save``
retries any API error, even one raised after the server created the subject) and drop media silently
(failed PUTs are retried, then forgotten). So this module drives the client one request at a time:

1. a ledger (``upload-ledger.jsonl`` beside the manifest) records each ``#tcupgan_id`` → subject id the
   moment the server returns it, and each later step (media verified, linked);
2. every run first lists the subject set and reconciles it with the ledger (a subject linked before a
   crash is recognised by its hidden ``#tcupgan_id``; a duplicate in the set is unlinked and deleted);
3. media are PUT to their signed URLs, a subject's frames in parallel (each PUT waits on storage, not on
   us), and checked (HEAD of the public URL, byte count) before a subject is linked, so a subject never
   reaches volunteers without its images;
4. a 403 subject limit stops the run cleanly: what was created is linked first, and a rerun continues.

A creation whose outcome is unknown (5xx or dropped connection) may leave an unlinked subject on the
server; volunteers never see it (only linked subjects are served) and the summary counts such events.
"""

from __future__ import annotations

import csv
import getpass
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

import requests
from tqdm.auto import tqdm

from tcupgan.data.locks import Busy, file_lock
from tcupgan.errors import InputError, TcupganError, require_extra

__all__ = [
    "upload_subjects",
    "upload_until_complete",
    "UploadReport",
    "SubjectLimitError",
    "Ledger",
    "read_manifest",
    "connect",
]

log = logging.getLogger(__name__)
LEDGER = "upload-ledger.jsonl"
MAX_FRAME_BYTES = 1_000 * 1024
T = TypeVar("T")


class SubjectLimitError(TcupganError):
    """The Zooniverse per-user subject limit was reached (HTTP 403); progress is kept in the ledger."""


class UnknownOutcome(Exception):
    """A write failed in a way that leaves open whether the server did it (5xx, dropped connection)."""


@dataclass
class UploadReport:
    subjects: int = 0
    already_uploaded: int = 0
    created: int = 0
    linked: int = 0
    recovered_from_set: int = 0
    duplicates_removed: int = 0
    media_reuploads: int = 0
    retried_requests: int = 0
    unknown_outcome_creates: int = 0
    failed: int = 0
    subject_set: str = ""
    dry_run: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# --------------------------------------------------------------------------------------- inputs
FRAME_SUFFIXES = (".png", ".jpg", ".jpeg")  # what render writes and Zooniverse shows


def read_manifest(subjects_dir: str | os.PathLike) -> list[dict[str, str]]:
    """Rows of ``manifest.csv``, checked before any request: ids unique, frames present and small enough."""
    folder = Path(subjects_dir)
    path = folder / "manifest.csv"
    if not path.is_file():
        raise InputError(f"no manifest.csv in '{folder}'; run `tcupgan render` first")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or "#tcupgan_id" not in rows[0]:
        raise InputError(f"'{path}' has no #tcupgan_id column; re-run `tcupgan render`")
    ids = [r["#tcupgan_id"] for r in rows]
    if len(set(ids)) != len(ids):
        raise InputError(f"'{path}' repeats a #tcupgan_id; re-run `tcupgan render`")
    for row in rows:
        for frame in _frames(row):
            file = folder / frame
            if folder.resolve() not in file.resolve().parents or file.suffix.lower() not in FRAME_SUFFIXES:
                raise InputError(
                    f"frame '{frame}' in '{path}' is not an image inside '{folder}': only the rendered "
                    f"frames ({', '.join(FRAME_SUFFIXES)}) of the subjects folder are uploaded"
                )
            if not file.is_file():
                raise InputError(f"frame '{frame}' listed in the manifest is missing from '{folder}'")
            if file.stat().st_size > MAX_FRAME_BYTES:
                raise InputError(f"frame '{frame}' is over Zooniverse's 1,000 KB limit; re-render it")
    return rows


def _frames(row: dict[str, str]) -> list[str]:
    keys = sorted((k for k in row if k.startswith("frame_") and row[k]), key=lambda k: int(k[6:]))
    return [row[k] for k in keys]


class Ledger:
    """Append-only JSON lines: one event per line, fsynced, so a crash loses at most the line in flight.

    Events carry the destination (endpoint, project, subject set) so one folder can go to several.
    """

    def __init__(self, path: str | os.PathLike, destination: dict[str, str]) -> None:
        self.path, self.destination = Path(path), destination
        self.state: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()  # upload workers record from several threads
        if self.path.exists():
            for number, line in enumerate(self.path.read_text().splitlines(), 1):
                try:
                    event = json.loads(line)
                except json.JSONDecodeError:  # a line torn by a crash: the events before it still count
                    log.warning("ledger %s line %d is unreadable; ignoring it", self.path, number)
                    continue
                if all(event.get(k) == v for k, v in destination.items()):
                    self._apply(event)

    def _apply(self, event: dict[str, Any]) -> None:
        tid = event["tcupgan_id"]
        if event["event"] == "deleted":
            self.state.pop(tid, None)
        else:
            self.state.setdefault(tid, {}).update(subject_id=event["subject_id"], status=event["event"])

    def record(self, tcupgan_id: str, event: str, subject_id: str) -> None:
        entry = {**self.destination, "tcupgan_id": tcupgan_id, "event": event, "subject_id": str(subject_id),
                 "at": time.strftime("%Y-%m-%dT%H:%M:%S")}  # fmt: skip
        with self._lock, open(self.path, "a") as f:
            f.write(json.dumps(entry) + "\n")
            f.flush()
            os.fsync(f.fileno())
            self._apply(entry)

    def status(self, tcupgan_id: str) -> str | None:
        return self.state.get(tcupgan_id, {}).get("status")

    def subject(self, tcupgan_id: str) -> str | None:
        return self.state.get(tcupgan_id, {}).get("subject_id")


# ---------------------------------------------------------------------------------- connection
def connect(endpoint: str | None = None) -> None:
    """Log in with ``PANOPTES_USERNAME``/``PANOPTES_PASSWORD`` or a prompt; nothing is written anywhere."""
    require_extra("panoptes_client", "zooniverse", "talking to Zooniverse")
    from panoptes_client import Panoptes
    from panoptes_client.panoptes import PanoptesAPIException

    username = os.environ.get("PANOPTES_USERNAME")
    password = os.environ.get("PANOPTES_PASSWORD")
    if not username or not password:
        if not os.isatty(0):
            raise InputError("set PANOPTES_USERNAME and PANOPTES_PASSWORD (or run in a terminal to be asked)")
        username = username or input("Zooniverse username: ")
        password = getpass.getpass("Zooniverse password: ")
    endpoint = endpoint or os.environ.get("PANOPTES_ENDPOINT", "https://www.zooniverse.org")
    try:
        Panoptes.connect(username=username, password=password, endpoint=endpoint)
    except (PanoptesAPIException, requests.RequestException, KeyError) as e:
        raise TcupganError(f"could not log in to {endpoint} as '{username}': {e}") from None


def _classify(error: Exception) -> Exception:
    """Sort a failed request into: subject limit, unknown outcome (retry after checking), or definite."""
    text = str(error)
    if "subjects of" in text and "maximum" in text:
        return SubjectLimitError(
            f"Zooniverse refused more subjects ({text}). Nothing is lost: ask the Zooniverse team "
            "(contact@zooniverse.org) to raise your limit, then rerun the same command to continue."
        )
    if isinstance(error, requests.RequestException) or "status code 5" in text or "stale" in text.lower():
        return UnknownOutcome(text)
    return error


class Uploader:
    """One upload run; see the module docstring for the steps. Use :func:`upload_subjects`."""

    def __init__(self, folder: Path, ledger: Ledger, attempts: int, backoff: float) -> None:
        self.folder, self.ledger, self.attempts, self.backoff = folder, ledger, attempts, backoff
        self.report = UploadReport()
        self.verified: list[str] = []  # verified, not yet linked (the main thread links them)
        self._count_lock = threading.Lock()  # subjects and their media are sent from worker threads

    def count(self, name: str, n: int = 1) -> None:
        """Add to one of the report's counters (thread-safe)."""
        with self._count_lock:
            setattr(self.report, name, getattr(self.report, name) + n)

    def retry(self, what: str, action: Callable[[], T], recover: Callable[[], T | None] | None = None) -> T:
        """Run ``action``; after an unknown outcome ask ``recover`` whether the write happened."""
        for attempt in range(1, self.attempts + 1):
            try:
                return action()
            except Exception as e:  # noqa: BLE001 - sorted by _classify, re-raised unless retryable
                error = _classify(e)
                if not isinstance(error, UnknownOutcome):
                    raise error from e
                self.count("retried_requests")
                log.info("%s failed (%s); attempt %d of %d", what, error, attempt, self.attempts)
                if attempt == self.attempts:
                    raise TcupganError(
                        f"{what} kept failing ({error}); rerun the command later to continue"
                    ) from e
                time.sleep(self.backoff * attempt)
                if recover is not None and (found := recover()) is not None:
                    return found
        raise AssertionError("unreachable")

    # ------------------------------------------------------------------------------- set level
    def find_or_create_set(self, project: Any, name: str) -> Any:
        from panoptes_client import SubjectSet

        def find() -> Any:
            return next(iter(SubjectSet.where(project_id=project.id, display_name=name)), None)

        def create() -> Any:
            subject_set = SubjectSet()
            subject_set.links.project = project
            subject_set.display_name = name
            subject_set.save()
            return subject_set

        return find() or self.retry(f"creating subject set '{name}'", create, recover=find)

    def reconcile(self, subject_set: Any) -> set[str]:
        """Ids already linked to the set (by ``#tcupgan_id``), removing duplicates; the ledger follows."""
        from panoptes_client import Subject

        found: dict[str, list[str]] = {}
        for subject in Subject.where(subject_set_id=subject_set.id, page_size=100):
            tid = (subject.metadata or {}).get("#tcupgan_id")
            if tid:
                found.setdefault(tid, []).append(str(subject.id))
        for tid, ids in found.items():
            keep = self.ledger.subject(tid) if self.ledger.subject(tid) in ids else min(ids, key=int)
            extra = [i for i in ids if i != keep]
            if extra:
                self.retry("unlinking duplicates", lambda e=extra: subject_set.remove(e))
                for sid in extra:
                    self._delete(sid)
                self.report.duplicates_removed += len(extra)
            if self.ledger.status(tid) != "linked" or self.ledger.subject(tid) != keep:
                self.ledger.record(tid, "linked", keep)
                self.report.recovered_from_set += 1
        return set(found)

    def link(self, subject_set: Any, pending: list[str]) -> None:
        """POST set-member links directly: ``SubjectSet.add`` spends one GET per subject checking
        membership, which reconcile() already knows, and linking is idempotent on the server."""
        if not pending:
            return
        ids = [self.ledger.subject(t) for t in pending]
        self.retry(
            f"linking {len(ids)} subjects",
            lambda: subject_set.http_post(f"{subject_set.id}/links/subjects", json={"subjects": ids}),
        )
        for tid, sid in zip(pending, ids, strict=True):
            self.ledger.record(tid, "linked", sid)
        self.report.linked += len(ids)
        pending.clear()

    # --------------------------------------------------------------------------- subject level
    def create(self, project: Any, row: dict[str, str]) -> str:
        """One POST /subjects; the id goes to the ledger before the media are sent."""
        from panoptes_client import Subject
        from panoptes_client.panoptes import PanoptesObject

        subject = Subject()
        subject.links.project = project
        for frame in _frames(row):
            subject.add_location(str(self.folder / frame))  # the client's MIME check
        subject.metadata.update({k: v for k, v in row.items() if not k.startswith("frame_")})
        subject.modified_attributes.add("metadata")

        def post() -> Any:
            try:
                return PanoptesObject.save(subject)  # one request: Subject.save's blind retry duplicates
            except Exception as e:
                if isinstance(_classify(e), UnknownOutcome):
                    self.count("unknown_outcome_creates")
                raise

        response = self.retry("creating a subject", post)
        sid = str(response["subjects"][0]["id"])
        self.ledger.record(row["#tcupgan_id"], "created", sid)
        self.count("created")
        self._put_media(response["subjects"][0]["locations"], _frames(row))
        return sid

    def _put_media(self, locations: list[dict[str, str]], frames: list[str]) -> None:
        """PUT every frame of one subject to its signed URL, all at once; the first failure is raised."""

        def put_one(location: dict[str, str], frame: str) -> None:
            (mime, url), = location.items()  # fmt: skip
            data = (self.folder / frame).read_bytes()
            headers = {"Content-Type": mime, "x-ms-blob-type": "BlockBlob"}
            self.retry(
                f"uploading {frame}",
                lambda: requests.put(url, data=data, headers=headers, timeout=120).raise_for_status(),
            )

        with ThreadPoolExecutor(max_workers=max(1, len(frames))) as pool:
            for done in [pool.submit(put_one, loc, f) for loc, f in zip(locations, frames, strict=True)]:
                done.result()

    def media_ok(self, sid: str, frames: list[str]) -> bool:
        """True when every frame is on the server with the right byte count (HEAD of its public URL)."""
        from panoptes_client import Subject
        from panoptes_client.panoptes import PanoptesAPIException

        try:
            subject = Subject.find(sid)
        except PanoptesAPIException:
            return False
        if len(subject.locations) != len(frames):
            return False

        def on_server(location: dict[str, str], frame: str) -> bool:
            try:
                head = self.retry(
                    "checking media", lambda: requests.head(next(iter(location.values())), timeout=60)
                )
            except TcupganError:
                return False
            size = (self.folder / frame).stat().st_size
            return head.status_code == 200 and int(head.headers.get("Content-Length", -1)) == size

        with ThreadPoolExecutor(max_workers=len(frames)) as pool:  # each HEAD waits on the network
            return all(pool.map(on_server, subject.locations, frames))

    def _delete(self, sid: str) -> None:
        from panoptes_client import Subject
        from panoptes_client.panoptes import PanoptesAPIException

        try:
            self.retry("deleting a subject", lambda: Subject.find(sid).delete())
        except (PanoptesAPIException, TcupganError) as e:  # the server may have done it already
            log.info("could not delete subject %s (%s)", sid, e)

    def ensure(self, project: Any, row: dict[str, str]) -> None:
        """Bring one subject to 'verified' (created, images checked), re-creating it if needed."""
        tid, frames = row["#tcupgan_id"], _frames(row)
        sid = self.ledger.subject(tid)
        if sid is not None and self.ledger.status(tid) == "verified":
            return
        for _ in range(self.attempts):
            if sid is None:
                sid = self.create(project, row)
            if self.media_ok(sid, frames):
                self.ledger.record(tid, "verified", sid)
                return
            self.count("media_reuploads")  # never link a subject without its images: start again
            self._delete(sid)
            self.ledger.record(tid, "deleted", sid)
            sid = None
        raise TcupganError(f"subject {tid}: media would not upload; rerun the command later")


def upload_subjects(
    subjects_dir: str | os.PathLike,
    project: str,
    subject_set: str,
    *,
    workflow: str | None = None,
    endpoint: str | None = None,
    dry_run: bool = False,
    batch: int = 500,
    attempts: int = 5,
    backoff: float = 1.0,
    workers: int = 16,
) -> UploadReport:
    """Upload every subject of a rendered folder to ``subject_set`` of ``project`` (id or owner/slug).

    ``workers`` subjects are sent at once (each request waits on the network, not on us); each subject
    is handled by one worker, so the ledger's once-only guarantee holds as in a one-at-a-time run.

    Rerunning after any failure completes the upload without duplicates. ``dry_run`` checks the folder
    and the ledger and says what would be sent, without a single request.
    """
    folder = Path(subjects_dir)
    rows = read_manifest(folder)
    endpoint = endpoint or os.environ.get("PANOPTES_ENDPOINT", "https://www.zooniverse.org")
    destination = {"endpoint": endpoint, "project": str(project), "subject_set": subject_set}
    if dry_run:
        report = UploadReport(subjects=len(rows), subject_set=subject_set, dry_run=True)
        ledger = Ledger(folder / LEDGER, destination)
        report.already_uploaded = sum(ledger.status(r["#tcupgan_id"]) == "linked" for r in rows)
        return report
    # a second upload of this folder at once (a user who thinks the first one hung) refuses at once
    with file_lock(folder / ".upload.lock", wait=False, what=f"uploading {folder}"):
        up = Uploader(folder, Ledger(folder / LEDGER, destination), attempts, backoff)
        up.report.subjects, up.report.subject_set = len(rows), subject_set
        return _send(up, rows, str(project), subject_set, workflow, endpoint, batch, workers)


def _send(up: Uploader, rows: list[dict], project: str, subject_set: str, workflow: str | None,
          endpoint: str, batch: int, workers: int) -> UploadReport:  # fmt: skip
    """The upload itself, under the folder's lock: reconcile with the set, create, link."""
    from panoptes_client import Project, Workflow

    report = up.report
    connect(endpoint)
    project_obj = Project.find(slug=project) if "/" in project else Project.find(project)
    target = up.find_or_create_set(project_obj, subject_set)
    report.subject_set = f"{subject_set} (id {target.id})"
    linked = up.reconcile(target)
    todo = [r for r in rows if r["#tcupgan_id"] not in linked]
    report.already_uploaded = len(rows) - len(todo)
    try:
        _ensure_all(up, project_obj, target, todo, batch, workers)
    finally:
        up.link(target, up.verified)  # what was created is linked even when the run stops early
    if workflow is not None:
        wf = Workflow.find(workflow)
        if target not in wf.links.subject_sets:
            up.retry("linking the set to the workflow", lambda: wf.add_subject_sets(target))
    return report


def _ensure_all(up: Uploader, project: Any, target: Any, todo: list[dict], batch: int, workers: int) -> None:
    """Bring every subject to 'verified' with ``workers`` threads, at most ``2 * workers`` in flight
    (memory stays flat however many subjects), linking each ``batch`` of verified subjects to the set.
    A subject limit stops new work; subjects in flight finish, and the error is raised after."""
    from panoptes_client import Panoptes

    client = Panoptes.client()  # panoptes-client keeps its connection per thread: workers share this one
    pooled = requests.adapters.HTTPAdapter(pool_maxsize=max(10, workers))  # one kept-alive socket per worker
    client.session.mount("https://", pooled)
    client.session.mount("http://", pooled)

    def ensure(row: dict[str, str]) -> None:
        with client:
            up.ensure(project, row)

    limit: SubjectLimitError | None = None
    in_flight: dict[Future, str] = {}
    rows = iter(todo)
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool, tqdm(
        total=len(todo), desc="upload", unit="subject", disable=None
    ) as bar:  # fmt: skip
        while True:
            while limit is None and len(in_flight) < 2 * max(1, workers) and (row := next(rows, None)):
                in_flight[pool.submit(ensure, row)] = row["#tcupgan_id"]
            if not in_flight:
                break
            finished, _ = wait(in_flight, return_when=FIRST_COMPLETED)
            for future in finished:
                tid, error = in_flight.pop(future), future.exception()
                bar.update()
                if isinstance(error, SubjectLimitError):
                    limit = error
                elif isinstance(error, TcupganError):
                    up.count("failed")
                    log.warning("%s", error)
                elif error is not None:
                    raise error
                else:
                    up.verified.append(tid)
            if len(up.verified) >= batch:
                up.link(target, up.verified)
    if limit is not None:
        raise limit


def upload_until_complete(
    subjects_dir: str | os.PathLike, project: str, subject_set: str, *, max_runs: int = 10, **kwargs: Any
) -> tuple[UploadReport | None, list[str]]:
    """Rerun :func:`upload_subjects` after failed runs, as a user would (the ledger makes reruns safe).

    Returns the report of the run that completed (None if none did within ``max_runs``) and how each
    run ended.
    """
    runs: list[str] = []
    for _ in range(max_runs):
        try:
            report = upload_subjects(subjects_dir, project, subject_set, **kwargs)
        except Busy:  # another process is uploading this folder: rerunning would not help
            raise
        except TcupganError as e:
            runs.append(str(e))
            continue
        runs.append("complete" if not report.failed else f"{report.failed} failed")
        if not report.failed:
            return report, runs
    return None, runs
