"""Issue 15's acceptance lab: three active directors behind a BGP/ECMP router, for
test_bgp_ecmp.py and bench/bgp_ecmp.py.

    client 203.0.113.2 -- cn -- router (BIRD 2, ECMP) 203.0.113.1 | 10.0.0.1 | 10.20.40.1
                                  |-- front 10.0.0.0/24 --- d1..d3 .11-.13 (BGP, VIP traffic in)
                                  |-- back 10.20.40.0/24 -- d1..d3 .11-.13 (DR out, checks)
                                                            rs1..rs3 .21-.23 (VIP on lo)

The router runs BIRD 2 (bird.py) with a session per director and exports what it learns to
its kernel table with `merge paths` (one route, a nexthop per director), hashing flows over
them by their 5-tuple (fib_multipath_hash_policy=1). Each director runs the daemon
(``python -m director -C --backend nftables -i dN``) with one keepalived.conf for all three
(its `@dN` lines give each its own address): a virtual server VIP:80, lb_algo mh with
mh-port (or sh with sh-port, for the bench's baseline), lb_kind DR, TCP_CHECK real servers
and a bgp_announce. The real servers (dr_lab.py; three, or more for the bench) answer
through the router, never a director. Optionally a fourth speaker, ``hc`` on the front
net: ExaBGP driven by its own healthcheck program (`python -m exabgp healthcheck`),
checking the same real server with the same interval and fall count, announcing HC_PREFIX,
for the bench's side by side.

Times are wall-clock (time.time(), the daemons' log stamps): every namespace shares the
host's clock."""

from __future__ import annotations

import json
import re
import shutil
import signal
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from director.bgp.exabgp import exabgp_installed
from director.bgp.exabgp_text import environment
from tests.functional.bird import DIRECTOR_AS, HOLD_TIME, ROUTER, ROUTER_AS, Bird
from tests.functional.dr_lab import NO_RP_FILTER, Client, real_server
from tests.functional.lab import wait_for

ROOT = Path(__file__).resolve().parents[2]
VIP = "192.0.2.10"                 # bird.VIP's address
PREFIX = f"{VIP}/32"
HC_PREFIX = "192.0.2.20/32"        # the ExaBGP healthcheck speaker's
CLIENT = "203.0.113.2"
BACK_GATEWAY = "10.20.40.1"
DIRECTORS = {"d1": ("10.0.0.11", "10.20.40.11"), "d2": ("10.0.0.12", "10.20.40.12"),
             "d3": ("10.0.0.13", "10.20.40.13")}
HC = ("hc", "10.0.0.14", "10.20.40.14")
SERVERS = {"rs1": "10.20.40.21", "rs2": "10.20.40.22", "rs3": "10.20.40.23"}


def servers(count: int) -> dict[str, str]:
    """count real servers, rs1.. at 10.20.40.21..: SERVERS for 3."""
    return {f"rs{n}": f"10.20.40.{20 + n}" for n in range(1, count + 1)}


RS_MAX = 9                         # real servers a lab may have (10.20.40.21-29)
SHUTDOWN_DELAY = 2.0
READY_TIMEOUT = 30.0               # three daemons and their ExaBGPs starting on 2 shared cores

# The checks, the same for director and for ExaBGP's healthcheck: every second, a failed
# attempt tried again 0.5 s later, down after the second failure in a row (keepalived's
# retry 1 = healthcheck's fall 2), connect timeout 1 s.
DELAY_LOOP, RETRY, DELAY_BEFORE_RETRY, CONNECT_TIMEOUT = 1, 1, 0.5, 1

CONFIG = """@d1 $ME=10.0.0.11
@d2 $ME=10.0.0.12
@d3 $ME=10.0.0.13
bgp {{
    local_as {director_as}
    router_id $ME
    hold_time {hold}
    shutdown_delay {shutdown_delay}
    peer {router} {{
        peer_as {router_as}
        local_address $ME
    }}
}}
virtual_server {vip} 80 {{
    delay_loop {delay_loop}
    lb_algo {algo}
    {algo}-port
    lb_kind DR
    protocol TCP
    bgp_announce {{
        med 50
        community 65001:100
        maintenance_file {state}/maintenance
    }}
{reals}}}
"""
REAL = """    real_server {address} 80 {{
        TCP_CHECK {{
            connect_timeout {timeout}
            retry {retry}
            delay_before_retry {delay}
        }}
    }}
"""

# ExaBGP's healthcheck side: its check command (a TCP connect, as TCP_CHECK), which notes
# when an attempt failed, since healthcheck's own log has no time stamps.
HC_CHECK = """
import socket, sys, time
try:
    socket.create_connection((sys.argv[1], 80), timeout=float(sys.argv[2])).close()
except OSError:
    with open(sys.argv[3], "a") as out:
        out.write(f"{time.time():.6f}\\n")
    sys.exit(1)
"""
HC_EXABGP = """process healthcheck {{
    run {python} -m exabgp healthcheck --config {options};
    encoder text;
}}
neighbor {router} {{
    router-id {address};
    local-address {address};
    local-as {director_as};
    peer-as {router_as};
    hold-time {hold};
    family {{
        ipv4 unicast;
    }}
    api {{
        processes [ healthcheck ];
    }}
}}
"""
# healthcheck's --config file: one long option a line (its --cmd has spaces, which
# ExaBGP's `run` could not carry)
HC_OPTIONS = """no-syslog
interval = {interval}
fast-interval = {fast}
fall = {fall}
rise = 1
timeout = {timeout}
withdraw-on-down
no-ip-setup
ip = {prefix}
up-metric = 50
command = {python} {check} {server} {connect_timeout} {failures}
"""

# Long-lived flows, driven over stdin: "open P..." opens a connection from each source
# port (answers {port: server name or "error: ..."}), each then sends a line every INTERVAL
# and waits for its echo; "report" answers, per port, the server, the echoes received, the
# longest wait for one, and what ended it ("reset", "closed", "stalled": no echo within
# STALL, "moved": an echo from another server), or null while it goes on; "close" ends.
FLOWS = """
import asyncio, json, sys
vip, interval, stall = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
flows, running = {}, True
async def flow(port):
    record = flows[port] = {"server": None, "echoes": 0, "worst": 0.0, "ended": None}
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(
            vip, 80, local_addr=("0.0.0.0", port)), 5)
        name = (await asyncio.wait_for(reader.readline(), 5)).decode().strip()
        if not name:
            raise ConnectionError("closed before its name")
        record["server"] = name
    except (OSError, asyncio.TimeoutError) as exc:
        record["ended"] = f"error: {exc!r}"
        return
    loop = asyncio.get_running_loop()
    while running:
        sent = loop.time()
        try:
            writer.write(b"ping\\n")
            line = await asyncio.wait_for(reader.readline(), stall)
        except asyncio.TimeoutError:
            record["ended"] = "stalled"
            break
        except ConnectionResetError:
            record["ended"] = "reset"
            break
        except OSError as exc:
            record["ended"] = f"error: {exc!r}"
            break
        if not line:
            record["ended"] = "closed"
            break
        if line.decode().split(":")[0] != name:
            record["ended"] = "moved"
            break
        took = loop.time() - sent
        record["echoes"] += 1
        record["worst"] = max(record["worst"], took)
        await asyncio.sleep(max(0.0, interval - took))
    writer.close()
async def main():
    global running
    loop = asyncio.get_running_loop()
    tasks = []
    while True:
        command = await loop.run_in_executor(None, sys.stdin.readline)
        words = command.split()
        if not words or words[0] == "close":
            running = False
            await asyncio.wait(tasks, timeout=stall + 1) if tasks else None
            return
        if words[0] == "open":
            ports = [int(word) for word in words[1:]]
            tasks += [asyncio.create_task(flow(port)) for port in ports]
            for _ in range(int(60 / 0.01)):        # bounded: 5 s connect + 5 s name each
                if all(flows.get(p, {}).get("server") or flows.get(p, {}).get("ended")
                       for p in ports):
                    break
                await asyncio.sleep(0.01)
            answer = {p: flows[p]["server"] or flows[p]["ended"] for p in ports}
        elif words[0] == "report":
            answer = flows
        else:
            answer = {"error": f"unknown command {words[0]}"}
        print(json.dumps(answer), flush=True)
asyncio.run(main())
"""
FLOW_INTERVAL = 0.1
STALL = 1.0                    # an echo later than this: the flow stalled


def missing_tools() -> str | None:
    """Why this lab cannot run here, or None."""
    if shutil.which("bird") is None or shutil.which("birdc") is None:
        return "BIRD 2 is not installed (scripts/setup --test installs bird2)"
    if shutil.which("nft") is None:
        return "nftables is not installed (apt-get install nftables)"
    if not exabgp_installed():
        return "ExaBGP is not installed in this Python (scripts/setup installs it)"
    return None


def config_text(state: Path, algo: str = "mh", reals: dict[str, str] = SERVERS) -> str:
    reals = "".join(REAL.format(address=address, timeout=CONNECT_TIMEOUT, retry=RETRY,
                                delay=DELAY_BEFORE_RETRY) for address in reals.values())
    return CONFIG.format(director_as=DIRECTOR_AS, hold=HOLD_TIME, router=ROUTER,
                         router_as=ROUTER_AS, shutdown_delay=SHUTDOWN_DELAY, vip=VIP,
                         delay_loop=DELAY_LOOP, algo=algo, state=state, reals=reals)


@dataclass
class Director:
    name: str
    host: object
    daemon: object            # subprocess.Popen
    front: str                # its address towards the router (the route's nexthop)
    folder: Path

    def log_lines(self, lab) -> list[str]:
        return lab.log_of(self.daemon).splitlines()

    def netdev_table(self) -> bool:
        """Whether its DR table (table netdev director) is in the kernel."""
        return self.host.run(["nft", "list", "table", "netdev", "director"],
                             check=False).returncode == 0

    def packets(self) -> int:
        """Packets its DR table has taken in (the counters of its ingress rules)."""
        listing = self.host.run(["nft", "list", "table", "netdev", "director"],
                                check=False).stdout
        return sum(int(n) for n in re.findall(r"counter packets (\d+)", listing))

    def block_checks(self) -> None:
        block_checks(self.host)           # every real server the lab may have

    def unblock_checks(self) -> None:
        unblock_checks(self.host)


def block_checks(host) -> None:
    """The checks' packets from host to the real servers dropped there only (an output
    rule: the DR forwarding, at ingress, is not touched), so that this director alone sees
    them down."""
    addresses = ", ".join(servers(RS_MAX).values())
    host.run(["nft", "-f", "-"], input=(
        "table inet lab_block {\n"
        "    chain out {\n"
        "        type filter hook output priority filter; policy accept;\n"
        f"        ip daddr {{ {addresses} }} tcp dport 80 counter drop\n"
        "    }\n"
        "}\n"))


def unblock_checks(host) -> None:
    host.run(["nft", "delete", "table", "inet", "lab_block"])


def log_time(line: str) -> float:
    """The epoch seconds of a daemon log line's stamp (local time, milliseconds)."""
    return datetime.strptime(line[:23], "%Y-%m-%dT%H:%M:%S.%f").timestamp()


def last_down(lines: list[str], since: float, until: float = float("inf")) -> float | None:
    """The stamp of the last `check.state ... state=down` line from since to until (the
    stamps are truncated to the millisecond)."""
    stamps = [log_time(line) for line in lines if "check.state" in line and
              "state=down" in line]
    stamps = [stamp for stamp in stamps if since - 0.001 <= stamp <= until]
    return max(stamps) if stamps else None


class EcmpLab:
    """The lab above in ``lab`` (tests/functional/lab.py's); ``algo`` mh (Maglev) or sh
    (jhash mod N); ``healthcheck``: the fourth speaker too."""

    def __init__(self, lab, algo: str = "mh", healthcheck: bool = False,
                 reals: dict[str, str] = SERVERS):
        self.lab, self.algo, self.reals = lab, algo, reals
        cn, front, back = lab.switch("cn"), lab.switch("front"), lab.switch("back")
        client = lab.host("client", links=[(cn, "eth0", [f"{CLIENT}/24"])])
        client.run(["ip", "route", "add", "default", "via", "203.0.113.1"])
        self.router = lab.host("router", sysctls={"net.ipv4.ip_forward": 1,
                                                  "net.ipv4.fib_multipath_hash_policy": 1,
                                                  **NO_RP_FILTER},
                               links=[(cn, "eth0", ["203.0.113.1/24"]),
                                      (front, "eth1", [f"{ROUTER}/24"]),
                                      (back, "eth2", [f"{BACK_GATEWAY}/24"])])
        speakers = {name: outside for name, (outside, _) in DIRECTORS.items()}
        if healthcheck:
            speakers[HC[0]] = HC[1]
        self.bird = Bird(lab, self.router, speakers, {})
        self.bird.start()
        self.servers = {name: real_server(lab, name, back, address, VIP, BACK_GATEWAY)
                        for name, address in reals.items()}
        for name in reals:
            host = self.servers[name][0]
            wait_for(lambda host=host: host.run(["ss", "-Hltn", "sport = :80"]).stdout.strip(),
                     10, message=f"{name} listening")
        self.directors = {name: self._director(name, front, back, outside, inside)
                          for name, (outside, inside) in DIRECTORS.items()}
        self.hc = self._healthcheck(front, back) if healthcheck else None
        self.client_host = client
        wait_for(lambda: self.nexthops() == self.fronts(), READY_TIMEOUT,
                 message=lambda: "\n".join(lab.log_of(d.daemon)[-2000:]
                                           for d in self.directors.values()))
        for director in self.directors.values():
            wait_for(director.netdev_table, READY_TIMEOUT,
                     message=lambda director=director: lab.log_of(director.daemon))
        if healthcheck:
            wait_for(lambda: self.bird.nexthops(HC_PREFIX) == {HC[1]}, READY_TIMEOUT,
                     message=lambda: lab.log_of(self.hc["exabgp"]))

    def _director(self, name, front, back, outside, inside) -> Director:
        host = self.lab.host(name, links=[(front, "eth0", [f"{outside}/24"]),
                                          (back, "eth1", [f"{inside}/24"])])
        folder = Path(self.lab.tmp) / name
        folder.mkdir()
        (folder / "keepalived.conf").write_text(config_text(folder, self.algo, self.reals))
        daemon = host.popen([sys.executable, "-m", "director", "-l", "-D", "-C", "-i", name,
                             "-f", folder / "keepalived.conf", "--backend", "nftables",
                             "--state-dir", folder / "state", "-p", folder / "pid",
                             "--web", "off"],
                            log_path=folder / "log", env={"PYTHONPATH": str(ROOT)})
        return Director(name, host, daemon, outside, folder)

    def _healthcheck(self, front, back) -> dict:
        name, outside, inside = HC
        host = self.lab.host(name, links=[(front, "eth0", [f"{outside}/24"]),
                                          (back, "eth1", [f"{inside}/24"])])
        folder = Path(self.lab.tmp) / name
        folder.mkdir()
        check = folder / "check.py"
        check.write_text(HC_CHECK)
        failures = folder / "failures"
        options = folder / "healthcheck.conf"
        # healthcheck's fall counts attempts (keepalived's retry counts the ones after the
        # first); its fast-interval is the pause between attempts once one failed
        options.write_text(HC_OPTIONS.format(
            interval=DELAY_LOOP, fast=DELAY_BEFORE_RETRY, fall=RETRY + 1,
            timeout=CONNECT_TIMEOUT + 1, prefix=HC_PREFIX, python=sys.executable,
            check=check, server=SERVERS["rs1"], connect_timeout=CONNECT_TIMEOUT,
            failures=failures))
        conf = folder / "exabgp.conf"
        conf.write_text(HC_EXABGP.format(python=sys.executable, options=options, router=ROUTER,
                                         address=outside, director_as=DIRECTOR_AS,
                                         router_as=ROUTER_AS, hold=HOLD_TIME))
        exabgp = host.popen([sys.executable, "-m", "exabgp", "server", conf],
                            log_path=folder / "log",
                            env={**environment(), "exabgp_api_encoder": "text"})
        return {"host": host, "exabgp": exabgp, "failures": failures}

    # -- what the router does --------------------------------------------------------------

    def fronts(self) -> set[str]:
        return {director.front for director in self.directors.values()}

    def nexthops(self, prefix: str = PREFIX) -> set[str]:
        return self.bird.nexthops(prefix)

    def wait_nexthops(self, wanted: set[str], timeout: float, prefix: str = PREFIX) -> float:
        """Waits until the router's route to prefix has exactly these nexthops; returns
        the wall-clock time it was first seen (polled every 5 ms or so)."""
        wait_for(lambda: self.nexthops(prefix) == wanted, timeout, interval=0.005,
                 message=lambda: f"nexthops {self.nexthops(prefix)}, wanted {wanted}\n" +
                 self.bird.birdc("show", "protocols", check=False).stdout)
        return time.time()

    # -- directors ---------------------------------------------------------------------------

    def term(self, name: str) -> float:
        director = self.directors[name]
        director.daemon.send_signal(signal.SIGTERM)
        return time.time()

    def kill_9(self, name: str) -> float:
        director = self.directors[name]
        director.daemon.send_signal(signal.SIGKILL)
        return time.time()

    def logs(self) -> str:
        return "\n".join(f"--- {d.name}\n{self.lab.log_of(d.daemon)[-3000:]}"
                         for d in self.directors.values())

    # -- clients -----------------------------------------------------------------------------

    def prober(self) -> Client:
        """dr_lab's client: short flows (probe) or held ones (hold, echo)."""
        return Client(self.lab, self.client_host, VIP)

    def flows(self) -> Flows:
        return Flows(self.lab, self.client_host)

    def kill_listener(self, name: str) -> None:
        host, listener = self.servers[name]
        listener.kill()
        listener.wait(5)


class Flows:
    """FLOWS in the client's namespace."""

    def __init__(self, lab, host):
        self.lab = lab
        self.proc = lab._popen(host, [sys.executable, "-c", FLOWS, VIP, FLOW_INTERVAL, STALL],
                               pipes=True)

    def _ask(self, command: str) -> dict:
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()      # each of its commands is bounded
        assert line, self.lab.log_of(self.proc)
        return json.loads(line)

    def open(self, ports) -> dict[int, str]:
        return {int(p): name for p, name in self._ask("open " + " ".join(map(str, ports))).items()}

    def report(self) -> dict[int, dict]:
        return {int(p): record for p, record in self._ask("report").items()}

    def close(self) -> None:
        self.proc.stdin.write("close\n")
        self.proc.stdin.flush()
        self.proc.wait(STALL + 5)
