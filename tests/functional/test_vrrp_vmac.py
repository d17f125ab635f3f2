"""use_vmac in network namespaces on a bridge, with Debian's keepalived 2.2.7 as the peer.

A client on the same bridge resolves the VIP to the virtual MAC (00:00:5e:00:01:VRID, IPv6
00:00:5e:00:02:VRID) and keeps that entry through failovers both ways (director MASTER ->
keepalived, keepalived -> director): its traffic reaches each new MASTER and it never asks
for the VIP again by broadcast (ARP) or multicast (NS), watched by a capture on the client.

The keepalived host gets net.ipv4.conf.eth0.arp_announce=2, which director sets itself on a
VMAC's base: without it, the MASTER asks for the client's MAC from its base interface naming
the VIP ("who has 192.0.2.50? tell 192.0.2.100"), and the client moves its entry for the VIP
to the base's MAC (keepalived 2.2.7 does this out of the box; seen here).

Also: the VMAC is made (a leftover with the wrong MAC and mode fixed), shown by /api/v1/state
and the dashboard, removed by a reload that removes its instance and on stop, its base's
sysctls put back; a reload whose VMAC cannot be made fails with nothing changed, one that
changes its MAC remakes it; vmac_xmit_base moves the adverts' source MAC to the base's (a
capture on the client); use_vmac_addr and garp_extra_if; a VMAC set down is a FAULT, a deleted
one is made again. Addresses: 192.0.2.0/24, 2001:db8::/64, inside the namespaces only; every
wait has a deadline.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

import pytest

from tests.functional.browser import Browser, unavailable as browser_unavailable
from tests.functional.lab import start_keepalived, wait_for
from tests.functional.test_vrrp_failover import FAST_INTERVAL, fast_down

pytestmark = [pytest.mark.netns, pytest.mark.slow, pytest.mark.timeout(240)]

ROOT = Path(__file__).resolve().parents[2]
VMAC = "vrrp.51"
FAMILY = {
    4: {"vip": "192.0.2.100", "prefix": 24, "mac": "00:00:5e:00:01:33"},
    6: {"vip": "2001:db8::100", "prefix": 64, "mac": "00:00:5e:00:02:33"},
}

# Runs in the client: counts the client's own requests to resolve VIP: ARP requests (opcode 1,
# target VIP) and neighbour solicitations (ICMPv6 135, target VIP), split by whether they went
# to a broadcast / multicast MAC (a new resolution) or to a unicast one (a reachability probe
# of the entry it has). Also the source MAC of the first VRRP advert seen. Stops when the
# file argv[3] exists or after argv[2] seconds; "READY" once bound, JSON at the end.
CAPTURE = r"""
import ipaddress, json, os, select, socket, sys, time
vip, limit, stop = ipaddress.ip_address(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
s.bind(("eth0", 3))
print("READY", flush=True)
counts = {"group": 0, "unicast": 0}
advert_mac = None
end = time.monotonic() + limit
while time.monotonic() < end and not os.path.exists(stop):
    if not select.select([s], [], [], 0.1)[0]:
        continue
    frame, addr = s.recvfrom(65535)
    kind = int.from_bytes(frame[12:14], "big")
    group = bool(frame[0] & 1)
    if kind == 0x0800 and frame[23] == 112 and advert_mac is None:
        advert_mac = frame[6:12].hex(":")
        print("ADVERT", advert_mac, flush=True)
    if addr[2] != socket.PACKET_OUTGOING:
        continue
    if kind == 0x0806 and frame[20:22] == b"\0\1" and frame[38:42] == vip.packed:
        counts["group" if group else "unicast"] += 1
    if kind == 0x86DD and frame[20] == 58 and frame[54] == 135 and frame[62:78] == vip.packed:
        counts["group" if group else "unicast"] += 1
print(json.dumps({"counts": counts, "advert_mac": advert_mac}), flush=True)
"""

API = r"""
import json, sys, urllib.request
print(urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/api/v1/state", timeout=5).read().decode())
"""


def config(priority: int, family: int = 4, extra: str = "use_vmac\n", name: str = "VI_1",
           vrid: int = 51, vip: str | None = None) -> str:
    """VRRPv3 every 0.2 s (FAST_INTERVAL), both families: the VMAC is the point, and each wait
    for a MASTER is then ~0.7 s, not ~3.4 s."""
    f = FAMILY[family]
    return (f"vrrp_instance {name} {{\n    interface eth0\n    virtual_router_id {vrid}\n"
            f"    priority {priority}\n    advert_int {FAST_INTERVAL}\n    version 3\n"
            f"    {extra}    virtual_ipaddress {{\n        {vip or f['vip']}/{f['prefix']}\n"
            "    }\n}\n")


def start_director(lab, host, text: str, name: str, web: int | None = None):
    folder = Path(lab.tmp) / name
    folder.mkdir(exist_ok=True)
    (folder / "keepalived.conf").write_text(text)
    proc = host.popen([sys.executable, "-m", "director", "-f", str(folder / "keepalived.conf"),
                       "-P", "-l", "-n", "-D", "--web", f"127.0.0.1:{web}" if web else "off",
                       "--state-dir", str(folder / "state"), "-p", str(folder / "director.pid")],
                      log_path=str(folder / "log"), env=dict(os.environ, PYTHONPATH=str(ROOT)))
    proc.conf = folder / "keepalived.conf"
    return proc


def on(host, ifname: str, address: str):
    def check() -> bool:
        try:
            return host.has_address(ifname, address)
        except Exception:                  # the interface is not there (yet, or any more)
            return False
    return check


def link(host, ifname: str) -> dict | None:
    done = host.run(["ip", "-j", "-d", "link", "show", "dev", ifname], check=False)
    return json.loads(done.stdout)[0] if done.returncode == 0 else None


def sysctl(host, path: str) -> str:
    return host.run(["cat", f"/proc/sys/net/{path}"]).stdout.strip()


def answered(client, vip: str):
    return lambda: client.ping(vip, count=1, timeout=0.5)


class Capture:
    def __init__(self, lab, client, vip: str):
        self.stop = Path(lab.tmp) / f"stop-{os.getpid()}-{id(self)}"
        self.proc = client.popen([sys.executable, "-u", "-c", CAPTURE, vip, "120",
                                  str(self.stop)], log_path=str(self.stop) + ".log")
        self.log = Path(str(self.stop) + ".log")
        wait_for(lambda: "READY" in self.log.read_text(), 10, message="capture not ready")

    def advert_seen(self) -> bool:
        return "ADVERT" in self.log.read_text()

    def result(self) -> dict:
        self.stop.touch()
        self.proc.wait(10)
        return json.loads(self.log.read_text().splitlines()[-1])


@pytest.fixture
def net(lab):
    switch = lab.switch()
    hosts = [lab.host(name, [(switch, "eth0", [f"192.0.2.{n}/24", f"2001:db8::{n}/64"])])
             for name, n in (("a", 1), ("b", 2), ("c", 50))]
    return hosts


@pytest.mark.parametrize("family", [4, 6])
def test_the_client_keeps_the_virtual_mac_across_failovers_with_keepalived(lab, net, family):
    a, b, client = net
    vip, mac = FAMILY[family]["vip"], FAMILY[family]["mac"]
    b.run(["sysctl", "-qw", "net.ipv4.conf.eth0.arp_announce=2"])
    ours = start_director(lab, a, config(150, family), "a")
    peer = start_keepalived(b, config(100, family))
    wait_for(on(a, VMAC, vip), fast_down(150) + 5, message=lambda: lab.log_of(ours))
    wait_for(lambda: (link(b, VMAC) or {}).get("address") == mac, 10,
             message=lambda: f"keepalived made no {VMAC}\n{lab.log_of(peer)}")
    assert link(a, VMAC)["address"] == mac
    assert link(a, VMAC)["linkinfo"]["info_data"]["mode"] == "private"
    wait_for(answered(client, vip), 10, message="the client never reached the VIP")
    assert client.neighbour(vip) == mac
    capture = Capture(lab, client, vip)

    # director MASTER -> keepalived: a stop hands over (priority 0) and removes the VMAC
    ours.send_signal(signal.SIGTERM)
    assert ours.wait(10) == 0, lab.log_of(ours)
    assert link(a, VMAC) is None, "the VMAC outlived the daemon"
    wait_for(on(b, VMAC, vip), 5, message=lambda: lab.log_of(peer))
    wait_for(answered(client, vip), 10, message="the client lost the VIP on keepalived")
    assert client.neighbour(vip) == mac

    # keepalived MASTER -> director: a higher priority preempts
    again = start_director(lab, a, config(150, family), "a2")
    wait_for(on(a, VMAC, vip), fast_down(150) + 5, message=lambda: lab.log_of(again))
    wait_for(lambda: not on(b, VMAC, vip)(), 5, message="keepalived kept the VIP")
    wait_for(answered(client, vip), 10, message="the client lost the VIP on director")
    assert client.neighbour(vip) == mac
    seen = capture.result()
    assert seen["counts"]["group"] == 0, f"the client resolved the VIP again: {seen}"


def dashboard_shows_the_vmac(host, tmp_path) -> None:
    """The instance's card names its VMAC (a browser in the host; skipped without one)."""
    if browser_unavailable():
        print(f"dashboard not checked: {browser_unavailable()}")
        return
    browser = Browser.in_host(host)
    try:
        browser.get("http://127.0.0.1:18080/")
        card = '[data-instance="VI_1"] [data-vmac="vrrp.51"]'
        shown = lambda: browser.eval(f"const e = document.querySelector({json.dumps(card)}); "
                                     "return e ? e.textContent : null;")
        wait_for(lambda: shown() == "vrrp.51 macvlan 00:00:5e:00:01:33 on eth0 up", 10,
                 message=lambda: browser.eval("return document.body.innerText"))
        browser.screenshot(tmp_path / "dashboard-vmac.png")
    finally:
        browser.quit()


def test_vmac_made_shown_and_removed_by_a_reload_and_a_failed_one_changes_nothing(lab, net,
                                                                                     tmp_path):
    a = net[0]
    # a leftover of a crash: same name, wrong MAC and mode
    a.run(["ip", "link", "add", "link", "eth0", "name", VMAC, "address", "02:00:00:00:00:99",
           "type", "macvlan", "mode", "bridge"])
    before = {key: sysctl(a, f"ipv4/conf/eth0/{key}")
              for key in ("arp_ignore", "arp_filter", "arp_announce")}
    assert before == {"arp_ignore": "0", "arp_filter": "0", "arp_announce": "0"}
    keep = config(150, extra="", name="VI_KEEP", vrid=60, vip="192.0.2.160")
    ours = start_director(lab, a, config(150) + keep, "api", web=18080)
    wait_for(on(a, VMAC, "192.0.2.100"), fast_down(150) + 5,
             message=lambda: lab.log_of(ours))
    assert link(a, VMAC)["address"] == "00:00:5e:00:01:33"
    assert link(a, VMAC)["linkinfo"]["info_data"]["mode"] == "private"
    assert {key: sysctl(a, f"ipv4/conf/eth0/{key}") for key in before} == \
        {"arp_ignore": "1", "arp_filter": "1", "arp_announce": "2"}
    assert sysctl(a, f"ipv4/conf/{VMAC}/arp_ignore") == "1"
    assert sysctl(a, f"ipv6/conf/{VMAC}/addr_gen_mode") == "1"

    def state() -> dict:
        done = a.run([sys.executable, "-c", API, "18080"], check=False)
        return json.loads(done.stdout) if done.returncode == 0 else {}

    wait_for(lambda: state().get("vrrp"), 10, message=lambda: lab.log_of(ours))
    instances = {i["name"]: i for i in state()["vrrp"]["instances"]}
    assert instances["VI_1"]["vmacs"] == [{"name": VMAC, "kind": "macvlan", "base": "eth0",
                                           "mac": "00:00:5e:00:01:33", "up": True}]
    assert instances["VI_KEEP"]["vmacs"] == []
    dashboard_shows_the_vmac(a, tmp_path)

    # a VMAC that cannot be made (the name of an interface that is no macvlan): refused,
    # nothing changed
    ours.conf.write_text(config(150) + keep +
                         config(150, extra="use_vmac lo\n", name="VI_2", vrid=52,
                                vip="192.0.2.152"))
    ours.send_signal(signal.SIGHUP)
    wait_for(lambda: "reload.refused" in lab.log_of(ours), 10, message=lambda: lab.log_of(ours))
    assert "no macvlan" in lab.log_of(ours)
    assert on(a, VMAC, "192.0.2.100")() and link(a, "lo")["link_type"] == "loopback"

    # a reload that changes the VMAC's MAC remakes it; the restarted instance advertises on
    # the new one (its socket is new too)
    ours.conf.write_text(config(150, extra="use_vmac 02:00:00:00:00:\n") + keep)
    ours.send_signal(signal.SIGHUP)
    wait_for(lambda: (link(a, VMAC) or {}).get("address") == "02:00:00:00:00:33", 10,
             message=lambda: lab.log_of(ours))
    wait_for(on(a, VMAC, "192.0.2.100"), fast_down(150) + 5,
             message=lambda: lab.log_of(ours))
    counters = lambda: {i["name"]: i for i in state()["vrrp"]["instances"]}["VI_1"]["counters"]
    # None failed: not the old instance's (its VMAC is replaced once it has gone: before,
    # one of its adverts failed with ENODEV in about one run of four), nor the new one's.
    sent = counters()["adverts_sent"]
    wait_for(lambda: counters()["adverts_sent"] >= sent + 2, 5, message=lambda: lab.log_of(ours))
    assert counters()["send_errors"] == 0, lab.log_of(ours)[-4000:]

    # the reload that removes the instance removes its VMAC and puts the base's sysctls back
    ours.conf.write_text(keep)
    ours.send_signal(signal.SIGHUP)
    wait_for(lambda: link(a, VMAC) is None, 10, message=lambda: lab.log_of(ours))
    wait_for(lambda: {key: sysctl(a, f"ipv4/conf/eth0/{key}") for key in before} == before, 5,
             message="the base's sysctls were not put back")
    assert on(a, "eth0", "192.0.2.160")()
    ours.send_signal(signal.SIGTERM)
    assert ours.wait(10) == 0


def test_a_refused_reload_leaves_a_vmac_it_would_have_remade_as_it_was(lab, net):
    """Nothing changes when a reload is refused: also not a VMAC the new file gives another
    MAC, when a later instance of the same file cannot be prepared (its use_vmac names an
    interface that is no macvlan). The running MASTER keeps its VMAC, its MAC and its
    adverts, without a send error."""
    a = net[0]
    keep = config(150, extra="", name="VI_KEEP", vrid=60, vip="192.0.2.160")
    ours = start_director(lab, a, config(150) + keep, "refused", web=18081)
    wait_for(on(a, VMAC, "192.0.2.100"), fast_down(150) + 5, message=lambda: lab.log_of(ours))
    index = link(a, VMAC)["ifindex"]

    def counters() -> dict:
        done = a.run([sys.executable, "-c", API, "18081"], check=False)
        state = json.loads(done.stdout) if done.returncode == 0 else {}
        found = {i["name"]: i for i in (state.get("vrrp") or {}).get("instances", [])}
        return found.get("VI_1", {}).get("counters", {})

    wait_for(lambda: counters().get("adverts_sent", 0) > 0, 10, message=lambda: lab.log_of(ours))
    # both instances change, VI_1 first: its VMAC is prepared before VI_KEEP's fails
    ours.conf.write_text(config(150, extra="use_vmac 02:00:00:00:00:\n") +
                         config(150, extra="use_vmac lo\n", name="VI_KEEP", vrid=60,
                                vip="192.0.2.160"))
    ours.send_signal(signal.SIGHUP)
    wait_for(lambda: "reload.refused" in lab.log_of(ours), 10, message=lambda: lab.log_of(ours))
    assert link(a, VMAC)["address"] == "00:00:5e:00:01:33", lab.log_of(ours)[-3000:]
    assert link(a, VMAC)["ifindex"] == index
    sent = counters()["adverts_sent"]
    wait_for(lambda: counters()["adverts_sent"] >= sent + 5, 5, message=lambda: lab.log_of(ours))
    assert counters()["send_errors"] == 0, lab.log_of(ours)[-3000:]


@pytest.mark.parametrize("xmit_base", [False, True])
def test_vmac_xmit_base_moves_the_adverts_to_the_base_mac(lab, net, xmit_base):
    a, _, client = net
    extra = "use_vmac\n    vmac_xmit_base\n" if xmit_base else "use_vmac\n"
    capture = Capture(lab, client, FAMILY[4]["vip"])
    ours = start_director(lab, a, config(150, extra=extra), "xmit")
    wait_for(on(a, VMAC, "192.0.2.100"), fast_down(150) + 5,
             message=lambda: lab.log_of(ours))
    wait_for(answered(client, "192.0.2.100"), 10, message="the client never reached the VIP")
    wait_for(capture.advert_seen, 5, message=lambda: lab.log_of(ours))
    seen = capture.result()
    assert seen["advert_mac"] == (a.mac("eth0") if xmit_base else FAMILY[4]["mac"]), seen
    assert client.neighbour("192.0.2.100") == FAMILY[4]["mac"]   # the VIPs stay on the VMAC


# Runs in the client: one line per gratuitous ARP / unsolicited NA (no S flag) received,
# "MAC TARGET",
# until the file argv[2] exists or argv[1] seconds passed; "READY" once bound.
ANNOUNCEMENTS = r"""
import ipaddress, os, select, socket, sys, time
limit, stop = float(sys.argv[1]), sys.argv[2]
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
s.bind(("eth0", 3))
print("READY", flush=True)
end = time.monotonic() + limit
while time.monotonic() < end and not os.path.exists(stop):
    if not select.select([s], [], [], 0.1)[0]:
        continue
    frame, addr = s.recvfrom(65535)
    kind, mac = int.from_bytes(frame[12:14], "big"), frame[6:12].hex(":")
    if kind == 0x0806 and frame[28:32] == frame[38:42]:
        print(mac, ipaddress.IPv4Address(frame[38:42]), flush=True)
    if kind == 0x86DD and frame[20] == 58 and frame[54] == 136 and not frame[58] & 0x40:
        print(mac, ipaddress.IPv6Address(frame[62:78]), flush=True)
"""


@pytest.mark.parametrize("extra_if", [False, True])
def test_use_vmac_addr_and_garp_extra_if(lab, net, extra_if):
    """use_vmac_addr: the IPv6 eVIP of an IPv4 instance gets a VMAC of its own (vrrp6.51,
    00:00:5e:00:02:33) and the client reaches it through that MAC; garp_extra_if 1 refreshes
    it every second while MASTER (the adverts only refresh vrrp.51's MAC): one NA a second
    after the transition's one, none without it."""
    a, _, client = net
    extra = ("use_vmac\n    use_vmac_addr\n    garp_master_delay 0\n    garp_master_repeat 1\n"
             + ("    garp_extra_if 1\n" if extra_if else "") +
             "    virtual_ipaddress_excluded {\n        2001:db8::200/64\n    }\n")
    stop = Path(lab.tmp) / f"stop-announcements-{extra_if}"
    watcher = client.popen([sys.executable, "-u", "-c", ANNOUNCEMENTS, "60", str(stop)],
                           log_path=str(stop) + ".log")
    log = Path(str(stop) + ".log")
    wait_for(lambda: "READY" in log.read_text(), 10, message="capture not ready")
    ours = start_director(lab, a, config(150, extra=extra), "addr")
    wait_for(on(a, "vrrp6.51", "2001:db8::200"), fast_down(150) + 5,
             message=lambda: lab.log_of(ours))
    assert link(a, "vrrp6.51")["address"] == "00:00:5e:00:02:33"
    assert on(a, VMAC, "192.0.2.100")()
    wait_for(answered(client, "2001:db8::200"), 10, message="the client never reached the eVIP")
    assert client.neighbour("2001:db8::200") == "00:00:5e:00:02:33"

    def nas() -> int:
        return log.read_text().count("00:00:5e:00:02:33 2001:db8::200")

    if extra_if:
        wait_for(lambda: nas() >= 4, 8, message=lambda: log.read_text())
    else:
        end = time.monotonic() + 3
        while time.monotonic() < end:
            assert nas() <= 1, log.read_text()
            time.sleep(0.1)
    stop.touch()
    watcher.wait(10)


def test_a_vmac_set_down_behind_the_daemon_is_a_fault(lab, net):
    """As in keepalived, the instance tracks its VMAC: set down, the MASTER goes FAULT (its
    VIP leaves, a peer can take over); up again, it comes back."""
    a = net[0]
    ours = start_director(lab, a, config(150), "down")
    wait_for(on(a, VMAC, "192.0.2.100"), fast_down(150) + 5,
             message=lambda: lab.log_of(ours))
    a.run(["ip", "link", "set", VMAC, "down"])
    wait_for(lambda: "from=MASTER to=FAULT" in lab.log_of(ours), 5,
             message=lambda: lab.log_of(ours))
    a.run(["ip", "link", "set", VMAC, "up"])
    wait_for(lambda: "from=FAULT to=BACKUP" in lab.log_of(ours), 5,
             message=lambda: lab.log_of(ours))
    wait_for(on(a, VMAC, "192.0.2.100"), fast_down(150) + 5,
             message=lambda: lab.log_of(ours))


def test_a_vmac_deleted_behind_the_daemon_is_made_again(lab, net):
    """As keepalived does: the instance goes FAULT, the VMAC comes back with its MAC, the
    instance is MASTER on it again and advertises through it (a new socket)."""
    a, _, client = net
    ours = start_director(lab, a, config(150), "deleted")
    wait_for(on(a, VMAC, "192.0.2.100"), fast_down(150) + 5,
             message=lambda: lab.log_of(ours))
    a.run(["ip", "link", "del", VMAC])
    wait_for(lambda: "from=MASTER to=FAULT" in lab.log_of(ours), 5,
             message=lambda: lab.log_of(ours))
    wait_for(lambda: (link(a, VMAC) or {}).get("address") == FAMILY[4]["mac"], 5,
             message=lambda: lab.log_of(ours))
    wait_for(on(a, VMAC, "192.0.2.100"), fast_down(150) + 5,
             message=lambda: lab.log_of(ours))
    capture = Capture(lab, client, "192.0.2.100")
    wait_for(answered(client, "192.0.2.100"), 10, message="the client lost the VIP")
    wait_for(capture.advert_seen, 5, message=lambda: lab.log_of(ours))
    seen = capture.result()
    assert seen["advert_mac"] == FAMILY[4]["mac"], seen
    # the FAULT's advert had no interface left to go out on; none failed since it came back
    assert "vrrp.send_error" not in lab.log_of(ours).rsplit("vrrp.vmac_up", 1)[1]
