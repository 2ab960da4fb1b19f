"""``tcupgan sandbox``: a loopback Panoptes API server for tests, the demo and cautious dry runs.

It implements what panoptes-client 1.7 uses for the volunteer loop (login sequence, projects, workflows,
subject sets, subjects with signed media PUT URLs, set-member links, classifications and their CSV
export) with the real server's response shapes, ETags and status codes. State lives in one JSON file
plus media files under ``--state`` and survives restarts. Fault injection imitates what goes wrong in
production: 5xx before or after the write is done, dropped connections, slow answers, 409 stale object.
Only 127.0.0.1 is ever bound: the sandbox is not a server to expose.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import secrets
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tcupgan.zooniverse.testing.exports import classification_rows, write_export

__all__ = ["Sandbox", "SandboxState", "FaultPlan", "ALLOWED_MIME_TYPES", "DRAWING_TOOLS", "workflow_tasks"]

ALLOWED_MIME_TYPES = {"image/png": "png", "image/jpeg": "jpg", "image/gif": "gif", "text/plain": "txt",
                      "application/json": "json"}  # fmt: skip
TYPES = ("users", "projects", "workflows", "subject_sets", "subjects", "set_member_subjects",
         "classifications", "exports")  # fmt: skip
FAULT_KINDS = ("error_before", "error_after", "drop_before", "drop_after", "slow", "stale")


class ApiError(Exception):
    """An error answer: HTTP status and the message Panoptes would send."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class FaultPlan:
    """Which write requests fail and how; seeded, so a failing test replays the same faults."""

    rate: float = 0.0
    seed: int = 0
    kinds: tuple[str, ...] = FAULT_KINDS
    methods: tuple[str, ...] = ("POST", "PUT", "DELETE")
    slow_seconds: float = 0.3
    rng: random.Random = field(init=False)

    def __post_init__(self) -> None:
        unknown = set(self.kinds) - set(FAULT_KINDS)
        if unknown or not 0 <= self.rate <= 1:
            raise ValueError(f"fault kinds must be among {FAULT_KINDS} and 0 <= rate <= 1")
        self.rng = random.Random(self.seed)

    def draw(self, method: str) -> str | None:
        if method not in self.methods or self.rate == 0:
            return None
        return self.rng.choice(self.kinds) if self.rng.random() < self.rate else None


DRAWING_TOOLS = ("polygon", "freehandLine", "rectangle", "rotateRectangle", "circle", "ellipse")


def workflow_tasks(classes: tuple[str, ...]) -> dict[str, dict]:
    """The sandbox workflow: a combo task of a drawing task (every area tool, for each class, labelled
    with the class name) and a question, as a project builder would set it up."""
    tools = [{"type": shape, "label": name, "color": "#00ff00", "details": []}
             for name in classes for shape in DRAWING_TOOLS]  # fmt: skip
    return {
        "T0": {"type": "combo", "tasks": ["T1", "T2"], "next": None},
        "T1": {"type": "drawing", "instruction": "Outline every region; fix the machine's outline.",
               "tools": tools},
        "T2": {"type": "single", "question": "Was the machine's outline right?",
               "answers": [{"label": "yes"}, {"label": "no"}]},
    }  # fmt: skip


class SandboxState:
    """Every object the sandbox knows, persisted to ``state.json`` after each write (atomic rename)."""

    def __init__(self, directory: str | os.PathLike, classes: tuple[str, ...] = ("region",)) -> None:
        self.dir, self.classes = Path(directory), classes
        self.media = self.dir / "media"
        self.media.mkdir(parents=True, exist_ok=True)
        self.lock = threading.RLock()
        path = self.dir / "state.json"
        if path.exists():
            self.data = json.loads(path.read_text())
        else:
            self.data = {"next_id": 1, "objects": {t: {} for t in TYPES}, "uploads": {}, "tokens": {}}
            self._bootstrap()

    def _bootstrap(self) -> None:
        """First start: one owner, three volunteers, a project and a drawing workflow."""
        owner = self.add_user("tcupgan-owner")
        for i in range(1, 4):
            self.add_user(f"volunteer{i}")
        project = self.add("projects", {
            "display_name": "tcupgan sandbox", "slug": "tcupgan-owner/tcupgan-sandbox",
            "links": {"owner": {"id": owner["id"], "type": "users"}, "workflows": [], "subject_sets": []},
        })  # fmt: skip
        workflow = self.add("workflows", {
            "display_name": "Correct the machine", "tasks": workflow_tasks(self.classes), "first_task": "T0",
            "version": "1.1",
            "active": True, "links": {"project": project["id"], "subject_sets": []},
        })  # fmt: skip
        project["links"]["workflows"].append(workflow["id"])
        self.save()

    def add_user(self, login: str) -> dict:
        password = secrets.token_urlsafe(12)
        user = self.add("users", {"login": login, "display_name": login, "uploaded_subjects_count": 0})
        user["_password"] = password
        return user

    # -------------------------------------------------------------------------------- objects
    def add(self, kind: str, fields: dict) -> dict:
        with self.lock:
            obj_id = str(self.data["next_id"])
            self.data["next_id"] += 1
            stamp = _now()
            obj = {"id": obj_id, "created_at": stamp, "updated_at": stamp, "href": f"/{kind}/{obj_id}",
                   "_version": 0, **fields}  # fmt: skip
            self.data["objects"][kind][obj_id] = obj
            return obj

    def get(self, kind: str, obj_id: str) -> dict:
        obj = self.data["objects"].get(kind, {}).get(str(obj_id))
        if obj is None:
            raise ApiError(404, f"Could not find {kind} with id='{obj_id}'")
        return obj

    def touch(self, obj: dict) -> None:
        obj["_version"] += 1
        obj["updated_at"] = _now()

    def etag(self, obj: dict) -> str:
        return 'W/"' + hashlib.sha1(f"{obj['href']}:{obj['_version']}".encode()).hexdigest() + '"'

    def objects(self, kind: str) -> list[dict]:
        return list(self.data["objects"][kind].values())

    def user_by_login(self, login: str) -> dict | None:
        return next((u for u in self.objects("users") if u["login"] == login), None)

    def save(self) -> None:
        with self.lock:
            tmp = self.dir / "state.json.tmp"
            tmp.write_text(json.dumps(self.data))
            os.replace(tmp, self.dir / "state.json")

    def credentials(self) -> dict[str, str]:
        """Login → password of every sandbox account (throwaway accounts of a local test server)."""
        return {u["login"]: u["_password"] for u in self.objects("users")}

    def public(self, kind: str, obj: dict, base: str) -> dict:
        """An object as the API shows it: private fields dropped, media as URLs."""
        out = {k: v for k, v in obj.items() if not k.startswith("_")}
        if kind == "subjects":
            out["locations"] = [{mime: f"{base}/media/{path}"} for mime, path in obj["_media"]]
        if kind == "subject_sets":
            out["set_member_subjects_count"] = len(self.members(obj["id"]))
        if kind == "users":
            out.pop("uploaded_subjects_count", None)
        return out

    def members(self, set_id: str) -> list[dict]:
        return [m for m in self.objects("set_member_subjects") if m["links"]["subject_set"] == set_id]


class Handler(BaseHTTPRequestHandler):
    """One request: route, apply faults, answer JSON the way Panoptes does."""

    server: SandboxServer
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt: str, *args: Any) -> None:  # request lines only: bodies may hold passwords
        if self.server.verbose:
            super().log_message(fmt, *args)

    # ------------------------------------------------------------------------------- plumbing
    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _send(self, status: int, body: Any = None, headers: dict | None = None, raw: bytes | None = None,
              content_type: str = "application/vnd.api+json; version=1") -> None:  # fmt: skip
        data = raw if raw is not None else (b"" if body is None else json.dumps(body).encode())
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        if data:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _drop(self) -> None:
        self.close_connection = True
        self.connection.shutdown(2)

    def _dispatch(self) -> None:
        url = urlsplit(self.path)
        parts = [p for p in url.path.split("/") if p]
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        body = self._body()
        state = self.server.state
        self.server.requests_seen += 1
        fault = None if parts[:1] in (["users"], ["oauth"]) else self.server.faults.draw(self.command)
        if fault == "slow":
            time.sleep(self.server.faults.slow_seconds)
        elif fault == "drop_before":
            return self._drop()
        elif fault == "error_before":
            return self._send(503, {"errors": [{"message": "Service Unavailable"}]})
        elif fault == "stale" and parts[:1] == ["api"] and (self.command == "PUT" or "links" in parts):
            return self._send(409, {"errors": [{"message": "Object is stale, please reload and retry"}]})
        time.sleep(self.server.latency)  # the network and storage far away; outside the lock, as in real life
        try:
            with state.lock:
                status, payload, headers, raw, ctype = self._route(parts, query, body)
                if self.command != "GET" and self.command != "HEAD":
                    state.save()
        except ApiError as e:
            return self._send(e.status, {"errors": [{"message": str(e)}]})
        if fault == "drop_after":
            return self._drop()
        if fault == "error_after":
            return self._send(502, {"errors": [{"message": "Bad Gateway"}]})
        self._send(status, payload, headers, raw, ctype)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _dispatch

    # -------------------------------------------------------------------------------- routing
    def _route(self, parts: list[str], query: dict, body: bytes):
        base = self.server.base_url
        if parts == ["users", "sign_in"]:
            return self._sign_in(body)
        if parts == ["oauth", "token"]:
            return self._token(body)
        if parts[:1] == ["upload"] and self.command == "PUT":
            return self._upload(parts[1], body)
        if parts[:1] == ["media"] and self.command in ("GET", "HEAD"):
            return self._media("/".join(parts[1:]))
        if parts[:1] != ["api"] or len(parts) < 2 or parts[1] not in TYPES:
            raise ApiError(404, f"no route for {self.command} {self.path}")
        kind, rest = parts[1], parts[2:]
        api = SandboxApi(self.server.state, base, self._user(), self.server.subject_limit)
        if self.command == "GET" and kind == "projects" and rest[1:] == ["classifications_export"]:
            return api.describe_export(rest[0])
        if self.command == "POST" and kind == "projects" and rest[1:] == ["classifications_export"]:
            return api.create_export(rest[0])
        if self.command == "GET":
            return api.index(kind, rest[0] if rest else None, query)
        payload = json.loads(body or b"{}")
        if self.command == "POST" and len(rest) == 3 and rest[1] == "links":
            return api.link(kind, rest[0], rest[2], payload)
        if self.command == "DELETE" and len(rest) == 4 and rest[1] == "links":
            return api.unlink(kind, rest[0], rest[2], rest[3].split(","))
        if self.command == "POST" and not rest:
            return api.create(kind, payload)
        if self.command in ("PUT", "DELETE") and len(rest) == 1:
            obj = self.server.state.get(kind, rest[0])
            if "If-Match" not in self.headers:
                raise ApiError(428, "Precondition Required: send If-Match with the object's ETag")
            if self.headers["If-Match"] != self.server.state.etag(obj):
                raise ApiError(412, "Precondition Failed: the object changed; reload it")
            return api.update(kind, obj, payload) if self.command == "PUT" else api.destroy(kind, obj)
        raise ApiError(404, f"no route for {self.command} {self.path}")

    def _user(self) -> dict | None:
        auth = self.headers.get("Authorization", "")
        if not auth.startswith("Bearer "):
            return None
        token = self.server.state.data["tokens"].get(auth[7:])
        if token is None or token["expires"] < time.time():
            raise ApiError(401, "Bearer token expired or unknown; log in again")
        return self.server.state.get("users", token["user"])

    def _session(self) -> str:
        cookie = self.headers.get("Cookie", "")
        return next((c.split("=", 1)[1] for c in cookie.split("; ") if c.startswith("_sandbox_session=")), "")

    def _sign_in(self, body: bytes):
        sessions = self.server.sessions
        if self.command == "GET":
            session, csrf = secrets.token_hex(16), secrets.token_urlsafe(24)
            sessions[session] = {"csrf": csrf, "user": None}
            cookie = f"_sandbox_session={session}; path=/; HttpOnly"
            return 200, {}, {"X-CSRF-Token": csrf, "Set-Cookie": cookie}, None, "application/json"
        data = json.loads(body or b"{}")
        session = sessions.get(self._session())
        if session is None or data.get("authenticity_token") != session["csrf"]:
            raise ApiError(422, "Can't verify CSRF token authenticity")
        login = data.get("user", {})
        user = self.server.state.user_by_login(login.get("login", ""))
        if user is None or not secrets.compare_digest(user["_password"], str(login.get("password", ""))):
            return 401, {"error": "Invalid login or password."}, {}, None, "application/json"
        session["user"] = user["id"]
        public = self.server.state.public("users", user, self.server.base_url)
        return 200, {"users": [public]}, {}, None, "application/json"

    def _token(self, body: bytes):
        form = {k: v[-1] for k, v in parse_qs(body.decode()).items()}
        tokens = self.server.state.data["tokens"]
        if form.get("grant_type") == "refresh_token":
            user = next(
                (t["user"] for t in tokens.values() if t["refresh"] == form.get("refresh_token")), None
            )
        else:
            user = (self.server.sessions.get(self._session()) or {}).get("user")
        if user is None:
            return 401, {"errors": [{"message": "invalid_grant"}]}, {}, None, "application/json"
        access, refresh = secrets.token_hex(24), secrets.token_hex(24)
        tokens[access] = {"user": user, "expires": time.time() + self.server.token_ttl, "refresh": refresh}
        reply = {"access_token": access, "token_type": "Bearer", "expires_in": self.server.token_ttl,
                 "refresh_token": refresh, "scope": "public user project"}  # fmt: skip
        return 200, reply, {}, None, "application/json"

    def _upload(self, token: str, body: bytes):
        state = self.server.state
        target = state.data["uploads"].get(token)
        if target is None:
            raise ApiError(403, "Signature does not match or has expired")
        if self.headers.get("x-ms-blob-type") != "BlockBlob":
            raise ApiError(400, "x-ms-blob-type: BlockBlob is required")
        if self.headers.get("Content-Type") != target["mime"]:
            raise ApiError(400, f"Content-Type must be {target['mime']}")
        path = state.media / target["path"]
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".part")
        tmp.write_bytes(body)
        os.replace(tmp, path)
        return 201, None, {}, None, ""

    def _media(self, rel: str):
        path = (self.server.state.media / rel).resolve()
        if self.server.state.media.resolve() not in path.parents or not path.is_file():
            raise ApiError(404, "BlobNotFound")
        mime = next((m for m, ext in ALLOWED_MIME_TYPES.items() if path.suffix == f".{ext}"), "text/csv")
        return 200, None, {}, path.read_bytes(), mime


class SandboxApi:
    """The object rules of the Panoptes API for one request by ``user`` (None when anonymous)."""

    def __init__(self, state: SandboxState, base: str, user: dict | None, subject_limit: int | None):
        self.state, self.base, self.user, self.subject_limit = state, base, user, subject_limit

    def _reply(self, kind: str, objs: list[dict], meta: dict | None = None, status: int = 200):
        body = {kind: [self.state.public(kind, o, self.base) for o in objs], "links": {}, "meta": meta or {}}
        etag = self.state.etag(objs[0]) if len(objs) == 1 else 'W/"' + hashlib.sha1(
            json.dumps(body, sort_keys=True).encode()).hexdigest() + '"'  # fmt: skip
        return status, body, {"ETag": etag}, None, "application/vnd.api+json; version=1"

    def _need_user(self) -> dict:
        if self.user is None:
            raise ApiError(401, "You must be logged in to access this resource.")
        return self.user

    def _owned_project(self, project_id: Any) -> dict:
        project = self.state.get("projects", str(project_id))
        if project["links"]["owner"]["id"] != self._need_user()["id"]:
            raise ApiError(403, "You are not allowed to edit this project")
        return project

    # ---------------------------------------------------------------------------------- reads
    def index(self, kind: str, ids: str | None, query: dict):
        if ids:
            objs = [self.state.get(kind, i) for i in ids.split(",")]
            return self._reply(kind, objs)
        page, size = int(query.pop("page", 1)), min(int(query.pop("page_size", 20)), 100)
        for key in ("sort", "include", "admin", "fields"):
            query.pop(key, None)
        objs = [o for o in self.state.objects(kind) if self._matches(kind, o, query)]
        if kind == "classifications":  # like Panoptes: a user sees their own classifications only
            objs = [o for o in objs if self.user and o["links"]["user"] == self.user["id"]]
        pages = max(1, -(-len(objs) // size))
        rest = "&".join(f"{k}={v}" for k, v in query.items())
        href = f"/{kind}?page_size={size}" + (f"&{rest}" if rest else "")
        meta = {kind: {"page": page, "page_size": size, "count": len(objs), "page_count": pages,
                       "previous_page": page - 1 or None, "next_page": page + 1 if page < pages else None,
                       "first_href": href, "last_href": f"{href}&page={pages}",
                       "previous_href": f"{href}&page={page - 1}" if page > 1 else None,
                       "next_href": f"{href}&page={page + 1}" if page < pages else None}}  # fmt: skip
        return self._reply(kind, objs[(page - 1) * size : page * size], meta)

    def _matches(self, kind: str, obj: dict, query: dict) -> bool:
        for key, value in query.items():
            if key == "subject_set_id" and kind == "subjects":
                if obj["id"] not in {m["links"]["subject"] for m in self.state.members(value)}:
                    return False
            elif key == "id":
                if obj["id"] not in value.split(","):
                    return False
            elif key in obj:
                if str(obj[key]) != value:
                    return False
            elif key.endswith("_id") and key[:-3] in obj.get("links", {}):
                link = obj["links"][key[:-3]]
                if str(link.get("id") if isinstance(link, dict) else link) != value:
                    return False
            else:
                raise ApiError(400, f"unsupported filter '{key}' on {kind}")
        return True

    # --------------------------------------------------------------------------------- writes
    def create(self, kind: str, payload: dict):
        self._need_user()
        fields = payload.get(kind)
        if not isinstance(fields, dict):
            raise ApiError(422, f"the request body must be {{'{kind}': {{...}}}}")
        links = fields.get("links", {})
        if kind == "subject_sets":
            project = self._owned_project(links.get("project"))
            name = str(fields.get("display_name") or "")
            if not name:
                raise ApiError(422, "Display name can't be blank")
            obj = self.state.add(kind, {"display_name": name, "metadata": fields.get("metadata") or {},
                                        "links": {"project": project["id"], "workflows": []}})  # fmt: skip
            project["links"]["subject_sets"].append(obj["id"])
        elif kind == "subjects":
            obj = self._create_subject(fields, links)
            status, body, headers, raw, ctype = self._reply(kind, [obj], status=201)
            body[kind][0]["locations"] = [
                {mime: self._signed_put_url(path, mime)} for mime, path in obj["_media"]
            ]
            return status, body, headers, raw, ctype
        elif kind == "classifications":
            obj = self._create_classification(fields, links)
        else:
            raise ApiError(405, f"creating {kind} is not supported by the sandbox")
        return self._reply(kind, [obj], status=201)

    def _create_subject(self, fields: dict, links: dict) -> dict:
        user = self._need_user()
        project = self._owned_project(links.get("project"))
        if self.subject_limit is not None and user["uploaded_subjects_count"] >= self.subject_limit:
            raise ApiError(403, f"User has uploaded {user['uploaded_subjects_count']} subjects of "
                                f"{self.subject_limit} maximum")  # fmt: skip
        mimes = fields.get("locations") or []
        if not mimes or any(m not in ALLOWED_MIME_TYPES for m in mimes):
            raise ApiError(422, f"locations must be MIME types among {sorted(ALLOWED_MIME_TYPES)}")
        fields = {"metadata": fields.get("metadata") or {}, "zooniverse_id": None, "external_id": None}
        obj = self.state.add("subjects", {**fields, "links": {"project": project["id"]}})
        obj["_media"] = [
            [m, f"subjects/{obj['id']}/{i}.{ALLOWED_MIME_TYPES[m]}"] for i, m in enumerate(mimes)
        ]
        user["uploaded_subjects_count"] += 1
        return obj

    def _signed_put_url(self, path: str, mime: str) -> str:
        """Like Azure's signed URLs: anyone holding it may PUT this one blob, no bearer token needed."""
        token = secrets.token_urlsafe(18)
        self.state.data["uploads"][token] = {"path": path, "mime": mime}
        return f"{self.base}/upload/{token}?sv=2023-01-03&sp=cw&sig={token[:8]}"

    def _create_classification(self, fields: dict, links: dict) -> dict:
        user = self._need_user()
        workflow = self.state.get("workflows", links.get("workflow"))
        subjects = [self.state.get("subjects", s)["id"] for s in links.get("subjects", [])]
        if not subjects or not isinstance(fields.get("annotations"), list):
            raise ApiError(422, "a classification needs annotations and links.subjects")
        return self.state.add("classifications", {
            "annotations": fields["annotations"], "metadata": fields.get("metadata") or {},
            "completed": bool(fields.get("completed", True)), "workflow_version": workflow["version"],
            "links": {"project": workflow["links"]["project"], "workflow": workflow["id"],
                      "user": user["id"], "subjects": subjects},
        })  # fmt: skip

    def update(self, kind: str, obj: dict, payload: dict):
        fields = payload.get(kind) or {}
        if kind not in ("subjects", "subject_sets"):
            raise ApiError(405, f"updating {kind} is not supported by the sandbox")
        self._owned_project(obj["links"]["project"])
        for key in ("metadata", "display_name"):
            if key in fields and (key in obj):
                obj[key] = fields[key]
        self.state.touch(obj)
        return self._reply(kind, [obj])

    def destroy(self, kind: str, obj: dict):
        if kind not in ("subjects", "subject_sets"):
            raise ApiError(405, f"deleting {kind} is not supported by the sandbox")
        self._owned_project(obj["links"]["project"])
        key = "subject" if kind == "subjects" else "subject_set"
        for member in list(self.state.objects("set_member_subjects")):
            if member["links"][key] == obj["id"]:
                del self.state.data["objects"]["set_member_subjects"][member["id"]]
        del self.state.data["objects"][kind][obj["id"]]
        return 204, None, {}, None, ""

    def link(self, kind: str, obj_id: str, relation: str, payload: dict):
        ids = [str(i) for i in payload.get(relation) or []]
        if len(ids) != len(set(ids)) or not ids:
            raise ApiError(422, f"{relation} must be a non-empty list without repeats")
        if kind == "subject_sets" and relation == "subjects":
            subject_set = self.state.get(kind, obj_id)
            self._owned_project(subject_set["links"]["project"])
            missing = [i for i in ids if i not in self.state.data["objects"]["subjects"]]
            if missing:
                raise ApiError(422, f"Couldn't find all Subjects with ids {missing}")
            present = {m["links"]["subject"] for m in self.state.members(obj_id)}
            for subject in (i for i in ids if i not in present):
                self.state.add("set_member_subjects", {"priority": None, "links": {
                    "subject": subject, "subject_set": obj_id, "retired_workflows": []}})  # fmt: skip
            self.state.touch(subject_set)
            return self._reply(kind, [subject_set])
        if kind == "workflows" and relation == "subject_sets":
            workflow = self.state.get(kind, obj_id)
            self._owned_project(workflow["links"]["project"])
            for set_id in ids:
                subject_set = self.state.get("subject_sets", set_id)
                if set_id not in workflow["links"]["subject_sets"]:
                    workflow["links"]["subject_sets"].append(set_id)
                    subject_set["links"]["workflows"].append(workflow["id"])
            self.state.touch(workflow)
            return self._reply(kind, [workflow])
        raise ApiError(404, f"no link {relation} on {kind}")

    def unlink(self, kind: str, obj_id: str, relation: str, ids: list[str]):
        if kind != "subject_sets" or relation != "subjects":
            raise ApiError(404, f"no link {relation} on {kind}")
        subject_set = self.state.get(kind, obj_id)
        self._owned_project(subject_set["links"]["project"])
        for member in self.state.members(obj_id):
            if member["links"]["subject"] in ids:
                del self.state.data["objects"]["set_member_subjects"][member["id"]]
        self.state.touch(subject_set)
        return 204, None, {}, None, ""

    # -------------------------------------------------------------------------------- exports
    def create_export(self, project_id: str):
        project = self._owned_project(project_id)
        rows = classification_rows(self.state, project["id"])
        export = self.state.add("exports", {"project": project["id"], "ready_at": time.time() + 1.0})
        write_export(rows, self.state.media / "exports" / f"{export['id']}.csv")
        return 201, self._export_media(export), {}, None, "application/json"

    def describe_export(self, project_id: str):
        self._owned_project(project_id)
        exports = [e for e in self.state.objects("exports") if e["project"] == str(project_id)]
        if not exports:
            raise ApiError(404, "No classifications export exists for this project; generate one")
        return 200, self._export_media(exports[-1]), {}, None, "application/json"

    def _export_media(self, export: dict) -> dict:
        ready = time.time() >= export["ready_at"]
        return {"media": [{"id": export["id"], "content_type": "text/csv",
                           "src": f"{self.base}/media/exports/{export['id']}.csv",
                           "metadata": {"state": "ready" if ready else "creating"}}]}  # fmt: skip


class SandboxServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, state: SandboxState, port: int, faults: FaultPlan, subject_limit: int | None,
                 token_ttl: int, verbose: bool, latency: float = 0.0) -> None:  # fmt: skip
        super().__init__(("127.0.0.1", port), Handler)
        self.state, self.faults, self.subject_limit = state, faults, subject_limit
        self.token_ttl, self.verbose, self.latency = token_ttl, verbose, latency
        self.sessions: dict[str, dict] = {}
        self.requests_seen = 0
        self.base_url = f"http://127.0.0.1:{self.server_address[1]}"


class Sandbox:
    """Run the sandbox in a background thread: ``with Sandbox(tmp) as sb: Panoptes.connect(...)``.

    Args:
        state_dir: where state and media persist (reuse it to keep subjects across restarts).
        port: 0 picks a free port.
        fail_rate: share of write requests (POST/PUT/DELETE, media PUTs) that meet a fault.
        seed: seed of the fault draws.
        faults: which fault kinds to draw from (default all of ``FAULT_KINDS``).
        subject_limit: imitate the per-user subject limit (403 beyond it).
        token_ttl: bearer token lifetime in seconds (the client renews two minutes before expiry).
        latency: seconds every request takes, media PUTs included (a network round trip; loopback has
            none; ~0.1-0.3 s to Zooniverse).
        classes: class names, one drawing tool of each shape per class in the workflow (first start).
    """

    def __init__(self, state_dir: str | os.PathLike, port: int = 0, fail_rate: float = 0.0, seed: int = 0,
                 faults: tuple[str, ...] = FAULT_KINDS, subject_limit: int | None = None,
                 token_ttl: int = 7200, verbose: bool = False, latency: float = 0.0,
                 classes: tuple[str, ...] = ("region",)) -> None:  # fmt: skip
        self.state = SandboxState(state_dir, tuple(classes))
        plan = FaultPlan(rate=fail_rate, seed=seed, kinds=tuple(faults))
        self.server = SandboxServer(self.state, port, plan, subject_limit, token_ttl, verbose, latency)
        self._thread: threading.Thread | None = None

    @property
    def endpoint(self) -> str:
        return self.server.base_url

    @property
    def project_id(self) -> str:
        return self.state.objects("projects")[0]["id"]

    @property
    def workflow_id(self) -> str:
        return self.state.objects("workflows")[0]["id"]

    def owner_credentials(self) -> tuple[str, str]:
        return "tcupgan-owner", self.state.credentials()["tcupgan-owner"]

    def set_fail_rate(self, rate: float) -> None:
        self.server.faults.rate = rate

    def start(self) -> Sandbox:
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.state.save()

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
