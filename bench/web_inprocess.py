"""/api/v1/state and /metrics at 10,000 real servers in one process, without the network: a
real daemon (director.embedded, ``-C --backend none``) checking 1,000 virtual servers x 10
real servers (TCP_CHECK, delay_loop 10, a listener in a network namespace of its own), its
Flask app asked through the test client. Far less noisy than bench/web_scale.py on a shared
machine (no client process, no 4-29 MB through loopback); the checks go on between requests,
as they do under a real scrape.

    .venv/bin/python bench/web_inprocess.py [--tree DIR] [--services 1000] [--per-service 10]
        [--runs 9] [--settle 12] [--profile state|metrics]

``--tree``: the director source tree to measure (a worktree of the code before a change);
this script runs from any tree. Prints medians of ``--runs`` requests of each kind, the body
sizes and the load average. Needs root (the namespace).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import uuid

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PORT = 9000


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tree", default=HERE)
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--per-service", type=int, default=10)
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--settle", type=float, default=12.0,
                        help="seconds for every server to be checked once")
    parser.add_argument("--gap", type=float, default=0.2,
                        help="seconds between requests (past delay_loop, 10 s: every "
                             "server was checked again since the last, as between two "
                             "Prometheus scrapes 15 s apart)")
    parser.add_argument("--profile", choices=("state", "metrics", "snapshot"),
                        help="print a cProfile of one more request of this kind")
    parser.add_argument("--in-namespace", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args()


def in_namespace(args: argparse.Namespace) -> None:
    """Runs this script again inside a new namespace with only loopback, then removes it."""
    ns = f"dwebin-{os.getpid()}-{uuid.uuid4().hex[:4]}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True)
        done = subprocess.run(["ip", "netns", "exec", ns, sys.executable,
                               os.path.abspath(__file__), "--in-namespace", *sys.argv[1:]],
                              timeout=1800)
        sys.exit(done.returncode)
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)


def main() -> None:
    args = arguments()
    if not args.in_namespace:
        in_namespace(args)
    tree = os.path.abspath(args.tree)
    sys.path.insert(0, tree)
    sys.path.insert(1, HERE)            # web_scale's configuration writer
    from director.patching import patch_all
    patch_all()
    import cProfile
    import pstats
    import statistics
    import tempfile
    import time

    from bench.web_scale import LISTENER, director_config
    from director import hub
    from director.embedded import start_director
    from web import create_app

    tmp = tempfile.mkdtemp(prefix="director-web-inprocess-")
    listener = subprocess.Popen([sys.executable, "-c", LISTENER, str(PORT)])
    try:
        config = os.path.join(tmp, "keepalived.conf")
        with open(config, "w") as handle:
            handle.write(director_config(args.services, args.per_service))
        director, _ = start_director(["-C", "-f", config, "--backend", "none",
                                      "--state-dir", os.path.join(tmp, "state"), "-l"])
        app = create_app(director)
        client = app.test_client()
        hub.sleep(args.settle)
        kinds = {"state": "/api/v1/state", "metrics": "/metrics"}
        import gc
        collecting = {"since": 0.0, "total": 0.0, "gen2": 0}

        def collected(phase, info):       # the collector's time, reported with the requests
            if phase == "start":
                collecting["since"] = time.perf_counter()
            else:
                collecting["total"] += time.perf_counter() - collecting["since"]
                collecting["gen2"] += info["generation"] == 2

        gc.callbacks.append(collected)
        times: dict[str, list[float]] = {kind: [] for kind in kinds}
        cpu: dict[str, list[float]] = {kind: [] for kind in kinds}
        sizes: dict[str, int] = {}
        for _ in range(args.runs):
            for kind, url in kinds.items():
                started, started_cpu = time.perf_counter(), time.process_time()
                response = client.get(url)
                body = response.get_data()
                times[kind].append(time.perf_counter() - started)
                # the process's CPU (the checks that run meanwhile too), not the wait for a
                # CPU on a loaded machine
                cpu[kind].append(time.process_time() - started_cpu)
                assert response.status_code == 200, (url, response.status_code)
                sizes[kind] = len(body)
                hub.sleep(args.gap)     # the checks go on between requests
        print(f"tree {tree}: {args.services * args.per_service} real servers, medians of "
              f"{args.runs}, {args.gap:g} s apart, load average {os.getloadavg()[0]:.2f}")
        print(f"  garbage collection during the requests: {collecting['total'] * 1000:.0f} ms "
              f"in all, {collecting['gen2']} full collections")
        for kind, url in kinds.items():
            values = sorted(times[kind])
            print(f"  {url:15} {statistics.median(values) * 1000:7.1f} ms  (min "
                  f"{values[0] * 1000:.1f}, max {values[-1] * 1000:.1f}; CPU "
                  f"{statistics.median(cpu[kind]) * 1000:.1f} ms; "
                  f"{sizes[kind] / 1e6:.1f} MB)")
        from director.snapshot import take
        parts: dict[str, list[float]] = {"snapshot": [], "snapshot with_jobs": [],
                                         "snapshot, loop held": []}   # wall, ms
        for _ in range(args.runs):       # the views alone (both kinds of request take them)
            started = time.perf_counter()
            take(director, yield_every=0)        # its own cost: no check runs meanwhile
            parts["snapshot, loop held"].append(time.perf_counter() - started)
            started = time.perf_counter()
            director.snapshot()
            parts["snapshot"].append(time.perf_counter() - started)
            started = time.perf_counter()
            director.snapshot(with_jobs=True)
            parts["snapshot with_jobs"].append(time.perf_counter() - started)
            hub.sleep(0.2)
        for kind, values in parts.items():
            print(f"  {kind:20} {statistics.median(values) * 1000:7.1f} ms")
        if args.profile:
            hub.sleep(args.gap)
            profile = cProfile.Profile()
            profile.enable()
            if args.profile == "snapshot":
                take(director, yield_every=0)
            else:
                client.get(kinds[args.profile]).get_data()
            profile.disable()
            pstats.Stats(profile).sort_stats("cumulative").print_stats(40)
            pstats.Stats(profile).sort_stats("tottime").print_stats(25)
        director.commands.put("stop")
        hub.sleep(1)
    finally:
        listener.kill()
        listener.wait()
        subprocess.run(["rm", "-rf", tmp], check=False)


if __name__ == "__main__":
    main()
