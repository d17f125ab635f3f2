"""HTTP_GET with digest at scale: director's scheduler against HAProxy, side by side in one run.

    .venv/bin/python bench/check_http_scale.py [--servers 2000] [--window 20] [--warmup 5]
                                               [--skip-haproxy] [--profile 10]

The structure, and most helpers, are check_tcp_scale.py's (imported from it):
  * the servers: one Debian HAProxy process (1 thread, not measured) with one frontend bound
    to --servers ports of 127.0.0.1 (a free range below the ephemeral one), answering every
    request with ``http-request return status 200 ... string "ok\\n"`` (Content-Length 3)
    and closing the connection after the reply (HTTP/1.0, no keep-alive), as keepalived's
    HTTP_GET needs: it reads until the server closes;
  * the digest: genhash's functions (director.genhash fetch, parse_response, compute_digest)
    on one server's reply, before anything is measured;
  * director: a generated keepalived.conf (one virtual_server, --servers real_servers, each
    with ``HTTP_GET { url { path /health digest ... } connect_timeout 2 warmup 1 }`` and
    delay_loop 1) loaded with director.config.load_config; the checkers are built as
    director/check/service.py builds them (resolve_settings, make_target, HttpCheck) and
    added to director's Scheduler, in a separate monkey-patched process; --warmup seconds,
    then a measured window of --window seconds: CPU (getrusage), checks per second (the
    jobs' ok + failed), start lateness (every sample of the window), failures, RSS;
  * HAProxy (the same Debian build, a second process): one backend with the same servers,
    ``option httpchk GET /health``, ``http-check expect string ok``, ``default-server inter
    1s``, ``check`` on each, run in the foreground (-db) for the same warm-up and window;
    CPU from /proc/<pid>/stat, its check rate from the connections the servers took in the
    window (their frontend's stot: the machine's ActiveOpens also count any other process's
    connects, e.g. another bench on a shared machine).
director's run and HAProxy's run one after the other, never at once (2 cores).

--date: the servers add a Date header (``hdr Date "%[date,http_date]"``), as nginx and Apache
do: every second's replies differ from the last second's in those 29 bytes.

--profile S: after director's window, samples it with py-spy for S seconds (as
check_tcp_scale.py --profile does).
"""

import sys

if sys.argv[1:3] == ["--role", "http-ours"]:     # the checker process: patch before anything
    from gevent import monkey

    monkey.patch_all()

import argparse
import os
import shutil
import socket
import subprocess
import tempfile
import time

BENCH = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH)
sys.path.insert(0, BENCH)
sys.path.insert(0, ROOT)

# Its own role check does not match ours: importing it patches nothing.
import check_tcp_scale as tcp
from check_tcp_scale import (
    cpu_seconds,
    hard_nofile,
    machine_busy,
    percentile,
    print_profile,
    raise_nofile,
    sockstat,
    stop_process,
    tcp_counters,
)

PATH = "/health"
BODY_CONFIG = r'"ok\n"'              # HAProxy's escape: the body is the 3 bytes b"ok\n"
FIRST_PORT = 20000                   # below the ephemeral range (32768-60999 here)


# -- role: director's checker --------------------------------------------------------------------

def keepalived_conf(ports: list[int], digest: str) -> str:
    lines = ["global_defs {", "    router_id bench_http", "}",
             "virtual_server 127.0.0.1 80 {", "    delay_loop 1", "    lb_algo rr",
             "    lb_kind NAT", "    protocol TCP"]
    for port in ports:
        lines += [f"    real_server 127.0.0.1 {port} {{", "        weight 1",
                  "        HTTP_GET {", "            url {", f"                path {PATH}",
                  f"                digest {digest}", "            }",
                  "            connect_timeout 2", "            warmup 1", "        }", "    }"]
    lines.append("}")
    return "\n".join(lines) + "\n"


def run_ours(args) -> None:

    from director.check.base import implementation, make_target, resolve_settings
    from director.check.scheduler import Scheduler
    from director.check.service import real_server_name
    from director.clock import MonotonicClock
    from director.config import load_config
    from director.config.blocks.virtual_server import virtual_server_name

    raise_nofile(args.servers + 1024)
    loaded = load_config(args.config, interface_exists=None)
    if loaded.config is None:
        sys.exit("config: " + "; ".join(str(d) for d in loaded.errors[:5]))
    # Room for every start delay of the window, so that none is overwritten before it is read.
    scheduler = Scheduler(MonotonicClock(),
                          lateness_samples=int(args.servers * (args.window + 10) * 1.2))
    settings_seen = set()
    for virtual in loaded.config.virtual_servers:          # as CheckService.start/_job do
        vs_name = virtual_server_name(virtual)
        for real in virtual.real_servers:
            names = (vs_name, real_server_name(real))
            for block in real.checkers:
                settings = resolve_settings(virtual, real, block)
                settings_seen.add(settings)
                target = make_target(virtual, real, block, settings, names)
                scheduler.add((*names, block.kind), implementation(block.kind)(block, target),
                              settings)
    print("settings " + repr(sorted(settings_seen, key=repr)), flush=True)
    tcp.measure_window(scheduler, args)


# -- the parent ----------------------------------------------------------------------------------

class Window(tcp.Window):
    """check_tcp_scale's window, without the accept queues (these servers accept; reading
    /proc/net/tcp with a hundred thousand TIME_WAIT entries takes a while) and with the CPU
    of the server process, which runs beside whichever checker is measured."""

    def __init__(self, pid: int, server_pid: int, server_sock: str) -> None:
        super().__init__(set(), pid)
        self.server_pid = server_pid
        self.server_sock = server_sock

    def snap(self) -> dict:
        busy, total = machine_busy()
        return {"t": time.monotonic(), "cpu": cpu_seconds(self.pid),
                "server_cpu": cpu_seconds(self.server_pid), "busy": busy, "total": total,
                "queues": {}, "sock": sockstat(), "tcp": tcp_counters(),
                "served": served(self.server_sock)}

    @staticmethod
    def delta(a: dict, b: dict, ncpu: int) -> dict:
        found = tcp.Window.delta(a, b, ncpu)
        found["server_cores"] = (sum(b["server_cpu"]) - sum(a["server_cpu"])) / found["elapsed"]
        found["served"] = b["served"] - a["served"]
        return found


def served(sock_path: str) -> int:
    """Connections the servers' frontend took so far (its stot): one per check of whichever
    checker runs, and nothing else's, where the machine's ActiveOpens also count every other
    process's connects (another bench's ten thousand a second on a shared machine)."""
    for row in tcp.haproxy_stat(sock_path):
        if row.get("pxname") == "health" and row.get("svname") == "FRONTEND":
            return int(row["stot"])
    raise RuntimeError("no FRONTEND row for health in the servers' stats")


def free_ports(count: int) -> list[int]:
    """``count`` ports of 127.0.0.1 free now, from FIRST_PORT up, below the ephemeral range."""
    with open("/proc/sys/net/ipv4/ip_local_port_range") as handle:
        low = int(handle.read().split()[0])
    found, held, port = [], [], FIRST_PORT
    try:
        while len(found) < count:
            if port >= low:
                raise RuntimeError(f"not {count} free ports between {FIRST_PORT} and {low}")
            probe = socket.socket()
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                probe.close()
            else:
                held.append(probe)
                found.append(port)
            port += 1
    finally:
        for probe in held:
            probe.close()
    return found


def start_haproxy(config_lines: list[str], directory: str, name: str) -> tuple:
    """HAProxy in the foreground with its stats socket; (process, socket path, log path)."""
    sock_path = os.path.join(directory, f"{name}.sock")
    config_lines = [config_lines[0], f"    stats socket {sock_path} mode 600 level admin",
                    *config_lines[1:]]
    config = os.path.join(directory, f"{name}.cfg")
    with open(config, "w") as handle:
        handle.write("\n".join(config_lines) + "\n")
    log_path = os.path.join(directory, f"{name}.log")
    with open(log_path, "w") as log:   # a file, not a pipe: a full pipe would stall HAProxy
        process = subprocess.Popen(["haproxy", "-db", "-f", config], stdout=log,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not os.path.exists(sock_path):
        if process.poll() is not None or time.monotonic() > deadline:
            stop_process(process)
            with open(log_path) as handle:
                raise RuntimeError(f"haproxy ({name}) did not start: {handle.read()[-2000:]}")
        time.sleep(0.05)
    return process, sock_path, log_path


def haproxy_warnings(log_path: str, name: str) -> None:
    with open(log_path) as handle:
        said = [line.rstrip() for line in handle if "ALERT" in line or "WARNING" in line]
    if said:
        print(f"haproxy ({name}) said ({len(said)} warnings/alerts):", *said[:5], sep="\n  ",
              file=sys.stderr)


def server_config(ports: list[int], date: bool = False) -> list[str]:
    lines = ["global",
             "    nbthread 1",
             f"    maxconn {min(20000, max(4096, (hard_nofile() - len(ports) - 200) // 2))}",
             "defaults",
             "    mode http",
             "    timeout client 5s",
             "    timeout http-request 5s",
             "frontend health",
             "    option httpclose",
             f"    http-request return status 200 content-type text/plain string {BODY_CONFIG}"
             + (' hdr Date "%[date,http_date]"' if date else "")]
    lines += [f"    bind 127.0.0.1:{port}" for port in ports]
    return lines


def checker_config(ports: list[int]) -> list[str]:
    lines = ["global",
             # fd limit = 2 x maxconn + one per server (+ a few): within the hard limit.
             f"    maxconn {max(100, min(10000, (hard_nofile() - len(ports) - 200) // 2))}",
             "defaults",
             "    mode http",
             "    timeout connect 2s",
             "    timeout check 2s",
             "    timeout client 30s",
             "    timeout server 30s",
             "backend servers",
             "    balance roundrobin",
             f"    option httpchk GET {PATH}",
             "    http-check expect string ok",
             "    default-server inter 1s"]
    lines += [f"    server s{i} 127.0.0.1:{port} check" for i, port in enumerate(ports)]
    return lines


def measure_ours(args, config: str, server_pid: int, server_sock: str, ncpu: int,
                 tmp: str) -> dict:
    hold = tcp.hold_seconds(args)
    command = [sys.executable, os.path.abspath(__file__), "--role", "http-ours",
               "--config", config, "--servers", str(args.servers),
               "--warmup", str(args.warmup), "--window", str(args.window), "--hold", str(hold)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    return tcp.collect(process, lambda: Window(process.pid, server_pid, server_sock), args,
                       ncpu, tmp,
                       before=("settings ",))


def measure_haproxy(args, ports: list[int], server_pid: int, server_sock: str, ncpu: int,
                    tmp: str) -> dict:
    process, sock_path, log_path = start_haproxy(checker_config(ports), tmp, "checker")
    try:
        result, servers = tcp.haproxy_window(process, sock_path,
                                             Window(process.pid, server_pid, server_sock),
                                             args, ncpu)
        durations = sorted(int(row["check_duration"]) for row in servers
                           if row.get("check_duration", "").isdigit())
        result["duration"] = {"p50": percentile(durations, 0.5),
                              "p99": percentile(durations, 0.99),
                              "max": durations[-1] if durations else float("nan")}
        return result
    finally:
        stop_process(process)
        haproxy_warnings(log_path, "checker")


def sample_digest(port: int) -> tuple[str, bytes]:
    from director.genhash import build_request, compute_digest, fetch, parse_response
    raw = fetch("127.0.0.1", port, build_request(PATH, "127.0.0.1", port), timeout=5)
    reply = parse_response(raw)
    if reply.status_code != 200:
        raise RuntimeError(f"the server answered {reply.status_line!r}")
    return compute_digest(reply.body), raw


def print_report(args, o: dict, h: dict | None, version: str, ncpu: int, digest: str,
                 raw: bytes) -> None:
    def fmt(value, spec):
        return "-" if value is None else format(value, spec)

    oo = o["outside"]
    ho = h["outside"] if h else None

    def both(function, spec):
        return fmt(function(oo), spec), (fmt(function(ho), spec) if ho else "-")

    def ms3(d):
        return f"{d['p50'] * 1e3:.1f} / {d['p99'] * 1e3:.1f} / {d['max'] * 1e3:.1f}"

    o_cores = o["cpu"] / o["elapsed"]
    o_rate = (o["ok"] + o["failed"]) / o["elapsed"]
    h_cores = ho["cpu"] / ho["elapsed"] if h else None
    # HAProxy keeps no count of checks done: the servers' connections in the window (one a
    # check; the machine's ActiveOpens would count other processes' connects too).
    h_rate = ho["served"] / ho["elapsed"] if h else None
    print(f"servers {args.servers}, HTTP_GET {PATH} with digest / option httpchk + http-check "
          f"expect string ok, delay_loop / inter 1 s, warm-up {args.warmup:g} s, window "
          f"{args.window:g} s, {ncpu} CPUs; {version}")
    print(f"reply {raw!r}; digest {digest}")
    print(f"director settings: {o['settings']}")
    rows = [
        ("cores used (getrusage; HAProxy /proc)", fmt(o_cores, ".3f"), fmt(h_cores, ".3f")),
        ("  user / sys (/proc/<pid>/stat)",
         *both(lambda w: f"{w['user'] / w['elapsed']:.3f} / {w['sys'] / w['elapsed']:.3f}", "")),
        ("CPU per check (us)", fmt(o_cores / o_rate * 1e6 if o_rate else None, ".1f"),
         fmt(h_cores / h_rate * 1e6 if h and h_rate else None, ".1f")),
        ("checks/s (director's count; HAProxy: the servers')", fmt(o_rate, ",.0f"),
         fmt(h_rate, ",.0f")),
        ("connections the servers took/s", *both(lambda w: w["served"] / w["elapsed"],
                                                 ",.0f")),
        ("connect()s/s (ActiveOpens)", *both(lambda w: w["tcp"]["ActiveOpens"] / w["elapsed"],
                                             ",.0f")),
        ("  each server checked every (s)",
         *both(lambda w: args.servers * w["elapsed"] / max(1, w["served"]), ".3f")),
        ("server accepts/s (PassiveOpens)",
         *both(lambda w: w["tcp"]["PassiveOpens"] / w["elapsed"], ",.0f")),
        ("failures in window", f"{o['failed']} failed, {o['down']} down",
         f"{h['chkfail']} chkfail, {h['down']} not UP" if h else "-"),
        ("start lateness p50 / p99 / max (ms)", ms3(o["lateness"]), "-"),
        ("  lateness samples in window", f"{o['lateness']['count']:,}", "-"),
        ("check duration p50 / p99 / max (ms; each server's last)", ms3(o["duration"]),
         (f"{h['duration']['p50']:.0f} / {h['duration']['p99']:.0f} / "
          f"{h['duration']['max']:.0f}") if h else "-"),
        ("RSS at end / peak (MB)", f"{o['rss_mb']:.0f} / {o['peak_rss_mb']:.0f}",
         f"{h['rss_mb']:.0f} / {h['peak_rss_mb']:.0f}" if h else "-"),
        ("server process cores (not measured)", *both(lambda w: w["server_cores"], ".3f")),
        ("machine busy cores in window", *both(lambda w: w["machine_busy_cores"], ".2f")),
        ("TIME_WAIT / orphans at window end", *both(lambda w: f"{w['tw']} / {w['orphan']}", "")),
        ("resets sent/s (OutRsts)", *both(lambda w: w["tcp"]["OutRsts"] / w["elapsed"], ",.0f")),
    ]
    tcp.print_table("", rows, o, h)
    if h:
        print(f"ratio director/HAProxy: cores {o_cores / h_cores:.2f}x, CPU per check "
              f"{(o_cores / o_rate) / (h_cores / h_rate):.2f}x")
    lat = o["lateness"]
    print(f"lateness p99 < 50 ms: {'within' if lat['p99'] < 0.05 else 'over'} "
          f"({lat['p99'] * 1e3:.1f} ms); RSS < 200 MB: "
          f"{'within' if o['peak_rss_mb'] < 200 else 'over'} ({o['peak_rss_mb']:.0f} MB); "
          f"failures: {o['failed']}")
    if "profile" in o:
        print_profile(o["profile"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--role", choices=("parent", "http-ours"), default="parent",
                        help=argparse.SUPPRESS)
    parser.add_argument("--config", help=argparse.SUPPRESS)
    parser.add_argument("--hold", type=float, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--servers", type=int, default=2000)
    parser.add_argument("--window", type=float, default=20)
    parser.add_argument("--warmup", type=float, default=5)
    parser.add_argument("--skip-haproxy", action="store_true")
    parser.add_argument("--date", action="store_true",
                        help="the servers stamp a Date header on every reply, as nginx does")
    parser.add_argument("--profile", type=int, default=0, metavar="SECONDS",
                        help="sample director's process with py-spy after its window")
    args = parser.parse_args()
    if args.role == "http-ours":
        return run_ours(args)

    haproxy = shutil.which("haproxy")
    if haproxy is None:       # the servers are HAProxy too, so it is needed even with --skip
        sys.exit("haproxy is not installed (apt-get install haproxy)")
    version = "HAProxy " + subprocess.run([haproxy, "-v"], check=False, capture_output=True,
                                          text=True).stdout.split()[2]
    ncpu = os.cpu_count() or 1
    raise_nofile(args.servers + 1024)
    tmp = tempfile.mkdtemp(prefix="check_http_scale.")
    server = None
    try:
        ports = free_ports(args.servers)
        server, server_sock, server_log = start_haproxy(server_config(ports, args.date), tmp,
                                                        "servers")
        deadline = time.monotonic() + 30
        while True:                                  # every bind is done before the socket,
            try:                                     # but wait for the first reply anyway
                digest, raw = sample_digest(ports[-1])
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        config = os.path.join(tmp, "keepalived.conf")
        with open(config, "w") as handle:
            handle.write(keepalived_conf(ports, digest))
        ours = measure_ours(args, config, server.pid, server_sock, ncpu, tmp)
        theirs = None if args.skip_haproxy else measure_haproxy(args, ports, server.pid,
                                                                 server_sock, ncpu, tmp)
    finally:
        stop_process(server)
        if server is not None:
            haproxy_warnings(server_log, "servers")
        shutil.rmtree(tmp, ignore_errors=True)
    print_report(args, ours, theirs, version, ncpu, digest, raw)


if __name__ == "__main__":
    main()
