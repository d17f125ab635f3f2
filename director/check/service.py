"""The health-check subsystem: one job per checker block of every real server, a real
server up only while all its checkers are (keepalived's rule), notify_up/notify_down run on
each change, and a snapshot for the dashboard, the metrics and the dump files."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from .. import hub
from ..clock import Clock
from ..config.blocks.virtual_server import real_server_name, virtual_server_name
from ..log import event
from ..notify import Notifier
from ..notify_fifo import rs_line
from ..state import CheckView, JobStats, LastCheck, frozen
from .base import CheckResult, kind, make_target, resolve_settings
from .hysteresis import Health
from .scheduler import Job, Scheduler

log = logging.getLogger("director.check")

SWAP_SLICE = 2000               # kept servers updated by a reload between two turns of the loop


@dataclass(eq=False)
class RealServerState:
    virtual_server: Any
    real_server: Any
    name: tuple[str, str]
    jobs: list[Job] = field(default_factory=list)
    up: bool = True
    drained: bool = False           # weight 0 on an operator's request, still checked
    has_agent: bool = False         # one of its checkers is an AGENT_CHECK
    # the rest of the operator's overrides (director/overrides.py puts them here)
    weight_override: int | None = None  # the weight it gets instead, until a reload
    maintenance: bool = False       # out of the pool, still checked
    overrides: tuple = ()           # the active overrides.Entry of it, for the views
    # Its last CheckView (CheckService.views) and the model it was built from: a server no
    # check, override or reload touched since gives the same object again, on which the web
    # face and the metrics keep what they made of it.
    view: CheckView | None = None
    viewed_model: Any = None

    def compute_up(self) -> bool:
        return all(job.health.up for job in self.jobs)

    def last_error(self) -> str:
        """The error of the most recent failed attempt among its checkers, if any."""
        failed = [job for job in self.jobs if job.result is not None and not job.result.ok]
        latest = max(failed, key=lambda job: job.last_at, default=None)
        return (latest.result.error or "failed") if latest is not None else ""

    def dynamic_weight(self) -> int | None:
        """The weight a checker asked for last: MISC_CHECK misc_dynamic, FILE_CHECK,
        AGENT_CHECK (the first of its checkers that asks one)."""
        for job in self.jobs:
            if job.result is not None and job.result.weight is not None:
                return job.result.weight
        return None

    def agent(self) -> Any:
        """What its AGENT_CHECK's agent has said (check/agent.py AgentState), if it has one
        that has spoken; its administrative state (drain, maint) and maxconn reach the pool."""
        for job in self.jobs:
            if job.result is not None and job.result.agent is not None:
                return job.result.agent
        return None


def carried(before: Sequence[Job], kinds: Sequence[str]) -> list[Job | None]:
    """migrate_checkers' matching: for each checker kind a server has after a reload, in
    its order, the first job of that kind it had before (each taken once), None for a new
    kind. Shared with the reload preview (reload_preview.live_after), which must foresee
    what a migration keeps."""
    previous: dict[str, Job] = {}
    for job in before:
        previous.setdefault(job.key[2], job)
    return [previous.pop(name, None) for name in kinds]


class CheckService:
    def __init__(self, config: Any, clock: Clock, notifier: Notifier | None = None,
                 workers: int = 256) -> None:
        self.config = config
        self.clock = clock
        self.notifier = notifier or Notifier(
            config.global_defs.script_user,
            script_security=config.global_defs.enable_script_security)
        self.scheduler = Scheduler(clock, workers=workers)
        self.real_servers: list[RealServerState] = []
        self._by_job: dict[int, RealServerState] = {}
        self._by_name: dict[tuple, RealServerState] = {}
        self._by_label: dict[tuple[str, str], RealServerState] = {}     # the names' pair
        self._servers = 0               # changes of the set of states (_add, _forget)
        # virtual server name -> (its real_server models, _servers, their states): views()
        self._aligned: dict[str, tuple[Any, int, list]] = {}
        self.listeners: list[Callable[[RealServerState], None]] = []   # up/down changes
        # a checker's up/down change that leaves its server as it was (it has others)
        self.checker_listeners: list[Callable[[RealServerState, Job], None]] = []
        # a change of the weight a checker asks for, or of what an agent says (drain, maint)
        self.effect_listeners: list[Callable[[RealServerState], None]] = []

    def start(self) -> None:
        for virtual in self.config.virtual_servers:
            vs_name = virtual_server_name(virtual)
            for real in virtual.real_servers:
                self._add(virtual, real, (vs_name, real_server_name(real)))
        self._init_notifies(self.real_servers)
        self.scheduler.listeners.append(self._changed)
        self.scheduler.effect_listeners.append(self._effect)
        self.scheduler.start()
        event(log, "check.started", jobs=len(self.scheduler.jobs),
              real_servers=len(self.real_servers))

    def _add(self, virtual: Any, real: Any, name: tuple[str, str]) -> RealServerState:
        """A real server as keepalived starts one: up, or down with alpha."""
        state = RealServerState(virtual, real, name)
        for block in real.checkers:
            if not kind(block.kind).runs:     # parsed, warned about by -t (BFD_CHECK)
                continue
            job = self._job(virtual, real, block, state.name)
            state.jobs.append(job)
            state.has_agent = state.has_agent or block.kind == "AGENT_CHECK"
            self._by_job[id(job)] = state
        state.up = state.compute_up()
        self.real_servers.append(state)
        self._by_name[(name[0], real.address, real.port)] = state
        self._servers += 1
        self._by_label[state.name] = state
        return state

    def apply(self, plan: Any, config: Any) -> None:
        """Apply a reload's real servers (reconcile.ServerPlan): kept ones keep their jobs,
        state and counters (their configuration objects are swapped for the new ones);
        removed ones stop being checked; added ones start as keepalived starts them; changed
        ones get new checkers and carry their state over (_migrate)."""
        wanted = plan.servers
        old = self._by_name
        self.config = config
        # The swap changes no up/down, drain or weight the load balancer reads (it weighs
        # with its own configuration), so the loop may run between slices of it: ten
        # thousand kept servers are milliseconds of work.
        for number, key in enumerate(plan.kept, 1):
            state = old[key]
            state.virtual_server, state.real_server = wanted[key]
            if number % SWAP_SLICE == 0:
                hub.breathe()
        replaced = [old[key] for key in plan.changed]
        self._forget([old[key] for key in plan.removed] + replaced)
        for before in replaced:
            key = (before.name[0], before.real_server.address, before.real_server.port)
            self._migrate(before, self._add(*wanted[key], before.name))
        self._init_notifies([self._add(*wanted[key], (key[0], real_server_name(wanted[key][1])))
                             for key in plan.added])
        # the file's order (the dumps walk this list)
        self.real_servers = [self._by_name[key] for key in wanted]
        event(log, "check.reloaded", **plan.counts())

    def _migrate(self, before: RealServerState, after: RealServerState) -> None:
        """keepalived's migrate_checkers: a checker of the same kind as one the server had
        keeps its health (up/down, retry and rise counters) and its counts; a new kind
        starts where the server was, so a dead server stays out until a checker finds it
        alive. A drain is kept. If the server's state changes all the same (its failing
        checker was removed), that is a change like any other: an event and its notify."""
        after.drained = before.drained
        after.weight_override, after.maintenance = before.weight_override, before.maintenance
        after.overrides = before.overrides
        for job, old_job in zip(after.jobs, carried(before.jobs,
                                                    [job.key[2] for job in after.jobs])):
            if old_job is not None:
                job.health = old_job.health
                job.result, job.last_duration = old_job.result, old_job.last_duration
                job.last_at = old_job.last_at
                job.ok, job.failed = old_job.ok, old_job.failed
                inherit = getattr(job.checker, "inherit", None)
                if inherit is not None:          # what an agent said outlives its checker
                    inherit(old_job.checker)
            else:
                job.health = Health(up=before.up)
        after.up = before.up
        if after.compute_up() != before.up:
            self._set_up(after, not before.up, "its checkers changed")

    def _init_notifies(self, states: list[RealServerState]) -> None:
        """global_defs rs_init_notifies: a real server that starts up (at start, or added by
        a reload) notifies UP as a change would; keepalived's default is silence."""
        if self.config.global_defs.rs_init_notifies:
            for state in states:
                if state.up:
                    self._notify(state, True)

    def _forget(self, states: list[RealServerState]) -> None:
        """In one pass each (ten thousand servers removed must not cost n squared)."""
        if not states:
            return
        jobs = [job for state in states for job in state.jobs]
        self.scheduler.remove(*jobs)
        for job in jobs:
            self._by_job.pop(id(job), None)
        forgotten = {id(state) for state in states}
        self._servers += 1
        self._aligned.clear()
        self.real_servers = [state for state in self.real_servers if id(state) not in forgotten]
        for state in states:
            self._by_name.pop((state.name[0], state.real_server.address,
                               state.real_server.port), None)
            self._by_label.pop(state.name, None)

    def state_of(self, virtual_name: str, real: Any) -> RealServerState | None:
        return self._by_name.get((virtual_name, real.address, real.port))

    def _job(self, virtual: Any, real: Any, block: Any, names: tuple[str, str]) -> Job:
        settings = resolve_settings(virtual, real, block,
                                    self.config.global_defs.checker_log_all_failures)
        target = make_target(virtual, real, block, settings, names)
        checker = kind(block.kind).build(block, target, self.config, real, settings)
        return self.scheduler.add((*names, block.kind), checker, settings)

    def _changed(self, job: Job, result: CheckResult) -> None:
        state = self._by_job.get(id(job))
        if state is None:
            return
        up = state.compute_up()
        if up != state.up:
            self._set_up(state, up, result.error or "")
        else:
            for listener in list(self.checker_listeners):
                listener(state, job)

    def _effect(self, job: Job, result: CheckResult) -> None:
        state = self._by_job.get(id(job))
        if state is not None:
            for listener in list(self.effect_listeners):
                listener(state)

    def _set_up(self, state: RealServerState, up: bool, error: str) -> None:
        state.up = up
        event(log, "check.real_server", virtual_server=state.name[0],
              real_server=state.name[1], state="up" if up else "down", error=error)
        self._notify(state, up)
        for listener in list(self.listeners):
            listener(state)

    def _notify(self, state: RealServerState, up: bool, why: str = "") -> None:
        """notify_up / notify_down, then the RS line to the lvs notify FIFOs."""
        command = state.real_server.notify_up if up else state.real_server.notify_down
        if command is not None:
            self.notifier.notify(command, (), f"real server {state.name[1]} "
                                              f"{'up' if up else 'down'}{why}")
        self.notifier.fifos.lvs(rs_line(state.virtual_server, state.real_server, up))

    def history(self, virtual_name: str) -> dict[str, list] | None:
        """The recent (duration, ok) of each real server of a virtual server (its checkers'
        results merged in time order), None if there is no such virtual server."""
        states = [state for state in self.real_servers if state.name[0] == virtual_name]
        if not states and virtual_name not in {virtual_server_name(v)
                                               for v in self.config.virtual_servers}:
            return None
        return {state.name[1]: [[round(duration, 6), ok] for duration, ok in
                                (state.jobs[0].history() if len(state.jobs) == 1 else
                                 [point for job in state.jobs for point in job.history()])]
                for state in states}

    def find(self, virtual_name: str, real_name: str) -> RealServerState | None:
        """By the names the API and the dashboard use."""
        return self._by_label.get((virtual_name, real_name))

    def stop(self) -> None:
        self.scheduler.stop()
        # omega: with the daemon gone the servers are no longer served; keepalived runs their
        # notify_down as if they had failed.
        for state in self.real_servers:
            if state.virtual_server.omega and state.up:
                self._notify(state, False, " (omega)")

    # -- what the dashboard, the metrics and the dump files read ---------------------------

    def views(self, virtual_name: str, reals: Sequence[Any]) -> list[CheckView | None]:
        """The check view of each of ``reals`` (real_server models of ``virtual_name``), in
        their order; None for one not checked here. With each checker's counters and
        duration buckets (the metrics; the JSON has no use for them, but one set of views
        shared by /api/v1/state and /metrics is half the objects kept of two, and a server
        that changed is built once for both).

        A server's view is built again only when something it shows may have changed: its
        checkers' last results and counts (a new CheckResult and ok/failed with every
        attempt), its up, drain and overrides, its configuration (a reload swaps the
        model). Otherwise the view it gave last is given again, the same object: at ten
        thousand servers checked every 10 s, a request a second rebuilds a tenth of them,
        and the readers keep what they made of a view on it (its JSON, its metric lines:
        director/state.py ENCODED)."""
        offset = self.scheduler.wall_time(0.0)         # monotonic -> epoch, once per call
        out: list[CheckView | None] = []
        for state in self._states_of(virtual_name, reals):
            if state is None:
                out.append(None)
                continue
            # Compared with the view's own fields, no key kept beside it (a tuple per server
            # is a hundred thousand objects more for the collector to walk): every result
            # adds one to its checker's ok or failed, so equal totals mean no new result.
            view = state.view
            if view is not None and view.up is state.up and \
                    view.drained is state.drained and view.overrides is state.overrides and \
                    state.viewed_model is state.real_server:
                jobs = state.jobs
                if len(jobs) == 1:          # the common case, ten thousand times a scrape
                    (job,) = jobs
                    if view.ok == job.ok and view.failed == job.failed:
                        out.append(view)
                        continue
                elif view.ok == sum(job.ok for job in jobs) and \
                        view.failed == sum(job.failed for job in jobs):
                    out.append(view)
                    continue
            state.view = view = self._view(state, offset)
            state.viewed_model = state.real_server
            out.append(view)
        return out

    def _states_of(self, virtual_name: str, reals: Sequence[Any]) -> list:
        """The states of ``reals`` in their order (None for one not checked here), looked up
        once per configuration and server set (``_servers`` counts their changes), not per
        real server on every snapshot."""
        found = self._aligned.get(virtual_name)
        if found is not None and found[0] is reals and found[1] == self._servers:
            return found[2]
        by_name = self._by_name
        states = [by_name.get((virtual_name, real.address, real.port)) for real in reals]
        self._aligned[virtual_name] = (reals, self._servers, states)
        return states

    @staticmethod
    def _view(state: RealServerState, offset: float) -> CheckView:
        jobs = state.jobs
        if len(jobs) == 1:
            (latest,) = jobs
            checker, ok, failed = latest.key[2], latest.ok, latest.failed
            if latest.result is None:
                latest = None
        else:
            latest = max((job for job in jobs if job.result is not None),
                         key=lambda job: job.last_at, default=None)
            checker = "+".join(job.key[2] for job in jobs) or None
            ok, failed = sum(job.ok for job in jobs), sum(job.failed for job in jobs)
        last_check = None
        if latest is not None:
            result = latest.result          # a shared PASSED: its duration is the job's
            last_check = LastCheck(result.ok, round(latest.last_duration, 6), result.error,
                                   round(offset + latest.last_at, 3),
                                   result.detail.get("cert_not_after"))
        agent = state.agent() if state.has_agent else None
        return CheckView(
            checker, state.up, state.drained, ok, failed, last_check,
            tuple([JobStats(state.name[0], state.name[1], job.key[2], job.ok, job.failed,
                            tuple(job.buckets), job.duration_sum) for job in jobs]),
            None if agent is None else frozen(agent.as_json(state.real_server.weight)),
            state.overrides)

    def reply_errors(self) -> dict[tuple[str, str], int]:
        """(checker kind, reason) -> replies its checkers could not read."""
        return dict(self.scheduler.reply_errors)

    def lateness_p99(self) -> float | None:
        """99th percentile of how late recent checks started past their due time."""
        samples = sorted(self.scheduler.lateness)
        return samples[min(len(samples) - 1, int(len(samples) * 0.99))] if samples else None
