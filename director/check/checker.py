"""What a checker is: where a check goes (Target), what it found (CheckResult), the settings in
force (CheckSettings) and the Checker protocol the scheduler drives.

A checker is a class built from its parsed config block and a Target, doing no I/O in its
constructor; ``check()`` runs one attempt in a greenlet and returns a CheckResult. It honours
``target.connect_timeout`` for its own waits; the scheduler also kills it at a hard deadline,
so a checker that hangs or raises costs only its own server a failed attempt. A checker that
runs on the loop instead has ``start(done)`` and ends the attempt with ``done(result)``, or
``done(PASSED, duration)`` for a pass with nothing else to say (no object made per check:
TCP_CHECK's ten thousand a second); whoever passes a ``done`` accepts both.

The checker modules import these from here, not from base.py: base.py reads the kinds'
declarations (kinds/), which import their checker modules when the first checker is built.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
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
    # A reply the checker could not read (not HTTP, too large...): the reason, a label of
    # director_check_reply_errors_total.
    reply_error: str | None = None
    # AGENT_CHECK: what its agent has said (check/agent.py AgentState), whose change is an
    # effect on the pool like a weight's
    agent: Any = None

    @classmethod
    def passed(cls, duration: float) -> "CheckResult":
        """CheckResult(True, duration), built without the frozen dataclass's __init__ (one
        object.__setattr__ per field: 2.9 us against 1.1 here, at ten thousand a second)."""
        result = _new(cls)
        fields = result.__dict__
        fields.update(_PASSED)
        fields["duration"] = duration
        fields["detail"] = {}
        return result


_new = object.__new__
_PASSED = {"ok": True, "error": None, "weight": None, "reply_error": None, "agent": None}
assert set(_PASSED) | {"duration", "detail"} == set(CheckResult.__dataclass_fields__)

# A pass with nothing else to say, shared: a checker on the loop ends such an attempt with
# ``done(PASSED, duration)`` and no CheckResult is made (the scheduler keeps the duration
# beside it, Job.last_duration). Its own duration means nothing; its detail is read-only.
PASSED = CheckResult(True, 0.0, detail=MappingProxyType({}))


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
    log_all_failures: bool = False     # log each failed attempt while up, not only the fall
    fast_recovery: bool = False        # HTTP_GET / SSL_GET: the rise checks back to back
