"""GRPC_CHECK (a director extension): one ``grpc.health.v1.Health/Check`` call for the
block's service_name ("" is the server's overall health), in clear or over TLS. SERVING is
up; any other status, an RPC error or the deadline is a failed attempt, whose error names
the cause first: NOT_SERVING, UNKNOWN, SERVICE_UNKNOWN (the server's NOT_FOUND),
UNIMPLEMENTED (no health service), UNAVAILABLE (refused, reset, closed), DEADLINE_EXCEEDED,
TLS_ERROR, NOT_GRPC (an HTTP/1 server, garbage bytes: also counted as reply_error
``not_grpc``), then grpcio's own words, shortened.

How it runs beside gevent: grpcio does its I/O in C threads of its own, and a blocking call
waits for them in C, so made from a greenlet it would stop the hub for the whole call (up to
connect_timeout against a hung server). Each attempt therefore runs in an OS thread of a
pool of this module's (hub.ThreadPool); the greenlet waits for it cooperatively.
grpc.experimental.gevent.init_gevent() was the other way: measured with 200 servers checked
every second (bench/check_grpc_cost.py), both cost the same CPU, about 1.2 ms a check (0.23
core), and neither stalls the hub for long; but init_gevent changes grpcio for the whole
process and must run before any channel exists, where the pool changes nothing outside this
module (the tests run grpcio servers in their own process). A greenlet killed at the
scheduler's hard deadline only stops waiting; the thread ends at the call's own deadline
(connect_timeout), so no thread is held longer than that.

A channel is kept from one attempt to the next while they reach the server (a reply, even
NOT_SERVING): a new channel for every check would cost twice the CPU (2.3 ms a check). Any
transport failure closes it, so the next attempt connects afresh rather than waiting out
grpcio's reconnect backoff (up to two minutes), and a certificate file changed on disk is
read again. Each channel has its own connection (a local subchannel pool: two checks of one
server, or a channel closed and made again, never share one), no proxy (grpcio reads
http_proxy otherwise), no transparent retries, and replies over 64 KiB are refused.

grpcio is imported at the first attempt, in a pool thread and before that attempt's deadline
starts: a configuration without a GRPC_CHECK never loads it (about 200 ms), one with it does
not load it at start-up, and a loaded machine's slow import fails no check.
"""

from __future__ import annotations

import logging
import os
import re
import time
from typing import Any

from .. import hub
from ..log import event as log_event
from .checker import CheckResult, Target

log = logging.getLogger("director.check.grpc")

# One thread per attempt in flight. The scheduler runs at most its workers' number of
# attempts at once (256), so this many never makes one wait for a thread except behind
# attempts it abandoned at their hard deadline, which end at their own deadline.
THREADS = 256
IDLE_THREAD = 10.0          # seconds a thread waits for work before it ends (a start-up
                            # burst leaves a hundred otherwise)
WAIT_SLACK = 0.5            # beyond connect_timeout before the greenlet stops waiting
IMPORT_ALLOWANCE = 30.0     # the first attempt's hard deadline has room to import grpcio
MAX_REPLY = 64 << 10        # a HealthCheckResponse is a few bytes
SERVING = "SERVING"
METHOD = "/grpc.health.v1.Health/Check"

_pool: Any = None
_grpc: Any = None           # (grpc, health_pb2) once imported


def _threads() -> Any:
    global _pool
    if _pool is None:
        _pool = hub.ThreadPool(THREADS, idle_task_timeout=IDLE_THREAD)
    return _pool


def _modules() -> tuple[Any, Any]:
    """grpcio and the health protocol's messages, imported on first use. grpcio's C core
    logs to stderr at INFO unless told otherwise (a line per failed TLS handshake): ours are
    the events, so it says only errors, unless the environment asks for more."""
    global _grpc
    if _grpc is None:
        os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
        import grpc
        from grpc_health.v1 import health_pb2
        _grpc = (grpc, health_pb2)
    return _grpc


# --- the pure part: what a reply or an error means ---------------------------------------

_CONNECT_PREFIX = re.compile(r"^(?:failed to connect to all addresses; last error: )?"
                             r"(?:[A-Z_]+: )?(?:ipv[46]:\S+?: )?")
_TLS = ("tls handshake", "ssl handshake", "ssl_error", "tsi_", "handshake read failed",
        "handshake write failed", "certificate", "verification check")
_OPENSSL_REASON = re.compile(r"SSL routines:\w*:([A-Z_]+)")
_VERIFY = re.compile(r"^Custom verification check failed with error: (?:[A-Z_]+: )?")
_NOT_GRPC = ("failed parsing http/2", "expected settings frame", "http1.x", "http/1",
             "not a grpc", "bad content-type", "content-type")


def status_failure(status: str) -> str | None:
    """Why a Check reply's status (a ServingStatus name) fails, None for SERVING."""
    if status == SERVING:
        return None
    if status == "UNKNOWN":
        return "UNKNOWN: the server does not know the service's state"
    if status == "SERVICE_UNKNOWN":      # Watch's answer; Check answers NOT_FOUND instead
        return "SERVICE_UNKNOWN"
    return status


def shorten(details: str) -> str:
    """grpcio's details without the prefix every connection failure carries."""
    return _CONNECT_PREFIX.sub("", details or "", count=1).strip()


def rpc_failure(code: str, details: str, service: str, timeout: float,
                tls: bool) -> tuple[str, str | None]:
    """The error of an attempt that ended with RPC status ``code`` (a grpc.StatusCode name)
    and grpcio's ``details``, and the reply_error it is counted under (None: not a reply
    that could not be read)."""
    short = shorten(details)
    lower = short.lower()
    if code == "DEADLINE_EXCEEDED":
        return f"DEADLINE_EXCEEDED: no answer within {timeout:g} s", None
    if code == "NOT_FOUND":
        return f"SERVICE_UNKNOWN: the server has no health status for '{service}'", None
    if code == "UNIMPLEMENTED":
        return "UNIMPLEMENTED: the server has no grpc.health.v1.Health service", None
    if any(word in lower for word in _NOT_GRPC):
        return f"NOT_GRPC: {short}", "not_grpc"
    if tls and any(word in lower for word in _TLS):
        reason = _OPENSSL_REASON.search(short)      # WRONG_VERSION_NUMBER, ...VERIFY_FAILED
        return f"TLS_ERROR: {reason.group(1) if reason else _VERIFY.sub('', short)}", None
    if code == "RESOURCE_EXHAUSTED" and "message" in lower:
        return f"NOT_GRPC: reply larger than {MAX_REPLY >> 10} KiB ({short})", "too_large"
    if code == "INTERNAL" and "deserializ" in lower:
        return f"NOT_GRPC: {short}", "not_grpc"
    return (f"{code}: {short}" if short else code), None


def target_name(host: str, port: int) -> str:
    """grpcio's target for an address literal: the scheme says it is one, so no resolver
    runs (connect_ip and real server addresses are never names)."""
    return f"ipv6:[{host}]:{port}" if ":" in host else f"ipv4:{host}:{port}"


def _read(path: str) -> bytes:
    with open(path, "rb") as file:
        return file.read()


def _unlock(key: bytes, password: str | None) -> bytes:
    """The client key as grpcio takes it (PEM, not encrypted): decrypted with the SSL
    block's password when it is encrypted."""
    if not password:
        return key
    from cryptography.hazmat.primitives import serialization
    try:
        loaded = serialization.load_pem_private_key(key, password.encode())
    except TypeError:                   # not encrypted: the password is not needed
        return key
    return loaded.private_bytes(serialization.Encoding.PEM,
                                serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())


class _Failed(Exception):
    def __init__(self, message: str, reply_error: str | None = None) -> None:
        super().__init__(message)
        self.reply_error = reply_error


class GrpcCheck:
    kind = "GRPC_CHECK"

    def __init__(self, config: Any, target: Target, ssl_defs: Any = None) -> None:
        """``ssl_defs``: the top-level SSL block, whose ca, certificate and key (and the
        key's password) are the defaults of tls_ca, tls_certificate and tls_key."""
        self.config = config
        self.target = target
        self.ssl_defs = ssl_defs
        self.tls = bool(config.tls)
        self.service = config.service_name or ""
        self.server_name = config.tls_server_name or target.virtualhost
        self._channel: Any = None        # (channel, its Check callable), kept while it works

    @property
    def hard_deadline(self) -> float:
        """The scheduler's (connect_timeout + 1 s), and room for grpcio's import before the
        first attempt."""
        return self.target.connect_timeout + 1.0 + (IMPORT_ALLOWANCE if _grpc is None else 0)

    def check(self) -> CheckResult:
        t = self.target
        if t.port is None:
            return CheckResult(False, 0.0, "no port to connect to (set connect_port)")
        if _grpc is None:       # the process's first attempt: load grpcio off the hub first
            _threads().spawn(_modules).get()
        started = time.monotonic()
        deadline = started + t.connect_timeout
        wait = hub.Timeout(t.connect_timeout + WAIT_SLACK)
        wait.start()
        try:
            error, reply_error = _threads().spawn(self._attempt, deadline).get()
        except hub.Timeout as fired:
            if fired is not wait:
                raise
            error, reply_error = (f"DEADLINE_EXCEEDED: no answer within "
                                  f"{t.connect_timeout:g} s (the call's thread is late)"), None
        finally:
            wait.close()
        if error is not None:
            log_event(log, "check.grpc.fail", logging.DEBUG,
                      virtual_server=t.virtual_server, real_server=t.real_server, error=error)
        return CheckResult(ok=error is None, duration=time.monotonic() - started, error=error,
                           reply_error=reply_error)

    # --- in a pool thread: no greenlet, no hub, only grpcio and files --------------------

    def _attempt(self, deadline: float) -> tuple[str | None, str | None]:
        """One Check call: (error, reply_error), (None, None) for SERVING. Never raises:
        an exception here would reach the waiting greenlet as one."""
        try:
            return self._call(deadline), None
        except _Failed as exc:
            return str(exc), exc.reply_error
        except Exception as exc:                # a grpcio surprise: a failure, said
            if self._channel is not None:
                self._drop(self._channel)
            return f"check failed: {exc!r}", None

    def _call(self, deadline: float) -> str | None:
        left = deadline - time.monotonic()
        if left <= 0:           # queued behind abandoned attempts past its whole deadline
            raise _Failed(f"DEADLINE_EXCEEDED: no thread free within "
                          f"{self.target.connect_timeout:g} s")
        grpc, health_pb2 = _modules()
        kept = self._channel
        if kept is None:
            kept = self._channel = self._open(grpc, health_pb2)
        call = kept[1]
        try:
            reply = call(health_pb2.HealthCheckRequest(service=self.service), timeout=left)
        except grpc.RpcError as exc:
            code = exc.code() if callable(getattr(exc, "code", None)) else None
            details = exc.details() if callable(getattr(exc, "details", None)) else str(exc)
            name = code.name if code is not None else "UNKNOWN"
            if name not in ("NOT_FOUND", "UNIMPLEMENTED"):      # those came from the server
                self._drop(kept)
            raise _Failed(*rpc_failure(name, details or "", self.service,
                                       self.target.connect_timeout, self.tls)) from None
        status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status) \
            if reply.status in health_pb2.HealthCheckResponse.ServingStatus.values() \
            else f"status {reply.status}"
        return status_failure(status)

    def _open(self, grpc: Any, health_pb2: Any) -> tuple[Any, Any]:
        t = self.target
        options = [("grpc.use_local_subchannel_pool", 1), ("grpc.enable_http_proxy", 0),
                   ("grpc.enable_retries", 0), ("grpc.max_receive_message_length", MAX_REPLY)]
        address = target_name(t.host, t.port)
        if self.tls:
            if self.server_name:
                options.append(("grpc.ssl_target_name_override", self.server_name))
            channel = grpc.secure_channel(address, self._credentials(grpc), options=options)
        else:
            channel = grpc.insecure_channel(address, options=options)
        call = channel.unary_unary(
            METHOD, request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
            response_deserializer=health_pb2.HealthCheckResponse.FromString)
        return channel, call

    def _credentials(self, grpc: Any) -> Any:
        """From the block's files, else the SSL block's; read at each new channel, so a
        certificate renewed on disk is used from the next reconnection."""
        config, defs = self.config, self.ssl_defs
        ca = config.tls_ca or (defs.ca if defs is not None else None)
        certificate, key = config.tls_certificate, config.tls_key
        if certificate is None and defs is not None and defs.certificate:
            certificate, key = defs.certificate, defs.key or defs.certificate
        password = defs.password.reveal() if defs is not None and defs.password else None
        try:
            return grpc.ssl_channel_credentials(
                root_certificates=_read(ca) if ca else None,
                private_key=_unlock(_read(key), password) if certificate and key else None,
                certificate_chain=_read(certificate) if certificate else None)
        except (OSError, ValueError) as exc:
            raise _Failed(f"TLS_ERROR: {getattr(exc, 'strerror', None) or exc}"
                          f"{' (' + exc.filename + ')' if getattr(exc, 'filename', None) else ''}"
                          ) from None

    def _drop(self, kept: tuple[Any, Any]) -> None:
        """Close ``kept`` and forget it if it is still the current channel: the next attempt
        connects afresh. (A checker removed by a reload is not closed here: nothing else
        refers to its channel, which grpcio closes when it is freed.)"""
        if self._channel is kept:
            self._channel = None
        kept[0].close()
