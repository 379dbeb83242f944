"""A local stand-in of the Hugging Face hub's file endpoint (`/<repo>/resolve/main/<file>`) for the online-engine tests.

Serves ETag and X-Repo-Commit as the hub does, honours Range (resume), and can fail the first requests
of a file with 503 (retries). Point HF_ENDPOINT at it.
"""
from __future__ import annotations

import contextlib
import hashlib
import http.server
import threading
from typing import ClassVar, Iterator


class Hub(http.server.BaseHTTPRequestHandler):
    """Files of one repo; `log` records (method, file, Range) of every request."""

    prefix: ClassVar[str] = ""
    files: ClassVar[dict[str, bytes]] = {}
    log: ClassVar[list[tuple[str, str, str]]] = []
    fail_first: ClassVar[dict[str, int]] = {}

    def _empty(self, code: int) -> None:
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _serve(self, body: bool) -> None:
        name = self.path.split("?")[0][len(self.prefix):] if self.path.startswith(self.prefix) else None
        self.log.append((self.command, name or self.path, self.headers.get("Range", "")))
        if self.fail_first.get(name, 0) > 0:
            self.fail_first[name] -= 1
            return self._empty(503)
        if name not in self.files:
            return self._empty(404)
        data, start = self.files[name], 0
        rng = self.headers.get("Range", "")
        if rng.startswith("bytes=") and body:
            start = int(rng[6:].split("-")[0])
        self.send_response(206 if start else 200)
        self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
        self.send_header("X-Repo-Commit", "c" * 40)
        self.send_header("Content-Length", str(len(data) - start))
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.end_headers()
        if body:
            self.wfile.write(data[start:])

    def do_HEAD(self):  # noqa: N802 - http.server's method names
        self._serve(False)

    def do_GET(self):  # noqa: N802
        self._serve(True)

    def log_message(self, *args):
        pass


@contextlib.contextmanager
def serve(repo: str, files: dict[str, bytes]) -> Iterator[str]:
    """Serve `files` of `repo` on a free local port; yield the endpoint URL."""
    Hub.prefix, Hub.files, Hub.log, Hub.fail_first = f"/{repo}/resolve/main/", dict(files), [], {}
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
