"""Active-active directors over BGP (issue 15): withdrawal latency beside ExaBGP's own
healthcheck program, and flows kept by Maglev beside a plain hash.

    sudo .venv/bin/python bench/bgp_ecmp.py [--trials N] [--servers S]

A benchmark, not a test: it prints a table and ratios and asserts nothing. Needs root,
BIRD 2, nftables and ExaBGP; the lab is the acceptance test's (tests/functional/
ecmp_lab.py: a router running BIRD 2 with ECMP, three director daemons, three (or S) DR
real servers, a client), in namespaces with unique names, removed at the end, also on
errors. About 2.5 minutes with the defaults, 4 with --servers 5.

1. Withdrawal latency, N trials in one lab with a fourth speaker beside the directors: ExaBGP
   driven by `python -m exabgp healthcheck` (--withdraw-on-down, --no-ip-setup), whose check
   command is a TCP connect to rs1 with director's TCP_CHECK settings (interval 1 s, a
   failed attempt tried again 0.5 s later, down at the second failure: --interval 1
   --fast-interval 0.5 --fall 2, connect timeout 1 s), announcing 192.0.2.20/32. Per trial,
   an nft output rule drops the checks' packets in d1 and in the healthcheck's namespace at
   the same moment; the router's kernel table is polled (`ip -j route`, every ~10 ms for
   both prefixes) until both routes are gone. "last failed check -> gone": from director's
   `check.state ... state=down` log line (the one that lost the quorum, stamped to the
   millisecond) or from the end of the healthcheck's failed check command (it notes the time)
   to the route gone at the router. "block -> gone" adds the detection (the same checks on
   both sides). Then the rule goes and both routes come back before the next trial.
2. Flows kept when a director leaves and a real server is removed at the same moment:
   300 long-lived flows (a line every 100 ms each), then TERM of d3 and a real server's listener
   killed together; after it has left both remaining directors' tables and each flow has had
   a second more, a flow is kept if it never saw a reset, a close or a 1 s stall. Maglev
   (lb_algo mh, mh-port) against a plain hash (lb_algo sh, sh-port: jhash mod N over the
   live servers), one lab per real server, each with other source ports and that server
   removed: which one goes matters to the hash (nft's `jhash ... mod N` scales the hash,
   (h * N) >> 32, rather than taking a remainder: of 3 servers, losing the middle one moves
   none of the others' flows, losing an end one a quarter), not to Maglev. The removed
   server's own flows are lost either way.

Ratios: medians, ours / anchor (the healthcheck's latency; sh's flows kept).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.functional.dr_lab import forwards_to  # noqa: E402
from tests.functional.ecmp_lab import (HC, HC_PREFIX, RS_MAX, STALL, EcmpLab,  # noqa: E402
                                       block_checks, last_down, missing_tools, servers,
                                       unblock_checks)
from tests.functional.lab import Lab, netns_unavailable, wait_for  # noqa: E402

FLOWS = 300
ECHOES_AFTER = 10           # each flow's echoes after the tables changed: about a second
GONE_TIMEOUT = 20.0         # detection (about 3.5 s at worst) and withdrawal
BACK_TIMEOUT = 20.0


def latency_trials(trials: int) -> list[dict]:
    rows = []
    with Lab() as lab:
        ecmp = EcmpLab(lab, "mh", healthcheck=True)
        d1 = ecmp.directors["d1"]
        everyone = ecmp.fronts()
        for trial in range(trials):
            seen: dict[str, float] = {}

            def both_gone() -> bool:
                if "director" not in seen and d1.front not in ecmp.nexthops():
                    seen["director"] = time.time()
                if "exabgp" not in seen and not ecmp.nexthops(HC_PREFIX):
                    seen["exabgp"] = time.time()
                return len(seen) == 2

            blocked = time.time()
            d1.block_checks()
            block_checks(ecmp.hc["host"])
            wait_for(both_gone, GONE_TIMEOUT, interval=0.002,
                     message=lambda: f"seen {seen}\n{ecmp.logs()}")
            down = last_down(d1.log_lines(lab), blocked, seen["director"])
            failures = [float(word) for word in ecmp.hc["failures"].read_text().split()]
            failed = max((stamp for stamp in failures if blocked <= stamp <= seen["exabgp"]),
                         default=None)
            rows.append({"director": (seen["director"] - down, seen["director"] - blocked),
                         "exabgp": (seen["exabgp"] - failed, seen["exabgp"] - blocked)})
            print(f"trial {trial + 1}: director {rows[-1]['director'][0] * 1000:.0f} ms "
                  f"(block -> gone {rows[-1]['director'][1]:.2f} s); ExaBGP healthcheck "
                  f"{rows[-1]['exabgp'][0] * 1000:.0f} ms "
                  f"(block -> gone {rows[-1]['exabgp'][1]:.2f} s)", flush=True)
            d1.unblock_checks()
            unblock_checks(ecmp.hc["host"])
            ecmp.wait_nexthops(everyone, BACK_TIMEOUT)
            ecmp.wait_nexthops({HC[1]}, BACK_TIMEOUT, prefix=HC_PREFIX)
    return rows


def flow_trial(algo: str, ports: range, reals: dict[str, str], removed: str) -> dict:
    with Lab() as lab:
        ecmp = EcmpLab(lab, algo, reals=reals)
        flows = ecmp.flows()
        opened = flows.open(ports)
        if any(name not in reals for name in opened.values()):
            raise RuntimeError(f"flows did not open: {opened}")
        wait_for(lambda: all(r["echoes"] >= 3 for r in flows.report().values()), 15,
                 interval=0.2)
        ecmp.term("d3")
        ecmp.kill_listener(removed)
        for name in ("d1", "d2"):
            host = ecmp.directors[name].host
            wait_for(lambda host=host: reals[removed] not in forwards_to(host, reals.values()),
                     15, interval=0.05, message=ecmp.logs)
        at = {port: r["echoes"] for port, r in flows.report().items()}
        wait_for(lambda: all(r["ended"] or r["echoes"] >= at[port] + ECHOES_AFTER
                             for port, r in flows.report().items()), 10 + STALL, interval=0.2)
        report = flows.report()
        flows.close()
    others = [r for r in report.values() if r["server"] != removed]
    return {"kept": sum(r["ended"] is None for r in report.values()),
            "others": len(others),
            "others_kept": sum(r["ended"] is None for r in others)}


def median_range(values: list[float], scale: float = 1000.0, unit: str = "ms") -> str:
    digits = 0 if scale >= 1000 else 2
    return (f"{statistics.median(values) * scale:.{digits}f} {unit} "
            f"({min(values) * scale:.{digits}f}..{max(values) * scale:.{digits}f})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10, help="withdrawal trials")
    parser.add_argument("--servers", type=int, default=3, choices=range(2, RS_MAX + 1),
                        metavar=f"2..{RS_MAX}",
                        help="real servers in the flows' labs (one lab each per hash)")
    options = parser.parse_args()
    problem = netns_unavailable() or missing_tools()
    if problem:
        print(f"cannot run: {problem}", file=sys.stderr)
        return 2
    started = time.monotonic()
    rows = latency_trials(options.trials) if options.trials else []
    reals = servers(options.servers)
    kept: dict[str, list[dict]] = {"mh": [], "sh": []}
    for trial, removed in enumerate(reals):
        ports = range(30000 + trial * FLOWS, 30000 + (trial + 1) * FLOWS)
        for algo in kept:
            kept[algo].append(flow_trial(algo, ports, reals, removed))
            found = kept[algo][-1]
            print(f"flows, {algo}, ports {ports.start}-{ports.stop - 1}, {removed} removed: "
                  f"{found['kept']} of {FLOWS} kept ({found['others_kept']} of the "
                  f"{found['others']} not on {removed})", flush=True)

    if rows:
        print_latency(rows)
    print(f"\nflows kept when d3 leaves (TERM) and a real server is removed at once, "
          f"{FLOWS} flows, {len(reals)} real servers, each removed in one lab")
    share = {algo: sum(t["others_kept"] for t in runs) / sum(t["others"] for t in runs)
             for algo, runs in kept.items()}
    for algo, label in (("mh", "Maglev (mh, mh-port)"), ("sh", "jhash mod N (sh, sh-port)")):
        found = kept[algo]
        print(f"{label:28} kept {[t['kept'] for t in found]} of {FLOWS}; of the flows "
              f"not on the removed server: {sum(t['others_kept'] for t in found)} of "
              f"{sum(t['others'] for t in found)} ({share[algo]:.1%})")
    # the removed server's own flows are lost under either: the shares of the others' compare
    print(f"ratio Maglev/mod N, share of the other servers' flows kept: "
          f"{share['mh'] / share['sh']:.2f}" if share["sh"] else
          "ratio Maglev/mod N: mod N kept none of the other servers' flows")
    print(f"\n(run took {time.monotonic() - started:.0f} s)")
    return 0


def print_latency(rows: list[dict]) -> None:
    print(f"\nwithdrawal latency, {len(rows)} trials, median (min..max)")
    print(f"{'':48}{'director':>22}{'ExaBGP healthcheck':>26}")
    for index, label, show in ((0, "last failed check -> route gone at the router",
                                median_range),
                               (1, "checks blocked -> route gone (detection too)",
                                lambda v: median_range(v, 1.0, "s"))):
        ours = [row["director"][index] for row in rows]
        theirs = [row["exabgp"][index] for row in rows]
        print(f"{label:48}{show(ours):>22}{show(theirs):>26}")
    ours = statistics.median(row["director"][0] for row in rows)
    theirs = statistics.median(row["exabgp"][0] for row in rows)
    print(f"ratio director/healthcheck, last failed check -> gone: {ours / theirs:.2f}")
    ours = statistics.median(row["director"][1] for row in rows)
    theirs = statistics.median(row["exabgp"][1] for row in rows)
    print(f"ratio director/healthcheck, blocked -> gone: {ours / theirs:.2f}")


if __name__ == "__main__":
    sys.exit(main())
