"""The live state's one typed home: frozen views, and the names and constants they share.

Each service returns its own part from its own methods: ``VrrpService.snapshot()`` a
VrrpView (its instances with their sync group, the sync groups, the IPVS sync daemon, the
packets dropped before any instance knew them), ``LoadBalancer.virtual_servers()`` the
VirtualServerViews (each real server's CheckView comes from ``CheckService.views``) and
``LoadBalancer.view()`` a LoadBalancerView; the daemon puts them together into one State
(director/snapshot.py). The web API, the dashboard, /metrics, the USR1 dump and the USR2
stats all read a State; ``--dump-json`` (config/render.py) builds the same views from a
configuration, live fields None, and leaves the live ones out (``static_json``). One
producer per shape: a field added to a view reaches every reader.

``as_json()`` gives the contract's /api/v1/state shape (CONTRACT.md), with the fields the
dashboard and the tests read beyond it. The views are built on demand (a request, a scrape,
a signal), never kept up to date in the hot path; a service gives the view it gave last
again, the same object, while nothing it shows changed (its inputs compared when asked:
CheckService.views, LoadBalancer.virtual_servers), so a reader may keep what it made of a
view on the view (ENCODED: web/bodies.py, metrics/collector.py): a view is frozen.

This module imports nothing of the daemon and not gevent: the web face and the metrics
import nothing else of director's (tests/unit/test_imports.py holds both to it). The names
live in director/names.py, which the config engine imports without these classes (a
hundredth of a second that -t and a start-up need not pay).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ClassVar, Iterator, Mapping

if TYPE_CHECKING:
    from .bgp.view import BgpView       # the BGP announcer's views live beside it

# director_check_duration_seconds: 1 ms to 10 s. Each result adds one to one bucket of its
# job (a list slot, not a metric object): the metrics collector adds them up when scraped.
DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                    10.0)
# director_vrrp_state's values (the contract's metric table)
VRRP_STATE_NUMBERS = {"INIT": 0, "BACKUP": 1, "MASTER": 2, "FAULT": 3, "STOP": 4}
EMPTY: Mapping[Any, Any] = MappingProxyType({})


def _empty() -> Mapping[Any, Any]:
    return EMPTY


def frozen(mapping: Mapping) -> Mapping:
    """A read-only copy: a view must not change when the service's counters go on."""
    return MappingProxyType(dict(mapping)) if mapping else EMPTY


# === names (director/names.py, here for the readers of the views) ===============================

from .names import real_server_name, virtual_server_name  # noqa: E402, F401


def static_json(view: Any) -> dict[str, Any]:
    """A view's JSON without its live fields (``LIVE``): what ``--dump-json`` shows."""
    return {key: value for key, value in view.as_json().items() if key not in view.LIVE}


# === events (director/events.py publishes them) ================================================

# Every kind the daemon publishes. The stream names each frame by its kind (SSE ``event:``) and
# a browser hears only the names it listens to: the dashboard reads this list from its page
# (web/dashboard.py) rather than keeping a copy that drifts (its copy had missed four kinds).
# tests/unit/test_event_kinds.py fails when the code publishes a kind not listed here.
EVENT_KINDS = ("vrrp.transition", "vrrp.sync_group", "real_server", "checker", "quorum",
               "reload", "notify", "admin", "ha_suspend", "main_loop.late", "bgp", "lb_error",
               "lb_recovered", "drain_complete", "slow_start", "overrides_learned")


# === lateness (director/lateness.py records it) =================================================

@dataclass(frozen=True, slots=True)
class LatenessView:
    """How late something ran past its due time: the main loop's timer, a master's adverts."""

    bounds: tuple[float, ...]           # the histogram's upper bounds, seconds
    buckets: tuple[int, ...]            # every sample, per bound, not cumulative; last: +Inf
    total: float                        # their sum, seconds
    recent: tuple[float, ...]           # the most recent samples, oldest first

    @property
    def count(self) -> int:
        return sum(self.buckets)

    def as_json(self) -> dict[str, Any]:
        """The recent samples' p99 and maximum, and their histogram (the dashboard's
        figure); the all-time histogram is for /metrics."""
        ordered = sorted(self.recent)
        figure = [0] * (len(self.bounds) + 1)
        at = 0
        for value in ordered:               # sorted: one walk along the bounds
            while at < len(self.bounds) and value > self.bounds[at]:
                at += 1
            figure[at] += 1
        return {"samples": len(ordered), "count": self.count,
                "p99_seconds": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
                if ordered else None,
                "max_seconds": ordered[-1] if ordered else None,
                "bounds": list(self.bounds), "recent_buckets": figure}


@dataclass(frozen=True, slots=True)
class MainLoopView:
    """How late the main loop runs a timer (director/looplag.py)."""

    lag: LatenessView
    last_late: Mapping[str, Any] | None     # the last lag over the threshold: at, lag, cause
    threshold: float                        # seconds of lag that make an event
    gc_seconds: tuple[float, ...] = (0.0, 0.0, 0.0)     # in collections, by generation
    gc_collections: tuple[int, ...] = (0, 0, 0)
    gc_longest: float = 0.0                 # the longest single collection, seconds

    def as_json(self) -> dict[str, Any]:
        return {"lag": self.lag.as_json(), "threshold_seconds": self.threshold,
                "last_late": None if self.last_late is None else dict(self.last_late),
                "gc": {"seconds_by_generation": [round(s, 6) for s in self.gc_seconds],
                       "collections_by_generation": list(self.gc_collections),
                       "longest_pause_seconds": round(self.gc_longest, 6)}}


# === VRRP =======================================================================================

@dataclass(frozen=True, slots=True)
class InstanceCounters:
    adverts_sent: int
    adverts_received: int
    send_errors: int
    address_errors: int
    became_master: int
    dropped: Mapping[str, int]                      # reason -> packets
    noted: Mapping[str, int]                        # accepted, but counted: reason -> packets
    transitions: Mapping[tuple[str, str], int]      # (from, to) -> times

    def as_json(self) -> dict[str, Any]:
        return {"adverts_sent": self.adverts_sent, "adverts_received": self.adverts_received,
                "send_errors": self.send_errors, "address_errors": self.address_errors,
                "became_master": self.became_master, "dropped": dict(self.dropped),
                "noted": dict(self.noted),
                "transitions": {f"{old}->{new}": n
                                for (old, new), n in self.transitions.items()}}


@dataclass(frozen=True, slots=True)
class TrackedView:
    """One thing an instance (or a sync group) tracks: an interface, a script, a file, a
    process, and what it does to the priority now."""
    kind: str                           # interface, script, file, process
    name: str
    weight: int                         # 0: unweighted (FAULT while it fails)
    reverse: bool
    status: bool | int                  # fine or failed; a file's number
    effect: int | str                   # added to the priority, or "FAULT"
    running: int | None = None          # a process: how many run now
    quorum: str | None = None           # a process: "N" (N or more) or "N..M"
    path: str | None = None             # a file

    def as_json(self) -> dict[str, Any]:
        out = {"kind": self.kind, "name": self.name, "weight": self.weight,
               "reverse": self.reverse, "status": self.status, "effect": self.effect}
        if self.kind == "process":
            out.update(running=self.running, quorum=self.quorum)
        if self.kind == "file":
            out["path"] = self.path
        return out


@dataclass(frozen=True, slots=True)
class VmacView:
    """An instance's VMAC (macvlan) or ipvlan interface as the kernel has it now."""
    name: str
    kind: str                           # macvlan, ipvlan
    base: str                           # the interface it sits on
    mac: str | None                     # None: the interface does not exist
    up: bool

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "base": self.base, "mac": self.mac,
                "up": self.up}


@dataclass(frozen=True, slots=True)
class InstanceView:
    LIVE: ClassVar[frozenset[str]] = frozenset(
        {"state", "master_ip", "last_transition", "reason", "faults", "counters",
         "advert_lateness", "tracking", "vmacs"})

    name: str
    vrid: int
    interface: str
    priority: int                       # configured
    effective_priority: int             # after tracking
    vips: tuple[str, ...]
    sync_group: str | None
    version: int                        # the VRRP version it runs
    state: str | None = None            # MASTER, BACKUP, FAULT, INIT, STOP
    master_ip: str | None = None
    last_transition: float | None = None
    reason: str | None = None           # of the last transition
    faults: tuple[str, ...] = ()
    counters: InstanceCounters | None = None
    advert_lateness: LatenessView | None = None     # as MASTER: adverts sent past their time
    tracking: tuple[TrackedView, ...] = ()
    vmacs: tuple[VmacView, ...] = ()    # use_vmac / use_ipvlan: its own first

    @classmethod
    def of(cls, config: Any, version: int, sync_group: str | None,
           effective_priority: int | None = None, **live: Any) -> InstanceView:
        """From a vrrp_instance model; ``live`` (a running instance) fills the rest."""
        return cls(config.name, config.virtual_router_id, config.interface, config.priority,
                   config.priority if effective_priority is None else effective_priority,
                   tuple(vip.address for vip in config.virtual_ipaddress), sync_group,
                   version, **live)

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "state": self.state, "vrid": self.vrid,
                "interface": self.interface, "priority": self.priority,
                "effective_priority": self.effective_priority, "master_ip": self.master_ip,
                "vips": list(self.vips), "last_transition": self.last_transition,
                "reason": self.reason, "faults": list(self.faults), "version": self.version,
                "counters": None if self.counters is None else self.counters.as_json(),
                "advert_lateness": None if self.advert_lateness is None
                else self.advert_lateness.as_json(),
                "vmacs": [vmac.as_json() for vmac in self.vmacs],
                "sync_group": self.sync_group,
                "tracking": [item.as_json() for item in self.tracking]}


@dataclass(frozen=True, slots=True)
class SyncGroupView:
    LIVE: ClassVar[frozenset[str]] = frozenset({"state", "tracking"})

    name: str
    instances: tuple[str, ...]
    state: str | None = None            # its members' common role, MIXED, or FAULT
    tracking: tuple[TrackedView, ...] = ()      # its own track_* lines, as its members see them

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "state": self.state, "instances": list(self.instances),
                "tracking": [item.as_json() for item in self.tracking]}


@dataclass(frozen=True, slots=True)
class LvsSyncView:
    """The kernel's IPVS connection sync daemons and the instance they follow."""

    interface: str
    instance: str
    wanted: Mapping[str, Any] | None    # the daemon the instance's role calls for
    running: tuple[Mapping[str, Any], ...]   # as the kernel last said: state, interface, ...
    in_step: bool
    errors: int
    last_error: str | None
    changes: int

    def as_json(self) -> dict[str, Any]:
        return {"interface": self.interface, "instance": self.instance,
                "wanted": None if self.wanted is None else dict(self.wanted),
                "running": [dict(daemon) for daemon in self.running],
                "in_step": self.in_step, "errors": self.errors,
                "last_error": self.last_error, "changes": self.changes}


@dataclass(frozen=True, slots=True)
class FirewallView:
    """Accept mode off: the nftables tables (ip / ip6 TABLE) and what they drop now."""

    table: str | None                   # None: the tables are gone (an error left behind)
    families: tuple[str, ...]           # "ip", "ip6"
    priority: int | None
    blocked: tuple[str, ...]            # addresses (link-local: 'ADDRESS . "IF"')
    by_instance: Mapping[str, tuple[str, ...]]
    in_step: bool                       # the kernel was last seen holding exactly that
    errors: int
    last_error: str | None

    def as_json(self) -> dict[str, Any]:
        return {"table": self.table, "families": list(self.families),
                "priority": self.priority, "blocked": list(self.blocked),
                "by_instance": {name: list(items) for name, items in self.by_instance.items()},
                "in_step": self.in_step, "errors": self.errors, "last_error": self.last_error}


@dataclass(frozen=True, slots=True)
class VrrpView:
    instances: tuple[InstanceView, ...] = ()
    sync_groups: tuple[SyncGroupView, ...] = ()
    lvs_sync_daemon: LvsSyncView | None = None
    # Packets dropped before any instance knew them (undecodable, or for a vrid we do not
    # run), by (interface, reason); the others count on their instance.
    dropped_by_interface: Mapping[tuple[str, str], int] = field(default_factory=_empty)
    # How track_process watches: {"mode": "events"|"polling", "period": s, "lost_events": n};
    # None when no process is tracked.
    process_monitor: Mapping[str, Any] | None = None
    firewall: FirewallView | None = None
    # dynamic_interfaces: instance -> the interface it waits for; static_* operations failed
    waiting_for_interface: Mapping[str, str] = field(default_factory=_empty)
    static_errors: int = 0

    def as_json(self) -> dict[str, Any]:
        return {"instances": [instance.as_json() for instance in self.instances],
                "process_monitor": None if self.process_monitor is None
                else dict(self.process_monitor),
                "sync_groups": [group.as_json() for group in self.sync_groups],
                "lvs_sync_daemon": None if self.lvs_sync_daemon is None
                else self.lvs_sync_daemon.as_json(),
                "dropped_by_interface": {f"{interface}/{reason}": count for
                                         (interface, reason), count in
                                         sorted(self.dropped_by_interface.items())},
                "firewall": None if self.firewall is None else self.firewall.as_json(),
                "waiting_for_interface": dict(self.waiting_for_interface),
                "static_errors": self.static_errors}


# === checks =====================================================================================

@dataclass(frozen=True, slots=True)
class LastCheck:
    ok: bool
    duration_seconds: float
    error: str | None
    at: float                                   # epoch seconds
    cert_not_after: float | None = None         # SSL_GET: when the certificate expires

    def as_json(self) -> dict[str, Any]:
        out = {"ok": self.ok, "duration_seconds": self.duration_seconds, "error": self.error,
               "at": self.at}
        if self.cert_not_after is not None:
            out["cert_not_after"] = self.cert_not_after
        return out


@dataclass(frozen=True, slots=True)
class JobStats:
    """One checker of one real server, for the metrics (not in the JSON)."""

    virtual_server: str
    real_server: str
    checker: str
    ok: int
    failed: int
    buckets: tuple[int, ...]          # per DURATION_BUCKETS, not cumulative; last: +Inf
    duration_sum: float


@dataclass(frozen=True, slots=True)
class CheckView:
    """What the checks say of one real server (CheckService.views)."""

    checker: str | None                 # the checkers that run, "+"-joined
    up: bool
    drained: bool                       # weight 0 on an operator's request, still checked
    ok: int                             # attempts that passed, all its checkers
    failed: int
    last_check: LastCheck | None
    jobs: tuple[JobStats, ...] = ()     # asked for by the metrics only
    agent: Mapping[str, Any] | None = None  # AGENT_CHECK: its agent's last reply and effect
    # the operator's active overrides (director/overrides.py Entry: drain, weight,
    # maintenance), each with who set it and when
    overrides: tuple[Any, ...] = ()


# === the load balancer ==========================================================================

@dataclass(frozen=True, slots=True)
class Traffic:
    """IPVS's totals for a service or a destination."""

    connections: int
    packets_in: int
    packets_out: int
    bytes_in: int
    bytes_out: int

    @classmethod
    def total(cls, items: Iterator[Traffic | None] | list) -> Traffic | None:
        """The sum of those present; None when none is (the backend keeps no counters)."""
        present = [item for item in items if item is not None]
        if not present:
            return None
        if len(present) == 1:
            return present[0]
        return cls(*(sum(values) for values in zip(*(
            (i.connections, i.packets_in, i.packets_out, i.bytes_in, i.bytes_out)
            for i in present))))

    def as_json(self) -> dict[str, int]:
        return {"connections": self.connections, "packets_in": self.packets_in,
                "packets_out": self.packets_out, "bytes_in": self.bytes_in,
                "bytes_out": self.bytes_out}


@dataclass(frozen=True, slots=True)
class DrainView:
    """A drain in progress, or done: since when, the connections left, why it ended."""

    since: float                        # epoch seconds
    seconds: float
    active_connections: int | None
    complete: bool
    why: str | None
    completed_at: float | None

    def as_json(self) -> dict[str, Any]:
        return {"since": self.since, "seconds": self.seconds,
                "active_connections": self.active_connections, "complete": self.complete,
                "why": self.why, "completed_at": self.completed_at}


@dataclass(frozen=True, slots=True)
class RampView:
    """A slow start in progress (director/lb/slowstart.py): since and until when, how far."""

    since: float                        # epoch seconds
    until: float                        # epoch seconds: at full weight then
    seconds: float                      # its slow_start
    fraction: float                     # of the full weight, by whole steps (0..1)

    @classmethod
    def of(cls, since: float, seconds: float, fraction: float, offset: float) -> RampView:
        """From the monotonic ``since``; ``offset``: epoch minus monotonic now."""
        wall_since = since + offset
        return cls(round(wall_since, 3), round(wall_since + seconds, 3), seconds,
                   round(fraction, 3))

    def as_json(self) -> dict[str, Any]:
        return {"since": self.since, "until": self.until, "seconds": self.seconds,
                "fraction": self.fraction}


# A real or virtual server's view carries what the readers made of it: ``json_text``, its
# JSON (web/bodies.py), and ``metric_lines``, its /metrics lines by family
# (metrics/collector.py), each set once by its reader with ``keep_encoded``. A view is frozen,
# so what was made of it cannot go stale, and it goes when the view goes. The readers kept it
# in maps of their own by the view's identity before, and so kept each view they had seen
# alive until their next request, after the service had given a new one: with every server
# changed between two scrapes (delay_loop shorter than the scrape interval) that was a
# second set of views for the garbage collector to walk (issue 17: +19 % CPU on /metrics).
# Not fields of the view's value: not compared, not in its JSON; bytes and tuples of strings,
# which the collector does not follow.
ENCODED = ("json_text", "metric_lines")


def keep_encoded(view: Any, name: str, value: Any) -> None:
    """Sets what a reader made of a frozen view (one of ENCODED)."""
    object.__setattr__(view, name, value)


def configured_checker(real: Any) -> str | None:
    kinds = [checker.kind for checker in real.checkers]
    return "+".join(kinds) if kinds else None


@dataclass(frozen=True, slots=True)
class RealServerView:
    LIVE: ClassVar[frozenset[str]] = frozenset(
        {"weight", "desired_weight", "up", "drained", "last_check", "checks", "counters",
         "active_connections", "inactive_connections", "drain", "agent", "ramp",
         "maintenance", "weight_override", "overrides"})

    name: str
    address: str
    port: int | None
    configured_weight: int
    checker: str | None
    weight: int | None = None           # in the kernel now (None: not there, or not known)
    desired_weight: int | None = None   # what the pool rules want
    counters: Traffic | None = None
    active_connections: int | None = None     # where the backend can tell
    inactive_connections: int | None = None
    drain: DrainView | None = None
    check: CheckView | None = None      # None: not checked (-P, or not yet)
    ramp: RampView | None = None        # a slow start in progress
    # what the readers made of this view, kept with it (see ENCODED)
    json_text: bytes | None = field(default=None, init=False, compare=False, repr=False)
    metric_lines: tuple | None = field(default=None, init=False, compare=False, repr=False)

    @classmethod
    def of(cls, real: Any, check: CheckView | None = None, weight: int | None = None,
           desired_weight: int | None = None, counters: Traffic | None = None,
           active_connections: int | None = None, inactive_connections: int | None = None,
           drain: DrainView | None = None, ramp: RampView | None = None) -> RealServerView:
        """From a real_server model and what is live of it. Its checker: what runs when it is
        checked, what is configured otherwise. (Positional to the constructor: it runs ten
        thousand times a scrape.)"""
        return cls(real_server_name(real), real.address, real.port, real.weight,
                   check.checker if check is not None else configured_checker(real),
                   weight, desired_weight, counters, active_connections, inactive_connections,
                   drain, check, ramp)

    @property
    def up(self) -> bool | None:
        return None if self.check is None else self.check.up

    @property
    def drained(self) -> bool:
        return self.check is not None and self.check.drained

    @property
    def last_check(self) -> LastCheck | None:
        return None if self.check is None else self.check.last_check

    def as_json(self) -> dict[str, Any]:
        check, counters, drain = self.check, self.counters, self.drain
        out = {"name": self.name, "address": self.address, "port": self.port,
               "weight": self.weight, "desired_weight": self.desired_weight,
               "configured_weight": self.configured_weight, "up": None, "drained": False,
               "checker": self.checker, "last_check": None, "checks": None,
               "counters": None if counters is None else counters.as_json(),
               "active_connections": self.active_connections,
               "inactive_connections": self.inactive_connections,
               "drain": None if drain is None else drain.as_json(), "agent": None,
               "ramp": None if self.ramp is None else self.ramp.as_json(),
               "maintenance": False, "weight_override": None, "overrides": {}}
        if check is not None:
            out["up"], out["drained"] = check.up, check.drained
            if check.agent is not None:
                out["agent"] = dict(check.agent)
            if check.overrides:        # the operator's, each with who set it and when
                out["overrides"] = {entry.kind: entry.as_json() for entry in check.overrides}
                out["maintenance"] = any(entry.kind == "maintenance"
                                         for entry in check.overrides)
                out["weight_override"] = next((entry.value for entry in check.overrides
                                               if entry.kind == "weight"), None)
            out["checks"] = {"ok": check.ok, "failed": check.failed}
            if check.last_check is not None:
                out["last_check"] = check.last_check.as_json()
        return out


@dataclass(frozen=True, slots=True)
class VirtualServerView:
    LIVE: ClassVar[frozenset[str]] = frozenset(
        {"quorum_ok", "sorry_server_active", "suspended", "in_kernel", "up", "counters"})

    name: str
    address: str | None
    port: int | None
    fwmark: int | None
    protocol: str
    group: str | None
    lb_algo: str
    lb_kind: str
    delay_loop: float
    quorum: int
    sorry_server: str | None            # ADDRESS:PORT
    real_servers: tuple[RealServerView, ...]
    quorum_ok: bool = True              # no load balancer (-P): as keepalived starts one
    suspended: bool = False             # ha_suspend: its address is not ours now
    in_kernel: bool = False
    counters: Traffic | None = None
    # what the readers made of this view, kept with it (see ENCODED)
    json_text: bytes | None = field(default=None, init=False, compare=False, repr=False)
    metric_lines: tuple | None = field(default=None, init=False, compare=False, repr=False)

    @classmethod
    def of(cls, virtual: Any, real_servers: tuple[RealServerView, ...],
           **live: Any) -> VirtualServerView:
        """From a virtual_server model and its real servers' views."""
        sorry = virtual.sorry_server
        return cls(virtual_server_name(virtual), virtual.address, virtual.port, virtual.fwmark,
                   virtual.protocol or "TCP", virtual.group, virtual.lb_algo, virtual.lb_kind,
                   virtual.delay_loop, virtual.quorum,
                   None if sorry is None else
                   f"{sorry[0]}:{sorry[1] if sorry[1] is not None else virtual.port}",
                   real_servers, **live)

    @property
    def sorry_server_active(self) -> bool:
        return self.sorry_server is not None and not self.quorum_ok

    @property
    def up(self) -> int:
        return sum(1 for real in self.real_servers if real.check is not None and real.check.up)

    def head_json(self) -> dict[str, Any]:
        """Everything of as_json() but its real servers, which come last there (the web
        face encodes those apart and keeps them: web/bodies.py)."""
        return {"name": self.name, "address": self.address, "port": self.port,
                "fwmark": self.fwmark, "protocol": self.protocol, "group": self.group,
                "lb_algo": self.lb_algo, "lb_kind": self.lb_kind,
                "delay_loop": self.delay_loop, "quorum": self.quorum,
                "quorum_ok": self.quorum_ok, "sorry_server": self.sorry_server,
                "sorry_server_active": self.sorry_server_active,
                "suspended": self.suspended, "in_kernel": self.in_kernel,
                "up": self.up, "total": len(self.real_servers),
                "counters": None if self.counters is None else self.counters.as_json()}

    def as_json(self) -> dict[str, Any]:
        out = self.head_json()
        out["real_servers"] = [real.as_json() for real in self.real_servers]
        return out


def configured_virtual_servers(config: Any) -> tuple[VirtualServerView, ...]:
    """The virtual servers of a configuration, nothing live: --dump-json, and a daemon that
    does not run them (-P)."""
    return tuple(VirtualServerView.of(virtual, tuple(RealServerView.of(real)
                                                     for real in virtual.real_servers))
                 for virtual in config.virtual_servers)


@dataclass(frozen=True, slots=True)
class LoadBalancerView:
    backend: str                        # ipvs, nftables, none
    errors: Mapping[str, int]           # operation -> backend errors, ever
    last_error: Mapping[str, Any] | None     # operation, error, at
    failing_converges: int              # in a row, now
    # what the backend does differently from IPVS, "VIRTUAL SERVER: note" each
    warnings: tuple[str, ...] = ()

    def as_json(self) -> dict[str, Any]:
        return {"backend": self.backend, "errors": dict(self.errors),
                "last_error": None if self.last_error is None else dict(self.last_error),
                "failing_converges": self.failing_converges, "warnings": list(self.warnings)}


# === the daemon =================================================================================

# director_web_requests_refused_total's reasons (director/webserver.py counts them)
WEB_REFUSALS = ("bad_request", "unauthorized", "forbidden", "not_found", "bad_method",
                "too_large", "timeout", "too_many_connections", "too_many_streams",
                "stream_too_slow", "tls_handshake")
REFUSED_KEY = "director.refused"    # in a WSGI environ: the app's reason for a refusal


@dataclass(frozen=True, slots=True)
class WebView:
    """The daemon's own web server: what it refused, by reason, and its slots."""

    refused: Mapping[str, int]          # reason (WEB_REFUSALS) -> requests or connections
    connections: int                    # open now
    connection_limit: int
    streams: int                        # /api/v1/stream open now
    stream_limit: int
    tls: bool

    def as_json(self) -> dict[str, Any]:
        return {"refused": dict(self.refused), "connections": self.connections,
                "connection_limit": self.connection_limit, "streams": self.streams,
                "stream_limit": self.stream_limit, "tls": self.tls}


@dataclass(frozen=True, slots=True)
class ReloadView:
    result: str | None                  # success, failure; None before the first reload
    at: float | None
    errors: tuple[str, ...] = ()
    note: str = ""

    def as_json(self) -> dict[str, Any]:
        return {"result": self.result, "at": self.at, "errors": list(self.errors),
                "note": self.note}


@dataclass(frozen=True, slots=True)
class ProcessView:
    """The process as global_defs set it (director/process.py) and the next timed reload."""

    name: str | None
    umask: int
    nice: int | None
    rt_priority: int | None             # configured, or raised by max_auto_priority
    cpus: tuple[int, ...]               # () for every CPU
    lock_memory: bool
    net_namespace: str | None
    reload_at: float | None             # reload_time_file's time, epoch seconds

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "umask": f"{self.umask:04o}", "nice": self.nice,
                "rt_priority": self.rt_priority, "cpus": list(self.cpus),
                "lock_memory": self.lock_memory, "net_namespace": self.net_namespace,
                "reload_at": self.reload_at}


@dataclass(frozen=True, slots=True)
class NotifyFifoView:
    """A notify FIFO (director/notify_fifo.py): the lines written and dropped, its script."""

    path: str
    keywords: tuple[str, ...]           # notify_fifo, vrrp_notify_fifo, lvs_notify_fifo
    open: bool
    error: str | None                   # why it is not open
    written: int                        # lines
    dropped: Mapping[str, int]          # reason (full, closed, error) -> lines
    script: str | None
    script_running: bool
    script_exits: int                   # times it ended by itself

    def as_json(self) -> dict[str, Any]:
        return {"path": self.path, "keywords": list(self.keywords), "open": self.open,
                "error": self.error, "written": self.written, "dropped": dict(self.dropped),
                "script": self.script, "script_running": self.script_running,
                "script_exits": self.script_exits}


@dataclass(frozen=True, slots=True)
class State:
    """The whole live state at ``at``."""

    router_id: str
    pid: int
    started: float                      # epoch seconds
    config: str                         # the configuration file
    backend: str | None
    load_balancer: LoadBalancerView | None
    not_running: tuple[str, ...]        # the long-lived parts that are not running (/healthz)
    reload: ReloadView
    vrrp: VrrpView
    virtual_servers: tuple[VirtualServerView, ...]
    # for the metrics, not in /api/v1/state:
    at: float = 0.0
    reloads: Mapping[str, int] = field(default_factory=_empty)        # result -> reloads
    last_reload_success: float | None = None
    # (kind, result) -> notifications sent
    notifications: Mapping[tuple[str, str], int] = field(default_factory=_empty)
    lateness_p99: float | None = None           # seconds checks started late, p99
    crashes: Mapping[str, int] = field(default_factory=_empty)   # long-lived greenlet -> crashes
    # (checker kind, reason) -> replies a checker could not read
    check_reply_errors: Mapping[tuple[str, str], int] = field(default_factory=_empty)
    main_loop: MainLoopView | None = None
    web: WebView | None = None                  # None without the daemon's own web server
    process: ProcessView | None = None
    notify_fifos: tuple[NotifyFifoView, ...] = ()
    bgp: BgpView | None = None                  # with a bgp block (director/bgp/view.py)
    # the operator's overrides and their peers' exchange (override_peers.OverridesView)
    overrides: Any = None

    @property
    def healthy(self) -> bool:
        return not self.not_running

    def jobs(self) -> Iterator[JobStats]:
        """Every checker's counters (a State taken with_jobs; empty otherwise)."""
        for server in self.virtual_servers:
            for real in server.real_servers:
                if real.check is not None:
                    yield from real.check.jobs

    def head_json(self) -> dict[str, Any]:
        """Everything of as_json() but the virtual servers (the USR1 dump writes those one
        real server a line)."""
        return {"router_id": self.router_id, "pid": self.pid, "started": self.started,
                "config": self.config, "backend": self.backend,
                "load_balancer": None if self.load_balancer is None
                else self.load_balancer.as_json(),
                "not_running": list(self.not_running), "reload": self.reload.as_json(),
                "main_loop": None if self.main_loop is None else self.main_loop.as_json(),
                "vrrp": self.vrrp.as_json(),
                "web": None if self.web is None else self.web.as_json(),
                "process": None if self.process is None else self.process.as_json(),
                "notify_fifos": [fifo.as_json() for fifo in self.notify_fifos],
                "bgp": None if self.bgp is None else self.bgp.as_json(),
                "overrides": None if self.overrides is None else self.overrides.as_json()}

    def as_json(self) -> dict[str, Any]:
        """The /api/v1/state body (the API adds ``admin``)."""
        out = self.head_json()
        out["virtual_servers"] = [server.as_json() for server in self.virtual_servers]
        return out
