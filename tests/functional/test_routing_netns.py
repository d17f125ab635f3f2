"""Routing and interface keywords in network namespaces: static_ipaddress / static_routes /
static_rules (start, a reload that changes one entry, stop), virtual_rules following the VIPs
across a failover with Debian's keepalived 2.2.7, promote_secondaries compared with
keepalived, dynamic_interfaces, interface_up_down_delays, unicast instances without an
interface (vrf) and linkbeat. Kernel state is read back with ``ip -j``. The instances speak
VRRPv3 every 0.2 s (fast_config): each wait for a MASTER is ~0.7 s, not VRRPv2's ~3.4 s."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from director.vrrp.transport import SO_BINDTODEVICE, VrrpSocket
from tests.functional.lab import start_keepalived, wait_for
from tests.functional.test_vrrp_failover import fast_config, fast_down, start_director, stays

pytestmark = [pytest.mark.netns, pytest.mark.slow, pytest.mark.timeout(120)]

ROOT = Path(__file__).resolve().parents[2]


def ip_json(host, *args) -> list:
    return json.loads(host.run(["ip", "-j", *args]).stdout or "[]")


def rules(host, family="-4") -> set[tuple]:
    """(priority, src, table, protocol) of the rules director or keepalived may add."""
    return {(r.get("priority"), r.get("src", "") + (f"/{r['srclen']}" if "srclen" in r else ""),
             r.get("table"), r.get("protocol"))
            for r in ip_json(host, family, "rule", "show") if r.get("priority") not in
            (0, 32766, 32767)}


def routes(host, table="main") -> set[tuple]:
    return {(r["dst"], r.get("gateway")) for r in ip_json(host, "route", "show", "table", table)
            if r.get("protocol") != "kernel"}


def addresses(host, ifname="eth0") -> set[str]:
    return {f"{a['local']}/{a['prefixlen']}" for link in ip_json(host, "addr", "show", "dev", ifname)
            for a in link.get("addr_info", []) if a["family"] == "inet"}


STATIC = """
global_defs {{
    default_interface eth0
}}
static_ipaddress {{
    198.51.100.1/32
    198.51.100.2/32 dev eth0
}}
static_routes {{
    203.0.113.0/24 via 192.0.2.254
    {moving_route} via 192.0.2.254 table 100
}}
static_rules {{
    from 198.51.100.1 table 100 priority 100
    from {moving_rule} table 100 priority 101
    from 2001:db8::/32 table 100 priority 102
}}
"""


def _mark(host, log, tag: int) -> None:
    """Add addresses 127.TAG.0.N to lo until ip monitor prints one: it listens from then on,
    and has printed every event before it (bounded: 40 tries, 0.25 s each)."""
    for n in range(1, 41):
        host.run(["ip", "addr", "add", f"127.{tag}.0.{n}/8", "dev", "lo"])
        try:
            wait_for(lambda: f"127.{tag}.0." in log.read_text(), 0.25)
            return
        except AssertionError:
            continue
    raise AssertionError("ip monitor never printed a thing")


def test_static_entries_start_reload_only_what_changed_and_stop(lab):
    switch = lab.switch()
    host = lab.host("a", [(switch, "eth0", ["192.0.2.1/24"])])
    proc = start_director(lab, host, STATIC.format(moving_route="203.0.114.0/24",
                                                   moving_rule="198.51.100.2"), "a")
    wait_for(lambda: (101, "198.51.100.2", "100", "keepalived") in rules(host), 15,
             message=lambda: f"static rules never appeared\n{lab.log_of(proc)}")
    assert {"198.51.100.1/32", "198.51.100.2/32"} <= addresses(host)
    assert ("203.0.113.0/24", "192.0.2.254") in routes(host)
    assert ("203.0.114.0/24", "192.0.2.254") in routes(host, "100")
    assert rules(host) == {(100, "198.51.100.1", "100", "keepalived"),
                           (101, "198.51.100.2", "100", "keepalived")}
    assert rules(host, "-6") == {(102, "2001:db8::/32", "100", "keepalived")}
    assert dump(lab, proc)["vrrp"]["static_errors"] == 0

    # a reload changing one route and one rule: the kernel sees only those two change
    log = lab.tmp / "monitor.log"
    monitor = host.popen(["stdbuf", "-oL", "ip", "monitor", "address", "route", "rule"],
                         log_path=str(log))
    _mark(host, log, 1)
    config = proc.state_dir.parent / "keepalived.conf"
    config.write_text(STATIC.format(moving_route="203.0.115.0/24", moving_rule="198.51.100.3"))
    proc.send_signal(signal.SIGHUP)
    wait_for(lambda: (101, "198.51.100.3", "100", "keepalived") in rules(host), 15,
             message=lambda: f"the reload did not move the rule\n{lab.log_of(proc)}")
    wait_for(lambda: ("203.0.115.0/24", "192.0.2.254") in routes(host, "100"), 5,
             message=lambda: f"the reload did not move the route\n{lab.log_of(proc)}")
    assert ("203.0.114.0/24", "192.0.2.254") not in routes(host, "100")
    assert (101, "198.51.100.2", "100", "keepalived") not in rules(host)
    _mark(host, log, 2)
    monitor.send_signal(signal.SIGTERM)
    monitor.wait(5)
    seen = [line for line in log.read_text().splitlines()
            if line[:1].strip() and " 127." not in line]
    touched = " ".join(seen)
    for kept in ("198.51.100.1", "203.0.113.0", "2001:db8::"):
        assert kept not in touched, f"the reload touched {kept}:\n" + "\n".join(seen)
    for moved in ("203.0.114.0", "203.0.115.0", "198.51.100.2 ", "198.51.100.3"):
        assert moved in touched + " ", f"no netlink event for {moved}:\n" + "\n".join(seen)

    proc.send_signal(signal.SIGTERM)
    assert proc.wait(15) == 0
    assert rules(host) == set() and rules(host, "-6") == set()
    assert not {"198.51.100.1/32", "198.51.100.2/32"} & addresses(host)
    assert ("203.0.113.0/24", "192.0.2.254") not in routes(host)
    assert routes(host, "100") == set()


def _rule_config(priority: int, extra: str = "") -> str:
    return fast_config(priority, extra=extra + "    virtual_rules {\n"
                       "        from 192.0.2.100 table 100 priority 100\n"
                       "        to 198.51.100.0/24 table 100 priority 101\n    }\n")


def test_virtual_rules_follow_the_vips_with_a_keepalived_peer(lab):
    switch = lab.switch()
    a = lab.host("a", [(switch, "eth0", ["192.0.2.1/24"])])
    b = lab.host("b", [(switch, "eth0", ["192.0.2.2/24"])])
    expected = {(100, "192.0.2.100", "100", "keepalived"), (101, "all", "100", "keepalived")}
    ours = start_director(lab, a, _rule_config(100), "a")
    wait_for(lambda: rules(a) == expected, 15,
             message=lambda: f"director MASTER without its rules\n{lab.log_of(ours)}")
    # keepalived at a higher priority takes over: director's rules go, keepalived's come
    theirs = start_keepalived(b, _rule_config(150))
    wait_for(lambda: rules(b) == expected, 15,
             message=lambda: f"keepalived never added its rules\n{lab.log_of(theirs)}")
    wait_for(lambda: rules(a) == set(), 5,
             message=lambda: f"director kept its rules as BACKUP {rules(a)}\n{lab.log_of(ours)}")
    # and back: keepalived stops, director is MASTER again with the same rules
    theirs.send_signal(signal.SIGTERM)
    theirs.wait(15)
    assert rules(b) == set(), "keepalived left its rules behind"
    wait_for(lambda: rules(a) == expected, 10,
             message=lambda: f"director MASTER again without its rules\n{lab.log_of(ours)}")
    ours.send_signal(signal.SIGTERM)
    assert ours.wait(15) == 0
    assert rules(a) == set()


def _secondary_survives(host, proc_log) -> bool:
    """Two VIPs of one /24 on an interface with no other address there: the first is the
    primary; remove it by hand and see whether the second stays."""
    wait_for(lambda: {"10.7.0.1/24", "10.7.0.2/24"} <= addresses(host), 15, message=proc_log)
    host.run(["ip", "addr", "del", "10.7.0.1/24", "dev", "eth0"])
    return "10.7.0.2/24" in addresses(host)


def _sysctl(host) -> str:
    return host.run(["cat", "/proc/sys/net/ipv4/conf/eth0/promote_secondaries"]).stdout.strip()


@pytest.mark.parametrize("daemon", ["director", "keepalived"])
def test_promote_secondaries_set_while_running_and_reset_on_stop(lab, daemon):
    """The sysctl, as keepalived 2.2.7 sets it: 1 while the instance runs, back to 0 after.
    (Removing a VIP by hand is no comparison: keepalived sees it go, steps down to BACKUP,
    removes its VIPs and takes them again; director leaves the others as they are.)"""
    switch = lab.switch()
    host = lab.host("a", [(switch, "eth0", ["192.0.2.1/24"])])
    assert _sysctl(host) == "0"
    config = fast_config(255, vips=("10.7.0.1/24", "10.7.0.2/24"),
                         extra="    promote_secondaries\n")
    proc = start_director(lab, host, config, "a") if daemon == "director" else \
        start_keepalived(host, config)
    wait_for(lambda: {"10.7.0.1/24", "10.7.0.2/24"} <= addresses(host), 15,
             message=lambda: lab.log_of(proc))
    assert _sysctl(host) == "1"
    if daemon == "director":
        assert _secondary_survives(host, lambda: lab.log_of(proc)), \
            "the secondary VIP went with the primary"
    proc.send_signal(signal.SIGTERM)
    proc.wait(15)
    assert _sysctl(host) == "0", f"{daemon} left promote_secondaries set"


def test_without_promote_secondaries_the_secondary_goes(lab):
    """The kernel's default, which the keyword is there to change (and the check that the
    test above can fail)."""
    switch = lab.switch()
    host = lab.host("a", [(switch, "eth0", ["192.0.2.1/24"])])
    proc = start_director(lab, host, fast_config(255, vips=("10.7.0.1/24", "10.7.0.2/24")), "a")
    assert not _secondary_survives(host, lambda: lab.log_of(proc))
    proc.send_signal(signal.SIGTERM)
    proc.wait(15)



def dump(lab, proc) -> dict:
    """The USR1 state dump (the /api/v1/state shape)."""
    path = proc.state_dir / "director.data"
    if path.exists():
        path.unlink()
    proc.send_signal(signal.SIGUSR1)
    wait_for(path.exists, 5, message=lambda: f"no state dump\n{lab.log_of(proc)}")
    return json.loads(path.read_text())


def test_dynamic_interfaces_starts_an_instance_when_its_interface_appears(lab):
    switch = lab.switch()
    host = lab.host("a", [(switch, "eth0", ["192.0.2.1/24"])])
    config = ("global_defs {\n    dynamic_interfaces\n}\n" +
              fast_config(150, interface="eth1", vips=("198.51.100.10/24",)) +
              fast_config(150, name="VI_HERE", vrid=52))
    proc = start_director(lab, host, config, "a")
    wait_for(lambda: host.has_address("eth0", "192.0.2.100"), 15,
             message=lambda: f"the instance on eth0 did not start\n{lab.log_of(proc)}")
    assert "vrrp.interface_wait instance=VI_1 interface=eth1" in lab.log_of(proc)
    assert proc.poll() is None
    state = dump(lab, proc)["vrrp"]
    assert state["waiting_for_interface"] == {"VI_1": "eth1"}
    assert [i["name"] for i in state["instances"]] == ["VI_HERE"]
    host.add_link(switch, "eth1", ["198.51.100.1/24"])
    wait_for(lambda: host.has_address("eth1", "198.51.100.10"), 15,
             message=lambda: f"VI_1 did not start on the new eth1\n{lab.log_of(proc)}")
    assert "vrrp.interface_appeared instance=VI_1 interface=eth1" in lab.log_of(proc)
    assert dump(lab, proc)["vrrp"]["waiting_for_interface"] == {}
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(15) == 0
    assert not host.has_address("eth1", "198.51.100.10")


def test_without_dynamic_interfaces_a_missing_interface_fails_the_start(lab):
    switch = lab.switch()
    host = lab.host("a", [(switch, "eth0", ["192.0.2.1/24"])])
    proc = start_director(lab, host, fast_config(150, interface="eth1"), "a")
    assert proc.wait(20) != 0


def test_interface_up_down_delays_hide_a_short_bounce(lab):
    """VI_1 on eth0 with delays (down 3 s, up 0.5 s), VI_2 on eth1 without: a 0.5 s bounce of
    both puts only VI_2 in FAULT; a long one takes VI_1 down after its delay."""
    switch = lab.switch()
    host = lab.host("a", [(switch, "eth0", ["192.0.2.1/24"]), (switch, "eth1", ["192.0.3.1/24"])])
    config = ("interface_up_down_delays {\n    eth0 3 0.5\n}\n" +
              fast_config(150, vips=("192.0.2.100/24",)) +
              fast_config(150, name="VI_2", vrid=52, interface="eth1", vips=("192.0.3.100/24",)))
    proc = start_director(lab, host, config, "a")
    for ifname, vip in (("eth0", "192.0.2.100"), ("eth1", "192.0.3.100")):
        wait_for(lambda: host.has_address(ifname, vip), 15, message=lambda: lab.log_of(proc))
    host.link("eth0", False)
    host.link("eth1", False)
    wait_for(lambda: "instance=VI_2 vrid=52 from=MASTER to=FAULT" in lab.log_of(proc), 5,
             message=lambda: lab.log_of(proc))
    host.link("eth0", True)
    host.link("eth1", True)
    wait_for(lambda: host.has_address("eth1", "192.0.3.100"), 15,
             message=lambda: f"VI_2 did not come back\n{lab.log_of(proc)}")
    assert "instance=VI_1 vrid=51 from=MASTER to=FAULT" not in lab.log_of(proc)
    # a long one: down only after the 3 s
    host.link("eth0", False)
    went = time.monotonic()
    wait_for(lambda: "instance=VI_1 vrid=51 from=MASTER to=FAULT" in lab.log_of(proc), 3 + 3,
             message=lambda: lab.log_of(proc))
    assert time.monotonic() - went >= 3 - 0.2
    host.link("eth0", True)
    wait_for(lambda: host.has_address("eth0", "192.0.2.100"), 15,
             message=lambda: f"VI_1 did not come back\n{lab.log_of(proc)}")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(15) == 0


def test_track_group_puts_its_instances_in_fault_while_a_static_entrys_interface_is_down(lab):
    """A static address on eth1 names track_group TG, which holds VI_1 (on eth0): eth1 down
    puts VI_1 in FAULT (its VIP goes), eth1 up brings it back; VI_2, outside the group,
    stays MASTER throughout."""
    switch = lab.switch()
    host = lab.host("a", [(switch, "eth0", ["192.0.2.1/24"]), (switch, "eth1", ["192.0.3.1/24"])])
    config = ("track_group TG {\n    group {\n        VI_1\n    }\n}\n"
              "static_ipaddress {\n    198.51.100.7/32 dev eth1 track_group TG\n}\n" +
              fast_config(150, vips=("192.0.2.100/24",)) +
              fast_config(150, name="VI_2", vrid=52, vips=("192.0.2.101/24",)))
    proc = start_director(lab, host, config, "a")
    for vip in ("192.0.2.100", "192.0.2.101"):
        wait_for(lambda: host.has_address("eth0", vip), 15, message=lambda: lab.log_of(proc))
    host.link("eth1", False)
    wait_for(lambda: "instance=VI_1 vrid=51 from=MASTER to=FAULT" in lab.log_of(proc), 5,
             message=lambda: lab.log_of(proc))
    wait_for(lambda: not host.has_address("eth0", "192.0.2.100"), 5,
             message=lambda: lab.log_of(proc))
    host.link("eth1", True)
    wait_for(lambda: host.has_address("eth0", "192.0.2.100"), 15,
             message=lambda: f"VI_1 did not come back\n{lab.log_of(proc)}")
    assert "instance=VI_2 vrid=52 from=MASTER" not in lab.log_of(proc)
    assert host.has_address("eth0", "192.0.2.101")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(15) == 0


def test_a_unicast_instance_without_interface_against_keepalived(lab):
    """No 'interface': the socket is bound to no device (vrf would bind it to a VRF; this
    kernel has none), the VIPs go where their 'dev' says; keepalived, with an interface,
    is its BACKUP and takes over when it stops."""
    switch = lab.switch()
    a = lab.host("a", [(switch, "eth0", ["192.0.2.1/24"])])
    b = lab.host("b", [(switch, "eth0", ["192.0.2.2/24"])])
    ours = fast_config(150, vips=("192.0.2.100/24 dev eth0",), unicast=("192.0.2.1", "192.0.2.2"))
    ours = ours.replace("    interface eth0\n", "")
    proc = start_director(lab, a, ours, "a")
    theirs = start_keepalived(b, fast_config(100, unicast=("192.0.2.2", "192.0.2.1")))
    wait_for(lambda: a.has_address("eth0", "192.0.2.100"), 15, message=lambda: lab.log_of(proc))
    wait_for(lambda: "Entering BACKUP STATE" in lab.log_of(theirs), 10,
             message=lambda: lab.log_of(theirs))
    stays(lambda: not b.has_address("eth0", "192.0.2.100"), fast_down(100) + 1,
          "keepalived became MASTER: it does not hear director's adverts")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(15) == 0
    wait_for(lambda: b.has_address("eth0", "192.0.2.100"), 10, message=lambda: lab.log_of(theirs))


@pytest.mark.skipif(os.geteuid() != 0, reason="raw sockets need root")
@pytest.mark.parametrize("interface, vrf, bound", [(None, "lo", b"lo"), (None, None, b""),
                                                    ("lo", "ignored", b"lo")])
def test_the_socket_of_an_interfaceless_instance_is_bound_to_its_vrf(interface, vrf, bound):
    """This kernel has no VRF driver: the binding is read back on a real socket, with lo
    standing in for the VRF device."""
    sock = VrrpSocket(interface, 4, None, vrf=vrf if interface is None else None).open()
    try:
        got = sock.sock.getsockopt(socket.SOL_SOCKET, SO_BINDTODEVICE, 16).rstrip(b"\0")
        assert got == bound
    finally:
        sock.close()


def test_linkbeat_reads_the_link_from_the_driver(lab):
    """ETHTOOL_GLINK on a veth follows its peer: the switch's end down is link down."""
    switch = lab.switch()
    host = lab.host("a", [(switch, "eth0", ["192.0.2.1/24"])])
    probe = [sys.executable, "-c", "from director.vrrp.tracking import ethtool_link, "
             "interface_up; print(ethtool_link('eth0'), interface_up('eth0', True))"]

    def read() -> str:
        return host.run(probe, cwd=ROOT).stdout.strip()

    assert read() == "True True"
    peer = ["ip", "-n", switch.ns, "link", "set", "dev", switch.port(host, "eth0")]
    subprocess.run(peer + ["down"], check=True, timeout=10)
    wait_for(lambda: read() == "False False", 5, message=read)
    subprocess.run(peer + ["up"], check=True, timeout=10)
    wait_for(lambda: read() == "True True", 5, message=read)
