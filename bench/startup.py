"""exec -> the VIP on the interface, for the address owner (priority 255), beside keepalived.

    sudo .venv/bin/python bench/startup.py [--trials N] [--compare DIR ...] [--cold]

An address owner goes MASTER at once (RFC 5798 6.4.1), so this is the daemon's start-up path
alone: interpreter, imports, configuration, the first advert and the VIP. One namespace with a
veth (no peer needed), one vrrp_instance; each run starts the daemon, polls `ip addr` every
millisecond until the VIP is there, then stops it (TERM) and waits for the VIP to go. Runs of
the implementations alternate, so load drifts hit them alike. ``--compare DIR`` adds a director
tree (e.g. a git worktree of an earlier commit) run with this venv's interpreter; give it
bytecode first (`python -m compileall -q DIR/director`) as scripts/setup gives this tree.
Prints medians and each one's difference from keepalived's, for the wall time and for the
CPU time the process (and its children) had used when the VIP appeared: on a shared machine
the CPU figure is the steadier one.

A restart, as an operator does it: each tree keeps its state directory from one run to the
next, after one untimed start that writes its quick-start plan (director/vrrp/quickstart.py).
``--cold``: a new state directory every run (no plan: the first start after an install or a
change of the files).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VIP = "10.9.9.100"
CONFIG = f"""vrrp_instance VI_1 {{
    state MASTER
    interface eth0
    virtual_router_id 51
    priority 255
    advert_int 1
    virtual_ipaddress {{ {VIP}/24 }}
}}
"""
TIMEOUT = 20.0


def ip(namespace: str, *args: str) -> str:
    return subprocess.run(["ip", "-n", namespace, *args], check=True, capture_output=True,
                          text=True).stdout


def vip_present(namespace: str) -> bool:
    return f" {VIP}/" in ip(namespace, "-4", "-o", "addr", "show", "dev", "eth0")


TICK = os.sysconf("SC_CLK_TCK")


def tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) of ``pid`` and its children so far (keepalived's VRRP
    process is a child): unlike the wall time, barely moved by a busy machine."""
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(stat.parent.name) == pid or int(fields[1]) == pid:   # fields[1]: the ppid
            total += (int(fields[11]) + int(fields[12])) / TICK
    return total


def one_run(namespace: str, argv: list[str], env: dict, log: Path,
            cwd: Path | None = None) -> tuple[float, float]:
    """(wall seconds, CPU seconds) from exec to the VIP on the interface. ``cwd``: a tree's
    root, for ``python -m director`` puts the working directory before PYTHONPATH (without
    it, every --compare tree ran this one's code)."""
    with open(log, "ab") as out:
        started = time.monotonic()
        proc = subprocess.Popen(["ip", "netns", "exec", namespace, *argv], env=env, cwd=cwd,
                                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
        try:
            while not vip_present(namespace):
                if proc.poll() is not None or time.monotonic() - started > TIMEOUT:
                    raise RuntimeError(f"{argv[0]}: no VIP within {TIMEOUT:g} s; see {log}")
                time.sleep(0.001)
            return time.monotonic() - started, tree_cpu(proc.pid)
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            deadline = time.monotonic() + 10
            while vip_present(namespace) and time.monotonic() < deadline:
                time.sleep(0.01)
            subprocess.run(["ip", "-n", namespace, "addr", "del", f"{VIP}/24", "dev", "eth0"],
                           capture_output=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--compare", action="append", default=[], metavar="DIR")
    parser.add_argument("--cold", action="store_true",
                        help="a new state directory every run: no quick-start plan")
    args = parser.parse_args()
    keepalived = shutil.which("keepalived")
    if os.geteuid() != 0 or keepalived is None:
        print("needs root and keepalived", file=sys.stderr)
        return 2
    namespace = f"startup{os.getpid()}"
    tmp = Path(tempfile.mkdtemp(prefix="startup-bench-"))
    conf = tmp / "keepalived.conf"
    conf.write_text(CONFIG)
    subprocess.run(["ip", "netns", "add", namespace], check=True)
    try:
        ip(namespace, "link", "add", "eth0", "type", "veth", "peer", "name", "peer0")
        for link in ("peer0", "eth0", "lo"):
            ip(namespace, "link", "set", link, "up")
        ip(namespace, "addr", "add", "10.9.9.1/24", "dev", "eth0")
        trees = {"director": ROOT} | {f"director@{Path(d).name}": Path(d).resolve()
                                      for d in args.compare}
        runs: dict[str, list[tuple[float, float]]] = {name: [] for name in
                                                      [*trees, "keepalived"]}
        def director_argv(name: str, trial: int) -> list[str]:
            state = tmp / (f"{name}-{trial}" if args.cold else name)
            return [sys.executable, "-m", "director", "-P", "-f", str(conf), "-l", "-n",
                    "--web", "off", "--state-dir", str(state), "-p", f"{state}.pid"]

        if not args.cold:                       # the start that writes each tree's plan
            for name, tree in trees.items():
                one_run(namespace, director_argv(name, -1),
                        dict(os.environ, PYTHONPATH=str(tree)), tmp / f"{name}.log", cwd=tree)
        for trial in range(args.trials):
            for name, tree in trees.items():
                env = dict(os.environ, PYTHONPATH=str(tree))
                runs[name].append(one_run(namespace, director_argv(name, trial), env,
                                          tmp / f"{name}.log", cwd=tree))
            runs["keepalived"].append(one_run(namespace, [
                keepalived, "--vrrp", "--dont-fork", "--log-console", "--no-syslog",
                "--dont-respawn", "-f", str(conf), "-p", str(tmp / "k.pid"),
                "-r", str(tmp / "kv.pid")], dict(os.environ), tmp / "keepalived.log"))
    finally:
        subprocess.run(["ip", "netns", "del", namespace])
    print(f"# {time.strftime('%Y-%m-%dT%H:%M:%S')}  {os.cpu_count()} cpus, load "
          f"{os.getloadavg()[0]:.2f}  python {platform.python_version()}  "
          f"PYTHONDONTWRITEBYTECODE={os.environ.get('PYTHONDONTWRITEBYTECODE', '')}")
    print(f"# exec -> VIP {VIP} on eth0, priority 255, {args.trials} alternating runs each, "
          + ("cold (a new state directory each run)" if args.cold else
             "restarts (each tree's state directory kept)"))
    anchor = statistics.median(wall for wall, _ in runs["keepalived"])
    cpu_anchor = statistics.median(cpu for _, cpu in runs["keepalived"])
    for name, pairs in runs.items():
        values = [wall for wall, _ in pairs]
        median = statistics.median(values)
        cpu = statistics.median(cpu for _, cpu in pairs)
        print(f"{name:28s} median {median * 1000:7.1f} ms  min {min(values) * 1000:7.1f}  "
              f"max {max(values) * 1000:7.1f}  vs keepalived {1000 * (median - anchor):+7.1f} ms"
              f"   CPU {cpu * 1000:6.0f} ms ({1000 * (cpu - cpu_anchor):+5.0f})")
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
