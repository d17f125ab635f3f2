"""More of the VRRP wire and timing keywords against Debian's keepalived 2.2.7 (issue 14,
part G): vrrp_startup_delay (measured on both daemons), mcast_dst_ip (both directions),
log_unknown_vrids (each daemon logs the other's vrid), unicast_fault_no_peer (both go to
FAULT), track_src_ip (ours: keepalived 2.2.7 does not act on it, see the test) and
disable_local_igmp (the namespace's sysctl while we run, restored after)."""

from __future__ import annotations

import shutil
import signal
import sys
import time

import pytest

from tests.functional.lab import start_keepalived, wait_for
from tests.functional.test_vrrp_failover import (FAST_INTERVAL, fast_down, start_director,
                                                 stats)

pytestmark = [pytest.mark.netns, pytest.mark.slow, pytest.mark.timeout(120)]

VIP = "192.0.2.100"
STARTUP_DELAY = 1.5
STARTUP_SLACK = 0.6       # seconds between the two daemons' times to MASTER


def instance(vrid: int = 51, priority: int = 150, extra: str = "", vip: str = VIP) -> str:
    """VRRPv3 every 0.2 s (FAST_INTERVAL): a master down interval is ~0.7 s, not ~3.4 s."""
    return (f"vrrp_instance VI_{vrid} {{\n    interface eth0\n    virtual_router_id {vrid}\n"
            f"    priority {priority}\n    advert_int {FAST_INTERVAL}\n    version 3\n{extra}"
            f"    virtual_ipaddress {{\n        {vip}/24\n    }}\n}}\n")


def start(lab, host, kind, text, name=None):
    if kind == "ours":
        return start_director(lab, host, text, name or host.name)
    return start_keepalived(host, text, name=name or "keepalived")


def pair(lab):
    switch = lab.switch()
    return (lab.host("a", [(switch, "eth0", ["192.0.2.1/24"])]),
            lab.host("b", [(switch, "eth0", ["192.0.2.2/24"])]))


def test_startup_delay_delays_the_first_transition_as_keepalived_does(lab):
    """Each alone on its link, the same vrrp_startup_delay: from the moment each says it
    delays (its log line, polled; Python's imports make our start-up 0.6 s longer, which is
    not the keyword's) to its VIP is the delay plus the master down interval on both
    (measured, printed with -s)."""
    a, b = pair(lab)
    text = f"global_defs {{\n    vrrp_startup_delay {STARTUP_DELAY}\n}}\n"
    ours = start(lab, a, "ours", text + instance(51))
    theirs = start(lab, b, "keepalived", text + instance(52, vip="192.0.2.101"))
    said: dict[str, float] = {}
    times: dict[str, float] = {}
    daemons = (("ours", ours, f"vrrp.startup_delay seconds={STARTUP_DELAY}", a, VIP),
               ("keepalived", theirs, f"Delaying startup for {STARTUP_DELAY:g} seconds", b,
                "192.0.2.101"))

    def both():
        for name, proc, line, host, address in daemons:
            if name not in said and line in lab.log_of(proc):
                said[name] = time.monotonic()
            if name in said and name not in times and host.has_address("eth0", address):
                times[name] = time.monotonic() - said[name]
        return len(times) == 2

    wait_for(both, STARTUP_DELAY + fast_down(150) + 10, interval=0.02,
             message=lambda: f"{said} {times}\n{lab.log_of(ours)}\n{lab.log_of(theirs)}")
    print("vrrp_startup_delay", STARTUP_DELAY, "to MASTER:", times)
    expected = STARTUP_DELAY + fast_down(150)
    for name in times:
        assert expected - 0.2 <= times[name] <= expected + STARTUP_SLACK, times
    assert abs(times["ours"] - times["keepalived"]) <= STARTUP_SLACK, times


@pytest.mark.parametrize("master_kind,backup_kind", [("ours", "keepalived"),
                                                     ("keepalived", "ours")])
def test_mcast_dst_ip_both_ways(lab, master_kind, backup_kind):
    if shutil.which("tshark") is None:
        pytest.skip("tshark is not installed")
    a, b = pair(lab)
    capture = b.popen(["tshark", "-i", "eth0", "-l", "-n", "-f", "ip proto 112 and src host "
                       "192.0.2.1", "-T", "fields", "-e", "ip.dst"])
    wait_for(lambda: "Capturing on" in lab.log_of(capture), 20,
             message=lambda: lab.log_of(capture))
    extra = "    mcast_dst_ip 224.0.0.19\n"
    master = start(lab, a, master_kind, instance(priority=150, extra=extra))
    wait_for(lambda: a.has_address("eth0", VIP), fast_down(150) + 3,
             message=lambda: lab.log_of(master))
    backup = start(lab, b, backup_kind, instance(priority=100, extra=extra))
    wait_for(lambda: "to=BACKUP" in lab.log_of(backup) or
             "Entering BACKUP STATE" in lab.log_of(backup), 10,
             message=lambda: lab.log_of(backup))
    end = time.monotonic() + fast_down(100) + 1
    while time.monotonic() < end:              # up, it hears the master on the group
        assert not b.has_address("eth0", VIP), f"{lab.log_of(master)}\n{lab.log_of(backup)}"
        time.sleep(0.1)
    destinations = {line.strip() for line in lab.log_of(capture).splitlines()
                    if line.strip().count(".") == 3}
    assert destinations == {"224.0.0.19"}, destinations


def test_log_unknown_vrids_each_logs_the_others(lab):
    a, b = pair(lab)
    text = "global_defs {\n    log_unknown_vrids\n}\n"
    ours = start(lab, a, "ours", text + instance(51))
    theirs = start(lab, b, "keepalived", text + instance(52, vip="192.0.2.101"))
    wait_for(lambda: "vrrp.unknown_vrid interface=eth0 source=192.0.2.2 vrid=52"
             in lab.log_of(ours), fast_down(150) + 5,
             message=lambda: lab.log_of(ours))
    wait_for(lambda: "Unknown VRID(51) received on interface(eth0)" in lab.log_of(theirs),
             fast_down(150) + 5, message=lambda: lab.log_of(theirs))


def test_unicast_fault_no_peer_goes_to_fault_as_keepalived(lab):
    a, b = pair(lab)
    extra = "    unicast_fault_no_peer\n"
    ours = start(lab, a, "ours", instance(51, extra=extra))
    theirs = start(lab, b, "keepalived", instance(52, extra=extra, vip="192.0.2.101"))
    wait_for(lambda: "Cannot use unicast without any peers - going to fault state"
             in lab.log_of(theirs), 10, message=lambda: lab.log_of(theirs))
    wait_for(lambda: "to=FAULT" in lab.log_of(ours), 10, message=lambda: lab.log_of(ours))
    assert "no unicast peer" in lab.log_of(ours)
    end = time.monotonic() + fast_down(150) + 1
    while time.monotonic() < end:                          # and neither takes its VIP
        assert not a.has_address("eth0", VIP) and not b.has_address("eth0", "192.0.2.101")
        time.sleep(0.1)
    assert stats(lab, ours)["VI_51"]["adverts_sent"] == 0


def test_disable_local_igmp_while_running(lab):
    a, _ = pair(lab)
    path = "/proc/sys/net/ipv4/igmp_link_local_mcast_reports"

    def value():
        return a.run(["cat", path]).stdout.strip()

    assert value() == "1"
    ours = start(lab, a, "ours", "global_defs {\n    disable_local_igmp\n}\n" + instance(51))
    wait_for(lambda: value() == "0", 10, message=lambda: lab.log_of(ours))
    ours.send_signal(signal.SIGTERM)
    ours.wait(timeout=10)
    assert value() == "1"


def test_track_src_ip_faults_while_the_source_address_is_gone(lab):
    """Ours alone: its mcast_src_ip (a second address) removed, FAULT and no VIP; put back,
    MASTER again. keepalived 2.2.7 is not the reference here: its check compares the
    sockaddr, not the address (keepalived_netlink.c, inaddr_equal(&vrrp->saddr, ...)), so
    it never faults (seen in this lab); director does what its manual says."""
    a, _ = pair(lab)
    a.run(["ip", "addr", "add", "192.0.2.11/32", "dev", "eth0"])
    ours = start(lab, a, "ours", instance(51, extra="    mcast_src_ip 192.0.2.11\n"
                                                    "    track_src_ip\n"))
    wait_for(lambda: a.has_address("eth0", VIP), fast_down(150) + 5,
             message=lambda: lab.log_of(ours))
    a.run(["ip", "addr", "del", "192.0.2.11/32", "dev", "eth0"])
    wait_for(lambda: 'to=FAULT reason="fault: source 192.0.2.11"' in lab.log_of(ours) and
             not a.has_address("eth0", VIP), 5, message=lambda: lab.log_of(ours))
    a.run(["ip", "addr", "add", "192.0.2.11/32", "dev", "eth0"])
    wait_for(lambda: a.has_address("eth0", VIP), fast_down(150) + 5,
             message=lambda: lab.log_of(ours))



RCVBUF_PROBE = """
import ctypes, os, socket, sys
libc = ctypes.CDLL(None, use_errno=True)
pidfd = os.pidfd_open(int(sys.argv[1]))
sizes = []
for name in os.listdir(f"/proc/{sys.argv[1]}/fd"):
    if not os.readlink(f"/proc/{sys.argv[1]}/fd/{name}").startswith("socket:"):
        continue
    fd = libc.syscall(438, pidfd, int(name), 0)          # pidfd_getfd
    if fd < 0:
        continue
    sock = socket.socket(fileno=fd)
    if sock.type == socket.SOCK_RAW and sock.proto == 112:
        sizes.append(sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF))
    sock.detach()
    os.close(fd)
print(sizes)
"""


def test_rx_bufs_policy_sizes_the_vrrp_socket(lab):
    """vrrp_rx_bufs_policy SIZE plus an instance's kernel_rx_buf_size: SO_RCVBUF of the raw
    socket the two instances share, read from the daemon's own socket (pidfd_getfd; the
    kernel doubles what was asked). No keepalived here: nothing of it is on the wire."""
    a, _ = pair(lab)
    ours = start(lab, a, "ours", "global_defs {\n    vrrp_rx_bufs_policy 50000\n}\n" +
                 instance(51, extra="    kernel_rx_buf_size 30000\n") +
                 instance(52, vip="192.0.2.101"))
    wait_for(lambda: "vrrp.applied" in lab.log_of(ours), 10, message=lambda: lab.log_of(ours))

    def sizes():
        return a.run([sys.executable, "-c", RCVBUF_PROBE, str(ours.pid)]).stdout.strip()

    wait_for(lambda: sizes() == "[160000]", 5, message=lambda: f"{sizes()}\n{lab.log_of(ours)}")


@pytest.mark.parametrize("keyword", [True, False])
def test_timer_expired_backup_after_sigstop(lab, keyword):
    """Ours MASTER (150, nopreempt) beside keepalived (100); ours stopped (SIGSTOP) until
    keepalived has taken over, then continued. With timer_expired_backup ours steps down
    (reason timer_expired) and keepalived keeps the VIP; without it, ours answers
    keepalived's lower advert and takes the VIP back (the control)."""
    a, b = pair(lab)
    extra = "    state BACKUP\n    nopreempt\n" + ("    timer_expired_backup\n" if keyword else "")
    ours = start(lab, a, "ours", instance(51, priority=150, extra=extra))
    wait_for(lambda: a.has_address("eth0", VIP), fast_down(150) + 5,
             message=lambda: lab.log_of(ours))
    theirs = start(lab, b, "keepalived", instance(51, priority=100))

    def logs():
        return f"{lab.log_of(ours)}\n{lab.log_of(theirs)}"

    wait_for(lambda: "Entering BACKUP STATE" in lab.log_of(theirs), 5, message=logs)
    ours.send_signal(signal.SIGSTOP)
    try:
        wait_for(lambda: b.has_address("eth0", VIP), fast_down(100) + 3, message=logs)
    finally:
        ours.send_signal(signal.SIGCONT)
    if keyword:
        wait_for(lambda: not a.has_address("eth0", VIP), 3, message=logs)
        assert "reason=timer_expired" in lab.log_of(ours), logs()
        end = time.monotonic() + 2
        while time.monotonic() < end:
            assert b.has_address("eth0", VIP) and not a.has_address("eth0", VIP), logs()
            time.sleep(0.1)
    else:
        wait_for(lambda: not b.has_address("eth0", VIP) and a.has_address("eth0", VIP), 5,
                 message=logs)
