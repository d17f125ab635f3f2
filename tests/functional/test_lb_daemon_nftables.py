"""LVS-NAT end to end through the daemon, laid out like the HOWTO: the director holds the
external VIP and the real servers' gateway by VRRP (a sync group), checks three real HTTP
servers and programs nftables; a client's requests follow the checks. A server that dies
leaves the pool within its checker's bound and no request fails after that; it rejoins when
it is back; losing the quorum hands the service to the sorry server, and back."""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

import pytest

from tests.functional.lab import wait_for
from tests.functional.test_lb_nftables_netns import READY_TIMEOUT, SERVERS, VIP, requests

pytestmark = [pytest.mark.netns, pytest.mark.slow, pytest.mark.timeout(120)]

REPO = Path(__file__).resolve().parents[2]
DELAY_LOOP, RETRY, TIMEOUT, BEFORE_RETRY = 1, 1, 1, 0.5


GATEWAY = "10.20.40.1"
SORRY = "10.20.40.99"


def config(extra: str = "") -> str:
    """The HOWTO's director: the external VIP and the real servers' gateway as two VRRP
    instances in a sync group, and the virtual server on the external VIP."""
    reals = "".join(f"""
    real_server {address} 80 {{
        TCP_CHECK {{
            connect_timeout {TIMEOUT}
            retry {RETRY}
            delay_before_retry {BEFORE_RETRY}
        }}
    }}""" for address in SERVERS.values())
    return f"""vrrp_sync_group VG1 {{
    group {{
        VI_1
        VI_GATEWAY
    }}
}}
vrrp_instance VI_1 {{
    interface eth0
    virtual_router_id 51
    priority 150
    virtual_ipaddress {{
        {VIP}/24
    }}
}}
vrrp_instance VI_GATEWAY {{
    interface eth1
    virtual_router_id 52
    priority 150
    virtual_ipaddress {{
        {GATEWAY}/24
    }}
}}
virtual_server {VIP} 80 {{
    delay_loop {DELAY_LOOP}
    lb_algo rr
    lb_kind NAT
    protocol TCP{extra}{reals}
}}
"""


def serve(host, name, address, root):
    return host.popen([sys.executable, "-m", "http.server", "80", "--bind", address,
                       "--directory", root])


def listening(host):
    return host.run(["ss", "-Hltn", "sport = :80"]).stdout.strip()


def lay_out(lab, extra: str = ""):
    """The HOWTO's LVS-NAT network: client | director (VIPs by VRRP) | real servers whose
    default gateway is the director's gateway VIP."""
    if shutil.which("nft") is None:
        pytest.skip("nft is not installed (apt-get install nftables)")
    client_side, server_side = lab.switch("cs"), lab.switch("ss")
    client = lab.host("client", links=[(client_side, "eth0", ["203.0.113.2/24"])])
    director = lab.host("director", sysctls={"net.ipv4.ip_forward": 1},
                        links=[(client_side, "eth0", ["203.0.113.1/24"]),
                               (server_side, "eth1", ["10.20.40.2/24"])])
    hosts, servers = {}, {}
    for name, address in {**SERVERS, "sorry": SORRY}.items():
        host = lab.host(name, links=[(server_side, "eth0", [f"{address}/24"])])
        host.run(["ip", "route", "add", "default", "via", GATEWAY])
        root = Path(lab.tmp) / name
        root.mkdir()
        (root / "index.html").write_text(f"{name}\n")
        hosts[name], servers[name] = host, serve(host, name, address, root)
    for name, host in hosts.items():
        wait_for(lambda host=host: listening(host), READY_TIMEOUT, message=f"{name} listening")
    folder = Path(lab.tmp) / "director"
    folder.mkdir()
    (folder / "keepalived.conf").write_text(config(extra))
    daemon = director.popen([sys.executable, "-m", "director", "-l", "-D",
                             "-f", str(folder / "keepalived.conf"), "--backend", "nftables",
                             "--web", "off", "--state-dir", str(folder / "state"),
                             "-p", str(folder / "pid")],
                            log_path=str(folder / "log"),
                            env={"PYTHONPATH": str(REPO)})
    wait_for(lambda: director.has_address("eth0", VIP) and director.has_address("eth1", GATEWAY),
             10, message=lambda: lab.log_of(daemon))
    return client, hosts, servers, daemon


def test_checks_steer_the_traffic(lab):
    client, hosts, servers, daemon = lay_out(lab)
    assert requests(client, 30) == {"rs1": 10, "rs2": 10, "rs3": 10}

    servers["rs2"].kill()
    servers["rs2"].wait(5)
    died = time.monotonic()
    bound = DELAY_LOOP + RETRY * (TIMEOUT + BEFORE_RETRY) + 1
    wait_for(lambda: "real_server=10.20.40.11:80 state=down" in lab.log_of(daemon), bound,
             message=lambda: lab.log_of(daemon))
    assert time.monotonic() - died <= bound
    after = requests(client, 20)             # every request succeeds: rs2 is out of the pool
    assert after == {"rs1": 10, "rs3": 10}

    servers["rs2"] = serve(hosts["rs2"], "rs2", SERVERS["rs2"], Path(lab.tmp) / "rs2")
    wait_for(lambda: listening(hosts["rs2"]), READY_TIMEOUT,
             message=lambda: f"rs2 did not start again: {lab.log_of(servers['rs2'])}")
    wait_for(lambda: "real_server=10.20.40.11:80 state=up" in lab.log_of(daemon),
             DELAY_LOOP + 3, message=lambda: lab.log_of(daemon))
    assert set(requests(client, 30)) == {"rs1", "rs2", "rs3"}


def test_quorum_loss_switches_to_the_sorry_server_and_back(lab):
    client, hosts, servers, daemon = lay_out(
        lab, f"\n    quorum 2\n    sorry_server {SORRY} 80")
    assert set(requests(client, 9)) == {"rs1", "rs2", "rs3"}
    for name in ("rs1", "rs2"):              # live weight 1 < quorum 2: the quorum is lost
        servers[name].kill()
        servers[name].wait(5)
    wait_for(lambda: "lb.quorum virtual_server=203.0.113.100:80/TCP state=down" in
             lab.log_of(daemon), DELAY_LOOP + RETRY * (TIMEOUT + BEFORE_RETRY) + 2,
             message=lambda: lab.log_of(daemon))
    assert requests(client, 6) == {"sorry": 6}
    servers["rs1"] = serve(hosts["rs1"], "rs1", SERVERS["rs1"], Path(lab.tmp) / "rs1")
    wait_for(lambda: "lb.quorum virtual_server=203.0.113.100:80/TCP state=up" in
             lab.log_of(daemon), READY_TIMEOUT + DELAY_LOOP + 2,
             message=lambda: lab.log_of(daemon))
    assert set(requests(client, 6)) == {"rs1", "rs3"}
