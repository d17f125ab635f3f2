"""Connections per real server from the kernel's connection tracking, for the nftables
backend (IPVS keeps its own and /proc/net/ip_vs shows them): what a drain waits for.

/proc/net/nf_conntrack has one line per connection in the reading namespace; after the
DNAT the reply direction comes from the real server, so its second ``src=``/``sport=`` name
the real server and the first ``dst=``/``dport=`` the virtual service. TCP entries
in ESTABLISHED count as active, others (SYN_SENT, TIME_WAIT, ...) and UDP as inactive, as
IPVS counts them.
"""

from __future__ import annotations

import ipaddress

PROC = "/proc/net/nf_conntrack"

Flow = tuple[str, int, str, int]           # service address, port; real server address, port


def parse(text: str) -> dict[Flow, tuple[int, int]]:
    """(service address, service port, real address, real port) -> (active, inactive)."""
    counts: dict[Flow, tuple[int, int]] = {}
    for line in text.splitlines():
        words = line.split()
        if len(words) < 6:
            continue
        fields: dict[str, list[str]] = {}
        for word in words:
            name, sep, value = word.partition("=")
            if sep:
                fields.setdefault(name, []).append(value)
        try:
            flow = (str(ipaddress.ip_address(fields["dst"][0])), int(fields["dport"][0]),
                    str(ipaddress.ip_address(fields["src"][1])), int(fields["sport"][1]))
        except (KeyError, IndexError, ValueError):
            continue                              # ICMP and other portless flows
        active, inactive = counts.get(flow, (0, 0))
        if words[2] == "tcp" and "ESTABLISHED" in words:
            active += 1
        else:
            inactive += 1
        counts[flow] = (active, inactive)
    return counts


def read(path: str = PROC) -> str:
    try:
        with open(path) as handle:
            return handle.read()
    except FileNotFoundError:                 # no nf_conntrack, or built without its /proc
        return ""
