"""BIRD 2 as the upstream router of the BGP tests: in a namespace of the lab, with its own
configuration, log and control socket in the lab's temp dir (never the system's), a BGP
session per director and a kernel protocol exporting what it learns with ECMP (merge paths):
what counts is what the router does (its kernel table, ``birdc show route all``)."""

from __future__ import annotations

import json
import shutil
import signal
from pathlib import Path

import pytest

from director.bgp.exabgp import exabgp_installed
from tests.functional.lab import wait_for

# pytestmark of the tests that run BIRD and ExaBGP
NEEDS_BIRD_AND_EXABGP = [
    pytest.mark.skipif(shutil.which("bird") is None or shutil.which("birdc") is None,
                       reason="BIRD 2 is not installed (scripts/setup --test installs bird2)"),
    pytest.mark.skipif(not exabgp_installed(),
                       reason="ExaBGP is not installed in this Python (scripts/setup installs "
                              "it from requirements.txt)")]

VIP = "192.0.2.10/32"
ROUTER = "10.0.0.1"
ROUTER_AS, DIRECTOR_AS = 65000, 65001
HOLD_TIME = 9

BIRD_CONFIG = """
router id {router};
log "{log}" all;
protocol device {{ }}
protocol kernel {{
    ipv4 {{ export all; }};
    merge paths on;
}}
{peers}
"""
BIRD_PEER = """
protocol bgp {name} {{
    local {router} as {router_as};
    neighbor {address} as {director_as};
    hold time {hold};
    connect retry time 1;
    error wait time 1, 2;
    {password}
    ipv4 {{ import all; export none; }};
}}
"""


class Bird:
    """BIRD 2 in host's namespace; ``directors``: protocol name -> the director's address."""

    def __init__(self, lab, host, directors: dict[str, str], md5: dict[str, str]):
        self.lab, self.host = lab, host
        stem = lab.tmp / f"{host.name}-bird"
        self.config, self.socket, self.log = (Path(f"{stem}.conf"), Path(f"{stem}.ctl"),
                                              Path(f"{stem}.log"))
        peers = "".join(BIRD_PEER.format(
            name=name, router=ROUTER, router_as=ROUTER_AS, address=address,
            director_as=DIRECTOR_AS, hold=HOLD_TIME,
            password=f'password "{md5[address]}";' if address in md5 else "")
            for name, address in directors.items())
        self.config.write_text(BIRD_CONFIG.format(router=ROUTER, log=self.log, peers=peers))
        self.process = None

    def start(self):
        self.process = self.host.popen(["bird", "-f", "-c", self.config, "-s", self.socket,
                                        "-P", self.lab.tmp / f"{self.host.name}-bird.pid"])
        wait_for(lambda: self.birdc("show", "status", check=False).returncode == 0, 10,
                 message=lambda: self.lab.log_of(self.process))

    def stop(self):
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(10)

    def birdc(self, *command, check=True):
        return self.host.run(["birdc", "-s", self.socket, *command], check=check)

    def established(self, name) -> bool:
        return "Established" in self.birdc("show", "protocols", name).stdout

    def nexthops(self, prefix=VIP) -> set[str]:
        """The gateways of prefix in the router's kernel table (empty: no route)."""
        routes = json.loads(self.host.run(["ip", "-j", "route", "show", prefix]).stdout or "[]")
        hops = set()
        for route in routes:
            if "gateway" in route:
                hops.add(route["gateway"])
            hops.update(hop["gateway"] for hop in route.get("nexthops", []) if "gateway" in hop)
        return hops
