"""The daemon's own HTTP(S) server for the web face (gevent's WSGI server, bounded).

gevent's pywsgi never times a connection out and accepts until the process runs out of
descriptors: measured before this module, 1,000 trickling clients were held 60 s, a POST
declaring more body than it sent hung for good, and at the descriptor limit the checkers'
own sockets failed ("Too many open files"), so a healthy server was marked DOWN. Here:

- **time**: the request line and headers must arrive within HEADER_TIMEOUT of the
  connection (or, on a kept-alive connection, of the request line) and be at most
  HEADER_BYTES, a declared body within BODY_TIMEOUT of its headers (errors.BodyTimeout,
  which the app answers 408); a kept-alive connection may idle IDLE_TIMEOUT, and every send
  or receive gives up after SOCKET_TIMEOUT (an event-stream reader that stopped reading is
  cut; one whose client closed is ended at once);
- **descriptors**: the soft RLIMIT_NOFILE is raised to the hard limit at start, and the web
  face may hold at most ``connection_limit()`` connections: the limit minus what the checks,
  VRRP and the rest of the daemon may need (``fd_reserve``). When every slot is taken the
  server stops accepting: the clients that wait sit in the kernel's listen backlog and cost
  the daemon no descriptor;
- **counting**: every refusal (a 4xx, a timeout, a full server, a failed TLS handshake) is
  counted by reason (director.state.WEB_REFUSALS); ``view()`` is what /api/v1/state's
  ``web`` and /metrics read.

The pure parts (the reserve, the limit, the refusal of a clear-text admin token) are plain
functions; this module, with hub.py, imports gevent: the server is gevent's.
"""

from __future__ import annotations

import _socket
import errno
import functools
import http.client
import ipaddress
import logging
import resource
import socket
import ssl
import time
from typing import TYPE_CHECKING, Any

import gevent
import gevent.pywsgi
import gevent.ssl

from . import hub
from .errors import BodyTimeout

if TYPE_CHECKING:
    from .state import WebView

log = logging.getLogger("director.web")

HEADER_TIMEOUT = 10.0   # request line + headers (a browser sends them in one packet)
BODY_TIMEOUT = 10.0     # a declared body (at most 64 KiB: web/admin.MAX_BODY)
IDLE_TIMEOUT = 30.0     # a kept-alive connection between requests (Prometheus scrapes
                        # every 15 s by default, the dashboard polls more often)
SOCKET_TIMEOUT = 30.0   # any one send or receive (a reader that stopped reading)
DISCARD_LIMIT = 64 * 1024   # unread body bytes read away to keep a connection alive
HEADER_BYTES = 32 * 1024    # all the headers of a request (http.client alone allows 100
                            # lines of 64 KiB: 6.5 MB a connection)

CONNECTIONS_MAX = 512   # a dashboard, a few API clients and a scraper need a handful
CONNECTIONS_MIN = 4     # even when the reserve leaves less (said in the log)
STREAMS_MAX = 64        # open /api/v1/stream (each is a browser tab with the dashboard)

# Descriptors the daemon may need besides the web face (see fd_reserve).
RESERVE_BASE = 128      # stdio, log, pid, epoll, netlink and nft sockets, scripts' pipes,
                        # mail, a reload reading its files, state files, the listener
RESERVE_PER_CHECKER = 1     # every checker may have an attempt in flight: its socket
RESERVE_PER_WORKER = 3      # a check off the loop may hold more (a MISC_CHECK's pipes)...
CHECK_WORKERS = 256         # ... and check.service.CheckService runs this many at once
RESERVE_PER_INSTANCE = 4    # its receive sockets (per family) and its send sockets


def fd_reserve(config: Any) -> int:
    """Descriptors kept for everything but the web face under ``config``: RESERVE_BASE,
    RESERVE_PER_CHECKER for each checker of each real server (a real server without one
    counts one), RESERVE_PER_WORKER for each check that may run off the loop at once, and
    RESERVE_PER_INSTANCE for each VRRP instance."""
    checkers = sum(max(1, len(real.checkers)) for virtual in config.virtual_servers
                   for real in virtual.real_servers)
    return (RESERVE_BASE + RESERVE_PER_CHECKER * checkers
            + RESERVE_PER_WORKER * min(checkers, CHECK_WORKERS)
            + RESERVE_PER_INSTANCE * len(config.vrrp_instances))


def connection_limit(nofile: int, reserve: int) -> int:
    """The web connections allowed under a descriptor limit of ``nofile``."""
    return max(CONNECTIONS_MIN, min(CONNECTIONS_MAX, nofile - reserve))


def stream_limit(connections: int) -> int:
    """Event streams are long-lived: at most half the connections, so that a room full of
    dashboards cannot take the slots an API call or a scrape needs."""
    return max(1, min(STREAMS_MAX, connections // 2))


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:             # a name: it may resolve to anything
        return False


def clear_text_refusal(host: str, admin: bool, tls: bool, insecure: bool) -> str | None:
    """Why the web face must not start (the admin token would cross a network in clear
    text), or None."""
    if admin and not tls and not insecure and not is_loopback(host):
        return (f"--web {host}: an admin token (--admin-token-file) must not cross a network "
                "in clear text: add --web-tls-cert and --web-tls-key, or --web-insecure "
                "(a lab)")
    return None


def tls_context(cert: str, key: str) -> ssl.SSLContext:
    """A server context with ``cert`` and ``key``; ValueError naming the file that is wrong."""
    for path in (cert, key):
        try:
            with open(path, "rb"):
                pass
        except OSError as exc:
            raise ValueError(f"{path}: {exc.strerror}") from None
    context = gevent.ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert, key)
    except ssl.SSLError as exc:
        probe = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        try:
            probe.load_verify_locations(cafile=cert)
        except ssl.SSLError:
            raise ValueError(f"{cert}: not a PEM certificate ({exc.reason or exc})") from None
        if exc.reason == "KEY_VALUES_MISMATCH":
            raise ValueError(f"{key}: this key does not belong to {cert}") from None
        raise ValueError(f"{key}: not a PEM private key for {cert} "
                         f"({exc.reason or exc})") from None
    return context


def _response(status: str, text: str) -> bytes:
    body = text.encode()
    return (f"HTTP/1.1 {status}\r\nConnection: close\r\nContent-Type: text/plain\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


_REASONS = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
            405: "bad_method", 408: "timeout", 413: "too_large", 414: "too_large",
            431: "too_large"}


class HeadersTooLarge(http.client.HTTPException):
    """Over HEADER_BYTES of headers (answered 431, as http.client's 'over 100 headers')."""


class HeaderBudget:
    """The request's stream as http.client.parse_headers reads it: at most ``left`` bytes."""

    def __init__(self, rfile: Any, left: int) -> None:
        self.rfile = rfile
        self.left = left

    def readline(self, size: int = -1) -> bytes:
        if self.left <= 0:
            raise HeadersTooLarge(f"over {HEADER_BYTES} bytes of headers")
        line = self.rfile.readline(self.left if size < 0 else min(size, self.left))
        self.left -= len(line)
        return line


class HeaderTimeout(ValueError):
    """The request line or headers did not arrive in time (a client error: 408)."""


class TimedInput(gevent.pywsgi.Input):
    """A request body that must arrive by ``deadline`` (monotonic): a read past it raises
    errors.BodyTimeout, which the app answers 408. What the app left unread is read away only
    when small and in time; else the connection is closed (``unfinished``)."""

    __slots__ = ("deadline", "unfinished")

    def __init__(self, *args: Any, deadline: float) -> None:
        super().__init__(*args)
        self.deadline = deadline
        self.unfinished = False

    def _timed(self, read, *args: Any) -> bytes:
        left = self.deadline - time.monotonic()
        if left > 0:
            with gevent.Timeout(left, False):
                return read(*args)
        self.unfinished = True
        raise BodyTimeout(f"the request body did not arrive within {BODY_TIMEOUT:g} s")

    def _do_read(self, *args: Any, **kwargs: Any) -> bytes:
        return self._timed(lambda: super(TimedInput, self)._do_read(*args, **kwargs))

    def _chunked_read(self, *args: Any, **kwargs: Any) -> bytes:
        return self._timed(lambda: super(TimedInput, self)._chunked_read(*args, **kwargs))

    def _discard(self) -> None:
        if self.chunked_input or (self.content_length or 0) - self.position > DISCARD_LIMIT:
            self.unfinished = self.unfinished or self.chunked_input or \
                self.position < (self.content_length or 0)
            return
        try:
            super()._discard()
        except BodyTimeout:
            pass


class Handler(gevent.pywsgi.WSGIHandler):
    """pywsgi's handler with the deadlines and the counting of this module."""

    server: Server
    requests = 0
    header_deadline = 0.0

    def read_requestline(self) -> str:
        wait = HEADER_TIMEOUT if self.requests == 0 else IDLE_TIMEOUT
        with gevent.Timeout(wait, False):
            line = super().read_requestline()
            self.header_deadline = time.monotonic() + HEADER_TIMEOUT
            if self.requests == 0:      # the first request: from the connection's start
                self.header_deadline = self.started + HEADER_TIMEOUT
            self.requests += 1
            return line
        if self.requests == 0:           # a connection that never said anything
            self.server.refused("timeout")
        raise socket.timeout("no request")    # pywsgi closes the connection quietly

    def read_request(self, raw_requestline: str) -> bool:
        left = self.header_deadline - time.monotonic()
        if left <= 0:
            raise HeaderTimeout("headers too slow")
        rfile = self.rfile
        self.rfile = HeaderBudget(rfile, HEADER_BYTES)     # only the headers read it
        try:
            with gevent.Timeout(left, HeaderTimeout("headers too slow")):
                return super().read_request(raw_requestline)
        finally:
            self.rfile = rfile

    def _handle_client_error(self, ex: Exception):
        """A request pywsgi could not parse: one log line, no traceback, a clear 4xx."""
        self.close_connection = True
        if isinstance(ex, HeaderTimeout):
            return "408", _response("408 Request Timeout",
                                    f"the request headers did not arrive within "
                                    f"{HEADER_TIMEOUT:g} s\n")
        log.debug("web.bad_request client=%s error=%.200s", self.client_address, ex)
        if isinstance(ex, http.client.HTTPException):    # over 100 headers, a line too long
            return "431", _response("431 Request Header Fields Too Large",
                                    "too many or too long request headers\n")
        return "400", _response("400 Bad Request", "malformed request\n")

    def handle_one_request(self):
        result = super().handle_one_request()
        if isinstance(result, tuple):       # pywsgi's own answer (400, 408, 414, 431)
            self.server.count_status(int(result[0]), {})
        return result

    def get_environ(self) -> dict:
        environ = super().get_environ()
        self.wsgi_input = TimedInput(self.rfile, self.content_length, self.wsgi_input.socket,
                                     self.wsgi_input.chunked_input,
                                     deadline=time.monotonic() + BODY_TIMEOUT)
        environ["wsgi.input"] = self.wsgi_input      # also for an Upgrade (pywsgi: the socket)
        return environ

    def handle_one_response(self) -> None:
        self.code = 0
        super().handle_one_response()
        self.server.count_status(abs(self.code or 0), self.environ)
        if self.wsgi_input.unfinished:
            self.close_connection = True

    def process_result(self) -> None:
        """An event stream waits for events, not for its client: without a watch on its
        socket, a subscriber that left would hold its slot until the next keep-alive frame
        failed (15 s). A peer's close (EOF, a reset) ends the stream at once."""
        if not any(key.lower() == b"content-type" and value.startswith(b"text/event-stream")
                   for key, value in self.response_headers):
            return super().process_result()
        streaming = gevent.getcurrent()
        fd = self.socket.fileno()
        watcher = gevent.get_hub().loop.io(fd, 1)

        def readable() -> None:            # in the hub: must not block
            watcher.stop()
            if _peer_closed(fd):
                streaming.kill(ConnectionResetError(errno.ECONNRESET, "the client left"),
                               block=False)

        watcher.start(readable)
        try:
            super().process_result()
        finally:
            watcher.stop()
            watcher.close()

    def handle_error(self, kind, value, tb) -> None:
        if isinstance(value, (TimeoutError, ssl.SSLError, ConnectionError)):
            # A reader that stopped reading (SOCKET_TIMEOUT) or went away: not our bug.
            self.close_connection = True
            if isinstance(value, TimeoutError):
                self.server.refused("timeout")
            return
        super().handle_error(kind, value, tb)

    def log_request(self) -> None:
        if log.isEnabledFor(logging.DEBUG):
            log.debug("web.request %s", self.format_request())


def _peer_closed(fd: int) -> bool:
    """Has the peer of this connected socket closed it? (Peeks, reads nothing. Over TLS,
    a close_notify is data: the stream then ends at its next keep-alive frame.)"""
    probe = _socket.socket(fileno=fd)       # the C socket: no gevent machinery in the hub
    try:
        return probe.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True
    finally:
        probe.detach()


class Server(gevent.pywsgi.WSGIServer):
    """At most ``limit`` connections (settable: a reload changes the reserve); refusals
    counted by reason."""

    handler_class = Handler

    def __init__(self, listener: socket.socket | tuple[str, int], app: Any, limit: int,
                 tls: ssl.SSLContext | None = None, backlog: int = 1024) -> None:
        super().__init__(listener, app, log=None, error_log=_ErrorLog(),
                         # a socket (listen()) comes with its backlog
                         backlog=None if isinstance(listener, socket.socket) else backlog,
                         environ={"wsgi.url_scheme": "https"} if tls else None,
                         # a greenlet per connection, counted by hub.runtime(); the
                         # handler reports its own errors
                         spawn=functools.partial(hub.spawn, report=False))
        from .state import REFUSED_KEY     # the views: not on the way to the first advert
        self.refused_key = REFUSED_KEY
        self.limit = limit
        self.tls = tls
        self.open = 0
        self.counts: dict[str, int] = {}
        self.streams: Any = None        # the app's stream slots (open, limit), for view()

    def full(self) -> bool:
        if self.open < self.limit:
            return False
        # Accepting stops here until a connection ends (do_close): the waiting clients
        # sit in the listen backlog and cost no descriptor. Counted once per stop.
        self.refused("too_many_connections")
        return True

    def do_handle(self, *args: Any) -> None:
        self.open += 1          # before the next full(): accept() runs many in one turn
        super().do_handle(*args)

    def do_close(self, *args: Any) -> None:
        try:
            super().do_close(*args)
        finally:
            self.open -= 1
            if self.open < self.limit and not self.closed:
                self.start_accepting()

    def handle(self, sock: Any, address: Any) -> None:
        sock.settimeout(HEADER_TIMEOUT)     # a TLS handshake is part of the headers' time
        started = time.monotonic()
        if self.tls is not None:
            try:
                sock = self.tls.wrap_socket(sock, server_side=True)
            except (OSError, ValueError) as exc:  # plain HTTP, a scanner, a slow hello
                self.refused("tls_handshake")
                log.debug("web.tls_refused client=%s error=%.200s", address, exc)
                return
        sock.settimeout(SOCKET_TIMEOUT)
        handler = self.handler_class(sock, address, self)
        handler.started = started
        handler.handle()

    def refused(self, reason: str) -> None:
        self.counts[reason] = self.counts.get(reason, 0) + 1

    def count_status(self, code: int, environ: dict) -> None:
        """A response's refusal, if it was one: the app's reason in the environ, else the
        status code's."""
        reason = environ.get(self.refused_key) or _REASONS.get(code) or ("bad_request" if 400 <= code < 500 else None)
        if reason:
            self.refused(reason)

    def view(self, streams_dropped: int = 0) -> WebView:
        from .state import WebView
        streams = self.streams
        counts = dict(self.counts)
        if streams_dropped:
            counts["stream_too_slow"] = streams_dropped
        return WebView(refused=counts, connections=self.open, connection_limit=self.limit,
                       streams=0 if streams is None else streams.open,
                       stream_limit=0 if streams is None else streams.limit,
                       tls=self.tls is not None)


class _ErrorLog:
    """pywsgi's error lines (a greenlet's exception in a request) go to our log."""

    def write(self, line: str) -> None:
        if line.strip():
            log.warning("web.error %s", line.strip()[:500])

    def flush(self) -> None:
        pass


def listen(host: str, port: int, backlog: int = 1024) -> socket.socket:
    """The web face's listening socket (gevent's own recipe: SO_REUSEADDR, non-blocking),
    bound before VRRP starts so that a taken address stops the daemon before it holds a VIP;
    the app is served on it later (``serve``), off the path to the first advert. OSError if
    the address is taken."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET,
                         socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(backlog)
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


def serve(app: Any, listener: socket.socket | tuple[str, int], limit: int,
          tls: ssl.SSLContext | None = None) -> Server:
    """Serve a WSGI app on the loop, started now, on a socket from ``listen`` or an address
    (OSError if it is taken)."""
    server = Server(listener, app, limit, tls)
    server.start()
    return server
