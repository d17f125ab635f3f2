"""track_src_ip: an instance whose configured source address (unicast_src_ip or
mcast_src_ip) is missing from the host is in FAULT until it is back (keepalived 2.2.7's
VRRP_FLAG_TRACK_SADDR, "Fault state if configured saddr is missing").

keepalived follows netlink address events; here the address is probed every half second by
binding a UDP socket to it, which succeeds exactly while the address is configured (and not
tentative) in this network namespace. The result goes to the instance's Tracker under the
key "source ADDRESS", as an interface's state does.
"""

from __future__ import annotations

import errno
import ipaddress
import socket

from .. import hub


def address_present(address: str, ifname: str | None = None) -> bool:
    ip = ipaddress.ip_address(address)
    family = socket.AF_INET if ip.version == 4 else socket.AF_INET6
    scope = 0
    if ip.version == 6 and ip.is_link_local and ifname:
        try:
            scope = socket.if_nametoindex(ifname)
        except OSError:
            return False
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        try:
            sock.bind((address, 0) if ip.version == 4 else (address, 0, 0, scope))
        except OSError as exc:
            if exc.errno in (errno.EADDRNOTAVAIL, errno.ENODEV, errno.EINVAL):
                return False
            raise
    return True


class SourceWatcher:
    def __init__(self, period: float = 0.5) -> None:
        self.period = period
        self.subscribers: list[tuple[str, str | None, object]] = []   # (address, if, tracker)
        self.greenlet: hub.Greenlet | None = None

    def watch(self, address: str, ifname: str | None, tracker) -> None:
        self.subscribers.append((address, ifname, tracker))
        tracker.update(f"source {address}", address_present(address, ifname))

    def forget(self, tracker) -> None:
        self.subscribers = [entry for entry in self.subscribers if entry[2] is not tracker]

    def start(self) -> None:
        if self.subscribers and self.greenlet is None:
            self.greenlet = hub.supervise(self.run, name="vrrp source address watcher")

    def run(self) -> None:
        while True:
            for address, ifname, tracker in list(self.subscribers):
                tracker.update(f"source {address}", address_present(address, ifname))
            hub.sleep(self.period)

    def stop(self) -> None:
        if self.greenlet is not None:
            self.greenlet.kill(block=False)
            self.greenlet = None
