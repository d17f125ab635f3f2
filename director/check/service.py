"""The health-check subsystem: one job per checker block of every real server, a real
server up only while all its checkers are (keepalived's rule), notify_up/notify_down run on
each change, and a snapshot for the dashboard, the metrics and the dump files."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Callable

from ..clock import Clock
from ..config.blocks.virtual_server import real_server_name, virtual_server_name
from ..log import event
from ..notify import Notifier
from .base import CheckResult, implementation, make_target, resolve_settings
from .scheduler import Job, Scheduler

log = logging.getLogger("director.check")

NOT_RUN = {"BFD_CHECK"}          # parsed, warned about by -t, not run


@dataclass(eq=False)
class RealServerState:
    virtual_server: Any
    real_server: Any
    name: tuple[str, str]
    jobs: list[Job] = field(default_factory=list)
    up: bool = True
    drained: bool = False           # weight 0 on an operator's request, still checked
    signature: tuple = ()           # what its checks are built from (CheckService.reload)

    def compute_up(self) -> bool:
        return all(job.health.up for job in self.jobs)

    def last_error(self) -> str:
        """The error of the most recent failed attempt among its checkers, if any."""
        failed = [job for job in self.jobs if job.last is not None and not job.last.ok]
        latest = max(failed, key=lambda job: job.last_at, default=None)
        return (latest.last.error or "failed") if latest is not None else ""

    def dynamic_weight(self) -> int | None:
        """MISC_CHECK misc_dynamic: the weight the script asked for last."""
        for job in self.jobs:
            if job.last is not None and job.last.weight is not None:
                return job.last.weight
        return None


class CheckService:
    def __init__(self, config: Any, clock: Clock, notifier: Notifier | None = None,
                 workers: int = 256) -> None:
        self.config = config
        self.clock = clock
        self.notifier = notifier or Notifier(config.global_defs.script_user)
        self.scheduler = Scheduler(clock, workers=workers)
        self.real_servers: list[RealServerState] = []
        self._by_job: dict[int, RealServerState] = {}
        self._by_name: dict[tuple, RealServerState] = {}
        self._by_label: dict[tuple[str, str], RealServerState] = {}     # the names' pair
        self.listeners: list[Callable[[RealServerState], None]] = []   # up/down changes

    def start(self) -> None:
        for virtual in self.config.virtual_servers:
            vs_name = virtual_server_name(virtual)
            for real in virtual.real_servers:
                self._add(virtual, real, (vs_name, real_server_name(real)))
        self.scheduler.listeners.append(self._changed)
        self.scheduler.start()
        event(log, "check.started", jobs=len(self.scheduler.jobs),
              real_servers=len(self.real_servers))

    def _add(self, virtual: Any, real: Any, name: tuple[str, str]) -> RealServerState:
        """A real server as keepalived starts one: up, or down with alpha."""
        track_files = {item.name: item for item in self.config.track_files}
        state = RealServerState(virtual, real, name)
        state.signature = self._signature(self.config, virtual, real, name)
        for block in real.checkers:
            if block.kind in NOT_RUN:
                continue
            job = self._job(virtual, real, block, state.name, track_files)
            state.jobs.append(job)
            self._by_job[id(job)] = state
        state.up = state.compute_up()
        self.real_servers.append(state)
        self._by_name[(name[0], real.address, real.port)] = state
        self._by_label[state.name] = state
        return state

    @staticmethod
    def _signature(config: Any, virtual: Any, real: Any, name: tuple[str, str]) -> tuple:
        """Everything its checkers are built from: equal signatures across a reload mean
        the same checks, so the server keeps its jobs, up/down state and counters."""
        blocks = tuple(block for block in real.checkers if block.kind not in NOT_RUN)
        settings = tuple(resolve_settings(virtual, real, block) for block in blocks)
        file_check = any(block.kind == "FILE_CHECK" for block in blocks)
        return (blocks, settings,
                tuple(make_target(virtual, real, block, setting, name)
                      for block, setting in zip(blocks, settings)),
                config.global_defs.script_user, config.ssl,
                # FILE_CHECK scales the configured weight and reads the track_file blocks
                (real.weight, tuple(config.track_files)) if file_check else ())

    def reload(self, config: Any) -> dict[str, int]:
        """Apply a new configuration's real servers: unchanged ones keep their jobs, state
        and counters (their configuration objects are swapped for the new ones); removed
        ones stop being checked; added ones, and those whose checks changed, start as
        keepalived starts them (a drain is kept). Returns how many of each."""
        old, self.config = self._by_name, config
        wanted = {}
        for virtual in config.virtual_servers:
            vs_name = virtual_server_name(virtual)
            for real in virtual.real_servers:
                wanted[(vs_name, real.address, real.port)] = (virtual, real)
        counts = {"kept": 0, "added": 0, "removed": 0, "changed": 0}
        gone = [state for key, state in old.items() if key not in wanted]
        replaced = []
        for key, (virtual, real) in wanted.items():
            state = old.get(key)
            name = (key[0], real_server_name(real))
            if state is not None and state.signature == self._signature(config, virtual,
                                                                           real, name):
                state.virtual_server, state.real_server = virtual, real
                counts["kept"] += 1
                continue
            if state is not None:
                replaced.append(state)
            counts["changed" if state is not None else "added"] += 1
        counts["removed"] = len(gone)
        self._forget(gone + replaced)
        for state in replaced:
            new = self._add(*wanted[(state.name[0], state.real_server.address,
                                     state.real_server.port)], state.name)
            new.drained = state.drained
        for key, (virtual, real) in wanted.items():
            if key not in old:
                self._add(virtual, real, (key[0], real_server_name(real)))
        # keep the configuration's order (the snapshot walks the config, this is for dumps)
        order = {key: index for index, key in enumerate(wanted)}
        self.real_servers.sort(key=lambda state: order.get(
            (state.name[0], state.real_server.address, state.real_server.port), 0))
        event(log, "check.reloaded", **counts)
        return counts

    def _forget(self, states: list[RealServerState]) -> None:
        """In one pass each (ten thousand servers removed must not cost n squared)."""
        jobs = [job for state in states for job in state.jobs]
        self.scheduler.remove(*jobs)
        for job in jobs:
            self._by_job.pop(id(job), None)
        forgotten = {id(state) for state in states}
        self.real_servers = [state for state in self.real_servers if id(state) not in forgotten]
        for state in states:
            self._by_name.pop((state.name[0], state.real_server.address,
                               state.real_server.port), None)
            self._by_label.pop(state.name, None)

    def state_of(self, virtual_name: str, real: Any) -> RealServerState | None:
        return self._by_name.get((virtual_name, real.address, real.port))

    def _job(self, virtual, real, block, names, track_files) -> Job:
        settings = resolve_settings(virtual, real, block)
        target = make_target(virtual, real, block, settings, names)
        cls = implementation(block.kind)
        if block.kind == "MISC_CHECK":     # keepalived: misc_timeout defaults to delay_loop
            checker = cls(block, target, script_user=self.config.global_defs.script_user,
                          delay_loop=settings.delay_loop)
        elif block.kind == "FILE_CHECK":   # the file's value adjusts the configured weight
            checker = cls(block, target, track_files=track_files, base_weight=real.weight)
        elif block.kind == "SSL_GET":      # the SSL block's client certificate, if any
            checker = cls(block, target, ssl_defs=self.config.ssl)
        else:
            checker = cls(block, target)
        return self.scheduler.add((*names, block.kind), checker, settings)

    def _changed(self, job: Job, result: CheckResult) -> None:
        state = self._by_job.get(id(job))
        if state is None:
            return
        up = state.compute_up()
        if up == state.up:
            return
        state.up = up
        event(log, "check.real_server", virtual_server=state.name[0],
              real_server=state.name[1], state="up" if up else "down",
              error=result.error or "")
        command = state.real_server.notify_up if up else state.real_server.notify_down
        if command is not None:
            self.notifier.notify(command, (), f"real server {state.name[1]} "
                                              f"{'up' if up else 'down'}")
        for listener in list(self.listeners):
            listener(state)

    def history(self, virtual_name: str) -> dict[str, list] | None:
        """The recent (duration, ok) of each real server of a virtual server (its checkers'
        results merged in time order), None if there is no such virtual server."""
        states = [state for state in self.real_servers if state.name[0] == virtual_name]
        if not states and virtual_name not in {virtual_server_name(v)
                                               for v in self.config.virtual_servers}:
            return None
        return {state.name[1]: [[round(duration, 6), ok] for duration, ok in
                                (state.jobs[0].history if len(state.jobs) == 1 else
                                 [point for job in state.jobs for point in job.history])]
                for state in states}

    def find(self, virtual_name: str, real_name: str) -> RealServerState | None:
        """By the names the API and the dashboard use."""
        return self._by_label.get((virtual_name, real_name))

    def stop(self) -> None:
        self.scheduler.stop()
        # omega: with the daemon gone the servers are no longer served; keepalived runs their
        # notify_down as if they had failed.
        for state in self.real_servers:
            command = state.real_server.notify_down
            if state.virtual_server.omega and state.up and command is not None:
                self.notifier.notify(command, (), f"real server {state.name[1]} down (omega)")
