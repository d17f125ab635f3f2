"""Servers on 127.0.0.1 (a free port) in a thread, for checker and genhash tests.

Subclasses say what to do with one connection in ``handle(conn)``; the loop, the stop flag,
the bounded waits and the tear-down are written once here."""

from __future__ import annotations

import http.server
import socket
import ssl
import threading

DEADLINE = 10.0          # seconds any single server-side wait may take


class LoopbackServer:
    """TCP (``handle(conn)`` per connection) or, with ``kind=SOCK_DGRAM``, UDP
    (``handle_datagram(data, peer)`` per datagram) on 127.0.0.1, served in a thread."""

    def __init__(self, kind: int = socket.SOCK_STREAM) -> None:
        self.errors: list[Exception] = []
        self.stop = threading.Event()
        self.kind = kind
        if kind == socket.SOCK_STREAM:
            self.sock = socket.create_server(("127.0.0.1", 0))
        else:
            self.sock = socket.socket(socket.AF_INET, kind)
            self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)         # poll interval so stop is noticed; not a sleep
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(DEADLINE)
        self.sock.close()
        assert not self.thread.is_alive()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                if self.kind != socket.SOCK_STREAM:
                    self.handle_datagram(*self.sock.recvfrom(65535))
                    continue
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(DEADLINE)
                try:
                    self.handle(conn)
                except (OSError, ssl.SSLError) as exc:   # the client went away: fine here
                    self.errors.append(exc)

    def handle(self, conn: socket.socket) -> None:
        raise NotImplementedError

    def handle_datagram(self, data: bytes, peer) -> None:
        raise NotImplementedError


class OnePageServer:
    """http.server with one page: ``body`` at any path with ``status`` and extra ``headers``;
    the request lines and headers it saw go to ``seen``."""

    def __init__(self, body: bytes = b"<html>healthy</html>\n", status: int = 200,
                 headers: dict[str, str] | None = None) -> None:
        seen = self.seen = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                seen.append((self.requestline, dict(self.headers)))
                self.send_response(status)
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever,
                                       kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(DEADLINE)
