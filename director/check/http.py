"""HTTP_GET and SSL_GET: GET every url of the block in turn, as keepalived does, and judge
each reply by its status code, digest and regex. The check is good only if every url is.

What keepalived does, and so do we:

* one connection per url, sending the request genhash sends (genhash.build_request), and
  reading until the server closes: a server that holds the connection open fails at the
  timeout even after a complete reply;
* the digest is genhash's (genhash.parse_response + compute_digest): MD5 of the raw bytes
  after CRLF CRLF, capped at Content-Length, chunked bodies not de-chunked, so a digest
  printed by either genhash keeps matching;
* status first, then digest, then regex, and the first failure decides; no status_code
  means 200-299;
* the regex (PCRE there, Python ``re`` on bytes here: both byte-wise) searches everything
  received after the headers, Content-Length not applied; a match must start between
  regex_min_offset and regex_max_offset; regex_no_match inverts;
* the Host header: the url's virtualhost, else the checker's, else the real or virtual
  server's (Target.virtualhost), else address:port;
* TLS without certificate verification.

Where we differ on purpose: connect_timeout is one deadline for the whole url (connect,
handshake, request, reply), not a timer restarted at each step, so a server trickling a
byte at a time cannot hold a check up; SNI is the virtualhost whenever there is one (as
genhash -V), where keepalived sends it only with enable_sni.

How it runs. Plain HTTP_GET runs on the loop itself, as TCP_CHECK does (_Check, _Get): a
non-blocking C socket in the epoll set of poller.py, the request sent and the reply read as
the socket becomes ready, one deadline per url swept by the poller; no greenlet, no gevent
socket wrapper, no Timeout per check (measured at 2,000 checks a second: a third of the
greenlet version's CPU a check, docs/BENCHMARKS.md "Issue 17"). The request's bytes are built
once per url, and a reply equal to the last one gets the last verdict without parsing or
hashing it again. Its sockets are kept from check to check as TCP_CHECK's are: a reply read
to the server's close ends with a disconnect (a reset where keepalived's close sends a FIN:
_Get.end says why that is safe), and the next check reuses the socket. SSL_GET uses stdlib
socket and ssl, looked up at call time, in a worker greenlet: the daemon monkey-patches
them with gevent, so every wait there is cooperative. ``check()`` runs either and waits.
"""

from __future__ import annotations

import _socket
import errno
import logging
import os
import re
import select
import socket
import ssl
import time
from typing import Any

from ..genhash import HEADER_END, GenhashError, build_request, compute_digest, parse_response
from ..log import event as log_event
from .checker import PASSED, CheckResult, Target
from . import poller
from .poller import EPOLLET, EPOLLFAIL, EPOLLIN, EPOLLOUT, POLLER
from .sockets import prepare
from .tcp import IPPROTO_TCP, TCP_DEFER_ACCEPT, KeptSockets

log = logging.getLogger("director.check.http")

DEFAULT_STATUS = ((200, 299),)
MAX_REPLY = 16 << 20        # a health page is small: refuse to buffer a runaway body
MAX_HEADERS = 64 << 10      # nginx's and Apache's own limits are 8 KiB a line: no server
                            # sends this much before CRLF CRLF, an endless header line does
NOT_HTTP = "not an HTTP reply"
JUDGED_MAX = 8 << 10        # replies up to this size are remembered with their verdict
# A Date header's value (RFC 9110's IMF-fixdate, what nginx and Apache send: 29 bytes) changes
# every second and decides nothing (reply_key): replies that differ only there share a verdict.
DATE_NAMES = (b"\r\nDate: ", b"\r\ndate: ")
IMF_FIXDATE = re.compile(rb"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d "
                         rb"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) "
                         rb"\d{4} \d\d:\d\d:\d\d GMT\r\n")
# keepalived's regex_options with a Python equivalent; the rest only tune PCRE.
REGEX_FLAGS = {"caseless": re.IGNORECASE, "multiline": re.MULTILINE, "dotall": re.DOTALL,
               "extended": re.VERBOSE}


class _Failed(Exception):
    """One url failed; the message is the reason shown on the dashboard, ``reply_error`` the
    label it is counted under when the reply itself could not be read."""

    def __init__(self, message: str, reply_error: str | None = None) -> None:
        super().__init__(message)
        self.reply_error = reply_error


def format_ranges(ranges) -> str:
    return ", ".join(f"{low}" if low == high else f"{low}-{high}" for low, high in ranges)


def judge(url, raw: bytes) -> str | None:
    """Why the raw reply ``raw`` fails ``url`` (a parsed url block), None if it passes."""
    try:
        reply = parse_response(raw)
    except GenhashError as exc:
        return f"{NOT_HTTP} ({exc})"
    ranges = url.status_code or DEFAULT_STATUS
    if not any(low <= reply.status_code <= high for low, high in ranges):
        return f"status {reply.status_code} not in {format_ranges(ranges)}"
    if url.digest:
        got, want = compute_digest(reply.body), url.digest.lower()
        if got != want:
            return f"digest mismatch: got {got}, want {want}"
    if url.regex:
        flags = 0
        for option in (url.regex_options or "").split():
            flags |= REGEX_FLAGS.get(option, 0)
        try:
            pattern = re.compile(url.regex.encode(), flags)
        except re.error as exc:
            return f"regex {url.regex!r}: {exc}"
        match = pattern.search(raw[len(reply.header_block):], url.regex_min_offset or 0)
        found = match is not None and (url.regex_max_offset is None
                                       or match.start() <= url.regex_max_offset)
        if found and url.regex_no_match:
            return f"regex {url.regex!r} matched (regex_no_match)"
        if not found and not url.regex_no_match:
            return f"regex {url.regex!r} not found"
    return None


def reply_key(raw: bytes) -> Any:
    """What of ``raw`` judge() depends on: the reply less the value of its first Date header
    when that is an IMF-fixdate within the headers, with that value's offset; else ``raw``.

    Two replies with one key differ only in 29 bytes of letters, digits, spaces, commas and
    colons between "Date: " and CRLF, before the end of the headers: their first line, the
    end of their headers, their first "Content-Length:" (which cannot begin in, end in or
    span such a value), their body and what follows the headers are the same bytes, so
    judge() says the same of both."""
    for name in DATE_NAMES:
        at = raw.find(name)
        if at >= 0:
            break
    else:
        return raw
    start = at + len(DATE_NAMES[0])
    end = start + 29
    if not IMF_FIXDATE.match(raw, start, end + 2) or raw.find(HEADER_END) < at:
        return raw
    return start, raw[:start] + raw[end:]


def certificate_detail(der: bytes | None) -> dict:
    """cert_not_after (epoch seconds) and cert_subject (the CN) of a DER certificate, for
    the dashboard's expiry warning; empty if there is none or it cannot be parsed (a
    strange certificate is no reason to fail the check)."""
    if not der:
        return {}
    # cryptography comes with pyOpenSSL, whose own certificate accessors are deprecated;
    # imported here so HTTP_GET alone never loads it.
    from cryptography import x509
    from cryptography.x509.oid import NameOID
    try:
        cert = x509.load_der_x509_certificate(der)
        names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        return {"cert_not_after": int(cert.not_valid_after_utc.timestamp()),
                "cert_subject": str(names[0].value) if names else ""}
    except ValueError:
        return {}


def _left(deadline: float) -> float:
    """Seconds until the deadline, for settimeout(); TimeoutError once it has passed."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError
    return left


def _close_notify(sock: ssl.SSLSocket, deadline: float) -> None:
    """Send our close_notify (and read the server's, if it sends one) within what is left of
    the deadline; a server that has gone already is no failure of the check."""
    try:
        sock.settimeout(max(deadline - time.monotonic(), 0.05))
        sock.unwrap()
    except (OSError, ValueError):           # ssl.SSLError and TimeoutError are OSErrors
        pass


_monotonic = time.monotonic
STREAM = socket.SOCK_STREAM | socket.SOCK_NONBLOCK
SOL_SOCKET, SO_ERROR = socket.SOL_SOCKET, socket.SO_ERROR
EPOLLRDHUP = select.EPOLLRDHUP
# Registered once for both directions and the server's FIN, edge-triggered: connected (OUT),
# then the reply (IN, with RDHUP once the server has closed), no epoll_ctl in between. A kept
# socket (SOCKETS) stays registered with these between checks.
EDGES = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET
RDHUP_ONLY = EPOLLRDHUP | EPOLLFAIL
RECV_SIZE = 65536
# Plain HTTP_GET's sockets, kept across checks as TCP_CHECK's are (tcp.py): after a reply read
# to the server's close, the socket is disconnected, not closed (see _Get.end for what that
# changes on the wire), and the next check of any server reuses it.
SOCKETS = {socket.AF_INET: KeptSockets(socket.AF_INET, linger_reset=False),
           socket.AF_INET6: KeptSockets(socket.AF_INET6, linger_reset=False)}


class _Get:
    """One url of a plain HTTP_GET on the loop (the poller's epoll set): connect, send the
    request, read until the server closes, within one connect_timeout; then ``done(raw,
    None)`` or ``done(None, _Failed)``. What _fetch does with a socket per greenlet, here as
    events, for the daemon's thousands of checks a second."""

    __slots__ = ("sock", "fd", "request", "deadline", "timeout", "done", "live", "stage",
                 "reply", "headers_end", "keep")

    def __init__(self, sock, request: bytes, timeout: float, done, keep) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.request = request
        self.timeout = timeout
        self.deadline = _monotonic() + timeout
        self.done = done
        self.live = True
        self.stage = "connect"
        self.reply = b""
        self.headers_end = -1
        self.keep = keep            # the KeptSockets the socket goes back to, or None

    def connect(self, address, registered: bool) -> None:
        code = self.sock.connect_ex(address)
        if code == errno.EINPROGRESS or code == 0:
            if registered:
                POLLER.waiting[self.fd] = self      # a kept socket: in the epoll set already
            else:
                POLLER.want(self.fd, EDGES, self)
            POLLER.expire_after(self.timeout, self)
            if code == 0:
                self.on_event(EPOLLOUT)     # connected at once: send (its errors caught there)
        else:
            self.fail(f"connect: {os.strerror(code)}")

    def on_event(self, events: int) -> None:
        try:
            if self.stage == "read":
                self.read(events)
                return
            if self.stage == "connect" and events & EPOLLFAIL:
                code = self.sock.getsockopt(SOL_SOCKET, SO_ERROR)
                if code:
                    self.fail(f"connect: {os.strerror(code)}")
                    return
            self.send()
            if self.stage == "read" and events & EPOLLIN:
                self.read(events)           # bytes came with this very edge (a banner)
        except _Failed as exc:
            self.end(None, exc)
        except OSError as exc:
            self.fail(f"{self.stage}: {exc.strerror or exc}")

    def send(self) -> None:
        """The request, or as much as the socket takes: the rest at the next OUT edge."""
        self.stage = "send"
        try:
            sent = self.sock.send(self.request)
        except BlockingIOError:
            sent = 0
        self.request = self.request[sent:]
        if not self.request:
            self.stage = "read"

    def read(self, events: int) -> None:
        sock = self.sock
        while self.live:
            try:
                chunk = sock.recv(RECV_SIZE)
            except BlockingIOError:
                return                          # the rest with a later event
            if not chunk:
                self.end(bytes(self.reply), None, closed=True)
                return
            reply = self.reply
            if not reply:
                reply = chunk                   # most replies: one chunk, no copy
            else:                               # more: grow in place, not quadratically
                if type(reply) is bytes:
                    reply = bytearray(reply)
                reply += chunk
            self.reply = reply
            if len(reply) >= 5 and not reply.startswith(b"HTTP/"):
                self.end(bytes(reply), None)    # not HTTP (an SMTP banner?): no use waiting
                return
            if self.headers_end < 0:
                self.headers_end = reply.find(b"\r\n\r\n",
                                              max(0, len(reply) - len(chunk) - 3))
                if self.headers_end < 0 and len(reply) > MAX_HEADERS:
                    raise _Failed(f"no end of the headers in the first {MAX_HEADERS >> 10} "
                                  f"KiB", "too_large")
            if len(reply) > MAX_REPLY:
                raise _Failed(f"reply larger than {MAX_REPLY >> 20} MiB", "too_large")
            if events & RDHUP_ONLY == EPOLLRDHUP and len(chunk) < RECV_SIZE:
                # The server had closed when this edge came (its FIN is behind every byte it
                # sent, in order), and a recv shorter than asked emptied the queue: this is
                # the end a further recv would return b"" for, without that system call.
                # Not after a reset (RDHUP with ERR and HUP): the next recv says ECONNRESET.
                self.end(bytes(reply), None, closed=True)
                return

    def expire(self) -> None:
        self.end(None, _Failed(f"timeout after {self.timeout:g} s ({self.stage})"))

    def fail(self, message: str) -> None:
        self.end(None, _Failed(message))

    def end(self, raw: bytes | None, failure: _Failed | None, closed: bool = False) -> None:
        """``closed``: the whole reply was read to the server's close (our socket is in
        CLOSE_WAIT). Then a kept socket is disconnected (KeptSockets.give_back) instead of
        closed: the kernel ends the connection with a reset where a close sent a FIN. The
        server has sent everything and closed by then, so the reset only frees its side
        at once (its FIN_WAIT2 socket skips TIME_WAIT: one less per check on every real
        server; a server still reading after its shutdown, as Apache's lingering close
        does, reads ECONNRESET instead of the end), and nothing of the reply is lost: it
        was read. keepalived reads to the close and closes; so do we, but for the reset.
        Every other end (a failure, a reply that is not HTTP, a timeout) closes the socket
        as before. Measured (bench/check_http_syscalls.py): socket, epoll_ctl and close
        per check were half of its CPU, checker and server together."""
        if not self.live:
            return
        self.live = False
        POLLER.waiting.pop(self.fd, None)       # POLLER.forget
        if closed and self.keep is not None:
            self.keep.give_back(self.sock, self.fd)
        else:
            self.sock.close()
        self.sock = None
        self.done(raw, failure)


class _Check:
    """One HTTP_GET check on the loop: its urls in turn, the first failure decides."""

    __slots__ = ("checker", "done", "started", "index")

    def __init__(self, checker: "HttpCheck", done) -> None:
        self.checker = checker
        self.done = done
        self.started = _monotonic()
        self.index = 0

    def next_url(self) -> None:
        checker = self.checker
        try:
            request = checker.request(self.index)
            sock, registered = checker.plain_socket()
        except _Failed as exc:
            self.url_done(None, exc)
            return
        except OSError as exc:
            self.url_done(None, _Failed(f"socket setup: {exc.strerror or exc}"))
            return
        _Get(sock, request, checker.target.connect_timeout, self.url_done,
             checker.sockets).connect(checker.address, registered)

    def url_done(self, raw: bytes | None, failure: _Failed | None) -> None:
        checker = self.checker
        url = checker.config.url[self.index]
        reply_error = None
        if failure is not None:
            reason, reply_error = str(failure), failure.reply_error
        else:
            reason = checker.judged(self.index, url, raw)
            if reason and reason.startswith(NOT_HTTP):
                reply_error = "not_http"
        if reason:
            error = f"GET {url.path}: {reason}"
            checker.log_failure(error)
            self.done(CheckResult(False, _monotonic() - self.started, error,
                                  reply_error=reply_error))
            return
        self.index += 1
        if self.index < len(checker.config.url):
            self.next_url()
        else:
            self.done(PASSED, _monotonic() - self.started)    # no object per pass


class HttpCheck:
    def __init__(self, config, target: Target, ssl_defs=None) -> None:
        """``ssl_defs``: the configuration's top-level SSL block, whose certificate and key
        (and the key's password) SSL_GET presents to servers that ask for a client
        certificate, as keepalived does."""
        self.ssl_defs = ssl_defs
        self.kind = config.kind
        self.config = config
        self.target = target
        self.tls = config.kind == "SSL_GET"
        self._context: ssl.SSLContext | None = None     # built on first use, then kept
        # Plain HTTP runs on the loop (start()); TLS in a worker greenlet (check()).
        self.on_loop = not self.tls
        if ":" in target.host:
            self.family, self.address = socket.AF_INET6, (target.host, target.port or 0, 0, 0)
        else:
            self.family, self.address = socket.AF_INET, (target.host, target.port or 0)
        self.prepared = bool(target.fwmark or target.bind_if or target.bind_ip
                             or target.bind_port)
        # fwmark, bind_if or a source address: a socket of its own per check, as in tcp.py
        self.sockets = None if self.prepared or self.tls else SOCKETS[self.family]
        self._requests: dict[int, bytes] = {}           # url index -> the request's bytes
        # url index -> the last reply, its reply_key() and its verdict
        self._judged: dict[int, tuple[bytes, Any, str | None]] = {}

    def request(self, index: int) -> bytes:
        """The GET of url ``index``, built once (it depends on the configuration only)."""
        request = self._requests.get(index)
        if request is None:
            t, url = self.target, self.config.url[index]
            if t.port is None:
                raise _Failed("no port to connect to (set connect_port)")
            vhost = url.virtualhost or self.config.virtualhost or t.virtualhost
            request = self._requests[index] = build_request(url.path, t.host, t.port, vhost,
                                                            self.config.http_protocol)
        return request

    def plain_socket(self) -> tuple[Any, bool]:
        """(a non-blocking C socket for the loop, already in the epoll set): a kept one, or
        one made and prepared (bind, fwmark) for this check. Either has TCP_DEFER_ACCEPT
        set: on a connecting socket it delays the ACK of the SYN-ACK until our request
        carries it (tcp_rcv_synsent_state_process, as HAProxy's TCP_QUICKACK off does), so
        the server wakes once, to accept and read the request together, and one segment
        less goes each way (measured: -17 % of the server's CPU a check, -7 % of ours)."""
        if self.sockets is not None:
            return self.sockets.take()
        sock = _socket.socket(self.family, STREAM)
        try:
            sock.setsockopt(IPPROTO_TCP, TCP_DEFER_ACCEPT, 1)
            prepare(sock, self.target, self.family)
        except OSError:
            sock.close()
            raise
        return sock, False

    def judged(self, index: int, url, raw: bytes) -> str | None:
        """judge(url, raw), remembered: a healthy server sends the same bytes every time
        but for its Date header (reply_key), and the verdict depends on nothing else (no
        parse, digest or regex again)."""
        last = self._judged.get(index)
        if last is not None and last[0] == raw:
            return last[2]
        if len(raw) > JUDGED_MAX:
            self._judged.pop(index, None)
            return judge(url, raw)
        key = reply_key(raw)
        if last is not None and last[1] == key:
            reason = last[2]
        else:
            reason = judge(url, raw)
        self._judged[index] = (raw, key, reason)
        return reason

    def log_failure(self, error: str) -> None:
        log_event(log, "check.http.fail", logging.DEBUG, kind=self.kind,
                  virtual_server=self.target.virtual_server,
                  real_server=self.target.real_server, error=error)

    def start(self, done) -> None:
        """Plain HTTP_GET on the loop: ``done(CheckResult)``, or ``done(PASSED, duration)``
        for a pass, is called from the loop."""
        _Check(self, done).next_url()

    @property
    def hard_deadline(self) -> float:
        """One connect_timeout per url, in turn."""
        return len(self.config.url) * self.target.connect_timeout + 1.0

    def check(self) -> CheckResult:
        """One check, waited for: TLS in this greenlet; plain HTTP on the loop (start())."""
        if self.on_loop:
            return poller.wait(self.start, self.hard_deadline + 1)
        started = time.monotonic()
        detail: dict = {}
        error = reply_error = None
        for url in self.config.url:
            vhost = url.virtualhost or self.config.virtualhost or self.target.virtualhost
            try:
                raw = self._fetch(url.path, vhost, detail,
                                  bool(url.tls_compliant or self.config.tls_compliant))
                reason = judge(url, raw)
                if reason and reason.startswith(NOT_HTTP):
                    reply_error = "not_http"
            except _Failed as exc:
                reason, reply_error = str(exc), exc.reply_error
            if reason:
                error = f"GET {url.path}: {reason}"
                self.log_failure(error)
                break
        return CheckResult(ok=error is None, duration=time.monotonic() - started,
                           error=error, detail=detail, reply_error=reply_error)

    def _tls_context(self) -> ssl.SSLContext:
        if self._context is None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            context.check_hostname = False          # keepalived verifies nothing
            context.verify_mode = ssl.CERT_NONE
            defs = self.ssl_defs
            if defs is not None and defs.certificate:
                password = defs.password.reveal() if defs.password else None
                context.load_cert_chain(defs.certificate, keyfile=defs.key or None,
                                        password=password)
            self._context = context
        return self._context

    def _fetch(self, path: str, vhost: str | None, detail: dict,
               close_notify: bool = False) -> bytes:
        """The raw reply to one GET, read until the server closes; _Failed on any error.
        Records the server certificate in ``detail`` for SSL_GET, and ends its TLS session
        with a close_notify alert when ``close_notify`` (tls_compliant)."""
        t = self.target
        if t.port is None:
            raise _Failed("no port to connect to (set connect_port)")
        request = build_request(path, t.host, t.port, vhost, self.config.http_protocol)
        deadline = time.monotonic() + t.connect_timeout
        stage, sock = "socket setup", None
        try:
            # The host is an address literal (connect_ip or the real server's): no resolver.
            # gevent's would send every check through its thread pool (measured: 43 % of
            # the CPU of 2,000 HTTP checks a second).
            if ":" in t.host:
                family, address = socket.AF_INET6, (t.host, t.port, 0, 0)
            else:
                family, address = socket.AF_INET, (t.host, t.port)
            sock = socket.socket(family, socket.SOCK_STREAM)
            prepare(sock, t, family)
            stage = "connect"
            sock.settimeout(_left(deadline))
            sock.connect(address)
            if self.tls:
                stage = "TLS handshake"
                sock.settimeout(_left(deadline))
                try:
                    context = self._tls_context()
                except (OSError, ssl.SSLError) as exc:
                    raise _Failed(f"client certificate: {exc.strerror or exc}") from None
                sock = context.wrap_socket(sock, server_hostname=vhost)
                detail.update(certificate_detail(sock.getpeercert(binary_form=True)))
            stage = "send"
            sock.settimeout(_left(deadline))
            sock.sendall(request)
            stage = "read"
            reply = bytearray()
            headers_end = -1
            while True:
                sock.settimeout(_left(deadline))
                chunk = sock.recv(65536)
                if not chunk:
                    return bytes(reply)
                reply += chunk
                if len(reply) >= 5 and not reply.startswith(b"HTTP/"):
                    return bytes(reply)     # not HTTP (an SMTP banner?): no use waiting
                if headers_end < 0:
                    headers_end = reply.find(b"\r\n\r\n", max(0, len(reply) - len(chunk) - 3))
                    if headers_end < 0 and len(reply) > MAX_HEADERS:
                        raise _Failed(f"no end of the headers in the first {MAX_HEADERS >> 10} "
                                      f"KiB", "too_large")
                if len(reply) > MAX_REPLY:
                    raise _Failed(f"reply larger than {MAX_REPLY >> 20} MiB", "too_large")
        except TimeoutError:
            raise _Failed(f"timeout after {t.connect_timeout:g} s ({stage})") from None
        except ssl.SSLError as exc:                 # an OSError too: keep it first
            raise _Failed(f"{stage}: {exc.reason or exc}") from None
        except OSError as exc:
            raise _Failed(f"{stage}: {exc.strerror or exc}") from None
        finally:
            if close_notify and isinstance(sock, ssl.SSLSocket):
                _close_notify(sock, deadline)
            if sock is not None:
                sock.close()
