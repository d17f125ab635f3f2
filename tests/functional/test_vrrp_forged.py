"""Forged adverts from another host on the segment. VRRPv3 has no authentication, so the
receive checks are the only guard: one advert a second with a Max Adver Int of 0 used to be
adopted, and a BACKUP went MASTER after each one (30 transitions in 15 s)."""

from __future__ import annotations

import struct
import sys

import pytest

from director.vrrp.packet import Advert, encode, internet_checksum, pseudo_header
from tests.functional.lab import wait_for
from tests.functional.test_vrrp_failover import (ROOT, pair, start_director,  # noqa: F401
                                                 stats, vrrp_config)

pytestmark = [pytest.mark.netns, pytest.mark.slow, pytest.mark.timeout(60)]

FORGER = """
import socket, sys, time
packet = bytes.fromhex(sys.argv[1])
sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, 112)
sock.setsockopt(socket.SOL_SOCKET, 25, b"eth0")
sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 255)
for _ in range(int(sys.argv[2])):                   # bounded
    sock.sendto(packet, ("224.0.0.18", 0))
    time.sleep(1)
"""


def zero_interval_advert() -> bytes:
    message = bytearray(encode(Advert(3, 51, 200, 1.0, ("192.0.2.100",), 4),
                               "192.0.2.2", "224.0.0.18"))
    message[4:6] = struct.pack("!H", 0)                 # Max Adver Int 0
    message[6:8] = b"\0\0"
    message[6:8] = struct.pack("!H", internet_checksum(
        pseudo_header(4, "192.0.2.2", "224.0.0.18", len(message)) + bytes(message)))
    return bytes(message)


def test_a_forged_zero_interval_advert_is_dropped_and_makes_no_flapping(lab, pair):  # noqa: F811
    _, a, b = pair
    ours = start_director(lab, a, vrrp_config(100, version=3, advert_int=0.1), "ours")
    wait_for(lambda: "to=BACKUP" in lab.log_of(ours), 10, message=lambda: lab.log_of(ours))
    forger = b.popen([sys.executable, "-c", FORGER, zero_interval_advert().hex(), "8"])
    wait_for(lambda: stats(lab, ours)["VI_1"]["dropped"].get("interval", 0) >= 3, 10,
             message=lambda: f"{lab.log_of(ours)}\n{lab.log_of(forger)}")
    moves = [line for line in lab.log_of(ours).splitlines() if "vrrp.transition" in line]
    # INIT -> BACKUP, then MASTER once no real master is heard; never back and forth
    assert len(moves) <= 2, moves
    assert ours.poll() is None
