"""The VMAC / ipvlan keywords (keepalived's use_vmac family), global and per instance.

Their values are small frozen records; the run-time side is director/vrrp/vmac.py (names,
where VIPs go: pure) and director/vrrp/vmac_links.py (the interfaces and sysctls).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

from ..schema import Custom, Flag, Invalid, Kw, Word

IFNAMSIZ = 16
RFC_MAC_PREFIX = "00:00:5e:00"          # 00:00:5e:00:01:VRID (IPv4), 00:00:5e:00:02:VRID (IPv6)
IPVLAN_MODES = ("bridge", "private", "vepa")


@dataclass(frozen=True)
class UseVmac:
    """``use_vmac [NAME] [MAC]``: NAME of the macvlan (default: vmac_prefix.VRID), MAC instead
    of the RFC's virtual MAC."""
    name: str | None = None
    mac: str | None = None


@dataclass(frozen=True)
class UseIpvlan:
    """``use_ipvlan [NAME] [ADDRESS/PREFIX] [bridge|private|vepa]``."""
    name: str | None = None
    address: str | None = None
    mode: str = "bridge"


@dataclass(frozen=True)
class GarpExtraIf:
    """``garp_extra_if SECONDS [all]``: while MASTER, a gratuitous ARP / NA every SECONDS on
    the VIPs' other VMAC interfaces (``all``: on every interface of a VIP)."""
    interval: int
    all: bool = False


def interface_name_problem(name: str) -> str | None:
    """The kernel's rule for a device name (dev_valid_name), as keepalived checks it."""
    if not name or name in (".", ".."):
        return "is not a valid interface name"
    if len(name) >= IFNAMSIZ:
        return f"is longer than {IFNAMSIZ - 1} characters"
    if any(c in name for c in "/:") or any(c.isspace() for c in name):
        return "has '/', ':' or white space"
    return None


def _mac(word: str) -> str:
    """keepalived accepts 6 octets, or 5 with the vrid as the last (written 'a:b:c:d:e:');
    the latter is kept as 'a:b:c:d:e:' and completed with the vrid at run time."""
    parts = word.lower().split(":")
    with_vrid = len(parts) == 6 and parts[5] == "" or len(parts) == 5
    octets = parts[:5] if with_vrid else parts
    if len(octets) not in (5, 6) or any(not o or len(o) > 2 or
                                        any(c not in "0123456789abcdef" for c in o)
                                        for o in octets):
        raise Invalid(f"'{word}' is not a MAC address")
    octets = [o.zfill(2) for o in octets]
    if int(octets[0], 16) & 1:
        raise Invalid(f"VMAC MAC address {word} is multicast")
    if ":".join(octets[:4]) == RFC_MAC_PREFIX and octets[4] in ("01", "02"):
        raise Invalid(f"VMAC MAC address {word} is in the RFC 5798 range (used without an "
                      "address)")
    return ":".join(octets) + (":" if with_vrid else "")


def use_vmac(args, ctx) -> UseVmac:
    if len(args) > 2:
        raise Invalid(f"expects an optional interface name and MAC address, got "
                      f"'{' '.join(args)}'")
    name = mac = None
    for word in map(str, args):
        if ":" in word:             # interface names cannot hold a ':'
            if mac is not None:
                raise Invalid("VMAC MAC address given twice")
            mac = _mac(word)
        else:
            if name is not None:
                raise Invalid("VMAC interface name given twice")
            problem = interface_name_problem(word)
            if problem:
                raise Invalid(f"VMAC interface name '{word}' {problem}")
            name = word
    return UseVmac(name, mac)


def use_ipvlan(args, ctx) -> UseIpvlan:
    name = address = mode = None
    for word in map(str, args):
        if word in IPVLAN_MODES:
            if mode is not None:
                raise Invalid(f"ipvlan mode given twice ('{mode}', '{word}')")
            mode = word
            continue
        try:
            interface = ipaddress.ip_interface(word)
        except ValueError:
            interface = None
        if interface is not None:
            if address is not None:
                raise Invalid(f"ipvlan address given twice ('{address}', '{word}')")
            address = str(interface)
            continue
        if name is not None:
            raise Invalid(f"expects [NAME] [ADDRESS/PREFIX] [bridge|private|vepa], got "
                          f"'{' '.join(map(str, args))}'")
        problem = interface_name_problem(word)
        if problem:
            raise Invalid(f"ipvlan interface name '{word}' {problem}")
        name = word
    return UseIpvlan(name, address, mode or "bridge")


def garp_extra_if(args, ctx) -> GarpExtraIf:
    words = [str(a) for a in args]
    every = "all" in words
    numbers = [w for w in words if w != "all"]
    if len(numbers) != 1 or not numbers[0].isdecimal() or int(numbers[0]) > 86400:
        raise Invalid(f"expects SECONDS (0-86400) and an optional 'all', got "
                      f"'{' '.join(words)}'")
    return GarpExtraIf(int(numbers[0]), every)


def _prefix(args, ctx) -> str:
    name = Word("a name prefix").parse(args, ctx)
    problem = interface_name_problem(name[:IFNAMSIZ - 3] + ".1")   # too long: cut, as keepalived
    if problem:
        raise Invalid(f"'{name}' cannot start an interface name: {problem}")
    return name


_EXTRA_DOC = ("While MASTER, one gratuitous ARP / unsolicited NA every SECONDS on each other "
              "VMAC interface that holds a VIP (use_vmac_addr, or the instance's own with "
              "vmac_xmit_base), so that switches keep the virtual MAC's port; 'all' adds the "
              "VIPs' non-VMAC interfaces. 0 or unset: none.")


def duplicate_names(config: Any) -> list[tuple[Any, str]]:
    """(instance, name) for each use_vmac / use_ipvlan name an earlier instance took."""
    seen: set[str] = set()
    found = []
    for instance in config.vrrp_instances:
        setting = instance.use_vmac or instance.use_ipvlan
        if setting is not None and setting.name:
            if setting.name in seen:
                found.append((instance, setting.name))
            seen.add(setting.name)
    return found


def global_keywords() -> tuple[Kw, ...]:
    return (
        Kw("vmac_prefix", Custom(_prefix, "a name prefix"),
           doc="Default VMAC / ipvlan names are PREFIX.VRID (default prefix: vrrp); a second "
               "one with the same VRID (the other family) is PREFIX6.VRID, then PREFIX1.VRID..."),
        Kw("vmac_addr_prefix", Custom(_prefix, "a name prefix"),
           doc="Prefix of the VMACs that use_vmac_addr makes for VIPs on other interfaces "
               "(default: vmac_prefix)."),
        Kw("vrrp_garp_extra_if", Custom(garp_extra_if, "SECONDS [all]"),
           doc="Default of every instance's garp_extra_if. " + _EXTRA_DOC),
        Kw("vrrp_vmac_garp_intvl", Custom(garp_extra_if, "SECONDS [all]"),
           field="vrrp_garp_extra_if",
           deprecated="vrrp_vmac_garp_intvl is deprecated in keepalived: write "
                      "vrrp_garp_extra_if"),
    )


def instance_keywords() -> tuple[Kw, ...]:
    return (
        Kw("use_vmac", Custom(use_vmac, "[NAME] [MAC]"),
           doc="Hold the VIPs on a macvlan interface (private mode) on top of 'interface' with "
               "the RFC's virtual MAC 00:00:5e:00:01:VRID (IPv6: 00:00:5e:00:02:VRID), or MAC; "
               "adverts and gratuitous ARPs leave from it, so the neighbours' entries never "
               "change on failover. NAME defaults to vmac_prefix.VRID. Made at start (or by "
               "the reload that adds the instance; a leftover of ours is reused, fixed or "
               "replaced), removed on stop and by the reload that removes the instance. Beyond "
               "keepalived, the base gets arp_announce 2 (README: VMAC and ipvlan interfaces)."),
        Kw("vmac_xmit_base", Flag(),
           doc="With use_vmac: send and receive adverts on the base interface (its own MAC) "
               "instead of the VMAC; the VIPs stay on the VMAC."),
        Kw("use_vmac_addr", Flag(),
           doc="With use_vmac: a VIP on another interface (dev) or of the other family gets a "
               "VMAC of its own there too (named vmac_addr_prefix.VRID)."),
        Kw("use_ipvlan", Custom(use_ipvlan, "[NAME] [ADDRESS/PREFIX] [bridge|private|vepa]"),
           doc="Hold the VIPs on an ipvlan (L2) interface on top of 'interface' (it shares the "
               "base's MAC: no virtual MAC); ADDRESS, if given, goes on it and is the source "
               "of the adverts. Mode default bridge."),
        Kw("garp_extra_if", Custom(garp_extra_if, "SECONDS [all]"),
           doc=_EXTRA_DOC + " Default: global vrrp_garp_extra_if."),
        Kw("vmac_garp_intvl", Custom(garp_extra_if, "SECONDS [all]"), field="garp_extra_if",
           deprecated="vmac_garp_intvl is deprecated in keepalived: write garp_extra_if"),
    )


def instance_finish(values: dict, ctx) -> None:
    """keepalived's corrections, said out loud (it logs a config error and goes on)."""
    name = f"vrrp_instance {values['name']}"
    vmac, ipvlan = values.get("use_vmac"), values.get("use_ipvlan")
    if vmac is not None and ipvlan is not None:
        ctx.error(f"{name}: use_vmac and use_ipvlan together; choose one")
    if values.get("vmac_xmit_base") and vmac is None:
        ctx.warn(f"{name}: vmac_xmit_base is only valid with use_vmac; ignored, as in "
                 "keepalived")
        values["vmac_xmit_base"] = False
    if values.get("use_vmac_addr") and vmac is None:
        ctx.warn(f"{name}: use_vmac_addr is only valid with use_vmac; ignored")
        values["use_vmac_addr"] = False
    if vmac is not None and values.get("unicast_peer") and not values.get("vmac_xmit_base"):
        ctx.warn(f"{name}: unicast with use_vmac needs vmac_xmit_base: set, as keepalived does")
        values["vmac_xmit_base"] = True
