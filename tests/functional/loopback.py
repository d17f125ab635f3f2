"""Servers on 127.0.0.1 (a free port) in a thread, for checker and genhash tests.

Subclasses of LoopbackServer say what to do with one connection in ``handle(conn)``; the
loop, the stop flag, the bounded waits and the tear-down are written once here.
RequestServer answers raw HTTP(S): it reads the request, then a handler replies."""

from __future__ import annotations

import http.server
import socket
import socketserver
import ssl
import sys
import threading
import time

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


class RequestServer:
    """TCP server on 127.0.0.1 (port 0 unless given), a thread per connection: TLS first
    when ``tls`` is a server context (SNI recorded), then the request is read up to CRLF
    CRLF and recorded with the client address, then ``handler(conn, request)`` answers.
    ``handler`` may be swapped while the server runs."""

    def __init__(self, handler, tls=None, read_request=True, port=0):
        self.handler, self.tls, self.read_request = handler, tls, read_request
        self.requests, self.peers, self.sni, self.errors = [], [], [], []
        self.stop = threading.Event()
        if tls is not None:
            tls.sni_callback = lambda sslobj, name, ctx: self.sni.append(name)
        outer = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self):
                outer._handle(self.request, self.client_address)

        class TCPServer(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True

            def handle_error(self, request, client_address):
                outer.errors.append(sys.exc_info()[1])

        self.server = TCPServer(("127.0.0.1", port), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        self.stop.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(DEADLINE)
        assert not self.thread.is_alive()

    def _handle(self, conn, peer):
        conn.settimeout(DEADLINE)
        self.peers.append(peer)
        if self.tls is None:
            return self._talk(conn)
        with self.tls.wrap_socket(conn, server_side=True) as tls:
            self._talk(tls)

    def _talk(self, conn):
        request = b""
        deadline = time.monotonic() + DEADLINE
        while self.read_request and b"\r\n\r\n" not in request and \
                time.monotonic() < deadline:
            data = conn.recv(4096)
            if not data:
                break
            request += data
        self.requests.append(request)
        self.handler(conn, request)
