"""GRPC_CHECK's cost: CPU per check with --servers real servers checked every second, for
the way director runs the call and the ways it could have, side by side in one run.

    .venv/bin/python bench/check_grpc_cost.py [--servers 200] [--window 20] [--warmup 4]

* the servers: one grpcio process (not measured) serving the standard HealthServicer on
  --servers ports of 127.0.0.1;
* each way, in a monkey-patched process of its own, one after the other: --servers
  GrpcCheck jobs in director's Scheduler (delay_loop 1, connect_timeout 2), --warmup
  seconds, then a window of --window seconds: CPU (getrusage: every thread, grpcio's
  included), checks done, start lateness p99, and the hub's longest stall (a 10 ms ticker);
  - ``pool``: as shipped, the call in an OS thread of hub.ThreadPool, the channel kept;
  - ``init_gevent``: grpc.experimental.gevent.init_gevent() first, the call made from the
    worker greenlet itself (no thread hop), the channel kept;
  - ``fresh``: as ``pool`` but a new channel (a new connection) for every check.
"""

import sys

if len(sys.argv) > 2 and sys.argv[1] == "--role":      # a measured process: patch first
    from gevent import monkey

    monkey.patch_all()

import argparse
import json
import os
import resource
import subprocess
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BASE_PORT = 41000

SERVER = """
import sys, time, grpc
from concurrent import futures
from grpc_health.v1 import health, health_pb2_grpc
server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
health_pb2_grpc.add_HealthServicer_to_server(health.HealthServicer(), server)
for port in range(int(sys.argv[1]), int(sys.argv[1]) + int(sys.argv[2])):
    server.add_insecure_port(f"127.0.0.1:{port}")
server.start()
print("ready", flush=True)
time.sleep(3600)
"""


def run_way(args) -> None:
    sys.path.insert(0, ROOT)
    import gevent

    from director.check import grpc as grpc_check
    from director.check.base import CheckSettings, Target
    from director.check.scheduler import Scheduler
    from director.clock import MonotonicClock
    from director.config.blocks.checkers import BLOCKS
    from director.config.schema import model_for

    grpc_check.THREADS = args.threads
    if args.role == "init_gevent":
        import grpc.experimental.gevent
        grpc.experimental.gevent.init_gevent()

        class Direct(grpc_check.GrpcCheck):
            def check(self):
                started = time.monotonic()
                error, reply_error = self._attempt(started + self.target.connect_timeout)
                return grpc_check.CheckResult(error is None, time.monotonic() - started,
                                              error, reply_error=reply_error)
        make = Direct
    elif args.role == "fresh":
        class Fresh(grpc_check.GrpcCheck):
            def _attempt(self, deadline):
                try:
                    return super()._attempt(deadline)
                finally:
                    if self._channel is not None:
                        self._drop(self._channel)
        make = Fresh
    else:
        make = grpc_check.GrpcCheck

    block = model_for(BLOCKS["GRPC_CHECK"])(kind="GRPC_CHECK")
    settings = CheckSettings(delay_loop=1.0, connect_timeout=2.0, retry=1,
                             delay_before_retry=1.0, warmup=1.0, alpha=False)
    scheduler = Scheduler(MonotonicClock(), lateness_samples=args.servers * (args.window + 10))
    for port in range(BASE_PORT, BASE_PORT + args.servers):
        target = Target("127.0.0.1", port, 2.0, virtual_server="bench",
                        real_server=f"127.0.0.1:{port}")
        scheduler.add(("bench", target.real_server, "GRPC_CHECK"), make(block, target),
                      settings)
    stalls = []

    def ticker():
        while True:
            before = time.monotonic()
            gevent.sleep(0.01)
            stalls.append(time.monotonic() - before - 0.01)

    scheduler.start()
    gevent.spawn(ticker)
    gevent.sleep(args.warmup)

    def totals():
        return sum(j.ok for j in scheduler.jobs), sum(j.failed for j in scheduler.jobs)

    ok0, failed0 = totals()
    scheduler.lateness.clear()
    stalls.clear()
    usage0, start = resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
    gevent.sleep(args.window)
    usage1, elapsed = resource.getrusage(resource.RUSAGE_SELF), time.monotonic() - start
    ok1, failed1 = totals()
    cpu = (usage1.ru_utime - usage0.ru_utime) + (usage1.ru_stime - usage0.ru_stime)
    late = sorted(scheduler.lateness)
    print("result " + json.dumps({
        "cores": cpu / elapsed, "checks": ok1 - ok0, "failed": failed1 - failed0,
        "us_per_check": cpu / max(1, ok1 - ok0 + failed1 - failed0) * 1e6,
        "lateness_p99_ms": late[int(len(late) * 0.99)] * 1000 if late else 0.0,
        "stall_max_ms": max(stalls) * 1000 if stalls else 0.0,
        "threads": len(os.listdir("/proc/self/task"))}), flush=True)
    os._exit(0)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--role", default="")
    parser.add_argument("--servers", type=int, default=200)
    parser.add_argument("--window", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=4)
    parser.add_argument("--threads", type=int, default=256, help="hub.ThreadPool's size")
    parser.add_argument("--ways", default="pool,init_gevent,fresh")
    args = parser.parse_args()
    if args.role:
        run_way(args)
        return
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(BASE_PORT), str(args.servers)],
                              stdout=subprocess.PIPE, text=True)
    try:
        if server.stdout.readline().strip() != "ready":
            raise SystemExit("the gRPC server did not start")
        print(f"{args.servers} servers, every 1 s, window {args.window} s")
        print(f"{'way':12} {'cores':>6} {'us/check':>9} {'checks':>7} {'failed':>6} "
              f"{'late p99':>9} {'stall max':>10} {'threads':>7}")
        for way in args.ways.split(","):
            done = subprocess.run([sys.executable, __file__, "--role", way, "--servers",
                                   str(args.servers), "--window", str(args.window),
                                   "--warmup", str(args.warmup), "--threads",
                                   str(args.threads)], capture_output=True,
                                  text=True, timeout=args.window + args.warmup + 60)
            lines = [line for line in done.stdout.splitlines() if line.startswith("result ")]
            if not lines:
                print(f"{way:12} failed: {done.stderr[-500:]}")
                continue
            r = json.loads(lines[-1][7:])
            print(f"{way:12} {r['cores']:6.3f} {r['us_per_check']:9.0f} {r['checks']:7d} "
                  f"{r['failed']:6d} {r['lateness_p99_ms']:7.1f}ms {r['stall_max_ms']:8.1f}ms "
                  f"{r['threads']:7d}")
    finally:
        server.kill()
        server.wait(10)


if __name__ == "__main__":
    main()
