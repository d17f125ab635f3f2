"""Split brain that heals (issue 13): two routers on one bridge with a client, the bridge cuts
the two routers apart (nftables in the switch's namespace, both directions, every frame) while
the client still reaches both. Each becomes MASTER; the client's neighbour entry for the VIP
is left pointing at the one that will lose. Then the cut is removed and:

* exactly one MASTER remains within one master_down_interval (the VIP on one side only,
  read with `ip addr` on both);
* the client's `ip neigh` shows the survivor's MAC within 1 s of the heal, with no traffic
  from the client: only a gratuitous ARP / unsolicited NA can have changed it.

Directors of ours on both sides, and Debian's keepalived on either side, IPv4 and IPv6.
Bounds are the protocol's; waits have deadlines, nothing sleeps for a fixed time.
"""

from __future__ import annotations

import shutil
import sys
import time

import pytest

from director.demo.netlab import _run
from director.vrrp.packet import AUTH_PASS, Advert, encode, pass_auth_data
from tests.functional.lab import start_keepalived, wait_for
from tests.functional.test_vrrp_failover import down_interval, start_director, stats, vrrp_config

pytestmark = [pytest.mark.netns, pytest.mark.slow, pytest.mark.timeout(120)]

VIPS = {4: "192.0.2.100", 6: "2001:db8::100"}
HEAL_TO_CLIENT = 1.0          # the claim: the client's cache follows within 1 s of the heal
GARP_MASTER_DELAY = 5         # keepalived's default, and ours
FAKE_MAC = "02:00:00:00:00:01"


class Partition:
    """Cut every frame between two hosts' bridge ports (both ways) with an nftables bridge
    table in the switch's namespace; the client's port is untouched."""

    def __init__(self, switch, a, b):
        self.switch = switch
        self.ports = (switch.port(a, "eth0"), switch.port(b, "eth0"))
        self.table = "partition"

    def cut(self):
        one, other = self.ports
        rules = (f"table bridge {self.table} {{\n"
                 "  chain forward {\n    type filter hook forward priority 0; policy accept;\n"
                 f'    iifname "{one}" oifname "{other}" drop\n'
                 f'    iifname "{other}" oifname "{one}" drop\n  }}\n}}\n')
        _nft(self.switch, ["-f", "-"], rules)

    def heal(self):
        _nft(self.switch, ["delete", "table", "bridge", self.table])


def _nft(switch, args, stdin=None):
    _run(["ip", "netns", "exec", switch.ns, "nft", *args], input=stdin)


def build(lab, a_number=1):
    """Switch, survivor a (192.0.2.<a_number>), loser b (.2), client c (.50)."""
    switch = lab.switch()
    hosts = [lab.host(name, [(switch, "eth0", [f"192.0.2.{n}/24", f"2001:db8::{n}/64"])])
             for name, n in (("a", a_number), ("b", 2), ("c", 50))]
    return switch, *hosts


def config(priority, family, extra=""):
    vip = VIPS[family]
    if family == 6:
        return vrrp_config(priority, version=3, password=None, vips=(f"{vip}/64",), extra=extra)
    return vrrp_config(priority, vips=(f"{vip}/24",), extra=extra)


def start(lab, host, kind, text, tag):
    if kind == "ours":
        return start_director(lab, host, text, f"{host.name}-{tag}")
    return start_keepalived(host, text, name=f"keepalived-{tag}")


def first_times(checks: dict, timeout: float) -> dict:
    """Poll every check until each has been true once; the seconds from now to the first
    true of each. Bounded in time and count; fails naming the checks still false."""
    start = time.monotonic()
    seen: dict = {}

    def all_seen():
        for name, check in checks.items():
            if name not in seen and check():
                seen[name] = time.monotonic() - start
        return len(seen) == len(checks)

    wait_for(all_seen, timeout, interval=0.005,
             message=lambda: f"still false: {sorted(set(checks) - set(seen))}, seen {seen}")
    return seen


def split_and_heal(lab, survivor_kind, loser_kind, family, survivor_extra="", loser_extra="",
                   priorities=(150, 100), a_number=1):
    """Run one partition and heal; return the seconds from the heal to one MASTER
    ("one_master") and to the client's cache on the survivor ("client")."""
    switch, a, b, client = build(lab, a_number)
    vip = VIPS[family]
    survivor = start(lab, a, survivor_kind, config(priorities[0], family, survivor_extra), "1")
    loser = None

    def logs():
        return f"--- A ---\n{lab.log_of(survivor)}\n--- B ---\n" \
            f"{lab.log_of(loser) if loser else ''}"

    wait_for(lambda: a.has_address("eth0", vip), down_interval(priorities[0]) + 3, message=logs)
    loser = start(lab, b, loser_kind, config(priorities[1], family, loser_extra), "1")
    assert client.ping(vip), "the client cannot reach the VIP"
    mac_a, mac_b = a.mac("eth0"), b.mac("eth0")
    # A's second set (garp_master_delay, 5 s) must not land after the heal and pass for an
    # answer to it: point the entry elsewhere and wait until that set has put it back.
    client.run(["ip", "neigh", "replace", vip, "lladdr", FAKE_MAC, "dev", "eth0", "nud", "stale"])
    wait_for(lambda: client.neighbour(vip) == mac_a, GARP_MASTER_DELAY + 2, message=logs)

    partition = Partition(switch, a, b)
    partition.cut()
    wait_for(lambda: b.has_address("eth0", vip), down_interval(priorities[1]) + 1, message=logs)
    # B's gratuitous ARP / NA on becoming MASTER moves the client's entry to the loser
    wait_for(lambda: client.neighbour(vip) == mac_b, 2,
             message=lambda: f"the client kept {client.neighbour(vip)}\n{logs()}")
    assert a.has_address("eth0", vip), "split brain expected while cut"

    partition.heal()
    times = first_times({
        "one_master": lambda: a.has_address("eth0", vip) and not b.has_address("eth0", vip),
        "client": lambda: client.neighbour(vip) == mac_a,
    }, down_interval(priorities[1]) + 2)
    assert times["one_master"] <= down_interval(priorities[1]), (times, logs())
    assert times["client"] <= HEAL_TO_CLIENT, (times, logs())
    # settled: the VIP on A only, and the client's entry stays on A
    end = time.monotonic() + 1.5
    while time.monotonic() < end:
        assert a.has_address("eth0", vip) and not b.has_address("eth0", vip), logs()
        assert client.neighbour(vip) == mac_a, logs()
        time.sleep(0.05)
    return times


@pytest.mark.parametrize("family", [4, 6])
def test_two_directors_heal_and_the_client_follows(lab, family):
    split_and_heal(lab, "ours", "ours", family)


@pytest.mark.parametrize("loser", ["ours", "keepalived"])
def test_equal_priorities_the_higher_address_stays_master(lab, loser):
    """RFC 5798 6.4.3: equal priorities, the higher primary address wins (A is .3, B .2)."""
    split_and_heal(lab, "ours", loser, 4, priorities=(100, 100), a_number=3,
                   loser_extra="    higher_prio_send_advert\n" if loser == "keepalived" else "")


@pytest.mark.parametrize("family", [4, 6])
def test_keepalived_loses_to_ours(lab, family):
    """keepalived steps down in silence by default: when our advert crosses first we hear
    nothing and cannot know the other side had taken the neighbours (about half of the heals,
    bench/split_brain_heal.py). Its higher_prio_send_advert is the cure on its side; with it
    our garp_lower_prio answer puts the client right."""
    split_and_heal(lab, "ours", "keepalived", family,
                   loser_extra="    higher_prio_send_advert\n")


@pytest.mark.parametrize("family", [4, 6])
def test_ours_loses_to_keepalived(lab, family):
    split_and_heal(lab, "keepalived", "ours", family)


# -- the keywords, on the wire (tshark on a third host) ------------------------------------

FORGER = """
import socket, sys
sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, 112)
sock.setsockopt(socket.SOL_SOCKET, 25, b"eth0")           # SO_BINDTODEVICE
sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 255)
sock.sendto(bytes.fromhex(sys.argv[1]), ("224.0.0.18", 0))
"""


def lower_priority_advert(priority=50) -> str:
    """What the other side of a healed split brain sends: a v2 advert of ours, lower."""
    return encode(Advert(2, 51, priority, 1.0, (VIPS[4],), 4, AUTH_PASS,
                         pass_auth_data("secret12"))).hex()


class Garps:
    """tshark on a host: the epoch time of every gratuitous ARP for the VIP from one MAC."""

    def __init__(self, lab, host, mac):
        if shutil.which("tshark") is None:
            pytest.skip("tshark is not installed")
        self.lab = lab
        self.proc = host.popen(["tshark", "-i", "eth0", "-l", "-n", "-f",
                                f"arp and ether src {mac}", "-T", "fields",
                                "-e", "frame.time_epoch", "-e", "arp.dst.proto_ipv4"])
        wait_for(lambda: "Capturing on" in lab.log_of(self.proc), 20,
                 message=lambda: lab.log_of(self.proc))

    def times(self) -> list[float]:
        found = []
        for line in self.lab.log_of(self.proc).splitlines():
            fields = line.split()
            if len(fields) == 2 and fields[1] == VIPS[4]:
                found.append(float(fields[0]))
        return found

    def wait(self, count, timeout) -> list[float]:
        return wait_for(lambda: len(self.times()) >= count and self.times(), timeout,
                        message=lambda: f"wanted {count}: {self.times()}")


def master_alone(lab, extra="", global_defs=""):
    switch = lab.switch()
    a = lab.host("a", [(switch, "eth0", ["192.0.2.1/24"])])
    x = lab.host("x", [(switch, "eth0", ["192.0.2.66/24"])])
    garps = Garps(lab, x, a.mac("eth0"))
    text = (f"global_defs {{\n{global_defs}}}\n" if global_defs else "") + config(150, 4, extra)
    ours = start_director(lab, a, text, "a")
    wait_for(lambda: a.has_address("eth0", VIPS[4]), down_interval(150) + 3,
             message=lambda: lab.log_of(ours))
    return a, x, garps, ours


def groups(times, gap=0.5) -> list[list[float]]:
    """Frames closer than gap seconds to the previous one are one set."""
    sets: list[list[float]] = []
    for t in sorted(times):
        if sets and t - sets[-1][-1] < gap:
            sets[-1].append(t)
        else:
            sets.append([t])
    return sets


def test_garp_lower_prio_repeat_and_delay(lab):
    a, x, garps, ours = master_alone(
        lab, "    garp_master_delay 0\n    garp_master_repeat 1\n"
             "    garp_lower_prio_repeat 3\n    garp_lower_prio_delay 2\n")
    garps.wait(1, 5)                                  # the one on becoming MASTER
    before = time.time()
    x.run([sys.executable, "-c", FORGER, lower_priority_advert()])
    times = [t for t in garps.wait(7, 6) if t >= before]
    sets = groups(times)
    assert [len(s) for s in sets] == [3, 3], sets
    assert sets[0][0] - before < 1.0, sets
    assert 1.9 <= sets[1][0] - sets[0][0] <= 3.0, sets
    heard = [line for line in lab.log_of(ours).splitlines() if "vrrp.lower_priority_heard" in line]
    assert len(heard) == 1 and "src=192.0.2.66 priority=50 ours=150" in heard[0], heard


def test_garp_lower_prio_unset_takes_the_global_garp_master_values(lab):
    """keepalived 2.2.7: unset, it is the global vrrp_garp_master_repeat / _delay (not the
    instance's garp_master_repeat, 4 here)."""
    a, x, garps, ours = master_alone(
        lab, "    garp_master_repeat 4\n",
        global_defs="    vrrp_garp_master_repeat 2\n    vrrp_garp_master_delay 1\n")
    garps.wait(8, 5)                                  # 4 at once, 4 after 1 s
    before = time.time()
    x.run([sys.executable, "-c", FORGER, lower_priority_advert()])
    times = [t for t in garps.wait(12, 5) if t >= before]
    sets = groups(times)
    assert [len(s) for s in sets] == [2, 2], sets
    assert 0.9 <= sets[1][0] - sets[0][0] <= 2.0, sets


def test_garp_lower_prio_repeat_0_sends_none(lab):
    a, x, garps, ours = master_alone(
        lab, "    garp_master_delay 0\n    garp_master_repeat 1\n    garp_lower_prio_repeat 0\n")
    garps.wait(1, 5)
    x.run([sys.executable, "-c", FORGER, lower_priority_advert()])
    wait_for(lambda: stats(lab, ours)["VI_1"]["adverts_received"] >= 1, 5,
             message=lambda: lab.log_of(ours))
    end = time.monotonic() + 1.5
    while time.monotonic() < end:                     # nothing more comes
        assert len(garps.times()) == 1, garps.times()
        time.sleep(0.05)


def test_garp_master_refresh_counts_from_the_transition(lab):
    """garp_master_refresh 1, _repeat 2: two a second from the transition on, with the
    delayed set (garp_master_delay 3) on top, as keepalived's refresh timer runs from the
    transition (it was counted from the delayed set: the first refresh came at 4 s)."""
    a, x, garps, ours = master_alone(
        lab, "    garp_master_repeat 1\n    garp_master_delay 3\n"
             "    garp_master_refresh 1\n    garp_master_refresh_repeat 2\n")
    sets = groups(garps.wait(8, 8))
    assert [len(s) for s in sets[:4]] == [1, 2, 2, 3], sets
    for earlier, later in zip(sets, sets[1:4]):
        assert 0.9 <= later[0] - earlier[0] <= 1.6, sets
