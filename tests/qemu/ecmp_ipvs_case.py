"""Runs in the qemu guest (a kernel with IPVS): issue 15's active-active directors on real
IPVS. Two director namespaces, each with its own IPVS table, each running the daemon on
--backend ipvs (lb_kind DR, a bgp_announce), behind a router that spreads the VIP's flows
over them by plain Linux ECMP (`nexthop via d1 nexthop via d2`, fib_multipath_hash_policy=1:
by 5-tuple). Long-lived flows are opened, then d2's nexthop is removed at the router (what a
BGP withdrawal does there: test_bgp_ecmp.py proves that part), so d1 gets d2's flows
mid-stream, never having seen their SYN. Prints one JSON object on its last line;
tests/functional/test_ipvs_ecmp_qemu.py asserts on it.

    client 203.0.113.2 -- cn -- router 203.0.113.1 | 10.0.0.1 | 10.20.40.1
                                  |-- front 10.0.0.0/24 --- d1 .11, d2 .12 (VIP on lo)
                                  |-- back 10.20.40.0/24 -- d1 .11, d2 .12 (DR out, checks)
                                                            rs1..rs3 .21-.23 (VIP on lo)

Two virtual servers on the same two daemons, in one lab (each daemon's start is the
slowest part under emulation): VIPS["mh"], lb_algo mh with mh-port: with a bgp_announce the
daemon turns on sloppy_tcp, so d1's IPVS makes a connection from a moved flow's next packet,
and mh (the same Maglev table on both directors) sends it to the real server that already
holds it. VIPS["wlc"], the baseline, a per-director scheduler: d1 picks by its own
connection counts, so a moved flow lands on another real server (which resets it) unless it
happens to pick the same one. Both VIPs' flows run at once and move together.

The bgp block's peer is the router's address, where nothing listens (no BGP is needed for
this proof): the session stays down and the load balancer runs on, the sysctls set at its
start whatever the sessions. Under TCG ExaBGP does not even reach its relay within the
daemon's START_TIMEOUT (20 s), so the daemon restarts it every 20 s or so (bgp_lines).

``python3 ecmp_ipvs_case.py [FLOWS]`` (default 80 per virtual server).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from director.demo.netlab import Lab, wait_for  # noqa: E402
from director.demo.topology import environment  # noqa: E402
from tests.functional.dr_lab import NO_RP_FILTER, real_server  # noqa: E402
from tests.functional.ecmp_lab import FLOWS, Flows  # noqa: E402

VIPS = {"mh": "192.0.2.10", "wlc": "192.0.2.11"}
CLIENT = "203.0.113.2"
ROUTER_FRONT, BACK_GATEWAY = "10.0.0.1", "10.20.40.1"
DIRECTORS = {"d1": ("10.0.0.11", "10.20.40.11"), "d2": ("10.0.0.12", "10.20.40.12")}
SERVERS = {"rs1": "10.20.40.21", "rs2": "10.20.40.22", "rs3": "10.20.40.23"}
FIRST_PORT = {"mh": 30000, "wlc": 40000}
# Slower than ecmp_lab's flows (a line every 100 ms, 1 s stall): under emulation a hundred
# flows' echoes through three Python servers must not stall on the CPU alone.
INTERVAL, STALL = 0.5, 8.0
ECHOES_BEFORE, ECHOES_AFTER = 3, 6    # each flow's echoes before the move, and after it
# Under emulation on a loaded host, two daemons (and their ExaBGPs) took 130 s to start,
# and a command in a namespace more than 10 s meanwhile.
READY = 300.0
DECIDED = 90.0                     # after the move, for every flow to echo on or end
COMMAND = 60.0                     # one command in a namespace

CONFIG = """@d1 $ME=10.0.0.11
@d2 $ME=10.0.0.12
bgp {{
    local_as 65001
    router_id $ME
    peer {router} {{
        peer_as 65000
        local_address $ME
    }}
}}
{virtual_servers}"""
VIRTUAL = """virtual_server {vip} 80 {{
    delay_loop 1
    lb_algo {algo}
{flags}    lb_kind DR
    protocol TCP
    bgp_announce {{
        med 50
    }}
{reals}}}
"""
REAL = """    real_server {address} 80 {{
        TCP_CHECK {{
            connect_timeout 2
        }}
    }}
"""


def config_text() -> str:
    reals = "".join(REAL.format(address=address) for address in SERVERS.values())
    return CONFIG.format(router=ROUTER_FRONT, virtual_servers="".join(
        VIRTUAL.format(vip=vip, algo=algo, flags="    mh-port\n" if algo == "mh" else "",
                       reals=reals) for algo, vip in VIPS.items()))


class SlowFlows(Flows):
    """ecmp_lab's flows with INTERVAL and STALL."""

    def __init__(self, lab, host, vip: str):
        self.lab = lab
        self.proc = lab._popen(host, [sys.executable, "-c", FLOWS, vip, INTERVAL, STALL],
                               pipes=True)


def run(host, *argv: str) -> str:
    """argv's output in host's namespace ("" if it timed out: the callers poll)."""
    try:
        return host.run(argv, check=False, timeout=COMMAND).stdout
    except subprocess.TimeoutExpired:
        return ""


def table(host, vip: str) -> str:
    return run(host, "ipvsadm", "-Ln", "-t", f"{vip}:80")


def pool(host, vip: str) -> list[str]:
    """The real servers of vip:80 in this director's IPVS table, in the kernel's order."""
    return re.findall(r"-> (\d+\.\d+\.\d+\.\d+):80\s+Route", table(host, vip))


def client_ports(host, vip: str) -> dict[int, str]:
    """This director's IPVS connections from the client to vip: source port -> real
    server."""
    listing = run(host, "ipvsadm", "-Lnc")
    return {int(port): server for port, server in re.findall(
        rf"{re.escape(CLIENT)}:(\d+)\s+{re.escape(vip)}:80\s+(\d+\.\d+\.\d+\.\d+):80", listing)}


def sysctls(host) -> dict[str, str]:
    return {name: run(host, "cat", f"/proc/sys/net/ipv4/vs/{name}").strip()
            for name in ("sloppy_tcp", "sloppy_sctp")}


def scenario(count: int) -> list[dict]:
    """What was measured, one dict per scheduler, as far as it got: a failure is in each
    one's "error", with the logs."""
    outs = {algo: {"algo": algo, "flows": count} for algo in VIPS}
    started = time.monotonic()
    with Lab() as net:
        try:
            steps(net, count, outs)
        except Exception as exc:
            import traceback
            where = [f"line {frame.lineno}: {frame.line}"
                     for frame in traceback.extract_tb(exc.__traceback__)
                     if frame.filename == __file__]
            for out in outs.values():
                out["error"] = f"{type(exc).__name__} at {where[-1:]}: {str(exc)[:2000]}"
        logs = {path.parent.name: path.read_text(errors="replace")[-4000:]
                for path in net.tmp.glob("d?/log")}
    for out in outs.values():
        out["logs"] = logs
        out["seconds"] = round(time.monotonic() - started, 1)
    return list(outs.values())


def steps(net, count: int, outs: dict) -> None:
    net_started = time.monotonic()
    cn, front, back = net.switch("cn"), net.switch("front"), net.switch("back")
    client = net.host("client", links=[(cn, "eth0", [f"{CLIENT}/24"])])
    client.run(["ip", "route", "add", "default", "via", "203.0.113.1"])
    router = net.host("router", sysctls={"net.ipv4.ip_forward": 1,
                                         "net.ipv4.fib_multipath_hash_policy": 1,
                                         **NO_RP_FILTER},
                      links=[(cn, "eth0", ["203.0.113.1/24"]),
                             (front, "eth1", [f"{ROUTER_FRONT}/24"]),
                             (back, "eth2", [f"{BACK_GATEWAY}/24"])])
    first, *others = VIPS.values()
    servers = {}
    for name, address in SERVERS.items():
        servers[name] = real_server(net, name, back, address, first, BACK_GATEWAY)[0]
        for vip in others:                      # it listens on 0.0.0.0:80: every VIP
            servers[name].run(["ip", "addr", "add", f"{vip}/32", "dev", "lo"])
    for name, host in servers.items():
        wait_for(lambda host=host: run(host, "ss", "-Hltn", "sport = :80").strip(),
                 60, 0.2, message=f"{name} listening")
    setup_seconds = round(time.monotonic() - net_started, 1)
    config = net.tmp / "keepalived.conf"
    config.write_text(config_text())
    directors, daemons = {}, {}
    for name, (outside, inside) in DIRECTORS.items():
        # an LVS-DR director: the VIPs local (IPVS takes them at LOCAL_IN), its way back to
        # the client via the router (else rp_filter drops the client's packets)
        host = net.host(name, sysctls={"net.ipv4.ip_forward": 1, **NO_RP_FILTER},
                        links=[(front, "eth0", [f"{outside}/24"]),
                               (back, "eth1", [f"{inside}/24"])])
        for vip in VIPS.values():
            host.run(["ip", "addr", "add", f"{vip}/32", "dev", "lo"])
        host.run(["ip", "route", "add", "default", "via", ROUTER_FRONT])
        folder = net.tmp / name
        folder.mkdir()
        daemons[name] = host.popen(
            [sys.executable, "-m", "director", "-l", "-D", "-C", "-i", name, "-f", config,
             "--backend", "ipvs", "--state-dir", folder / "state", "-p", folder / "pid",
             "--web", "off"], log_path=folder / "log", env=environment())
        directors[name] = host
    logs = lambda: "\n".join(f"--- {n}\n{net.log_of(p)[-3000:]}" for n, p in daemons.items())
    began = time.monotonic()
    for host in directors.values():
        for vip in VIPS.values():
            wait_for(lambda host=host, vip=vip: len(pool(host, vip)) == len(SERVERS), READY,
                     0.5, message=logs)
    ready_seconds = round(time.monotonic() - began, 1)
    for algo, out in outs.items():
        vip = VIPS[algo]
        out["setup_seconds"], out["ready_seconds"] = setup_seconds, ready_seconds
        out["tables"] = {name: table(host, vip) for name, host in directors.items()}
        out["orders"] = {name: pool(host, vip) for name, host in directors.items()}
        out["sysctls"] = {name: sysctls(host) for name, host in directors.items()}
        out["mid_flow_logged"] = {name: "lb.mid_flow " in net.log_of(daemon)
                                  for name, daemon in daemons.items()}
    nexthops = [word for outside, _ in DIRECTORS.values()
                for word in ("nexthop", "via", outside, "dev", "eth1")]
    for vip in VIPS.values():
        router.run(["ip", "route", "add", f"{vip}/32", *nexthops], timeout=COMMAND)

    flows_started = time.monotonic()
    flows, before, on = {}, {}, {}
    for algo, vip in VIPS.items():
        flows[algo] = SlowFlows(net, client, vip)
        opened = flows[algo].open(list(range(FIRST_PORT[algo], FIRST_PORT[algo] + count)))
        outs[algo]["open_failed"] = sorted(p for p, name in opened.items()
                                           if not name.startswith("rs"))
    for algo in VIPS:
        wait_for(lambda algo=algo: all(r["echoes"] >= ECHOES_BEFORE or r["ended"]
                                       for r in flows[algo].report().values()),
                 60, 0.5, message=lambda algo=algo: flows[algo].report())
    for algo, vip in VIPS.items():
        on[algo] = {name: client_ports(host, vip) for name, host in directors.items()}
        outs[algo]["on_d1"], outs[algo]["on_d2"] = len(on[algo]["d1"]), len(on[algo]["d2"])
        before[algo] = flows[algo].report()
    # d2 leaves: the router's routes keep d1's nexthop only, as after d2's withdrawal
    for vip in VIPS.values():
        router.run(["ip", "route", "replace", f"{vip}/32", "via", DIRECTORS["d1"][0],
                    "dev", "eth1"], timeout=COMMAND)
    moved_at = time.monotonic()
    for algo, vip in VIPS.items():
        out = outs[algo]
        after = wait_for(lambda algo=algo: decided(flows[algo].report(), before[algo]),
                         DECIDED, 0.5, message=lambda algo=algo: flows[algo].report())
        out["decided_seconds"] = round(time.monotonic() - moved_at, 1)
        out["flows_seconds"] = round(time.monotonic() - flows_started, 1)
        now = client_ports(directors["d1"], vip)
        out["d1_after"] = len(now)
        moved = set(on[algo]["d2"])
        alive = {p for p, r in after.items()
                 if r["ended"] is None and p not in out["open_failed"]}
        out["survived"] = len(alive)
        out["moved"] = len(moved)
        out["moved_survived"] = len(moved & alive)
        out["stayed_survived"] = len(alive - moved)
        ended: dict[str, int] = {}
        for record in after.values():
            if record["ended"] is not None:
                ended[record["ended"]] = ended.get(record["ended"], 0) + 1
        out["ended"] = ended
        # where d1 sent each moved flow against where it was: mh picks the same real server
        out["moved_same_server"] = sum(1 for p in moved if now.get(p) == on[algo]["d2"][p])
    # the BGP side, to show what it did meanwhile: nothing listens on the router
    lines = {name: net.log_of(daemon).splitlines() for name, daemon in daemons.items()}
    for out in outs.values():
        out["bgp_engine_starts"] = {name: sum("bgp.engine_start" in line for line in log)
                                    for name, log in lines.items()}
        out["bgp_lines"] = [f"{name}: {line[:300]}" for name, log in lines.items()
                            for line in log if "bgp.session" in line or
                            "bgp.engine_restart" in line][-4:]


def decided(report: dict, before: dict) -> dict | None:
    """The report once every flow has ended or echoed ECHOES_AFTER more since the move."""
    if all(r["ended"] or r["echoes"] >= before[p]["echoes"] + ECHOES_AFTER
           for p, r in report.items()):
        return report
    return None


def main(argv: list[str]) -> int:
    count = int(argv[0]) if argv else 80
    print(json.dumps({"runs": scenario(count)}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
