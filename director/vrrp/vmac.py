"""Which VMAC / ipvlan interfaces a configuration asks for, and where each VIP goes: pure
(configuration in, frozen plans out). vmac_links.py makes them in the kernel.

keepalived 2.2.7's rules (vrrp.c create_vmac_name, vrrp_complete_instance, vrrp_vmac.c):
- ``use_vmac``: a macvlan in private mode on the instance's interface, with the virtual MAC
  00:00:5e:00:01:VRID (IPv4) or 00:00:5e:00:02:VRID (IPv6). Private mode is what makes the
  peer's adverts reach us: they come from the same MAC as our own macvlan, and the kernel
  hands a frame whose source is a private macvlan's MAC to that macvlan;
- the default name is PREFIX.VRID (``vmac_prefix``, default ``vrrp``); when an instance of
  this file already took it, IPv4 tries PREFIX1.VRID, PREFIX2.VRID..., IPv6 PREFIX6.VRID first;
  a name too long for the kernel (15 characters) loses the end of its prefix;
- the VIPs of the instance's family on its interface go on the VMAC; the others stay where
  they are, unless ``use_vmac_addr`` gives each such interface / family a VMAC of its own
  (named with ``vmac_addr_prefix``);
- adverts leave from the VMAC (their source MAC is the virtual one, which keeps switches
  pointing at the MASTER), or from the base interface with ``vmac_xmit_base``; an IPv6 VMAC
  that sends adverts gets the base interface's link-local address, their source;
- ``use_ipvlan``: an L2 ipvlan instead (no MAC of its own), with an optional address that is
  also the adverts' source.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from dataclasses import dataclass
from typing import Any

from ..config.blocks.vmac import IFNAMSIZ
from ..config.validate import instance_family

DEFAULT_PREFIX = "vrrp"


@dataclass(frozen=True)
class Link:
    """A VMAC (macvlan) or ipvlan interface an instance needs, as it must be made."""

    name: str
    base: str                       # the interface it sits on
    kind: str                       # "macvlan" or "ipvlan"
    family: int                     # of the VIPs it holds
    mac: str | None = None          # macvlan: the virtual MAC
    mode: str = "private"           # macvlan: private; ipvlan: bridge, private or vepa
    address: str | None = None      # ipvlan: ADDRESS/PREFIX put on it
    link_local: bool = False        # IPv6: the base's link-local address on it (adverts' source)


@dataclass(frozen=True)
class InstanceLinks:
    primary: Link                   # the instance's own: its family's VIPs on its interface
    extra: tuple[Link, ...] = ()    # use_vmac_addr: the other interfaces / family
    xmit_base: bool = False

    @property
    def all(self) -> tuple[Link, ...]:
        return (self.primary, *self.extra)

    @property
    def advert_interface(self) -> str:
        """Where adverts are sent and received."""
        return self.primary.base if self.xmit_base else self.primary.name

    @property
    def source(self) -> str | None:
        """An ipvlan's address is the adverts' source (keepalived's rule)."""
        address = self.primary.address
        return str(ipaddress.ip_interface(address).ip) if address else None

    def place(self, vip: Any, interface: str) -> Any:
        """The VIP with ``dev`` set to the VMAC that holds it (unchanged when none does)."""
        dev = vip.dev or interface
        for link in self.all:
            if link.base == dev and link.family == vip.family:
                return dataclasses.replace(vip, dev=link.name)
        return vip


def virtual_mac(family: int, vrid: int, configured: str | None = None) -> str:
    """RFC 5798 7.3, or use_vmac's MAC (one ending in ':' takes the vrid as its last octet)."""
    if configured:
        return configured + f"{vrid:02x}" if configured.endswith(":") else configured
    return f"00:00:5e:00:{1 if family == 4 else 2:02x}:{vrid:02x}"


def _fit(prefix: str, suffix: str) -> str:
    room = IFNAMSIZ - 1 - len(suffix)
    return prefix[:room] + suffix


def _candidates(prefix: str, vrid: int, family: int):
    """keepalived's order of default names (create_vmac_name), bounded."""
    yield _fit(prefix, f".{vrid}")
    numbers = [6, 1, 2, 3, 4, 5] + list(range(7, 100)) if family == 6 else range(1, 100)
    for number in numbers:
        yield _fit(prefix, f"{number}.{vrid}")


def plan(config: Any) -> dict[str, InstanceLinks]:
    """Instance name -> its links, for the instances that use_vmac or use_ipvlan. Names the
    file gives are taken first (a name given twice: the later instance falls back to a
    default, as in keepalived, and -t says so); defaults follow in the file's order."""
    defs = config.global_defs
    prefix = defs.vmac_prefix or DEFAULT_PREFIX
    addr_prefix = defs.vmac_addr_prefix or prefix
    users = [i for i in config.vrrp_instances
             if (i.use_vmac is not None or i.use_ipvlan is not None) and i.interface]
    taken: set[str] = set()
    named: dict[str, str] = {}
    for instance in users:
        given = (instance.use_vmac or instance.use_ipvlan).name
        if given and given not in taken:
            taken.add(given)
            named[instance.name] = given

    def fresh(base_prefix: str, vrid: int, family: int) -> str:
        for name in _candidates(base_prefix, vrid, family):
            if name not in taken:
                taken.add(name)
                return name
        raise ValueError(f"no free VMAC name for {base_prefix} vrid {vrid}")

    plans = {}
    for instance in users:
        vrid, family = instance.virtual_router_id, instance_family(instance)
        name = named.get(instance.name) or fresh(prefix, vrid, family)
        vmac, ipvlan = instance.use_vmac, instance.use_ipvlan
        if vmac is not None:
            primary = Link(name, instance.interface, "macvlan", family,
                           mac=virtual_mac(family, vrid, vmac.mac),
                           link_local=family == 6 and not instance.vmac_xmit_base)
        else:
            primary = Link(name, instance.interface, "ipvlan", family, mode=ipvlan.mode,
                           address=ipvlan.address)
        extra: list[Link] = []
        if vmac is not None and instance.use_vmac_addr:
            seen = {(primary.base, primary.family)}
            for vip in instance.virtual_ipaddress + instance.virtual_ipaddress_excluded:
                key = (vip.dev or instance.interface, vip.family)
                if key not in seen:
                    seen.add(key)
                    # keepalived gives an IPv6 one the base's link-local address too
                    extra.append(Link(fresh(addr_prefix, vrid, vip.family), key[0], "macvlan",
                                      vip.family, mac=virtual_mac(vip.family, vrid, vmac.mac),
                                      link_local=vip.family == 6))
        plans[instance.name] = InstanceLinks(primary, tuple(extra),
                                             bool(instance.vmac_xmit_base))
    return plans


def extra_garp_interfaces(vips: tuple, interface: str, advert_interface: str,
                          vmac_names: set[str], every: bool) -> dict[str, str]:
    """garp_extra_if: interface -> the VIP (placed: dev set) to announce there, one per
    interface, as keepalived's vrrp_send_vmac_update does: the VIPs' VMAC interfaces other
    than the one adverts already refresh, and with ``all`` their other interfaces too.
    ``interface``: where a VIP without ``dev`` is."""
    chosen: dict[str, str] = {}
    for vip in vips:
        dev = vip.dev or interface
        if dev == advert_interface or dev in chosen:
            continue
        if dev in vmac_names or every:
            chosen[dev] = vip.address.split("/")[0]
    return chosen
