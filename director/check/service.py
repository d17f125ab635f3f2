"""The health-check subsystem: one job per checker block of every real server, a real
server up only while all its checkers are (keepalived's rule), notify_up/notify_down run on
each change, and a snapshot for the dashboard, the metrics and the dump files."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Callable

from .. import hub
from ..clock import Clock
from ..config.blocks.virtual_server import virtual_server_name
from ..log import event
from ..notify import Notifier
from .base import CheckResult, implementation, make_target, resolve_settings
from .scheduler import Job, Scheduler

log = logging.getLogger("director.check")

NOT_RUN = {"BFD_CHECK"}          # parsed, warned about by -t, not run


def real_server_name(real: Any) -> str:
    host = f"[{real.address}]" if ":" in real.address else real.address
    return f"{host}:{real.port}" if real.port is not None else host


@dataclass(eq=False)
class RealServerState:
    virtual_server: Any
    real_server: Any
    name: tuple[str, str]
    jobs: list[Job] = field(default_factory=list)
    up: bool = True
    drained: bool = False           # weight 0 on an operator's request, still checked

    def compute_up(self) -> bool:
        return all(job.health.up for job in self.jobs)

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
        self.listeners: list[Callable[[RealServerState], None]] = []   # up/down changes

    def start(self) -> None:
        track_files = {item.name: item for item in self.config.track_files}
        for virtual in self.config.virtual_servers:
            vs_name = virtual_server_name(virtual)
            for real in virtual.real_servers:
                state = RealServerState(virtual, real, (vs_name, real_server_name(real)))
                for block in real.checkers:
                    if block.kind in NOT_RUN:
                        continue
                    job = self._job(virtual, real, block, state.name, track_files)
                    state.jobs.append(job)
                    self._by_job[id(job)] = state
                state.up = state.compute_up()
                self.real_servers.append(state)
                self._by_name[(vs_name, real.address, real.port)] = state
        self.scheduler.listeners.append(self._changed)
        self.scheduler.start()
        event(log, "check.started", jobs=len(self.scheduler.jobs),
              real_servers=len(self.real_servers))

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

    def stop(self) -> None:
        self.scheduler.stop()
        # omega: with the daemon gone the servers are no longer served; keepalived runs their
        # notify_down as if they had failed.
        for state in self.real_servers:
            command = state.real_server.notify_down
            if state.virtual_server.omega and state.up and command is not None:
                self.notifier.notify(command, (), f"real server {state.name[1]} down (omega)")

    def snapshot(self, yield_every: int = 0) -> list[dict]:
        """The virtual servers with their real servers' live state (contract's shape);
        ``yield_every`` lets the loop run between every that many real servers."""
        out: dict[str, dict] = {}
        for number, state in enumerate(self.real_servers, 1):
            if yield_every and number % yield_every == 0:
                hub.sleep(0)
            virtual, real = state.virtual_server, state.real_server
            entry = out.setdefault(state.name[0], {
                "name": state.name[0], "address": virtual.address, "port": virtual.port,
                "fwmark": virtual.fwmark, "protocol": virtual.protocol,
                "lb_algo": virtual.lb_algo, "lb_kind": virtual.lb_kind, "real_servers": []})
            last = max((job for job in state.jobs if job.last is not None),
                       key=lambda job: job.last_at, default=None)
            entry["real_servers"].append({
                "address": real.address, "port": real.port,
                "configured_weight": real.weight, "up": state.up,
                "checker": "+".join(job.key[2] for job in state.jobs) or None,
                "last_check": None if last is None else {
                    "ok": last.last.ok, "duration_seconds": round(last.last.duration, 6),
                    "error": last.last.error, "at": self.scheduler.wall_time(last.last_at),
                    **({"cert_not_after": last.last.detail["cert_not_after"]}
                       if "cert_not_after" in last.last.detail else {})},
                "checks": {"ok": sum(job.ok for job in state.jobs),
                           "failed": sum(job.failed for job in state.jobs)},
            })
        return list(out.values())
