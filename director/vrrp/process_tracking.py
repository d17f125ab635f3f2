"""track_process, the pure part: which processes a vrrp_track_process matches, and
keepalived 2.2.7's quorum and delay rules (core/track_process.c). The I/O (the kernel's
process events, the /proc scans) is process_monitor.py's.

Matching: the process's name (``/proc/PID/comm``, 15 characters at most) equals ``process``;
with ``full_command`` (implied by parameters or ``param_match``) its argv[0]
(``/proc/PID/cmdline``) does, and the parameters are compared as NUL-separated bytes:
``exact`` all of them, ``partial`` the first ones, ``initial`` the first ones with the last
given one a prefix. A zombie does not count.

Quorum: the tracked thing is up while ``quorum <= count <= quorum_max``. keepalived reacts
only when the count crosses a bound:

* a process found anew (started, renamed or re-exec'd into a match, or by a scan) counts at
  once, and cancels a pending loss;
* a tracked process's fork that reaches the quorum cancels a pending loss, or else counts
  only after ``fork_delay`` (if the count is still in range then);
* a tracked process's exit that loses the quorum cancels a pending gain (and counts at
  once), or else counts only after ``terminate_delay``;
* a process that stops matching (exec or rename) counts at once.

Where director differs: keepalived counts a tracked process that exec's into a matching
command again twice (it adds the pid once more); here a pid counts once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

NO_LIMIT = 1 << 32                      # keepalived's quorum_max UINT_MAX


@dataclass(frozen=True)
class ProcessSpec:
    """A vrrp_track_process, as the matcher and the quorum rule need it."""
    name: str
    process: str
    params: bytes | None = None          # each parameter NUL-terminated
    param_match: str | None = None       # None, "exact", "partial", "initial"
    full_command: bool = False
    quorum: int = 1
    quorum_max: int = NO_LIMIT
    terminate_delay: float = 0.0
    fork_delay: float = 0.0

    @classmethod
    def of(cls, config: Any) -> ProcessSpec:
        words = config.process
        params = b"".join(w.encode() + b"\0" for w in words[1:]) if len(words) > 1 else None
        return cls(config.name, words[0], params, config.param_match, config.full_command,
                   config.quorum,
                   NO_LIMIT if config.quorum_max is None else config.quorum_max,
                   _delay(config.terminate_delay, config.delay),
                   _delay(config.fork_delay, config.delay))


def _delay(specific: float | None, general: float | None) -> float:
    return specific if specific is not None else (general or 0.0)


def _params_match(spec: ProcessSpec, params: bytes) -> bool:
    """keepalived's check_params."""
    wanted = spec.params or b""
    if spec.param_match == "exact":
        return params == wanted
    if len(params) < len(wanted):
        return False
    if spec.param_match == "partial":
        return params.startswith(wanted)
    return len(wanted) <= 1 or params.startswith(wanted[:-1])       # initial


def matches(spec: ProcessSpec, comm: str | None, cmdline: bytes | None) -> bool:
    """Whether a process with this name (None: a zombie, or gone) and command line
    (None: unreadable) is one of ``spec``'s."""
    if not spec.full_command:
        return comm is not None and comm == spec.process
    if not cmdline:
        return False
    argv0, _, params = cmdline.partition(b"\0")
    if argv0 != spec.process.encode():
        return False
    return spec.param_match is None or _params_match(spec, params)


@dataclass
class ProcessQuorum:
    """One vrrp_track_process's count and quorum. Each method returns True when ``up``
    changed; ``deadline`` is when ``expire`` must be called (a pending gain or loss)."""
    spec: ProcessSpec
    pids: set[int] = field(default_factory=set)
    up: bool = False
    deadline: float | None = None
    pending: str | None = None           # "fork" (a gain waits) or "terminate" (a loss)

    @property
    def count(self) -> int:
        return len(self.pids)

    def in_range(self) -> bool:
        return self.spec.quorum <= self.count <= self.spec.quorum_max

    def reset(self, pids: set[int]) -> bool:
        """A scan: the count is what it found (start-up, after lost events)."""
        self.pids = set(pids)
        self._cancel()
        return self._set(self.in_range())

    def _crossed_up(self) -> bool:
        return self.count == self.spec.quorum or self.count == self.spec.quorum_max + 1

    def _crossed_down(self) -> bool:
        return self.count + 1 == self.spec.quorum or self.count == self.spec.quorum_max

    def found(self, pid: int, now: float, delayed: bool = False) -> bool:
        """A process now matches (exec, rename, a scan between events; ``delayed``: it was
        forked by a tracked one, and fork_delay applies)."""
        if pid in self.pids:
            return False
        self.pids.add(pid)
        if not self._crossed_up():
            return False
        if self.pending == "terminate":
            self._cancel()
        elif delayed and self.spec.fork_delay:
            self.pending, self.deadline = "fork", now + self.spec.fork_delay
            return False
        return self._set(self.count == self.spec.quorum)

    def forked(self, pid: int, now: float) -> bool:
        """A tracked process forked ``pid``."""
        return self.found(pid, now, delayed=True)

    def exited(self, pid: int, now: float, delayed: bool = True) -> bool:
        """A tracked process ended (``delayed``: terminate_delay applies)."""
        if pid not in self.pids:
            return False
        self.pids.discard(pid)
        if not self._crossed_down():
            return False
        if self.pending == "fork":
            self._cancel()
        elif delayed and self.spec.terminate_delay:
            self.pending, self.deadline = "terminate", now + self.spec.terminate_delay
            return False
        return self._set(self.count == self.spec.quorum_max)

    def lost(self, pid: int, now: float) -> bool:
        """A tracked process no longer matches (exec'd or renamed into something else): gone
        at once, without terminate_delay."""
        return self.exited(pid, now, delayed=False)

    def expire(self, now: float) -> bool:
        if self.deadline is None or now < self.deadline:
            return False
        self._cancel()
        return self._set(self.in_range())

    def _cancel(self) -> None:
        self.pending = self.deadline = None

    def _set(self, up: bool) -> bool:
        changed = up != self.up
        self.up = up
        return changed
