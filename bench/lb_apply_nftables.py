"""Time for the nftables backend to apply one change (a destination down) to a pool of
1,000 virtual services x 10 destinations, inside a throwaway network namespace.

    .venv/bin/python bench/lb_apply_nftables.py [--services 1000] [--per-service 10] [--runs 5]

The nftables backend applies a change as one `nft -f` transaction touching only what
changed (changes(before, after).script: here, the one service's chain flushed and filled
again), after a first apply of the whole table; this measures both the render of the
changes and the transaction, for growing pools, to see how the cost grows with the
unchanged entries (issue 5: no more than linearly, and under 100 ms for one change).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from director.lb.model import Destination, DestinationKey, Pool, Service, ServiceKey  # noqa: E402
from director.lb.nftables_script import changes, render  # noqa: E402


def state(services: int, per_service: int, down: tuple[int, int] | None = None):
    pools = {}
    for s in range(services):
        a, b = divmod(s, 250)
        key = ServiceKey("TCP", f"10.{a}.{b}.1", 80)
        dests = {}
        for r in range(per_service):
            if down == (s, r):
                continue
            dest_key = DestinationKey(f"172.16.{s % 250}.{r + 1}", 8080)
            dests[dest_key] = Destination(dest_key, 1)
        pools[key] = Pool(Service(key, "wrr"), dests)
    return pools


def nft(namespace: str, script: str | None = None, *args: str) -> float:
    started = time.perf_counter()
    subprocess.run(["ip", "netns", "exec", namespace, "nft", *(args or ("-f", "-"))],
                   input=script, text=True, check=True, capture_output=True, timeout=120)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--per-service", type=int, default=10)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    namespace = f"dbench-{os.getpid()}-{uuid.uuid4().hex[:4]}"
    subprocess.run(["ip", "netns", "add", namespace], check=True)
    try:
        print(f"{'services':>9} {'entries':>8} {'render (ms)':>12} {'nft -f (ms)':>12} "
              f"{'listing (ms)':>13} {'total (ms)':>11}")
        rows = []
        for services in (args.services // 10, args.services // 2, args.services):
            before = state(services, args.per_service)
            after = state(services, args.per_service, down=(services // 2, 0))
            nft(namespace, render(before))
            current = before
            renders, applies, listings = [], [], []
            for run in range(args.runs):
                target = after if run % 2 == 0 else before
                started = time.perf_counter()
                done = changes(current, target)
                renders.append(time.perf_counter() - started)
                applies.append(nft(namespace, done.script))
                listings.append(sum(nft(namespace, None, "-s", "-t", "list", kind, "inet",
                                        "director", name)
                                    for kind, name in (o.split(" ", 1) for o in done.touched)))
                current = target
            row = (services, services * args.per_service, statistics.median(renders) * 1000,
                   statistics.median(applies) * 1000, statistics.median(listings) * 1000)
            rows.append(row)
            print(f"{row[0]:>9} {row[1]:>8} {row[2]:>12.1f} {row[3]:>12.1f} {row[4]:>13.1f} "
                  f"{sum(row[2:]):>11.1f}")
        small, large = rows[0], rows[-1]
        growth = sum(large[2:]) / sum(small[2:]) / (large[1] / small[1])
        total = sum(large[2:])
        print(f"growth per entry, smallest to largest pool: {growth:.2f}x (1.0 = linear); one "
              f"change on {large[1]} entries: {total:.0f} ms (goal < 100 ms: "
              f"{'within' if total < 100 else 'OVER'})")
    finally:
        subprocess.run(["ip", "netns", "del", namespace], check=False)


if __name__ == "__main__":
    main()
