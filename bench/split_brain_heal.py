"""A split brain heals: ours against Debian's keepalived, side by side in one run.

    sudo .venv/bin/python bench/split_brain_heal.py [--trials N] [--seed S]

A benchmark, not a test: it prints a table and ratios and asserts nothing. Needs root
(network namespaces) and keepalived; everything runs in a director/demo/netlab.py Lab
(namespaces with unique names, removed at the end, also on errors, Ctrl-C and SIGTERM).

For each pair (both routers ours; both keepalived as installed, defaults; both keepalived
with `higher_prio_send_advert`), one lab: a bridge with A (priority 150), B (priority 100)
and a client C, VRRPv2, advert_int 1, VIP 192.0.2.100/24. Per trial:

  1. an nftables bridge table in the switch's namespace drops every frame between A's and
     B's ports (C still reaches both); B becomes MASTER and its gratuitous ARPs put C's
     neighbour entry for the VIP on B's MAC (the bench waits for that);
  2. after a seeded random pause of 0..1 advert interval (the same sequence for every pair,
     so the heal lands anywhere in the advert cycle), the table is deleted: the heal;
  3. from the heal, polled with `ip` every few ms: "one master" is the VIP on A and not on
     B; "client" is C's `ip neigh` entry for the VIP showing A's MAC (C sends nothing);
     the client is given 3 s, after which the trial counts as missed;
  4. the pair settles for garp_master_delay + 1 s (one MASTER throughout, checked).

Statistics: median, min, max of each figure; the client median is over the trials where the
client followed. Ratios are of the medians, ours / keepalived's defaults.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from director.demo.netlab import Lab, _run, keepalived_binary, wait_for  # noqa: E402

VIP = "192.0.2.100"
CLIENT_WINDOW = 3.0     # seconds after the heal the client is watched
SETTLE = 6.0            # garp_master_delay (5 s) + 1: no delayed set lands in the next trial
FAKE_MAC = "02:00:00:00:00:01"
PAIRS = [("ours", ""), ("keepalived", ""), ("keepalived", "    higher_prio_send_advert\n")]


def config(priority: int, extra: str) -> str:
    return (f"vrrp_instance VI_1 {{\n    interface eth0\n    virtual_router_id 51\n"
            f"    priority {priority}\n    advert_int 1\n"
            "    authentication {\n        auth_type PASS\n        auth_pass secret12\n    }\n"
            f"{extra}    virtual_ipaddress {{\n        {VIP}/24\n    }}\n}}\n")


def start(lab, host, kind: str, text: str):
    conf = lab.tmp / f"{host.name}.conf"
    conf.write_text(text)
    if kind == "ours":
        return host.popen([sys.executable, "-m", "director", "-f", conf, "-P", "-l", "-n",
                           "--web", "off", "--state-dir", lab.tmp / f"{host.name}-state",
                           "-p", lab.tmp / f"{host.name}.pid"],
                          env={"PYTHONPATH": str(ROOT)})
    stem = lab.tmp / host.name
    return host.popen([keepalived_binary(), "--vrrp", "--dont-fork", "--log-console",
                       "--no-syslog", "--dont-respawn", "--use-file", conf,
                       "--pid", f"{stem}.pid", "--vrrp_pid", f"{stem}-vrrp.pid",
                       "--checkers_pid", f"{stem}-checkers.pid",
                       "--bfd_pid", f"{stem}-bfd.pid"])


def nft(switch, *args, stdin=None):
    _run(["ip", "netns", "exec", switch.ns, "nft", *args], input=stdin)


def run_pair(kind: str, extra: str, pauses: list[float]) -> list[dict]:
    trials = []
    with Lab() as lab:
        switch = lab.switch()
        a, b, c = (lab.host(name, [(switch, "eth0", [f"192.0.2.{n}/24"])])
                   for name, n in (("a", 1), ("b", 2), ("c", 50)))
        procs = [start(lab, a, kind, config(150, extra))]
        wait_for(lambda: a.has_address("eth0", VIP), 10, message=lambda: lab.log_of(procs[0]))
        procs.append(start(lab, b, kind, config(100, extra)))
        if not c.ping(VIP):
            raise RuntimeError("the client cannot reach the VIP")
        mac_a, mac_b = a.mac("eth0"), b.mac("eth0")
        # A's delayed set (garp_master_delay) has gone once the entry is back on A
        c.run(["ip", "neigh", "replace", VIP, "lladdr", FAKE_MAC, "dev", "eth0", "nud", "stale"])
        wait_for(lambda: c.neighbour(VIP) == mac_a, 10)
        one, other = switch.port(a, "eth0"), switch.port(b, "eth0")
        cut = ("table bridge partition {\n  chain forward {\n"
               "    type filter hook forward priority 0; policy accept;\n"
               f'    iifname "{one}" oifname "{other}" drop\n'
               f'    iifname "{other}" oifname "{one}" drop\n  }}\n}}\n')
        for pause in pauses:
            nft(switch, "-f", "-", stdin=cut)
            wait_for(lambda: b.has_address("eth0", VIP), 8)
            wait_for(lambda: c.neighbour(VIP) == mac_b, 3)
            deadline = time.monotonic() + pause          # the heal's phase in the advert cycle
            while time.monotonic() < deadline:
                time.sleep(0.005)
            nft(switch, "delete", "table", "bridge", "partition")
            healed = time.monotonic()
            seen: dict[str, float] = {}
            for _ in range(10_000):                      # bounded; ends by the window
                if "one_master" not in seen and a.has_address("eth0", VIP) \
                        and not b.has_address("eth0", VIP):
                    seen["one_master"] = time.monotonic() - healed
                if "client" not in seen and c.neighbour(VIP) == mac_a:
                    seen["client"] = time.monotonic() - healed
                if len(seen) == 2 or time.monotonic() - healed > CLIENT_WINDOW:
                    break
                time.sleep(0.003)
            end = time.monotonic() + SETTLE
            while time.monotonic() < end:                # one MASTER throughout
                if b.has_address("eth0", VIP):
                    seen["two_masters_after"] = True
                time.sleep(0.1)
            if c.neighbour(VIP) != mac_a:                # a missed trial: put C back on A
                c.run(["ip", "neigh", "replace", VIP, "lladdr", mac_a, "dev", "eth0",
                       "nud", "stale"])
            trials.append(seen)
            print(f"  {kind}{' +hpsa' if extra else ''}: pause {pause:.2f} s -> {seen}",
                  flush=True)
    return trials


def summary(values: list[float]) -> str:
    if not values:
        return "-"
    return (f"{statistics.median(values) * 1000:.0f} ms "
            f"({min(values) * 1000:.0f}..{max(values) * 1000:.0f})")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--seed", type=int, default=13)
    args = parser.parse_args(argv)
    if os.geteuid() != 0 or keepalived_binary() is None:
        print("needs root and keepalived", file=sys.stderr)
        return 2

    def on_term(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")
    signal.signal(signal.SIGTERM, on_term)

    rng = random.Random(args.seed)
    pauses = [rng.uniform(0.0, 1.0) for _ in range(args.trials)]
    results = {}
    for kind, extra in PAIRS:
        name = kind + (" + higher_prio_send_advert" if extra else "")
        results[name] = run_pair(kind, extra, pauses)

    print(f"\n{args.trials} heals per pair, VRRPv2 advert_int 1, A 150 / B 100, seed {args.seed}")
    print(f"{'pair':<40} {'heal -> one MASTER':<24} {'heal -> client on A':<24} "
          f"{'client <= 1 s':<14} {'two masters after'}")
    medians = {}
    for name, trials in results.items():
        masters = [t["one_master"] for t in trials if "one_master" in t]
        client = [t["client"] for t in trials if "client" in t]
        within = sum(1 for v in client if v <= 1.0)
        later = sum(1 for t in trials if t.get("two_masters_after"))
        medians[name] = (statistics.median(masters) if masters else None,
                         statistics.median(client) if client else None)
        print(f"{name:<40} {summary(masters):<24} {summary(client):<24} "
              f"{within}/{len(trials):<12} {later}")
    ours, theirs = medians["ours"], medians["keepalived"]
    for label, index in (("one MASTER", 0), ("client on A", 1)):
        if ours[index] and theirs[index]:
            print(f"ratio ours/keepalived, heal -> {label}: {ours[index] / theirs[index]:.2f}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt as exc:
        print(f"interrupted: {exc}", file=sys.stderr)
        sys.exit(130)
