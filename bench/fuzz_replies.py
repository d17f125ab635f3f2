"""Fuzz the checkers' reply parsers, coverage-guided: replies/s, outcomes, zero exceptions.

    python bench/fuzz_replies.py [--runs 1000000] [--seed N]

The targets are tests/fuzz/replies.py's (HTTP: http.judge over genhash.parse_response with
four url blocks; SMTP: smtp.reply_code and its error text; DNS: dns.reply_rcode; UDP:
udp.reply_problem). An input is one byte choosing the parser and its configuration, then the
reply; atheris (libFuzzer) mutates the seeds and keeps what reaches new code. An exception stops
the run with the input as hex; the exit status is then 1.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


# What None means from each parser, and what anything else means.
OUTCOMES = {"http": ("fail", "pass"), "smtp": ("code", "no code"), "dns": ("answer", "skipped"),
            "udp": ("fail", "pass")}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    import atheris

    with atheris.instrument_imports(include=["director.check", "director.genhash"]):
        from tests.fuzz import replies

    targets = [(f"http url {i}", lambda data, url=url: replies.http_reply(url, data))
               for i, url in enumerate(replies.URLS)]
    targets.append(("smtp", replies.smtp_line))
    targets.append(("dns", replies.dns_reply))
    targets += [(f"udp pattern {i}", lambda data, p=p: replies.udp_reply(data, p, 0, 255))
                for i, p in enumerate(replies.UDP_PATTERNS)]
    counts: dict[str, int] = {}
    done, started = 0, time.perf_counter()

    def one(data: bytes) -> None:
        nonlocal done
        name, target = targets[data[0] % len(targets)] if data else targets[0]
        try:
            outcome = target(data[1:])
        except BaseException as exc:
            print(f"\nFAILED ({name}) on input {data[1:4096].hex()} ({len(data) - 1} bytes): "
                  f"{exc!r}", file=sys.stderr, flush=True)
            raise
        kind = name.split()[0]
        key = f"{kind} {OUTCOMES[kind][outcome is None]}"
        counts[key] = counts.get(key, 0) + 1
        done += 1
        if done >= args.runs:
            elapsed = time.perf_counter() - started
            print(f"{done:,} replies in {elapsed:.1f} s = {done / elapsed:,.0f} replies/s "
                  f"(atheris, seed {args.seed}); exceptions 0")
            for outcome, count in sorted(counts.items()):
                print(f"  {outcome:12} {count:>9,}")
            sys.stdout.flush()
            os._exit(0)

    seeds = [(i, s) for i in range(4) for s in replies.HTTP_SEEDS] + \
        [(4, s) for s in replies.SMTP_SEEDS] + [(5, s) for s in replies.DNS_SEEDS] + \
        [(6 + i % 3, s) for i, s in enumerate(replies.UDP_SEEDS)]
    with tempfile.TemporaryDirectory(prefix="fuzz-replies-") as corpus:
        for n, (index, seed) in enumerate(seeds):
            Path(corpus, f"seed-{n}").write_bytes(bytes([index]) + seed)
        atheris.Setup([sys.argv[0], f"-seed={args.seed}", "-max_len=65536",
                       "-print_final_stats=0", corpus], one)
        atheris.Fuzz()
    return 1


if __name__ == "__main__":
    sys.exit(main())
