"""The HOWTO's LVS-NAT on real IPVS, director side by side with keepalived 2.2.7 in the same
qemu guest (this host's kernel has no IPVS): two directors, three real servers, 50 long-lived
connections through the VIP (a line every 0.1 s each), the MASTER killed with SIGKILL and
its links cut. Measured per engine, with and without ``lvs_sync_daemon eth1 VI_1``:

- failover: from the kill to both VIPs on the BACKUP;
- connections kept: those that still echo 20 s after the kill, of 50.

    .venv/bin/python bench/howto_failover.py [--trials 1]

(about 6 minutes a trial under software emulation: four labs, each booting two daemons)
Each engine runs the same configuration (director/demo/lab.conf plus the sync daemon line and
an echo service, tests/qemu/howto_lab_case.py). Absolute times under emulation are not real
hardware's: compare the columns of one run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tests.qemu.guest import prepare, run  # noqa: E402


def trial(guest) -> list[dict]:
    """One guest run: keepalived then director, each with and without the sync daemon."""
    script = (f"cd {ROOT} && for engine in keepalived director; do "
              f"{sys.executable} tests/qemu/howto_lab_case.py $engine both "
              f"| tail -n 1 > $RESULTS/$engine.json; done")
    result = run(script, guest=guest, timeout=1800)
    if result.rc != 0:
        raise SystemExit(f"guest run failed: {result.stderr[-3000:]}")
    runs = []
    for engine in ("keepalived", "director"):
        for scenario in json.loads(result.files[f"{engine}.json"])["runs"]:
            if "error" in scenario:
                raise SystemExit(f"{engine} sync={scenario['sync']}: {scenario['error']}\n"
                                 f"{json.dumps(scenario['logs'])[-4000:]}")
            runs.append(scenario)
    return runs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=1)
    args = parser.parse_args()
    guest = prepare()
    results: dict[tuple[str, bool], list[dict]] = {}
    for number in range(args.trials):
        for scenario in trial(guest):
            results.setdefault((scenario["engine"], scenario["sync"]), []).append(scenario)
        print(f"trial {number + 1} of {args.trials} done", file=sys.stderr)
    print(f"{'engine':<11} {'sync daemon':<12} {'failover (median)':>18} "
          f"{'connections kept':>17}")
    medians = {}
    for (engine, sync), scenarios in sorted(results.items()):
        failover = statistics.median(s["failover_seconds"] for s in scenarios)
        kept = [s["survived_failover"] for s in scenarios]
        medians[engine, sync] = failover
        print(f"{engine:<11} {'yes' if sync else 'no':<12} {failover:>16.3f} s "
              f"{'/'.join(map(str, kept)):>13} of 50")
    for sync in (True, False):
        if ("director", sync) in medians and ("keepalived", sync) in medians:
            print(f"failover ratio director/keepalived ({'with' if sync else 'without'} sync "
                  f"daemon): {medians['director', sync] / medians['keepalived', sync]:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
