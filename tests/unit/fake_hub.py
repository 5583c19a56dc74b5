"""A local stand-in for the Hugging Face Hub on 127.0.0.1, serving model directories in the Hub's shape.

It answers what ``huggingface_hub.snapshot_download`` asks: the revision info, the recursive tree listing
(with git blob ids and LFS sha256), HEAD metadata and ranged GETs of ``/{repo}/resolve/{rev}/{path}``.
Faults are injected per file: ``drop_after[path] = n`` closes the connection after n bytes of the next
full GET (the client resumes with a Range request), ``corrupt[path] = k`` flips a byte in the next k
responses while advertising the right checksum.
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _git_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class Repo:
    files: dict[str, bytes]

    @property
    def lfs(self) -> set[str]:  # big binaries live in LFS on the Hub
        return {p for p in self.files if p.endswith(".onnx")}


@dataclass
class FakeHub:
    repos: dict[str, Repo] = field(default_factory=dict)
    drop_after: dict[str, int] = field(default_factory=dict)
    corrupt: dict[str, int] = field(default_factory=dict)
    requests: list[tuple[str, str, str | None]] = field(default_factory=list)  # method, path, Range
    _server: ThreadingHTTPServer | None = None

    def add_model_dir(self, repo_id: str, directory: Path) -> None:
        files = {
            p.relative_to(directory).as_posix(): p.read_bytes() for p in directory.rglob("*") if p.is_file()
        }
        files["README.md"] = b"test model\n"
        files["visual/rk3588/model.rknn"] = b"not for this hardware"
        self.repos[repo_id] = Repo(files)

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def gets(self, suffix: str = "") -> list[tuple[str, str, str | None]]:
        return [r for r in self.requests if r[0] == "GET" and "/resolve/" in r[1] and r[1].endswith(suffix)]

    def start(self) -> FakeHub:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_HEAD(self) -> None:
                self._serve(head=True)

            def do_GET(self) -> None:
                self._serve(head=False)

            def _json(self, body: object, status: int = 200) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _not_found(self, kind: str = "Repo") -> None:
                data = b'{"error": "not found"}'
                self.send_response(404)
                self.send_header("X-Error-Code", f"{kind}NotFound")
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _serve(self, head: bool) -> None:
                path = unquote(urlsplit(self.path).path)
                hub.requests.append((self.command, path, self.headers.get("Range")))
                if path.startswith("/api/models/"):
                    self._api(path[len("/api/models/") :])
                    return
                if "/resolve/" not in path:
                    self._not_found()
                    return
                repo_id, rest = path.lstrip("/").split("/resolve/", 1)
                repo = hub.repos.get(repo_id)
                if repo is None:
                    self._not_found()
                    return
                _rev, name = rest.split("/", 1)
                if name not in repo.files:
                    self._not_found("Entry")
                    return
                self._file(repo, name, head)

            def _api(self, rest: str) -> None:
                for marker in ("/revision/", "/tree/"):
                    if marker in rest:
                        repo_id = rest.split(marker, 1)[0]
                        break
                else:
                    repo_id = rest
                repo = hub.repos.get(repo_id)
                if repo is None:
                    self._not_found()
                    return
                if "/tree/" in rest:
                    self._json(
                        [
                            {
                                "type": "file",
                                "path": name,
                                "size": len(data),
                                "oid": _git_sha1(data),
                                **(
                                    {
                                        "lfs": {
                                            "oid": hashlib.sha256(data).hexdigest(),
                                            "size": len(data),
                                            "pointerSize": 134,
                                        }
                                    }
                                    if name in repo.lfs
                                    else {}
                                ),
                            }
                            for name, data in sorted(repo.files.items())
                        ]
                    )
                    return
                self._json(
                    {
                        "id": repo_id,
                        "modelId": repo_id,
                        "sha": COMMIT,
                        "private": False,
                        "siblings": [{"rfilename": n} for n in sorted(repo.files)],
                    }
                )

            def _file(self, repo: Repo, name: str, head: bool) -> None:
                data = repo.files[name]
                etag = hashlib.sha256(data).hexdigest() if name in repo.lfs else _git_sha1(data)
                start = 0
                rng = self.headers.get("Range")
                if rng and rng.startswith("bytes="):
                    start = int(rng[len("bytes=") :].split("-", 1)[0])
                body = data[start:]
                corrupt = not head and hub.corrupt.get(name, 0) > 0
                if corrupt:
                    hub.corrupt[name] -= 1
                    body = bytes([body[0] ^ 0xFF]) + body[1:]
                self.send_response(206 if start else 200)
                self.send_header("X-Repo-Commit", COMMIT)
                self.send_header("ETag", f'"{etag}"')
                if name in repo.lfs:
                    self.send_header("X-Linked-Etag", f'"{etag}"')
                    self.send_header("X-Linked-Size", str(len(data)))
                self.send_header("Accept-Ranges", "bytes")
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if head:
                    return
                drop = hub.drop_after.pop(name, None) if start == 0 else None
                if drop is not None:
                    self.wfile.write(body[:drop])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(2)  # socket.SHUT_RDWR: the client sees a truncated body
                    return
                self.wfile.write(body)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
