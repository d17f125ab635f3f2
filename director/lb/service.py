"""The load-balancer subsystem: the checks' verdicts reach the kernel.

On every real server change it recomputes the desired state with the pool rules, updates
each virtual server's quorum (running quorum_up / quorum_down) and has the backend converge
on it; every ``reconcile_every`` seconds (the shortest delay_loop) it also has the backend
check the kernel, so that entries changed behind our back come back within a delay_loop.

The backends (backends.py) share one small interface, ``sync(desired, owned, verify)``.

What a backend does differently from IPVS (nftables: wlc runs as wrr, DR real servers are
dropped...) is found once per configuration, logged (``lb.unsupported``, each note once) and
listed in status()'s ``warnings``.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Callable

from .. import hub
from ..config.blocks.virtual_server import real_server_name, virtual_server_name
from ..log import event
from ..notify import Notifier
from ..notify_fifo import vs_line
from ..state import (DrainView, LoadBalancerView, RampView, RealServerView, Traffic,
                     VirtualServerView, frozen)
from .backends import BACKENDS
from .model import BackendError, Counters, DestinationKey, State
from .pool import (Live, desired_state, initial_quorum, live_weight, paced, quorum_step,
                   service_keys)
from .pool import pool as configured_pool
from .slowstart import Ramps

log = logging.getLogger("director.lb")

PAUSE_EVERY = 500           # real servers walked by a converge between two turns of the loop
ALL_UP = Live()             # what the checks say of every real server, for _limits


def address_is_local(address: str) -> bool:
    """Whether ``address`` is configured on this host now: binding to it succeeds only then
    (no IP_FREEBIND). A few microseconds, and the same answer whoever added the address: our
    VRRP, a separate ``director -P``, or keepalived."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        try:
            probe.bind((address, 0))
        except OSError:
            return False
    return True


@dataclass
class Drain:
    """A drain in progress (or done): since when, the connections left, why it ended."""

    started: float                              # monotonic
    started_wall: float
    connections: tuple[int, int] | None = None  # (active, inactive) now, if known
    completed: str | None = None
    completed_at: float | None = None

    def as_json(self, now: float) -> dict[str, Any]:
        return {"since": round(self.started_wall, 3),
                "seconds": round(now - self.started, 1),
                "active_connections": None if self.connections is None else self.connections[0],
                "complete": self.completed is not None, "why": self.completed,
                "completed_at": self.completed_at}


def health_lost(before: dict[str, tuple[bool, int]], after: dict[str, tuple[bool, int]]) -> bool:
    """Whether a virtual server of ``after`` lost its quorum or live real servers since
    ``before`` (one it did not have yet counts as no loss)."""
    return any(up < before[name][0] or live < before[name][1]
               for name, (up, live) in after.items() if name in before)


class LoadBalancer:
    SUSPEND_POLL = 0.5          # seconds between two looks at the ha_suspend addresses
    RETRY_FIRST = 0.2           # seconds before a failed converge is tried again ...
    RETRY_MAX = 5.0             # ... doubling up to this
    DRAIN_TIMEOUT = 300.0       # seconds a drain waits for the connections to end

    def __init__(self, config: Any, checks: Any, backend: str, notifier: Notifier,
                 reconcile_every: float | None = None, drain_timeout: float | None = None,
                 on_event: Callable[..., Any] = lambda kind, **fields: None) -> None:
        self.on_event = on_event            # events for people: quorum, ha_suspend, slow_start
        self.checks = checks
        self.backend = BACKENDS[backend]()
        self.notifier = notifier
        self.reconcile_asked = reconcile_every
        self.quorum: dict[str, bool] = {}
        self.suspended: frozenset[str] = frozenset()
        # What the backend does differently from IPVS, as (virtual server, note), found for
        # the configuration limits_of (see _limits) by the rule of the kind of backend asked
        # for (a rule of the kind, not of the object: tests stand fakes in for the object).
        self.backend_limits = BACKENDS[backend].limits
        self.limits: tuple[tuple[str, str], ...] = ()
        self.limits_of: Any = None
        self._configure(config)
        self.desired: State = {}
        self.owned: frozenset = frozenset()
        self.changed = hub.Event()
        self.greenlets: list[hub.Greenlet] = []
        self.errors: dict[str, int] = {}        # operation -> backend errors, ever
        self.last_error: dict[str, Any] | None = None
        self.failing = 0                        # converges in a row that had an error
        self.retry_at: float | None = None      # when a failed converge is tried again
        self.retry_pause = self.RETRY_FIRST
        self.drains: dict[tuple[str, str], Drain] = {}
        self.drain_timeout = drain_timeout or self.DRAIN_TIMEOUT
        self.listeners: list[Callable[[], Any]] = []    # called after each converge
        # health() as of the last pools handed to the backend (name -> quorum up, live)
        self.applied_health: dict[str, tuple[bool, int]] = {}
        self.ramps = Ramps()                    # slow start, by (virtual server, address, port)
        self._desired_of: Any = None            # the configuration self.desired was decided for
        # The views virtual_servers() gave last, each with what it was built from, by
        # virtual server name: see there.
        self._views: dict[str, tuple] = {}

    def _configure(self, config: Any) -> None:
        self.config = config
        delays = [v.delay_loop for v in config.virtual_servers] or [60.0]
        self.reconcile_every = self.reconcile_asked or max(1.0, min(delays))
        # ha_suspend: a virtual server is programmed only while its address is ours
        self.ha_suspend = {virtual_server_name(v): v.address for v in config.virtual_servers
                           if v.ha_suspend and v.address is not None}
        groups = {group.name: group for group in config.virtual_server_groups}
        self.keys = {virtual_server_name(v): service_keys(v, groups)    # for the snapshot
                     for v in config.virtual_servers}

    def reload(self, config: Any) -> None:
        """A new configuration: services that went are removed at the next converge (they
        stay in ``owned``), new ones are added, a virtual server that stayed keeps its
        quorum state."""
        if config.global_defs.lvs_timeouts != self.config.global_defs.lvs_timeouts:
            self._set_timeouts(config)
        self._configure(config)
        self._shared_flows(config)
        names = set(self.keys)
        self.quorum = {name: up for name, up in self.quorum.items() if name in names}
        self.ramps.keep({(virtual_server_name(v), real.address, real.port)
                         for v in config.virtual_servers for real in v.real_servers})
        for virtual in config.virtual_servers:
            name = virtual_server_name(virtual)
            if name not in self.quorum:
                self.quorum[name] = initial_quorum(virtual,
                                                   lambda real, n=name: self.live(n, real))
        if self.ha_suspend and not any(g.name == "ha_suspend" for g in self.greenlets
                                       if not g.dead):
            self.greenlets.append(hub.supervise(self._watch_addresses, name="ha_suspend"))
        self.changed.set()

    def _set_timeouts(self, config: Any) -> None:
        """lvs_timeouts, at start and when a reload changes them; never restored on stop
        (keepalived's way). A failure is said and the pools run on."""
        timeouts = config.global_defs.lvs_timeouts
        if timeouts is None:
            return
        try:
            self.backend.set_timeouts(timeouts)
        except OSError as exc:
            event(log, "lb.lvs_timeouts_failed", logging.ERROR, backend=self.backend.name,
                  error=exc)
            return
        event(log, "lb.lvs_timeouts", backend=self.backend.name, tcp=timeouts.tcp,
              tcpfin=timeouts.tcpfin, udp=timeouts.udp)

    def _shared_flows(self, config: Any) -> None:
        """A virtual server announced over BGP shares its flows with the other directors:
        the backend must take up a flow the router moved here mid-stream."""
        if not any(virtual.bgp_announce is not None for virtual in config.virtual_servers):
            return
        try:
            changed = self.backend.pick_up_mid_flow()
        except OSError as exc:
            event(log, "lb.mid_flow_failed", logging.ERROR, backend=self.backend.name,
                  error=exc, note="flows moved here from another director will be reset")
            return
        if changed:
            event(log, "lb.mid_flow", backend=self.backend.name, turned_on=",".join(changed),
                  note="flows moved here by the router from another director are taken up")

    def live(self, virtual_name: str, real: Any) -> Live:
        state = self.checks.state_of(virtual_name, real)
        if state is None:
            return Live()
        ramp = None
        if real.slow_start:
            now = time.monotonic()
            key = self._observe(state, now)
            ramp = self.ramps.fraction(key, now, real.slow_start)
        elif self.ramps.ramps:                  # slow_start turned off by a reload mid-ramp
            self.ramps.ramps.pop((virtual_name, real.address, real.port), None)
        agent = state.agent() if state.has_agent else None
        return Live(up=state.up, weight=state.dynamic_weight(), drained=state.drained,
                    agent_admin="ready" if agent is None else agent.admin,
                    agent_maxconn=None if agent is None else agent.maxconn, ramp=ramp,
                    weight_override=state.weight_override, maintenance=state.maintenance)

    def _observe(self, state: Any, now: float) -> tuple[str, str, int]:
        """Tells the slow start tracker what the checks say of a real server (a rise after
        failed checks, or a restore from a drain, starts its ramp); its key."""
        real = state.real_server
        key = (state.name[0], real.address, real.port)
        if self.ramps.observe(key, state.up, state.drained, now,
                              lambda: any(job.failed for job in state.jobs)):
            event(log, "lb.slow_start", virtual_server=state.name[0], real_server=state.name[1],
                  seconds=real.slow_start)
            self.on_event("slow_start", virtual_server=state.name[0],
                          real_server=state.name[1], seconds=real.slow_start)
        return key

    def _check_changed(self, state: Any) -> None:
        """A real server went up or down: its slow start counts from now, not from the
        converge this wakes (and a quick down-up between two converges is not missed)."""
        if state.real_server.slow_start:
            self._observe(state, time.monotonic())
        self.changed.set()

    def start(self) -> None:
        from ..process import netlink_buffer
        self.backend.receive_buffer = netlink_buffer(self.config, "lvs")
        self.backend.open()
        self._set_timeouts(self.config)
        self._shared_flows(self.config)
        if self.config.global_defs.lvs_flush:
            self._report(self.backend.flush_all())
        for virtual in self.config.virtual_servers:
            name = virtual_server_name(virtual)
            self.quorum[name] = initial_quorum(virtual, lambda real, n=name: self.live(n, real))
        self.checks.listeners.append(self._check_changed)
        # a weight or an agent's drain / maint: the pool changes without an up/down change
        self.checks.effect_listeners.append(lambda state: self.changed.set())
        self._converge_guarded(verify=True)
        self.greenlets.append(hub.supervise(self._run, name="load balancer"))
        if self.ha_suspend:
            self.greenlets.append(hub.supervise(self._watch_addresses, name="ha_suspend"))
        event(log, "lb.started", backend=self.backend.name, services=len(self.desired),
              suspended=len(self.suspended))

    def _run(self) -> None:
        last_verify = time.monotonic()
        while True:
            wait = last_verify + self.reconcile_every - time.monotonic()
            if self.retry_at is not None:             # the last converge failed
                wait = min(wait, self.retry_at - time.monotonic())
            step = self.ramps.next_step(time.monotonic())
            if step is not None:                      # a slow start's next step
                wait = min(wait, step - time.monotonic())
            self.changed.wait(max(0.0, wait))
            told = self.changed.is_set()            # something changed, not just the timer
            self.changed.clear()
            # Verify on the reconcile cadence even while changes keep coming, and after a
            # failure (what the kernel holds is then unknown).
            verify = time.monotonic() >= last_verify + self.reconcile_every or \
                self.retry_at is not None
            if verify:
                last_verify = time.monotonic()
            self._converge_guarded(verify, recompute=told)

    def _converge_guarded(self, verify: bool, recompute: bool = True) -> None:
        """One converge; any error (netlink, nft, a bug) is counted and retried after a
        pause that doubles from RETRY_FIRST to RETRY_MAX: the loop itself never ends."""
        try:
            self._converge(verify, recompute)
        except Exception as exc:
            self._report([BackendError("converge", repr(exc))])
            log.debug("lb.converge_failed", exc_info=True)
        if self.failing:
            self.retry_pause = min(self.retry_pause * 2, self.RETRY_MAX) \
                if self.retry_at is not None else self.RETRY_FIRST
            self.retry_at = time.monotonic() + self.retry_pause
        else:
            self.retry_at = None

    def _watch_addresses(self) -> None:
        while True:
            hub.sleep(self.SUSPEND_POLL)
            if self._suspended() != self.suspended:
                self.changed.set()

    def _suspended(self) -> frozenset[str]:
        return frozenset(name for name, address in self.ha_suspend.items()
                         if not address_is_local(address))

    def _converge(self, verify: bool, recompute: bool = True) -> None:
        if self.limits_of is not self.config and not self._limits():
            return                                # a reload came: the next converge is its
        if not (recompute or self._stale()):
            # Only the verify timer woke us: the pools are what the last converge decided
            # (every change of what they are made of sets ``changed``). Rebuilding them was
            # a fifth of the daemon's CPU at 10,000 checks a second, and their 10,000 new
            # objects a second, kept until the next, fed the garbage collector's full
            # passes that held the adverts 50-90 ms (bench/vrrp_fast_failover.py).
            self._sync(verify)
            return
        # Walked in slices with the loop running between them (desired_state's pause):
        # at ten thousand real servers a converge is 85 ms of work, after every change.
        # The pause is per real server, not per virtual server: one of ten thousand was a
        # single 40 ms piece (issue 17).
        config = self.config
        lives = paced(self.live, hub.breathe, PAUSE_EVERY)
        for virtual in config.virtual_servers:
            name = virtual_server_name(virtual)
            weight = live_weight(virtual, lambda real, n=name: lives(n, real))
            if self.config is not config:         # a reload came: the next converge is its
                return
            self.quorum[name], change = quorum_step(virtual, self.quorum[name], weight)
            if change is not None:
                event(log, "lb.quorum", virtual_server=name, state="up" if change.up else "down",
                      live_weight=weight)
                self.on_event("quorum", virtual_server=name,
                              state="up" if change.up else "down", live_weight=weight)
                script = virtual.quorum_up if change.up else virtual.quorum_down
                if script is not None:
                    self.notifier.notify(script, (), f"quorum {name}")
                self.notifier.fifos.lvs(vs_line(virtual, change.up))
        suspended = self._suspended() if self.ha_suspend else frozenset()
        if suspended != self.suspended:
            event(log, "lb.ha_suspend", suspended=",".join(sorted(suspended)) or "none",
                  resumed=",".join(sorted(self.suspended - suspended)) or "none")
            self.on_event("ha_suspend", suspended=sorted(suspended))
            self.suspended = suspended
        self.desired = desired_state(config, self.live, self.quorum, suspended,
                                     pause=hub.breathe, pause_every=PAUSE_EVERY)
        if self.config is not config:
            return
        self._desired_of = config
        self._sync(verify)

    def _stale(self) -> bool:
        """Whether the pools must be decided again though nothing said it changed: never
        decided for this configuration, a failed converge (what it decided may be half
        done), a slow start ramping (its weights move with the clock), an ha_suspend
        address come or gone."""
        return self._desired_of is not self.config or bool(self.failing) or \
            bool(self.ramps.ramps) or \
            (bool(self.ha_suspend) and self._suspended() != self.suspended)

    def _sync(self, verify: bool) -> None:
        """Hands the decided pools to the backend (``verify``: and has it compare them
        with what the kernel holds), then tells the listeners."""
        decided = self._decided_health()
        if health_lost(self.applied_health, decided):
            # withdraw first: the BGP announcer hears of a loss before the pools change
            # (applying them is an nft or netlink round trip, tens of ms), as on TERM
            for listener in self.listeners:
                listener()
        self.owned = self.owned | frozenset(self.desired)
        self._report(self.backend.sync(self.desired, self.owned, verify))
        self.applied_health = decided
        self._follow_drains()
        for listener in self.listeners:
            listener()

    def health(self) -> dict[str, tuple[bool, int]]:
        """Virtual server name -> (quorum up, destinations of weight above 0 in its pool):
        what the BGP announcer needs. A loss counts from the converge that decides it, before
        the backend has applied it; a gain only once the backend has been given the pools,
        so that a route is never announced for pools the kernel does not have yet (a
        virtual server a reload added counts as down until then; a suspended one, not in
        the desired state, has none)."""
        applied = self.applied_health
        return {name: (up and applied.get(name, (False, 0))[0],
                       min(live, applied.get(name, (False, 0))[1]))
                for name, (up, live) in self._decided_health().items()}

    def _decided_health(self) -> dict[str, tuple[bool, int]]:
        """health() as the last converge decided it, applied or not."""
        found = {}
        for name, keys in self.keys.items():
            live = max((sum(1 for dest in self.desired[key].destinations.values()
                            if dest.weight > 0)
                        for key in keys if key in self.desired), default=0)
            found[name] = (self.quorum.get(name, False), live)
        return found

    def _limits(self) -> bool:
        """Finds what the backend does differently from IPVS, per virtual server, and logs
        each note the configuration before did not have: each once at start, none again on
        a reload that keeps it (status() has them all). From the configuration with every
        real server up and, with a sorry server, with the quorum lost too: a note holds as
        long as the configuration does, whatever the checks say (a DR server down now is
        dropped once it is up). The pools are built only for a backend that reads them
        (nftables), with the loop running every PAUSE_EVERY real servers (ten thousand took
        30 ms); False if a reload came meanwhile."""
        config = self.config
        found: list[tuple[str, str]] = []
        built = 0                                   # real servers put in pools since a pause

        def pools(virtual: Any, name: str) -> Iterator[Pool]:
            nonlocal built
            for key in self.keys[name]:
                for quorum_up in (True, False) if virtual.sorry_server is not None else (True,):
                    built += len(virtual.real_servers)
                    yield configured_pool(virtual, key, lambda real: ALL_UP, quorum_up)

        for virtual in config.virtual_servers:
            if built >= PAUSE_EVERY:
                built = 0
                hub.breathe()
                if self.config is not config:
                    return False
            name = virtual_server_name(virtual)
            found += [(name, note) for note in self.backend_limits(pools(virtual, name))]
        before = set(self.limits)
        for name, note in found:
            if (name, note) not in before:
                event(log, "lb.unsupported", logging.WARNING, backend=self.backend.name,
                      virtual_server=name, note=note)
        self.limits, self.limits_of = tuple(found), config
        return True

    def connections_of(self, virtual_name: str,
                       dest_key: DestinationKey) -> tuple[int, int] | None:
        """(active, inactive) connections of a real server now, over its services; None
        where the backend cannot tell."""
        found = [counts for counts in (self.backend.connections_of(key, dest_key)
                                       for key in self.keys.get(virtual_name, ()))
                 if counts is not None]
        if not found:
            return None
        return sum(a for a, _ in found), sum(i for _, i in found)

    def _follow_drains(self) -> None:
        """A drained real server has weight 0: new connections go elsewhere, established
        ones go on. Its drain is complete when it has no active connection left, or after
        drain_timeout; completion is an event, and the progress is in the snapshot."""
        drained = [state for state in self.checks.real_servers if state.drained]
        now = time.monotonic()
        names = {state.name for state in drained}
        for name in [name for name in self.drains if name not in names]:
            del self.drains[name]                      # restored, or gone in a reload
        if drained:
            self.backend.refresh_connections()
        for state in drained:
            drain = self.drains.setdefault(state.name, Drain(now, time.time()))
            real = state.real_server
            drain.connections = self.connections_of(state.name[0],
                                                    DestinationKey(real.address, real.port))
            if drain.completed is not None:
                continue
            if drain.connections is not None and drain.connections[0] == 0:
                drain.completed = "no active connections"
            elif now - drain.started >= self.drain_timeout:
                drain.completed = f"timeout ({self.drain_timeout:g} s)"
            if drain.completed is not None:
                drain.completed_at = time.time()
                event(log, "lb.drain_complete", virtual_server=state.name[0],
                      real_server=state.name[1], why=drain.completed,
                      seconds=round(now - drain.started, 1))
                self.on_event("drain_complete", virtual_server=state.name[0],
                              real_server=state.name[1], why=drain.completed)

    def _report(self, errors: list[BackendError]) -> None:
        """Counts a converge's errors by operation; none means the kernel holds what was
        wanted (the end of a failing spell is an event, for people)."""
        for error in errors:
            self.errors[error.operation] = self.errors.get(error.operation, 0) + 1
            self.last_error = {"operation": error.operation, "error": error.message,
                               "at": time.time()}
            event(log, "lb.error", logging.ERROR, backend=self.backend.name,
                  operation=error.operation, error=error.message)
        if errors and not self.failing:
            self.on_event("lb_error", backend=self.backend.name,
                          operation=errors[0].operation, error=errors[0].message)
        elif not errors and self.failing:
            event(log, "lb.recovered", backend=self.backend.name, failed_converges=self.failing)
            self.on_event("lb_recovered", backend=self.backend.name,
                          failed_converges=self.failing)
        self.failing = self.failing + 1 if errors else 0

    def stop(self) -> None:
        hub.killall(self.greenlets, block=False)
        # omega: the daemon going away counts as the quorum lost (keepalived runs quorum_down)
        for virtual in self.config.virtual_servers:
            name = virtual_server_name(virtual)
            if virtual.omega and self.quorum.get(name):
                if virtual.quorum_down is not None:
                    self.notifier.notify(virtual.quorum_down, (), f"quorum {name} (omega)")
                self.notifier.fifos.lvs(vs_line(virtual, False))
        flush = self.config.global_defs.lvs_flush_on_stop
        if flush is None:
            self.backend.close()
        elif flush == "VS":
            self.backend.close(remove=self.desired)
        else:
            self._report(self.backend.flush_all())
            self.backend.close()

    def status(self) -> dict[str, Any]:
        """For the snapshot: the backend, its errors, and what it does differently from IPVS
        (warnings())."""
        return {"backend": self.backend.name, "errors": dict(self.errors),
                "last_error": self.last_error, "failing_converges": self.failing,
                "warnings": list(self.warnings())}

    def warnings(self) -> tuple[str, ...]:
        """What the backend does differently from IPVS, "VIRTUAL SERVER: note" each (e.g.
        "192.168.1.11:80/TCP: lb_algo wlc runs as wrr on nftables"; see _limits)."""
        return tuple(f"{name}: {note}" for name, note in self.limits)

    # -- what the dashboard, the metrics and the dump files read ---------------------------

    def view(self) -> LoadBalancerView:
        """The backend, its errors and what it does differently from IPVS (status()'s
        fields, typed: what reaches /api/v1/state and the dashboard)."""
        return LoadBalancerView(self.backend.name, frozen(self.errors),
                                None if self.last_error is None else frozen(self.last_error),
                                self.failing, self.warnings())

    def virtual_servers(self, yield_every: int = 0) -> tuple[VirtualServerView, ...]:
        """Each virtual server in the configuration's order, its pool as the checks see it
        (CheckService.views, with the checkers' counters) and as the kernel has it.
        ``yield_every`` real servers the loop may run (ten thousand of them must not hold
        back a VRRP advert).

        A view equal in every input to the one given last (the same check view, weights,
        counters, connections, drain and ramp; for a virtual server the same real server
        views and its own live fields) is that one again, the same object: the web face and
        the metrics keep its encoding on it, so a request re-encodes only what changed. The inputs are compared, never assumed: nothing needs to remember to say
        that it changed something."""
        kernel, desired = self.backend.kernel, self.desired
        counters = self.backend.counters()
        # asked per real server only where the backend can tell (a tenth of a scrape otherwise)
        connections = self.backend.reports_connections
        # Nothing that changes by itself (traffic, connections, a ramp's step; a drain's
        # seconds: see below): a virtual server whose inputs are those of its last view is
        # that view, without a look at each of its real servers.
        settled = not counters and not connections and not self.ramps.ramps
        now = time.monotonic()
        # Taken out as the walk goes: a view replaced here dies here, with what the readers
        # made of it (director/state.py ENCODED), rather than at the end, when the new ones
        # are all made. With every server changed, the old views and the new were two sets
        # of ten thousand alive at once, for the collector to walk and promote.
        last_virtuals = self._views
        made_virtuals: dict[str, tuple] = {}
        out = []
        walked = 0
        for virtual in self.config.virtual_servers:
            name = virtual_server_name(virtual)
            keys = self.keys.get(name, ())
            # Pools are built whole by a converge or a read, never changed afterwards
            kernel_pools = [kernel[key] for key in keys if key in kernel]
            wanted_pools = [desired[key] for key in keys if key in desired]
            checks = self.checks.views(name, virtual.real_servers)
            basis = (virtual, checks, kernel_pools, wanted_pools, self.quorum.get(name, True),
                     name in self.suspended)
            found = last_virtuals.pop(name, None)
            walked += len(checks)
            if settled and found is not None and found[2] == basis:
                made_virtuals[name] = found
                out.append(found[1])
                if yield_every and walked >= yield_every:
                    walked = 0
                    hub.breathe()
                continue
            in_kernel = [pool.destinations for pool in kernel_pools]
            wanted = [pool.destinations for pool in wanted_pools]
            # the real servers' last views by position while the model is the same, each
            # compared with its own fields (no tuple kept beside it for the collector to walk)
            last_reals = found[1].real_servers if found is not None and \
                found[0][0] is virtual else ()
            reals = []
            for index, (real, check) in enumerate(zip(virtual.real_servers, checks)):
                dest_key = DestinationKey(real.address, real.port)
                now_connected = self.connections_of(name, dest_key) if connections else None
                active, inactive = (None, None) if now_connected is None else now_connected
                drain = self.drains.get((name, real_server_name(real))) \
                    if check is not None and check.drained else None
                ramp = self.ramps.view((name, real.address, real.port), now) \
                    if self.ramps.ramps else None
                weight, desired_weight = _weight(in_kernel, dest_key), _weight(wanted, dest_key)
                traffic = Traffic.total([_traffic(counters.get((key, dest_key)))
                                         for key in keys]) if counters else None
                drain_view = None if drain is None else DrainView(
                    round(drain.started_wall, 3), round(now - drain.started, 1),
                    None if drain.connections is None else drain.connections[0],
                    drain.completed is not None, drain.completed, drain.completed_at)
                ramp_view = None if ramp is None else RampView.of(*ramp, time.time() - now)
                view = last_reals[index] if index < len(last_reals) else None
                if view is None or view.check is not check or view.weight != weight or \
                        view.desired_weight != desired_weight or view.counters != traffic or \
                        view.active_connections != active or \
                        view.inactive_connections != inactive or view.drain != drain_view or \
                        view.ramp != ramp_view:
                    view = RealServerView.of(
                        real, check, weight=weight, desired_weight=desired_weight,
                        counters=traffic, active_connections=active,
                        inactive_connections=inactive, drain=drain_view, ramp=ramp_view)
                reals.append(view)
            inputs = (virtual, tuple(reals), basis[4], basis[5], bool(in_kernel),
                      Traffic.total([_traffic(counters.get((key, None))) for key in keys])
                      if counters else None)
            if found is None or found[0] != inputs:
                found = (inputs, VirtualServerView.of(
                    virtual, inputs[1], quorum_ok=inputs[2], suspended=inputs[3],
                    in_kernel=inputs[4], counters=inputs[5]))
            # a drain's seconds go on: such a virtual server is looked at again every time
            drained = any(check is not None and check.drained for check in checks)
            made_virtuals[name] = (found[0], found[1], None if drained else basis)
            out.append(found[1])
            if yield_every and walked >= yield_every:
                walked = 0
                hub.breathe()
        self._views = made_virtuals
        return tuple(out)


def _weight(pools: list[dict], dest_key: DestinationKey) -> int | None:
    """The destination's weight in the first of ``pools`` that has it."""
    for pool in pools:
        found = pool.get(dest_key)
        if found is not None:
            return found.weight
    return None


def _traffic(counters: Counters | None) -> Traffic | None:
    return None if counters is None else Traffic(
        counters.connections, counters.packets_in, counters.packets_out, counters.bytes_in,
        counters.bytes_out)
