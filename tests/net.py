"""Network stand-ins for the client's tests: a port nothing listens on, one that accepts and never answers, and
an HTTP server that is not eventctl."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def unused_port() -> int:
    """A port nothing listens on (bound a moment, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def silent_port() -> Iterator[int]:
    """A port that accepts connections (the kernel's backlog does) and never answers a byte."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(64)
        yield int(silent.getsockname()[1])


# path -> (status, headers, body) that the foreign server answers with
FOREIGN_ANSWERS: dict[str, tuple[int, dict[str, str], bytes]] = {
    "/html/": (200, {"Content-Type": "text/html"}, b"<!DOCTYPE html>\n<html><body>\n<h1>Hello</h1>\n</body></html>\n"),
    "/redirect/": (302, {"Location": "https://login.example/"}, b""),
    "/empty/": (204, {}, b""),
    "/plain-404/": (404, {"Content-Type": "text/plain"}, b"Not Found"),
}


class _Foreign(BaseHTTPRequestHandler):
    def _answer(self) -> None:
        prefix = "/" + self.path.lstrip("/").split("/", 1)[0] + "/"
        status, headers, body = FOREIGN_ANSWERS.get(prefix, FOREIGN_ANSWERS["/plain-404/"])
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the tests read answers, not logs."""


@contextlib.contextmanager
def foreign_server() -> Iterator[str]:
    """An HTTP server that is not eventctl; its base URL. ``<url>/html`` answers an HTML page, ``/redirect``
    a 302, ``/empty`` a 204, anything else a text/plain 404."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Foreign)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
