"""Gratuitous ARP / unsolicited NA pacing per interface, as keepalived 2.2.7 does it
(vrrp_arp.c, vrrp_ndisc.c, vrrp_scheduler.c's vrrp_arp_thread):

* garp_interval (IPv4) and gna_interval (IPv6) are the least time between two frames of
  that kind on one interface, whichever instance sends them: garp_group's for the
  interface, else the global vrrp_garp_interval / vrrp_gna_interval (director also takes
  an instance's own garp_interval / gna_interval for its addresses). Unset: no pacing,
  everything goes at once.
* A frame that may not go yet waits; an address waits at most once. A set of
  garp_master_repeat 5 for one address while paced is therefore 2 frames (one at once, one
  an interval later), as keepalived's per-address "pending" flag makes it, and 3 addresses
  go one interval apart.
* A waiting address is dropped if its instance is no longer MASTER when its turn comes.

``PacingState`` is the pure rule; ``Pacer`` drives it with one short-lived greenlet while
anything waits and sends through arp.Announcer.
"""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass, field
from typing import Any, Callable

from .. import hub
from ..clock import Clock
from ..log import event as log_event

log = logging.getLogger("director.vrrp")

Key = tuple[str, int]           # (interface, family)


@dataclass
class PacingState:
    next_at: dict[Key, float] = field(default_factory=dict)       # earliest next frame
    intervals: dict[Key, float] = field(default_factory=dict)     # last interval used
    pending: dict[Key, dict[str, Callable[[], bool]]] = field(default_factory=dict)

    def request(self, key: Key, addresses: list[str], interval: float, now: float,
                wanted: Callable[[], bool]) -> list[str]:
        """The addresses to send at once; the others wait (once each)."""
        if not interval:
            return list(addresses)
        self.intervals[key] = interval
        waiting = self.pending.setdefault(key, {})
        now_list: list[str] = []
        for address in addresses:
            if address in waiting:
                continue
            if not waiting and now >= self.next_at.get(key, 0.0):
                now_list.append(address)
                self.next_at[key] = now + interval
            else:
                waiting[address] = wanted
        if not waiting:
            del self.pending[key]
        return now_list

    def due(self, now: float) -> list[tuple[Key, str]]:
        """The waiting frames whose turn has come (one per interface and family), removed."""
        out = []
        for key, waiting in list(self.pending.items()):
            while waiting and now >= self.next_at.get(key, 0.0):
                address, wanted = next(iter(waiting.items()))
                del waiting[address]
                if not wanted():
                    continue                    # its instance left MASTER meanwhile
                out.append((key, address))
                self.next_at[key] = now + self.intervals[key]
            if not waiting:
                del self.pending[key]
        return out

    def next_deadline(self) -> float | None:
        times = [self.next_at.get(key, 0.0) for key in self.pending]
        return min(times) if times else None


class Pacer:
    """What instances announce through: ``announce(ifname, addresses, ...)``."""

    def __init__(self, announcer: Any, clock: Clock) -> None:
        self.announcer = announcer
        self.clock = clock
        self.state = PacingState()
        self.groups: dict[str, tuple[float | None, float | None]] = {}
        self.defaults: tuple[float | None, float | None] = (None, None)
        self._flushing: hub.Greenlet | None = None

    def configure(self, config: Any) -> None:
        """garp_group intervals per interface and the global ones (start and reload)."""
        defs = config.global_defs
        self.defaults = (defs.vrrp_garp_interval, defs.vrrp_gna_interval)
        self.groups = {name: (group.garp_interval, group.gna_interval)
                       for group in config.garp_groups for name in group.interfaces}

    def interval(self, ifname: str, family: int, own: float | None = None) -> float:
        if own:
            return own
        group = self.groups.get(ifname, (None, None))
        index = 0 if family == 4 else 1
        return group[index] or self.defaults[index] or 0.0

    def announce(self, ifname: str, addresses: list[str], garp_interval: float | None = None,
                 gna_interval: float | None = None,
                 wanted: Callable[[], bool] = lambda: True) -> None:
        """Send now what may go now; the rest waits its turn. Raises OSError as
        Announcer.announce does for what goes at once."""
        now = self.clock.now()
        at_once: list[str] = []
        for family, own in ((4, garp_interval), (6, gna_interval)):
            mine = [a for a in addresses
                    if ipaddress.ip_interface(a).version == family]
            if mine:
                at_once += self.state.request((ifname, family), mine,
                                              self.interval(ifname, family, own), now, wanted)
        if self.state.pending and self._flushing is None:
            self._flushing = hub.spawn(self._flush, name="vrrp garp pacing")
        if at_once:
            self.announcer.announce(ifname, at_once)

    def _flush(self) -> None:
        try:
            while True:
                deadline = self.state.next_deadline()
                if deadline is None:
                    return
                hub.sleep(max(0.0, deadline - self.clock.now()))
                for (ifname, _), address in self.state.due(self.clock.now()):
                    try:
                        self.announcer.announce(ifname, [address])
                    except (OSError, ValueError) as exc:
                        log_event(log, "vrrp.announce_error", logging.WARNING,
                                  interface=ifname, error=exc)
        finally:
            self._flushing = None

    def close(self) -> None:
        if self._flushing is not None:
            self._flushing.kill(block=False)
        self.state = PacingState()
