"""Runs in the qemu guest (a kernel with IPVS): the HOWTO's LVS-NAT lab of ``director demo``
(director/demo/topology.py) with both directors on --backend ipvs, every director namespace
with its own IPVS table. Prints one JSON object on its last line;
tests/functional/test_howto_ipvs_qemu.py asserts on it and bench/howto_failover.py reads it.

Run A, with ``lvs_sync_daemon eth1 VI_1``: HTTP through the VIP in the ratio of the weights;
rs2 stopped (zero failed requests once its check took it out) and started again; the sync
daemons as the states call for; 50 long-lived connections through a kill -9 of lb1 (its links
cut, as a dead machine's), then lb1 restarted (it preempts back); a reload that changes the
sync id. Run B, without the sync daemon: the same failover, the baseline.

``python3 howto_lab_case.py [director|keepalived] [sync|nosync|both]`` (default: director
both): keepalived runs the same configuration for the side-by-side bench.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from director.demo.topology import REAL_SERVERS, VIP, build  # noqa: E402
from director.demo.netlab import Lab, keepalived_binary, wait_for  # noqa: E402

LAB_CONF = REPO / "director" / "demo" / "lab.conf"
CLIENT_SCRIPT = str(Path(__file__).with_name("lab_client.py"))
ECHO_PORT = 9000
CONNECTIONS = 50
READY = 120.0           # seconds a director may take to start under emulation
ECHO_SERVER = """
virtual_server 192.168.1.11 9000 {
    delay_loop 2
    lb_algo rr
    lb_kind NAT
    protocol TCP
    real_server 10.20.40.10 9000 {
        TCP_CHECK {
            connect_timeout 1
        }
    }
    real_server 10.20.40.11 9000 {
        TCP_CHECK {
            connect_timeout 1
        }
    }
    real_server 10.20.40.12 9000 {
        TCP_CHECK {
            connect_timeout 1
        }
    }
}
"""


def configuration(sync: str | None) -> str:
    """lab.conf, with the sync daemon line (``sync``: its arguments) and the echo service."""
    text = LAB_CONF.read_text()
    if sync is not None:
        text = text.replace("global_defs {\n", f"global_defs {{\n    lvs_sync_daemon {sync}\n", 1)
    return text + ECHO_SERVER


def ipvsadm(host, *args: str) -> str:
    return host.run(["ipvsadm", *args], check=False).stdout


def pool(host, port: int) -> set[str]:
    """Real servers of VIP:port in this director's IPVS table."""
    table = ipvsadm(host, "-Ln", "-t", f"{VIP}:{port}")
    return set(re.findall(r"-> (\d+\.\d+\.\d+\.\d+):\d+\s+Masq", table))


def connections(host, port: int) -> int:
    """Established connections to VIP:port in this director's connection table."""
    table = ipvsadm(host, "-Lnc")
    return sum(1 for line in table.splitlines()
               if "ESTABLISHED" in line and f"{VIP}:{port}" in line)


def client_run(howto, *args: str, timeout: float = 120) -> dict:
    done = howto.client.run([sys.executable, CLIENT_SCRIPT, *args], timeout=timeout)
    return json.loads(done.stdout.strip().splitlines()[-1])


def start_director(howto, name: str, config: Path, engine: str):
    if engine == "keepalived":
        host = howto.directors[name]
        return host.popen([keepalived_binary(), "-n", "-l", "-D", "-f", str(config),
                           "-i", name, "-p", str(howto.net.tmp / f"{name}.pid"),
                           "-r", str(howto.net.tmp / f"{name}.vrrp.pid"),
                           "-c", str(howto.net.tmp / f"{name}.check.pid")],
                          log_path=howto.net.tmp / f"{name}.log")
    return howto.start_director(name, config, "ipvs")


def sync_daemons(lb1, lb2) -> dict[str, str]:
    """What ``ipvsadm -L --daemon`` shows in each director's namespace."""
    return {"lb1": ipvsadm(lb1, "-L", "--daemon"), "lb2": ipvsadm(lb2, "-L", "--daemon")}


def api_active_connections(host, port: int) -> int:
    """Active connections of VIP:port's real servers as the director's /api/v1/state says."""
    code = ("import json, sys, urllib.request\n"
            "state = json.load(urllib.request.urlopen('http://127.0.0.1:8080/api/v1/state'))\n"
            "print(sum(r['active_connections'] or 0 for v in state['virtual_servers']\n"
            "          if v['port'] == int(sys.argv[1]) for r in v['real_servers']))")
    done = host.run([sys.executable, "-c", code, str(port)], check=False, timeout=30)
    return int(done.stdout.strip() or -1)


def holds_vips(host) -> bool:
    return host.has_address("eth0", VIP) and host.has_address("eth1", "10.20.40.1")


def survived(status: dict, since: float) -> int:
    """Connections with no error that got an echo after ``since`` (seconds into the hold)."""
    return sum(1 for c in status["connections"]
               if not c["error"] and c["last_echo"] is not None and c["last_echo"] > since)


def carried_on(path: Path) -> tuple[int, list[str]]:
    """After a takeover: how many of the held connections echo again, and the errors of
    the others, once each is one or the other."""
    since = read_status(path)["at"]
    status = wait_for(lambda: decided(path, since), 60, 0.5,
                      message=lambda: read_status(path))
    return survived(status, since), sorted({c["error"] for c in status["connections"]
                                            if c["error"]})[:5]


def decided(path: Path, since: float) -> dict | None:
    """The hold's status once every connection either echoed after ``since`` or failed
    (TCP retransmits back off to several seconds, so this takes a while after a failover)."""
    status = read_status(path)
    if all(c["error"] or (c["last_echo"] or 0) > since for c in status["connections"]):
        return status
    return None


def read_status(path: Path) -> dict:
    return json.loads(path.read_text())


def scenario(engine: str, sync: bool, full: bool) -> dict:
    """What was measured, as far as it got: a failure is in "error", with the logs."""
    out: dict = {"engine": engine, "sync": sync}
    with Lab() as net:
        try:
            steps(net, engine, sync, full, out)
        except Exception as exc:
            import traceback
            where = traceback.extract_tb(exc.__traceback__)
            lines = [f"line {frame.lineno}: {frame.line}" for frame in where
                     if frame.filename == __file__]
            out["error"] = f"{type(exc).__name__} at {lines[-1:]}: {str(exc)[:2000]}"
        out["logs"] = {path.name: path.read_text(errors="replace")[-5000:]
                       for path in net.tmp.glob("lb*.log")}
    return out


def steps(net, engine: str, sync: bool, full: bool, out: dict) -> None:
    howto = build(net)
    lb1, lb2 = howto.directors["lb1"], howto.directors["lb2"]
    for name, host in howto.real_servers.items():
        host.popen([sys.executable, CLIENT_SCRIPT, "echo", REAL_SERVERS[name],
                    str(ECHO_PORT)])
    config = net.tmp / "keepalived.conf"
    config.write_text(configuration("eth1 VI_1" if sync else None))
    daemons = {name: start_director(howto, name, config, engine) for name in ("lb1", "lb2")}
    log = lambda: "\n".join(f"--- {n}\n{net.log_of(p)[-3000:]}" for n, p in daemons.items())
    wait_for(lambda: holds_vips(lb1), READY, 0.2, message=log)
    for host in (lb1, lb2):
        wait_for(lambda host=host: len(pool(host, 80)) == 3 and
                 len(pool(host, ECHO_PORT)) == 3, READY, 0.2, message=log)
    out["daemons_start"] = sync_daemons(lb1, lb2)
    if full:
        out["requests"] = client_run(howto, "requests", "300", VIP, "80")
        howto.web_servers["rs2"].send_signal(signal.SIGKILL)
        began = time.monotonic()
        wait_for(lambda: "10.20.40.11" not in pool(lb1, 80), 30, 0.1, message=log)
        out["rs2_out_after"] = round(time.monotonic() - began, 2)
        wait_for(lambda: "10.20.40.11" not in pool(lb2, 80), 30, 0.1, message=log)
        out["rs2_out_lb2_after"] = round(time.monotonic() - began, 2)
        out["requests_rs2_down"] = client_run(howto, "requests", "300", VIP, "80")
        howto.start_web_server("rs2")
        began = time.monotonic()
        wait_for(lambda: "10.20.40.11" in pool(lb1, 80), 30, 0.1, message=log)
        out["rs2_back_after"] = round(time.monotonic() - began, 2)
    # 50 long-lived connections, then lb1 dies as a machine does
    status_path = net.tmp / "hold.json"
    hold_seconds = 300 if full else 120      # ended by hold.kill() when done
    hold = howto.client.popen([sys.executable, CLIENT_SCRIPT, "hold", str(CONNECTIONS),
                               VIP, str(ECHO_PORT), str(hold_seconds), str(status_path)])
    # every connection established and a few lines through lb1 each
    wait_for(lambda: status_path.exists() and
             all(c["echoed"] >= 10 for c in read_status(status_path)["connections"]),
             30, 0.2, message=lambda: net.log_of(hold))
    if sync:
        # the kernel's master sync sends a connection after its third packet and flushes
        # its buffer every 2 s: a connection younger than that is not on the BACKUP yet
        began = time.monotonic()
        wait_for(lambda: connections(lb2, ECHO_PORT) >= CONNECTIONS, 30, 0.2,
                 message=lambda: ipvsadm(lb2, "-Lnc"))
        out["synced_after"] = round(time.monotonic() - began, 2)
    if engine == "director":
        # live figures: lb1's API counts the 50 connections (IPVS ActiveConn, each verify)
        began = time.monotonic()
        out["api_active_connections"] = wait_for(
            lambda: api_active_connections(lb1, ECHO_PORT) == CONNECTIONS and CONNECTIONS,
            15, 0.5, message=lambda: api_active_connections(lb1, ECHO_PORT))
        out["api_active_after"] = round(time.monotonic() - began, 2)
    if sync and engine == "director":
        # a sync daemon stopped behind the director's back is started again
        lb2.run(["ipvsadm", "--stop-daemon", "backup"])
        began = time.monotonic()
        wait_for(lambda: "backup sync daemon" in ipvsadm(lb2, "-L", "--daemon"), 20, 0.2,
                 message=log)
        out["sync_daemon_put_back_after"] = round(time.monotonic() - began, 2)
    out["lb2_pool_before_failover"] = sorted(pool(lb2, 80))
    out["lb2_connections_before_failover"] = connections(lb2, ECHO_PORT)
    killed_at = read_status(status_path)["at"]
    # lb1 dies as a machine does: its links go first (nothing more leaves it), then every
    # process of it (keepalived's children would otherwise see their parent die and send
    # priority 0 on their way out)
    howto.outside.set_port(lb1, "eth0", up=False)
    howto.inside.set_port(lb1, "eth1", up=False)
    os.killpg(daemons["lb1"].pid, signal.SIGKILL)
    began = time.monotonic()
    wait_for(lambda: holds_vips(lb2), 30, 0.02, message=log)
    out["failover_seconds"] = round(time.monotonic() - began, 3)
    out["daemons_after_failover"] = ipvsadm(lb2, "-L", "--daemon")
    out["survived_failover"], out["errors_failover"] = carried_on(status_path)
    out["killed_at"] = killed_at
    if full:
        out["requests_after_failover"] = client_run(howto, "requests", "60", VIP, "80")
        # lb1 comes back: links up, started again; it preempts (priority 150 > 100)
        howto.outside.set_port(lb1, "eth0", up=True)
        howto.inside.set_port(lb1, "eth1", up=True)
        daemons["lb1"] = start_director(howto, "lb1", config, engine)
        samples = []

        def preempted() -> bool:
            samples.append(connections(lb1, ECHO_PORT))
            return holds_vips(lb1)

        wait_for(preempted, READY, 0.1, message=log)
        out["lb1_preempted"] = holds_vips(lb1)
        out["lb1_connections_when_master"] = samples[-1] if samples else 0
        out["lb1_connections_max_before"] = max(samples, default=0)
        # lb1's VIPs outlived its kill -9 on its interfaces, so "preempted" can be true before
        # the restarted daemon runs: lb2 gives the VIPs up once that one has started (under
        # emulation its start takes as long as the first one's: READY, not less)
        wait_for(lambda: not holds_vips(lb2), READY, 0.1, message=log)
        wait_for(lambda: "backup sync" in ipvsadm(lb2, "-L", "--daemon") or engine != "director",
                 30, 0.1, message=log)
        # and the restarted MASTER's own switch to a master daemon (its reconcile greenlet,
        # slower under emulation than lb2's)
        wait_for(lambda: "master sync" in ipvsadm(lb1, "-L", "--daemon") or engine != "director",
                 30, 0.1, message=log)
        out["daemons_after_failback"] = sync_daemons(lb1, lb2)
        out["survived_failback"], out["errors_failback"] = carried_on(status_path)
        # a reload that changes the sync daemon: the kernel follows on both
        config.write_text(configuration("eth1 VI_1 id 77"))
        for process in daemons.values():
            process.send_signal(signal.SIGHUP)
        for host in (lb1, lb2):
            wait_for(lambda host=host: "syncid=77" in ipvsadm(host, "-L", "--daemon"),
                     30, 0.2, message=log)
        out["daemons_after_reload"] = sync_daemons(lb1, lb2)
        # stopped: the sync daemons go with the director
        daemons["lb2"].send_signal(signal.SIGTERM)
        daemons["lb2"].wait(30)
        out["daemons_after_stop_lb2"] = ipvsadm(lb2, "-L", "--daemon")
        out["lb2_exit"] = daemons["lb2"].returncode
    hold.kill()


def main(argv: list[str]) -> int:
    engine = argv[0] if argv else "director"
    which = argv[1] if len(argv) > 1 else "both"
    results = []
    if which in ("sync", "both"):
        results.append(scenario(engine, True, full=engine == "director"))
    if which in ("nosync", "both"):
        results.append(scenario(engine, False, full=False))
    print(json.dumps({"runs": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
