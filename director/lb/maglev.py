"""The Maglev lookup table, pure: destinations and weights in, a table of TABLE_SIZE slots
out, each naming the destination a flow hashed to that slot goes to.

Eisenbud et al., "Maglev: A Fast and Reliable Software Network Load Balancer" (NSDI 2016),
section 3.4: each destination has a preference list of the slots, a permutation given by an
``offset`` and a ``skip`` (TABLE_SIZE prime, so every skip walks all the slots); the
destinations take turns claiming their next preferred free slot until the table is full.
Balance: every destination gets its share within a slot or so per turn; disruption: when a
destination leaves, the slots of the others mostly stay theirs, since each still claims
the same preferences in the same order (the paper measures a few percent moved).

Weights as IPVS's mh scheduler does them (net/netfilter/ipvs/ip_vs_mh.c): a destination
claims ``turns`` slots per round, its weight divided by the gcd of the live weights and
shifted right until the largest fits in TURN_BITS bits; weight 0 claims none.

Two directors given the same pool must build the same table, whatever the order the
destinations come in and whichever process builds it: the destinations are sorted by key
and the offset and skip come from a keyed BLAKE2b of the key (Python's hash() is salted
per process). This table is ours, not IPVS's (which hashes with SipHash and depends on
the order its destinations were added): directors running nftables agree with each other,
not with directors running IPVS.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable

# A prime: IPVS's mh default (CONFIG_IP_VS_MH_TAB_INDEX 12 -> 4093), about 100 times the
# number of destinations a pool usually has, which the paper asks for (M >> N) so that
# each destination's share is within about 1 % of its weight's.
TABLE_SIZE = 4093
TURN_BITS = 6                   # IPVS: IP_VS_MH_TAB_BITS = CONFIG_IP_VS_MH_TAB_INDEX / 2
HASH_KEY = b"director maglev v1"       # fixed: every director hashes alike; changing it
                                       # moves every flow once


def offset_skip(key: str, size: int = TABLE_SIZE) -> tuple[int, int]:
    """A destination's preference list, as its first slot and its step (1..size-1)."""
    digest = hashlib.blake2b(key.encode(), digest_size=16, key=HASH_KEY).digest()
    return (int.from_bytes(digest[:8], "big") % size,
            int.from_bytes(digest[8:], "big") % (size - 1) + 1)


def turns(weights: list[int]) -> list[int]:
    """Slots each destination claims per round, as IPVS's mh: weight / gcd, shifted right so
    the largest has at most TURN_BITS bits (no destination claims hundreds in a row), at
    least 1 for a weight above 0, 0 for weight 0."""
    live = [weight for weight in weights if weight > 0]
    if not live:
        return [0] * len(weights)
    divisor = math.gcd(*live)
    shift = max(0, (max(live) // divisor).bit_length() - TURN_BITS)
    return [((weight // divisor) >> shift) or (1 if weight > 0 else 0) for weight in weights]


def table(destinations: Iterable[tuple[str, int]], size: int = TABLE_SIZE) -> tuple[str, ...]:
    """The lookup table for (key, weight) pairs: ``size`` keys, slot by slot; () when no
    destination has a weight above 0. Keys must be distinct; their order does not matter."""
    pool = sorted((key, weight) for key, weight in destinations if weight > 0)
    if not pool:
        return ()
    keys = [key for key, _ in pool]
    if len(set(keys)) != len(keys):
        raise ValueError("destination keys must be distinct")
    if len(pool) > size:
        raise ValueError(f"{len(pool)} destinations do not fit a table of {size}")
    shares = turns([weight for _, weight in pool])
    preferences = [offset_skip(key, size) for key in keys]
    position = [offset for offset, _ in preferences]      # each one's next preferred slot
    slots: list[int] = [-1] * size
    filled = 0
    while True:
        for index, (share, (_, skip)) in enumerate(zip(shares, preferences, strict=True)):
            for _ in range(share):
                slot = position[index]
                while slots[slot] >= 0:                   # taken: its next preference
                    slot = (slot + skip) % size
                slots[slot] = index
                position[index] = (slot + skip) % size
                filled += 1
                if filled == size:
                    return tuple(keys[i] for i in slots)
