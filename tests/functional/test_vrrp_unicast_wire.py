"""Unicast VRRP on the wire against Debian's keepalived 2.2.7 (issue 14, part G), both
directions (ours MASTER / keepalived BACKUP and the reverse):

* check_unicast_src: a third host, not in unicast_peer, sends higher-priority adverts to the
  MASTER; both daemons drop them (ours counts 'unicast_src', keepalived logs "not a unicast
  peer") and the MASTER stays; the listed peer's adverts work (the BACKUP stays BACKUP).
* unicast_ttl 200 on both sides, each peer listed with min_ttl 200 max_ttl 200: the adverts
  captured on the BACKUP carry TTL 200, and the receiver (keepalived, or ours) accepts them.

VRRPv3 every 0.2 s (FAST_INTERVAL): the wait for the MASTER and the BACKUP's watch are master
down intervals, ~0.7 s each, not ~3.4 s at 1 s.
"""

from __future__ import annotations

import shutil
import sys
import time

import pytest

from director.vrrp.packet import Advert, encode
from tests.functional.lab import start_keepalived, wait_for
from tests.functional.test_vrrp_failover import (FAST_INTERVAL, fast_down, start_director,
                                                 stats)

pytestmark = [pytest.mark.netns, pytest.mark.slow, pytest.mark.timeout(120)]

VIP = "192.0.2.100"
ADDRESS = {"a": "192.0.2.1", "b": "192.0.2.2", "x": "192.0.2.3"}
TTL = 200

FORGER = """
import socket, sys, time
packet, destination = bytes.fromhex(sys.argv[1]), sys.argv[2]
sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, 112)
sock.setsockopt(socket.SOL_SOCKET, 25, b"eth0")
sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, 200)
for _ in range(int(sys.argv[3])):                   # bounded
    sock.sendto(packet, (destination, 0))
    time.sleep(0.1)
"""


def config(me: str, peer: str, priority: int) -> str:
    return (f"vrrp_instance VI_1 {{\n    interface eth0\n    virtual_router_id 51\n"
            f"    priority {priority}\n    advert_int {FAST_INTERVAL}\n    version 3\n"
            f"    unicast_src_ip {ADDRESS[me]}\n"
            f"    unicast_peer {{\n        {ADDRESS[peer]} min_ttl {TTL} max_ttl {TTL}\n    }}\n"
            f"    unicast_ttl {TTL}\n    check_unicast_src\n"
            f"    virtual_ipaddress {{\n        {VIP}/24\n    }}\n}}\n")


def start(lab, host, kind, text):
    if kind == "ours":
        return start_director(lab, host, text, host.name)
    return start_keepalived(host, text, name="keepalived")


def forged(destination: str) -> str:
    """A higher-priority advert from x, checksummed right for its unicast destination."""
    return encode(Advert(3, 51, 254, FAST_INTERVAL, (VIP,), 4), ADDRESS["x"],
                  destination).hex()


@pytest.mark.parametrize("master_kind,backup_kind", [("ours", "keepalived"),
                                                     ("keepalived", "ours")])
def test_check_unicast_src_and_unicast_ttl(lab, master_kind, backup_kind):
    if shutil.which("tshark") is None:
        pytest.skip("tshark is not installed")
    switch = lab.switch()
    a, b, x = (lab.host(name, [(switch, "eth0", [f"{ADDRESS[name]}/24"])])
               for name in ("a", "b", "x"))
    capture = b.popen(["tshark", "-i", "eth0", "-l", "-n", "-f",
                       f"ip proto 112 and src host {ADDRESS['a']}", "-T", "fields",
                       "-e", "ip.ttl"])
    wait_for(lambda: "Capturing on" in lab.log_of(capture), 20,
             message=lambda: lab.log_of(capture))
    master = start(lab, a, master_kind, config("a", "b", 150))
    wait_for(lambda: a.has_address("eth0", VIP), fast_down(150) + 3,
             message=lambda: lab.log_of(master))
    backup = start(lab, b, backup_kind, config("b", "a", 100))

    def logs():
        return f"--- A ---\n{lab.log_of(master)}\n--- B ---\n{lab.log_of(backup)}"

    # the listed peer works: B, up, stays BACKUP through more than a master down interval
    wait_for(lambda: "to=BACKUP" in lab.log_of(backup) or
             "Entering BACKUP STATE" in lab.log_of(backup), 10, message=logs)
    end = time.monotonic() + fast_down(100) + 1
    while time.monotonic() < end:
        assert not b.has_address("eth0", VIP), logs()
        time.sleep(0.1)
    ttls = [line.strip() for line in lab.log_of(capture).splitlines() if line.strip().isdigit()]
    assert len(ttls) >= 3 and set(ttls) == {str(TTL)}, ttls

    # x is not a peer: its adverts (priority 254, TTL 200) are dropped by A and by B
    for host_kind, proc, target in ((master_kind, master, "a"), (backup_kind, backup, "b")):
        x.run([sys.executable, "-c", FORGER, forged(ADDRESS[target]), ADDRESS[target], "4"],
              timeout=20)
    assert a.has_address("eth0", VIP) and not b.has_address("eth0", VIP), logs()
    for kind, proc in ((master_kind, master), (backup_kind, backup)):
        if kind == "ours":
            wait_for(lambda: stats(lab, proc)["VI_1"]["dropped"].get("unicast_src", 0) >= 4, 5,
                     message=logs)
            assert "to=BACKUP reason=higher_priority" not in lab.log_of(proc), logs()
        else:
            wait_for(lambda: lab.log_of(proc).count(
                f"unicast source address {ADDRESS['x']} not a unicast peer") >= 4, 5,
                message=logs)
    # and A kept advertising throughout: B never took over
    assert "Entering MASTER STATE" not in lab.log_of(backup) and \
        "to=MASTER" not in lab.log_of(backup), logs()
