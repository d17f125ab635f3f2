"""The network-namespace lab itself: it carries traffic, partitions, cleans up, runs keepalived,
and its negative answers are real (a ping that cannot arrive says False, wait_for fails)."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.functional.lab import (KILL_GRACE, Lab, keepalived_binary, needs_netns,
                                  start_keepalived, wait_for)

pytestmark = pytest.mark.timeout(60)

V4 = ["192.0.2.1/24", "192.0.2.2/24", "192.0.2.3/24"]
V6 = ["2001:db8::1/64", "2001:db8::2/64", "2001:db8::3/64"]

KEEPALIVED_CONF = """\
vrrp_instance VI_1 {
    state BACKUP
    interface eth0
    virtual_router_id 51
    priority 150
    advert_int 1
    virtual_ipaddress {
        192.0.2.100/24
    }
}
"""


def two_hosts(lab):
    sw = lab.switch()
    a = lab.host("a", links=[(sw, "eth0", [V4[0], V6[0]])])
    b = lab.host("b", links=[(sw, "eth0", [V4[1], V6[1]])])
    return sw, a, b


def start_time(pid):
    """The process's start time in clock ticks (field 22 of /proc/PID/stat); None if it is
    gone or a zombie."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None if fields[0] == "Z" else fields[19]


def test_wait_for_returns_the_value_and_raises_at_the_deadline():
    values = iter([0, None, "", "ready"])
    assert wait_for(lambda: next(values), timeout=1, interval=0.001) == "ready"

    calls = []
    start = time.monotonic()
    with pytest.raises(AssertionError) as raised:
        wait_for(lambda: calls.append(1), timeout=0.3, interval=0.05, message="never true")
    elapsed = time.monotonic() - start
    assert 0.3 <= elapsed < 1.5
    assert "never true" in str(raised.value) and "0.3" in str(raised.value)
    assert 2 <= len(calls) <= 0.3 / 0.05 + 2          # polled, and bounded in count


@pytest.mark.netns
@needs_netns
def test_two_hosts_ping_each_other_over_ipv4_and_ipv6(lab):
    sw, a, b = two_hosts(lab)
    assert a.ns != b.ns != sw.ns and all(ns.startswith(lab.id) for ns in (a.ns, b.ns, sw.ns))
    assert {V4[1], V6[1]} <= set(b.addresses("eth0"))
    assert b.has_address("eth0", "2001:db8:0::2") and not b.has_address("eth0", "192.0.2.1")
    assert any(addr.startswith("fe80:") for addr in b.addresses("eth0"))   # link-local is there
    assert b.run(["ip", "-6", "addr", "show", "dev", "eth0", "tentative"]).stdout == ""  # no DAD

    assert a.ping("192.0.2.2") and b.ping("192.0.2.1")
    assert a.ping("2001:db8::2") and b.ping("2001:db8::1")
    assert a.neighbour("192.0.2.2") == b.mac("eth0") != a.mac("eth0")
    assert a.neighbour("192.0.2.3") is None
    link_local_b = next(x for x in b.addresses("eth0") if x.startswith("fe80:")).split("/")[0]
    assert a.ping(f"{link_local_b}%eth0")

    # nobody has these: the ping must say so rather than pass
    assert not a.ping("192.0.2.3", timeout=0.3)
    assert not a.ping("2001:db8::3", timeout=0.3)
    assert not a.ping("203.0.113.1", timeout=0.3)        # no route at all: False, not an error


@pytest.mark.netns
@pytest.mark.slow
@needs_netns
def test_set_port_partitions_and_heals_a_host(lab):
    sw, a, b = two_hosts(lab)
    assert a.ping("192.0.2.2")
    assert sw.port(b, "eth0") != sw.port(a, "eth0")

    sw.set_port(b, "eth0", up=False)
    assert sw.port_state(b, "eth0") == "disabled"
    assert not a.ping("192.0.2.2", timeout=0.5) and not b.ping("192.0.2.1", timeout=0.5)
    assert not a.ping("2001:db8::2", timeout=0.5)
    # a partition, not a link failure: b still has carrier and its addresses
    assert b.run(["cat", "/sys/class/net/eth0/carrier"]).stdout.strip() == "1"
    assert b.has_address("eth0", "192.0.2.2")

    sw.set_port(b, "eth0", up=True)
    wait_for(lambda: a.ping("192.0.2.2", timeout=0.5), 5, message="IPv4 after heal")
    wait_for(lambda: a.ping("2001:db8::2", timeout=0.5), 5, message="IPv6 after heal")

    b.link("eth0", up=False)                     # the host's own link going down
    assert not a.ping("192.0.2.2", timeout=0.5)
    b.link("eth0", up=True)
    wait_for(lambda: a.ping("192.0.2.2", timeout=0.5), 5, message="IPv4 after link up")


@pytest.mark.netns
@pytest.mark.slow
@needs_netns
def test_close_kills_processes_and_removes_every_namespace():
    lab = Lab()
    try:
        sw, a, b = two_hosts(lab)
        extra = lab.host("c")                                  # no links at all
        polite = a.popen(["sleep", "300"])
        stubborn = b.popen(["sh", "-c", "trap '' TERM; echo trapped; exec sleep 300"])
        escaped = a.popen(["sh", "-c", "setsid sleep 300 & echo started"])   # leaves the group
        killed = b.popen(["sleep", "300"])
        killed.close_signal = signal.SIGKILL                 # as start_keepalived's
        wait_for(lambda: "trapped" in lab.log_of(stubborn) and "started" in lab.log_of(escaped),
                 5, message="helpers started")
        assert escaped.wait(5) == 0
        pids = [int(p) for ns in (a.ns, b.ns)
                for p in subprocess.run(["ip", "netns", "pids", ns], capture_output=True,
                                        text=True, check=True).stdout.split()]
        assert polite.pid in pids and stubborn.pid in pids and len(pids) == 4
        started = {pid: start_time(pid) for pid in pids}
        namespaces = list(lab.namespaces)
        assert len(namespaces) == 4 and extra.ns in namespaces
        tmp = lab.tmp
    finally:
        t0 = time.monotonic()
        lab.close()
        took = time.monotonic() - t0

    assert polite.returncode == -15                      # TERM
    assert stubborn.returncode == -9                     # KILL, after the grace period
    assert killed.returncode == -9                       # its close_signal, at once
    assert KILL_GRACE - 0.5 <= took < 4 * KILL_GRACE
    assert all(start_time(pid) != started[pid] for pid in pids), "a lab process survived"
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True,
                            check=True).stdout
    assert not [ns for ns in namespaces if ns in listed.split()]
    assert not any(line.startswith(lab.id) for line in listed.splitlines())
    assert os.environ.get("KEEP_LAB") or not tmp.exists()
    lab.close()                                          # idempotent
    with pytest.raises(RuntimeError):
        lab.host("late")


@pytest.mark.netns
@needs_netns
def test_lab_names_are_unique_and_interface_names_short(lab):
    sw = lab.switch()
    with Lab() as other:
        assert other.id != lab.id
    with pytest.raises(ValueError):
        lab.switch()                                     # "sw" is taken in this lab
    with pytest.raises(ValueError):
        lab.host("x", links=[(sw, "a-name-too-long-for-linux", ["192.0.2.9/24"])])
    h = lab.host("h" * 32, links=[(sw, "eth0-with-long", ["192.0.2.9/24"])])
    assert all(len(name) <= 15 for name in (sw.port(h, "eth0-with-long"), "eth0-with-long"))


@pytest.mark.netns
@needs_netns
def test_host_sysctls_apply_to_the_namespace_and_its_links(lab):
    sw = lab.switch()
    h = lab.host("h", links=[(sw, "eth0", ["192.0.2.1/24"])],
                 sysctls={"net.ipv4.ip_forward": 1, "net.ipv6.conf.default.hop_limit": 33,
                          "net.ipv4.conf.eth0.arp_ignore": 2})
    other = lab.host("o", links=[(sw, "eth0", ["192.0.2.2/24"])])

    def sysctl(host, key):
        return host.run(["sysctl", "-n", key]).stdout.strip()

    assert sysctl(h, "net.ipv4.ip_forward") == "1"
    assert sysctl(h, "net.ipv6.conf.eth0.hop_limit") == "33"     # default. came before eth0
    assert sysctl(h, "net.ipv4.conf.eth0.arp_ignore") == "2"     # eth0's own key, after it
    assert sysctl(h, "net.ipv6.conf.eth0.accept_dad") == "0"
    assert sysctl(other, "net.ipv4.ip_forward") == "0"           # per namespace, not global
    assert sysctl(other, "net.ipv4.conf.eth0.arp_ignore") == "0"


# --- keepalived --------------------------------------------------------------------------

needs_keepalived = pytest.mark.skipif(keepalived_binary() is None,
                                      reason="keepalived is not installed")


@pytest.mark.netns
@pytest.mark.slow
@needs_netns
@needs_keepalived
def test_keepalived_becomes_master_and_drops_the_vip_on_term(lab):
    sw, a, b = two_hosts(lab)
    keepalived = start_keepalived(a, KEEPALIVED_CONF)
    wait_for(lambda: a.has_address("eth0", "192.0.2.100"), 5,
             message=lambda: f"VIP on a's eth0; keepalived log:\n{lab.log_of(keepalived)}")
    assert "(VI_1) Entering MASTER STATE" in lab.log_of(keepalived)
    assert keepalived.poll() is None
    assert wait_for(lambda: b.ping("192.0.2.100"), 5, message="VIP answers from b")
    assert not b.has_address("eth0", "192.0.2.100")

    keepalived.terminate()
    assert keepalived.wait(5) == 0, lab.log_of(keepalived)
    assert not a.has_address("eth0", "192.0.2.100"), lab.log_of(keepalived)
    log = lab.log_of(keepalived)
    assert "(VI_1) sent 0 priority" in log and str(lab.tmp) in log   # its files are the lab's
    assert "Stopped Keepalived" in log


# Run in a namespace: count frames to each wanted destination MAC on IFNAME (AF_PACKET, so no
# multicast group is joined) until each has been seen COUNT times or SECONDS pass; print
# {dst: [count, source MACs]}.
CAPTURE = r"""
import json, select, socket, sys, time
ifname, wanted = sys.argv[1], sys.argv[2].split(",")
count, seconds = int(sys.argv[3]), float(sys.argv[4])
sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
sock.bind((ifname, 0))
seen = {dst: [0, []] for dst in wanted}
deadline = time.monotonic() + seconds
for _ in range(100000):
    left = deadline - time.monotonic()
    if left <= 0 or all(n >= count for n, _ in seen.values()):
        break
    if not select.select([sock], [], [], left)[0]:
        break
    frame = sock.recv(65535)
    dst, src = frame[0:6].hex(":"), frame[6:12].hex(":")
    if dst in seen:
        seen[dst][0] += 1
        if src not in seen[dst][1]:
            seen[dst][1].append(src)
print(json.dumps(seen))
"""

KEEPALIVED_DUAL = """\
vrrp_instance V4 {{
    interface eth0
    virtual_router_id 51
    priority {prio}
    virtual_ipaddress {{
        192.0.2.100/24
    }}
}}
vrrp_instance V6 {{
    interface eth0
    virtual_router_id 52
    priority {prio}
    virtual_ipaddress {{
        2001:db8::100/64
    }}
}}
"""


def holds_vips(host):
    return host.has_address("eth0", "192.0.2.100") and host.has_address("eth0", "2001:db8::100")


@pytest.mark.netns
@pytest.mark.slow
@needs_netns
@needs_keepalived
def test_vrrp_multicast_reaches_every_port_ipv4_and_ipv6(lab):
    """a's adverts to 224.0.0.18 and ff02::12 reach b (a group member, stays BACKUP) and c,
    which never joined either group: what a capturing test host needs."""
    sw, a, b = two_hosts(lab)
    c = lab.host("c", links=[(sw, "eth0", [V4[2], V6[2]])])
    ka = start_keepalived(a, KEEPALIVED_DUAL.format(prio=150))
    kb = start_keepalived(b, KEEPALIVED_DUAL.format(prio=100))
    wait_for(lambda: holds_vips(a), 5, message=lambda: f"VIPs on a; log:\n{lab.log_of(ka)}")
    started = time.monotonic()
    # 3 adverts of each family at advert_int 1 s: b's master down timer (3 x 1 s + 0.61 s)
    # has long run out by the third, so b still being BACKUP means it hears a
    capture = c.run([sys.executable, "-I", "-c", CAPTURE, "eth0",
                     "01:00:5e:00:00:12,33:33:00:00:00:12", "3", "8"], timeout=20)
    seen = json.loads(capture.stdout)
    assert seen == {"01:00:5e:00:00:12": [3, [a.mac("eth0")]],
                    "33:33:00:00:00:12": [3, [a.mac("eth0")]]}
    assert time.monotonic() - started >= 1.5
    assert "Entering MASTER" not in lab.log_of(kb), lab.log_of(kb)
    assert not b.has_address("eth0", "192.0.2.100")
    ka.terminate()                                        # priority 0: b takes over at once
    wait_for(lambda: holds_vips(b), 3,
             message=lambda: f"VIPs on b after a's TERM; log:\n{lab.log_of(kb)}")
