"""How low can VRRPv3 advert_int go under 10,000 checks/s: false failovers and kill -9 failover,
ours beside keepalived at the same intervals, in one run (issue 17).

    sudo .venv/bin/python bench/vrrp_fast_failover.py [--intervals 0.1,0.05,0.03,0.02,0.01]
        [--soak-seconds 60] [--trials 10] [--servers 10000] [--only ours|keepalived]
        [--idle-control] [--split] [--log-dir DIR]

A benchmark, not a test: it prints a table and ratios and asserts nothing. Needs root
(namespaces, AF_PACKET), keepalived and HAProxy. Built from bench/vrrp_failover.py (the Series
of two directors A (priority 150) and B (priority 100) on a bridge, `ip monitor address` on
B, the AF_PACKET advert capture on a third host C, the seeded kill phases) and
bench/vrrp_under_load.py (A's daemon with 10,000 TCP_CHECKs a second against
bench/check_tcp_scale.py's listener process in A's namespace), imported, not copied.

For each advert_int (VRRPv3, no authentication) and each implementation, a fresh Lab:
  * ours: A = `python -m director` with both subsystems, the vrrp_instance and one
    virtual_server of --servers real servers with TCP_CHECK, delay_loop 1 (10,000 checks/s in
    the SAME process and gevent loop as VRRP, as an operator's director runs); B = director,
    VRRP only, idle;
  * ours split (--split): A as keepalived runs, a VRRP process (-P) and a checker process
    (-C, started once and kept, as HAProxy is below) with the same file;
  * keepalived: A and B = Debian's keepalived (--vrrp). keepalived's own checker cannot run
    on this kernel (no IP_VS: "IPVS: Can't initialize ipvs", the checker process exits), so
    A's namespace gets the same 10,000 TCP checks/s from HAProxy (check inter 1s, the
    bench/check_tcp_scale.py configuration): like keepalived's checker, a separate C process
    doing the checks beside the VRRP process, on the same 2 cores;
  1. soak: A settled MASTER, then --soak-seconds during which B's `ip monitor address`
     counts B taking the VIP (a false failover: A is alive) and A's counts A losing it; C's
     capture gives A's advert lateness (interval between consecutive adverts - advert_int,
     kernel receive times) p50/p99/max; A's CPU (the process doing the checks: for ours the
     daemon, for keepalived HAProxy + keepalived) and the load average, sampled each second.
     Each false failover is printed with the largest advert lateness in the 2 s before it and
     the load average then, to tell a load spike from a defect;
  2. --trials kill -9 trials of A (vrrp_failover.Series.trial: SIGKILL to A's process group
     at a seeded phase after one of its adverts, the same phases for both implementations):
     time from the kill to the VIP on B, and from A's last advert (on C) to the VIP on B. A is
     restarted after each trial (ours: with its 10,000 checks) and must preempt back; B
     taking the VIP in that phase other than after a kill is counted as a flap.

Ratios are of the medians, ours / keepalived, at the same interval.
The listener is per Lab: director completes each handshake and the listener never accepts,
so a listener's queue (1,025) lasts 17 min of checks, longer than one series.
"""

from __future__ import annotations

import argparse
import collections
import datetime
import itertools
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import check_tcp_scale as tcp_scale           # noqa: E402
from bench import vrrp_failover as failover              # noqa: E402
from bench import vrrp_under_load as under_load          # noqa: E402
from bench.vrrp_failover import (VIP, AdvertCapture, AddressMonitor, Anomalies,  # noqa: E402
                                 MonitorGone, quantile, vip_added, vip_deleted)

DEFAULT_INTERVALS = "0.1,0.05,0.03,0.02,0.01"
LISTENER_TIMEOUT = 120.0
HISTORY_LIMIT = 2_000_000        # advert stamps kept per soak (0.01 s for 600 s is 60,000)


# --------------------------------------------------------------------------------------------
# The implementations: A loaded with the checks, B idle
# --------------------------------------------------------------------------------------------

class LoadedImplementation(failover.Implementation):
    """failover.Implementation, but A (the host named "a") runs the checks: ours in the same
    process, keepalived beside HAProxy. The listener (and HAProxy) start with A's first start
    and outlive A's kills, as the servers do."""

    def __init__(self, name: str, version: int, advert_int: float, servers: int,
                 label: str | None = None):
        super().__init__(name)
        self.label = label or name
        self.version, self.advert_int, self.servers = version, advert_int, servers
        self.ports: list[int] | None = None
        self.background: list[subprocess.Popen] = []      # listener, HAProxy: not A itself
        self.checker_pid: int | None = None               # the process doing the checks

    def _listen(self, lab, host) -> list[int]:
        from tests.functional.lab import wait_for
        ports_file = Path(lab.tmp) / "ports"
        listener = host.popen([sys.executable, str(ROOT / "bench" / "check_tcp_scale.py"),
                               "--role", "listener", "--servers", str(self.servers),
                               "--ports-file", str(ports_file), "--lifetime", "7200"])
        self.background.append(listener)
        wait_for(lambda: ports_file.exists() or listener.poll() is not None, LISTENER_TIMEOUT,
                 interval=0.05, message="the listener process wrote no ports")
        if not ports_file.exists():
            raise RuntimeError(f"the listener exited:\n{lab.log_of(listener)}")
        return tcp_scale.read_ports(str(ports_file))

    def start(self, lab, host, config: str):
        if host.name != "a" or not self.servers:
            return super().start(lab, host, config)
        if self.ports is None:
            self.ports = self._listen(lab, host)
            if self.name == "keepalived":
                cfg = Path(tcp_scale.haproxy_config(self.ports, str(lab.tmp)))
                # its frontend's port was free here, maybe not among A's listeners: port 9
                cfg.write_text(re.sub(r"bind 127\.0\.0\.1:\d+", "bind 127.0.0.1:9",
                                      cfg.read_text()))
                haproxy = host.popen(["haproxy", "-db", "-f", cfg])
                self.background.append(haproxy)
                self.checker_pid = haproxy.pid
            if self.label == "ours split":
                # keepalived's layout: the checks in a process of their own (-C), started
                # once and kept, as HAProxy is; A's VRRP (-P) is what the trials kill
                checker = under_load.Daemon(lab, host, under_load.config_text(
                    self.version, self.advert_int, self.ports), "a-ours-checks", ("-C",))
                self.background.append(checker.proc)
                self.checker_pid = checker.pid
        if self.name == "keepalived" or self.label == "ours split":
            return super().start(lab, host, config)
        self.starts += 1
        daemon = under_load.Daemon(lab, host, under_load.config_text(
            self.version, self.advert_int, self.ports), f"a-ours-{self.starts}")
        self.checker_pid = daemon.pid
        return daemon.proc


class FastSeries(failover.Series):
    """failover.Series with A's namespace holding the listener (and HAProxy) too, and a
    monitor on A to see it lose the VIP."""

    def __init__(self, lab, impl: LoadedImplementation, advert_int: float,
                 anomalies: Anomalies):
        super().__init__(lab, impl, 3, advert_int, anomalies)
        self.label = f"{impl.label} {advert_int:g}"
        self.monitor_a = AddressMonitor(lab, self.a)

    def _reap_a(self) -> None:
        """Wait for A's process; the listener and HAProxy stay (Series waits for an empty
        namespace)."""
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
        keep = {str(p.pid) for p in self.impl.background if p.poll() is None}
        keep.add(str(self.monitor_a.proc.pid))

        def left() -> set[str]:
            done = subprocess.run(["ip", "netns", "pids", self.a.ns], check=False,
                                  capture_output=True, text=True, timeout=10)
            return set(done.stdout.split()) - keep

        def described() -> str:
            return ", ".join(f"{pid} {Path(f'/proc/{pid}/cmdline').read_bytes()[:80]!r}"
                             for pid in left() if Path(f"/proc/{pid}").exists())
        wait_for(lambda: not left(), 5, interval=0.05, message=lambda:
                 f"processes left in A's namespace after {self.label}: {described()}")

    def soak(self, seconds: float) -> dict:
        """A alive and MASTER for `seconds`: B's and A's VIP events, A's advert lateness, CPU
        of the checking processes, load average each second."""
        settled = self.settled(self.mdi_a + failover.START_GRACE + failover.SETTLE)
        if not settled:          # counted anyway: a loaded A that cannot hold MASTER is the
            print(f"    {self.label}: A never held the VIP alone for {failover.SETTLE:g} s "
                  "before the soak; soaking anyway", file=sys.stderr, flush=True)
        for reader in (self.monitor, self.monitor_a, self.capture):
            reader.drain()
        for proc in self.impl.background:
            if proc.poll() is not None:
                raise RuntimeError(f"{proc.args[3:5]} exited:\n{self.lab.log_of(proc)[-2000:]}")
        pids = [p for p in {self.proc_a.pid, self.impl.checker_pid} if p]
        cpu0 = sum(sum(tcp_scale.cpu_seconds(p)) for p in pids)
        start = time.monotonic()
        end = start + seconds
        stamps: list[float] = []
        b_took: list[float] = []
        a_lost: list[float] = []
        loads: list[tuple[float, float]] = [(start, os.getloadavg()[0])]
        for _ in range(int(seconds / 0.01) + 1000):
            now = time.monotonic()
            if now >= end:
                break
            for stamp, prio in AdvertCapture.parse(self.capture._read(min(0.01, end - now))):
                if prio > 0 and len(stamps) < HISTORY_LIMIT:
                    stamps.append(stamp)
            b_took += [t for t, line in self.monitor._read(0) if vip_added(line)]
            a_lost += [t for t, line in self.monitor_a._read(0) if vip_deleted(line)]
            if now - loads[-1][0] >= 1.0:
                loads.append((now, os.getloadavg()[0]))
        elapsed = time.monotonic() - start
        cpu = (sum(sum(tcp_scale.cpu_seconds(p)) for p in pids) - cpu0) / elapsed
        lateness = [(b - a) - self.advert_int for a, b in itertools.pairwise(stamps)]
        events = []
        for kind, times in (("B took the VIP", b_took), ("A lost the VIP", a_lost)):
            for t in times:
                near = [(b - a) - self.advert_int for a, b in itertools.pairwise(stamps)
                        if b >= t - 2.0 and a <= t]     # the gap in progress at t included
                load = min(loads, key=lambda x: abs(x[0] - t))[1]
                events.append(f"{kind} at +{t - start:.3f} s: largest advert lateness in the "
                              f"2 s up to it {max(near, default=float('nan')) * 1000:.1f} ms, "
                              f"load average {load:.2f}")
        for text in events[:10]:
            print(f"    {self.label} soak: {text}", file=sys.stderr, flush=True)
        if events:
            self.anomalies.record(f"{self.label} soak", f"{len(events)} event(s), the first: "
                                  f"{events[0]}", self.lab, self._logs(), self.monitor, start)
        checking = ""
        if self.impl.name == "keepalived" and self.impl.servers:
            rows = [row for row in tcp_scale.haproxy_stat(str(Path(self.lab.tmp) / "haproxy.sock"))
                    if row.get("svname") not in ("FRONTEND", "BACKEND")]
            status = collections.Counter(row.get("check_status", "") for row in rows)
            checking = f"HAProxy's check_status {dict(status)}"
            print(f"    {self.label} soak: {checking}", file=sys.stderr, flush=True)
        return {"false": len(b_took), "checking": checking, "settled": settled, "lost": len(a_lost), "lateness": lateness,
                "adverts": len(stamps), "expected": seconds / self.advert_int, "cpu": cpu,
                "load_max": max(x[1] for x in loads), "load_mean":
                statistics.fmean(x[1] for x in loads), "events": events}


def run_series(label: str, advert_int: float, args, anomalies: Anomalies) -> dict:
    from tests.functional.lab import Lab
    name, servers = {"ours": ("ours", args.servers), "keepalived": ("keepalived", args.servers),
                     "ours idle": ("ours", 0), "ours split": ("ours", args.servers)}[label]
    impl = LoadedImplementation(name, 3, advert_int, servers, label)
    result: dict = {"kill": [], "kill_advert": [], "failed": 0, "flaps": 0}
    started = time.monotonic()
    with Lab() as lab:
        series = None
        try:
            series = FastSeries(lab, impl, advert_int, anomalies)
            print(f"{series.label}: master down interval of B {series.mdi_b * 1000:.1f} ms, "
                  f"skew {series.skew_b * 1000:.1f} ms", file=sys.stderr, flush=True)
            result["soak"] = series.soak(args.soak_seconds)
            soak = result["soak"]
            ms = [x * 1000 for x in soak["lateness"]]
            print(f"  {series.label} soak {args.soak_seconds:g} s: {soak['false']} false, "
                  f"{soak['lost']} lost, p99 {quantile(ms, 99) if ms else float('nan'):.2f} ms,"
                  f" max {max(ms, default=float('nan')):.2f} ms, cpu {soak['cpu']:.2f}, load "
                  f"max {soak['load_max']:.2f}", file=sys.stderr, flush=True)
            series.monitor.drain()
            history_from = len(series.monitor.history)
            for number in range(1, args.trials + 1):
                value = series.trial("kill", number)
                if value is None:
                    result["failed"] += 1
                    continue
                result["kill"].append(value[0])
                if value[1] is not None:
                    result["kill_advert"].append(value[1])
            series.monitor.drain()
            added = sum(1 for _, line in series.monitor.history[history_from:]
                        if vip_added(line))
            result["flaps"] = max(0, added - len(result["kill"]))
        except (RuntimeError, AssertionError, MonitorGone) as exc:
            result["aborted"] = str(exc)
            print(f"  {label} {advert_int:g} ABORTED: {exc}", file=sys.stderr, flush=True)
        finally:
            for proc in impl.background:
                tcp_scale.stop_process(proc)
        result["mdi_b"] = series.mdi_b if series else None
    result["seconds"] = time.monotonic() - started
    return result


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------

def ms_or_dash(values: list[float], q: int) -> str:
    return f"{quantile(values, q) * 1000:8.1f}" if values else f"{'-':>8}"


def report(results: dict, args, elapsed: float, anomalies: Anomalies) -> str:
    out = []
    head = (f"{'advert_int':>10} {'impl':<10} {'false':>5} {'lost':>4} {'flaps':>5} "
            f"{'late p50':>8} {'p99':>8} {'max':>8} {'cpu':>5} {'load':>5} {'n':>3} "
            f"{'kill med':>8} {'p90':>8} {'adv med':>8} {'p90':>8} {'ratio':>6}")
    out.append("false: B took the VIP while A was alive, in the soak; lost: A lost it; flaps: B "
               "took it during the trials' restarts other than after a kill")
    out.append("late: A's advert lateness in the soak (ms); cpu: the checking process(es) of A, "
               "cores; load: 1-min load average, max over the soak")
    out.append("kill: kill -9 of A -> VIP on B (ms); adv: A's last advert -> VIP on B (ms); "
               "ratio: kill median ours/keepalived")
    out.append(head)
    out.append("-" * len(head))
    for advert_int in args.interval_list:
        per = results.get(advert_int, {})
        for name, r in per.items():
            soak = r.get("soak")
            late = [x * 1000 for x in soak["lateness"]] if soak else []
            cells = (f"{soak['false']:>5} {soak['lost']:>4} " if soak else f"{'-':>5} {'-':>4} ")
            cells += f"{r['flaps']:>5} "
            cells += (f"{quantile(late, 50):8.2f} {quantile(late, 99):8.2f} {max(late):8.2f} "
                      if late else f"{'-':>8} {'-':>8} {'-':>8} ")
            cells += (f"{soak['cpu']:5.2f} {soak['load_max']:5.2f} " if soak
                      else f"{'-':>5} {'-':>5} ")
            kill = r["kill"]
            cells += (f"{len(kill):>3} {ms_or_dash(kill, 50)} {ms_or_dash(kill, 90)} "
                      f"{ms_or_dash(r['kill_advert'], 50)} {ms_or_dash(r['kill_advert'], 90)}")
            theirs = per.get("keepalived", {}).get("kill", [])
            if name == "ours" and kill and theirs:
                cells += f" {statistics.median(kill) / statistics.median(theirs):6.2f}"
            out.append(f"{advert_int:>10g} {name:<10} {cells}")
            if soak and not soak["settled"]:
                out.append(f"{'':>10} {name:<10} A never settled as MASTER before the soak")
            if soak and soak.get("checking"):
                out.append(f"{'':>10} {name:<10} {soak['checking']}")
            if r.get("failed"):
                out.append(f"{'':>10} {name:<10} {r['failed']} trial(s) without failover")
            if r.get("aborted"):
                out.append(f"{'':>10} {name:<10} ABORTED: {r['aborted']}")
        mdi = next((r["mdi_b"] for r in per.values() if r.get("mdi_b")), None)
        if mdi:
            out.append(f"{'':>10} master down interval of B {mdi * 1000:.1f} ms")
    out.append("")
    if anomalies.notes:
        out.append(f"marked ({len(anomalies.notes)}):")
        out.extend(f"  {note}" for note in anomalies.notes)
    else:
        out.append("marked: none")
    out.append(f"load average at the end {os.getloadavg()[0]:.2f}; run time {elapsed:.0f} s")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--intervals", default=DEFAULT_INTERVALS,
                        help=f"VRRPv3 advert_int values, seconds ({DEFAULT_INTERVALS})")
    parser.add_argument("--soak-seconds", type=float, default=60.0,
                        help="A alive and MASTER this long, counting false failovers (60)")
    parser.add_argument("--trials", type=int, default=10, help="kill -9 trials (10)")
    parser.add_argument("--servers", type=int, default=10000,
                        help="real servers with TCP_CHECK every second on A (10000; 0: idle)")
    parser.add_argument("--only", choices=("ours", "keepalived"),
                        help="one implementation only (no ratio)")
    parser.add_argument("--idle-control", action="store_true",
                        help="also ours with A idle (no checks): the floor without the load")
    parser.add_argument("--split", action="store_true",
                        help="also ours as keepalived runs: A's VRRP in one process (-P), its "
                             "checks in another (-C)")
    parser.add_argument("--log-dir", default=f"/tmp/vrrp-fast-failover-logs-{os.getpid()}",
                        help="where the logs of marked events go (kept only if any)")
    args = parser.parse_args(argv)
    try:
        args.interval_list = [float(x) for x in args.intervals.split(",") if x.strip()]
    except ValueError:
        parser.error("--intervals: comma-separated seconds")
    if not args.interval_list or any(not 0.01 <= x <= 10 for x in args.interval_list):
        parser.error("--intervals: each 0.01..10 s (VRRPv3 counts centiseconds)")
    if not 0 <= args.trials <= 1000:
        parser.error("--trials must be 0..1000")
    if not 1 <= args.soak_seconds <= 7200:
        parser.error("--soak-seconds must be 1..7200")
    if not 0 <= args.servers <= 30000:
        parser.error("--servers must be 0..30000")

    from tests.functional.lab import keepalived_binary, netns_unavailable
    why = netns_unavailable()
    if why:
        print(f"cannot run: {why}", file=sys.stderr)
        return 2
    impls = [args.only] if args.only else ["ours", "keepalived"]
    if args.idle_control:
        impls.append("ours idle")
    if args.split:
        impls.append("ours split")
    if "keepalived" in impls and keepalived_binary() is None:
        print("cannot run: keepalived is not installed", file=sys.stderr)
        return 2
    if "keepalived" in impls and args.servers and shutil.which("haproxy") is None:
        print("cannot run: haproxy (keepalived's A's checks) is not installed", file=sys.stderr)
        return 2

    failover.stop_on_signals()

    anomalies = Anomalies(Path(args.log_dir))
    started = time.monotonic()
    print(f"# {datetime.datetime.now().isoformat(timespec='seconds')}  {platform.node()}  "
          f"{os.cpu_count()} cpus, load {os.getloadavg()[0]:.2f}  python "
          f"{platform.python_version()}  {failover.keepalived_version()}")
    print(f"# VRRPv3, no auth; A priority 150 with {args.servers:,} TCP checks/s (ours: same "
          f"process; keepalived: HAProxy beside it), B priority 100 idle; soak "
          f"{args.soak_seconds:g} s, {args.trials} kill -9 trials; VIP {VIP}/24")
    sys.stdout.flush()
    results: dict = {}
    try:
        for advert_int in args.interval_list:
            results[advert_int] = {}
            for label in impls:                      # interleaved: same interval back to back
                results[advert_int][label] = run_series(label, advert_int, args, anomalies)
    except KeyboardInterrupt as exc:
        print(f"interrupted ({exc or 'SIGINT'}); labs torn down", file=sys.stderr)
        print(report(results, args, time.monotonic() - started, anomalies))
        return 130
    print(report(results, args, time.monotonic() - started, anomalies))
    if not anomalies.notes:
        shutil.rmtree(args.log_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
