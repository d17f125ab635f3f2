"""The load-balancer subsystem: the checks' verdicts reach the kernel.

On every real server change (and every ``reconcile_every`` seconds, so that entries changed
behind our back come back within a delay_loop) it recomputes the desired state with the
pool rules, updates each virtual server's quorum (running quorum_up / quorum_down) and has
the backend converge on it. Backends share one small interface, ``sync(desired, owned)``:
IPVS reads the kernel and applies the plan's operations; nftables replaces its one table
when the rendering changed; ``none`` only observes.
"""

from __future__ import annotations

import logging
import os
import subprocess
from typing import Any

from .. import hub
from ..config.blocks.virtual_server import virtual_server_name
from ..log import event
from ..notify import Notifier
from .model import State
from .plan import plan
from .pool import Live, desired_state, initial_quorum, live_weight, quorum_step

log = logging.getLogger("director.lb")


class IpvsSync:
    name = "ipvs"

    def __init__(self) -> None:
        from .ipvs import IpvsBackend
        self.backend = IpvsBackend()
        self.kernel: State = {}

    def open(self) -> None:
        self.backend.open()

    def sync(self, desired: State, owned: frozenset) -> list[str]:
        self.kernel = self.backend.read()
        operations = plan(desired, self.kernel, owned)
        errors = self.backend.apply(operations) if operations else []
        if operations:
            self.kernel = self.backend.read()
        return errors

    def close(self, remove: State | None = None) -> None:
        if remove:
            self.sync({}, frozenset(remove))
        self.backend.close()


class NftablesSync:
    """The first apply (and any after a failure) replaces the whole table; later ones change
    only what differs from the state last applied (render_changes), in one transaction,
    falling back to the whole table if that fails (e.g. the table was changed behind our
    back)."""

    name = "nftables"

    def __init__(self) -> None:
        from .nftables import NftablesBackend
        self.backend = NftablesBackend()
        self.applied: State | None = None       # what the table implements, if known
        self.kernel: State = {}

    def open(self) -> None:
        pass

    def sync(self, desired: State, owned: frozenset) -> list[str]:
        from .model import Pool
        desired = {key: Pool(pool.service, dict(pool.destinations))    # a snapshot
                   for key, pool in desired.items()}
        previous = self.applied
        if previous is not None and desired == previous:
            if self.backend.read():                                 # unchanged and still there
                return []
            previous = None
        if previous is not None:
            try:
                self.backend.apply_changes(previous, desired)
            except OSError as exc:
                event(log, "lb.nftables_incremental_failed", logging.WARNING, error=exc)
                previous = None
        if previous is None:
            self.applied = None
            try:
                self.backend.apply(desired)
            except OSError as exc:
                return [str(exc)]
        self.applied = self.kernel = desired
        return []

    def close(self, remove: State | None = None) -> None:
        if remove is not None:
            try:
                self.backend.flush()
            except OSError as exc:
                event(log, "lb.flush_error", logging.ERROR, error=exc)


class ObserveOnly:
    name = "none"

    def __init__(self) -> None:
        self.kernel: State = {}

    def open(self) -> None:
        pass

    def sync(self, desired: State, owned: frozenset) -> list[str]:
        return []

    def close(self, remove: State | None = None) -> None:
        pass


BACKENDS = {"ipvs": IpvsSync, "nftables": NftablesSync, "none": ObserveOnly}


def ipvs_available() -> bool:
    """Whether the kernel has IPVS, loading the module first as keepalived does."""
    if not os.path.exists("/proc/net/ip_vs"):
        try:
            subprocess.run(["modprobe", "-q", "ip_vs"], stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return False
    return os.path.exists("/proc/net/ip_vs")


class LoadBalancer:
    def __init__(self, config: Any, checks: Any, backend: str, notifier: Notifier,
                 reconcile_every: float | None = None) -> None:
        self.config = config
        self.checks = checks
        self.backend = BACKENDS[backend]()
        self.notifier = notifier
        delays = [v.delay_loop for v in config.virtual_servers] or [60.0]
        self.reconcile_every = reconcile_every or max(1.0, min(delays))
        self.quorum: dict[str, bool] = {}
        self.desired: State = {}
        self.owned: frozenset = frozenset()
        self.changed = hub.Event()
        self.greenlet: hub.Greenlet | None = None
        self.errors = 0

    def live(self, virtual_name: str, real: Any) -> Live:
        state = self.checks.state_of(virtual_name, real)
        if state is None:
            return Live()
        return Live(up=state.up, weight=state.dynamic_weight(), drained=state.drained)

    def start(self) -> None:
        self.backend.open()
        for virtual in self.config.virtual_servers:
            name = virtual_server_name(virtual)
            self.quorum[name] = initial_quorum(virtual, lambda real, n=name: self.live(n, real))
        self.checks.listeners.append(lambda state: self.changed.set())
        self._converge()
        self.greenlet = hub.spawn(self._run, name="load balancer")
        event(log, "lb.started", backend=self.backend.name, services=len(self.desired))

    def _run(self) -> None:
        while True:
            self.changed.wait(self.reconcile_every)
            self.changed.clear()
            self._converge()

    def _converge(self) -> None:
        for virtual in self.config.virtual_servers:
            name = virtual_server_name(virtual)
            weight = live_weight(virtual, lambda real, n=name: self.live(n, real))
            self.quorum[name], change = quorum_step(virtual, self.quorum[name], weight)
            if change is not None:
                event(log, "lb.quorum", virtual_server=name, state="up" if change.up else "down",
                      live_weight=weight)
                script = virtual.quorum_up if change.up else virtual.quorum_down
                if script is not None:
                    self.notifier.notify(script, (), f"quorum {name}")
        self.desired = desired_state(self.config, self.live, self.quorum)
        self.owned = self.owned | frozenset(self.desired)
        for error in self.backend.sync(self.desired, self.owned):
            self.errors += 1
            event(log, "lb.error", logging.ERROR, backend=self.backend.name, error=error)

    def stop(self) -> None:
        if self.greenlet is not None:
            self.greenlet.kill(block=False)
        flush = self.config.global_defs.lvs_flush_on_stop
        self.backend.close(remove=self.desired if flush else None)

    def weight_in_kernel(self) -> dict[tuple, int]:
        """(service key, destination address, port) -> weight, as last synced."""
        return {(key, dest.key.address, dest.key.port): dest.weight
                for key, pool in self.backend.kernel.items()
                for dest in pool.destinations.values()}
