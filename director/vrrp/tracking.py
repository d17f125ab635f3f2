"""Tracking: interfaces, vrrp_scripts, files and processes that change an instance's priority
or hold it in FAULT (keepalived's track_interface / track_script / track_file /
track_process; the files' and processes' watchers live in file_tracking.py and
process_tracking.py, what each instance tracks is decided in tracked.py).

The rule is pure (``effect``); the watchers are greenlets that post ``PriorityChanged`` and
``FaultRaised``/``FaultCleared`` to the instance, never touching its state.

The weights' rules are tracked.py's.
"""

from __future__ import annotations

import logging
import os
import shlex
import subprocess
import time

from .. import hub
from ..log import event as log_event
from ..notify import identity, split_user
from ..scriptsec import default_user, refusal
from . import fsm
from .link import ethtool_link, interface_up  # noqa: F401 (tests and tools find them here)
from .tracked import Tracked, contribution, effect

log = logging.getLogger("director.vrrp.tracking")


class Tracker:
    """Owns the tracked state of one instance and tells the instance what changed."""

    def __init__(self, instance, tracked: list[Tracked]) -> None:
        self.instance = instance
        self.tracked = tracked
        self.ok: dict[str, bool | int] = {}       # a file's status is its number
        self.priority = instance.config.priority
        self.faults: frozenset[str] = frozenset()

    def update(self, key: str, fine: bool | int) -> None:
        if self.ok.get(key) == fine:
            return
        self.ok[key] = fine
        log_event(log, "vrrp.track", instance=self.instance.name, tracked=key,
                  state=("up" if fine else "down") if isinstance(fine, bool) else fine)
        priority, faults = effect(self.instance.config.priority, self.tracked, self.ok)
        for name in sorted(faults - self.faults):
            self.instance.post(fsm.FaultRaised(name))
        for name in sorted(self.faults - faults):
            self.instance.post(fsm.FaultCleared(name))
        if priority != self.priority:
            self.instance.post(fsm.PriorityChanged(priority))
        self.priority, self.faults = priority, faults

    def update_file(self, name: str, value: int) -> None:
        self.update(f"file {name}", value)

    def update_process(self, name: str, up: bool) -> None:
        self.update(f"process {name}", up)

    def snapshot(self, detail=lambda kind, name: {}) -> tuple:
        """What it tracks and how each stands (state.TrackedView); ``detail(kind, name)``
        adds what the watchers know (a process's count, a file's path)."""
        from ..state import TrackedView
        views = []
        for item in self.tracked:
            kind, name = item.key.split(" ", 1)
            status = self.ok.get(item.key, 0 if item.valued else True)
            added = contribution(item, status)
            views.append(TrackedView(kind, name, item.weight or 0, item.reverse, status,
                                     "FAULT" if added is None else added,
                                     **detail(kind, name)))
        return tuple(views)


def debounce(reported: bool, observed: bool, since: float | None, now: float,
             delays: tuple[float, float]) -> tuple[bool, float | None]:
    """interface_up_down_delays: (the state to report, since when a change waits). A change
    is reported once it has lasted its delay (``delays``: down, up); one that reverts
    before is forgotten."""
    if observed == reported:
        return reported, None
    since = now if since is None else since
    if now - since >= delays[1 if observed else 0]:
        return observed, None
    return reported, since


class InterfaceWatcher:
    """Polls link state (a tenth of a second: cheap, and no netlink subscription to lose)."""

    def __init__(self, period: float = 0.1) -> None:
        self.period = period
        self.subscribers: dict[str, list[Tracker]] = {}
        self.greenlet: hub.Greenlet | None = None
        self.delays: dict[str, tuple[float, float]] = {}    # interface_up_down_delays
        self.linkbeat: set[str] | bool = set()   # interfaces read with ETHTOOL (True: all)
        self.reported: dict[str, bool] = {}
        self.changing: dict[str, float] = {}               # when a change began
        # not polled: VMACs a reload is replacing (deleted, then made again with a new MAC):
        # their old instance must not see that as its link going down (MASTER -> FAULT, a
        # priority 0 advert on a device that is gone) before the reload retires it
        self.held: set[str] = set()

    def watch(self, ifname: str, tracker: Tracker) -> None:
        self.subscribers.setdefault(ifname, []).append(tracker)
        up = self.reported.setdefault(ifname, interface_up(ifname, self._linkbeat(ifname)))
        tracker.update(f"interface {ifname}", up)

    def _linkbeat(self, ifname: str) -> bool:
        return self.linkbeat is True or ifname in self.linkbeat

    def state(self, ifname: str, now: float) -> bool:
        observed = interface_up(ifname, self._linkbeat(ifname))
        delays = self.delays.get(ifname)
        if delays is None:
            self.reported[ifname] = observed
            return observed
        up, since = debounce(self.reported.get(ifname, observed), observed,
                             self.changing.get(ifname), now, delays)
        self.reported[ifname] = up
        if since is None:
            self.changing.pop(ifname, None)
        else:
            self.changing[ifname] = since
        return up

    def start(self) -> None:
        if self.subscribers:
            self.greenlet = hub.supervise(self.run, name="vrrp interface watcher")

    def run(self) -> None:
        while True:
            self.poll(time.monotonic())
            hub.sleep(self.period)

    def poll(self, now: float) -> None:
        for ifname, trackers in self.subscribers.items():
            if ifname in self.held:
                continue
            up = self.state(ifname, now)
            for tracker in trackers:
                tracker.update(f"interface {ifname}", up)

    def stop(self) -> None:
        if self.greenlet is not None:
            self.greenlet.kill(block=False)


class ScriptRunner:
    """Runs one vrrp_script every interval, without a shell, killed at its timeout; rise and
    fall successive results change its state (init_fail: it starts failed)."""

    def __init__(self, script, script_user: str | None = None,
                 script_security: bool = False) -> None:
        self.script = script
        self.configure(script_user, script_security)
        self.refused: str | None = None      # why the last run was refused (logged once)
        self.subscribers: list[Tracker] = []
        self.fine = not script.init_fail
        self.streak = 0
        self.greenlet: hub.Greenlet | None = None
        self.runs = 0
        self.timeouts = 0

    def configure(self, script_user: str | None, script_security: bool) -> None:
        """global_defs' script_user and enable_script_security, at start and on a reload
        that keeps this runner."""
        # The script's own user, else global_defs script_user (keepalived's order).
        self.user_spec = self.script.user or default_user(script_user)
        self.user, self.group = split_user(self.user_spec)
        self.security = script_security

    @property
    def key(self) -> str:
        return f"script {self.script.name}"

    def start(self) -> None:
        for tracker in self.subscribers:
            tracker.update(self.key, self.fine)
        if self.script.script is not None:
            self.greenlet = hub.supervise(self.run, name=f"vrrp script {self.script.name}")

    def run(self) -> None:
        while True:
            self.record(self.run_once())
            hub.sleep(self.script.interval)

    def run_once(self) -> bool:
        argv = shlex.split(self.script.script.line)
        timeout = self.script.timeout or self.script.interval
        self.runs += 1
        refused = refusal(self.script.script.line, self.user_spec, self.security)
        if refused != self.refused:         # once per change, not every interval
            self.refused = refused
            if refused:
                log_event(log, "vrrp.script_refused", logging.WARNING, script=self.script.name,
                          command=self.script.script.line, reason=refused)
        if refused:
            return False                     # counts as failing (a script that cannot run)
        try:
            done = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL, timeout=timeout,
                                  close_fds=True, env={"PATH": os.environ.get("PATH", "")},
                                  **identity(self.user, self.group))
        except subprocess.TimeoutExpired:
            self.timeouts += 1
            log_event(log, "vrrp.script_timeout", logging.WARNING, script=self.script.name,
                      timeout=timeout)
            return False
        except (OSError, KeyError) as exc:      # no such program, no such user
            log_event(log, "vrrp.script_error", logging.WARNING, script=self.script.name,
                      error=exc)
            return False
        return done.returncode == 0

    def record(self, success: bool) -> None:
        if success == self.fine:
            self.streak = 0
            return
        self.streak += 1
        needed = self.script.rise if success else self.script.fall
        if self.streak >= needed:
            self.fine, self.streak = success, 0
            for tracker in self.subscribers:
                tracker.update(self.key, success)

    def stop(self) -> None:
        if self.greenlet is not None:
            self.greenlet.kill(block=False)
