"""Cost of working out one change for the kernel: 1,000 virtual services x 10 destinations,
one destination goes down.

    .venv/bin/python bench/lb_plan.py [--services 1000] [--per-service 10] [--runs 20]

Measures the pure part every backend shares: the desired state from the configuration and
the checks (pool.desired_state) and the plan against the kernel's current state (plan.plan),
for one change, and how both grow with the number of unchanged entries (the issue: no more
than linearly, under 100 ms for one change). Applying the plan is the backend's and is
measured with each backend.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from director.config import load_config  # noqa: E402
from director.lb.plan import plan  # noqa: E402
from director.lb.pool import Live, desired_state  # noqa: E402


def config_text(services: int, per_service: int) -> str:
    lines = []
    for s in range(services):
        a, b = divmod(s, 250)
        lines += [f"virtual_server 10.{a}.{b}.1 80 {{", "    lb_algo wrr", "    protocol TCP"]
        for r in range(per_service):
            lines += [f"    real_server 172.16.{s % 250}.{r + 1} 8080 {{", "        weight 1",
                      "        TCP_CHECK {", "            connect_timeout 1", "        }",
                      "    }"]
        lines.append("}")
    return "\n".join(lines) + "\n"


def measure(services: int, per_service: int, runs: int) -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".conf", delete=False) as handle:
        handle.write(config_text(services, per_service))
    try:
        config = load_config(handle.name, config_id="bench", interface_exists=None).config
    finally:
        os.unlink(handle.name)
    victim = config.virtual_servers[services // 2].real_servers[per_service // 2]
    before = desired_state(config, lambda name, real: Live(), {})
    owned = frozenset(before)
    compute, diff = [], []
    for _ in range(runs):
        started = time.perf_counter()
        after = desired_state(config, lambda name, real: Live(up=real is not victim), {})
        middle = time.perf_counter()
        operations = plan(after, before, owned)
        done = time.perf_counter()
        compute.append(middle - started)
        diff.append(done - middle)
        assert len(operations) == 1, operations
    return {"services": services, "entries": services * per_service,
            "desired_ms": statistics.median(compute) * 1000,
            "plan_ms": statistics.median(diff) * 1000}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--per-service", type=int, default=10)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    print(f"{'services':>9} {'entries':>8} {'desired state (ms)':>19} {'plan (ms)':>10} "
          f"{'total (ms)':>11} {'us per entry':>13}")
    rows = []
    for services in (args.services // 10, args.services // 2, args.services):
        row = measure(services, args.per_service, args.runs)
        rows.append(row)
        total = row["desired_ms"] + row["plan_ms"]
        print(f"{row['services']:>9} {row['entries']:>8} {row['desired_ms']:>19.1f} "
              f"{row['plan_ms']:>10.1f} {total:>11.1f} {total * 1000 / row['entries']:>13.2f}")
    small, large = rows[0], rows[-1]
    growth = ((large["desired_ms"] + large["plan_ms"]) / (small["desired_ms"] + small["plan_ms"])
              / (large["entries"] / small["entries"]))
    total = large["desired_ms"] + large["plan_ms"]
    print(f"growth per entry from the smallest to the largest pool: {growth:.2f}x "
          f"(1.0 = linear); one change on {large['entries']} entries: {total:.1f} ms "
          f"(goal < 100 ms: {'within' if total < 100 else 'OVER'})")


if __name__ == "__main__":
    main()
