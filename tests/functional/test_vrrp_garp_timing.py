"""Gratuitous ARP / unsolicited NA timings, ours beside Debian's keepalived 2.2.7 (issue 14,
part G): the same global_defs (vrrp_garp_master_delay / _repeat / _refresh,
vrrp_garp_interval, vrrp_gna_interval, and vrrp_min_garp) on two hosts that become MASTER
at the same time on one bridge; tshark on a third host records every frame; per sender,
the frames are cut into sets (a gap of more than a second) and compared: the same number of
GARPs and of NAs in each set, the same spacing within a set (within SPACING_SLACK) and the
same time between sets (within SET_SLACK).

keepalived paces per interface: garp_interval / gna_interval is the least time between two
frames of a kind, and an address waits at most once, so a paced repeat collapses (repeat 2
over two IPv4 addresses is 3 GARPs, not 4). The measured figures are in the failure
message, and printed with -s. Both speak VRRPv3 every 0.2 s (FAST_INTERVAL): each becomes MASTER
~0.7 s after its start, not ~3.4 s.
"""

from __future__ import annotations

import shutil
import time

import pytest

from tests.functional.lab import start_keepalived, wait_for
from tests.functional.test_vrrp_failover import FAST_INTERVAL, start_director

pytestmark = [pytest.mark.netns, pytest.mark.slow, pytest.mark.timeout(120)]

V4 = ("192.0.2.100", "192.0.2.101")
V6 = ("2001:db8::100", "2001:db8::101")
SPACING_SLACK = 0.1       # seconds, per gap between two frames of a set
SET_SLACK = 0.3           # seconds, between the starts of two sets
SET_GAP = 1.0             # frames further apart than this are two sets


def config(vrid: int, global_defs: str, top: str = "") -> str:
    v4 = "".join(f"        {a}/24\n" for a in V4)
    v6 = "".join(f"        {a}/64\n" for a in V6)
    return (f"global_defs {{\n{global_defs}}}\n{top}"
            f"vrrp_instance VI_{vrid} {{\n    interface eth0\n    virtual_router_id {vrid}\n"
            f"    priority 150\n    advert_int {FAST_INTERVAL}\n    version 3\n"
            f"    virtual_ipaddress {{\n{v4}    }}\n"
            f"    virtual_ipaddress_excluded {{\n{v6}    }}\n}}\n")


class Frames:
    """tshark on a host: (epoch, kind, address) of every GARP and NA, per source MAC."""

    def __init__(self, lab, host):
        self.lab = lab
        self.proc = host.popen(["tshark", "-i", "eth0", "-l", "-n", "-f",
                                "arp or (icmp6 and ip6[40] == 136)", "-T", "fields",
                                "-E", "separator=,", "-e", "frame.time_epoch",
                                "-e", "eth.src", "-e", "arp.dst.proto_ipv4",
                                "-e", "icmpv6.nd.na.target_address"])
        wait_for(lambda: "Capturing on" in lab.log_of(self.proc), 20,
                 message=lambda: lab.log_of(self.proc))

    def of(self, mac: str) -> list[tuple[float, str, str]]:
        found = []
        for line in self.lab.log_of(self.proc).splitlines():
            fields = line.strip().split(",")
            if len(fields) == 4 and fields[1] == mac:
                kind, address = ("arp", fields[2]) if fields[2] else ("na", fields[3])
                if address in V4 + V6:
                    found.append((float(fields[0]), kind, address))
        return found


def sets(frames) -> list[list[tuple[float, str, str]]]:
    out: list[list] = []
    for frame in sorted(frames):
        if out and frame[0] - out[-1][-1][0] <= SET_GAP:
            out[-1].append(frame)
        else:
            out.append([frame])
    return out


def shape(frames) -> list[dict]:
    """Per set: its start (from the first set's), the count of each kind, and the gaps
    between consecutive frames of each kind."""
    found = sets(frames)
    start = found[0][0][0] if found else 0.0
    out = []
    for group in found:
        entry = {"at": round(group[0][0] - start, 3)}
        for kind in ("arp", "na"):
            times = [t for t, k, _ in group if k == kind]
            entry[kind] = len(times)
            entry[f"{kind}_gaps"] = [round(b - a, 3) for a, b in zip(times, times[1:])]
        out.append(entry)
    return out


def same(ours: list[dict], theirs: list[dict]) -> bool:
    if len(ours) != len(theirs):
        return False
    for mine, other in zip(ours, theirs):
        if (mine["arp"], mine["na"]) != (other["arp"], other["na"]):
            return False
        if abs(mine["at"] - other["at"]) > SET_SLACK:
            return False
        for kind in ("arp_gaps", "na_gaps"):
            if any(abs(p - q) > SPACING_SLACK for p, q in zip(mine[kind], other[kind])):
                return False
    return True


CASES = {
    # paced: repeat 2 over two addresses of a kind -> 3 frames a set, an interval apart
    "paced": ("    vrrp_garp_master_delay 2\n    vrrp_garp_master_repeat 2\n"
              "    vrrp_garp_interval 0.3\n    vrrp_gna_interval 0.2\n", "", 2, (3, 3)),
    # garp_group: the interface's own intervals win over the global ones
    "garp_group": ("    vrrp_garp_master_delay 2\n    vrrp_garp_master_repeat 2\n"
                   "    vrrp_garp_interval 1.5\n",
                   "garp_group {\n    garp_interval 0.25\n    gna_interval 0.15\n"
                   "    interface eth0\n}\n", 2, (3, 3)),
    # vrrp_min_garp: one frame per address, once
    "min_garp": ("    vrrp_min_garp\n", "", 1, (2, 2)),
    # unpaced: repeat 3 at once, twice
    "unpaced": ("    vrrp_garp_master_delay 1\n    vrrp_garp_master_repeat 3\n", "", 2,
                (6, 6)),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_garp_and_na_timings_match_keepalived(lab, case):
    if shutil.which("tshark") is None:
        pytest.skip("tshark is not installed")
    global_defs, top, set_count, per_set = CASES[case]
    switch = lab.switch()
    ours_host = lab.host("o", [(switch, "eth0", ["192.0.2.1/24", "2001:db8::1/64"])])
    theirs_host = lab.host("k", [(switch, "eth0", ["192.0.2.2/24", "2001:db8::2/64"])])
    watcher = lab.host("x", [(switch, "eth0", ["192.0.2.66/24"])])
    frames = Frames(lab, watcher)
    ours = start_director(lab, ours_host, config(51, global_defs, top), "o")
    theirs = start_keepalived(theirs_host, config(52, global_defs, top))
    mine, other = ours_host.mac("eth0"), theirs_host.mac("eth0")
    wanted = set_count * sum(per_set)
    # every set has come, and a quiet second after it (nothing more was going to come)
    wait_for(lambda: len(frames.of(mine)) >= wanted and len(frames.of(other)) >= wanted,
             20, message=lambda: f"ours {shape(frames.of(mine))}\n"
                                 f"keepalived {shape(frames.of(other))}\n"
                                 f"{lab.log_of(ours)}\n{lab.log_of(theirs)}")
    # then a quiet 1.5 s: nothing more was going to come (garp_master_refresh is 0)
    wait_for(lambda: time.time() - max(t for t, _, _ in frames.of(mine) + frames.of(other))
             > 1.5, 6, interval=0.1)
    measured = {"ours": shape(frames.of(mine)), "keepalived": shape(frames.of(other))}
    print(case, measured)
    theirs_shape = measured["keepalived"]
    assert [(s["arp"], s["na"]) for s in theirs_shape] == [per_set] * set_count, measured
    assert same(measured["ours"], theirs_shape), measured
