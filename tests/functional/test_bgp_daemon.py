"""The daemon announces a virtual server over BGP (issue 15), against BIRD 2 as the router:
the route is at the router while the virtual server is healthy, leaves it when the real
server's check fails (and with the maintenance file), comes back with the server; TERM
withdraws it while the pools still run (shutdown_delay); a reload changing the MED re-announces
without restarting the session; kill -9 of director takes the route away at once (ExaBGP goes
with it). /api/v1/state and /metrics say the same as the router.

Times are printed (-s), never asserted."""

from __future__ import annotations

import json
import shutil
import signal
import sys
import time
from pathlib import Path

import pytest

from tests.functional.bird import (DIRECTOR_AS, HOLD_TIME, NEEDS_BIRD_AND_EXABGP, ROUTER,
                                   ROUTER_AS, Bird)
from tests.functional.lab import wait_for

pytestmark = [pytest.mark.netns, pytest.mark.slow, pytest.mark.timeout(150),
              *NEEDS_BIRD_AND_EXABGP,
              pytest.mark.skipif(shutil.which("nft") is None,
                                 reason="nftables is not installed (apt-get install nftables)")]

ROOT = Path(__file__).resolve().parents[2]
DIRECTOR = "10.0.0.11"
SERVER = "10.0.0.21"
VS = "192.0.2.10"
PREFIX = f"{VS}/32"
WEB = "127.0.0.1:9090"


def config(folder: Path, med: int = 50) -> str:
    return f"""bgp {{
    local_as {DIRECTOR_AS}
    router_id {DIRECTOR}
    hold_time {HOLD_TIME}
    shutdown_delay 2
    peer {ROUTER} {{
        peer_as {ROUTER_AS}
        local_address {DIRECTOR}
        description "the lab's router"
    }}
}}
virtual_server {VS} 80 {{
    delay_loop 1
    lb_algo rr
    lb_kind NAT
    protocol TCP
    bgp_announce {{
        med {med}
        community 65001:100
        maintenance_file {folder}/maintenance
    }}
    real_server {SERVER} 80 {{
        TCP_CHECK {{
            connect_timeout 1
            retry 0
        }}
    }}
}}
"""


def listen(host):
    return host.popen([sys.executable, "-c",
                       "import socket, time\n"
                       "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
                       f"s.bind(('{SERVER}', 80)); s.listen(64)\n"
                       "while True:\n    c, _ = s.accept(); c.close()\n"])


def api(host, path: str) -> str:
    fetch = ("import sys, urllib.request\nsys.stdout.write(urllib.request.urlopen("
             f"'http://{WEB}{path}', timeout=5).read().decode())")
    return host.run([sys.executable, "-c", fetch]).stdout


def bgp_state(host) -> dict:
    return json.loads(api(host, "/api/v1/state"))["bgp"]


def lay_out(lab):
    switch = lab.switch("net")
    router = lab.host("router", links=[(switch, "eth0", [f"{ROUTER}/24"])])
    director = lab.host("director", sysctls={"net.ipv4.ip_forward": 1},
                        links=[(switch, "eth0", [f"{DIRECTOR}/24"])])
    server = lab.host("server", links=[(switch, "eth0", [f"{SERVER}/24"])])
    bird = Bird(lab, router, {"director": DIRECTOR}, {})
    bird.start()
    listener = listen(server)
    wait_for(lambda: server.run(["ss", "-Hltn", "sport = :80"]).stdout.strip(), 10,
             message="the real server listening")
    folder = Path(lab.tmp) / "director"
    folder.mkdir()
    (folder / "keepalived.conf").write_text(config(folder))
    daemon = director.popen([sys.executable, "-m", "director", "-l", "-D", "-C",
                             "-f", folder / "keepalived.conf", "--backend", "nftables",
                             "--state-dir", folder / "state", "-p", folder / "pid",
                             "--web", WEB], log_path=folder / "log",
                            env={"PYTHONPATH": str(ROOT)})
    wait_for(lambda: bird.nexthops() == {DIRECTOR}, 20, message=lambda: lab.log_of(daemon))
    return router, director, server, bird, listener, daemon, folder


def test_the_route_follows_the_virtual_servers_health(lab):
    router, director, server, bird, listener, daemon, folder = lay_out(lab)
    state = bgp_state(director)
    assert [(s["peer"], s["state"], s["description"]) for s in state["sessions"]] == \
        [(ROUTER, "up", "the lab's router")]
    [prefix] = state["prefixes"]
    assert (prefix["prefix"], prefix["announced"], prefix["cause"], prefix["med"],
            prefix["communities"]) == (PREFIX, True, "healthy", 50, ["65001:100"])
    shown = bird.birdc("show", "route", "all", PREFIX).stdout
    assert "BGP.med: 50" in shown and "(65001,100)" in shown, shown
    metrics = api(director, "/metrics")
    assert f'director_bgp_session_up{{peer="{ROUTER}"}} 1.0' in metrics
    assert f'director_bgp_announced{{peer="{ROUTER}",prefix="{PREFIX}"}} 1.0' in metrics

    listener.kill()                 # the only real server: quorum lost
    listener.wait(5)
    killed = time.monotonic()
    wait_for(lambda: not bird.nexthops(), 10, message=lambda: lab.log_of(daemon))
    gone = time.monotonic()
    down_line = next(line for line in lab.log_of(daemon).splitlines()
                     if "state=down" in line and SERVER in line)
    print(f"server killed -> route gone at the router: {gone - killed:.3f} s "
          f"(the check's own bound is delay_loop 1 + connect_timeout 1); {down_line[:23]}")
    [prefix] = bgp_state(director)["prefixes"]
    assert (prefix["announced"], prefix["cause"]) == (False, f"quorum lost on {VS}:80/TCP")
    assert f'director_bgp_announced{{peer="{ROUTER}",prefix="{PREFIX}"}} 0.0' in \
        api(director, "/metrics")

    listener = listen(server)
    wait_for(lambda: bird.nexthops() == {DIRECTOR}, 10, message=lambda: lab.log_of(daemon))

    (folder / "maintenance").write_text("")
    wait_for(lambda: not bird.nexthops(), 5, message=lambda: lab.log_of(daemon))
    [prefix] = bgp_state(director)["prefixes"]
    assert prefix["cause"] == f"maintenance ({folder}/maintenance)"
    (folder / "maintenance").unlink()
    wait_for(lambda: bird.nexthops() == {DIRECTOR}, 5, message=lambda: lab.log_of(daemon))
    changes = [(c["action"], c["cause"]) for c in bgp_state(director)["changes"]]
    assert changes == [("announce", "healthy"), ("withdraw", f"quorum lost on {VS}:80/TCP"),
                       ("announce", "healthy"),
                       ("withdraw", f"maintenance ({folder}/maintenance)"),
                       ("announce", "healthy")]

    # a reload that changes the MED: announced again, the session never dropped
    (folder / "keepalived.conf").write_text(config(folder, med=70))
    daemon.send_signal(signal.SIGHUP)
    wait_for(lambda: "BGP.med: 70" in bird.birdc("show", "route", "all", PREFIX).stdout, 10,
             message=lambda: lab.log_of(daemon))
    state = bgp_state(director)
    assert state["sessions"][0]["flaps"] == 0 and state["counters"]["restarts"] == 0 and \
        state["counters"]["reloads"] == 0


def test_term_withdraws_while_the_pools_still_run(lab):
    router, director, server, bird, listener, daemon, folder = lay_out(lab)
    table = ["nft", "list", "table", "inet", "director"]
    assert director.run(table, check=False).returncode == 0
    daemon.send_signal(signal.SIGTERM)
    termed = time.monotonic()
    wait_for(lambda: not bird.nexthops(), 5, message=lambda: lab.log_of(daemon))
    print(f"TERM -> route gone at the router: {time.monotonic() - termed:.3f} s")
    # shutdown_delay 2: the load balancer still runs for the flows on their way
    assert director.run(table, check=False).returncode == 0, "the pools went first"
    assert daemon.wait(15) == 0
    log = lab.log_of(daemon)
    assert log.index("bgp.withdraw_all result=acknowledged") < log.index("bgp.stopping") \
        < log.index("director.stopped")


def test_kill_9_takes_the_route_away(lab):
    router, director, server, bird, listener, daemon, folder = lay_out(lab)
    daemon.send_signal(signal.SIGKILL)
    killed = time.monotonic()
    wait_for(lambda: not bird.nexthops(), HOLD_TIME + 3, message=lambda: lab.log_of(daemon))
    print(f"kill -9 -> route gone at the router: {time.monotonic() - killed:.3f} s "
          f"(hold time {HOLD_TIME} s)")


def test_a_reload_removes_and_brings_back_the_bgp_block(lab):
    router, director, server, bird, listener, daemon, folder = lay_out(lab)
    text = (folder / "keepalived.conf").read_text()
    without = text[text.index("virtual_server"):]
    without = without[:without.index("    bgp_announce")] + \
        without[without.index("    real_server"):]
    (folder / "keepalived.conf").write_text(without)
    daemon.send_signal(signal.SIGHUP)
    wait_for(lambda: not bird.nexthops(), 10, message=lambda: lab.log_of(daemon))
    wait_for(lambda: json.loads(api(director, "/api/v1/state"))["bgp"] is None, 5,
             message=lambda: lab.log_of(daemon))
    assert "director_bgp_" not in api(director, "/metrics")
    (folder / "keepalived.conf").write_text(text)
    daemon.send_signal(signal.SIGHUP)
    wait_for(lambda: bird.nexthops() == {DIRECTOR}, 20, message=lambda: lab.log_of(daemon))
    assert bgp_state(director)["prefixes"][0]["cause"] == "healthy"
