"""The VMAC / ipvlan interfaces in the kernel (plans from vmac.py), and the sysctls keepalived
sets for them (vrrp_if_config.c):

- on an IPv4 VMAC: arp_ignore=1 (answer ARP only for its own addresses), accept_local=1 (the
  peer's adverts come from the same MAC), rp_filter=0, promote_secondaries=1;
- on its base interface: arp_ignore=1 and arp_filter=1, so that the base does not answer ARP
  for a VIP with its own MAC; and, beyond keepalived, arp_announce=2: the base then asks for a
  neighbour (the client a VIP answers) in its own name, where it would name the VIP and move
  every neighbour's entry for the VIP to the base's MAC (keepalived 2.2.7 does, seen in
  tests/functional/test_vrrp_vmac.py); the values found are put back when its last VMAC goes;
- net.ipv4.conf.all.rp_filter, when set, would override the VMAC's 0: it is cleared and each
  interface's own rp_filter raised to the old value, so that nothing else changes; restored
  when the last VMAC goes;
- IPv6: no link-local address generated from the virtual MAC (addr_gen_mode none: both routers
  would own the same one, RFC 5798 7.4); an IPv4 VMAC has IPv6 off.

Idempotent: a leftover of a crashed run with the right kind, base and MAC is reused; one that
differs is replaced; an interface of that name that is no macvlan / ipvlan is never touched
(an error). Netlink calls hold the Addresses lock (pyroute2's loop is not re-entrant).
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import subprocess
from pathlib import Path

from ..log import event
from .addresses import IFA_F_NODAD, Addresses, netlink_error
from .vmac import Link

log = logging.getLogger("director.vrrp.vmac")

MACVLAN_MODE_PRIVATE = 1
IFF_UP = 0x1
SYS_NET = "/sys/class/net"
VMAC_SYSCTLS = (("arp_ignore", 1), ("accept_local", 1), ("rp_filter", 0),
                ("promote_secondaries", 1))
BASE_SYSCTLS = (("arp_ignore", 1), ("arp_filter", 1), ("arp_announce", 2))


def eui64_link_local(mac: str) -> str:
    octets = [int(o, 16) for o in mac.split(":")]
    octets[0] ^= 0x02
    interface_id = octets[:3] + [0xFF, 0xFE] + octets[3:]
    return str(ipaddress.IPv6Address(b"\xfe\x80" + b"\0" * 6 + bytes(interface_id)))


def link_state(name: str) -> tuple[str | None, bool]:
    """(MAC, up) of an interface now, from /sys (no netlink: the dashboard asks often);
    (None, False) when it does not exist."""
    try:
        mac = Path(SYS_NET, name, "address").read_text().strip()
        flags = int(Path(SYS_NET, name, "flags").read_text().strip(), 16)
    except (OSError, ValueError):
        return None, False
    return mac, bool(flags & IFF_UP)


class VmacLinks:
    """Constructing one touches nothing; ``ensure`` and ``remove`` do the I/O."""

    def __init__(self, addresses: Addresses, proc_sys: str = "/proc/sys") -> None:
        self.addresses = addresses
        self.proc_sys = Path(proc_sys)
        self.owned: dict[str, Link] = {}
        self._base_saved: dict[str, dict[str, int]] = {}
        self._rp_filter_all: int | None = None

    # -- sysctls ------------------------------------------------------------------------

    def _conf(self, family: int, ifname: str, key: str) -> Path:
        return self.proc_sys / "net" / f"ipv{family}" / "conf" / ifname / key

    def _get(self, path: Path) -> int | None:
        try:
            return int(path.read_text().strip())
        except (OSError, ValueError):
            return None

    def _set(self, path: Path, value: int) -> None:
        try:
            path.write_text(f"{value}\n")
        except OSError as exc:
            event(log, "vrrp.vmac_sysctl_error", logging.WARNING, path=str(path), error=exc)

    def _ipv4_sysctls(self, link: Link) -> None:
        all_rp = self._get(self._conf(4, "all", "rp_filter"))
        if all_rp and self._rp_filter_all is None:
            for conf in (self.proc_sys / "net/ipv4/conf").iterdir():
                own = self._get(conf / "rp_filter")
                if conf.name not in ("all", "default") and own is not None and own < all_rp:
                    self._set(conf / "rp_filter", all_rp)
            self._set(self._conf(4, "all", "rp_filter"), 0)
            self._rp_filter_all = all_rp
        for key, value in VMAC_SYSCTLS:
            self._set(self._conf(4, link.name, key), value)
        if link.base not in self._base_saved:
            saved = {key: self._get(self._conf(4, link.base, key)) for key, _ in BASE_SYSCTLS}
            self._base_saved[link.base] = {k: v for k, v in saved.items() if v is not None}
            for key, value in BASE_SYSCTLS:
                self._set(self._conf(4, link.base, key), value)

    def _release_sysctls(self) -> None:
        """Put back what no remaining IPv4 VMAC needs."""
        bases = {link.base for link in self.owned.values()
                 if link.kind == "macvlan" and link.family == 4}
        for base in [b for b in self._base_saved if b not in bases]:
            for key, value in self._base_saved.pop(base).items():
                self._set(self._conf(4, base, key), value)
        if not bases and self._rp_filter_all is not None:
            self._set(self._conf(4, "all", "rp_filter"), self._rp_filter_all)
            self._rp_filter_all = None

    # -- links ----------------------------------------------------------------------------

    def stale(self, link: Link) -> bool:
        """Whether an interface named ``link.name`` exists and differs from ``link`` (ensure
        would replace it). Raises OSError as ensure does: a missing base, an interface of
        that name that is no macvlan or ipvlan."""
        with self.addresses.lock:
            base = self._index(link.base)
            if base is None:
                raise OSError(errno.ENODEV, f"{link.name}: base interface {link.base} does "
                                            f"not exist")
            index = self._index(link.name)
            return index is not None and not self._matches(index, link, base)

    def ensure(self, link: Link, restore: bool = False) -> bool:
        """Make ``link`` exist as planned, up, with its sysctls and addresses. True when it
        made (or replaced) the interface, False when one of ours was already right.
        ``restore`` (the guard remaking a deleted VMAC): only while ``link`` is still what we
        own and still missing, decided under the lock, for a reload's prepare may be
        replacing it with a new MAC at this moment (the guard saw it gone between the delete
        and the create, and would put the old MAC back). Raises OSError naming the interface."""
        with self.addresses.lock:
            if restore and (self.owned.get(link.name) != link or
                            self._index(link.name) is not None):
                return False
            ipr = self.addresses.ipr
            base = self._index(link.base)
            if base is None:
                raise OSError(errno.ENODEV, f"{link.name}: base interface {link.base} does "
                                            f"not exist")
            index = self._index(link.name)
            if index is not None and not self._matches(index, link, base):
                event(log, "vrrp.vmac_replaced", interface=link.name)
                self._call(ipr.link, "del", index=index)
                index = None
            made = index is None
            if made:
                self._create(link, base)
                index = self._index(link.name)
                if index is None:
                    raise OSError(errno.ENODEV, f"{link.name}: made but not found")
            ipv6 = (self.proc_sys / "net/ipv6").is_dir()
            if ipv6 and link.kind == "macvlan":
                self._set(self._conf(6, link.name, "addr_gen_mode"), 1)
                self._set(self._conf(6, link.name, "disable_ipv6"), int(link.family == 4))
            if link.family == 4 and link.kind == "macvlan":
                self._ipv4_sysctls(link)
            self._call(ipr.link, "set", index=index, state="up")
            for address in self._addresses_of(link):
                interface = ipaddress.ip_interface(address)
                flags = IFA_F_NODAD if interface.version == 6 else 0
                try:
                    ipr.addr("add", index=index, address=str(interface.ip),
                             prefixlen=interface.network.prefixlen, flags=flags)
                except netlink_error() as exc:
                    if exc.code != errno.EEXIST:
                        raise OSError(exc.code, f"{link.name}: add {address}: {exc}") from exc
        self.owned[link.name] = link
        event(log, "vrrp.vmac_up", interface=link.name, kind=link.kind, base=link.base,
              mac=link.mac, reused=not made)
        return made

    def _addresses_of(self, link: Link) -> list[str]:
        if link.address:
            return [link.address]
        if not link.link_local:
            return []
        base_ll = self.addresses.primary_address(link.base, 6)
        if base_ll is None:
            base_ll = eui64_link_local(link_state(link.base)[0] or "00:00:00:00:00:00")
        return [f"{base_ll}/64"]

    def _index(self, name: str) -> int | None:
        found = self.addresses.ipr.link_lookup(ifname=name)
        return found[0] if found else None

    def _matches(self, index: int, link: Link, base: int) -> bool:
        message = self._call(self.addresses.ipr.get_links, index)[0]
        info = message.get_attr("IFLA_LINKINFO")
        kind = info.get_attr("IFLA_INFO_KIND") if info is not None else None
        if kind not in ("macvlan", "ipvlan"):
            raise OSError(errno.EEXIST, f"interface {link.name} exists and is no macvlan or "
                                        f"ipvlan: director does not replace it")
        if kind != link.kind or message.get_attr("IFLA_LINK") != base:
            return False
        if kind == "ipvlan":
            return True
        data = info.get_attr("IFLA_INFO_DATA")
        mode = data.get_attr("IFLA_MACVLAN_MODE") if data is not None else None
        return (message.get_attr("IFLA_ADDRESS") or "").lower() == link.mac and \
            mode == MACVLAN_MODE_PRIVATE

    def _create(self, link: Link, base: int) -> None:
        if link.kind == "macvlan":
            self._call(self.addresses.ipr.link, "add", ifname=link.name, kind="macvlan",
                       link=base, macvlan_mode="private", address=link.mac)
            return
        # pyroute2 has no IFLA_IPVLAN_FLAGS (private, vepa): iproute2 makes it
        done = subprocess.run(["ip", "link", "add", link.name, "link", link.base, "type",
                               "ipvlan", "mode", "l2", link.mode], capture_output=True,
                              text=True, timeout=10, check=False)
        if done.returncode != 0:
            raise OSError(errno.EOPNOTSUPP, f"{link.name}: ipvlan not made: "
                                            f"{done.stderr.strip() or done.returncode}")

    @staticmethod
    def _call(function, *args, **kwargs):
        try:
            return function(*args, **kwargs)
        except netlink_error() as exc:
            raise OSError(exc.code, f"{exc}") from exc

    def remove(self, name: str) -> None:
        """Delete one of ours (gone already is fine); failures are logged, not raised: a
        stop or a reload goes on."""
        self.owned.pop(name, None)
        with self.addresses.lock:
            try:
                index = self._index(name)
                if index is not None:
                    self._call(self.addresses.ipr.link, "del", index=index)
                event(log, "vrrp.vmac_removed", interface=name)
            except OSError as exc:
                event(log, "vrrp.vmac_error", logging.ERROR, interface=name, action="remove",
                      error=exc)
        self._release_sysctls()

    def keep_only(self, wanted: set[str]) -> None:
        for name in [n for n in self.owned if n not in wanted]:
            self.remove(name)
