"""promote_secondaries: the kernel's net.ipv4.conf.IF.promote_secondaries, set for the
instances that ask for it.

Without it, removing an interface's primary IPv4 address removes every secondary of its
subnet too: the first VIP of a /24 that another process (or another instance) removes takes
the other VIPs of that /24 with it. As keepalived 2.2.7 (vrrp_if_config.c): set to 1 when the
first such instance on the interface starts, if it was 0; set back to 0 when the last one of
them stops, only if it was set by us. Counted per interface.
"""

from __future__ import annotations

import logging
from pathlib import Path

from ..log import event

log = logging.getLogger("director.vrrp.promote")

SYSCTL = Path("/proc/sys/net/ipv4/conf")


class PromoteSecondaries:
    def __init__(self, root: Path = SYSCTL) -> None:
        self.root = root
        self.users: dict[str, int] = {}      # interface -> instances that set it

    def _path(self, ifname: str) -> Path:
        return self.root / ifname / "promote_secondaries"

    def acquire(self, ifname: str | None, instance: str) -> bool:
        """The instance starts; True if it holds the setting (it must release it)."""
        if not ifname:
            return False
        if ifname not in self.users:
            try:
                if self._path(ifname).read_text().strip() == "1":
                    return False                 # the host's own setting: never touched
                self._path(ifname).write_text("1")
            except OSError as exc:
                event(log, "vrrp.promote_secondaries_error", logging.ERROR, instance=instance,
                      interface=ifname, error=exc)
                return False
            event(log, "vrrp.promote_secondaries", interface=ifname, value=1)
            self.users[ifname] = 0
        self.users[ifname] += 1
        return True

    def release(self, ifname: str, instance: str) -> None:
        if ifname not in self.users:
            return
        self.users[ifname] -= 1
        if self.users[ifname]:
            return
        del self.users[ifname]
        try:
            self._path(ifname).write_text("0")
            event(log, "vrrp.promote_secondaries", interface=ifname, value=0)
        except OSError as exc:              # the interface went: nothing to set back
            event(log, "vrrp.promote_secondaries_error", logging.WARNING, instance=instance,
                  interface=ifname, error=exc)
