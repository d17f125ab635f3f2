"""/metrics' per-server text (metrics/collector.py per_server_text) at 10,000 real servers,
in one process without the network: a scrape where no checker ran since the last one, one
where every checker ran, and one with a fresh cache (the first scrape).

    .venv/bin/python bench/metrics_text.py [--services 1000] [--per-service 10] [--runs 9]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from dataclasses import replace

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from metrics.collector import LabelCache, per_server_text  # noqa: E402
from tests.unit.test_web_api import contract_state  # noqa: E402


def big_state(services: int, per_service: int, ok: int):
    state = contract_state(True)
    (server,) = state.virtual_servers
    (real,) = server.real_servers
    (job,) = real.check.jobs
    servers = []
    for s in range(services):
        name = f"10.{s // 250}.{s % 250}.1:80/TCP"
        reals = []
        for r in range(per_service):
            rname = f"127.1.{(s * per_service + r) // 250}.{(s * per_service + r) % 250 + 1}:9000"
            j = replace(job, virtual_server=name, real_server=rname, ok=ok,
                        duration_sum=0.001 * ok)
            reals.append(replace(real, name=rname, check=replace(real.check, jobs=(j,))))
        servers.append(replace(server, name=name, real_servers=tuple(reals)))
    return replace(state, virtual_servers=tuple(servers))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--per-service", type=int, default=10)
    parser.add_argument("--runs", type=int, default=9)
    args = parser.parse_args()
    states = [big_state(args.services, args.per_service, ok) for ok in (1, 2)]
    times: dict[str, list[float]] = {"fresh cache": [], "no checker ran": [],
                                     "every checker ran": []}
    for run in range(args.runs):
        cache = LabelCache()
        for label, state in (("fresh cache", states[0]), ("no checker ran", states[0]),
                             ("every checker ran", states[1])):
            started = time.perf_counter()
            per_server_text(state, cache)
            times[label].append(time.perf_counter() - started)
    print(f"{args.services * args.per_service} real servers; medians of {args.runs}; "
          f"load average {os.getloadavg()[0]:.2f}")
    for label, values in times.items():
        print(f"  {label:20} {statistics.median(values) * 1000:7.1f} ms")


if __name__ == "__main__":
    main()
