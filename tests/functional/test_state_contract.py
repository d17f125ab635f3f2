"""The live state of a real daemon in network namespaces, against the contract.

- VRRP packets dropped before any instance is known (undecodable, or for a vrid we do not
  run) are counted per interface and reason, and /api/v1/state and /metrics show exactly
  what another host sent.
- /api/v1/state of a daemon with a sync group of two VRRP instances and a virtual server
  with real servers on nftables has the contract's shape (CONTRACT.md's own example, see
  tests/contract.py), ``sync_group`` included.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from director.vrrp.packet import Advert, encode
from tests.contract import shape_errors, state_example
from tests.functional.lab import wait_for
from tests.functional.test_lb_daemon_nftables import api, lay_out

pytestmark = [pytest.mark.netns, pytest.mark.slow, pytest.mark.timeout(120)]

ROOT = Path(__file__).resolve().parents[2]
WEB = "127.0.0.1:8080"          # inside the director's namespace: each test has its own

VRRP_ONLY = """global_defs {
    router_id DROPS
}
vrrp_instance VI_1 {
    interface eth0
    virtual_router_id 51
    priority 150
    advert_int 1
    virtual_ipaddress {
        192.0.2.100/24
    }
}
"""

# What the intruder sends, by the reason each is dropped for (none is for vrid 51):
# 4 bytes are shorter than a VRRP header; version 5 does not exist; vrid 77 is well formed
# (a correct checksum) but no instance of ours runs it.
SENT = {
    "length": (bytes([0x21, 200, 0, 0]), 3),
    "version": (bytes([0x51, 200]) + bytes(14), 2),
    "vrid": (encode(Advert(2, 77, 100, 1.0, ("192.0.2.177",)), "192.0.2.66", "192.0.2.1"), 4),
}

SEND = """
import socket, sys
sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, 112)
sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, 255)
for hexed, count in zip(sys.argv[2::2], sys.argv[3::2]):
    for _ in range(int(count)):
        sock.sendto(bytes.fromhex(hexed), (sys.argv[1], 0))
"""

GET = """
import sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=10) as response:
    sys.stdout.write(response.read().decode())
"""


def get(host, path: str) -> str:
    return host.run([sys.executable, "-c", GET, f"http://{WEB}{path}"], timeout=30).stdout


def test_drops_before_an_instance_is_known_are_counted_per_interface(lab):
    switch = lab.switch()
    lb = lab.host("lb", [(switch, "eth0", ["192.0.2.1/24"])])
    intruder = lab.host("x", [(switch, "eth0", ["192.0.2.66/24"])])
    config = lab.tmp / "keepalived.conf"
    config.write_text(VRRP_ONLY)
    daemon = lb.popen([sys.executable, "-m", "director", "-P", "-l", "-f", config,
                       "--web", WEB, "--state-dir", lab.tmp / "state"],
                      env={"PYTHONPATH": str(ROOT)})
    wait_for(lambda: lb.has_address("eth0", "192.0.2.100"), 10,
             message=lambda: lab.log_of(daemon))
    argv = [sys.executable, "-c", SEND, "192.0.2.1"]
    for message, count in SENT.values():
        argv += [message.hex(), str(count)]
    intruder.run(argv)
    expected = {f"eth0/{reason}": count for reason, (_, count) in SENT.items()}

    def dropped():
        import json
        return json.loads(get(lb, "/api/v1/state"))["vrrp"].get("dropped_by_interface")

    wait_for(lambda: dropped() == expected, 5,
             message=lambda: f"dropped_by_interface {dropped()}, sent {expected}\n"
                             f"{lab.log_of(daemon)}")
    metrics = get(lb, "/metrics")
    for reason, (_, count) in SENT.items():
        line = (f'director_vrrp_packets_dropped_total{{instance="",interface="eth0",'
                f'reason="{reason}"}} {float(count)}')
        assert line in metrics.splitlines(), (line, [m for m in metrics.splitlines()
                                                     if "dropped" in m])
    if shutil.which("promtool"):
        done = subprocess.run(["promtool", "check", "metrics"], input=metrics.encode(),
                              capture_output=True, timeout=30)
        assert done.returncode == 0 and not done.stdout.strip(), done.stdout + done.stderr


def test_the_live_state_has_the_contracts_shape(lab):
    example = state_example()
    _, hosts, _, daemon = lay_out(lab, daemon_args=("--web", WEB))
    director = hosts["director"]

    def settled():
        state = api(director, "GET", "/api/v1/state")
        reals = [real for server in state["virtual_servers"] for real in server["real_servers"]]
        ready = all(i["state"] == "MASTER" for i in state["vrrp"]["instances"]) and \
            all(g["state"] == "MASTER" for g in state["vrrp"]["sync_groups"]) and \
            all(real["up"] and real["last_check"] and real["weight"] is not None
                for real in reals)
        return state if ready else None

    state = wait_for(settled, 15, message=lambda: lab.log_of(daemon))
    assert shape_errors(example, state) == []
    assert {i["name"]: i["sync_group"] for i in state["vrrp"]["instances"]} == \
        {"VI_1": "VG1", "VI_GATEWAY": "VG1"}
    assert [{key: group[key] for key in ("name", "state", "instances")}     # at least these
            for group in state["vrrp"]["sync_groups"]] == [
        {"name": "VG1", "state": "MASTER", "instances": ["VI_1", "VI_GATEWAY"]}]
