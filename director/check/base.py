"""What every checker shares: where a check goes (Target), what it found (CheckResult), the
settings in force (CheckSettings, resolved with keepalived's inheritance), and the Checker
protocol the scheduler drives.

A checker is a class built from its parsed config block and a Target, doing no I/O in its
constructor; ``check()`` runs one attempt in a greenlet and returns a CheckResult. It honours
``target.connect_timeout`` for its own waits; the scheduler also kills it at a hard deadline,
so a checker that hangs or raises costs only its own server a failed attempt.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class Target:
    host: str                       # connect_ip, else the real server's address
    port: int | None                # connect_port, else the real server's port
    connect_timeout: float
    bind_ip: str | None = None
    bind_port: int | None = None
    bind_if: str | None = None
    fwmark: int | None = None
    virtual_server: str = ""        # names for logs and metrics
    real_server: str = ""
    virtualhost: str | None = None  # the VS/RS default Host header for HTTP checks


@dataclass(frozen=True)
class CheckResult:
    ok: bool
    duration: float                 # seconds the attempt took
    error: str | None = None        # why it failed, for the dashboard and the log
    weight: int | None = None       # MISC_CHECK misc_dynamic: the weight the script asked for
    detail: dict = field(default_factory=dict, compare=False)   # e.g. cert_not_after


class Checker(Protocol):
    kind: str

    def __init__(self, config: Any, target: Target) -> None: ...

    def check(self) -> CheckResult: ...


@dataclass(frozen=True)
class CheckSettings:
    delay_loop: float
    connect_timeout: float
    retry: int
    delay_before_retry: float
    warmup: float
    alpha: bool
    rise: int = 1


# keepalived's per-kind defaults (check_*.c): retry and delay_before_retry.
RETRY_DEFAULTS = {"MISC_CHECK": 0, "DNS_CHECK": 3, "FILE_CHECK": 0}
# keepalived watches a FILE_CHECK's file with inotify and reacts at once; we read it at
# least this often.
FILE_POLL = 1.0
DELAY_BEFORE_RETRY_DEFAULTS = {"HTTP_GET": 3.0, "SSL_GET": 3.0}


def resolve_settings(virtual_server: Any, real_server: Any, checker: Any) -> CheckSettings:
    """keepalived's inheritance: the checker's value, else the real server's, else the
    virtual server's, else the kind's default."""

    def pick(name: str, default):
        for level in (checker, real_server, virtual_server):
            value = getattr(level, name, None)
            if value is not None and value is not False:
                return value
        return default

    kind = checker.kind
    delay_loop = pick("delay_loop", 60.0)
    if kind == "FILE_CHECK":
        delay_loop = min(delay_loop, FILE_POLL)
    retry_default = RETRY_DEFAULTS.get(kind, 1)
    before_retry = delay_loop if kind == "DNS_CHECK" else \
        DELAY_BEFORE_RETRY_DEFAULTS.get(kind, 1.0)
    return CheckSettings(
        delay_loop=delay_loop,
        connect_timeout=pick("connect_timeout", 5.0),
        retry=pick("retry", retry_default),
        delay_before_retry=pick("delay_before_retry", before_retry),
        warmup=pick("warmup", delay_loop),
        alpha=bool(pick("alpha", False)),
        rise=pick("rise", 1),
    )


def make_target(virtual_server: Any, real_server: Any, checker: Any,
                settings: CheckSettings, names: tuple[str, str]) -> Target:
    return Target(
        host=getattr(checker, "connect_ip", None) or real_server.address,
        port=getattr(checker, "connect_port", None) or real_server.port,
        connect_timeout=settings.connect_timeout,
        bind_ip=getattr(checker, "bindto", None),
        bind_port=getattr(checker, "bind_port", None),
        bind_if=getattr(checker, "bind_if", None),
        fwmark=getattr(checker, "fwmark", None),
        virtual_server=names[0], real_server=names[1],
        virtualhost=getattr(real_server, "virtualhost", None) or
        getattr(virtual_server, "virtualhost", None))


# Kind -> "module:Class", imported when first needed, so a checker module is only loaded
# by a configuration that uses it.
IMPLEMENTATIONS = {
    "TCP_CHECK": "director.check.tcp:TcpCheck",
    "HTTP_GET": "director.check.http:HttpCheck",
    "SSL_GET": "director.check.http:HttpCheck",
    "MISC_CHECK": "director.check.misc:MiscCheck",
    "SMTP_CHECK": "director.check.smtp:SmtpCheck",
    "DNS_CHECK": "director.check.dns:DnsCheck",
    "UDP_CHECK": "director.check.udp:UdpCheck",
    "PING_CHECK": "director.check.ping:PingCheck",
    "FILE_CHECK": "director.check.file:FileCheck",
}


def implementation(kind: str) -> type:
    path = IMPLEMENTATIONS.get(kind)
    if path is None:
        raise LookupError(f"no checker implements {kind}")
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)
