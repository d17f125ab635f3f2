"""The nftables backend's runner: applies with ``nft -f`` the scripts nftables_script.py
(NAT, ``table inet director``) and nftables_dr.py (direct routing, ``table netdev
director``) render, both in one transaction; lists the tables back and fingerprints their
objects so that NftablesSync (backends.py) notices a table someone else edited; and reads
what the DR rules need from the host (links()): the interfaces to hook and the device of
the directly connected route to each real server.
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
from collections.abc import Iterable

from .model import State
from .nftables_dr import Links, changes_dr, render_dr
from .nftables_script import Changes, changes, check_name, render

NFT_TIMEOUT = 30.0         # seconds an nft command may take
IP_TIMEOUT = 10.0          # seconds an ip command may take
FAMILIES = ("inet", "netdev")


class NftablesBackend:
    """Programs ``table inet <table>`` and ``table netdev <table>`` with nft; nothing else in
    the ruleset is touched."""

    def __init__(self, table: str = "director", nft: str = "nft", ip: str = "ip"):
        check_name(table)
        self.table = table
        self.nft = nft
        self.ip = ip

    def apply(self, state: State, links: Links = Links()) -> None:
        """Replace the tables with ones implementing state, atomically; OSError on failure."""
        self._run(["-f", "-"], render(state, self.table) + render_dr(state, links, self.table))

    def apply_changes(self, before: State, after: State, links_before: Links = Links(),
                      links_after: Links = Links()) -> Changes:
        """Turn the tables apply(before, links_before) made into apply(after, links_after)'s,
        changing only what differs, in one transaction (changes(), changes_dr()); OSError on
        failure (the tables are unchanged)."""
        nat = changes(before, after, self.table)
        dr = changes_dr(before, after, links_before, links_after, self.table)
        self._run(["-f", "-"], nat.script + dr.script)
        return Changes(nat.script + dr.script, nat.touched | dr.touched, nat.gone | dr.gone)

    def read(self, *options: str, family: str = "inet") -> str:
        """``nft list table <family> <table>``: the kernel's view; "" if there is no table."""
        try:
            return self._run([*options, "list", "table", family, self.table])
        except OSError as exc:
            if "No such file or directory" in str(exc):
                return ""
            raise

    def fingerprint(self, names: Iterable[str] | None = None) -> dict[str, str]:
        """The tables' objects (objects_of()) as listed without counters (-s) and set
        elements (-t), which change with the traffic: equal fingerprints mean nobody edited
        the tables. ``names`` ("chain NAME", "set NAME", "netdev chain NAME") lists only
        those objects, one nft run each (nft 1.0.6 refuses two list commands in one
        script)."""
        if names is None:
            return objects_of(self.read("-s", "-t")) | \
                objects_of(self.read("-s", "-t", family="netdev"), "netdev ")
        found: dict[str, str] = {}
        for name in sorted(names):
            family, prefix = ("netdev", "netdev ") if name.startswith("netdev ") else ("inet", "")
            kind, _, object_name = name.removeprefix(prefix).partition(" ")
            found |= objects_of(self._run(["-s", "-t", "list", kind, family, self.table,
                                           object_name]), prefix)
        return found

    def flush(self) -> None:
        """Delete the tables (idempotent)."""
        self._run(["-f", "-"], "".join(f"add table {family} {self.table}\n"
                                       f"delete table {family} {self.table}\n"
                                       for family in FAMILIES))

    def links(self, addresses: Iterable[str]) -> Links:
        """The interfaces to hook (up, not loopback) and the directly connected device of
        each address (the main routing table's longest match, when it has no gateway);
        OSError if ip fails."""
        addresses = sorted(set(addresses))
        if not addresses:
            return Links()
        interfaces = json.loads(self._ip(["-j", "link", "show"]) or "[]")
        routes = []
        for version in sorted({ipaddress.ip_address(a).version for a in addresses}):
            routes += [(version, route) for route in
                       json.loads(self._ip([f"-{version}", "-j", "route", "show",
                                            "table", "main"]) or "[]")]
        return Links(ingress_devices(interfaces), egress_devices(routes, addresses))

    def _ip(self, args: list[str]) -> str:
        return self._exec([self.ip, *args], None, IP_TIMEOUT)

    def _run(self, args: list[str], script: str | None = None) -> str:
        return self._exec([self.nft, *args], script, NFT_TIMEOUT)

    @staticmethod
    def _exec(argv: list[str], script: str | None, timeout: float) -> str:
        try:
            result = subprocess.run(argv, input=script, capture_output=True, text=True,
                                    timeout=timeout, check=False)
        except subprocess.TimeoutExpired as exc:
            raise OSError(f"{' '.join(argv)}: no answer after {timeout} s") from exc
        if result.returncode != 0:
            raise OSError(f"{' '.join(argv)} exited {result.returncode}: "
                          f"{result.stderr.strip()}")
        return result.stdout


def ingress_devices(interfaces: list[dict]) -> tuple[str, ...]:
    """From ``ip -j link show``: the interfaces that are up and not loopback, sorted."""
    return tuple(sorted(link["ifname"] for link in interfaces
                        if "UP" in link.get("flags", ()) and
                        "LOOPBACK" not in link.get("flags", ())))


def egress_devices(routes: list[tuple[int, dict]],
                   addresses: Iterable[str]) -> tuple[tuple[str, str], ...]:
    """From ``ip -j route show table main`` (per IP version): (address, device) for each
    address whose longest matching route is directly connected (a device, no gateway, no
    multipath; not a blackhole or unreachable route). Policy routing is not consulted."""
    networks = []
    for version, route in routes:
        dst = route.get("dst", "")
        if dst == "default":
            dst = "0.0.0.0/0" if version == 4 else "::/0"
        try:
            network = ipaddress.ip_network(dst, strict=False)
        except ValueError:
            continue
        networks.append((network, route))
    found = []
    for address in sorted(set(addresses)):
        ip = ipaddress.ip_address(address)
        matches = [(network.prefixlen, route) for network, route in networks
                   if network.version == ip.version and ip in network]
        if not matches:
            continue
        _, best = max(matches, key=lambda match: match[0])
        if best.get("gateway") or best.get("via") or best.get("nexthops") or \
                best.get("type", "unicast") != "unicast" or best.get("dev") in (None, "lo"):
            continue
        found.append((address, best["dev"]))
    return tuple(found)


def objects_of(listing: str, prefix: str = "") -> dict[str, str]:
    """An ``nft list`` output of our table split into its objects: "chain NAME" or
    "set NAME" (after ``prefix``: "netdev " for the DR table) -> the object's lines."""
    found: dict[str, str] = {}
    name, lines = None, []
    for line in listing.splitlines():
        if name is None:
            if line.startswith("\t") and not line.startswith("\t\t") and line.endswith("{"):
                name, lines = prefix + line.strip()[:-1].strip(), []
        elif line == "\t}":
            found[name] = "\n".join(lines)
            name = None
        else:
            lines.append(line)
    return found
