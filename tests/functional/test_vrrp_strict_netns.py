"""Strict mode and accept mode in network namespaces, director against Debian's keepalived
2.2.7 (both with vrrp_strict), each side as the MASTER in turn, so that what a client sees
is compared between the two daemons:

* no_accept (strict mode's default below priority 255): the MASTER holds the VIP and answers
  its ARP, but a client's ping and TCP connection to the VIP get no answer; the drop rule is
  in table ip keepalived (set vips) on the MASTER only; after a failover the rule follows the
  VIP, and a daemon stopped with SIGTERM leaves no table behind; ``nft list`` shows the
  two daemons' tables (ip and ip6) alike, line for line;
* accept (VRRPv3): the same client gets its answers;
* the address owner (priority 255) always answers.

Waits have deadlines; the client's probes are bounded (one ping, a 1 s connect). VRRPv3
every 0.2 s (fast_config): each failover waits a master down interval of ~0.7 s.
"""

from __future__ import annotations

import json
import shutil
import signal
import sys

import pytest

from tests.functional.lab import start_keepalived, wait_for
from tests.functional.test_vrrp_failover import (ROOT, VIP, down_interval, fast_config,
                                                 fast_down, start_director, vrrp_config)

pytestmark = [pytest.mark.netns, pytest.mark.slow, pytest.mark.timeout(180)]

PORT = 8080
STRICT = "global_defs {\n    vrrp_strict\n}\n"
LISTENER = ("import socket\ns = socket.socket(socket.AF_INET6)\n"
            "s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)\n"
            "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
            f"s.bind(('::', {PORT}))\ns.listen(8)\n"
            "while True:\n    c, _ = s.accept(); c.sendall(b'hi'); c.close()\n")


@pytest.fixture
def hosts(lab):
    switch = lab.switch()
    a, b, c = (lab.host(name, [(switch, "eth0", [f"192.0.2.{n}/24", f"2001:db8::{n}/64"])])
               for name, n in (("a", 1), ("b", 2), ("c", 50)))
    for host in (a, b):      # a TCP service on every address of the routers, the VIP too
        host.popen([sys.executable, "-c", LISTENER], log_path=lab.tmp / f"{host.name}-tcp.log")
    return a, b, c


def start(lab, host, kind: str, text: str, tag: str):
    if kind == "ours":
        return start_director(lab, host, text, f"{host.name}-{tag}")
    return start_keepalived(host, text, name=f"keepalived-{tag}")


# One ICMP echo request, a reply within 1 s or exit 1 (there is no ping(8) here).
PING = """import os, socket, struct, sys, time
six = ':' in sys.argv[1]
s = socket.socket(socket.AF_INET6 if six else socket.AF_INET, socket.SOCK_RAW,
                  socket.IPPROTO_ICMPV6 if six else socket.IPPROTO_ICMP)
body = struct.pack('!BBHHH', 128 if six else 8, 0, 0, os.getpid() & 0xffff, 1) + b'strict'
if not six:                # the kernel sums ICMPv6 itself
    total = sum(struct.unpack('!%dH' % (len(body) // 2), body))
    total = (total & 0xffff) + (total >> 16)
    body = body[:2] + struct.pack('!H', ~(total + (total >> 16)) & 0xffff) + body[4:]
s.sendto(body, (sys.argv[1], 0))
end = time.monotonic() + 1
while time.monotonic() < end:
    s.settimeout(max(0.01, end - time.monotonic()))
    try:
        data, peer = s.recvfrom(1500)
    except socket.timeout:
        break
    if peer[0] == sys.argv[1] and (data[0] == 129 if six else data[20] == 0):
        sys.exit(0)
sys.exit(1)
"""


def pings(client, address=VIP) -> bool:
    return client.run([sys.executable, "-c", PING, address], check=False,
                      timeout=10).returncode == 0


def connects(client, address=VIP) -> bool:
    probe = (f"import socket\nc = socket.create_connection(('{address}', {PORT}), "
             "timeout=1)\n"
             "assert c.recv(2) == b'hi'\n")
    return client.run([sys.executable, "-c", probe], check=False, timeout=10).returncode == 0


def blocked(host, family="ip") -> str | None:
    """table ip (or ip6) keepalived as nft lists it, None when there is none."""
    listed = host.run(["nft", "list", "table", family, "keepalived"], check=False)
    return listed.stdout if listed.returncode == 0 else None


def blocks_vip(host, vip=VIP) -> bool:
    family = "ip6" if ":" in vip else "ip"
    table = blocked(host, family)
    return table is not None and f"{family} daddr @vips drop" in table and vip in table


def answered(client, vip=VIP) -> tuple[bool, bool]:
    """(ping, TCP) to the VIP, after the routers' own addresses proved the path works."""
    prefix = "2001:db8::" if ":" in vip else "192.0.2."
    wait_for(lambda: pings(client, f"{prefix}1") and pings(client, f"{prefix}2"), 10,
             message="the client cannot reach the routers' own addresses")
    return pings(client, vip), connects(client, vip)


def other(kind: str) -> str:
    return "keepalived" if kind == "ours" else "ours"


@pytest.mark.parametrize("master_kind", ["ours", "keepalived"])
def test_no_accept_master_answers_nothing_and_the_rule_follows_the_vip(lab, hosts,
                                                                       master_kind):
    a, b, c = hosts
    high = STRICT + fast_config(150)
    low = STRICT + fast_config(100)
    master = start(lab, a, master_kind, high, "high")
    backup = start(lab, b, other(master_kind), low, "low")
    wait_for(lambda: a.has_address("eth0", VIP) and blocks_vip(a), fast_down(150) + 5,
             message=lambda: f"A is not a blocking MASTER\n{blocked(a)}\n{lab.log_of(master)}")
    assert answered(c) == (False, False), f"{master_kind} MASTER answered with no_accept"
    assert c.neighbour(VIP) == a.mac("eth0")       # ARP still answered: the VIP routes
    assert not blocks_vip(b), f"the BACKUP drops the VIP\n{blocked(b)}"
    table = blocked(a)
    master.send_signal(signal.SIGTERM)
    assert master.wait(10) == 0
    wait_for(lambda: b.has_address("eth0", VIP) and blocks_vip(b), fast_down(100) + 3,
             message=lambda: f"the rule did not follow the VIP\n{blocked(b)}\n"
                             f"{lab.log_of(backup)}")
    assert blocked(a) is None, f"{master_kind} left its table at stop:\n{blocked(a)}"
    assert blocked(b) == table, "the two daemons' tables differ"     # nft's listing, whole
    assert answered(c) == (False, False), f"{other(master_kind)} MASTER answered"
    backup.send_signal(signal.SIGTERM)
    assert backup.wait(10) == 0
    assert blocked(b) is None, f"{other(master_kind)} left its table at stop"


@pytest.mark.parametrize("master_kind", ["ours", "keepalived"])
def test_accept_mode_answers(lab, hosts, master_kind):
    a, b, c = hosts
    accept = "    accept\n"
    master = start(lab, a, master_kind,
                   STRICT + fast_config(150, extra=accept), "high")
    start(lab, b, other(master_kind),
          STRICT + fast_config(100, extra=accept), "low")
    wait_for(lambda: a.has_address("eth0", VIP), fast_down(150) + 5,
             message=lambda: lab.log_of(master))
    assert answered(c) == (True, True), f"{master_kind} MASTER in accept mode did not answer"
    assert not blocks_vip(a)


@pytest.mark.parametrize("master_kind", ["ours", "keepalived"])
def test_the_address_owner_always_answers(lab, hosts, master_kind):
    a, b, c = hosts
    master = start(lab, a, master_kind, STRICT + fast_config(255),
                   "owner")
    start(lab, b, other(master_kind), STRICT + fast_config(100),
          "low")
    wait_for(lambda: a.has_address("eth0", VIP), fast_down(255) + 5,
             message=lambda: lab.log_of(master))
    assert answered(c) == (True, True), f"{master_kind} owner did not answer"
    assert not blocks_vip(a)


def test_a_reload_turns_accept_mode_off_and_on(lab, hosts):
    """accept -> no_accept -> accept by SIGHUP on a running MASTER (VRRPv3, strict): the
    instance keeps its role (keepalived's restore_vrrp_state, which changes the firewall
    entries of a kept MASTER: clear_diff_vrrp_vip), the table comes and goes."""
    a, _, c = hosts
    folder = lab.tmp / "a-reload"
    accept = STRICT + fast_config(150, extra="    accept\n")
    master = start_director(lab, a, accept, "a-reload")
    wait_for(lambda: a.has_address("eth0", VIP), fast_down(150) + 5,
             message=lambda: lab.log_of(master))
    assert answered(c) == (True, True) and blocked(a) is None
    (folder / "keepalived.conf").write_text(accept.replace("    accept\n", "    no_accept\n"))
    master.send_signal(signal.SIGHUP)
    wait_for(lambda: lab.log_of(master).count("role=MASTER kept=True") == 1 and
             a.has_address("eth0", VIP) and blocks_vip(a), fast_down(150) + 5,
             message=lambda: f"no_accept not applied\n{blocked(a)}\n{lab.log_of(master)}")
    assert answered(c) == (False, False)
    (folder / "keepalived.conf").write_text(accept)
    master.send_signal(signal.SIGHUP)
    # MASTER still, with its new block: the table goes
    wait_for(lambda: lab.log_of(master).count("role=MASTER kept=True") == 2 and
             a.has_address("eth0", VIP) and blocked(a) is None, fast_down(150) + 5,
             message=lambda: f"{blocked(a)}\n{lab.log_of(master)}")
    assert lab.log_of(master).count("to=MASTER") == 1, lab.log_of(master)
    assert answered(c) == (True, True)


def test_without_nft_a_no_accept_instance_does_not_start(lab, hosts):
    """Accept mode off that cannot be carried out is a start-up error in one line, before a
    VIP is added."""
    a, _, _ = hosts
    folder = lab.tmp / "a-no-nft"
    folder.mkdir()
    (folder / "keepalived.conf").write_text(STRICT + fast_config(150))
    empty = folder / "bin"            # ip(8) to enter the namespace, no nft
    empty.mkdir()
    (empty / "ip").symlink_to(shutil.which("ip"))
    proc = a.popen([sys.executable, "-m", "director", "-f", folder / "keepalived.conf", "-P",
                    "-l", "-n", "--web", "off", "--state-dir", folder / "state"],
                   log_path=folder / "log",
                   env={"PATH": str(empty), "PYTHONPATH": str(ROOT)})
    assert proc.wait(30) == 1, lab.log_of(proc)
    assert "director: accept mode off needs nftables: nft: No such file or directory" in \
        lab.log_of(proc)
    assert not a.has_address("eth0", VIP)


def test_the_api_and_the_dashboard_show_what_is_dropped(lab, hosts):
    from tests.functional.browser import Browser
    a, _, _ = hosts
    folder = lab.tmp / "a-web"
    folder.mkdir()
    (folder / "keepalived.conf").write_text(STRICT + fast_config(150))
    daemon = a.popen([sys.executable, "-m", "director", "-P", "-l", "-f",
                      folder / "keepalived.conf", "--web", "127.0.0.1:9090", "--state-dir",
                      folder / "state"], log_path=folder / "log", env={"PYTHONPATH": str(ROOT)})
    wait_for(lambda: a.has_address("eth0", VIP) and blocks_vip(a), fast_down(150) + 5,
             message=lambda: lab.log_of(daemon))
    fetch = ("import json, urllib.request\nprint(json.dumps(json.load(urllib.request.urlopen("
             "'http://127.0.0.1:9090/api/v1/state', timeout=5))['vrrp']['firewall']))")
    view = json.loads(a.run([sys.executable, "-c", fetch]).stdout)
    assert view == {"table": "keepalived", "families": ["ip"], "priority": -1,
                    "blocked": [VIP], "by_instance": {"VI_1": [VIP]}, "in_step": True,
                    "errors": 0, "last_error": None}
    browser = Browser.in_host(a)
    try:
        browser.get("http://127.0.0.1:9090/")
        wait_for(lambda: browser.eval(
            "const e = document.querySelector('[data-firewall=\"keepalived\"] "
            ".firewall-blocked'); return e ? e.textContent : null;") == VIP, 10,
                 message=lambda: browser.eval("return document.body.innerText"))
    finally:
        browser.quit()


@pytest.mark.parametrize("master_kind", ["ours", "keepalived"])
def test_ipv6_no_accept_drops_the_vips_but_neighbour_discovery_passes(lab, hosts,
                                                                       master_kind):
    """VRRPv3 over IPv6 (strict: the first VIP link-local): the global VIP is resolved by
    the client (ND passes the ip6 table) but neither pinged nor connected to."""
    # The adverts go from the interface's own link-local address (RFC 5798 5.1.2.1), as
    # keepalived's: once fe80::100 was up the kernel picked it, the master's own output
    # chain dropped every advert (EPERM, vrrp.send_error) and the backup took over.
    a, b, c = hosts
    vips = ("fe80::100/64", "2001:db8::100/64")
    master = start(lab, a, master_kind, STRICT + fast_config(150, vips=vips), "high")
    backup = start(lab, b, other(master_kind), STRICT + fast_config(100, vips=vips), "low")
    wait_for(lambda: a.has_address("eth0", "2001:db8::100") and
             blocks_vip(a, "2001:db8::100"), fast_down(150) + 5,
             message=lambda: f"{blocked(a, 'ip6')}\n{lab.log_of(master)}")
    own = a.run(["ip", "-6", "-o", "addr", "show", "dev", "eth0", "scope", "link"]).stdout
    adverts = c.run(["tshark", "-Q", "-i", "eth0", "-a", "duration:3", "-c", "3", "-f",
                     f"ether src {a.mac('eth0')} and ip6 proto 112 and dst ff02::12",
                     "-T", "fields", "-e", "ipv6.src"], check=False, timeout=15).stdout
    sources = set(adverts.split())
    assert sources and all(source in own and source != "fe80::100" for source in sources), \
        (adverts, own)
    table = blocked(a, "ip6")
    assert "icmpv6 type @neighbor-discovery accept" in table
    assert 'fe80::100 . "eth0"' in table, table
    assert answered(c, "2001:db8::100") == (False, False), f"{master_kind} answered"
    assert c.neighbour("2001:db8::100") == a.mac("eth0")
    assert "vrrp.send_error" not in lab.log_of(master) and not b.has_address(
        "eth0", "2001:db8::100"), lab.log_of(backup)[-2000:]
    master.send_signal(signal.SIGTERM)
    assert master.wait(10) == 0
    wait_for(lambda: blocks_vip(b, "2001:db8::100"), fast_down(100) + 3,
             message=lambda: f"{blocked(b, 'ip6')}")
    assert blocked(b, "ip6") == table, "the two daemons' ip6 tables differ"
