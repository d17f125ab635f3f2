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

Plain stdlib socket and ssl, looked up at call time: the daemon monkey-patches them with
gevent, so every wait here is cooperative.
"""

from __future__ import annotations

import logging
import re
import socket
import ssl
import time

from ..genhash import GenhashError, build_request, compute_digest, parse_response
from ..log import event as log_event
from .checker import CheckResult, Target
from .sockets import prepare

log = logging.getLogger("director.check.http")

DEFAULT_STATUS = ((200, 299),)
MAX_REPLY = 16 << 20        # a health page is small: refuse to buffer a runaway body
MAX_HEADERS = 64 << 10      # nginx's and Apache's own limits are 8 KiB a line: no server
                            # sends this much before CRLF CRLF, an endless header line does
NOT_HTTP = "not an HTTP reply"
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

    @property
    def hard_deadline(self) -> float:
        """One connect_timeout per url, in turn."""
        return len(self.config.url) * self.target.connect_timeout + 1.0

    def check(self) -> CheckResult:
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
                log_event(log, "check.http.fail", logging.DEBUG, kind=self.kind,
                          virtual_server=self.target.virtual_server,
                          real_server=self.target.real_server, error=error)
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
