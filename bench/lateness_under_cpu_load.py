"""VRRP advert lateness of director and of keepalived, side by side in one run, idle and
with the host's cores saturated by other processes.

    sudo .venv/bin/python bench/lateness_under_cpu_load.py [--window 60] [--busy 4]
        [--version 3] [--advert-int 0.1]

Issue 13's figure (false failovers under load): a master whose adverts go out late makes
its backups take over. A benchmark, not a test: it prints a table and asserts nothing. It
saturates the CPU: run nothing else of yours meanwhile. Needs root (namespaces, AF_PACKET).
One director/demo/netlab.py Lab, removed at the end (also on errors, Ctrl-C and SIGTERM):

  * a switch with A (192.0.2.1: our daemon, `python -m director -P` with its web face on
    A's loopback), B (192.0.2.2: Debian's keepalived, VRRP only, in the foreground) and C
    (192.0.2.3), which captures both one's adverts with kernel receive timestamps
    (bench/vrrp_failover.py's capture helper, one per source);
  * A and B are each the only router of their own virtual router (vrid 51 and 52, priority
    150, --version, --advert-int): both MASTER at the same time, under the same load;
  * the load: --busy processes (`while True: pass`, the same nice level as the daemons) on
    the machine's cores, started after the idle phase, stopped at the end.

Each phase (idle, then loaded) lasts --window seconds. lateness = (interval between
consecutive adverts of one source as C received them) - advert_int; p50/p99/max, and the
ratio of director's p99 to keepalived's. Beside it, director's own figures read from its
/api/v1/state at the end of the phase: the main loop's lag (its last 600 ticks: 60 s) and
the advert lateness it measured itself (its last 256 adverts), and the transitions each
daemon logged (none is expected: each is alone in its virtual router).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from vrrp_failover import A_IP, B_IP, C_IP, AdvertCapture, quantile  # noqa: E402

WEB = "127.0.0.1:8080"
START_TIMEOUT = 30.0
BUSY = "while True: pass"
STATE = f"import urllib.request; print(urllib.request.urlopen('http://{WEB}/api/v1/state', " \
        "timeout=10).read().decode())"


def lateness(stamps: list[float], advert_int: float) -> list[float]:
    return [(b - a) - advert_int for a, b in itertools.pairwise(stamps)]


def figures(late: list[float]) -> tuple[float, float, float] | None:
    if len(late) < 2:
        return None
    ms = [x * 1000 for x in late]
    return quantile(ms, 50), quantile(ms, 99), max(ms)


def fmt(label: str, late: list[float], extra: str = "") -> str:
    got = figures(late)
    if got is None:
        return f"  {label:<24} (too few adverts)"
    return f"  {label:<24} {len(late) + 1:>7} {got[0]:>8.2f} {got[1]:>8.2f} {got[2]:>8.1f}  {extra}"


def own_figures(host) -> str:
    """What director says of itself: main-loop lag and advert lateness, p99 / max in ms."""
    state = json.loads(host.run([sys.executable, "-c", STATE], timeout=30).stdout)
    lag = state["main_loop"]["lag"]
    (instance,) = state["vrrp"]["instances"]
    late = instance["advert_lateness"]

    def pair(view) -> str:
        if not view["samples"]:
            return "-"
        return f"{view['p99_seconds'] * 1000:.2f} / {view['max_seconds'] * 1000:.1f} ms " \
               f"({view['samples']})"
    return f"loop lag p99 / max {pair(lag)}; adverts (self-measured) {pair(late)}"


def main() -> int:
    from director.demo.netlab import Lab
    from tests.functional.lab import start_keepalived
    from tests.functional.test_vrrp_failover import vrrp_config
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--window", type=float, default=60.0)
    parser.add_argument("--busy", type=int, default=4)
    parser.add_argument("--version", type=int, default=3, choices=(2, 3))
    parser.add_argument("--advert-int", type=float, default=0.1)
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("needs root (network namespaces, AF_PACKET)", file=sys.stderr)
        return 2
    advert_int = args.advert_int
    with Lab() as lab:
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
        switch = lab.switch()
        a = lab.host("a", [(switch, "eth0", [f"{A_IP}/24"])])
        b = lab.host("b", [(switch, "eth0", [f"{B_IP}/24"])])
        c = lab.host("c", [(switch, "eth0", [f"{C_IP}/24"])])
        seconds = 2 * args.window + START_TIMEOUT + 60
        captures = {"director": AdvertCapture(lab, c, A_IP, seconds),
                    "keepalived": AdvertCapture(lab, c, B_IP, seconds)}
        folder = Path(lab.tmp) / "ours"
        folder.mkdir()
        conf = folder / "keepalived.conf"
        conf.write_text(vrrp_config(150, vrid=51, version=args.version,
                                    advert_int=advert_int))
        ours = a.popen([sys.executable, "-m", "director", "-P", "-f", conf, "-l", "-n",
                        "--web", WEB, "--state-dir", folder / "state", "-p", folder / "pid"],
                       log_path=folder / "log", env={"PYTHONPATH": str(ROOT)})
        theirs = start_keepalived(b, vrrp_config(150, vrid=52, version=args.version,
                                                 advert_int=advert_int,
                                                 vips=("192.0.2.101/24",)))
        deadline = time.monotonic() + START_TIMEOUT
        while "to=MASTER" not in lab.log_of(ours) or \
                "Entering MASTER STATE" not in lab.log_of(theirs):
            if ours.poll() is not None or theirs.poll() is not None or \
                    time.monotonic() > deadline:
                raise RuntimeError(f"not both MASTER:\n{lab.log_of(ours)[-2000:]}\n"
                                   f"{lab.log_of(theirs)[-2000:]}")
            time.sleep(0.1)
        time.sleep(2 * advert_int + 1)                  # their first adverts are out
        cores = os.cpu_count()
        print(f"# VRRPv{args.version} advert_int {advert_int:g} s, window {args.window:g} s "
              f"per phase; {cores} CPUs; loaded: {args.busy} busy-loop processes at nice "
              f"{os.nice(0)}; {platform.python_implementation()} {platform.python_version()}",
              flush=True)
        print(f"  {'':<24} {'adverts':>7} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}",
              flush=True)
        busy: list[subprocess.Popen] = []

        def transitions() -> tuple[int, int]:
            return (lab.log_of(ours).count("vrrp.transition"),
                    lab.log_of(theirs).count("Entering "))

        ratios = {}
        for phase in ("idle", "loaded"):
            if phase == "loaded":
                busy = [c.popen([sys.executable, "-c", BUSY]) for _ in range(args.busy)]
                time.sleep(1.0)                         # the load is on every core
            before = transitions()
            for capture in captures.values():
                capture.drain()
            end = time.monotonic() + args.window
            lines = {name: [] for name in captures}
            while time.monotonic() < end:
                for name, capture in captures.items():
                    lines[name] += capture.collect(0.05)
            late = {name: lateness([t for t, prio in AdvertCapture.parse(got) if prio > 0],
                                   advert_int)
                    for name, got in lines.items()}
            after = transitions()
            print(f"{phase}:", flush=True)
            print(fmt("director (captured)", late["director"],
                      f"transitions {after[0] - before[0]}"), flush=True)
            print(fmt("keepalived (captured)", late["keepalived"],
                      f"transitions {after[1] - before[1]}"), flush=True)
            ours_p99, theirs_p99 = (figures(late[name]) for name in ("director", "keepalived"))
            if ours_p99 and theirs_p99 and theirs_p99[1] > 0:
                ratios[phase] = ours_p99[1] / theirs_p99[1]
                print(f"  p99 ratio director / keepalived: {ratios[phase]:.2f}x", flush=True)
            print(f"  director says: {own_figures(a)}", flush=True)
        for proc in busy:
            proc.kill()
            proc.wait(5)
        ours.send_signal(signal.SIGTERM)
        ours.wait(30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
