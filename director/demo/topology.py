"""The keepalived HOWTO's LVS-NAT topology in network namespaces, shared by ``director
demo`` and the IPVS lab test in the qemu guest (tests/qemu/howto_lab_case.py):

    client 192.168.1.100 --(ext)-- lb1 / lb2 eth0 192.168.1.2/.3, VIP 192.168.1.11
                                   lb1 / lb2 eth1 10.20.40.2/.3, gateway VIP 10.20.40.1 --(int)--
                                   rs1-rs3 10.20.40.10-.12 (HTTP on port 80, default via .1)

Each director runs director with one configuration (``-i lb1`` / ``-i lb2`` picks its
lines); with the IPVS backend every director namespace has its own IPVS table.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

VIP = "192.168.1.11"
GATEWAY = "10.20.40.1"
REAL_SERVERS = {"rs1": "10.20.40.10", "rs2": "10.20.40.11", "rs3": "10.20.40.12"}
DIRECTORS = {"lb1": ("192.168.1.2", "10.20.40.2"), "lb2": ("192.168.1.3", "10.20.40.3")}
CLIENT = "192.168.1.100"
WEB_PORT = 8080             # each director's --web, inside its namespace


@dataclass
class HowtoLab:
    net: Any                                        # the netlab.Lab it lives in
    outside: Any
    inside: Any
    client: Any
    directors: dict[str, Any]
    real_servers: dict[str, Any]
    web_servers: dict[str, Any] = field(default_factory=dict)   # rs name -> its HTTP server
    daemons: dict[str, Any] = field(default_factory=dict)       # lb name -> director process

    def start_web_server(self, name: str) -> Any:
        """rs1-rs3 serve their name at / and "ok" at /health, on port 80."""
        folder = self.net.tmp / f"site-{name}"
        if not folder.exists():
            folder.mkdir()
            (folder / "index.html").write_text(f"{name}\n")
            (folder / "health").write_text("ok\n")
        self.web_servers[name] = self.real_servers[name].popen(
            [sys.executable, "-m", "http.server", "80", "--bind", REAL_SERVERS[name],
             "--directory", folder])
        return self.web_servers[name]

    def start_director(self, name: str, config: Path, backend: str, *extra: str) -> Any:
        self.daemons[name] = self.directors[name].popen(
            director_argv(config, self.net.tmp / name, "-i", name, "--backend", backend,
                          "--web", f"0.0.0.0:{WEB_PORT}", *extra),
            log_path=self.net.tmp / f"{name}.log", env=environment())
        return self.daemons[name]


def build(net: Any) -> HowtoLab:
    """The hosts and links, the real servers' web servers started; no director yet."""
    outside, inside = net.switch("ext"), net.switch("int")
    client = net.host("client", links=[(outside, "eth0", [f"{CLIENT}/24"])])
    directors = {}
    for name, (external, internal) in DIRECTORS.items():
        directors[name] = net.host(name, sysctls={"net.ipv4.ip_forward": 1},
                                   links=[(outside, "eth0", [f"{external}/24"]),
                                          (inside, "eth1", [f"{internal}/24"])])
    servers = {}
    for name, address in REAL_SERVERS.items():
        servers[name] = net.host(name, links=[(inside, "eth0", [f"{address}/24"])])
        servers[name].run(["ip", "route", "add", "default", "via", GATEWAY])
    lab = HowtoLab(net, outside, inside, client, directors, servers)
    for name in REAL_SERVERS:
        lab.start_web_server(name)
    return lab


def director_argv(config: Path, state: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "director", "-f", str(config), "-l", "--state-dir", str(state),
            *extra]


def environment() -> dict[str, str]:
    root = str(Path(__file__).resolve().parents[2])
    return {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}
