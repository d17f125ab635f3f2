"""/metrics and /api/v1/state at 10,000 real servers when all, a tenth or none of the
checkers ran since the request before, in one process without a daemon: the real
CheckService and LoadBalancer (backend none, nothing checked for real: each "check" is one
result handed to the scheduler as a finished check hands it), the real app through Flask's
test client. No check runs during a request and nothing else shares the process, so the CPU
of a request and the garbage collector's part of it (gc.callbacks, by generation) are far
less noisy than bench/web_inprocess.py's on a shared machine; the daemon's start-up
gc.freeze() is done the same way after the first request.

    .venv/bin/python bench/web_views_changed.py [--tree DIR] [--changed all|tenth|none]
        [--runs 7] [--services 1000] [--per-service 10]

``--tree``: the director source tree to measure (a worktree of the code before a change);
this script runs from any tree. Prints, per kind of request, the medians of CPU and of
collection time, the full collections, and the load average.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tree", default=HERE)
    parser.add_argument("--changed", choices=("all", "tenth", "none"), default="all")
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--per-service", type=int, default=10)
    args = parser.parse_args()
    tree = os.path.abspath(args.tree)
    sys.path.insert(0, tree)
    sys.path.insert(1, HERE)            # web_scale's configuration writer
    import gc
    from dataclasses import replace

    from bench.web_scale import director_config
    from director.check.checker import CheckResult
    from director.check.service import CheckService
    from director.clock import FakeClock
    from director.config import load_config
    from director.lb.service import LoadBalancer
    from director.notify import Notifier
    from tests.unit.test_web_api import FakeDirector, contract_state
    from web import create_app

    class Live(FakeDirector):
        def __init__(self, lb: LoadBalancer) -> None:
            super().__init__()
            self.lb = lb

        def snapshot(self, with_jobs: bool = False):
            try:                        # trees before one set of views served both readers
                servers = self.lb.virtual_servers(with_jobs=with_jobs)
            except TypeError:
                servers = self.lb.virtual_servers()
            return replace(contract_state(with_jobs), virtual_servers=servers)

    with tempfile.TemporaryDirectory(prefix="director-views-") as tmp:
        path = os.path.join(tmp, "keepalived.conf")
        with open(path, "w") as handle:
            handle.write(director_config(args.services, args.per_service))
        config = load_config(path, config_id="bench", interface_exists=None).config
    checks = CheckService(config, FakeClock(), Notifier(None), workers=0)
    checks.start()                      # the jobs; nothing runs without the loop
    lb = LoadBalancer(checks.config, checks, "none", Notifier(None))
    lb.start()
    client = create_app(Live(lb)).test_client()
    jobs = checks.scheduler.jobs
    rng = random.Random(17)
    share = {"all": 1.0, "tenth": 0.1, "none": 0.0}[args.changed]

    def run_checks(share: float) -> None:
        for job in jobs:
            if share >= 1.0 or rng.random() < share:
                checks.scheduler._finished(job, CheckResult(True, rng.uniform(0.0001, 0.003)))

    run_checks(1.0)
    kinds = {"state": "/api/v1/state", "metrics": "/metrics"}
    for url in kinds.values():
        client.get(url).get_data()
    gc.collect()
    gc.freeze()                         # as the daemon does once started (daemon.py)
    collecting = {"since": 0.0, "time": [0.0, 0.0, 0.0], "full": 0}

    def collected(phase: str, info: dict) -> None:
        if phase == "start":
            collecting["since"] = time.perf_counter()
        else:
            collecting["time"][info["generation"]] += time.perf_counter() - collecting["since"]
            collecting["full"] += info["generation"] == 2

    gc.callbacks.append(collected)
    cpu: dict[str, list[float]] = {kind: [] for kind in kinds}
    spent: dict[str, list[tuple]] = {kind: [] for kind in kinds}
    full = {kind: 0 for kind in kinds}
    for _ in range(args.runs):
        for kind, url in kinds.items():
            run_checks(share)
            collecting["time"], collecting["full"] = [0.0, 0.0, 0.0], 0
            started = time.process_time()
            response = client.get(url)
            response.get_data()
            cpu[kind].append(time.process_time() - started)
            assert response.status_code == 200, (url, response.status_code)
            spent[kind].append(tuple(collecting["time"]))
            full[kind] += collecting["full"]
    gc.callbacks.remove(collected)
    print(f"tree {tree}: {len(jobs)} real servers, {args.changed} changed between requests, "
          f"medians of {args.runs}, load average {os.getloadavg()[0]:.2f}")
    for kind, url in kinds.items():
        young = statistics.median(sum(t[:2]) for t in spent[kind]) * 1000
        old = statistics.median(t[2] for t in spent[kind]) * 1000
        total = statistics.median(sum(t) for t in spent[kind]) * 1000
        print(f"  {url:15} CPU {statistics.median(cpu[kind]) * 1000:7.1f} ms (min "
              f"{min(cpu[kind]) * 1000:.1f}); collector {total:6.1f} ms (gen 0-1 "
              f"{young:.1f}, full {old:.1f}; {full[kind]} full in {args.runs})")


if __name__ == "__main__":
    main()
