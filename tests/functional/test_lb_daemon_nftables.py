"""LVS-NAT end to end through the daemon, laid out like the HOWTO: the director holds the
external VIP and the real servers' gateway by VRRP (a sync group), checks three real HTTP
servers and programs nftables; a client's requests follow the checks. A server that dies
leaves the pool within its checker's bound and no request fails after that; it rejoins when
it is back; losing the quorum hands the service to the sorry server, and back. Edits made
to the table behind the daemon's back are undone within a delay_loop; ha_suspend, omega and
lvs_flush_on_stop do what keepalived does."""

from __future__ import annotations

import os
import shutil
import signal
import sys
import time
from pathlib import Path

import pytest

from director.lb.nftables_script import chain_name
from director.lb.model import ServiceKey
from tests.functional.lab import wait_for
from tests.functional.test_lb_nftables_netns import (READY_TIMEOUT, SERVERS, VIP, requests,
                                                     responses)
from tests.functional.test_vrrp_failover import FAST_INTERVAL

pytestmark = [pytest.mark.netns, pytest.mark.slow, pytest.mark.timeout(120)]

REPO = Path(__file__).resolve().parents[2]
DELAY_LOOP, RETRY, TIMEOUT, BEFORE_RETRY = 1, 1, 1, 0.5


GATEWAY = "10.20.40.1"
SORRY = "10.20.40.99"


def config(extra: str = "", global_defs: str = "", lb_algo: str = "rr") -> str:
    """The HOWTO's director: the external VIP and the real servers' gateway as two VRRP
    instances in a sync group, and the virtual server on the external VIP. VRRPv3 every
    0.2 s: the director is MASTER (the VIPs up) ~0.7 s after its start, not ~3.4 s."""
    reals = "".join(f"""
    real_server {address} 80 {{
        TCP_CHECK {{
            connect_timeout {TIMEOUT}
            retry {RETRY}
            delay_before_retry {BEFORE_RETRY}
        }}
    }}""" for address in SERVERS.values())
    return f"""global_defs {{
    {global_defs}
}}
vrrp_sync_group VG1 {{
    group {{
        VI_1
        VI_GATEWAY
    }}
}}
vrrp_instance VI_1 {{
    interface eth0
    virtual_router_id 51
    priority 150
    advert_int {FAST_INTERVAL}
    version 3
    virtual_ipaddress {{
        {VIP}/24
    }}
}}
vrrp_instance VI_GATEWAY {{
    interface eth1
    virtual_router_id 52
    priority 150
    advert_int {FAST_INTERVAL}
    version 3
    virtual_ipaddress {{
        {GATEWAY}/24
    }}
}}
virtual_server {VIP} 80 {{
    delay_loop {DELAY_LOOP}
    lb_algo {lb_algo}
    lb_kind NAT
    protocol TCP{extra}{reals}
}}
"""


def serve(host, name, address, root):
    return host.popen([sys.executable, "-m", "http.server", "80", "--bind", address,
                       "--directory", root])


def listening(host):
    return host.run(["ss", "-Hltn", "sport = :80"]).stdout.strip()


def real_servers(lab, switch, addresses: dict[str, str]) -> tuple[dict, dict]:
    """A host per name on ``switch`` serving its name over HTTP (routed via GATEWAY), each
    listening before this returns: (hosts, server processes) by name."""
    hosts, servers = {}, {}
    for name, address in addresses.items():
        host = lab.host(name, links=[(switch, "eth0", [f"{address}/24"])])
        host.run(["ip", "route", "add", "default", "via", GATEWAY])
        root = Path(lab.tmp) / name
        root.mkdir()
        (root / "index.html").write_text(f"{name}\n")
        hosts[name], servers[name] = host, serve(host, name, address, root)
    for name, host in hosts.items():
        wait_for(lambda host=host: listening(host), READY_TIMEOUT, message=f"{name} listening")
    return hosts, servers


def lay_out(lab, extra: str = "", global_defs: str = "", daemon_args: tuple = (),
            env: dict | None = None, lb_algo: str = "rr"):
    """The HOWTO's LVS-NAT network: client | director (VIPs by VRRP) | real servers whose
    default gateway is the director's gateway VIP."""
    if shutil.which("nft") is None:
        pytest.skip("nft is not installed (apt-get install nftables)")
    client_side, server_side = lab.switch("cs"), lab.switch("ss")
    client = lab.host("client", links=[(client_side, "eth0", ["203.0.113.2/24"])])
    director = lab.host("director", sysctls={"net.ipv4.ip_forward": 1},
                        links=[(client_side, "eth0", ["203.0.113.1/24"]),
                               (server_side, "eth1", ["10.20.40.2/24"])])
    hosts, servers = real_servers(lab, server_side, {**SERVERS, "sorry": SORRY})
    folder = Path(lab.tmp) / "director"
    folder.mkdir()
    (folder / "keepalived.conf").write_text(config(extra, global_defs, lb_algo))
    daemon = director.popen([sys.executable, "-m", "director", "-l", "-D",
                             "-f", str(folder / "keepalived.conf"), "--backend", "nftables",
                             "--state-dir", str(folder / "state"),
                             "-p", str(folder / "pid"), *(daemon_args or ("--web", "off"))],
                            log_path=str(folder / "log"),
                            env={"PYTHONPATH": str(REPO), **(env or {})})
    wait_for(lambda: director.has_address("eth0", VIP) and director.has_address("eth1", GATEWAY),
             10, message=lambda: lab.log_of(daemon))
    hosts["director"] = director
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


def test_what_nftables_does_differently_is_logged_once_and_done(lab):
    """wlc (keepalived's default) runs as wrr, and a DR real server is left out: the log says
    both, once, and a converge the checks cause later does not say them again."""
    direct = f"""
    real_server {SORRY} 80 {{
        lvs_method DR
        TCP_CHECK {{
            connect_timeout {TIMEOUT}
        }}
    }}"""
    client, hosts, servers, daemon = lay_out(lab, direct, lb_algo="wlc")
    notes = [f'lb.unsupported backend=nftables virtual_server={VIP}:80/TCP note="{note}"'
             for note in ("lb_algo wlc runs as wrr on nftables",
                          f"{SORRY}:80: lb_kind DR is dropped on nftables in a virtual "
                          f"server that has NAT real servers too")]
    wait_for(lambda: all(note in lab.log_of(daemon) for note in notes), 5,
             message=lambda: lab.log_of(daemon))
    # equal weights: wrr shares evenly; the DR server's check passes, yet it gets nothing
    assert requests(client, 30) == {"rs1": 10, "rs2": 10, "rs3": 10}
    servers["rs2"].kill()
    servers["rs2"].wait(5)
    wait_for(lambda: "real_server=10.20.40.11:80 state=down" in lab.log_of(daemon),
             DELAY_LOOP + RETRY * (TIMEOUT + BEFORE_RETRY) + 2,
             message=lambda: lab.log_of(daemon))
    assert requests(client, 20) == {"rs1": 10, "rs3": 10}
    assert [lab.log_of(daemon).count(note) for note in notes] == [1, 1]
    assert lab.log_of(daemon).count("lb.unsupported") == 2


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


def table(director) -> str:
    return director.run(["nft", "list", "table", "inet", "director"], check=False).stdout


def test_edits_behind_our_back_are_put_back_within_a_delay_loop(lab):
    client, hosts, servers, daemon = lay_out(lab)
    director = hosts["director"]
    # Someone else's table is never touched.
    director.run(["nft", "add table inet theirs; add chain inet theirs c; "
                  "add rule inet theirs c counter"])
    assert requests(client, 3) == {"rs1": 1, "rs2": 1, "rs3": 1}
    service_chain = chain_name(ServiceKey("TCP", VIP, 80))
    for edit in (f"flush chain inet director {service_chain}",
                 "flush chain inet director prerouting",
                 "delete table inet director"):
        noticed = lab.log_of(daemon).count("lb.nftables_table_changed")
        director.run(["nft", edit])
        edited = time.monotonic()
        wait_for(lambda: lab.log_of(daemon).count("lb.nftables_table_changed") > noticed,
                 DELAY_LOOP + 2, message=lambda: f"{edit} unnoticed: {lab.log_of(daemon)}")
        assert time.monotonic() - edited <= DELAY_LOOP + 2
        wait_for(lambda: set(responses(client, 3)) == {"rs1", "rs2", "rs3"}, 5,
                 message=lambda: f"not put back after {edit}: {lab.log_of(daemon)}")
    assert "lb.nftables_table_changed change=edited" in lab.log_of(daemon)
    assert "lb.nftables_table_changed change=removed" in lab.log_of(daemon)
    assert "counter" in director.run(["nft", "list", "table", "inet", "theirs"]).stdout


def test_ha_suspend_programs_the_service_only_while_its_address_is_here(lab):
    client, hosts, servers, daemon = lay_out(lab, "\n    ha_suspend")
    director = hosts["director"]
    wait_for(lambda: VIP in table(director), 5, message=lambda: lab.log_of(daemon))
    director.run(["ip", "addr", "del", f"{VIP}/24", "dev", "eth0"])
    wait_for(lambda: VIP not in table(director), 3,
             message=lambda: f"still programmed without its address: {table(director)}")
    assert "lb.ha_suspend suspended=203.0.113.100:80/TCP" in lab.log_of(daemon)
    director.run(["ip", "addr", "add", f"{VIP}/24", "dev", "eth0"])
    wait_for(lambda: VIP in table(director), 3, message=lambda: lab.log_of(daemon))
    assert set(requests(client, 6)) == {"rs1", "rs2", "rs3"}


def test_stop_runs_omega_scripts_and_flushes_on_stop(lab):
    marks = Path(lab.tmp) / "marks"
    marks.mkdir()
    script = f"/bin/sh -c 'echo $0 >> {marks}/$0'"
    client, hosts, servers, daemon = lay_out(
        lab, f"\n    omega\n    quorum_down \"{script} quorum_down\"", "lvs_flush_on_stop")
    assert requests(client, 3) == {"rs1": 1, "rs2": 1, "rs3": 1}
    assert VIP in table(hosts["director"])
    daemon.terminate()
    assert daemon.wait(10) == 0
    assert (marks / "quorum_down").read_text() == "quorum_down\n"
    assert table(hosts["director"]) == ""


def test_reload_removes_and_adds_real_servers_in_the_kernel(lab):
    client, hosts, servers, daemon = lay_out(lab)
    director = hosts["director"]
    assert requests(client, 30) == {"rs1": 10, "rs2": 10, "rs3": 10}
    path = Path(lab.tmp) / "director" / "keepalived.conf"
    original = path.read_text()
    rs3 = f"""
    real_server {SERVERS['rs3']} 80 {{
        TCP_CHECK {{
            connect_timeout {TIMEOUT}
            retry {RETRY}
            delay_before_retry {BEFORE_RETRY}
        }}
    }}"""
    assert rs3 in original
    path.write_text(original.replace(rs3, ""))
    daemon.send_signal(signal.SIGHUP)
    wait_for(lambda: f"dnat ip to {SERVERS['rs3']}" not in table(director) and
             "reload.applied" in lab.log_of(daemon), 5, message=lambda: lab.log_of(daemon))
    assert requests(client, 20) == {"rs1": 10, "rs2": 10}
    path.write_text(original)
    daemon.send_signal(signal.SIGHUP)
    wait_for(lambda: lab.log_of(daemon).count("reload.applied") >= 2, 5,
             message=lambda: lab.log_of(daemon))
    # added back as keepalived starts a server: up at once (no alpha), so in the pool
    wait_for(lambda: set(requests(client, 6)) == {"rs1", "rs2", "rs3"}, 5,
             message=lambda: f"{table(director)}\n{lab.log_of(daemon)}")
    assert "check.real_server" not in lab.log_of(daemon)        # nobody flapped


# --- drain: weight 0, then wait for the connections to end -----------------------------------

TOKEN = "drain-test-token"
API = """
import json, re, sys, urllib.request
base, method, path, token = sys.argv[1:5]
body = sys.argv[5] if len(sys.argv) > 5 else None
headers = {"Content-Type": "application/json"}
if method == "POST":
    page = urllib.request.urlopen(base + "/", timeout=5).read().decode()
    headers["X-CSRF-Token"] = re.search(r'name="csrf-token" content="([^"]+)"', page).group(1)
    headers["Authorization"] = "Bearer " + token
request = urllib.request.Request(base + path, data=body.encode() if body else None,
                                 headers=headers, method=method)
print(urllib.request.urlopen(request, timeout=30).read().decode())
"""
HOLD = """
import socket, sys
held = []
for _ in range(int(sys.argv[2])):
    sock = socket.create_connection((sys.argv[1], 80), timeout=5)
    sock.sendall(b"GET / HTTP/1.0\\r\\n")          # no blank line: the server waits for it
    held.append(sock)
print("held", flush=True)
sys.stdin.readline()
for sock in held:
    sock.close()
print("closed", flush=True)
"""


def api(director, method: str, path: str, body: dict | None = None):
    import json
    argv = [sys.executable, "-c", API, "http://127.0.0.1:8080", method, path, TOKEN]
    if body is not None:
        argv.append(json.dumps(body))
    return json.loads(director.run(argv, timeout=40).stdout)


def drain_lab(lab, timeout: float):
    token_file = Path(lab.tmp) / "token"
    token_file.write_text(TOKEN)
    client, hosts, servers, daemon = lay_out(lab, daemon_args=(
        "--web", "127.0.0.1:8080", "--admin-token-file", str(token_file),
        "--drain-timeout", str(timeout)))
    wait_for(lambda: all(r["up"] for r in reals(hosts["director"]).values()), READY_TIMEOUT,
             message=lambda: lab.log_of(daemon))
    holder = lab._popen(client, [sys.executable, "-c", HOLD, VIP, "6"], pipes=True)
    assert holder.stdout.readline().strip() == "held", lab.log_of(holder)
    return client, hosts, daemon, holder


def reals(director) -> dict:
    (virtual,) = api(director, "GET", "/api/v1/state")["virtual_servers"]
    return {real["address"]: real for real in virtual["real_servers"]}


def test_a_drain_waits_for_the_connections_to_end(lab):
    client, hosts, daemon, holder = drain_lab(lab, timeout=60)
    director, rs1 = hosts["director"], SERVERS["rs1"]
    answer = api(director, "POST", "/api/v1/real-servers/drain",
                 {"virtual_server": f"{VIP}:80/TCP", "real_server": f"{rs1}:80"})
    assert answer["drained"] is True
    # rr over three servers: two of the six held connections are rs1's; they go on
    draining = wait_for(lambda: (reals(director)[rs1].get("drain") or {}).get(
        "active_connections") == 2 and reals(director)[rs1], 10,
        message=lambda: reals(director)[rs1])
    assert draining["weight"] == 0 and draining["drain"]["complete"] is False
    assert "rs1" not in requests(client, 12)          # no new connection reaches it
    browser = dashboard(director)                     # the operator watches it drain
    row = f'[data-rs="{rs1}:80"]'
    try:
        if browser is not None:
            wait_for(lambda: ui_text(browser, f"{row} .rs-state") == "DRAINING" and
                     "2 active connection(s) left" in ui_text(browser, f"{row} .error") and
                     ui_text(browser, f"{row} .conns") == "2 / 0", 10,
                     message=lambda: browser.eval("return document.body.innerText"))
        holder.stdin.write("close\n")
        holder.stdin.flush()
        assert holder.stdout.readline().strip() == "closed"
        done = wait_for(lambda: reals(director)[rs1]["drain"]["complete"] and
                        reals(director)[rs1], DELAY_LOOP + 5,
                        message=lambda: reals(director)[rs1])
        if browser is not None:
            wait_for(lambda: ui_text(browser, f"{row} .rs-state") == "DRAINED" and
                     ui_text(browser, f"{row} .error") == "drained: no active connections",
                     10, message=lambda: browser.eval("return document.body.innerText"))
    finally:
        if browser is not None:
            browser.quit()
    assert done["drain"]["why"] == "no active connections"
    assert done["drain"]["active_connections"] == 0
    events = api(director, "GET", "/api/v1/events?since=0")
    assert any(e["kind"] == "drain_complete" and e["real_server"] == f"{rs1}:80"
               for e in events), events
    metrics = director.run([sys.executable, "-c", API, "http://127.0.0.1:8080", "GET",
                            "/metrics", TOKEN]).stdout
    assert f'director_real_server_active_connections{{virtual_server="{VIP}:80/TCP",' \
           f'real_server="{rs1}:80"}} 0' in metrics


def dashboard(director):
    """The dashboard open in headless Chromium in the director's namespace (None where the
    browser cannot run: the API assertions still hold)."""
    from tests.functional.browser import Browser, unavailable
    if unavailable():
        return None
    browser = Browser.in_host(director)
    browser.get("http://127.0.0.1:8080/")
    return browser


def ui_text(browser, selector: str) -> str | None:
    import json
    return browser.eval(f"const e = document.querySelector({json.dumps(selector)}); "
                        "return e ? e.textContent : null;")


def test_a_drain_ends_at_its_timeout_with_connections_left(lab):
    client, hosts, daemon, holder = drain_lab(lab, timeout=2)
    director, rs2 = hosts["director"], SERVERS["rs2"]
    api(director, "POST", "/api/v1/real-servers/drain",
        {"virtual_server": f"{VIP}:80/TCP", "real_server": f"{rs2}:80"})
    done = wait_for(lambda: (reals(director)[rs2].get("drain") or {}).get("complete") and
                    reals(director)[rs2], DELAY_LOOP + 6, message=lambda: reals(director)[rs2])
    assert done["drain"]["why"] == "timeout (2 s)"
    assert done["drain"]["active_connections"] == 2
    holder.stdin.write("close\n")
    holder.stdin.flush()


# --- a backend that fails: counted, shown, retried; the kernel converges after ---------------

FAILING_NFT = """#!/bin/sh
# nft, failing while the flag file exists (an injected backend fault)
if [ -e "{flag}" ]; then echo "Error: injected failure" >&2; exit 1; fi
exec {nft} "$@"
"""


def test_a_failing_backend_is_retried_and_the_kernel_converges_after(lab):
    wrappers = Path(lab.tmp) / "bin"
    wrappers.mkdir()
    flag = Path(lab.tmp) / "nft-fails"
    (wrappers / "nft").write_text(FAILING_NFT.format(flag=flag, nft=shutil.which("nft")))
    (wrappers / "nft").chmod(0o755)
    client, hosts, servers, daemon = lay_out(
        lab, daemon_args=("--web", "127.0.0.1:8080"),
        env={"PATH": f"{wrappers}:{os.environ['PATH']}"})
    director = hosts["director"]
    wait_for(lambda: all(r["up"] for r in reals(director).values()), READY_TIMEOUT,
             message=lambda: lab.log_of(daemon))
    flag.touch()
    servers["rs2"].kill()                          # the pool must change: nft fails now
    failing = wait_for(lambda: (api(director, "GET", "/api/v1/state")["load_balancer"]
                                ["failing_converges"] >= 3) and
                       api(director, "GET", "/api/v1/state")["load_balancer"], 30,
                       message=lambda: lab.log_of(daemon))
    assert failing["last_error"]["error"].startswith("nft") or \
        "injected failure" in failing["last_error"]["error"], failing
    assert "10.20.40.11" in table(director)        # the kernel still has the dead server
    assert api_status(director, "/healthz") == 200  # failing, but nothing crashed
    browser = dashboard(director)
    try:
        if browser is not None:                    # the operator sees it on the page
            wait_for(lambda: "nftables failing" in ui_text(browser, "#summary"), 10,
                     message=lambda: ui_text(browser, "#summary"))
        flag.unlink()
        wait_for(lambda: "10.20.40.11" not in table(director), 10,
                 message=lambda: lab.log_of(daemon))
        if browser is not None:
            wait_for(lambda: "backend error(s), recovered" in ui_text(browser, "#summary"),
                     10, message=lambda: ui_text(browser, "#summary"))
    finally:
        if browser is not None:
            browser.quit()
    balancer = api(director, "GET", "/api/v1/state")["load_balancer"]
    assert balancer["failing_converges"] == 0
    assert sum(balancer["errors"].values()) >= 3
    assert set(requests(client, 12)) == {"rs1", "rs3"}
    kinds = [event["kind"] for event in api(director, "GET", "/api/v1/events?since=0")]
    assert kinds.count("lb_error") == 1 and kinds.count("lb_recovered") == 1, kinds
    metrics = director.run([sys.executable, "-c", API, "http://127.0.0.1:8080", "GET",
                            "/metrics", TOKEN]).stdout
    assert 'director_lb_errors_total{backend="nftables",operation="apply"}' in metrics
    assert "hub.crash" not in lab.log_of(daemon)


def api_status(director, path: str) -> int:
    code = ("import sys, urllib.request\n"
            "try:\n print(urllib.request.urlopen(sys.argv[1], timeout=5).status)\n"
            "except Exception as e:\n print(getattr(e, 'code', 0))")
    return int(director.run([sys.executable, "-c", code, f"http://127.0.0.1:8080{path}"],
                            timeout=20).stdout.strip())
