"""VRRP failover and advert timing, ours against Debian's keepalived, side by side in one run.

    sudo .venv/bin/python bench/vrrp_failover.py [--trials N] [--skip-v3] [--skip-jitter]
        [--jitter-seconds S] [--log-dir DIR]

A benchmark, not a test: it prints a table and ratios and asserts nothing. Needs root
(network namespaces, AF_PACKET) and keepalived. Everything runs in a director/demo/netlab.py
Lab (namespaces with unique names, removed at the end, also on errors, Ctrl-C and SIGTERM).

For each implementation (ours = `python -m director`, keepalived = Debian's binary), two
directors A (priority 150) and B (priority 100) on one bridge, VIP 192.0.2.100/24:

  * VRRPv2, advert_int 1, PASS auth (master down interval of B 3.61 s, skew 0.61 s):
      - kill -9 failover, N trials: A MASTER, B BACKUP and settled (the VIP on A and not on B
        for >= 1.5 s, i.e. B has heard adverts that long); SIGKILL to A's process group (for
        keepalived the parent and its VRRP child together, a crash); time from the kill to
        the moment the VIP appears on B;
      - graceful stop, N trials: SIGTERM to A (it sends priority 0); the same measurement;
      - between trials A is restarted and the bench waits until it has preempted back (the
        VIP gone from B, on A); that time (from A's start, process start-up included) is
        printed too;
      - advert send jitter when idle: a third host C on the bridge captures A's adverts as
        MASTER for --jitter-seconds with an AF_PACKET socket and kernel receive timestamps
        (SO_TIMESTAMPNS); lateness = (interval between consecutive adverts) - advert_int.
  * VRRPv3, advert_int 0.1 (master down interval of B 0.361 s): N trials of kill -9 failover,
    and the same idle advert capture.

How the moment is taken: `ip -o monitor address` runs in B's namespace for the whole series,
streaming into a pipe that this process reads with select() and a deadline; time.monotonic()
is read as the chunk holding the line `... inet 192.0.2.100/24 ...` arrives, and B's address
list is checked afterwards (`ip -j addr`). The signal is sent right after time.monotonic().
The preemption moment is the monitor's `Deleted ... 192.0.2.100` line on B.

When the signal is sent: the capture on C runs for the whole series too, and each trial's
signal goes out at a seeded phase after one of A's adverts (uniform in 0.1..0.9 advert_int,
the same sequence for both implementations), so that a crash lands anywhere in the advert
cycle as in real life, yet both implementations get the same phases and their medians compare
without that noise. For kill -9 the table also gives the time from A's last advert (as C
received it) to the VIP on B, which should be master_down_interval plus the reaction time.

Statistics: median, min, max and p90 (linear interpolation between order statistics,
statistics.quantiles(method="inclusive")); jitter p50/p99 the same way. Ratios and differences
are of the medians, ours/keepalived and ours - keepalived.

A trial where a failover takes longer than master_down_interval + 0.3 s (kill -9) or
skew_time + 0.3 s (SIGTERM), or does not happen, is marked and the logs of A and B (and the
monitor's lines) are copied to --log-dir (default /tmp/vrrp-failover-logs-<pid>), which is
kept only when something was marked.

A default run (10 trials, 20 s captures) takes about 8-9 minutes.
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import os
import platform
import random
import select
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

VIP = "192.0.2.100"
A_IP, B_IP, C_IP = "192.0.2.1", "192.0.2.2", "192.0.2.3"
PROBE = "198.51.100.77"          # added to B's lo once, to see the monitor is listening
SETTLE = 1.5                     # seconds B must have heard A's adverts before a trial
SLACK = 0.3                      # beyond the protocol timer, a failover is marked
START_GRACE = 10.0               # seconds a restarted A may take beyond its down timer
MAX_MONITOR_LINES = 100_000
CAPTURE_LIMIT = 3600            # seconds: the advert capture on C ends by itself then

ETH_P_IP = 0x0800
IPPROTO_VRRP = 112
SO_TIMESTAMPNS = 35
PACKET_OUTGOING = 4


# --------------------------------------------------------------------------------------------
# Capture helper: runs inside C's namespace (this file with --capture-helper)
# --------------------------------------------------------------------------------------------

def capture_helper(ifname: str, source: str, seconds: float, max_frames: int = 2_000_000) -> int:
    """Print `<receive time> <priority>` for each VRRP advert from source on ifname, as it
    comes, for at most `seconds`. The time is the kernel's receive timestamp (SO_TIMESTAMPNS,
    CLOCK_REALTIME) moved onto CLOCK_MONOTONIC (system-wide, so comparable with the parent's
    time.monotonic()) by the offset between the two clocks read at the recv."""
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_IP))
    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    sock.bind((ifname, 0))
    sock.settimeout(0.2)
    wanted = socket.inet_aton(source)
    print("ready", flush=True)
    end = time.monotonic() + seconds
    frames = 0
    while frames < max_frames and time.monotonic() < end:
        try:
            data, ancillary, _, address = sock.recvmsg(2048, socket.CMSG_SPACE(16))
        except TimeoutError:
            continue
        mono, real = time.monotonic(), time.time()
        frames += 1
        if address[0] != ifname or address[2] == PACKET_OUTGOING or len(data) < 14 + 20 + 8:
            continue
        ip = data[14:]
        ihl = (ip[0] & 0x0F) * 4
        if ip[0] >> 4 != 4 or ip[9] != IPPROTO_VRRP or ip[12:16] != wanted:
            continue
        stamp = mono
        for level, kind, payload in ancillary:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(payload) >= 16:
                sec, nsec = struct.unpack("qq", payload[:16])
                stamp = mono - (real - (sec + nsec / 1e9))
        print(f"{stamp:.9f} {ip[ihl + 2]}", flush=True)
    return 0


# --------------------------------------------------------------------------------------------
# Statistics and formatting
# --------------------------------------------------------------------------------------------

def quantile(values: list[float], q: int, n: int = 100) -> float:
    """The q-th of n cut points (linear interpolation between order statistics)."""
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=n, method="inclusive")[q - 1]


def summary(values: list[float]) -> dict | None:
    if not values:
        return None
    return {"n": len(values), "median": statistics.median(values), "min": min(values),
            "max": max(values), "p90": quantile(values, 90)}


# --------------------------------------------------------------------------------------------
# The lab side
# --------------------------------------------------------------------------------------------

class MonitorGone(RuntimeError):
    pass


class LineReader:
    """A child process's stdout, read from a pipe with deadlines; each line is stamped with
    time.monotonic() as the chunk holding it arrives."""

    def __init__(self, lab, argv):
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, start_new_session=True)
        lab.processes.append(self.proc)          # the lab kills it at close
        self.fd = self.proc.stdout.fileno()
        os.set_blocking(self.fd, False)
        self.buffer = b""
        self.history: list[tuple[float, str]] = []

    def _read(self, timeout: float) -> list[tuple[float, str]]:
        ready, _, _ = select.select([self.fd], [], [], max(0.0, timeout))
        if not ready:
            return []
        now = time.monotonic()
        try:
            data = os.read(self.fd, 65536)
        except BlockingIOError:
            return []
        if not data:
            raise MonitorGone(f"{self.proc.args[:4]} exited ({self.proc.poll()})")
        self.buffer += data
        *lines, self.buffer = self.buffer.split(b"\n")
        got = [(now, line.decode(errors="replace")) for line in lines if line.strip()]
        if len(self.history) < MAX_MONITOR_LINES:
            self.history.extend(got)
        return got

    def drain(self) -> None:
        for _ in range(10_000):
            if not self._read(0):
                return

    def wait_line(self, predicate, timeout: float) -> tuple[float, str] | None:
        """The arrival time and text of the first line matching predicate, or None."""
        deadline = time.monotonic() + timeout
        for _ in range(100_000):
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            for stamp, line in self._read(left):
                if predicate(line):
                    return stamp, line
        return None

    def collect(self, seconds: float) -> list[tuple[float, str]]:
        """Every line arriving within the next `seconds`."""
        end = time.monotonic() + seconds
        got = []
        for _ in range(1_000_000):
            left = end - time.monotonic()
            if left <= 0:
                break
            got.extend(self._read(left))
        return got

    def since(self, start: float) -> str:
        return "\n".join(f"{t - start:+9.3f} s  {line}" for t, line in self.history
                         if t >= start - 5)


class AddressMonitor(LineReader):
    """`ip -o monitor address` in host's namespace."""

    def __init__(self, lab, host):
        super().__init__(lab, ["ip", "-n", host.ns, "-o", "monitor", "address"])


class AdvertCapture(LineReader):
    """The capture helper in host's namespace: A's adverts with kernel receive times."""

    def __init__(self, lab, host, source, seconds):
        super().__init__(lab, ["ip", "netns", "exec", host.ns, sys.executable, "-I",
                               str(Path(__file__).resolve()), "--capture-helper", "eth0",
                               source, str(seconds)])
        if not self.wait_line(lambda line: line == "ready", 10):
            raise RuntimeError("the advert capture on C did not start")

    @staticmethod
    def parse(lines) -> list[tuple[float, int]]:
        out = []
        for _, line in lines:
            parts = line.split()
            if len(parts) == 2:
                out.append((float(parts[0]), int(parts[1])))
        return out


def vip_added(line: str) -> bool:
    return not line.startswith("Deleted") and f" inet {VIP}/" in line


def vip_deleted(line: str) -> bool:
    return line.startswith("Deleted") and f" inet {VIP}/" in line


class Implementation:
    def __init__(self, name: str):
        self.name = name
        self.starts = 0

    def start(self, lab, host, config: str):
        from tests.functional.lab import start_keepalived
        from tests.functional.test_vrrp_failover import start_director
        self.starts += 1
        tag = f"{host.name}-{self.name}-{self.starts}"
        if self.name == "ours":
            return start_director(lab, host, config, tag)
        return start_keepalived(host, config, name=tag)


class Anomalies:
    def __init__(self, directory: Path):
        self.directory = directory
        self.notes: list[str] = []

    def record(self, label: str, what: str, lab, procs: dict, monitor=None, start=0.0) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        stem = f"{len(self.notes) + 1:02d}-{label.replace(' ', '_').replace('/', '-')}"
        files = []
        for role, proc in procs.items():
            if proc is None:
                continue
            path = self.directory / f"{stem}-{role}.log"
            path.write_text(lab.log_of(proc))
            files.append(path.name)
        if monitor is not None:
            path = self.directory / f"{stem}-monitor-B.txt"
            path.write_text(monitor.since(start) + "\n")
            files.append(path.name)
        note = f"{label}: {what} (logs: {self.directory}/{{{','.join(files)}}})"
        self.notes.append(note)
        print(f"    ANOMALY {note}", file=sys.stderr, flush=True)


def namespace_empty(host) -> bool:
    return not subprocess.run(["ip", "netns", "pids", host.ns], check=False,
                              capture_output=True, text=True, timeout=10).stdout.split()


class Series:
    """One implementation, one VRRP version: A and B on a bridge, C capturing A's adverts."""

    def __init__(self, lab, impl: Implementation, version: int, advert_int: float,
                 anomalies: Anomalies):
        from tests.functional.test_vrrp_failover import down_interval, skew, vrrp_config
        self.lab, self.impl, self.version, self.advert_int = lab, impl, version, advert_int
        self.anomalies = anomalies
        self.label = f"{impl.name} v{version}"
        self.mdi_b = down_interval(100, advert_int, version)
        self.mdi_a = down_interval(150, advert_int, version)
        self.skew_b = skew(100, advert_int, version)
        self.config_a = vrrp_config(150, version=version, advert_int=advert_int)
        self.config_b = vrrp_config(100, version=version, advert_int=advert_int)
        switch = lab.switch()
        self.a = lab.host("a", [(switch, "eth0", [f"{A_IP}/24"])])
        self.b = lab.host("b", [(switch, "eth0", [f"{B_IP}/24"])])
        self.c = lab.host("c", [(switch, "eth0", [f"{C_IP}/24"])])
        self.monitor = AddressMonitor(lab, self.b)
        self._probe_monitor()
        self.capture = AdvertCapture(lab, self.c, A_IP, CAPTURE_LIMIT)
        self.proc_a = impl.start(lab, self.a, self.config_a)
        self.proc_b = impl.start(lab, self.b, self.config_b)
        self.preempts: list[float] = []

    def _probe_monitor(self) -> None:
        """Add and remove an address on B's lo until the monitor reports it: it is listening
        (it may not have subscribed yet when the first probe goes in)."""
        seen = None
        for _ in range(20):
            self.b.run(["ip", "addr", "add", f"{PROBE}/32", "dev", "lo"])
            seen = self.monitor.wait_line(lambda line: f" inet {PROBE}/" in line, 0.25)
            self.b.run(["ip", "addr", "del", f"{PROBE}/32", "dev", "lo"])
            if seen:
                break
        if not seen:
            raise RuntimeError("ip monitor in B's namespace reports no address events")
        self.monitor.drain()

    def has(self, host) -> bool:
        return host.has_address("eth0", VIP)

    def settled(self, timeout: float) -> bool:
        """A holds the VIP, B does not, and that for SETTLE seconds in a row (B has heard
        A's adverts that long)."""
        deadline = time.monotonic() + timeout
        good_since = None
        for _ in range(100_000):
            now = time.monotonic()
            if now > deadline:
                return False
            if self.has(self.a) and not self.has(self.b):
                good_since = good_since or now
                if now - good_since >= SETTLE:
                    return True
            else:
                good_since = None
            time.sleep(0.05)
        return False

    def _logs(self):
        return {"A": self.proc_a, "B": self.proc_b}

    def wait_initial(self) -> None:
        if not self.settled(self.mdi_a + START_GRACE + SETTLE):
            self.anomalies.record(f"{self.label} start", "A never became the settled MASTER",
                                  self.lab, self._logs())
            raise RuntimeError(f"{self.label}: A never became the settled MASTER")

    def _next_advert(self) -> float | None:
        """The receive time (monotonic) of A's next advert seen on C."""
        got = self.capture.wait_line(lambda line: line.split()[-1:] != ["0"]
                                     and line != "ready", 2 * self.advert_int + 1)
        return float(got[1].split()[0]) if got else None

    def _stop_a(self, how: str) -> None:
        proc = self.proc_a
        if how == "kill":
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        else:
            proc.send_signal(signal.SIGTERM)

    def _reap_a(self) -> None:
        proc = self.proc_a
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(5)
        from tests.functional.lab import wait_for
        wait_for(lambda: namespace_empty(self.a), 5, interval=0.05,
                 message=f"processes left in A's namespace after {self.label}")

    def trial(self, how: str, number: int) -> tuple[float, float | None] | None:
        """Stop A (kill / term) at a seeded phase after one of its adverts, time the VIP's
        arrival on B (from the signal, and from A's last advert), restart A and wait until it
        has preempted back. None when there was no failover."""
        label = f"{self.label} {'kill -9' if how == 'kill' else 'SIGTERM'} #{number}"
        if not self.settled(self.mdi_a + START_GRACE + SETTLE):
            self.anomalies.record(label, "not settled before the trial (A not MASTER or B "
                                  "holding the VIP)", self.lab, self._logs())
            raise RuntimeError(f"{label}: not settled")
        # the same phases, trial by trial, for both implementations
        phase = random.Random(f"{how}-{self.version}-{number}").uniform(0.1, 0.9)
        self.monitor.drain()
        self.capture.drain()
        target = None
        for _ in range(5):
            advert = self._next_advert()
            if advert is None:
                break
            if advert + phase * self.advert_int > time.monotonic() + 0.002:
                target = advert + phase * self.advert_int
                break
        if target is None:
            self.anomalies.record(label, "no advert from A seen on C before the trial",
                                  self.lab, self._logs())
            raise RuntimeError(f"{label}: no advert from A on C")
        time.sleep(max(0.0, target - time.monotonic()))
        limit = (self.mdi_b if how == "kill" else self.skew_b) + SLACK
        killed_a = self.proc_a
        start = time.monotonic()
        self._stop_a(how)
        seen = self.monitor.wait_line(vip_added, self.mdi_b + 3.0)
        elapsed = seen[0] - start if seen else None
        on_b = False
        for _ in range(20):                      # cross-check: the VIP really is on B
            on_b = self.has(self.b)
            if on_b:
                break
            time.sleep(0.05)
        self._reap_a()
        adverts = [t for t, prio in AdvertCapture.parse(self.capture.collect(0.05))
                   if prio > 0 and t <= start]
        last = max([advert] + adverts)
        from_advert = seen[0] - last if seen else None
        shown = (f"{elapsed:.3f} s (from A's last advert {from_advert:.3f} s, killed "
                 f"{start - last:.3f} s after it)" if seen else "none")
        print(f"  {label}: {shown}", file=sys.stderr, flush=True)
        problem = None
        if elapsed is None:
            problem = f"no VIP on B within {self.mdi_b + 3.0:.2f} s (has_address: {on_b})"
        elif not on_b:
            problem = f"monitor saw the VIP added after {elapsed:.3f} s but B does not hold it"
        elif elapsed > limit:
            problem = f"failover took {elapsed:.3f} s > {limit:.3f} s"
        if problem:
            self.anomalies.record(label, problem, self.lab,
                                  {"A": killed_a, "B": self.proc_b}, self.monitor, start)
        # restart A and wait until it has preempted back
        restarted = time.monotonic()
        self.proc_a = self.impl.start(self.lab, self.a, self.config_a)
        if not on_b:                 # nothing to take back: the next settled() waits for A
            return None
        back = self.monitor.wait_line(vip_deleted, self.mdi_a + START_GRACE)
        if back is None:
            self.anomalies.record(label + " preempt", "restarted A did not take the VIP back",
                                  self.lab, self._logs(), self.monitor, restarted)
            raise RuntimeError(f"{label}: restarted A did not preempt")
        self.preempts.append(back[0] - restarted)
        return (elapsed, from_advert) if elapsed is not None else None

    def jitter(self, seconds: float) -> list[float]:
        """Lateness (s) of A's adverts as MASTER, captured on C."""
        if not self.settled(self.mdi_a + START_GRACE + SETTLE):
            raise RuntimeError(f"{self.label}: not settled before the capture")
        self.capture.drain()
        stamps = [t for t, prio in AdvertCapture.parse(self.capture.collect(seconds))
                  if prio > 0]
        expected = seconds / self.advert_int
        if len(stamps) < 0.8 * expected:
            self.anomalies.record(f"{self.label} jitter", f"only {len(stamps)} adverts in "
                                  f"{seconds:g} s", self.lab, self._logs())
        return [b - a - self.advert_int for a, b in itertools.pairwise(stamps)]


def run_series(impl: Implementation, version: int, advert_int: float, trials: int,
               kinds: list[str], jitter_seconds: float | None,
               anomalies: Anomalies) -> dict:
    from tests.functional.lab import Lab
    result: dict = {kind: [] for kind in kinds}
    result.update({f"{kind}_advert": [] for kind in kinds})
    result["failed"] = {kind: 0 for kind in kinds}
    started = time.monotonic()
    series = None
    with Lab() as lab:
        try:
            series = Series(lab, impl, version, advert_int, anomalies)
            print(f"{series.label} (advert_int {advert_int:g}): master down interval of B "
                  f"{series.mdi_b:.3f} s, skew {series.skew_b:.3f} s", file=sys.stderr,
                  flush=True)
            series.wait_initial()
            for kind in kinds:
                for number in range(1, trials + 1):
                    value = series.trial(kind, number)
                    if value is None:
                        result["failed"][kind] += 1
                    else:
                        result[kind].append(value[0])
                        if value[1] is not None:
                            result[f"{kind}_advert"].append(value[1])
            if jitter_seconds is not None:
                result["jitter"] = series.jitter(jitter_seconds)
                late = [x * 1000 for x in result["jitter"]]
                if late:
                    print(f"  {series.label} jitter: {len(late)} intervals, max lateness "
                          f"{max(late):.2f} ms", file=sys.stderr, flush=True)
        except (RuntimeError, AssertionError, MonitorGone) as exc:
            result["aborted"] = str(exc)
            print(f"  {impl.name} v{version} ABORTED: {exc}", file=sys.stderr, flush=True)
        result["preempt"] = series.preempts if series else []
    result["seconds"] = time.monotonic() - started
    return result


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------

def fmt_row(label: str, impl: str, values: list[float], failed: int, unit: str = "s") -> str:
    s = summary(values)
    extra = f"  ({failed} without failover)" if failed else ""
    if s is None:
        return f"{label:<38} {impl:<10} {0:>3}      -" + extra
    if unit == "ms":
        return (f"{label:<38} {impl:<10} {s['n']:>3} {s['median']:>8.2f} {s['min']:>8.2f} "
                f"{s['max']:>8.2f} {s['p90']:>8.2f}" + extra)
    return (f"{label:<38} {impl:<10} {s['n']:>3} {s['median']:>8.3f} {s['min']:>8.3f} "
            f"{s['max']:>8.3f} {s['p90']:>8.3f}" + extra)


def compare(ours: list[float], theirs: list[float],
            goal_ms: float | None) -> tuple[str, bool | None]:
    if not ours or not theirs:
        return "  ours/keepalived: not comparable (missing trials)", None
    mo, mk = statistics.median(ours), statistics.median(theirs)
    diff = (mo - mk) * 1000
    text = f"  ours/keepalived median {mo / mk:.3f}x, difference {diff:+.0f} ms"
    met = None
    if goal_ms is not None:
        met = diff <= goal_ms
        text += f"  (goal: <= +{goal_ms:.0f} ms: {'met' if met else 'NOT met'})"
    return text, met


def report(results: dict, args, elapsed: float, anomalies: Anomalies) -> str:
    out = []
    header = (f"{'measurement':<38} {'impl':<10} {'n':>3} {'median':>8} {'min':>8} "
              f"{'max':>8} {'p90':>8}")
    out.append(header)
    out.append("-" * len(header))
    goals = []
    rows = [("v2", "kill", "v2 kill -9 A -> VIP on B (s)", 50.0),
            ("v2", "kill_advert", "  same, from A's last advert (s)", None),
            ("v2", "term", "v2 SIGTERM A -> VIP on B (s)", 50.0),
            ("v2", "preempt", "v2 A restarted -> VIP off B (s)", None),
            ("v3", "kill", "v3 0.1 s kill -9 A -> VIP on B (s)", 50.0),
            ("v3", "kill_advert", "  same, from A's last advert (s)", None),
            ("v3", "preempt", "v3 A restarted -> VIP off B (s)", None)]
    for version, kind, label, goal in rows:
        if version not in results:
            continue
        per = results[version]
        values = {name: per[name].get(kind, []) for name in per}
        if not any(values.values()) and kind not in ("kill", "term"):
            continue
        for name in per:
            out.append(fmt_row(label, name, values[name],
                               per[name].get("failed", {}).get(kind, 0)))
        text, met = compare(values.get("ours", []), values.get("keepalived", []), goal)
        out.append(text)
        if goal is not None:
            goals.append((f"{label}: median difference <= +{goal:.0f} ms", met))
        if version == "v3" and kind == "kill":
            ours = values.get("ours", [])
            ok = bool(ours) and max(ours) < 0.5 and not per["ours"]["failed"]["kill"]
            out.append(f"  ours under 0.5 s in every trial: {'yes' if ok else 'NO'}"
                       + (f" (max {max(ours):.3f} s)" if ours else ""))
            goals.append(("v3 0.1 s kill -9: ours under 0.5 s", ok))
    if "jitter" in results:
        out.append("")
        out.append(f"advert lateness when idle (A MASTER, B BACKUP; A's adverts captured on C "
                   f"for {args.jitter_seconds:g} s),")
        out.append("lateness = interval between consecutive adverts - advert_int, in ms:")
        jh = f"{'':<38} {'impl':<10} {'n':>3} {'p50':>8} {'p99':>8} {'max':>8} {'min':>8}"
        out.append(jh)
        for version, label in (("v2", "  idle, v2 advert_int 1"),
                               ("v3", "  idle, v3 advert_int 0.1")):
            if version not in results["jitter"]:
                continue
            p99s = {}
            for name, late in results["jitter"][version].items():
                ms = [x * 1000 for x in late]
                if not ms:
                    out.append(f"{label:<38} {name:<10} {0:>3}      -")
                    continue
                p99s[name] = quantile(ms, 99)
                out.append(f"{label:<38} {name:<10} {len(ms):>3} {quantile(ms, 50):>8.2f} "
                           f"{p99s[name]:>8.2f} {max(ms):>8.2f} {min(ms):>8.2f}")
            if "ours" in p99s:
                goals.append((f"advert lateness p99 under 20 ms (ours, idle, {version})",
                              p99s["ours"] < 20))
                if "keepalived" in p99s:
                    difference = p99s["ours"] - p99s["keepalived"]
                    out.append(f"  ours - keepalived p99 {difference:+.2f} ms")
        out.append(f"{'  under 10,000 TCP checks/s':<38} not measured: no checkers yet")
    out.append("")
    out.append("goals (issue 3):")
    for text, met in goals:
        out.append(f"  {text}: {'met' if met else ('NOT met' if met is False else 'n/a')}")
    out.append("")
    if anomalies.notes:
        out.append(f"marked trials ({len(anomalies.notes)}):")
        out.extend(f"  {note}" for note in anomalies.notes)
    else:
        out.append("marked trials: none (every failover within its timer + 0.3 s)")
    for version, per in results.items():
        if version == "jitter":
            continue
        for name, r in per.items():
            if r.get("aborted"):
                out.append(f"ABORTED {name} {version}: {r['aborted']}")
    out.append(f"run time: {elapsed:.0f} s")
    return "\n".join(out)


def keepalived_version() -> str:
    from tests.functional.lab import keepalived_binary
    binary = keepalived_binary()
    if not binary:
        return ""
    done = subprocess.run([binary, "--version"], check=False, capture_output=True, text=True,
                          timeout=10)
    text = (done.stdout + done.stderr).strip()
    return text.splitlines()[0] if text else binary


def stop_on_signals() -> None:
    """TERM and Ctrl-C end a bench as KeyboardInterrupt, so its Lab is torn down."""
    def on_term(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, signal.default_int_handler)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--capture-helper"]:
        return capture_helper(argv[1], argv[2], float(argv[3]))
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=10, help="trials per measurement (10)")
    parser.add_argument("--skip-v3", action="store_true", help="no VRRPv3 advert_int 0.1 trials")
    parser.add_argument("--skip-jitter", action="store_true", help="no advert capture")
    parser.add_argument("--jitter-seconds", type=float, default=20.0,
                        help="how long C captures A's adverts (20)")
    parser.add_argument("--log-dir", default=f"/tmp/vrrp-failover-logs-{os.getpid()}",
                        help="where the logs of marked trials go (kept only if any)")
    args = parser.parse_args(argv)
    if args.trials < 1 or args.trials > 1000:
        parser.error("--trials must be 1..1000")
    if not 2 <= args.jitter_seconds <= 600:
        parser.error("--jitter-seconds must be 2..600")

    from tests.functional.lab import keepalived_binary, netns_unavailable
    why = netns_unavailable()
    if why:
        print(f"cannot run: {why}", file=sys.stderr)
        return 2
    if keepalived_binary() is None:
        print("cannot run: keepalived is not installed", file=sys.stderr)
        return 2

    stop_on_signals()

    anomalies = Anomalies(Path(args.log_dir))
    started = time.monotonic()
    print(f"# {datetime.datetime.now().isoformat(timespec='seconds')}  {platform.node()}  "
          f"{os.cpu_count()} cpus, load {os.getloadavg()[0]:.2f}  python "
          f"{platform.python_version()}  {keepalived_version()}")
    print(f"# trials {args.trials}; A priority 150, B priority 100; VIP {VIP}/24; "
          f"v2: advert_int 1, PASS auth; v3: advert_int 0.1")
    sys.stdout.flush()
    results: dict = {}
    jitter: dict = {}
    impls = ["ours", "keepalived"]
    try:
        results["v2"] = {}
        for name in impls:
            r = run_series(Implementation(name), 2, 1, args.trials, ["kill", "term"],
                           None if args.skip_jitter else args.jitter_seconds, anomalies)
            results["v2"][name] = r
            if "jitter" in r:
                jitter.setdefault("v2", {})[name] = r["jitter"]
        if not args.skip_v3:
            results["v3"] = {}
            for name in impls:
                r = run_series(Implementation(name), 3, 0.1, args.trials, ["kill"],
                               None if args.skip_jitter else args.jitter_seconds, anomalies)
                results["v3"][name] = r
                if "jitter" in r:
                    jitter.setdefault("v3", {})[name] = r["jitter"]
    except KeyboardInterrupt as exc:
        print(f"interrupted ({exc or 'SIGINT'}); labs torn down", file=sys.stderr)
        return 130
    if jitter:
        results["jitter"] = jitter
    print(report(results, args, time.monotonic() - started, anomalies))
    if not anomalies.notes:
        shutil.rmtree(args.log_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
