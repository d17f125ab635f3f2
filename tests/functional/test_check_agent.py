"""AGENT_CHECK against real agents: the checker on loopback (agent_send arrives, replies are
read, silent, closing, endless and absent agents are bounded and change nothing), then the
daemon in network namespaces with the nftables backend while an agent beside a real server
cycles through 100%, 50%, drain, maint, up (maint stays: only ready ends it), down and
"up ready 100%": the kernel's pool and /api/v1/state follow within one check interval each
(the latencies are printed, run with -s)."""

from __future__ import annotations

import json
import re
import shutil
import socket
import sys
import time
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pytest

from director.check.agent import MAX_LINE, AgentCheck
from director.check.checker import Target
from tests.functional.browser import Browser
from tests.functional.browser import unavailable as browser_unavailable
from tests.functional.lab import wait_for
from tests.functional.loopback import LoopbackServer
from tests.functional.test_lb_nftables_netns import READY_TIMEOUT, requests

REPO = Path(__file__).resolve().parents[2]


# -- the checker on loopback --------------------------------------------------------------------

class Agent(LoopbackServer):
    """Reads what the checker sends (up to a newline, if ``wait_for_line``), then answers
    ``reply``; ``hold``: keeps the connection open, silent, until the checker leaves."""

    def __init__(self, reply: bytes = b"", wait_for_line: bool = False, hold: bool = False):
        super().__init__()
        self.reply, self.wait_for_line, self.hold = reply, wait_for_line, hold
        self.received: list[bytes] = []

    def handle(self, conn: socket.socket) -> None:
        if self.wait_for_line:
            data = b""
            while b"\n" not in data:
                chunk = conn.recv(256)
                if not chunk:
                    break
                data += chunk
            self.received.append(data)
        if self.reply:
            conn.sendall(self.reply)
        if self.hold:
            while conn.recv(256):       # until the checker closes (bounded by DEADLINE)
                pass


def checker(port: int, send: str | None = None, timeout: float = 1.0) -> AgentCheck:
    return AgentCheck(SimpleNamespace(agent_send=send),
                      Target("127.0.0.1", port, timeout, virtual_server="vs",
                             real_server="rs"), base_weight=10)


def test_agent_send_arrives_and_the_reply_sets_weight_and_state():
    with Agent(b"50% drain maxconn:7 # busy\r\n", wait_for_line=True) as agent:
        result = checker(agent.port, send=r"backend web\n").check()
    assert agent.received == [b"backend web\n"]
    assert result.ok and result.weight == 5 and result.reply_error is None
    assert (result.agent.admin, result.agent.maxconn, result.agent.description) == \
        ("drain", 7, "busy")


class Trickling(LoopbackServer):
    """Answers one byte at a time, each in a segment of its own."""

    def __init__(self, reply: bytes):
        super().__init__()
        self.reply = reply

    def handle(self, conn: socket.socket) -> None:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for index in range(len(self.reply)):
            conn.sendall(self.reply[index:index + 1])
            time.sleep(0.01)     # the agent's pace, not a wait for a condition


def test_a_reply_in_pieces_is_read_whole():
    with Trickling(b"up 25% maint\n") as agent:
        result = checker(agent.port).check()
    assert result.ok and result.weight == 2 and result.agent.admin == "maint"


def test_silent_closing_endless_and_absent_agents_change_nothing():
    check = checker(0)
    with Agent(b"down\n") as agent:
        check.target = Target("127.0.0.1", agent.port, 0.5)
        assert not check.check().ok                       # down: a failed check
    with Agent(hold=True) as silent:
        check.target = Target("127.0.0.1", silent.port, 0.5)
        started = time.monotonic()
        result = check.check()
        print(f"silent agent: {time.monotonic() - started:.3f} s")
    assert not result.ok and result.agent.error == "agent: no reply line within 0.5 s"
    with Agent(b"up") as closing:                         # no line end before the close
        check.target = Target("127.0.0.1", closing.port, 0.5)
        result = check.check()
    assert not result.ok and result.reply_error == "incomplete"
    with Agent(b"x" * (MAX_LINE * 64), hold=True) as endless:
        check.target = Target("127.0.0.1", endless.port, 0.5)
        result = check.check()
    assert not result.ok and result.reply_error == "too_long"
    check.target = Target("127.0.0.1", silent.port, 0.5)  # closed: nobody listens
    result = check.check()
    assert not result.ok and result.agent.error == "agent: Connection refused"
    assert result.agent.ignored == 4 and result.agent.replies == 1
    with Agent(b"up\n") as back:
        check.target = Target("127.0.0.1", back.port, 0.5)
        assert check.check().ok


# -- the daemon in namespaces -------------------------------------------------------------------

VIP = "203.0.113.100"
GATEWAY = "10.20.40.1"
SERVERS = {"rs1": "10.20.40.10", "rs2": "10.20.40.11"}
AGENT_PORT = 5555
WEB = "127.0.0.1:9090"
DELAY_LOOP = 1          # the agent's; the virtual server's is 30 s, so the load balancer's
                        # own reconcile (every 30 s) cannot be what makes the pool follow
SLACK = 1.5             # a converge, an nft run and a poll (two processes in namespaces)
                        # after the check, on a loaded machine

# argv: the file holding the reply, the file where what the checker sent is appended
AGENT = f"""
import socket, sys
reply_file, seen_file = sys.argv[1], sys.argv[2]
server = socket.create_server(("0.0.0.0", {AGENT_PORT}))
while True:
    conn, _ = server.accept()
    with conn:
        conn.settimeout(5)
        data = b""
        try:
            while b"\\n" not in data and len(data) < 1024:
                chunk = conn.recv(256)
                if not chunk:
                    break
                data += chunk
            with open(seen_file, "ab") as seen:
                seen.write(data)
            with open(reply_file, "rb") as reply:
                conn.sendall(reply.read())
        except OSError:
            pass
"""


def config() -> str:
    return f"""virtual_server {VIP} 80 {{
    delay_loop 30
    lb_algo wrr
    lb_kind NAT
    protocol TCP
    real_server {SERVERS['rs1']} 80 {{
        weight 10
        TCP_CHECK {{
            connect_timeout 1
        }}
        AGENT_CHECK {{
            connect_port {AGENT_PORT}
            connect_timeout 1
            delay_loop {DELAY_LOOP}
            agent_send "director\\n"
        }}
    }}
    real_server {SERVERS['rs2']} 80 {{
        weight 10
        TCP_CHECK {{
            connect_timeout 1
        }}
    }}
}}
"""


def api_state(director) -> dict:
    fetch = ("import sys, urllib.request\nsys.stdout.write(urllib.request.urlopen("
             f"'http://{WEB}/api/v1/state', timeout=5).read().decode())")
    out = director.run([sys.executable, "-c", fetch], check=False).stdout
    return json.loads(out) if out.strip() else {}


def rs1(director) -> dict:
    for virtual in api_state(director).get("virtual_servers", []):
        for real in virtual["real_servers"]:
            if real["address"] == SERVERS["rs1"]:
                return real
    return {}


def members(director) -> Counter:
    """The kernel's pool: how many slots each real server has in the service's map (a
    single destination is a plain dnat)."""
    listed = director.run(["nft", "list", "table", "inet", "director"], check=False).stdout
    return Counter(re.findall(r"(10\.20\.40\.\d+)(?: \. |:)80\b", listed))


def dashboard_row_says(director, words: str) -> None:
    """The dashboard's row of rs1 shows ``words`` (skipped without a browser: the API
    assertions around it are the test's point)."""
    if browser_unavailable() is not None:
        print(f"dashboard not looked at: {browser_unavailable()}")
        return
    browser = Browser.in_host(director)
    row = json.dumps(f'[data-rs="{SERVERS["rs1"]}:80"]')
    try:
        browser.get(f"http://{WEB}/")
        wait_for(lambda: words in (browser.eval(
            f"const e = document.querySelector({row}); return e ? e.textContent : '';") or ""),
            10, interval=0.1, message=lambda: browser.eval("return document.body.innerText"))
    finally:
        browser.quit()


@pytest.mark.netns
@pytest.mark.slow
@pytest.mark.timeout(180)
def test_weight_and_state_follow_the_agent(lab):
    if shutil.which("nft") is None:
        pytest.skip("nft is not installed (apt-get install nftables)")
    client_side, server_side = lab.switch("cs"), lab.switch("ss")
    client = lab.host("client", links=[(client_side, "eth0", ["203.0.113.2/24"])])
    director = lab.host("director", sysctls={"net.ipv4.ip_forward": 1},
                        links=[(client_side, "eth0", ["203.0.113.1/24", f"{VIP}/24"]),
                               (server_side, "eth1", [f"{GATEWAY}/24"])])
    hosts, reply = {}, Path(lab.tmp) / "reply"
    seen = Path(lab.tmp) / "seen"
    reply.write_bytes(b"100%\n")
    for name, address in SERVERS.items():
        host = hosts[name] = lab.host(name, links=[(server_side, "eth0", [f"{address}/24"])])
        host.run(["ip", "route", "add", "default", "via", GATEWAY])
        root = Path(lab.tmp) / name
        root.mkdir()
        (root / "index.html").write_text(f"{name}\n")
        host.popen([sys.executable, "-m", "http.server", "80", "--bind", address,
                    "--directory", root])
    agent = hosts["rs1"].popen([sys.executable, "-c", AGENT, reply, seen])
    for name, host in hosts.items():
        wait_for(lambda host=host: host.run(["ss", "-Hltn", "sport = :80"]).stdout.strip(),
                 READY_TIMEOUT, message=f"{name} listening")
    wait_for(lambda: hosts["rs1"].run(["ss", "-Hltn", f"sport = :{AGENT_PORT}"]).stdout.strip(),
             READY_TIMEOUT, message=lambda: lab.log_of(agent))
    folder = Path(lab.tmp) / "director"
    folder.mkdir()
    (folder / "keepalived.conf").write_text(config())
    daemon = director.popen([sys.executable, "-m", "director", "-l", "-D",
                             "-f", folder / "keepalived.conf", "--backend", "nftables",
                             "--state-dir", folder / "state", "-p", folder / "pid",
                             "--web", WEB], log_path=folder / "log",
                            env={"PYTHONPATH": str(REPO)})

    def follows(line: bytes, expected, what: str, within: float = DELAY_LOOP + SLACK):
        """Write the agent's next reply; wait until the API and the kernel say ``expected``
        (a predicate over (rs1's API view, the kernel's members))."""
        reply.write_bytes(line)
        changed = time.monotonic()

        def seen_now():
            view, kernel = rs1(director), members(director)
            agent_view = view.get("agent") or {}
            return agent_view.get("reply") == line.decode().rstrip("\r\n") and \
                expected(view, kernel) and (view, kernel)

        view, kernel = wait_for(seen_now, within, interval=0.05, message=lambda: (
            f"{what}: API {rs1(director)} kernel {members(director)}\n{lab.log_of(daemon)}"))
        print(f"{what}: followed in {time.monotonic() - changed:.2f} s "
              f"(interval {DELAY_LOOP} s): weight {view['weight']} kernel {dict(kernel)}")
        return view, kernel

    # the first reply, read at start (the daemon's start and its web face take a while)
    view, kernel = follows(b"100%\n", lambda v, k: v["weight"] == 10 and
                           k == {SERVERS["rs1"]: 1, SERVERS["rs2"]: 1}, "100%", within=20)
    assert view["up"] and view["agent"]["effect"] == "up 100% (10)"
    assert seen.read_bytes().startswith(b"director\n")         # agent_send, each check

    view, kernel = follows(b"50%\n", lambda v, k: v["desired_weight"] == v["weight"] == 5 and
                           k == {SERVERS["rs1"]: 1, SERVERS["rs2"]: 2}, "50%")
    assert view["weight"] == 5 and view["agent"]["weight"] == 5 and view["up"]
    assert set(requests(client, 6)) == {"rs1", "rs2"}

    # drain: weight 0, still in the pool (no new connections reach it)
    view, kernel = follows(b"drain\n", lambda v, k: v["desired_weight"] == v["weight"] == 0 and
                           SERVERS["rs1"] not in k, "drain")
    assert view["up"] and view["agent"]["admin"] == "drain" and not view["drained"]
    assert requests(client, 6) == {"rs2": 6}
    dashboard_row_says(director, "agent: up 50% (5) drain")

    # maint: out of the pool, not down
    view, kernel = follows(b"maint\n", lambda v, k: v["desired_weight"] is v["weight"] is None and
                           SERVERS["rs1"] not in k, "maint")
    assert view["up"] and view["agent"]["admin"] == "maint"

    # up is the operational state: maint stays until the agent says ready (HAProxy's rule)
    view, kernel = follows(b"up\n", lambda v, k: True, "up (still maint)")
    assert view["desired_weight"] is view["weight"] is None and SERVERS["rs1"] not in kernel
    assert view["agent"]["admin"] == "maint"

    # down: a failed check, the real server goes down
    view, kernel = follows(b"down # disk full\n", lambda v, k: v["up"] is False,
                           "down")
    assert SERVERS["rs1"] not in kernel
    assert (view["agent"]["health"], view["agent"]["description"]) == ("down", "disk full")

    view, kernel = follows(b"up ready 100%\n", lambda v, k: v["up"] and v["weight"] == 10 and
                           k == {SERVERS["rs1"]: 1, SERVERS["rs2"]: 1}, "up ready 100%")
    assert view["agent"]["admin"] == "ready"
    assert set(requests(client, 6)) == {"rs1", "rs2"}

    # garbage is counted and changes nothing; an agent gone changes nothing either
    reply.write_bytes(b"bogus words\n")
    wait_for(lambda: (rs1(director).get("agent") or {}).get("reply") == "bogus words",
             DELAY_LOOP + SLACK, interval=0.05, message=lambda: lab.log_of(daemon))
    agent.kill()
    agent.wait(5)
    wait_for(lambda: "Connection refused" in ((rs1(director).get("agent") or {}).get("error")
                                              or ""),
             DELAY_LOOP + SLACK, interval=0.05, message=lambda: f"{rs1(director)}")
    view = rs1(director)
    assert view["up"] and view["weight"] == 10 and members(director) == \
        {SERVERS["rs1"]: 1, SERVERS["rs2"]: 1}
    metrics = director.run([sys.executable, "-c", (
        "import sys, urllib.request\nsys.stdout.write(urllib.request.urlopen("
        f"'http://{WEB}/metrics', timeout=5).read().decode())")]).stdout
    assert 'director_check_reply_errors_total{checker="AGENT_CHECK",reason="unknown_word"}' \
        in metrics, [line for line in metrics.splitlines() if "reply_errors" in line]
    log = lab.log_of(daemon)
    assert "check.agent" in log and daemon.poll() is None
