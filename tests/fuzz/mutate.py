"""A small mutation engine for the fuzz targets: byte-level havoc (flips, interesting values,
inserts, deletes, truncation, splicing with another seed), driven by one random.Random so
that a seed reproduces a run exactly.

AFL's havoc stage is the model; the targets add what knows their structure (a VRRP header's
fields, a checksum put right) on top of it. Coverage guidance is atheris's job in bench/; in CI
a fixed budget of these mutations runs in a few seconds.
"""

from __future__ import annotations

import random

INTERESTING = (0, 1, 2, 3, 4, 7, 8, 15, 16, 31, 32, 63, 64, 100, 127, 128, 200, 254, 255)
MAX_LEN = 4096


def havoc(rng: random.Random, data: bytes, seeds: list[bytes], rounds: int | None = None,
          max_len: int = MAX_LEN) -> bytes:
    """``data`` after 1-8 random byte-level edits (or ``rounds`` of them)."""
    out = bytearray(data)
    for _ in range(rounds or rng.randint(1, 8)):
        op = rng.randrange(9)
        if op == 0 and out:                               # flip one bit
            i = rng.randrange(len(out))
            out[i] ^= 1 << rng.randrange(8)
        elif op == 1 and out:                             # an interesting byte
            out[rng.randrange(len(out))] = rng.choice(INTERESTING)
        elif op == 2 and out:                             # a random byte
            out[rng.randrange(len(out))] = rng.randrange(256)
        elif op == 3:                                     # insert random bytes
            i = rng.randrange(len(out) + 1)
            out[i:i] = rng.randbytes(rng.choice((1, 1, 2, 4, 16, 64)))
        elif op == 4 and out:                             # delete a run
            i = rng.randrange(len(out))
            del out[i:i + rng.choice((1, 1, 2, 4, 16))]
        elif op == 5 and out:                             # truncate
            del out[rng.randrange(len(out)):]
        elif op == 6 and seeds:                           # splice with another seed
            other = rng.choice(seeds)
            cut = rng.randrange(len(out) + 1)
            out = out[:cut] + other[rng.randrange(len(other) + 1):]
        elif op == 7 and out:                             # repeat a slice
            i = rng.randrange(len(out))
            piece = out[i:i + rng.randint(1, 16)]
            out[i:i] = piece * rng.randint(1, 32)
        elif op == 8 and len(out) >= 2:                   # a 16-bit interesting value
            i = rng.randrange(len(out) - 1)
            value = rng.choice((0, 1, 0x7FFF, 0x8000, 0xFFFF, 0x0FFF, 0x1000, 100))
            out[i:i + 2] = value.to_bytes(2, "big")
        if len(out) > max_len:
            del out[max_len:]
    return bytes(out)
