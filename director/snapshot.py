"""An immutable view of the live state: the only thing the web API, the dashboard, the
metrics and the SIGUSR1 dump read.

It is built on demand (a request, a scrape, a signal) by walking the subsystems once, never
kept up to date in the hot path; ``yield_every`` lets the loop run while ten thousand real
servers are walked, so that building one never delays a VRRP advert. ``state`` has the
contract's /api/v1/state shape (plus fields the dashboard uses); ``jobs`` carries each
checker's counters and duration buckets for the metrics collector, which would only bloat
the JSON.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from . import hub
from .config.blocks.virtual_server import real_server_name, virtual_server_name
from .lb.model import DestinationKey


@dataclass(frozen=True)
class JobStats:
    virtual_server: str
    real_server: str
    checker: str
    ok: int
    failed: int
    buckets: tuple[int, ...]          # per DURATION_BUCKETS, not cumulative; last: +Inf
    duration_sum: float


@dataclass(frozen=True)
class Snapshot:
    at: float
    state: dict[str, Any]
    jobs: tuple[JobStats, ...] = ()
    reloads: dict[str, int] = field(default_factory=dict)
    last_reload_success: float | None = None
    notifications: dict[tuple[str, str], int] = field(default_factory=dict)   # (kind, result)
    lateness_p99: float | None = None
    healthy: bool = True
    crashes: dict[str, int] = field(default_factory=dict)   # long-lived greenlet -> crashes


def _counters(counters: Any) -> dict[str, int] | None:
    if counters is None:
        return None
    return {"connections": counters.connections, "packets_in": counters.packets_in,
            "packets_out": counters.packets_out, "bytes_in": counters.bytes_in,
            "bytes_out": counters.bytes_out}


def _sum_counters(items: list[dict[str, int] | None]) -> dict[str, int] | None:
    present = [item for item in items if item is not None]
    if not present:
        return None
    return {name: sum(item[name] for item in present) for name in present[0]}


def last_check(state: Any, wall_time) -> dict | None:
    last = max((job for job in state.jobs if job.last is not None),
               key=lambda job: job.last_at, default=None)
    if last is None:
        return None
    result = last.last
    out = {"ok": result.ok, "duration_seconds": round(result.duration, 6),
           "error": result.error, "at": round(wall_time(last.last_at), 3)}
    if "cert_not_after" in result.detail:
        out["cert_not_after"] = result.detail["cert_not_after"]
    return out


def virtual_servers(config: Any, checks: Any, lb: Any, yield_every: int = 0,
                    jobs: list[JobStats] | None = None) -> list[dict]:
    """The virtual servers in the configuration's order, each with its pool as the checks
    see it and as the kernel has it. ``jobs``, if given, collects each checker's stats."""
    kernel = lb.backend.kernel if lb is not None else {}
    counters = lb.backend.counters() if lb is not None else {}
    desired = lb.desired if lb is not None else {}
    # asked per real server only where the backend can tell (a tenth of a scrape otherwise)
    connections_of = lb.connections_of if lb is not None and \
        lb.backend.reports_connections else lambda name, dest_key: None
    out = []
    walked = 0
    for virtual in config.virtual_servers:
        name = virtual_server_name(virtual)
        keys = lb.keys.get(name, []) if lb is not None else []
        quorum_ok = lb.quorum.get(name, True) if lb is not None else True
        reals = []
        for real in virtual.real_servers:
            walked += 1
            if yield_every and walked % yield_every == 0:
                hub.sleep(0)
            state = checks.state_of(name, real) if checks is not None else None
            dest_key = DestinationKey(real.address, real.port)
            in_kernel = [kernel[key].destinations.get(dest_key) for key in keys if key in kernel]
            wanted = [desired[key].destinations.get(dest_key) for key in keys if key in desired]
            entry = {
                "name": real_server_name(real),
                "address": real.address, "port": real.port,
                "weight": next((d.weight for d in in_kernel if d is not None), None),
                "desired_weight": next((d.weight for d in wanted if d is not None), None),
                "configured_weight": real.weight,
                "up": None, "drained": False, "checker": None, "last_check": None,
                "counters": _sum_counters([_counters(counters.get((key, dest_key)))
                                           for key in keys]),
            }
            connections = connections_of(name, dest_key)
            entry["active_connections"] = None if connections is None else connections[0]
            entry["inactive_connections"] = None if connections is None else connections[1]
            if state is not None:
                entry["up"], entry["drained"] = state.up, state.drained
                drain = lb.drains.get(state.name) if lb is not None and state.drained else None
                entry["drain"] = None if drain is None else drain.as_json(time.monotonic())
                entry["checker"] = "+".join(job.key[2] for job in state.jobs) or None
                entry["last_check"] = last_check(state, checks.scheduler.wall_time)
                entry["checks"] = {"ok": sum(job.ok for job in state.jobs),
                                   "failed": sum(job.failed for job in state.jobs)}
                if jobs is not None:
                    jobs.extend(JobStats(name, state.name[1], job.key[2], job.ok, job.failed,
                                         tuple(job.buckets), job.duration_sum)
                                for job in state.jobs)
            reals.append(entry)
        sorry = virtual.sorry_server
        out.append({
            "name": name, "address": virtual.address, "port": virtual.port,
            "fwmark": virtual.fwmark, "protocol": virtual.protocol or "TCP",
            "group": virtual.group, "lb_algo": virtual.lb_algo, "lb_kind": virtual.lb_kind,
            "delay_loop": virtual.delay_loop, "quorum": virtual.quorum,
            "quorum_ok": quorum_ok,
            "sorry_server": None if sorry is None else
            f"{sorry[0]}:{sorry[1] if sorry[1] is not None else virtual.port}",
            "sorry_server_active": sorry is not None and not quorum_ok,
            "suspended": lb is not None and name in lb.suspended,
            "in_kernel": any(key in kernel for key in keys),
            "up": sum(1 for real in reals if real["up"]),
            "total": len(reals),
            "counters": _sum_counters([_counters(counters.get((key, None))) for key in keys]),
            "real_servers": reals,
        })
    return out


def take(director: Any, yield_every: int = 1000, with_jobs: bool = False) -> Snapshot:
    """The live state of a running Director (see daemon.py)."""
    config = director.config
    vrrp = director.vrrp.snapshot() if director.vrrp else {"instances": [], "sync_groups": []}
    jobs: list[JobStats] | None = [] if with_jobs else None
    servers = virtual_servers(config, director.checks, director.lb, yield_every, jobs)
    lb = director.lb
    state = {
        "router_id": director.router_id(),
        "pid": director.pid,
        "started": director.started_wall,
        "config": director.options.use_file,
        "backend": lb.backend.name if lb is not None else None,
        "load_balancer": None if lb is None else lb.status(),
        "not_running": director.not_running(),
        "reload": dict(director.reload_status),
        "vrrp": {"instances": vrrp["instances"], "sync_groups": vrrp["sync_groups"],
                 "lvs_sync_daemon": vrrp.get("lvs_sync_daemon")},
        "virtual_servers": servers,
    }
    notifications = director.notifications()
    lateness = None
    if director.checks is not None and director.checks.scheduler.lateness:
        samples = sorted(director.checks.scheduler.lateness)
        lateness = samples[min(len(samples) - 1, int(len(samples) * 0.99))]
    return Snapshot(time.time(), state, tuple(jobs or ()), dict(director.reloads),
                    director.last_reload_success, notifications, lateness,
                    not state["not_running"], dict(hub.crashes))
