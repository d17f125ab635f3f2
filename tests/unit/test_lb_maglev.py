"""The Maglev table (director/lb/maglev.py): the same for the same pool in any order and in
any process, balanced to the weights, and stable: removing a destination keeps nearly all
the others' slots, adding one moves about 1/(N+1) of them."""

from __future__ import annotations

import hashlib
import os
import random
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from director.lb.maglev import TABLE_SIZE, offset_skip, table, turns

REPO = Path(__file__).resolve().parents[2]
TRIALS = 200            # random pools per property


def random_pools(seed: int):
    """(keys) of N = 3..20 distinct destinations, TRIALS times, reproducibly."""
    rng = random.Random(seed)
    for _ in range(TRIALS):
        keys: set[str] = set()
        size = rng.randint(3, 20)
        while len(keys) < size:
            keys.add(f"10.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
                     f"|{rng.choice((80, 443, 8080))}")
        yield sorted(keys)


def test_table_size_is_the_prime_ipvs_mh_uses():
    assert TABLE_SIZE == 4093
    assert all(TABLE_SIZE % d for d in range(2, int(TABLE_SIZE ** 0.5) + 1))


def test_same_pool_in_any_order_gives_the_same_table():
    pool = [(f"10.20.40.{i}|80", 1 + i % 3) for i in range(10, 17)]
    first = table(pool)
    rng = random.Random(1)
    for _ in range(20):
        shuffled = pool[:]
        rng.shuffle(shuffled)
        assert table(shuffled) == first
    assert len(first) == TABLE_SIZE and set(first) == {key for key, _ in pool}


def test_the_table_does_not_depend_on_the_process():
    """Two directors are two processes: Python's hash() would differ (PYTHONHASHSEED), the
    keyed BLAKE2b does not. The digest pins the table: a change to it moves every flow."""
    code = ("from director.lb.maglev import table; import hashlib; "
            "print(hashlib.sha256('\\n'.join(table([('10.0.0.1|80', 1), ('10.0.0.2|80', 2), "
            "('10.0.0.3|80', 1)])).encode()).hexdigest())")
    here = hashlib.sha256("\n".join(table([("10.0.0.3|80", 1), ("10.0.0.1|80", 1),
                                          ("10.0.0.2|80", 2)])).encode()).hexdigest()
    for seed in ("1", "2"):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             check=True, cwd=REPO, timeout=60,
                             env={**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(REPO)})
        assert out.stdout.strip() == here
    assert offset_skip("10.0.0.1|80") == offset_skip("10.0.0.1|80")
    assert 1 <= offset_skip("10.0.0.1|80")[1] < TABLE_SIZE


def test_equal_weights_share_the_slots_within_one():
    for keys in random_pools(2):
        counts = Counter(table([(key, 1) for key in keys]))
        assert max(counts.values()) - min(counts.values()) <= 1, counts


@pytest.mark.parametrize("weights", [(1, 2, 3), (5, 5, 10), (1, 100), (3, 7, 11, 13),
                                     (65535, 1, 30000)])
def test_weighted_shares_are_within_one_round_of_the_weights(weights):
    """Each round a destination claims its turns (weight / gcd, shifted to 6 bits, as IPVS's
    mh): its count can be off its exact share by at most one round's turns."""
    pool = [(f"10.0.0.{i}|80", weight) for i, weight in enumerate(weights)]
    counts = Counter(table(pool))
    per_round = turns(list(weights))
    total = sum(per_round)
    for (key, _), share in zip(pool, per_round, strict=True):
        exact = TABLE_SIZE * share / total
        assert abs(counts[key] - exact) <= max(per_round) + 1, (key, counts[key], exact)


def test_turns_are_ipvs_mh_turns():
    assert turns([1, 2, 3]) == [1, 2, 3]
    assert turns([10, 20, 0]) == [1, 2, 0]
    assert turns([1000, 1]) == [(1000 >> 4), 1]          # 1000 has 10 bits: shifted by 4
    assert turns([0, 0]) == [0, 0]


def test_weight_zero_takes_no_slot_and_no_live_destination_is_an_empty_table():
    assert "b" not in table([("a", 1), ("b", 0), ("c", 1)])
    assert table([("a", 0)]) == ()
    assert table([]) == ()
    assert set(table([("only", 7)])) == {"only"}


def test_duplicate_keys_are_refused():
    with pytest.raises(ValueError):
        table([("a", 1), ("a", 2)])


def test_removing_one_keeps_nearly_all_slots_of_the_others():
    """The paper measures a few percent of the survivors' entries moved; over 200 random
    pools of 3 to 20 destinations the worst measured was 97.7 % kept: 95 % leaves margin
    and still fails a plain hash mod N (which keeps about 1/N)."""
    worst = 1.0
    for keys in random_pools(3):
        full = table([(key, 1) for key in keys])
        gone = keys[len(keys) // 2]
        fewer = table([(key, 1) for key in keys if key != gone])
        survivors = [slot for slot in range(TABLE_SIZE) if full[slot] != gone]
        kept = sum(full[slot] == fewer[slot] for slot in survivors) / len(survivors)
        worst = min(worst, kept)
        assert gone not in fewer
    assert worst >= 0.95, worst


def test_adding_one_moves_about_one_in_n_plus_one():
    """The newcomer takes its share, M/(N+1) within a slot; the others' reshuffle adds some
    (measured at most 1.40 times 1/(N+1) over 200 pools): bounded by 1.6 times."""
    for keys in random_pools(4):
        before = table([(key, 1) for key in keys[:-1]])
        after = table([(key, 1) for key in keys])
        share = 1 / len(keys)
        moved = sum(a != b for a, b in zip(before, after, strict=True)) / TABLE_SIZE
        assert abs(Counter(after)[keys[-1]] - TABLE_SIZE * share) <= 1
        assert share <= moved + 1 / TABLE_SIZE and moved <= 1.6 * share, (len(keys), moved)
