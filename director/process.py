"""The process's own settings from global_defs: name, umask, nice value, real-time
scheduling and its RLIMIT_RTTIME, CPU affinity, memory locking.

keepalived sets these per child process (vrrp_*, checker_*); director is one process and
takes the strictest of the two (``plan``, pure). ``apply`` carries a plan out and says what
it could not do; the daemon applies it at start and again when a reload changes it.
"""

from __future__ import annotations

import logging
import os
import resource
import signal
from dataclasses import dataclass
from typing import Any

from .config.blocks.process import top_level
from .log import event

log = logging.getLogger("director")

DEFAULT_UMASK = 0o022               # keepalived's IWGRP | IWOTH
DEFAULT_RLIMIT_RTTIME = 10000       # microseconds, keepalived's default
# The hard RLIMIT_RTTIME (SIGKILL) is never below this: a Python process runs for tens of
# milliseconds without a blocking call (a reload's parse in 2 ms slices that only yield to
# the loop, a pass of the collector), and keepalived's 10 ms would kill it. The configured
# value is the soft limit: SIGXCPU, logged and counted.
MIN_HARD_RTTIME = 2_000_000
PR_SET_NAME = 15
MCL_CURRENT, MCL_FUTURE = 1, 2


@dataclass(frozen=True)
class ProcessPlan:
    """The process settings the configuration asks for (name, umask, nice, real-time
    priority, CPUs, memory locking, RTTIME)."""

    name: str | None = None
    umask: int = DEFAULT_UMASK
    nice: int | None = None
    rt_priority: int | None = None
    rlimit_rttime: int | None = None
    cpus: tuple[int, ...] = ()
    lock_memory: bool = False


def _both(defs: Any, name: str) -> list:
    return [v for v in (getattr(defs, f"vrrp_{name}"), getattr(defs, f"checker_{name}"))
            if v is not None]


def plan(config: Any) -> ProcessPlan:
    """The one process's settings: the lower nice value, the higher real-time priority, the
    lower RTTIME limit, the union of the CPU sets, memory locked if either asks."""
    defs = config.global_defs
    nice, rt, rttime = _both(defs, "priority"), _both(defs, "rt_priority"), \
        _both(defs, "rlimit_rttime")
    cpus = sorted(set(defs.vrrp_cpu_affinity or ()) | set(defs.checker_cpu_affinity or ()))
    name = defs.process_name or defs.vrrp_process_name or defs.checker_process_name or \
        ("keepalived" if defs.process_names else None)
    return ProcessPlan(
        name=name,
        umask=DEFAULT_UMASK if defs.umask is None else defs.umask,
        nice=min(nice) if nice else None,
        rt_priority=max(rt) if rt else None,
        rlimit_rttime=(min(rttime) if rttime else DEFAULT_RLIMIT_RTTIME) if rt else None,
        cpus=tuple(cpus),
        lock_memory=bool(defs.vrrp_no_swap or defs.checker_no_swap))


def _libc():
    # ctypes loads only for the keywords that need it (a millisecond of every start-up)
    import ctypes.util
    return ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


def _check(result: int) -> None:
    if result != 0:
        import ctypes
        number = ctypes.get_errno()
        raise OSError(number, os.strerror(number))


def set_name(name: str) -> None:
    """/proc/PID/comm (what ps, top and pgrep show)."""
    import ctypes
    _check(_libc().prctl(PR_SET_NAME, ctypes.c_char_p(name.encode()[:15]), 0, 0, 0))


def lock_memory() -> None:
    _check(_libc().mlockall(MCL_CURRENT | MCL_FUTURE))


def unlock_memory() -> None:
    _check(_libc().munlockall())


def _on_xcpu(signum, frame) -> None:
    # In the signal handler: nothing but a log line (the loop may be the culprit).
    event(log, "director.rttime_exceeded", logging.WARNING,
          note="real-time CPU time without a blocking call passed vrrp_rlimit_rttime")


def apply(new: ProcessPlan, old: ProcessPlan | None = None) -> list[str]:
    """Carry out ``new`` (the settings that differ from ``old``); returns what failed, each
    said in one line (the daemon runs on without it)."""
    old = old or ProcessPlan(umask=-1)
    failed = []

    def attempt(what: str, action) -> None:
        try:
            action()
        except OSError as exc:
            failed.append(f"{what}: {exc.strerror or exc}")

    if new.umask != old.umask:
        os.umask(new.umask)
    if new.name and new.name != old.name:
        attempt(f"process name {new.name}", lambda: set_name(new.name))
    if new.nice != old.nice:
        attempt(f"nice {new.nice}",
                lambda: os.setpriority(os.PRIO_PROCESS, 0, new.nice or 0))
    if new.cpus != old.cpus:
        attempt(f"cpu affinity {new.cpus}", lambda: os.sched_setaffinity(
            0, new.cpus or range(os.cpu_count() or 1)))
    if (new.rt_priority, new.rlimit_rttime) != (old.rt_priority, old.rlimit_rttime):
        attempt(f"real-time priority {new.rt_priority}", lambda: _realtime(new))
    if new.lock_memory != old.lock_memory:
        attempt("memory lock", lock_memory if new.lock_memory else unlock_memory)
    for line in failed:
        event(log, "director.process_setting_failed", logging.WARNING, error=line)
    if not failed:
        event(log, "director.process", process_name=new.name, umask=f"{new.umask:03o}", nice=new.nice,
              rt_priority=new.rt_priority, cpus=",".join(map(str, new.cpus)) or None,
              lock_memory=new.lock_memory)
    return failed


def _realtime(new: ProcessPlan) -> None:
    """SCHED_RR at the priority (its RLIMIT_RTTIME first, so that it is never without
    one), or back to SCHED_OTHER."""
    if new.rt_priority is None:
        os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
        return
    soft = new.rlimit_rttime or DEFAULT_RLIMIT_RTTIME
    signal.signal(signal.SIGXCPU, _on_xcpu)
    resource.setrlimit(resource.RLIMIT_RTTIME, (soft, max(soft, MIN_HARD_RTTIME)))
    os.sched_setscheduler(0, os.SCHED_RR | getattr(os, "SCHED_RESET_ON_FORK", 0),
                          os.sched_param(new.rt_priority))


PID_DIR = "/run/keepalived"


def pid_dir_file(config: Any) -> str | None:
    """use_pid_dir without -p: keepalived's pid directory, the instance in the name."""
    if not (config.use_pid_dir or config.global_defs.use_pid_dir):
        return None
    instance = top_level(config, "instance")
    return os.path.join(PID_DIR, f"keepalived_{instance}.pid" if instance else
                        "keepalived.pid")


SO_RCVBUFFORCE = 33                 # asm-generic/socket.h: past net.core.rmem_max


def netlink_buffer(config: Any, kind: str) -> tuple[int, bool] | None:
    """(bytes, force) of ``{kind}_netlink_cmd_rcv_bufs`` (kind vrrp or lvs), None when not
    set. director's checkers monitor no links: lvs_netlink_monitor_rcv_bufs stands in for
    the IPVS command socket's when the cmd one is not given."""
    defs = config.global_defs
    for which in ("cmd", "monitor") if kind == "lvs" else ("cmd",):
        size = getattr(defs, f"{kind}_netlink_{which}_rcv_bufs")
        if size:
            return size, bool(getattr(defs, f"{kind}_netlink_{which}_rcv_bufs_force"))
    return None


def set_receive_buffer(sock: Any, setting: tuple[int, bool] | None) -> None:
    """SO_RCVBUF (or SO_RCVBUFFORCE) of a netlink socket, as configured."""
    if setting is not None:
        import socket
        size, force = setting
        sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE if force else socket.SO_RCVBUF,
                        size)


class AutoPriority:
    """max_auto_priority: a main loop late by min_auto_priority_delay or more switches the
    process to SCHED_RR at priority 1, and each further late run raises it by one, up to
    max_auto_priority (keepalived's automatic priority increase). Fed every lag measure
    (looplag.MainLoopLag.on_lag)."""

    def __init__(self) -> None:
        self.maximum = 0
        self.min_delay = 1.0
        self.base: int | None = None          # the configured rt priority, if any
        self.current: int | None = None       # the priority raised to, if any

    def configure(self, config: Any, plan: ProcessPlan) -> None:
        defs = config.global_defs
        self.maximum = max(0, defs.max_auto_priority or 0)
        self.min_delay = defs.min_auto_priority_delay / 1e6
        self.base = plan.rt_priority
        self.rttime = plan.rlimit_rttime or DEFAULT_RLIMIT_RTTIME

    def on_lag(self, lag: float) -> None:
        if not self.maximum or lag < self.min_delay:
            return
        now = max(self.current or 0, self.base or 0)
        if now >= self.maximum:
            return
        raised = ProcessPlan(rt_priority=now + 1, rlimit_rttime=self.rttime)
        try:
            _realtime(raised)
        except OSError as exc:
            event(log, "director.auto_priority_failed", logging.WARNING, error=exc)
            self.maximum = 0                   # once said is enough
            return
        self.current = now + 1
        event(log, "director.auto_priority", logging.WARNING, rt_priority=self.current,
              lag=f"{lag:.3f}s", maximum=self.maximum)


class OwnProcess:
    """The daemon's own process: the namespace it entered, the plan applied, the priority
    max_auto_priority raised. The daemon calls enter_namespace once, configure at start and
    on each reload, view for the live state."""

    def __init__(self) -> None:
        self.plan: ProcessPlan | None = None
        self.namespace: str | None = None        # net_namespace entered at start
        self.auto = AutoPriority()

    def enter_namespace(self, config: Any) -> None:
        """Raises OSError (the daemon does not start)."""
        from . import netns
        self.namespace = top_level(config, "net_namespace")
        if self.namespace:
            netns.enter(self.namespace)
            event(log, "director.net_namespace", namespace=self.namespace)

    def configure(self, config: Any, loop_lag: Any) -> None:
        """Name, umask, scheduling, affinity, memory lock: what changed is applied."""
        if top_level(config, "net_namespace") != self.namespace:
            event(log, "reload.net_namespace_kept", logging.WARNING, running=self.namespace,
                  note="a reload cannot move the daemon to another namespace: restart it")
        new = plan(config)
        if new != self.plan:
            apply(new, self.plan)
            self.plan = new
        self.auto.configure(config, new)
        loop_lag.on_lag = self.auto.on_lag

    def view(self, reload_at: float | None) -> Any:
        if self.plan is None:
            return None
        from .state import ProcessView
        configured = self.plan.rt_priority or 0
        raised = self.auto.current if (self.auto.current or 0) > configured else None
        return ProcessView(self.plan.name, self.plan.umask, self.plan.nice,
                           raised or self.plan.rt_priority, self.plan.cpus,
                           self.plan.lock_memory, self.namespace, reload_at)


def raise_fd_limit() -> tuple[int, int]:
    """The soft RLIMIT_NOFILE raised to the hard one; returns (soft before, soft now)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:        # Linux caps it at fs.nr_open anyway
        hard = 1 << 20
    if soft != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            return soft, hard
        except (ValueError, OSError):
            pass
    return soft, resource.getrlimit(resource.RLIMIT_NOFILE)[0]
