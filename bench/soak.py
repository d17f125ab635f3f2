"""Soak: one director daemon under everything at once for --minutes (default 20), watched for
leaks (RSS, descriptors, greenlets, threads) and for false VRRP transitions.

    sudo .venv/bin/python bench/soak.py [--minutes 20] [--servers 2000] [--reloads 1000]
        [--sse 1000] [--requests 100000] [--warmup 120] [--csv docs/soak.csv]
        [--plot docs/soak.png]

The plot needs matplotlib, for this bench only: `.venv/bin/pip install matplotlib`
(without it the CSV and the figures are still written). A benchmark, not a test: it prints
figures and the acceptance lines of issue 13, and asserts nothing. Needs root.

Everything lives in one director/demo/netlab.py Lab (removed at the end, also on errors):

  * one switch; host A runs our daemon (192.0.2.1, 10.9.255.1), host K Debian's keepalived
    2.2.7 (192.0.2.2, VRRP only), host R the real servers (10.9.0.1-21): this file run as
    `--role servers`, one process, one thread, a selector over --servers listening sockets
    (100 ports on each of 20 addresses, a 21st for the virtual server the B file adds),
    answering each connection `HTTP/1.0 200` and closing it;
  * flapping: R takes 1 % of its servers down (their listening sockets closed: connections
    refused) for FLAP_PERIOD seconds, then the next 1 %, round robin;
  * VRRP: 10 instances (vrid 51-60, advert_int 1, PASS), ours priority 150 and MASTER
    before keepalived (priority 100, state BACKUP) starts: any transition after that, on
    either side, is a false one (ours from /api/v1/events, keepalived's from its log);
  * the daemon: `prlimit --nofile=8192 python -m director -f CONF -l -n --backend nftables
    --web 127.0.0.1:8080` with 20 virtual servers x 100 real servers (18 with TCP_CHECK, 2
    with HTTP_GET, delay_loop 3: about 670 checks/s);
  * reloads: --reloads SIGHUPs spread over the run, each after the file was replaced by the
    other variant: B drops 10 real servers of the first virtual server, adds a virtual server
    of 10, doubles 20 weights and changes the third's connect_timeout; each waits for its
    `reload` event before the next is due;
  * --sse clients of /api/v1/stream spread over the run, each staying 2-30 s (seeded), half
    leaving with a FIN, half with a RST;
  * --requests API requests spread over the run, from 8 keep-alive connections: /healthz
    30 %, /api/v1/events?since=recent 30 %, /api/v1/state 5 %, /metrics 5 %, bad ones 30 %
    (unknown paths, bad arguments, a POST without a token, a garbage request line, a 10 kB
    URL, a request cut in the middle);
  * every SAMPLE_EVERY seconds: RSS, threads (/proc/PID/status), open descriptors
    (/proc/PID/fd), greenlets (`GET /healthz?verbose=1`, director/hub.py's runtime()), the
    daemon's CPU share and the load average; a CSV row each.

This process enters A's network namespace (setns) once the lab is built, so the daemon's
loopback web face is its own. Warm-up: the first --warmup seconds of load (at most a
third of the run). RSS growth = mean of the last 3 samples - mean of the 3 samples ending
the warm-up. The descriptor and greenlet counts are compared quiet to quiet: before the
load starts and QUIET seconds after it stopped (SSE keep-alives every 15 s reap any stream
whose client left), with the same configuration file (A) and every real server up.
"""

from __future__ import annotations

import argparse
import csv
import ctypes
import http.client
import itertools
import json
import os
import random
import re
import selectors
import signal
import socket
import statistics
import sys
import threading
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from director.demo.netlab import Lab, keepalived_binary, wait_for  # noqa: E402

INSTANCES = 10
VIRTUAL_SERVERS = 20
PER_ADDRESS = 100                 # real servers (ports) on each of R's addresses
FIRST_PORT = 8000
FLAP_SHARE = 0.01
FLAP_PERIOD = 20.0                # seconds a flapped set stays down
SAMPLE_EVERY = 10.0
QUIET = 40.0                      # seconds after the load before the last sample
API_CONNECTIONS = 8               # 4 reached 70 requests/s, short of 100,000 in 20 min
WEB = ("127.0.0.1", 8080)
NOFILE = 8192
CLONE_NEWNET = 0x40000000


# --------------------------------------------------------------------------------------------
# The real servers (run as --role servers in R's namespace)
# --------------------------------------------------------------------------------------------

REPLY = b"HTTP/1.0 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n"


def serve(addresses: list[str], count: int) -> None:
    """Listen on `count` (address, port) pairs; between SIGUSR1 and SIGUSR2, flap
    FLAP_SHARE of them per FLAP_PERIOD (after SIGUSR2 every one listens). Until killed."""
    import resource
    resource.setrlimit(resource.RLIMIT_NOFILE, (NOFILE, NOFILE))
    pairs = [(addresses[i // PER_ADDRESS], FIRST_PORT + i % PER_ADDRESS) for i in range(count)]
    pairs += [(addresses[-1], FIRST_PORT + p) for p in range(10)]      # the B file's server
    selector = selectors.DefaultSelector()
    listening: dict[int, socket.socket] = {}
    flapping = [False]
    signal.signal(signal.SIGUSR1, lambda *_: flapping.__setitem__(0, True))
    signal.signal(signal.SIGUSR2, lambda *_: flapping.__setitem__(0, False))

    def listen(index: int) -> None:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(pairs[index])
        sock.listen(256)
        sock.setblocking(False)
        listening[index] = sock
        selector.register(sock, selectors.EVENT_READ, ("listen", index))

    def close(index: int) -> None:
        sock = listening.pop(index)
        selector.unregister(sock)
        sock.close()

    for index in range(len(pairs)):
        listen(index)
    print(f"listening {len(pairs)}", flush=True)
    share = max(1, int(count * FLAP_SHARE))
    down: list[int] = []
    rounds = itertools.count()
    next_flap = time.monotonic()
    conns: dict[socket.socket, float] = {}
    while True:
        now = time.monotonic()
        if (flapping[0] and now >= next_flap) or (down and not flapping[0]):
            for index in down:
                listen(index)
            start = next(rounds) * share % count
            down = [(start + k) % count for k in range(share)] if flapping[0] else []
            for index in down:
                close(index)
            next_flap = now + FLAP_PERIOD
        for key, _ in selector.select(timeout=0.5):
            kind, value = key.data
            if kind == "listen":
                for _ in range(64):
                    try:
                        conn, _ = key.fileobj.accept()
                    except (BlockingIOError, OSError):
                        break
                    conn.setblocking(False)
                    conns[conn] = now
                    selector.register(conn, selectors.EVENT_READ, ("conn", conn))
            else:
                conn = value
                try:
                    if conn.recv(4096):
                        conn.send(REPLY)
                except OSError:
                    pass
                selector.unregister(conn)
                conns.pop(conn, None)
                conn.close()
        for conn, since in list(conns.items()):
            if now - since > 5:                       # a check that never sent its request
                selector.unregister(conn)
                del conns[conn]
                conn.close()


# --------------------------------------------------------------------------------------------
# Configurations
# --------------------------------------------------------------------------------------------

def vrrp_block(priority: int, keepalived: bool) -> str:
    out = []
    for i in range(INSTANCES):
        out += [f"vrrp_instance VI_{i + 1} {{", "    interface eth0",
                *(["    state BACKUP"] if keepalived else []),
                f"    virtual_router_id {51 + i}", f"    priority {priority}",
                "    advert_int 1", "    authentication {", "        auth_type PASS",
                "        auth_pass soak1234", "    }", "    virtual_ipaddress {",
                f"        192.0.2.{101 + i}/24", "    }", "}"]
    return "\n".join(out) + "\n"


def director_config(servers: int, variant: str) -> str:
    """The daemon's file, variant A or B (see the module's docstring)."""
    lines = [vrrp_block(150, keepalived=False)]
    per_vs = servers // VIRTUAL_SERVERS
    extra = [VIRTUAL_SERVERS] if variant == "B" else []
    for v in [*range(VIRTUAL_SERVERS), *extra]:
        lines += [f"virtual_server 192.0.2.{101 + v % INSTANCES} {FIRST_PORT + v} {{",
                  "    delay_loop 3", "    lb_algo wrr", "    lb_kind NAT", "    protocol TCP"]
        reals = range(10) if v == VIRTUAL_SERVERS else range(per_vs)
        if variant == "B" and v == 0:
            reals = range(per_vs - 10)
        for r in reals:
            index = v * per_vs + r if v < VIRTUAL_SERVERS else None
            address, port = ((f"10.9.0.{index // PER_ADDRESS + 1}",
                              FIRST_PORT + index % PER_ADDRESS) if index is not None
                             else (f"10.9.0.{servers // PER_ADDRESS + 1}", FIRST_PORT + r))
            weight = 2 if variant == "B" and v == 1 and r < 20 else 1
            timeout = 3 if variant == "B" and v == 2 else 2
            lines += [f"    real_server {address} {port} {{", f"        weight {weight}"]
            if v >= VIRTUAL_SERVERS - 2 and v < VIRTUAL_SERVERS:
                lines += ["        HTTP_GET {", "            url {", "                path /",
                          "                status_code 200", "            }",
                          f"            connect_timeout {timeout}", "        }"]
            else:
                lines += ["        TCP_CHECK {", f"            connect_timeout {timeout}",
                          "        }"]
            lines.append("    }")
        lines.append("}")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------
# Talking to the daemon (from inside A's namespace)
# --------------------------------------------------------------------------------------------

def enter_namespace(fd: int) -> None:
    """setns(2) (Python 3.11 has no os.setns) while this process has one thread: every
    thread started later is in that network namespace too."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        raise OSError(ctypes.get_errno(), "setns")


def get(path: str, timeout: float = 30.0) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(*WEB, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


class Daemon:
    def __init__(self, lab: Lab, host, conf: Path) -> None:
        self.lab = lab
        self.state_dir = conf.parent / "state"
        self.proc = host.popen(["prlimit", f"--nofile={NOFILE}:{NOFILE}", sys.executable,
                                "-m", "director", "-f", conf, "-l", "-n", "--backend",
                                "nftables", "--web", f"{WEB[0]}:{WEB[1]}", "--state-dir",
                                self.state_dir, "-p", conf.parent / "director.pid"],
                               log_path=conf.parent / "director.log",
                               env={"PYTHONPATH": str(ROOT)})
        self.pid = self.proc.pid               # ip netns exec and prlimit exec: python's pid
        self.cpu_last = (time.monotonic(), 0.0)

    def log(self) -> str:
        return self.lab.log_of(self.proc)[-4000:]

    def alive(self) -> None:
        if self.proc.poll() is not None:
            raise RuntimeError(f"the daemon exited ({self.proc.returncode}):\n{self.log()}")

    def sample(self) -> dict:
        status = Path(f"/proc/{self.pid}/status").read_text()
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        stat = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        cpu = (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")
        now = time.monotonic()
        share = (cpu - self.cpu_last[1]) / max(1e-6, now - self.cpu_last[0])
        self.cpu_last = (now, cpu)
        started = time.monotonic()
        status_code, body = get("/healthz?verbose=1")
        probe_ms = (time.monotonic() - started) * 1000
        runtime = json.loads(body)["runtime"]
        return {"rss_mb": int(fields["VmRSS"].split()[0]) / 1024,
                "fds": len(os.listdir(f"/proc/{self.pid}/fd")),
                "threads": int(fields["Threads"]), "greenlets": runtime["greenlets"],
                "gc_frozen": runtime["gc_frozen"],
                "cpu_pct": round(share * 100, 1), "load1": os.getloadavg()[0],
                "healthz": status_code, "probe_ms": round(probe_ms, 1)}


class Watcher(threading.Thread):
    """Polls /api/v1/events: VRRP transitions, reload results, real server flaps."""

    def __init__(self, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.stop, self.last_id, self.kinds = stop, 0, Counter()
        self.transitions: list[dict] = []
        self.reloads: list[dict] = []
        self.polls = 0
        self.changed = threading.Condition()

    def poll(self) -> None:
        status, body = get(f"/api/v1/events?since={self.last_id}&limit=1000")
        self.polls += 1
        if status != 200:
            return
        with self.changed:
            for event in json.loads(body):
                if event["id"] <= self.last_id:
                    continue
                self.last_id = event["id"]
                self.kinds[event["kind"]] += 1
                if event["kind"] == "vrrp.transition":
                    self.transitions.append(event)
                elif event["kind"] == "reload":
                    self.reloads.append(event)
            self.changed.notify_all()

    def run(self) -> None:
        while not self.stop.wait(0.5):
            try:
                self.poll()
            except OSError:
                pass

    def wait_reloads(self, count: int, timeout: float) -> bool:
        with self.changed:
            return self.changed.wait_for(lambda: len(self.reloads) >= count, timeout)


def paced(total: int, seconds: float, stop: threading.Event):
    """Yield 0..total-1, the i-th not before start + i * seconds / total; ends early on stop."""
    start = time.monotonic()
    for i in range(total):
        delay = start + i * seconds / total - time.monotonic()
        if (delay > 0 and stop.wait(delay)) or stop.is_set():
            return
        yield i


def reloader(daemon: Daemon, conf: Path, variants: dict, watcher: Watcher, total: int,
             seconds: float, stop: threading.Event, out: Counter) -> None:
    """Replace the file by the other variant, SIGHUP, wait for the reload event."""
    base = len(watcher.reloads)
    for i in paced(total, seconds, stop):
        tmp = conf.with_suffix(".new")
        tmp.write_text(variants["B" if i % 2 == 0 else "A"])
        os.replace(tmp, conf)
        daemon.proc.send_signal(signal.SIGHUP)
        if not watcher.wait_reloads(base + i + 1, 60):
            out["timeout"] += 1
            return
    out["sent"] = len(watcher.reloads) - base


BAD = [("GET", "/api/v1/nope"), ("GET", "/api/v1/events?since=abc"),
       ("GET", "/api/v1/events?limit=0"), ("POST", "/api/v1/reload"),
       ("GET", "/api/v1/history?virtual_server=nope"), ("RAW", b"GARBAGE\r\n\r\n"),
       ("GET", "/api/v1/state?" + "x" * 10000), ("RAW", b"GET /api/v1/state HTTP/1.1\r\nHo")]
MIX = ([("GET", "/healthz")] * 30 + [("GET", "EVENTS")] * 30 + [("GET", "/api/v1/state")] * 5
       + [("GET", "/metrics")] * 5 + BAD * 3 + BAD[:6])          # 30 % bad


def raw(data: bytes) -> str:
    """Send bytes on a new connection; the status code, or 'closed' if none came back."""
    with socket.create_connection(WEB, timeout=30) as sock:
        sock.sendall(data)
        if not data.endswith(b"\r\n\r\n"):           # a request cut in the middle
            return "cut"
        head = sock.recv(64)
    match = re.match(rb"HTTP/1\.[01] (\d{3})", head)
    return match.group(1).decode() if match else "closed"


def api_worker(jobs, lock, watcher: Watcher, counts: Counter) -> None:
    conn = None
    while True:
        with lock:
            i = next(jobs, None)
        if i is None:
            break
        method, path = MIX[i % len(MIX)]
        try:
            if method == "RAW":
                result = raw(path)
            else:
                if path == "EVENTS":
                    path = f"/api/v1/events?since={max(0, watcher.last_id - 20)}"
                if conn is None:
                    conn = http.client.HTTPConnection(*WEB, timeout=30)
                conn.request(method, path)
                response = conn.getresponse()
                response.read()
                result = str(response.status)
                if response.will_close:
                    conn.close()
                    conn = None
        except (OSError, http.client.HTTPException) as exc:
            result = type(exc).__name__
            if conn is not None:
                conn.close()
                conn = None
        counts[result] += 1
    if conn is not None:
        conn.close()


def sse_clients(total: int, seconds: float, stop: threading.Event, out: Counter) -> None:
    """Open `total` streams on schedule; each reads until its (seeded) time is up."""
    rng = random.Random(13)
    selector = selectors.DefaultSelector()
    open_: dict[socket.socket, tuple[float, int]] = {}

    def leave(sock: socket.socket, rst: bool) -> None:
        selector.unregister(sock)
        del open_[sock]
        if rst:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
        sock.close()
        out["left"] += 1

    start = time.monotonic()
    opened = 0
    limit = start + seconds + 60
    while (opened < total or open_) and time.monotonic() < limit:
        now = time.monotonic()
        if opened < total and now >= start + opened * seconds / total and not stop.is_set():
            try:
                sock = socket.create_connection(WEB, timeout=10)
                sock.sendall(b"GET /api/v1/stream HTTP/1.1\r\nHost: soak\r\n\r\n")
                sock.setblocking(False)
                open_[sock] = (now + rng.uniform(2, 30), opened % 2)
                selector.register(sock, selectors.EVENT_READ)
            except OSError:
                out["failed"] += 1
            opened += 1
        for key, _ in selector.select(timeout=0.05):
            try:
                data = key.fileobj.recv(65536)
            except OSError:
                data = b""
            if not data:
                out["closed_by_server"] += 1
                leave(key.fileobj, False)
                continue
            out["events"] += data.count(b"\nevent: ")
        for sock, (until, rst) in list(open_.items()):
            if now >= until or stop.is_set():
                leave(sock, bool(rst))
        out["open"] = len(open_)
    out["opened"] = opened
    for sock in list(open_):
        leave(sock, False)


# --------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------

class Sampler(threading.Thread):
    def __init__(self, daemon: Daemon, stop: threading.Event, status: dict) -> None:
        super().__init__(daemon=True)
        self.daemon_, self.stop, self.status = daemon, stop, status
        self.rows: list[dict] = []
        self.t0 = time.monotonic()

    def take(self) -> dict:
        row = {"t_s": round(time.monotonic() - self.t0, 1), "phase": self.status["phase"],
               **self.daemon_.sample(), **{k: v() for k, v in self.status["live"].items()}}
        self.rows.append(row)
        return row

    def run(self) -> None:
        next_at = time.monotonic()
        while not self.stop.wait(max(0.0, next_at - time.monotonic())):
            next_at += SAMPLE_EVERY
            try:
                self.take()
            except (OSError, ValueError, KeyError) as exc:     # a probe timed out: a gap
                print(f"# sample failed: {exc!r}", file=sys.stderr)


def keepalived_argv(lab: Lab, conf: Path) -> list:
    stem = conf.with_suffix("")
    return [keepalived_binary(), "--vrrp", "--dont-fork", "--log-console", "--log-detail",
            "--no-syslog", "--dont-respawn", "--use-file", conf, "--pid", f"{stem}.pid",
            "--vrrp_pid", f"{stem}-vrrp.pid", "--checkers_pid", f"{stem}-checkers.pid",
            "--bfd_pid", f"{stem}-bfd.pid"]


def mean(rows: list[dict], key: str) -> float:
    return statistics.fmean(row[key] for row in rows)


def report(args, sampler: Sampler, watcher: Watcher, baseline: dict, quiet: dict,
           api: Counter, sse: Counter, reloads: Counter, keepalived_log: str,
           vips: tuple[int, int], started_at: float) -> None:
    rows = sampler.rows
    load_rows = [r for r in rows if r["phase"] == "load"]
    warm_end = started_at + args.warmup - sampler.t0
    after = [r for r in load_rows if r["t_s"] >= warm_end]
    if len(after) >= 6:
        growth = mean(after[-3:], "rss_mb") - mean(after[:3], "rss_mb")
        peak = max(r["rss_mb"] for r in after) - mean(after[:3], "rss_mb")
        print(f"RSS after warm-up ({args.warmup:.0f} s): {mean(after[:3], 'rss_mb'):.1f} MB -> "
              f"{mean(after[-3:], 'rss_mb'):.1f} MB, growth {growth:+.2f} MB "
              f"(peak {peak:+.2f} MB; goal under 5 MB)")
    else:
        print("RSS: too few samples after the warm-up for a figure")
    for key in ("rss_mb", "fds", "greenlets", "threads", "gc_frozen"):
        print(f"{key:10} quiet before load {baseline[key]:>8}   quiet after "
              f"{quiet[key]:>8}   during load min {min(r[key] for r in load_rows):>8} "
              f"max {max(r[key] for r in load_rows):>8}")
    initial = INSTANCES * 2                            # INIT->BACKUP->MASTER each
    ours = watcher.transitions[initial:]
    theirs = re.findall(r"\((VI_\d+)\) Entering (\w+) STATE", keepalived_log)
    false_theirs = [t for i, t in enumerate(theirs) if i >= INSTANCES or t[1] != "BACKUP"]
    print(f"VRRP: director transitions {len(watcher.transitions)} ({initial} at start-up), "
          f"false {len(ours)}; keepalived entered {Counter(s for _, s in theirs)}, false "
          f"{len(false_theirs)}; VIPs at the end on A {vips[0]}/{INSTANCES}, on K {vips[1]}")
    for event in ours[:5]:
        print(f"  false: {event}")
    results = Counter(e["result"] for e in watcher.reloads)
    print(f"reloads: {sum(results.values())} of {args.reloads}, events {dict(results)}, waits that timed out "
          f"{reloads['timeout']}")
    print(f"API requests: {sum(api.values())} of {args.requests} by result {dict(sorted(api.items()))}; "
          f"plus {watcher.polls} event polls and {len(rows)} /healthz?verbose=1 probes "
          f"(median {statistics.median(r['probe_ms'] for r in rows):.1f} ms)")
    print(f"SSE clients: {sse['opened']} of {args.sse} opened, {sse['left']} left, {sse['failed']} failed, "
          f"{sse['closed_by_server']} closed by the server, {sse['events']} events read")
    print(f"events seen: {dict(watcher.kinds)}")
    print(f"daemon CPU during load: mean {mean(load_rows, 'cpu_pct'):.0f} %, load average "
          f"mean {mean(load_rows, 'load1'):.2f} max {max(r['load1'] for r in load_rows):.2f}")


def write_csv(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def plot(path: Path, rows: list[dict], warm_end: float, title: str) -> None:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("# no plot: matplotlib is not installed (.venv/bin/pip install matplotlib)")
        return
    fig, axes = plt.subplots(4, 1, figsize=(9, 9), sharex=True)
    minutes = [r["t_s"] / 60 for r in rows]
    load = [r["t_s"] / 60 for r in rows if r["phase"] == "load"]
    for ax, key, label in zip(axes, ("rss_mb", "fds", "greenlets", "threads"),
                              ("RSS (MB)", "open fds", "greenlets", "threads")):
        ax.plot(minutes, [r[key] for r in rows], marker=".", linewidth=1)
        ax.set_ylabel(label)
        if load:
            ax.axvspan(load[0], warm_end / 60, color="0.9", label="warm-up")
            ax.axvline(load[-1], color="0.5", linestyle=":", linewidth=1)
        ax.grid(True, alpha=0.3)
    axes[0].legend(loc="lower right")
    axes[-1].set_xlabel("minutes (load between the shaded start and the dotted line)")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    print(f"# plot: {path}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--role", choices=("bench", "servers"), default="bench")
    parser.add_argument("--addresses", default="")
    parser.add_argument("--minutes", type=float, default=20.0)
    parser.add_argument("--servers", type=int, default=2000)
    parser.add_argument("--reloads", type=int, default=1000)
    parser.add_argument("--sse", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=100000)
    parser.add_argument("--warmup", type=float, default=120.0)
    parser.add_argument("--csv", type=Path, default=ROOT / "docs" / "soak.csv")
    parser.add_argument("--plot", type=Path, default=ROOT / "docs" / "soak.png")
    args = parser.parse_args()
    if args.role == "servers":
        serve(args.addresses.split(","), args.servers)
        return 0
    if args.servers % PER_ADDRESS or args.servers < 10 * VIRTUAL_SERVERS:
        parser.error(f"--servers must be a multiple of {PER_ADDRESS}, at least 200")
    seconds = args.minutes * 60
    args.warmup = min(args.warmup, seconds / 3)
    if keepalived_binary() is None:
        parser.error("keepalived is not installed (apt-get install keepalived)")
    root_ns = os.open("/proc/self/ns/net", os.O_RDONLY)
    with Lab() as lab:
        sw = lab.switch()
        addresses = [f"10.9.0.{i + 1}" for i in range(args.servers // PER_ADDRESS + 1)]
        a = lab.host("a", links=[(sw, "eth0", ["192.0.2.1/24", "10.9.255.1/16"])])
        k = lab.host("k", links=[(sw, "eth0", ["192.0.2.2/24"])])
        r = lab.host("r", links=[(sw, "eth0", [f"{x}/16" for x in addresses])])
        servers = r.popen([sys.executable, Path(__file__), "--role", "servers", "--servers",
                           args.servers, "--addresses", ",".join(addresses)])
        wait_for(lambda: "listening" in lab.log_of(servers) or servers.poll() is not None, 30)
        folder = lab.tmp / "director"
        folder.mkdir()
        conf = folder / "keepalived.conf"
        variants = {v: director_config(args.servers, v) for v in "AB"}
        conf.write_text(variants["A"])
        daemon = Daemon(lab, a, conf)
        with open(f"/run/netns/{a.ns}") as namespace:
            enter_namespace(namespace.fileno())
        stop = threading.Event()
        watcher = Watcher(stop)

        def settled() -> bool:
            daemon.alive()
            try:
                watcher.poll()
                state = json.loads(get("/api/v1/state")[1])
            except OSError:
                return False
            reals = [rs for vs in state["virtual_servers"] for rs in vs["real_servers"]]
            masters = sum(i["state"] == "MASTER" for i in state["vrrp"]["instances"])
            return masters == INSTANCES and len(reals) == args.servers and all(
                rs["up"] for rs in reals)

        wait_for(settled, 120, interval=1, message=daemon.log)
        kconf = lab.tmp / "keepalived.conf"
        kconf.write_text(vrrp_block(100, keepalived=True))
        keepalived = k.popen(keepalived_argv(lab, kconf), log_path=lab.tmp / "keepalived.log")
        wait_for(lambda: len(re.findall(r"Entering BACKUP STATE",
                                        lab.log_of(keepalived))) >= INSTANCES, 30,
                 message=lambda: lab.log_of(keepalived)[-3000:])
        # Flapping starts FLAP_PERIOD after the servers did: wait for all up again, quiet.
        wait_for(settled, 120, interval=1, message=daemon.log)
        api, sse, reloads = Counter(), Counter(), Counter()
        status = {"phase": "quiet", "live": {
            "api": lambda: sum(api.values()), "reloads": lambda: len(watcher.reloads),
            "sse_open": lambda: sse["open"], "sse_opened": lambda: sse["opened"],
            "transitions": lambda: len(watcher.transitions)}}
        sampler = Sampler(daemon, stop, status)
        baseline = sampler.take()
        print(f"# {args.servers} real servers, {INSTANCES} VRRP instances MASTER, keepalived "
              f"BACKUP; quiet baseline {baseline}", flush=True)
        status["phase"] = "load"
        started_at = time.monotonic()
        servers.send_signal(signal.SIGUSR1)              # the flapping starts
        load_stop = threading.Event()
        jobs, lock = paced(args.requests, seconds, load_stop), threading.Lock()
        threads = [threading.Thread(target=api_worker, args=(jobs, lock, watcher, api))
                   for _ in range(API_CONNECTIONS)]
        threads += [threading.Thread(target=sse_clients, args=(args.sse, seconds, load_stop,
                                                               sse)),
                    threading.Thread(target=reloader, args=(daemon, conf, variants, watcher,
                                                            args.reloads, seconds, load_stop,
                                                            reloads))]
        watcher.start()
        sampler.start()
        for thread in threads:
            thread.start()
        try:
            deadline = started_at + seconds
            while time.monotonic() < deadline and all(t.is_alive() for t in threads[-2:]):
                daemon.alive()
                time.sleep(min(5.0, max(0.0, deadline - time.monotonic())))
        finally:
            load_stop.set()
            for thread in threads:
                thread.join(120)
        status["phase"] = "quiet"
        if conf.read_text() != variants["A"]:
            conf.write_text(variants["A"])
            daemon.proc.send_signal(signal.SIGHUP)
            watcher.wait_reloads(len(watcher.reloads) + 1, 60)
        servers.send_signal(signal.SIGUSR2)              # every server up again
        wait_for(settled, 120, interval=1, message=daemon.log)
        stop.wait(QUIET)
        quiet = sampler.take()
        stop.set()
        sampler.join(30)
        watcher.poll()
        vips = (sum(a.has_address("eth0", f"192.0.2.{101 + i}") for i in range(INSTANCES)),
                sum(k.has_address("eth0", f"192.0.2.{101 + i}") for i in range(INSTANCES)))
        print(f"# {datetime_now()}  {os.cpu_count()} cpus  python {sys.version.split()[0]}  "
              f"--minutes {args.minutes:g} --servers {args.servers} --reloads {args.reloads} "
              f"--sse {args.sse} --requests {args.requests}")
        report(args, sampler, watcher, baseline, quiet, api, sse, reloads,
               lab.log_of(keepalived), vips, started_at)
        write_csv(args.csv, sampler.rows)
        plot(args.plot, sampler.rows, started_at + args.warmup - sampler.t0,
             f"director soak: {args.servers} real servers, {INSTANCES} VRRP instances, "
             f"{len(watcher.reloads)} reloads, {sse['opened']} SSE clients, "
             f"{sum(api.values())} API requests, {args.minutes:g} min")
        enter_namespace(root_ns)                         # back home before the lab goes
    return 0


def datetime_now() -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())


if __name__ == "__main__":
    sys.exit(main())
