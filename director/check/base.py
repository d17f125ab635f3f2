"""What the check service needs to turn a parsed checker block into a checker: the settings in
force (resolve_settings, with keepalived's inheritance and the kind's defaults), where the check
goes (make_target), and the kind's declaration (kinds/), which builds it.

The types of checker.py are here too, for the callers that import them from here.
"""

from __future__ import annotations

from typing import Any

from .checker import CheckResult, Checker, CheckSettings, Target
from .kinds import KINDS, Kind, kind

__all__ = ["KINDS", "CheckResult", "CheckSettings", "Checker", "Kind", "Target", "implementation",
           "kind", "make_target", "resolve_settings"]


def resolve_settings(virtual_server: Any, real_server: Any, checker: Any,
                     log_all_failures: bool = False) -> CheckSettings:
    """keepalived's inheritance: the checker's value, else the real server's, else the
    virtual server's, else the kind's default. ``log_all_failures``: global_defs
    checker_log_all_failures (or the checker's own)."""

    def pick(name: str, default):
        for level in (checker, real_server, virtual_server):
            value = getattr(level, name, None)
            if value is not None and value is not False:
                return value
        return default

    declared = kind(checker.kind)
    delay_loop = pick("delay_loop", 60.0)
    if declared.max_delay_loop is not None:
        delay_loop = min(delay_loop, declared.max_delay_loop)
    before_retry = delay_loop if declared.delay_before_retry is None else \
        declared.delay_before_retry
    return CheckSettings(
        delay_loop=delay_loop,
        connect_timeout=pick("connect_timeout", 5.0),
        retry=pick("retry", declared.retry),
        delay_before_retry=pick("delay_before_retry", before_retry),
        warmup=pick("warmup", delay_loop),
        alpha=bool(pick("alpha", False)),
        rise=pick("rise", 1),
        log_all_failures=bool(log_all_failures or getattr(checker, "log_all_failures", False)),
        fast_recovery=bool(getattr(checker, "fast_recovery", False)),
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


def implementation(name: str) -> type:
    """The checker class of a kind (bench/check_http_scale.py builds checkers by hand)."""
    declared = kind(name)
    if declared.implementation is None:
        raise LookupError(f"no checker implements {name}")
    return declared.implementation()
