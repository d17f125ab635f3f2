"""Fuzz the VRRP receive path with a million packets: packets/s, the drop reasons reached with
their counts, and zero exceptions.

    python bench/fuzz_vrrp.py [--runs 1000000] [--engine atheris|mutate] [--seed N]

The target is tests/fuzz/vrrp.py's (transport.split_ipv4 + packet.check_received against an
instance that accepts the seed, with the receive checks' invariants asserted), seeded with
keepalived 2.2.7's captured adverts (tests/golden/vrrp).

- ``atheris`` (the default when it is installed): coverage-guided (libFuzzer) over the
  instrumented director.vrrp modules. An input is one byte choosing the captured advert (its
  family, addresses, expectations), one byte of flags (put the checksum right; an IPv6 hop
  limit), then the packet; without the checksum flag almost nothing would get past it.
- ``mutate``: tests/fuzz's structure-aware mutator, the CI fuzzer, at this scale.

The anchor, measured in the same run: the captured adverts themselves fed through the same
target, the cost of an accepted packet. An exception or a broken invariant stops the run loudly
with the input as hex (and atheris's crash file); the exit status is then 1.
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

HOP_LIMITS = (None, 255, 254, 1, 0, None, None, None)


def anchor(vrrp, seconds: float = 1.0) -> float:
    """Captured adverts per second through the same target, all accepted."""
    contexts = vrrp.contexts()
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        for context in contexts:
            vrrp.feed(context, context.wire)
        done += len(contexts)
    return done / (time.perf_counter() - started)


def report(engine: str, counts: dict[str, int], elapsed: float, accepted_rate: float) -> None:
    total = sum(counts.values())
    rate = total / elapsed
    print(f"engine {engine}: {total:,} packets in {elapsed:.1f} s = {rate:,.0f} packets/s "
          f"(anchor, captured adverts accepted: {accepted_rate:,.0f}/s; ratio "
          f"{rate / accepted_rate:.2f})")
    reasons = {k: v for k, v in counts.items() if k not in ("accepted", "ignored")}
    print(f"accepted {counts.get('accepted', 0):,}; ignored (AH around another protocol) "
          f"{counts.get('ignored', 0):,}; dropped {sum(reasons.values()):,} "
          f"for {len(reasons)} distinct reasons:")
    for reason, count in sorted(reasons.items(), key=lambda item: -item[1]):
        print(f"  {reason:20} {count:>9,}")
    print("exceptions 0")


def run_mutate(vrrp, runs: int, seed: int, accepted_rate: float) -> int:
    started = time.perf_counter()
    try:
        counts = vrrp.run(seed, runs)
    except AssertionError as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        return 1
    report(f"mutate (seed {seed})", counts, time.perf_counter() - started, accepted_rate)
    return 0


def run_atheris(runs: int, seed: int) -> int:
    import atheris
    from importlib.metadata import version

    with atheris.instrument_imports(include=["director.vrrp"]):
        from director.vrrp import packet
        from tests.fuzz import vrrp

    accepted_rate = anchor(vrrp)
    contexts = vrrp.contexts()
    counts: dict[str, int] = {}
    started = time.perf_counter()

    def one(data: bytes) -> None:
        context = contexts[data[0] % len(contexts)] if data else contexts[0]
        flags = data[1] if len(data) > 1 else 0
        wire = data[2:]
        if flags & 1:
            wire = vrrp.fix_checksum(context, wire)
        hop = HOP_LIMITS[(flags >> 1) & 7] if context.family == 6 else None
        try:
            outcome = vrrp.feed(context, wire, hop)
        except BaseException as exc:
            print(f"\nFAILED on input {data.hex()} (context {context.name}, wire "
                  f"{wire.hex()}, hop limit {hop}): {exc!r}", file=sys.stderr, flush=True)
            raise
        key = outcome.reason if isinstance(outcome, packet.Dropped) else \
            "ignored" if outcome is None else "accepted"
        counts[key] = counts.get(key, 0) + 1
        if len(counts) and sum(counts.values()) >= runs:
            report(f"atheris {version('atheris')} (libFuzzer, seed {seed})", counts,
                   time.perf_counter() - started, accepted_rate)
            sys.stdout.flush()
            os._exit(0)

    with tempfile.TemporaryDirectory(prefix="fuzz-vrrp-") as corpus:
        for index, context in enumerate(contexts):
            Path(corpus, f"seed-{index}").write_bytes(bytes([index, 1]) + context.wire)
        atheris.Setup([sys.argv[0], f"-seed={seed}", "-max_len=1500", "-print_final_stats=0",
                       corpus], one)
        atheris.Fuzz()
    return 1    # not reached: the target exits after ``runs`` inputs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--engine", choices=("atheris", "mutate"), default=None)
    args = parser.parse_args()
    engine = args.engine
    if engine is None:
        try:
            import atheris  # noqa: F401
            engine = "atheris"
        except ImportError:
            engine = "mutate"
    if engine == "atheris":
        return run_atheris(args.runs, args.seed)
    from tests.fuzz import vrrp
    return run_mutate(vrrp, args.runs, args.seed, anchor(vrrp))


if __name__ == "__main__":
    sys.exit(main())
