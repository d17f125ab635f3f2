"""Time for the IPVS backend to apply one change (a destination down, then back) to pools of
100 and 1,000 virtual services x 10 destinations, in a qemu guest whose kernel has
IPVS (tests/qemu/guest.py; this host's kernel has none), side by side with ipvsadm making
the same change.

    .venv/bin/python bench/lb_apply_ipvs.py [--services 1000] [--per-service 10] [--runs 5]

(about 15 minutes: everything runs under software emulation)

What is timed, each the median of --runs:
- change: what the daemon does when a checker says a server went down (IpvsSync.sync with
  verify=False): plan against what it last programmed, one netlink message;
- verify: what it does every delay_loop (verify=True): read every service and destination
  back from the kernel and plan (nothing to change here);
- ipvsadm -d / -a: the same change made by ipvsadm, a process started per change (the
  floor a shell-script director pays); ipvsadm -Ln: reading the whole table with it.
The guest runs under software emulation (TCG): absolute times are several times what real
hardware gives; the ratios are the figure.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from lb_apply_nftables import state  # noqa: E402  (the same pools for both backends)


def timed(function) -> float:
    started = time.perf_counter()
    function()
    return (time.perf_counter() - started) * 1000


def in_guest(args) -> None:
    from director.lb.service import IpvsSync
    subprocess.run("busybox modprobe ip_vs", shell=True, check=True)
    rows = []
    for services in (args.services // 10, args.services):
        subprocess.run(["ipvsadm", "-C"], check=True)
        up = state(services, args.per_service)
        s = services // 2
        down = state(services, args.per_service, down=(s, 0))
        vip, real = f"10.{s // 250}.{s % 250}.1:80", f"172.16.{s % 250}.1:8080"
        owned = frozenset(up)
        sync = IpvsSync()
        sync.open()
        first = timed(lambda: sync.sync(up, owned, verify=True))
        changes, verifies, tool_changes, tool_reads = [], [], [], []
        target = up
        for run in range(args.runs):
            target = down if run % 2 == 0 else up
            changes.append(timed(lambda: sync.sync(target, owned, verify=False)))
            if run < 3:                      # a whole read: slow under emulation
                verifies.append(timed(lambda: sync.sync(target, owned, verify=True)))
        assert sync.backend.read() == target, "the kernel does not hold the desired state"
        sync.sync(up, owned)
        for run in range(args.runs):
            command = ["ipvsadm", "-d", "-t", vip, "-r", real] if run % 2 == 0 else \
                ["ipvsadm", "-a", "-t", vip, "-r", real, "-m", "-w", "1"]
            tool_changes.append(timed(lambda: subprocess.run(command, check=True)))
            tool_reads.append(timed(lambda: subprocess.run(["ipvsadm", "-Ln"], check=True,
                                                           stdout=subprocess.DEVNULL)))
        sync.close()
        rows.append({"services": services, "entries": services * args.per_service,
                     "first_apply_ms": first,
                     "change_ms": statistics.median(changes),
                     "verify_ms": statistics.median(verifies),
                     "ipvsadm_change_ms": statistics.median(tool_changes),
                     "ipvsadm_list_ms": statistics.median(tool_reads)})
    subprocess.run(["ipvsadm", "-C"], check=True)
    print(json.dumps(rows))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--per-service", type=int, default=10)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--in-guest", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.in_guest:
        in_guest(args)
        return
    from tests.qemu.guest import run
    result = run(f"cd {ROOT} && {sys.executable} bench/lb_apply_ipvs.py --in-guest "
                 f"--services {args.services} --per-service {args.per_service} "
                 f"--runs {args.runs}", timeout=2400)
    if result.rc != 0:
        sys.exit(f"guest run failed (rc={result.rc}):\n{result.stderr[-3000:]}\n"
                 f"{result.console[-2000:]}")
    rows = json.loads(result.stdout.strip().splitlines()[-1])
    print(f"guest run {result.seconds:.0f} s (qemu TCG); medians of {args.runs} runs, ms")
    print(f"{'services':>8} {'entries':>7} {'first':>8} {'change':>7} {'ipvsadm':>8} "
          f"{'ratio':>6} {'verify':>7} {'ipvsadm -Ln':>11} {'ratio':>6}")
    for row in rows:
        print(f"{row['services']:>8} {row['entries']:>7} {row['first_apply_ms']:>8.0f} "
              f"{row['change_ms']:>7.1f} {row['ipvsadm_change_ms']:>8.1f} "
              f"{row['change_ms'] / row['ipvsadm_change_ms']:>6.2f} {row['verify_ms']:>7.0f} "
              f"{row['ipvsadm_list_ms']:>11.0f} "
              f"{row['verify_ms'] / row['ipvsadm_list_ms']:>6.2f}")
    small, large = rows[0], rows[-1]
    growth = large["change_ms"] / small["change_ms"] / (large["entries"] / small["entries"])
    print(f"change cost growth per entry, smallest to largest pool: {growth:.2f}x (1.0 = "
          f"linear); one change on {large['entries']} entries: {large['change_ms']:.0f} ms "
          f"(goal < 100 ms: {'within' if large['change_ms'] < 100 else 'OVER'})")


if __name__ == "__main__":
    main()
