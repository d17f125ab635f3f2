"""The VRRP receive path under mutated keepalived adverts (tests/fuzz/vrrp.py): every input
ends accepted or as a drop with a known reason, and each reason is reached.

A fixed seed in CI (the same inputs every run), plus a run from a fresh seed that says its seed
when it fails: FUZZ_SEED=<seed> reruns it. bench/fuzz_vrrp.py runs a million, coverage-guided.
"""

from __future__ import annotations

import os
import random

from tests.fuzz import vrrp

FIXED_SEED = 20261130


def test_fixed_seed_reaches_every_reason():
    counts = vrrp.run(FIXED_SEED, 100_000)
    # "ignored": a mutated AH seed whose next header is no longer VRRP (IPsec traffic)
    assert set(counts) - {"ignored"} == vrrp.REASONS | {"accepted"}, counts
    assert sum(counts.values()) == 100_000


def test_random_seed():
    seed = int(os.environ.get("FUZZ_SEED") or random.SystemRandom().randrange(2 ** 32))
    print(f"FUZZ_SEED={seed}")
    counts = vrrp.run(seed, 30_000)     # a failure names the seed and the input as hex
    assert sum(counts.values()) == 30_000


def test_seeds_are_accepted_as_captured():
    for context in vrrp.contexts():
        outcome = vrrp.feed(context, context.wire)
        assert not outcome.notes and outcome.advert.vrid in context.expectations, context.name
