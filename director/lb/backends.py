"""The backends behind the load balancer, one small interface: ``sync(desired, owned,
verify)`` converges the kernel on a desired State and returns the errors (each retried by the
load balancer), ``counters()``, ``connections_of(key, dest_key)``, ``refresh_connections()``,
``flush_all()``, ``close(remove)``.

A change is applied against what the backend last programmed (one netlink message or one
small nft transaction, whatever the pool's size); ``verify`` first reads what the kernel
really has: IPVS re-reads its services, nftables compares a listing of its table with the one
taken after its last apply. ``none`` only observes.
"""

from __future__ import annotations

import logging
import os
import subprocess
import time
from typing import Any

from ..log import event
from .model import BackendError, Connections, DestinationKey, Pool, State
from .plan import plan

log = logging.getLogger("director.lb")


class IpvsSync:
    """``verify`` compares /proc/net/ip_vs with what was programmed (one read of the
    kernel's text view) and reads every service over netlink only when they differ, at
    start, after a failed operation, and every FULL_READ_EVERY verifies (for the
    destinations' traffic counters and what /proc does not show: thresholds, scheduler
    flags). The same /proc read has the destinations' connections, live each delay_loop;
    the services' counters are read when someone looks (counters())."""

    name = "ipvs"
    reports_connections = True
    receive_buffer: tuple[int, bool] | None = None     # lvs_netlink_cmd_rcv_bufs
    FULL_READ_EVERY = 10
    COUNTERS_MAX_AGE = 1.0      # seconds the services' counters shown may be old

    def __init__(self) -> None:
        from .ipvs import IpvsBackend
        self.backend = IpvsBackend()
        self.kernel: State = {}
        self.verifies = 0
        self.full_reads = 0
        self.view: Any = None                   # the last /proc read (ipvs.ProcView)
        self.counters_at = 0.0                  # when the services' counters were read
        self._expected: dict = {}
        self._expected_for: State | None = None

    def open(self) -> None:
        self.backend.receive_buffer = self.receive_buffer
        self.backend.open()

    def set_timeouts(self, timeouts: Any) -> None:
        """lvs_timeouts (config LvsTimeouts); raises genl.GenlError."""
        from .timeouts import set_timeouts
        set_timeouts(self.backend.genl, timeouts)

    SYSCTLS = "/proc/sys/net/ipv4/vs"
    MID_FLOW = ("sloppy_tcp", "sloppy_sctp")

    def pick_up_mid_flow(self) -> list[str]:
        """For directors that share flows (announced over BGP, spread by ECMP): IPVS makes
        a connection from a TCP/SCTP packet that is not the flow's first (sloppy_tcp,
        sloppy_sctp), so a flow the router moves here from another director is scheduled
        (mh picks the same real server) rather than reset. Returns the settings it turned
        on (never turned off again, as lvs_timeouts); OSError if they cannot be written."""
        changed = []
        for name in self.MID_FLOW:
            path = os.path.join(self.SYSCTLS, name)
            with open(path) as handle:
                if handle.read().strip() != "0":
                    continue
            with open(path, "w") as handle:
                handle.write("1\n")
            changed.append(name)
        return changed

    @staticmethod
    def limits(pools: Iterable[Pool]) -> list[str]:
        return []                               # IPVS does what keepalived.conf says

    def _read(self) -> None:
        self.kernel = self.backend.read()
        self.full_reads += 1

    def _verify(self) -> None:
        """Also refreshes the destinations' connections (the same /proc read, kept as the
        view, looked up when someone asks)."""
        from .ipvs import expectation, read_proc, read_proc_view
        self.verifies += 1
        if self._expected_for is not self.kernel:         # built once per apply
            self._expected, self._expected_for = expectation(self.kernel), self.kernel
        try:
            self.view = read_proc_view(self._expected, read_proc())
        except (OSError, ValueError, AttributeError, IndexError) as exc:
            self.view = None
            event(log, "lb.ipvs_proc_unreadable", logging.WARNING, error=exc)
        if self.full_reads and self.verifies % self.FULL_READ_EVERY and \
                self.view is not None and self.view.matches:
            return
        self._read()

    def sync(self, desired: State, owned: frozenset,
             verify: bool = True) -> list[BackendError]:
        try:
            if verify:
                self._verify()
        except OSError as exc:                    # netlink: the next converge reads again
            self.full_reads = 0
            return [BackendError("read", str(exc))]
        operations = plan(desired, self.kernel, owned)
        if not operations:
            return []
        errors = self.backend.apply(operations)
        if errors:
            try:
                self._read()                      # what really happened, for the next plan
            except OSError as exc:
                self.full_reads = 0
                errors.append(BackendError("read", str(exc)))
        else:
            self.kernel = {key: Pool(pool.service, dict(pool.destinations))
                           for key, pool in desired.items()} | {
                key: pool for key, pool in self.kernel.items()
                if key not in desired and key not in owned}
        return errors

    def counters(self) -> dict:
        """IPVS's totals: the services' read when asked (a scrape, the dashboard) if older
        than COUNTERS_MAX_AGE (one service dump: a thousand services cost a verify's worth
        under emulation, so not on every verify); the destinations' as of the last full
        read (every FULL_READ_EVERY verifies)."""
        now = time.monotonic()
        if self.full_reads and now - self.counters_at >= self.COUNTERS_MAX_AGE:
            self.counters_at = now
            try:
                self.backend.read_service_counters()
            except OSError as exc:
                event(log, "lb.ipvs_counters_unreadable", logging.WARNING, error=exc)
        return self.backend.counters

    def connections_of(self, key: Any, dest_key: DestinationKey) -> tuple[int, int] | None:
        """A destination's (active, inactive) connections as of the last verify (every
        delay_loop)."""
        return self.view.connections_of(key, dest_key) if self.view is not None else None

    def refresh_connections(self) -> None:
        pass                                    # each verify reads them

    def flush_all(self) -> list[BackendError]:
        """Every IPVS service, ours or not (lvs_flush, lvs_flush_on_stop without VS)."""
        try:
            self._read()
        except OSError as exc:
            return [BackendError("flush", str(exc))]
        return self.sync({}, frozenset(self.kernel), verify=False)

    def close(self, remove: State | None = None) -> None:
        if remove:
            self.sync({}, frozenset(remove))
        self.backend.close()


class NftablesSync:
    """The first apply (and any after a failure) replaces the whole table; later ones change
    only what differs from the state last applied (changes()), in one transaction, falling
    back to the whole table if that fails.

    To notice edits made by someone else it keeps the table's objects as nft lists them
    (without counters and set elements, which move with the traffic): after a whole apply
    all of them, after a change only those the change wrote (one small nft run), so that an
    edit elsewhere is never taken for ours. ``verify`` lists the table again; any difference
    means someone edited it and the whole table is applied again (a listing cannot be turned
    back into a State; the price is that persistence forgets the clients of that moment).

    DR services (nftables_dr.py) also need the host's links: the interfaces to hook and the
    device each real server is directly reachable on, read at every sync (so a link change
    is followed within a delay_loop) and part of what "changed" means. A real server with
    no directly connected route is left out and returned as a "route" error (logged,
    counted, retried) while the rest is applied."""

    name = "nftables"
    reports_connections = True                  # while a drain waits (conntrack)

    @staticmethod
    def pick_up_mid_flow() -> list[str]:
        """DR is forwarded without state, and conntrack takes a NAT flow up mid-stream
        already (nf_conntrack_tcp_loose): nothing to turn on."""
        return []

    def __init__(self) -> None:
        from .nftables import NftablesBackend
        from .nftables_dr import Links
        self.backend = NftablesBackend()
        self.applied: State | None = None       # what the table implements, if known
        self.links: Any = Links()               # the links it was applied for (Links)
        self.objects: dict[str, str] = {}       # its objects as listed after that apply
        self.kernel: State = {}
        self._connections: Connections = {}

    def open(self) -> None:
        pass

    def set_timeouts(self, timeouts: Any) -> None:
        from .timeouts import nftables_note
        nftables_note(timeouts)

    @staticmethod
    def limits(pools: Iterable[Pool]) -> list[str]:
        """What the tables do differently from IPVS for these pools (one virtual server's),
        one sentence each: wlc runs as wrr, TUN destinations are dropped..."""
        from .nftables_dr import notes
        return notes(pools)

    def sync(self, desired: State, owned: frozenset,
             verify: bool = True) -> list[BackendError]:
        from .nftables_dr import Links, dr_addresses, problems
        desired = {key: Pool(pool.service, dict(pool.destinations))    # a snapshot
                   for key, pool in desired.items()}
        previous = self.applied
        errors: list[BackendError] = []
        addresses = dr_addresses(desired)
        links = Links()
        if addresses:
            try:
                links = self.backend.links(addresses)
            except OSError as exc:              # keep what the table was built for
                links = self.links
                errors.append(BackendError("links", str(exc)))
        errors += [BackendError("route", problem) for problem in problems(desired, links)]
        try:
            if previous is not None and verify:
                listed = self.backend.fingerprint()
                if listed != self.objects:
                    event(log, "lb.nftables_table_changed", logging.WARNING,
                          change="edited" if listed else "removed", note="applying it again")
                    previous = None
            if previous is not None and desired == previous and links == self.links:
                return errors
            if previous is not None:
                try:
                    done = self.backend.apply_changes(previous, desired, self.links, links)
                except OSError as exc:
                    event(log, "lb.nftables_incremental_failed", logging.WARNING, error=exc)
                else:
                    self.applied, self.kernel, self.links = desired, desired, links
                    self.objects = {name: text for name, text in self.objects.items()
                                    if name not in done.gone} | \
                        self.backend.fingerprint(done.touched)
                    return errors
            self.applied = None
            self.backend.apply(desired, links)
            self.applied, self.kernel, self.links = desired, desired, links
            self.objects = self.backend.fingerprint()
        except OSError as exc:
            self.applied = None                 # unknown: the whole table next time
            return [*errors, BackendError("apply", str(exc))]
        return errors

    def counters(self) -> dict:
        return {}                               # nftables keeps none per destination

    def connections_of(self, key: Any, dest_key: DestinationKey) -> tuple[int, int] | None:
        return self._connections.get((key, dest_key))

    def refresh_connections(self) -> None:
        """From connection tracking (asked for while a drain waits: the listing can be
        long, so not on every verify)."""
        from . import conntrack
        flows = conntrack.parse(conntrack.read())
        self._connections = {
            (key, dest.key): flows.get((key.address, key.port, dest.key.address,
                                        dest.key.port or key.port), (0, 0))
            for key, pool in self.kernel.items() if key.fwmark is None
            for dest in pool.destinations.values()}

    def flush_all(self) -> list[BackendError]:
        """The table (the only thing in the ruleset that is ours to flush)."""
        self.applied = None
        try:
            self.backend.flush()
        except OSError as exc:
            return [BackendError("flush", str(exc))]
        return []

    def close(self, remove: State | None = None) -> None:
        if remove is not None:
            for error in self.flush_all():
                event(log, "lb.flush_error", logging.ERROR, error=error)


class ObserveOnly:
    name = "none"
    reports_connections = False

    @staticmethod
    def pick_up_mid_flow() -> list[str]:
        return []                               # no kernel: no flows

    def __init__(self) -> None:
        self.kernel: State = {}

    def open(self) -> None:
        pass

    def set_timeouts(self, timeouts: Any) -> None:
        pass                                    # no kernel: nothing to time out

    @staticmethod
    def limits(pools: Iterable[Pool]) -> list[str]:
        return []

    def sync(self, desired: State, owned: frozenset,
             verify: bool = True) -> list[BackendError]:
        return []

    def counters(self) -> dict:
        return {}

    def connections_of(self, key: Any, dest_key: DestinationKey) -> tuple[int, int] | None:
        return None

    def refresh_connections(self) -> None:
        pass

    def flush_all(self) -> list[BackendError]:
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
