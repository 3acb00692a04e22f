"""A local stand-in for the Hugging Face Hub, for dataset repositories, on 127.0.0.1.

It speaks the part of the hub's HTTP API that `huggingface_hub` (HfApi, HfFileSystem,
hf_hub_download) and `datasets.load_dataset` use, so the unchanged loading code reaches it through
the client's own setting `HF_ENDPOINT=http://127.0.0.1:<port>`:

  HEAD/GET  /datasets/<repo>/resolve/<revision>/<path>        a file (Range requests too)
  GET       /api/datasets/<repo>[/revision/<revision>]          repository info (sha, siblings)
  GET       /api/datasets/<repo>/tree/<revision>[/<path>]       a folder listing (?recursive=)
  POST      /api/datasets/<repo>/paths-info/<revision>          info on given paths (form `paths`)

Errors carry the hub's `X-Error-Code` header (RepoNotFound, RevisionNotFound, EntryNotFound), which
is what huggingface_hub turns into RepositoryNotFoundError, RevisionNotFoundError, EntryNotFoundError.
A revision is a branch or ref name (`main`, `refs/convert/parquet`, URL-quoted by the client) or a
full commit sha. Every request is recorded (`HubStore.requests`) so tests can show the data came
through this API. Nothing else of the hub (auth, uploads, xet storage) is implemented.
"""

from __future__ import annotations

import hashlib
import json
import threading
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Repo:
    refs: dict[str, str] = field(default_factory=dict)  # branch/ref name -> commit sha
    commits: dict[str, dict[str, bytes]] = field(default_factory=dict)  # sha -> {path: content}


class HubError(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


class HubStore:
    """Dataset repositories: commits of {path: bytes}, and refs pointing at them."""

    def __init__(self):
        self.repos: dict[str, Repo] = {}
        self.requests: list[tuple[str, str]] = []
        self._lock = threading.Lock()

    def commit(self, repo_id: str, files: dict[str, bytes], refs: tuple[str, ...] = ("main",),
               sha: str | None = None) -> str:
        """Store a commit and point `refs` at it; the sha is derived from the content unless given
        (a replica of a pinned hub commit keeps the hub's sha)."""
        if sha is None:
            digest = hashlib.sha1(repo_id.encode())
            for path in sorted(files):
                digest.update(path.encode() + b"\0" + hashlib.sha1(files[path]).digest())
            sha = digest.hexdigest()
        with self._lock:
            repo = self.repos.setdefault(repo_id, Repo())
            repo.commits[sha] = dict(files)
            for ref in refs:
                repo.refs[ref] = sha
        return sha

    def resolve(self, repo_id: str, revision: str) -> tuple[str, dict[str, bytes]]:
        repo = self.repos.get(repo_id)
        if repo is None:
            raise HubError("RepoNotFound", f"Repository {repo_id} not found")
        sha = repo.refs.get(revision) or (revision if revision in repo.commits else None)
        if sha is None:
            raise HubError("RevisionNotFound", f"Invalid rev id: {revision}")
        return sha, repo.commits[sha]


def _oid(data: bytes) -> str:  # git blob id, as the hub reports it
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _entry(path: str, files: dict[str, bytes]) -> dict | None:
    if path in files:
        data = files[path]
        entry = {"type": "file", "oid": _oid(data), "size": len(data), "path": path}
        if not path.endswith((".md", ".py", ".json", ".yaml", ".gitattributes")):
            # data files live in LFS on the hub
            entry["lfs"] = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 134}
        return entry
    prefix = path.rstrip("/") + "/"
    if path == "" or any(p.startswith(prefix) for p in files):
        return {"type": "directory", "oid": hashlib.sha1(prefix.encode()).hexdigest(), "path": path.rstrip("/")}
    return None


def _tree(files: dict[str, bytes], path: str, recursive: bool) -> list[dict]:
    prefix = path.rstrip("/") + "/" if path else ""
    entries: dict[str, dict] = {}
    for name in sorted(files):
        if not name.startswith(prefix):
            continue
        parts = name[len(prefix):].split("/")
        depth = len(parts) if recursive else 1
        for i in range(1, min(depth, len(parts)) + 1):
            sub = prefix + "/".join(parts[:i])
            if sub not in entries:
                entries[sub] = _entry(sub, files)
    return [entries[k] for k in sorted(entries)]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    store: HubStore  # set on the subclass made per server

    def log_message(self, *args):  # quiet: requests are recorded in the store instead
        pass

    # -- plumbing ------------------------------------------------------------------------------
    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None,
              content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, obj, status: int = 200, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(obj).encode(), headers)

    def _error(self, err: HubError) -> None:
        status = 401 if err.code == "RepoNotFound" else 404
        self._json({"error": str(err)}, status, {"X-Error-Code": err.code, "X-Error-Message": str(err)})

    def _route(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        self.store.requests.append((self.command, url.path))
        parts = [urllib.parse.unquote(p) for p in url.path.split("/") if p]
        query = urllib.parse.parse_qs(url.query)
        try:
            if parts[:2] == ["api", "datasets"] and len(parts) >= 4:
                self._api(f"{parts[2]}/{parts[3]}", parts[4:], query)
            elif parts[:1] == ["datasets"] and len(parts) >= 6 and parts[3] == "resolve":
                self._file(f"{parts[1]}/{parts[2]}", parts[4], "/".join(parts[5:]))
            else:
                self._json({"error": f"not served by the replica hub: {url.path}"}, 404)
        except HubError as err:
            self._error(err)

    # -- endpoints -----------------------------------------------------------------------------
    def _api(self, repo_id: str, rest: list[str], query: dict) -> None:
        if not rest or rest[0] == "revision":
            sha, files = self.store.resolve(repo_id, rest[1] if len(rest) > 1 else "main")
            self._json({"_id": sha[:24], "id": repo_id, "author": repo_id.split("/")[0], "sha": sha,
                        "private": False, "gated": False, "disabled": False, "downloads": 0, "likes": 0,
                        "tags": [], "lastModified": "2024-01-01T00:00:00.000Z",
                        "createdAt": "2022-01-01T00:00:00.000Z",
                        "siblings": [{"rfilename": p} for p in sorted(files)]})
        elif rest[0] == "tree" and len(rest) >= 2:
            sha, files = self.store.resolve(repo_id, rest[1])
            path = "/".join(rest[2:])
            if path and _entry(path, files) is None:
                raise HubError("EntryNotFound", f"{path} does not exist on {rest[1]}")
            recursive = query.get("recursive", ["false"])[0].lower() == "true"
            self._json(_tree(files, path, recursive))
        elif rest[0] == "paths-info" and len(rest) >= 2 and self.command == "POST":
            sha, files = self.store.resolve(repo_id, rest[1])
            length = int(self.headers.get("Content-Length") or 0)
            form = urllib.parse.parse_qs(self.rfile.read(length).decode())
            found = [_entry(p, files) for p in form.get("paths", [])]
            self._json([e for e in found if e is not None])
        else:
            self._json({"error": f"not served by the replica hub: {rest}"}, 404)

    def _file(self, repo_id: str, revision: str, path: str) -> None:
        sha, files = self.store.resolve(repo_id, revision)
        if path not in files:
            raise HubError("EntryNotFound", f"{path} does not exist on {revision}")
        data = files[path]
        headers = {"X-Repo-Commit": sha, "ETag": f'"{hashlib.sha256(data).hexdigest()}"',
                   "Accept-Ranges": "bytes"}
        rng = self.headers.get("Range")
        if rng and rng.startswith("bytes=") and self.command == "GET":
            start_s, _, end_s = rng[len("bytes="):].partition("-")
            start = int(start_s or 0)
            end = min(int(end_s), len(data) - 1) if end_s else len(data) - 1
            headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
            self._send(206, data[start:end + 1], headers, "application/octet-stream")
            return
        self._send(200, data, headers, "application/octet-stream")

    do_GET = do_HEAD = do_POST = _route


class HubServer:
    """`HubServer(store).start()` serves `store` on 127.0.0.1 (a free port) from a daemon thread."""

    def __init__(self, store: HubStore):
        handler = type("Handler", (_Handler,), {"store": store})
        self.store = store
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="replica-hub", daemon=True)

    def start(self) -> "HubServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def install() -> HubServer:
    """Start an (empty) replica hub for this test session and point the hub client at it, before
    `datasets` / `huggingface_hub` read their settings at import: HF_ENDPOINT, and HF_HOME in a
    fresh temporary folder (hub and datasets caches, no token). Tests add repositories to
    `server.store` (tests/hub_replicas.py). No test reaches the real hub."""
    import atexit
    import os
    import shutil
    import sys
    import tempfile

    loaded = [m for m in ("datasets", "huggingface_hub") if m in sys.modules]
    if loaded:
        raise RuntimeError(f"install() must run before {', '.join(loaded)} is imported")
    server = HubServer(HubStore()).start()
    home = tempfile.mkdtemp(prefix="xrobust-hf-home-")
    os.environ["HF_ENDPOINT"] = server.endpoint
    os.environ["HF_HOME"] = home
    for var in ("HF_HUB_CACHE", "HF_DATASETS_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_HUB_OFFLINE",
                "HF_DATASETS_OFFLINE", "HF_TOKEN"):
        os.environ.pop(var, None)
    atexit.register(shutil.rmtree, home, ignore_errors=True)
    atexit.register(server.stop)
    return server
