"""The web face at scale: 1,000 virtual servers x 10 real servers (10,000), director against
HAProxy 2.6 with the same 10,000 checked servers, side by side in one run.

    .venv/bin/python bench/web_scale.py [--services 1000] [--per-service 10] [--requests 10]
        [--trees BEFORE,AFTER] [--trials 3] [--no-browser]

Everything runs in a network namespace of its own (loopback only): a listener that accepts
and closes on 0.0.0.0:9000, the real servers being 127.1.x.y:9000 (all loopback), checked
every 10 s by both. Timed from a client in the namespace (each figure the median of
--requests, a new connection each):
- director: GET /metrics and GET /api/v1/state (goals: 300 ms each), the dashboard in
  headless Chromium: first contentful paint and the moment the first pool is drawn from
  the API (goal: 2 s);
- HAProxy (Debian's, USE_PROMEX): its Prometheus exporter /metrics, its stats page as CSV
  (its state API) and as HTML in the same Chromium.
Absolute times on this shared machine are noise: the ratios are the figure.
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
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

PORT = 9000
DIRECTOR_WEB = "127.0.0.1:18080"
HAPROXY_WEB = "127.0.0.1:18081"

LISTENER = """
import os, socket, sys
sock = socket.socket()
sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
sock.bind(("0.0.0.0", int(sys.argv[1])))
sock.listen(4096)
while True:
    conn, _ = sock.accept()
    conn.close()
"""

# argv: URL COUNT GZIP -> JSON {"seconds": [...], "bytes": N} (GZIP "1": asks for gzip, as
# Prometheus does; the bytes are those on the wire)
CLIENT = """
import json, sys, time, urllib.request
url, count = sys.argv[1], int(sys.argv[2])
headers = {"Accept-Encoding": "gzip"} if sys.argv[3] == "1" else {}
seconds, size = [], 0
for _ in range(count):
    started = time.perf_counter()
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers),
                                timeout=60) as response:
        size = len(response.read())
    seconds.append(time.perf_counter() - started)
print(json.dumps({"seconds": seconds, "bytes": size}))
"""

POOL_DRAWN = """
const started = Date.now();
return await new Promise((resolve) => {
  const poll = () => {
    if (document.querySelector('#pools .pool')) resolve(performance.now() / 1000);
    else if (Date.now() - started > 30000) resolve(null);
    else setTimeout(poll, 10);
  };
  poll();
});
"""


def real_address(index: int) -> str:
    return f"127.1.{index // 250}.{index % 250 + 1}"


def director_config(services: int, per_service: int) -> str:
    out = ["global_defs {\n    router_id WEB_BENCH\n}\n"]
    for s in range(services):
        out.append(f"virtual_server 10.{s // 250}.{s % 250}.1 80 {{\n    delay_loop 10\n"
                   "    lb_algo wrr\n    protocol TCP\n")
        for r in range(per_service):
            out.append(f"    real_server {real_address(s * per_service + r)} {PORT} {{\n"
                       "        TCP_CHECK {\n            connect_timeout 2\n        }\n    }\n")
        out.append("}\n")
    return "".join(out)


def haproxy_config(services: int, per_service: int, directory: str) -> str:
    lines = ["global", "    maxconn 2000", "defaults", "    mode http",
             "    timeout connect 2s", "    timeout client 60s", "    timeout server 60s",
             "frontend web", f"    bind {HAPROXY_WEB}",
             "    http-request use-service prometheus-exporter if { path /metrics }",
             "    stats enable", "    stats uri /stats", "    stats refresh 0"]
    for s in range(services):
        lines += [f"backend b{s}", "    mode tcp", "    default-server inter 10s"]
        lines += [f"    server s{r} {real_address(s * per_service + r)}:{PORT} check"
                  for r in range(per_service)]
    path = os.path.join(directory, "haproxy.cfg")
    with open(path, "w") as handle:
        handle.write("\n".join(lines) + "\n")
    return path


def in_ns(ns: str, argv: list[str], **kwargs) -> subprocess.Popen:
    return subprocess.Popen(["ip", "netns", "exec", ns, *argv], start_new_session=True,
                            **kwargs)


def fetch(ns: str, url: str, count: int, gzip: bool = False) -> dict:
    done = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", CLIENT, url,
                           str(count), "1" if gzip else "0"], capture_output=True, text=True, timeout=600, check=True)
    result = json.loads(done.stdout)
    return {"median": statistics.median(result["seconds"]), "max": max(result["seconds"]),
            "bytes": result["bytes"]}


def wait_url(ns: str, url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c",
                               f"import urllib.request; urllib.request.urlopen({url!r}, "
                               "timeout=5)"], capture_output=True)
        if done.returncode == 0:
            return
        time.sleep(0.5)
    raise SystemExit(f"{url} did not answer in {timeout} s")


def stop(process: subprocess.Popen | None) -> None:
    if process is not None and process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def paint(browser, url: str, pool_drawn: bool) -> dict:
    first = browser.get(url)
    drawn = browser.eval(POOL_DRAWN) if pool_drawn else None
    return {"first_paint": first, "data_drawn": drawn}


def start_director(ns: str, tree: str, config: str, tmp: str, tag: str) -> subprocess.Popen:
    log = open(os.path.join(tmp, f"director-{tag}.log"), "w")
    return in_ns(ns, [sys.executable, "-m", "director", "-C", "-l", "-f", config,
                      "--backend", "none", "--web", DIRECTOR_WEB,
                      "--state-dir", os.path.join(tmp, f"state-{tag}")],
                 stdout=log, stderr=subprocess.STDOUT, cwd=tree,
                 env={**os.environ, "PYTHONPATH": tree})


def measure(ns: str, requests: int) -> tuple[dict, dict]:
    """Ours then theirs, one right after the other (the same moment of the machine)."""
    ours = {"metrics": fetch(ns, f"http://{DIRECTOR_WEB}/metrics", requests),
            "state": fetch(ns, f"http://{DIRECTOR_WEB}/api/v1/state", requests),
            "metrics_gz": fetch(ns, f"http://{DIRECTOR_WEB}/metrics", requests, True)}
    theirs = {"metrics": fetch(ns, f"http://{HAPROXY_WEB}/metrics", requests),
              "state": fetch(ns, f"http://{HAPROXY_WEB}/stats;csv", requests)}
    return ours, theirs


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--per-service", type=int, default=10)
    parser.add_argument("--requests", type=int, default=10)
    parser.add_argument("--settle", type=float, default=15.0,
                        help="seconds for every server to be checked once")
    parser.add_argument("--trees", default=ROOT,
                        help="comma-separated director source trees, measured in turn "
                             "(e.g. a worktree of the code before a change, then this one)")
    parser.add_argument("--trials", type=int, default=1,
                        help="rounds over the trees (each tree's director started afresh)")
    parser.add_argument("--no-browser", action="store_true")
    args = parser.parse_args()
    if shutil.which("haproxy") is None:
        sys.exit("web_scale: HAProxy, the anchor, is not installed (apt-get install haproxy)")
    from tests.functional.browser import Browser, unavailable
    trees = [os.path.abspath(tree) for tree in args.trees.split(",")]
    ns = f"dweb-{os.getpid()}-{uuid.uuid4().hex[:4]}"
    tmp = tempfile.mkdtemp(prefix="director-web-bench-")
    subprocess.run(["ip", "netns", "add", ns], check=True)
    processes: list[subprocess.Popen] = []
    director = browser = None
    try:
        subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True)
        processes.append(in_ns(ns, [sys.executable, "-c", LISTENER, str(PORT)]))
        config = os.path.join(tmp, "keepalived.conf")
        with open(config, "w") as handle:
            handle.write(director_config(args.services, args.per_service))
        processes.append(in_ns(ns, ["haproxy", "-db", "-f",
                                    haproxy_config(args.services, args.per_service, tmp)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        wait_url(ns, f"http://{HAPROXY_WEB}/stats;csv", 60)
        reals = args.services * args.per_service
        results: dict[str, list] = {tree: [] for tree in trees}
        ours = theirs = {}
        for trial in range(args.trials):
            for index, tree in enumerate(trees):
                director = start_director(ns, tree, config, tmp, f"{trial}-{index}")
                wait_url(ns, f"http://{DIRECTOR_WEB}/healthz", 120)
                time.sleep(args.settle)     # a benchmark, not a test: every server checked
                ours, theirs = measure(ns, args.requests)
                results[tree].append((ours, theirs, os.getloadavg()[0]))
                if trial == args.trials - 1 and index == len(trees) - 1 \
                        and not args.no_browser and unavailable() is None:
                    browser = Browser.in_namespace(ns, os.path.join(tmp, "browser.log"))
                    ours["page"] = paint(browser, f"http://{DIRECTOR_WEB}/", True)
                    theirs["page"] = paint(browser, f"http://{HAPROXY_WEB}/stats", False)
                stop(director)
                director = None
        print(f"{reals} real servers in {args.services} virtual servers; medians of "
              f"{args.requests} requests; {args.trials} trial(s), trees in turn, HAProxy "
              f"measured right after each; load averages "
              + ", ".join(f"{r[2]:.2f}" for runs in results.values() for r in runs))
        for tree in trees:
            print(f"\n{tree}")
            print(f"{'':28} {'director':>12} {'HAProxy':>12} {'ratio':>7}")
            for key, label, their_label in (("metrics", "/metrics", "/metrics (promex)"),
                                            ("state", "/api/v1/state", "/stats;csv"),
                                            ("metrics_gz", "/metrics gzip", "/metrics (promex)")):
                for ours, theirs, _ in results[tree]:
                    a, b = ours[key], theirs[key.replace("_gz", "")]
                    print(f"{label + ' vs ' + their_label:28} {a['median'] * 1000:>9.0f} ms "
                          f"{b['median'] * 1000:>9.0f} ms {a['median'] / b['median']:>7.2f}"
                          f"   (max {a['max'] * 1000:.0f} ms; {a['bytes'] / 1e6:.1f} MB vs "
                          f"{b['bytes'] / 1e6:.1f} MB)")
        if "page" in ours:
            a, b = ours["page"], theirs["page"]
            print(f"{'first contentful paint':28} {a['first_paint']:>10.2f} s "
                  f"{b['first_paint']:>10.2f} s {a['first_paint'] / b['first_paint']:>7.2f}")
            print(f"{'first pool drawn (API data)':28} {a['data_drawn']:>10.2f} s "
                  f"{'(static)':>12}")
    finally:
        if browser is not None:
            browser.quit()
        stop(director)
        for process in reversed(processes):
            stop(process)
        subprocess.run(["ip", "netns", "del", ns], check=False)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
