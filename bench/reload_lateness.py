"""VRRP advert lateness of one director while it reloads: idle, reloading a 100,000-line
configuration back to back, and rejecting a 50 MB garbage file back to back.

    sudo .venv/bin/python bench/reload_lateness.py [--window 20] [--virtual-servers 1200]
        [--garbage-mb 50]

Issue 12's figure: a reload never blocks the loop (the goal: advert lateness p99 under
20 ms while reloading a 100,000-line configuration and while a 50 MB garbage file is
rejected, beside the idle figure). A benchmark: it prints a table and asserts nothing. Needs
root (namespaces, AF_PACKET). One director/demo/netlab.py Lab, removed at the end:

  * a switch with A (192.0.2.1, our daemon: MASTER of a VRRPv3 instance, advert_int 0.1,
    priority 150) and C (192.0.2.3), which captures A's adverts with kernel receive
    timestamps (bench/vrrp_failover.py's capture helper);
  * A's file: that instance plus --virtual-servers virtual servers of 10 real servers each
    (TCP_CHECK on 127.0.0.1:9000, where a listener in A answers; delay_loop 60: 200 checks
    a second, every server up: the reload is what is measured), about 100,000 lines for 1,200; two variants differ in one weight, so that
    each reload is applied, not found unchanged;
  * the daemon: `python -m director -f CONF -l -n --backend none --web off`.

Phases of --window seconds each, after the daemon is MASTER and its first checks ran:
idle; reloads (write the other variant atomically, SIGHUP, wait for `reload.applied` in the
log, again); garbage (the file replaced by --garbage-mb of random words, SIGHUP, wait for
`reload.failed`, again). lateness = (interval between consecutive adverts as C received
them) - advert_int; p50/p99/max over the phase.
"""

from __future__ import annotations

import argparse
import itertools
import os
import random
import signal
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from vrrp_failover import A_IP, C_IP, AdvertCapture, quantile  # noqa: E402

ADVERT_INT = 0.1
LISTENER = """
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", 9000)); s.listen(4096)
while True:
    s.accept()[0].close()
"""
START_TIMEOUT = 120.0


def config_text(virtual_servers: int, variant: int) -> str:
    lines = ["vrrp_instance VI_1 {", "    interface eth0", "    virtual_router_id 51",
             "    priority 150", "    advert_int 0.1", "    version 3",
             "    virtual_ipaddress {", "        192.0.2.100/24", "    }", "}"]
    for v in range(virtual_servers):
        a, b = divmod(v, 250)
        lines += [f"virtual_server 10.{a}.{b + 1}.1 80 {{", "    delay_loop 60",
                  "    lb_algo wrr", "    lb_kind NAT", "    protocol TCP"]
        for r in range(10):
            weight = 2 if (v, r, variant) == (0, 0, 1) else 1
            lines += [f"    real_server 172.16.{v % 250}.{r + 1 + 10 * (v // 250)} 8080 {{",
                      f"        weight {weight}", "        TCP_CHECK {",
                      "            connect_ip 127.0.0.1", "            connect_port 9000",
                      "            connect_timeout 3", "        }", "    }"]
        lines.append("}")
    return "\n".join(lines) + "\n"


def garbage(path: Path, megabytes: int) -> None:
    rng = random.Random(7)
    words = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz{}") for _ in range(rng.randint(2, 9)))
             for _ in range(5000)]
    with open(path, "w") as handle:
        written = 0
        while written < megabytes << 20:
            line = " ".join(rng.choices(words, k=12)) + "\n"
            handle.write(line)
            written += len(line)


def lateness(stamps: list[float]) -> list[float]:
    return [(b - a) - ADVERT_INT for a, b in itertools.pairwise(stamps)]


def row(label: str, late: list[float], extra: str) -> str:
    if len(late) < 2:
        return f"{label:<10} (too few adverts)"
    ms = [x * 1000 for x in late]
    return (f"{label:<10} {len(ms) + 1:>7} {quantile(ms, 50):>7.1f} {quantile(ms, 99):>7.1f} "
            f"{max(ms):>7.1f}  {extra}")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> int:
    from director.demo.netlab import Lab
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--window", type=float, default=20.0)
    parser.add_argument("--virtual-servers", type=int, default=1200)
    parser.add_argument("--garbage-mb", type=int, default=50)
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("needs root (network namespaces, AF_PACKET)", file=sys.stderr)
        return 2
    with Lab() as lab:
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
        switch = lab.switch()
        a = lab.host("a", [(switch, "eth0", [f"{A_IP}/24"])])
        c = lab.host("c", [(switch, "eth0", [f"{C_IP}/24"])])
        folder = Path(lab.tmp) / "ours"
        folder.mkdir()
        variants = [folder / f"variant{n}.conf" for n in (0, 1)]
        for number, path in enumerate(variants):
            path.write_text(config_text(args.virtual_servers, number))
        lines = variants[0].read_text().count("\n")
        junk = folder / "garbage.conf"
        garbage(junk, args.garbage_mb)
        conf = folder / "keepalived.conf"
        conf.write_bytes(variants[0].read_bytes())
        listener = a.popen([sys.executable, "-c", LISTENER])
        capture = AdvertCapture(lab, c, A_IP, 3 * args.window + START_TIMEOUT + 60)
        proc = a.popen([sys.executable, "-m", "director", "-f", conf, "-l", "-n",
                        "--backend", "none", "--web", "off", "--state-dir", folder / "state",
                        "-p", folder / "pid"], log_path=folder / "log",
                       env={"PYTHONPATH": str(ROOT)})

        def log() -> str:
            return lab.log_of(proc)

        deadline = time.monotonic() + START_TIMEOUT
        while "check.started" not in log() or "to=MASTER" not in log():
            if proc.poll() is not None or listener.poll() is not None or \
                    time.monotonic() > deadline:
                raise RuntimeError(f"the daemon did not start:\n{log()[-3000:]}")
            time.sleep(0.1)
        time.sleep(3)                                   # the first round of checks
        print(f"# {lines:,} lines, {args.virtual_servers * 10:,} real servers; VRRPv3 "
              f"advert_int {ADVERT_INT} s; window {args.window:g} s per phase", flush=True)
        print(f"{'phase':<10} {'adverts':>7} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7}",
              flush=True)

        def phase(label: str, step) -> None:
            capture.drain()
            done, took = 0, []
            end = time.monotonic() + args.window
            lines_ = []
            while time.monotonic() < end:
                if step is None:
                    lines_ += capture.collect(min(1.0, end - time.monotonic()))
                    continue
                started = time.monotonic()
                lines_ += step(done)
                took.append(time.monotonic() - started)
                done += 1
                lines_ += capture.collect(0)
            lines_ += capture.collect(0.05)
            stamps = [t for t, prio in AdvertCapture.parse(lines_) if prio > 0]
            extra = "" if step is None else \
                f"{done} reloads, {sum(took) / max(1, done):.2f} s each"
            print(row(label, lateness(stamps), f"{extra}; RSS {rss_mb(proc.pid):.0f} MB"),
                  flush=True)

        def wait_count(marker: str, count: int) -> list:
            """The adverts captured while waiting for the count-th marker in the log."""
            deadline = time.monotonic() + 120
            got = []
            while log().count(marker) < count:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"no {marker} #{count}:\n{log()[-3000:]}")
                got += capture.collect(0.01)
            return got

        def reload_big(number: int) -> None:
            temporary = folder / "next.conf"
            temporary.write_bytes(variants[(number + 1) % 2].read_bytes())
            temporary.rename(conf)
            proc.send_signal(signal.SIGHUP)
            return wait_count("reload.applied", number + 1)

        def reload_garbage(number: int) -> None:
            if number == 0:
                temporary = folder / "next.conf"
                temporary.write_bytes(junk.read_bytes())
                temporary.rename(conf)
            proc.send_signal(signal.SIGHUP)
            return wait_count("reload.failed", number + 1)

        phase("idle", None)
        phase("reload", reload_big)
        phase("garbage", reload_garbage)
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
