"""Accept mode off (no_accept, strict mode): while a MASTER below priority 255 holds its
VIPs, packets to them (and from them) are dropped, with nftables, in tables of VRRP's own
(not the load balancer's ``inet director``), laid out as keepalived 2.2.7's
vrrp_nftables.c lays out its own so that ``nft list`` reads the same on both daemons:

    table ip TABLE   { set vips; chain in  (hook input,  priority P): ip daddr @vips drop
                                 chain out (hook output, priority P): ip saddr @vips drop }
    table ip6 TABLE  { the same with ip6, after "icmpv6 type @neighbor-discovery accept"
                       (neighbour solicitations and adverts still pass: the VIP must stay
                       resolvable) and link-local VIPs in sets keyed by address and
                       interface (vips_link_local: index, vips_link_local_name: name) }

ARP is not IP and VRRP adverts leave from the primary address: neither is touched.

The rules are pure text (``install_script``, ``change_script``); ``Firewall`` runs them with
nft at the edges: the tables made (with their elements) when the configuration needs them, at
start or in a reload's prepare (a failure there is a start-up error, or a refused reload);
elements added before an instance adds its VIPs and deleted after it removed them (a failure
then is counted and the next change re-installs everything); the tables deleted on stop.
"""

from __future__ import annotations

import ipaddress
import logging
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..config.strict import DEFAULT_TABLE, FirewallSettings, blocks
from ..config.validate import effective_version
from ..log import event as log_event

if TYPE_CHECKING:
    from ..state import FirewallView

log = logging.getLogger("director.vrrp")

NFT_TIMEOUT = 10.0        # seconds an nft command may take


class FirewallError(OSError):
    """nft failed (missing, no nf_tables in the kernel, refused the script)."""


@dataclass(frozen=True, order=True)
class Blocked:
    """One address dropped while its instance is MASTER."""

    family: int
    address: str                   # no prefix length
    interface: str | None = None   # link-local IPv6 only: the interface it is on
    by_name: bool = False          # link-local keyed by interface name, not index

    def set_name(self) -> str:
        if self.interface is None:
            return "vips"
        return "vips_link_local_name" if self.by_name else "vips_link_local"

    def element(self) -> str:
        if self.interface is None:
            return self.address
        return f'{self.address} . "{self.interface}"'


def blocked_of(instance: Any, ifindex: bool) -> frozenset[Blocked]:
    """The VIPs and eVIPs of an instance's configuration. A link-local IPv6 VIP is keyed by
    its interface's name when the instance has dont_track_primary and nftables_ifindex is
    not set (keepalived's rule), by its index otherwise."""
    found = set()
    for vip in instance.virtual_ipaddress + instance.virtual_ipaddress_excluded:
        address = vip.address.split("/")[0]
        if vip.family == 6 and ipaddress.ip_address(address).is_link_local:
            found.add(Blocked(6, address, vip.dev or instance.interface,
                              instance.dont_track_primary and not ifindex))
        else:
            found.add(Blocked(vip.family, address))
    return frozenset(found)


def settings(config: Any) -> FirewallSettings | None:
    """The tables a configuration needs, or None when no instance drops its VIPs' traffic
    (keepalived makes them only then, whatever nftables says)."""
    defs = config.global_defs
    dropping = [instance for instance in config.vrrp_instances
                if blocks(instance, defs, effective_version(instance, defs))]
    if not dropping:
        return None
    blocked = [item for instance in dropping
               for item in blocked_of(instance, defs.nftables_ifindex)]
    return FirewallSettings(defs.nftables or DEFAULT_TABLE, defs.nftables_priority,
                            defs.nftables_counters, defs.nftables_ifindex,
                            tuple(sorted({item.family for item in blocked} or {4})),
                            tuple(sorted({item.set_name() for item in blocked
                                          if item.interface is not None})))


_FAMILY = {4: "ip", 6: "ip6"}


def _elements(blocked: Iterable[Blocked], family: int, set_name: str) -> list[str]:
    return sorted(b.element() for b in blocked if b.family == family and
                  b.set_name() == set_name)


def _table(settings: FirewallSettings, family: int, blocked: Iterable[Blocked]) -> list[str]:
    """One family's table, its objects in keepalived's order (nft lists them so)."""
    blocked = list(blocked)
    counter = "counter " if settings.counters else ""
    ip = _FAMILY[family]
    hook = f"priority {settings.priority}; policy accept;"
    lines = [f"table {ip} {settings.table} {{"]

    def add_set(name: str, kind: str) -> None:
        elements = _elements(blocked, family, name)
        lines.append(f"\tset {name} {{ type {kind};" +
                     (f" elements = {{ {', '.join(elements)} }}" if elements else "") + " }")

    if family == 4:
        add_set("vips", "ipv4_addr")
        for chain, hook_name, address in (("out", "output", "saddr"), ("in", "input", "daddr")):
            lines += [f"\tchain {chain} {{ type filter hook {hook_name} {hook}",
                      f"\t\tip {address} @vips {counter}drop", "\t}"]
    else:
        add_set("vips", "ipv6_addr")
        lines.append("\tset neighbor-discovery { type icmpv6_type; flags constant; "
                     "elements = { nd-neighbor-solicit, nd-neighbor-advert } }")
        for name, kind in (("vips_link_local", "ipv6_addr . iface_index"),
                           ("vips_link_local_name", "ipv6_addr . ifname")):
            if name in settings.link_local:
                add_set(name, kind)
        directions = (("out", "output", "saddr", "oif"), ("in", "input", "daddr", "iif"))
        for chain, hook_name, address, _ in directions:
            lines += [f"\tchain {chain} {{ type filter hook {hook_name} {hook}",
                      f"\t\ticmpv6 type @neighbor-discovery {counter}accept",
                      f"\t\tip6 {address} fe80::/10 {counter}goto {chain}_link_local",
                      f"\t\tip6 {address} @vips {counter}drop", "\t}"]
        for chain, _, address, interface in reversed(directions):
            lines.append(f"\tchain {chain}_link_local {{")
            lines += [f"\t\tip6 {address} . {interface}{suffix} @{name} {counter}drop"
                      for name, suffix in (("vips_link_local", ""),
                                           ("vips_link_local_name", "name"))
                      if name in settings.link_local]
            lines.append("\t}")
    lines.append("}")
    return lines


def _drop(table: str, family: int) -> list[str]:
    """Delete a table whether or not it exists (nft: add first, so the delete cannot fail)."""
    ip = _FAMILY[family]
    return [f"add table {ip} {table}", f"delete table {ip} {table}"]


def install_script(settings: FirewallSettings | None, blocked: Iterable[Blocked],
                   previous: FirewallSettings | None = None) -> str:
    """One nft transaction: the tables ``previous`` made gone, ``settings``' tables made
    whole (replacing any of the same name: a crash's leftovers) with ``blocked`` in them."""
    lines: list[str] = []
    if previous is not None:
        for family in previous.families:
            lines += _drop(previous.table, family)
    if settings is not None:
        blocked = list(blocked)
        for family in settings.families:
            lines += _drop(settings.table, family) + _table(settings, family, blocked)
    return "\n".join(lines) + "\n" if lines else ""


def change_script(settings: FirewallSettings, before: frozenset[Blocked],
                  after: frozenset[Blocked]) -> str:
    """Elements added and deleted, one transaction ("" when nothing changes)."""
    lines = []
    for verb, items in (("delete", before - after), ("add", after - before)):
        groups: dict[tuple[int, str], list[str]] = {}
        for item in sorted(items):
            groups.setdefault((item.family, item.set_name()), []).append(item.element())
        for (family, set_name), elements in sorted(groups.items()):
            lines.append(f"{verb} element {_FAMILY[family]} {settings.table} {set_name} "
                         f"{{ {', '.join(elements)} }}")
    return "\n".join(lines) + "\n" if lines else ""


def run_nft(script: str, nft: str = "nft") -> None:
    try:
        result = subprocess.run([nft, "-f", "-"], input=script, capture_output=True,
                                text=True, timeout=NFT_TIMEOUT, check=False)
    except subprocess.TimeoutExpired:
        raise FirewallError(f"{nft}: no answer after {NFT_TIMEOUT} s") from None
    except OSError as exc:
        raise FirewallError(f"{nft}: {exc.strerror or exc}") from None
    if result.returncode != 0:
        raise FirewallError(f"{nft} exited {result.returncode}: {result.stderr.strip()}")


class Firewall:
    """The tables of one daemon. ``blocked`` is what should be dropped (per instance);
    ``in_step`` whether the kernel was last seen to hold exactly that."""

    def __init__(self, nft: str = "nft") -> None:
        self.nft = nft
        self.settings: FirewallSettings | None = None
        self.blocked: dict[str, frozenset[Blocked]] = {}
        self.in_step = True
        self.errors = 0
        self.last_error: str | None = None

    def all_blocked(self) -> frozenset[Blocked]:
        return frozenset().union(*self.blocked.values())

    def install(self, settings: FirewallSettings | None) -> None:
        """Make the tables ``settings`` asks for (deleting the previous ones): at start and
        in a reload's prepare. FirewallError on failure, with nothing changed."""
        if settings == self.settings and self.in_step:
            return
        script = install_script(settings, self.all_blocked(), self.settings)
        if script:
            run_nft(script, self.nft)
        log_event(log, "vrrp.firewall", table=settings.table if settings else None,
                  families=",".join(_FAMILY[f] for f in settings.families) if settings
                  else "", priority=settings.priority if settings else None)
        self.settings, self.in_step = settings, True

    def block(self, instance: Any) -> None:
        """Before ``instance`` adds its VIPs (MASTER): drop what is sent to them, unless it
        accepts (owner, accept mode)."""
        if self.settings is None or not blocks(instance.config, instance.global_defs,
                                               instance.version):
            if instance.name in self.blocked:   # a reload turned accept on, MASTER kept
                self.unblock(instance)
            return
        self._change(instance.name, blocked_of(instance.config, self.settings.ifindex))

    def unblock(self, instance: Any) -> None:
        """After ``instance`` removed its VIPs."""
        if instance.name in self.blocked:
            self._change(instance.name, frozenset())

    def _change(self, name: str, wanted: frozenset[Blocked]) -> None:
        before = self.all_blocked()
        if wanted:
            self.blocked[name] = wanted
        else:
            self.blocked.pop(name, None)
        after = self.all_blocked()
        if self.settings is None:           # the tables went in a reload's prepare
            return
        try:
            if not self.in_step:            # an earlier change failed: all of it again
                run_nft(install_script(self.settings, after), self.nft)
            elif before != after:
                run_nft(change_script(self.settings, before, after), self.nft)
            self.in_step = True
        except FirewallError as exc:
            self.in_step = False
            self.errors += 1
            self.last_error = str(exc)
            log_event(log, "vrrp.firewall_error", logging.ERROR, instance=name, error=exc)

    def stop(self) -> None:
        """Delete the tables (on stop); an error is logged, nothing more can be done."""
        try:
            self.blocked.clear()
            self.install(None)
        except FirewallError as exc:
            self.errors += 1
            self.last_error = str(exc)
            log_event(log, "vrrp.firewall_error", logging.ERROR, action="stop", error=exc)

    def snapshot(self) -> FirewallView | None:
        from ..state import FirewallView, frozen
        if self.settings is None and not self.errors:
            return None
        settings = self.settings
        return FirewallView(
            table=settings.table if settings else None,
            families=tuple(_FAMILY[f] for f in settings.families) if settings else (),
            priority=settings.priority if settings else None,
            blocked=tuple(sorted(b.element() for b in self.all_blocked())),
            by_instance=frozen({name: tuple(sorted(b.element() for b in items))
                                for name, items in sorted(self.blocked.items())}),
            in_step=self.in_step, errors=self.errors, last_error=self.last_error)

