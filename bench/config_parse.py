"""Parse cost of a large configuration: 1,000 virtual servers, 10,000 real servers.

    .venv/bin/python bench/config_parse.py [--virtual-servers 1000] [--per-server 10] [--runs 5]

Generates the file, then in the same run times (each in a fresh process, median of --runs):
  * director's load_config() alone (parse + validate + model), and its peak RSS;
  * ``python -m director -t`` end to end (interpreter start and imports included);
  * ``keepalived -t`` on the same file, when keepalived is installed (the anchor).
Prints the figures and the director/keepalived ratios. Absolute times on a shared machine are
noise; the ratios and the 1 s / 200 MB budget of issue 2 are what to read.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

MEASURE = r"""
import json, resource, sys, time
from director.config import load_config
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start, cpu = time.perf_counter(), time.process_time()
result = load_config(sys.argv[1], config_id="bench", interface_exists=None)
elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
assert result.ok, [str(d) for d in result.errors][:5]
servers = result.config.virtual_servers
print(json.dumps({"seconds": elapsed, "cpu_seconds": cpu, "peak_rss_mb": peak / 1024,
                  "rss_growth_mb": (peak - base) / 1024, "virtual_servers": len(servers),
                  "real_servers": sum(len(s.real_servers) for s in servers)}))
"""


def generate(path: str, virtual_servers: int, per_server: int) -> int:
    lines = ["global_defs {", "    router_id bench", "}"]
    for i in range(1, 11):
        lines += [f"vrrp_instance VI_{i} {{", "    interface eth0", f"    virtual_router_id {i}",
                  "    priority 100", "    advert_int 1", "    virtual_ipaddress {",
                  f"        192.168.{i}.1/24", "    }", "}"]
    for v in range(virtual_servers):
        a, b = divmod(v, 250)
        lines += [f"virtual_server 10.{a}.{b + 1}.1 80 {{", "    delay_loop 6", "    lb_algo wrr",
                  "    lb_kind NAT", "    protocol TCP", "    persistence_timeout 50"]
        for r in range(per_server):
            lines += [f"    real_server 172.16.{v % 250}.{r + 1} 8080 {{", "        weight 1"]
            if r % 2:
                lines += ["        HTTP_GET {", "            url {", "                path /health",
                          "                digest 422834d1d2b972eee9e5b875e4bd8c33",
                          "            }",
                          "            connect_timeout 3", "            retry 3",
                          "            delay_before_retry 3", "        }"]
            else:
                lines += ["        TCP_CHECK {", "            connect_timeout 3",
                          "            connect_port 8080", "        }"]
            lines.append("    }")
        lines.append("}")
    with open(path, "w") as handle:
        handle.write("\n".join(lines) + "\n")
    return len(lines)


CPU: dict[tuple[str, ...], list[float]] = {}   # command -> the child's user+sys seconds


def timed(command: list[str], env: dict | None = None) -> tuple[float, str]:
    """Wall seconds and stdout; the child's CPU seconds (user + sys) go to CPU: on a shared,
    loaded machine the wall time is mostly waiting for a core, the CPU time much less so."""
    before = os.times()
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT)
    elapsed = time.perf_counter() - start
    after = os.times()
    CPU.setdefault(tuple(command[:2]), []).append(
        after.children_user - before.children_user + after.children_system
        - before.children_system)
    return elapsed, done.stdout


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--virtual-servers", type=int, default=1000)
    parser.add_argument("--per-server", type=int, default=10)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    env = dict(os.environ, PYTHONPATH=ROOT)
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "big.conf")
        count = generate(path, args.virtual_servers, args.per_server)
        size = os.path.getsize(path)
        print(f"config: {args.virtual_servers} virtual servers x {args.per_server} real servers,"
              f" {count} lines, {size / 1e6:.1f} MB")
        inner = [json.loads(timed([sys.executable, "-c", MEASURE, path], env)[1])
                 for _ in range(args.runs)]
        keepalived = shutil.which("keepalived")
        cli, anchor = [], []
        for _ in range(args.runs):    # interleaved: both see the same moments of the load
            cli.append(timed([sys.executable, "-m", "director", "-t", "-f", path], env)[0])
            if keepalived:
                anchor.append(timed([keepalived, "-t", "-f", path])[0])
    parse = statistics.median(r["seconds"] for r in inner)
    peak = max(r["peak_rss_mb"] for r in inner)
    growth = max(r["rss_growth_mb"] for r in inner)
    print(f"parsed: {inner[0]['virtual_servers']} virtual servers, "
          f"{inner[0]['real_servers']} real servers")
    fastest, slowest = (f(r["seconds"] for r in inner) for f in (min, max))
    print(f"director load_config(): median {parse:.3f} s (min {fastest:.3f}"
          f", max {slowest:.3f}); peak RSS {peak:.0f} MB "
          f"(+{growth:.0f} MB for the parse)")
    print(f"director -t (whole process): median {statistics.median(cli):.3f} s")
    if anchor:
        k = statistics.median(anchor)
        print(f"keepalived -t (whole process): median {k:.3f} s")
        print(f"ratio director/keepalived: load_config {parse / k:.1f}x, whole process "
              f"{statistics.median(cli) / k:.1f}x")
        ours = statistics.median(CPU[(sys.executable, "-m")])
        theirs = statistics.median(CPU[(keepalived, "-t")])
        parse_cpu = statistics.median(r.get("cpu_seconds", r["seconds"]) for r in inner)
        print(f"CPU (user+sys) medians: director load_config {parse_cpu:.3f} s, director -t "
              f"{ours:.3f} s, keepalived -t {theirs:.3f} s; ratios: load_config "
              f"{parse_cpu / theirs:.1f}x, whole process {ours / theirs:.1f}x")
    else:
        print("keepalived not installed: no anchor figure (apt-get install keepalived)")
    print(f"load average at the end: {os.getloadavg()[0]:.2f}")
    verdict = "within" if parse <= 1.0 and peak <= 200 else "OVER"
    print(f"budget (issue 2: <= 1 s, <= 200 MB): {verdict}")


if __name__ == "__main__":
    main()
