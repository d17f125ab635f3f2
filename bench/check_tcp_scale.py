"""TCP_CHECK at scale: director's scheduler against HAProxy, side by side in one run.

    .venv/bin/python bench/check_tcp_scale.py [--servers 10000] [--window 30] [--warmup 5]
                                              [--skip-haproxy] [--profile 10] [--rounds 1]

One run, one machine, one set of listeners:
  * a listener process opens --servers listening TCP sockets on 127.0.0.1 (backlog 1024) and
    never accepts. director's check completes the handshake, so the kernel queues each
    connection on the listener's accept queue, where it stays after the checker's reset
    (SO_LINGER 0) until accepted. A queue holds backlog + 1 = 1,025 (then SYNs are dropped
    and connects time out), so at one check a second it lasts 17 minutes: far past a run.
    The run prints the longest queue and ListenOverflows to show it. HAProxy's check never
    completes the handshake: it turns TCP_QUICKACK off, so its final ACK is delayed and its
    reset arrives first; the listener sees a half-open connection reset (EmbryonicRsts) and
    queues nothing. The queued connections cost kernel memory (about 3 KB each: the run
    prints the slab before and after), freed when the listener exits;
  * director: a separate, monkey-patched process runs director's Scheduler with --servers
    TcpCheck jobs (delay_loop 1 s, warmup 1 s, connect_timeout 2 s) for --warmup seconds,
    then a measured window of --window seconds: CPU (getrusage), checks per second, start
    lateness (every sample of the window), peak RSS, failures;
  * HAProxy (Debian's): one backend with the same servers, ``check inter 1s``, run in the
    foreground (-db) for the same warm-up and window; CPU from /proc/<pid>/stat.
The two run one after the other (never at once: on 2 cores each would steal from the other),
--rounds times alternating. Machine-wide busy cores are printed for each window: others share
this machine, and a window where the machine was busy is noise.

--null-checker: director's jobs get a checker whose start() passes at once (no socket): what
the scheduler, the result path and the loop's wake-ups cost a check by themselves (run with
--skip-haproxy; "connect()s" are then 0).

--profile S: after director's window, samples it with py-spy (``pip install py-spy`` into the
venv) for S seconds and prints the top functions by own time and by total time.
"""

import sys

if sys.argv[1:3] == ["--role", "ours"]:      # the checker process: patch before anything else
    from gevent import monkey

    monkey.patch_all()

import argparse
import gc
import collections
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BACKLOG = 1024
TICK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


# -- helpers shared by the roles -----------------------------------------------------------------

def raise_nofile(wanted: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= wanted:
        return
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, max(hard, wanted)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def hard_nofile() -> int:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    return hard if hard != resource.RLIM_INFINITY else 1 << 20


def read_ports(path: str) -> list[int]:
    with open(path) as handle:
        return [int(line) for line in handle if line.strip()]


def percentile(ordered: list[float], fraction: float) -> float:
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def rss_mb(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of a process, MB."""
    values = {}
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith(("VmRSS:", "VmHWM:")):
                key, number, _ = line.split()
                values[key] = int(number) / 1024
    return values.get("VmRSS:", 0.0), values.get("VmHWM:", 0.0)


def cpu_seconds(pid: int) -> tuple[float, float]:
    """(utime, stime) of a process (all its threads), seconds."""
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return int(fields[11]) / TICK, int(fields[12]) / TICK


def tcp_counters() -> dict[str, int]:
    """The network namespace's TCP counters (/proc/net/snmp Tcp:, /proc/net/netstat TcpExt:)."""
    found = {}
    for path, prefix in (("/proc/net/snmp", "Tcp:"), ("/proc/net/netstat", "TcpExt:")):
        with open(path) as handle:
            rows = [line.split() for line in handle if line.startswith(prefix)]
        for names, values in zip(rows[::2], rows[1::2]):
            found.update({n: int(v) for n, v in zip(names[1:], values[1:])})
    return found


def machine_busy() -> tuple[float, float]:
    """(busy jiffies, total jiffies) over all CPUs, from /proc/stat."""
    with open("/proc/stat") as handle:
        values = [int(v) for v in handle.readline().split()[1:]]
    idle = values[3] + values[4]
    total = sum(values[:8])
    return total - idle, total


def accept_queues(ports: set[int]) -> dict[int, int]:
    """Listening port -> connections waiting in its accept queue (/proc/net/tcp rx_queue of
    a LISTEN socket is sk_ack_backlog)."""
    found = {}
    with open("/proc/net/tcp") as handle:
        next(handle)
        for line in handle:
            fields = line.split(None, 5)
            if fields[3] != "0A" or not fields[1].startswith("0100007F:"):
                continue
            port = int(fields[1][9:], 16)
            if port in ports:
                found[port] = int(fields[4].split(":")[1], 16)
    return found


def sockstat() -> dict[str, int]:
    with open("/proc/net/sockstat") as handle:
        for line in handle:
            if line.startswith("TCP:"):
                parts = line.split()[1:]
                return {parts[i]: int(parts[i + 1]) for i in range(0, len(parts), 2)}
    return {}


def slab_mb() -> float:
    with open("/proc/meminfo") as handle:
        for line in handle:
            if line.startswith("Slab:"):
                return int(line.split()[1]) / 1024
    return 0.0


# -- role: the listeners -------------------------------------------------------------------------

def run_listener(args) -> None:
    raise_nofile(args.servers + 256)
    parent = os.getppid()
    sockets = []
    for _ in range(args.servers):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        sock.listen(BACKLOG)
        sockets.append(sock)
    temporary = args.ports_file + ".part"
    with open(temporary, "w") as handle:
        handle.write("".join(f"{s.getsockname()[1]}\n" for s in sockets))
    os.rename(temporary, args.ports_file)
    deadline = time.monotonic() + args.lifetime
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    while not stop and time.monotonic() < deadline and os.getppid() == parent:
        time.sleep(0.5)
    for sock in sockets:
        sock.close()


# -- role: director's checker --------------------------------------------------------------------

def run_ours(args) -> None:
    sys.path.insert(0, ROOT)

    from director.check.base import CheckSettings, Target
    from director.check.scheduler import Scheduler
    from director.check.tcp import TcpCheck
    from director.clock import MonotonicClock

    raise_nofile(args.servers + 1024)
    ports = read_ports(args.ports_file)
    settings = CheckSettings(delay_loop=1.0, connect_timeout=2.0, retry=1,
                             delay_before_retry=1.0, warmup=1.0, alpha=False)
    # Room for every start delay of the window, so that none is overwritten before it is read.
    scheduler = Scheduler(MonotonicClock(),
                          lateness_samples=int(args.servers * (args.window + 10) * 1.2))
    for port in ports:
        name = f"127.0.0.1:{port}"
        target = Target("127.0.0.1", port, settings.connect_timeout,
                        virtual_server="bench", real_server=name)
        checker = NullCheck() if args.null_checker else TcpCheck(None, target)
        scheduler.add(("bench", name, "TCP_CHECK"), checker, settings)
    measure_window(scheduler, args)


class NullCheck:
    """--null-checker: passes at once, on the loop like TCP_CHECK, with no system call, and
    ends as TCP_CHECK's passes do (checker.PASSED)."""

    def __init__(self) -> None:
        from director.check.checker import PASSED
        self.passed = PASSED

    def start(self, done) -> None:
        done(self.passed, 0.0)


def cprofile_checks(scheduler, totals, seconds: float) -> None:
    """BENCH_CPROFILE=S: S seconds of the running checks under cProfile, printed to stderr
    as calls and own time per check (deterministic counts, where py-spy samples; cProfile
    itself slows every call, so the times are relative only)."""
    import cProfile
    import io
    import pstats

    import gevent
    before = sum(totals())
    profiler = cProfile.Profile()
    profiler.enable()
    gevent.sleep(seconds)
    profiler.disable()
    checks = max(1, sum(totals()) - before)
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    rows = sorted(stats.stats.items(), key=lambda item: -item[1][2])[:30]
    print(f"cProfile: {checks} checks in {seconds:g} s; per check: calls, own us, total us",
          file=sys.stderr)
    for (filename, line, name), (_, calls, own, total, _) in rows:
        where = f"{os.path.basename(filename)}:{line}({name})"
        print(f"  {calls / checks:7.2f} {own / checks * 1e6:8.2f} {total / checks * 1e6:8.2f}"
              f"  {where}", file=sys.stderr)
    print(f"  total calls per check {sum(v[1] for v in stats.stats.values()) / checks:.1f}",
          file=sys.stderr)


class CollectorTimes:
    """A gc.callbacks entry: the garbage collections of the window, per generation, and the
    process time they took (the collector runs in the checker's own thread)."""

    def __init__(self) -> None:
        self.collections = [0, 0, 0]
        self.seconds = 0.0
        self._started = 0.0

    def __call__(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._started = time.process_time()
        else:
            self.collections[info["generation"]] += 1
            self.seconds += time.process_time() - self._started


def measure_window(scheduler, args) -> None:
    """Start the scheduler, let it warm up, measure one window and print the result line the
    parent reads (shared by check_http_scale.py)."""
    import gevent

    from director import hub
    scheduler.start()
    gc.freeze()          # as the daemon does once its subsystems are up

    def totals() -> tuple[int, int]:
        ok = failed = 0
        for job in scheduler.jobs:
            ok += job.ok
            failed += job.failed
        return ok, failed

    gevent.sleep(args.warmup)
    scheduler.lateness.clear()
    ok0, failed0 = totals()
    collector = CollectorTimes()
    usage0 = resource.getrusage(resource.RUSAGE_SELF)
    start = time.monotonic()
    print("window-start", flush=True)
    gc.callbacks.append(collector)
    gevent.sleep(args.window)
    gc.callbacks.remove(collector)
    elapsed = time.monotonic() - start
    usage1 = resource.getrusage(resource.RUSAGE_SELF)
    print("window-end", flush=True)
    ok1, failed1 = totals()
    window = sorted(scheduler.lateness)
    reservoir = window
    errors = collections.Counter(job.last.error for job in scheduler.jobs
                                 if job.last is not None and not job.last.ok)
    durations = sorted(job.last.duration for job in scheduler.jobs if job.last is not None)
    rss_now, _ = rss_mb(os.getpid())
    result = {
        "elapsed": elapsed,
        "cpu": (usage1.ru_utime - usage0.ru_utime) + (usage1.ru_stime - usage0.ru_stime),
        "cpu_user": usage1.ru_utime - usage0.ru_utime,
        "cpu_sys": usage1.ru_stime - usage0.ru_stime,
        "ok": ok1 - ok0, "failed": failed1 - failed0,
        "errors": errors.most_common(5),
        "down": sum(1 for job in scheduler.jobs if not job.health.up),
        "lateness": {"count": len(window), "p50": percentile(window, 0.50),
                     "p99": percentile(window, 0.99), "max": window[-1] if window else 0.0},
        "duration": {"p50": percentile(durations, 0.50), "p99": percentile(durations, 0.99),
                     "max": durations[-1] if durations else 0.0},
        "reservoir": {"count": len(reservoir), "p50": percentile(reservoir, 0.50),
                      "p99": percentile(reservoir, 0.99)},
        "running": sum(1 for job in scheduler.jobs if job.running),
        "crashes": scheduler.crashes, "hub_crashes": dict(hub.crashes),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "rss_mb": rss_now,
        "gc": {"collections": collector.collections, "seconds": collector.seconds},
    }
    print("result " + json.dumps(result), flush=True)
    seconds = cprofile_seconds()
    if seconds > 0:                      # after the window: never inside what is measured
        cprofile_checks(scheduler, totals, seconds)
    if args.hold > 0:                    # kept running for the profiler
        print("holding", flush=True)
        gevent.sleep(args.hold)
    scheduler.stop()


# -- the parent ----------------------------------------------------------------------------------

# ActiveOpens: connect()s; PassiveOpens: handshakes a listener completed; EmbryonicRsts:
# resets that hit a half-open (SYN_RECV) connection; ListenOverflows: a full accept queue.
COUNTERS = ("ActiveOpens", "PassiveOpens", "EmbryonicRsts", "ListenOverflows", "ListenDrops",
            "AttemptFails", "OutRsts")


class Window:
    """What the parent reads at a window's start and end, the same for both checkers."""

    def __init__(self, ports: set[int], pid: int) -> None:
        self.ports, self.pid = ports, pid

    def snap(self) -> dict:
        busy, total = machine_busy()
        return {"t": time.monotonic(), "cpu": cpu_seconds(self.pid), "busy": busy,
                "total": total, "queues": accept_queues(self.ports), "sock": sockstat(),
                "tcp": tcp_counters()}

    @staticmethod
    def delta(a: dict, b: dict, ncpu: int) -> dict:
        elapsed = b["t"] - a["t"]
        connections = sum(b["queues"].get(p, 0) - n for p, n in a["queues"].items())
        tcp = {name: b["tcp"].get(name, 0) - a["tcp"].get(name, 0) for name in COUNTERS}
        return {"elapsed": elapsed, "cpu": sum(b["cpu"]) - sum(a["cpu"]),
                "user": b["cpu"][0] - a["cpu"][0], "sys": b["cpu"][1] - a["cpu"][1], "tcp": tcp,
                "machine_busy_cores": ncpu * (b["busy"] - a["busy"]) / max(1, b["total"] - a["total"]),
                "connections": connections, "max_queue": max(b["queues"].values(), default=0),
                "listeners_seen": len(b["queues"]), "tw": b["sock"].get("tw", 0),
                "orphan": b["sock"].get("orphan", 0)}


class Lines:
    """A child's stdout, read line by line in a thread, so that waiting for a line is bounded
    in time (a select() on a buffered pipe misses lines already in the buffer)."""

    def __init__(self, process: subprocess.Popen) -> None:
        import queue
        import threading
        self.process = process
        self.queue: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.queue.put(line)
        self.queue.put(None)

    def wait(self, wanted: str, timeout: float) -> str:
        import queue
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise RuntimeError(f"no {wanted!r} from the child within {timeout:g} s")
            if line is None:
                raise RuntimeError(f"child exited before {wanted!r} "
                                   f"(rc {self.process.wait(5)})")
            if line.startswith(wanted):
                return line


def stop_process(process: subprocess.Popen | None) -> None:
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)


def cprofile_seconds() -> float:
    return float(os.environ.get("BENCH_CPROFILE", "0") or 0)


def hold_seconds(args) -> float:
    """How long a checker child stays up after its result line: for py-spy, or for
    BENCH_CPROFILE, which the child runs first (it holds afterwards)."""
    return args.profile + 5 if args.profile else (1 if cprofile_seconds() else 0)


def measure_ours(args, ports_file: str, ports: set[int], ncpu: int, tmp: str) -> dict:
    hold = hold_seconds(args)
    command = [sys.executable, os.path.abspath(__file__), "--role", "ours",
               "--ports-file", ports_file, "--servers", str(args.servers),
               "--warmup", str(args.warmup), "--window", str(args.window), "--hold", str(hold)]
    if args.null_checker:
        command.append("--null-checker")
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    return collect(process, lambda: Window(ports, process.pid), args, ncpu, tmp)


def collect(process, make_window, args, ncpu: int, tmp: str, before=()) -> dict:
    """Read a checker child's window: the lines named in ``before`` (e.g. "settings "),
    its result line, the machine's view of the window and, if asked, a profile; the child
    is stopped in any case. Shared with check_http_scale.py."""
    try:
        window = make_window()
        lines = Lines(process)
        found = {prefix.strip(): lines.wait(prefix, 120)[len(prefix):].strip()
                 for prefix in before}
        lines.wait("window-start", args.warmup + 120)
        first = window.snap()
        lines.wait("window-end", args.window + 60)
        outside = window.delta(first, window.snap(), ncpu)    # the caller's Window's own
        result = json.loads(lines.wait("result ", 60)[len("result "):])
        result["outside"] = outside
        result.update(found)
        if cprofile_seconds() and not args.profile:
            lines.wait("holding", cprofile_seconds() + 60)
        if args.profile:
            lines.wait("holding", 30)
            result["profile"] = profile(process.pid, args.profile, tmp)
        return result
    finally:
        stop_process(process)


def haproxy_config(ports: list[int], directory: str) -> str:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    front = probe.getsockname()[1]
    probe.close()
    lines = [
        "global",
        # HAProxy sizes its fd limit as 2 x maxconn + one per server (+ a few): keep it within
        # the hard limit here (20,000 on this machine kind). Checks do not count in maxconn.
        f"    maxconn {max(100, min(10000, (hard_nofile() - len(ports) - 200) // 2))}",
        f"    stats socket {directory}/haproxy.sock mode 600 level admin",
        "defaults",
        "    mode tcp",
        "    timeout connect 2s",
        "    timeout client 30s",
        "    timeout server 30s",
        "frontend bench",
        f"    bind 127.0.0.1:{front}",
        "    default_backend servers",
        "backend servers",
        "    balance roundrobin",
        "    default-server inter 1s",
    ]
    lines += [f"    server s{i} 127.0.0.1:{port} check" for i, port in enumerate(ports)]
    path = os.path.join(directory, "haproxy.cfg")
    with open(path, "w") as handle:
        handle.write("\n".join(lines) + "\n")
    return path


def haproxy_stat(sock_path: str) -> list[dict]:
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    client.settimeout(10)
    client.connect(sock_path)
    client.sendall(b"show stat\n")
    chunks = []
    while True:
        chunk = client.recv(65536)
        if not chunk:
            break
        chunks.append(chunk)
    client.close()
    text = b"".join(chunks).decode()
    lines = [line for line in text.splitlines() if line]
    header = lines[0].lstrip("# ").split(",")
    return [dict(zip(header, line.split(","))) for line in lines[1:]]


def haproxy_window(process, sock_path: str, window, args, ncpu: int) -> tuple[dict, list]:
    """HAProxy's measured window (after --warmup): CPU outside, RSS, threads and what its
    stats say of the servers; also returns those servers' stats rows."""
    time.sleep(args.warmup)
    first = window.snap()
    time.sleep(args.window)
    outside = type(window).delta(first, window.snap(), ncpu)     # each bench's own Window
    rss, peak = rss_mb(process.pid)
    servers = [row for row in haproxy_stat(sock_path) if row.get("svname") not in
               ("FRONTEND", "BACKEND")]
    status = collections.Counter(row.get("check_status", "") for row in servers)
    threads = len(os.listdir(f"/proc/{process.pid}/task"))
    return {"outside": outside, "rss_mb": rss, "peak_rss_mb": peak, "threads": threads,
            "check_status": dict(status),
            "chkfail": sum(int(row.get("chkfail") or 0) for row in servers),
            "down": sum(1 for row in servers if row.get("status") != "UP")}, servers


def measure_haproxy(args, ports_list: list[int], ports: set[int], ncpu: int, tmp: str) -> dict:
    config = haproxy_config(ports_list, tmp)
    sock_path = os.path.join(tmp, "haproxy.sock")
    log_path = os.path.join(tmp, "haproxy.log")
    with open(log_path, "w") as log:   # a file, not a pipe: a full pipe would stall HAProxy
        process = subprocess.Popen(["haproxy", "-db", "-f", config], stdout=log,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not os.path.exists(sock_path):
            if process.poll() is not None or time.monotonic() > deadline:
                with open(log_path) as handle:
                    raise RuntimeError(f"haproxy did not start: {handle.read()[-2000:]}")
            time.sleep(0.05)
        return haproxy_window(process, sock_path, Window(ports, process.pid), args, ncpu)[0]
    finally:
        stop_process(process)
        with open(log_path) as handle:
            said = [line.rstrip() for line in handle if "ALERT" in line or "WARNING" in line]
        if said:
            print(f"haproxy said ({len(said)} warnings/alerts):", *said[:5], sep="\n  ",
                  file=sys.stderr)


def profile(pid: int, seconds: int, tmp: str) -> dict:
    spy = shutil.which("py-spy") or os.path.join(os.path.dirname(sys.executable), "py-spy")
    if not os.path.exists(spy):
        return {"error": "py-spy not installed (.venv/bin/pip install py-spy)"}
    raw = os.path.join(tmp, "profile.txt")
    done = subprocess.run([spy, "record", "--pid", str(pid), "--duration", str(seconds),
                           "--rate", "250", "--format", "raw", "--nonblocking",
                           "--output", raw], check=False, capture_output=True, text=True,
                          timeout=seconds + 60)
    if done.returncode != 0 or not os.path.exists(raw):
        return {"error": (done.stderr or done.stdout)[-1000:]}
    own: collections.Counter = collections.Counter()
    lines: collections.Counter = collections.Counter()
    total: collections.Counter = collections.Counter()
    samples = 0
    with open(raw) as handle:
        for line in handle:
            stack, _, count = line.rstrip("\n").rpartition(" ")
            if not stack:
                continue
            count = int(count)
            samples += count
            lines[stack.rsplit(";", 1)[-1]] += count
            # "function (file:line)" -> "function (file)": one row per function
            frames = [frame.rsplit(":", 1)[0] + ")" if frame.endswith(")") else frame
                      for frame in stack.split(";")]
            own[frames[-1]] += count
            for frame in set(frames):
                total[frame] += count
    return {"samples": samples, "own": own.most_common(20), "total": total.most_common(25),
            "lines": lines.most_common(15)}


def print_table(title: str, rows: list[tuple[str, str, str]], o: dict, h: dict | None) -> None:
    """One measured window side by side, then what went wrong on either side."""
    width = max(len(r[0]) for r in rows) + 2
    print(f"\n{title:<{width}}{'director':>24}{'HAProxy':>26}")
    for label, mine, other in rows:
        print(f"{label:<{width}}{mine:>24}{other:>26}")
    if o["errors"]:
        print("director errors:", o["errors"])
    if o["crashes"] or o["hub_crashes"]:
        print("director crashes:", o["crashes"], o["hub_crashes"])
    if h:
        print(f"HAProxy: {h['threads']} threads, check_status {h['check_status']}")


def print_report(args, ours: list[dict], theirs: list[dict], version: str, ncpu: int,
                 slab: tuple[float, float]) -> None:
    def median(values):
        values = sorted(values)
        return values[len(values) // 2] if values else float("nan")

    def fmt(value, spec):
        return "-" if value is None else format(value, spec)

    print(f"servers {args.servers}, delay_loop / inter 1 s, warm-up {args.warmup:g} s, "
          f"window {args.window:g} s, rounds {args.rounds}, {ncpu} CPUs; {version}")
    rows = []
    for rnd in range(args.rounds):
        o = ours[rnd]
        h = theirs[rnd] if rnd < len(theirs) else None
        o_cores = o["cpu"] / o["elapsed"]
        o_rate = (o["ok"] + o["failed"]) / o["elapsed"]
        ho = h["outside"] if h else None
        h_cores = ho["cpu"] / ho["elapsed"] if h else None
        # HAProxy keeps no count of checks done: its connect()s in the window (ActiveOpens of
        # the network namespace, which also counts anything else connecting meanwhile).
        h_rate = ho["tcp"]["ActiveOpens"] / ho["elapsed"] if h else None
        rows.append((o_cores, o_rate, h_cores, h_rate))
        lat = o["lateness"]
        oo = o["outside"]

        def both(function, spec, oo=oo, ho=ho):
            return (fmt(function(oo), spec), fmt(function(ho), spec) if ho else "-")

        def rate(name):
            return both(lambda w: w["tcp"][name] / w["elapsed"], ",.0f")

        line = [
            ("cores used (getrusage; HAProxy /proc)", fmt(o_cores, ".3f"), fmt(h_cores, ".3f")),
            ("  user / sys (/proc/<pid>/stat)",
             *both(lambda w: f"{w['user'] / w['elapsed']:.3f} / {w['sys'] / w['elapsed']:.3f}",
                   "")),
            ("CPU per check (us)", fmt(o_cores / o_rate * 1e6, ".1f"),
             fmt(h_cores / h_rate * 1e6 if h and h_rate else None, ".1f")),
            ("checks/s (director's own count)", fmt(o_rate, ",.0f"), "-"),
            ("connect()s/s (ActiveOpens)", *rate("ActiveOpens")),
            ("  each server checked every (s)",
             *both(lambda w: args.servers * w["elapsed"] / max(1, w["tcp"]["ActiveOpens"]),
                   ".3f")),
            ("handshakes completed/s (PassiveOpens)", *rate("PassiveOpens")),
            ("  accept-queue growth/s", *both(lambda w: w["connections"] / w["elapsed"],
                                              ",.0f")),
            ("half-open connections reset/s (Embryonic)", *rate("EmbryonicRsts")),
            ("failures in window", f"{o['failed']}",
             f"{h['chkfail']} chkfail, {h['down']} not UP" if h else "-"),
            ("start lateness p50 / p99 / max (ms)",
             f"{lat['p50'] * 1e3:.1f} / {lat['p99'] * 1e3:.1f} / {lat['max'] * 1e3:.1f}", "-"),
            ("  (scheduler's reservoir p50 / p99, ms)",
             f"{o['reservoir']['p50'] * 1e3:.1f} / {o['reservoir']['p99'] * 1e3:.1f}", "-"),
            ("check duration p50 / p99 / max (ms; each server's last)",
             (f"{o['duration']['p50'] * 1e3:.1f} / {o['duration']['p99'] * 1e3:.1f} / "
              f"{o['duration']['max'] * 1e3:.1f}"), "-"),
            ("RSS at end / peak (MB)", f"{o['rss_mb']:.0f} / {o['peak_rss_mb']:.0f}",
             f"{h['rss_mb']:.0f} / {h['peak_rss_mb']:.0f}" if h else "-"),
            ("machine busy cores in window", *both(lambda w: w["machine_busy_cores"], ".2f")),
            ("garbage collections/s, gen 0 / 1 / 2; CPU in them (us a check)",
             (" / ".join(f"{count / o['elapsed']:.1f}" for count in o["gc"]["collections"])
              + f"; {o['gc']['seconds'] / max(1, o['ok'] + o['failed']) * 1e6:.2f}")
             if "gc" in o else "-", "-"),
            ("TIME_WAIT / orphans at window end",
             *both(lambda w: f"{w['tw']} / {w['orphan']}", "")),
            ("longest accept queue; ListenOverflows",
             *both(lambda w: f"{w['max_queue']}; {w['tcp']['ListenOverflows']}", "")),
        ]
        print_table(f"round {rnd + 1}" if args.rounds > 1 else "", line, o, h)
    print(f"\nkernel slab {slab[0]:.0f} MB before the listeners, {slab[1]:.0f} MB at the end, "
          f"with {slab[2]:,} reset connections waiting in the listeners' accept queues")
    o_cores = median([r[0] for r in rows])
    p99 = median([o["lateness"]["p99"] for o in ours])
    peak = max(o["peak_rss_mb"] for o in ours)
    verdicts = []
    if theirs:
        h_cores = median([r[2] for r in rows if r[2] is not None])
        ratio = o_cores / h_cores
        print(f"ratio director/HAProxy (cores): {ratio:.2f}x")
        per_check = median([(r[0] / r[1]) / (r[2] / r[3]) for r in rows if r[2] and r[3]])
        print(f"ratio director/HAProxy (CPU per check): {per_check:.2f}x")
        verdicts.append(f"<= 2x HAProxy: {'within' if ratio <= 2 else 'over'} ({ratio:.2f}x)")
    verdicts.append(f"lateness p99 < 50 ms: {'within' if p99 < 0.05 else 'over'} "
                    f"({p99 * 1e3:.1f} ms)")
    verdicts.append(f"RSS < 200 MB: {'within' if peak < 200 else 'over'} ({peak:.0f} MB)")
    print("goals (issue 4): " + "; ".join(verdicts))
    for o in ours:
        if "profile" in o:
            print_profile(o["profile"])


def print_profile(result: dict) -> None:
    if "error" in result:
        print("\nprofile: " + result["error"])
        return
    samples = result["samples"] or 1
    print(f"\nprofile of director's checker process (py-spy, {result['samples']} samples)")
    print("by own time:")
    for frame, count in result["own"]:
        print(f"  {100 * count / samples:5.1f} %  {frame}")
    print("by own time, per line (a line's own time includes the system calls it makes):")
    for frame, count in result["lines"]:
        print(f"  {100 * count / samples:5.1f} %  {frame}")
    print("by total time (frame anywhere on the stack):")
    for frame, count in result["total"]:
        print(f"  {100 * count / samples:5.1f} %  {frame}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--role", choices=("parent", "listener", "ours"), default="parent",
                        help=argparse.SUPPRESS)
    parser.add_argument("--ports-file", help=argparse.SUPPRESS)
    parser.add_argument("--lifetime", type=float, default=3600, help=argparse.SUPPRESS)
    parser.add_argument("--hold", type=float, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--servers", type=int, default=10000)
    parser.add_argument("--window", type=float, default=30)
    parser.add_argument("--warmup", type=float, default=5)
    parser.add_argument("--rounds", type=int, default=1, help="alternate the two this often")
    parser.add_argument("--skip-haproxy", action="store_true")
    parser.add_argument("--null-checker", action="store_true",
                        help="a checker that passes at once: the scheduler's own cost")
    parser.add_argument("--profile", type=int, default=0, metavar="SECONDS",
                        help="sample director's process with py-spy after its window")
    args = parser.parse_args()
    if args.role == "listener":
        return run_listener(args)
    if args.role == "ours":
        return run_ours(args)

    haproxy = None if args.skip_haproxy else shutil.which("haproxy")
    if not args.skip_haproxy and haproxy is None:
        sys.exit("haproxy is not installed (apt-get install haproxy) or pass --skip-haproxy")
    version = "HAProxy " + (subprocess.run([haproxy, "-v"], check=False, capture_output=True,
                                           text=True)
                            .stdout.split()[2] if haproxy else "skipped")
    ncpu = os.cpu_count() or 1
    tmp = tempfile.mkdtemp(prefix="check_tcp_scale.")
    listener = None
    slab_before = slab_mb()
    ours: list[dict] = []
    theirs: list[dict] = []
    try:
        ports_file = os.path.join(tmp, "ports")
        per_round = args.warmup + args.window + 120 + args.profile
        listener = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--role", "listener",
             "--servers", str(args.servers), "--ports-file", ports_file,
             "--lifetime", str(per_round * 2 * args.rounds + 120)])
        deadline = time.monotonic() + 120
        while not os.path.exists(ports_file):
            if listener.poll() is not None or time.monotonic() > deadline:
                sys.exit("the listener process did not start")
            time.sleep(0.05)
        ports_list = read_ports(ports_file)
        ports = set(ports_list)
        for rnd in range(args.rounds):
            ours.append(measure_ours(args, ports_file, ports, ncpu, tmp))
            args.profile = 0                 # profile once, in the first round
            if haproxy:
                theirs.append(measure_haproxy(args, ports_list, ports, ncpu, tmp))
        slab_after = (slab_mb(), sum(accept_queues(ports).values()))
    finally:
        stop_process(listener)
        shutil.rmtree(tmp, ignore_errors=True)
    print_report(args, ours, theirs, version, ncpu, (slab_before, *slab_after))


if __name__ == "__main__":
    main()
