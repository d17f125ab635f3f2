"""A reload racing the receive path: while a peer floods adverts (3,000 a second) at a
BACKUP, 200 HUPs alternate two files that differ in one instance (it restarts each time).
The instance beside it on the same interface must never stop hearing its master: no
transition, no crash of the receiver, the daemon healthy. (A vrid that had left the
receiver's members but not yet its expectations once killed the receiver: every instance on
the interface went deaf and took over from a live master 3.6 s later.)"""

from __future__ import annotations

import signal
import sys

import pytest

from tests.functional.lab import wait_for
from tests.functional.test_vrrp_failover import (ROOT, pair, start_director,  # noqa: F401
                                                 stats, vrrp_config)

pytestmark = [pytest.mark.netns, pytest.mark.slow, pytest.mark.timeout(240)]

RELOADS = 200
RATE = 3000            # adverts a second, both vrids together

FLOOD = """
import socket, sys, time
sys.path.insert(0, {root!r})
from director.vrrp.packet import AUTH_PASS, Advert, encode, pass_auth_data
packets = [encode(Advert(2, vrid, 200, 1.0, (vip,), 4, AUTH_PASS, pass_auth_data("secret12")))
           for vrid, vip in ((51, "192.0.2.100"), (52, "192.0.2.152"))]
sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, 112)
sock.setsockopt(socket.SOL_SOCKET, 25, b"eth0")
sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 255)
pause = 2.0 / {rate}
end = time.monotonic() + 200                 # bounded, whatever happens to the test
while time.monotonic() < end:
    for packet in packets:
        sock.sendto(packet, ("224.0.0.18", 0))
    time.sleep(pause)
"""


def test_two_hundred_reloads_under_an_advert_flood_leave_the_neighbour_deaf_to_nothing(
        lab, pair):  # noqa: F811
    _, a, b = pair
    steady = vrrp_config(100)
    files = [steady + vrrp_config(priority, vrid=52, name="VI_2", vips=("192.0.2.152/24",))
             for priority in (100, 101)]
    flood = b.popen([sys.executable, "-c", FLOOD.format(root=str(ROOT), rate=RATE)])
    ours = start_director(lab, a, files[0], "ours")
    wait_for(lambda: lab.log_of(ours).count("to=BACKUP") >= 2, 10,
             message=lambda: lab.log_of(ours))
    before = stats(lab, ours)["VI_1"]
    config = lab.tmp / "ours" / "keepalived.conf"
    for number in range(1, RELOADS + 1):
        config.write_text(files[number % 2])
        ours.send_signal(signal.SIGHUP)
        wait_for(lambda: lab.log_of(ours).count("reload.applied") >= number, 10,
                 message=lambda: lab.log_of(ours)[-3000:])
    assert flood.poll() is None, "the flood stopped before the reloads were done"
    after = stats(lab, ours)["VI_1"]
    log = lab.log_of(ours)
    assert after["transitions"] == before["transitions"], log[-3000:]
    assert after["adverts_received"] > before["adverts_received"]
    assert "to=MASTER" not in log and "hub.crash" not in log, log[-3000:]
    assert log.count("VRRP instances: 1 kept, 1 changed") == RELOADS
    assert ours.poll() is None
