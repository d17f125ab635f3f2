"""What the wire and timing keywords (config/blocks/wire.py) mean for one instance or one
socket, as pure functions of the configuration: the receive expectations they add, the
multicast group, the checksum variant, the receive buffer, the start-up hold."""

from __future__ import annotations

import ipaddress
from typing import Any, Callable, Iterable

from ..config.validate import instance_family
from .packet import ADDRESS_LIST, HEADER_LEN, MULTICAST, OLD_CHECKSUM

NO_PEER = "no unicast peer"             # the fault of unicast_fault_no_peer
AUTH_LEN = 8


def _normal(address: str) -> str:
    return str(ipaddress.ip_address(address))


def _inherited(config: Any, defs: Any, name: str, global_name: str) -> bool:
    value = getattr(config, name)
    return bool(getattr(defs, global_name) if value is None else value)


def checksum_as_v2(config: Any, defs: Any) -> bool:
    return _inherited(config, defs, "v3_checksum_as_v2", "v3_checksum_as_v2")


def skip_check_adv_addr(config: Any, defs: Any) -> bool:
    return _inherited(config, defs, "skip_check_adv_addr", "vrrp_skip_check_adv_addr")


def multicast_group(config: Any, defs: Any, family: int) -> str:
    """mcast_dst_ip, else the global group of the family, else the RFC's."""
    group = defs.vrrp_mcast_group4 if family == 4 else defs.vrrp_mcast_group6
    return config.mcast_dst_ip or group or MULTICAST[family]


def fault_no_peer(config: Any) -> bool:
    return bool(config.unicast_fault_no_peer) and not config.unicast_peer


def expectation(config: Any, defs: Any, priority: int) -> dict:
    """The Expectation fields these keywords set (packet.Expectation)."""
    peers = config.unicast_peer
    checked = bool(peers) and bool(config.check_unicast_src or defs.vrrp_check_unicast_src)
    unicast_peers = tuple((_normal(p.address), p.min_ttl if p.min_ttl is not None else 0,
                           p.max_ttl if p.max_ttl is not None else 255)
                          for p in peers) if checked else None
    old_group = None
    if peers and config.old_unicast_checksum != "never":
        old_group = defs.vrrp_mcast_group4 or MULTICAST[4]
    return {"unicast_peers": unicast_peers,
            "skip_checksum": checksum_as_v2(config, defs),
            "old_checksum_group": old_group,
            "owner_ignore": priority == 255 and bool(defs.vrrp_owner_ignore_adverts)}


def advert_length(config: Any, family: int, version: int) -> int:
    """Bytes of one advert on the wire, IP header included (keepalived's vrrp_adv_len)."""
    size = 4 if family == 4 else 16
    count = sum(1 for vip in config.virtual_ipaddress if vip.family == family)
    return (20 if family == 4 else 40) + HEADER_LEN + count * size + \
        (AUTH_LEN if version == 2 else 0)


def receive_buffer(defs: Any, instances: Iterable[tuple[Any, int, int]],
                   mtu: Callable[[str], int]) -> int:
    """SO_RCVBUF bytes for one socket from the (config, family, version) of its instances
    (keepalived's vrrp_scheduler: per instance kernel_rx_buf_size, else the global policy);
    0 leaves the kernel's default."""
    policy = defs.vrrp_rx_bufs_policy
    multiplier = defs.vrrp_rx_bufs_multiplier or 3
    total = 0
    for config, family, version in instances:
        if config.kernel_rx_buf_size:
            total += config.kernel_rx_buf_size
        elif policy and policy[0] == "SIZE":
            total += policy[1]
        elif policy and policy[0] == "ADVERT":
            total += multiplier * advert_length(config, family, version)
        elif policy and policy[0] == "MTU" and config.interface:
            total += multiplier * mtu(config.interface)
    return total


def startup_hold(defs: Any, now: float, uptime: float | None) -> float | None:
    """When BACKUPs may start their master down timers at start-up: vrrp_startup_delay from
    now, or vrrp_delay_after_boot from boot (``uptime`` seconds ago), whichever is later."""
    ends = []
    if defs.vrrp_startup_delay:
        ends.append(now + defs.vrrp_startup_delay)
    if defs.vrrp_delay_after_boot and uptime is not None and \
            uptime < defs.vrrp_delay_after_boot:
        ends.append(now + defs.vrrp_delay_after_boot - uptime)
    return max(ends) if ends else None


def read_uptime(path: str = "/proc/uptime") -> float | None:
    try:
        with open(path, encoding="ascii") as handle:
            return float(handle.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def fixed_by_globals(config: Any, defs: Any) -> tuple:
    """What global_defs fixes in an instance when it starts (its parameters and its socket):
    a reload that changes it restarts the instance (reconcile); the rest of these keywords
    is read live."""
    return (config.down_timer_adverts or defs.vrrp_down_timer_adverts,
            None if config.unicast_peer else
            multicast_group(config, defs, instance_family(config)))


def received_notes(notes: tuple[str, ...], source: str, master: str | None,
                   skip_adv_addr: bool) -> tuple[tuple[str, ...], bool]:
    """An accepted advert's notes as the instance counts them, and whether it taught us the
    old unicast checksum (answered in kind from then on, keepalived's automatic mode).
    skip_check_adv_addr: the current master's address list is not compared."""
    if skip_adv_addr and source == master:
        notes = tuple(note for note in notes if note != ADDRESS_LIST)
    return notes, OLD_CHECKSUM in notes
