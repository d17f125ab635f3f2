"""The VRRP receive path as a fuzz target: what a raw socket hands the receiver (the whole IPv4
packet, or an IPv6 payload with its addresses and hop limit) through transport.split_ipv4 and
packet.check_received (ah.check_received for an AH seed: the socket of IP protocol 51),
against the expectations of an instance that accepts the seed.

Seeded with keepalived 2.2.7's captured adverts (tests/golden/vrrp). Every input must end as
Received or as a Dropped with a known reason, and what is accepted must hold the invariants
the receive checks promise. ``feed`` raises on anything else; the fuzzers report the input.
"""

from __future__ import annotations

import json
import random
import re
import struct
from dataclasses import dataclass
from pathlib import Path

from director.vrrp import ah
from director.vrrp import packet as p
from director.vrrp.transport import split_ipv4

from .mutate import havoc

GOLDEN = Path(__file__).resolve().parent.parent / "golden" / "vrrp"
REASONS = frozenset({p.LENGTH, p.TTL_REASON, p.VERSION, p.AUTH_INVALID_TYPE,
                     p.AUTH_TYPE_MISMATCH, p.AUTH_FAILURE, p.TYPE, p.INTERVAL, p.CHECKSUM,
                     p.VRID, p.ADDRESS_LIST})
NOTES = frozenset({p.ADDRESS_LIST, p.INTERVAL_ADOPTED})


@dataclass(frozen=True)
class Context:
    """One captured advert and the receiver that accepts it."""

    name: str
    family: int
    wire: bytes                 # IPv4: the whole packet; IPv6: the VRRP message
    src: str
    dst: str
    hop_limit: int              # IPv6 only (IPv4's TTL is in the packet)
    expectations: dict[int, p.Expectation]
    ah: bool = False            # AH seed: the VRRP header starts after the AH one

    def vrrp_start(self, wire: bytes) -> int:
        """Where the VRRP message starts in ``wire``."""
        if self.family == 6:
            return 0
        return (wire[0] & 0x0F) * 4 + (ah.HEADER_LEN if self.ah else 0)


def contexts() -> list[Context]:
    out = []
    for path in sorted(GOLDEN.glob("*.json")):
        data = json.loads(path.read_text())
        for index, packet in enumerate(data.get("packets", ())):
            family = packet["family"]
            message = bytes.fromhex(packet["vrrp_hex"])
            advert = p.decode(message, family)
            multicast = packet.get("packet_type") == "multicast"
            key = advert.auth_data      # PASS: the password; AH: the key, from the config
            if "ah" in packet:
                key = p.pass_auth_data(re.search(r"auth_pass (\S+)",
                                                 data["keepalived_config"]).group(1))
            expect = p.Expectation(advert.version, advert.advert_int,
                                   frozenset(advert.addresses), advert.auth_type, key,
                                   check_ttl=multicast, unicast=not multicast)
            wire = bytes.fromhex(packet["ip_packet_hex"]) if family == 4 else message
            out.append(Context(f"{data['case']}-{index}", family, wire, packet["src"],
                               packet["dst"], packet["ttl_or_hop_limit"],
                               {advert.vrid: expect}, "ah" in packet))
    return out


def feed(context: Context, wire: bytes, hop_limit: int | None = None):
    """What the receiver makes of ``wire`` (service.VrrpService._receive's first steps):
    check_received's outcome; AssertionError if it breaks a promise (an exception escaping
    check_received is passed on as it is)."""
    wrapped = None
    if context.family == 4:
        message, src, dst, ttl = split_ipv4(wire)
    else:
        message, src, dst = wire, context.src, context.dst
        ttl = context.hop_limit if hop_limit is None else hop_limit
    if context.ah:
        outcome, wrapped = ah.check_received(wire, src, dst, ttl, context.expectations)
        if outcome is None:
            return outcome          # AH around another protocol: ignored, as IPsec traffic
        message = wrapped.message if wrapped is not None else message
    else:
        outcome = p.check_received(message, context.family, src, dst, ttl,
                                   context.expectations)
    if isinstance(outcome, p.Dropped):
        assert outcome.reason in REASONS, f"unknown drop reason {outcome.reason!r}"
        assert isinstance(outcome.detail, str) and outcome.detail
        return outcome
    assert isinstance(outcome, p.Received), f"neither received nor dropped: {outcome!r}"
    advert = outcome.advert
    expect = context.expectations.get(advert.vrid)
    assert expect is not None, "accepted for a vrid nobody expects"
    assert advert.version == expect.version and advert.type == p.TYPE_ADVERTISEMENT
    assert advert.advert_int > 0, "accepted an advert interval of 0"
    assert set(outcome.notes) <= NOTES
    size = 4 if context.family == 4 else 16
    expected = p.HEADER_LEN + len(advert.addresses) * size + \
        (p.AUTH_DATA_LEN if advert.version == 2 else 0)
    assert len(message) == expected, f"accepted {len(message) - expected} trailing bytes"
    assert advert.addresses or not expect.addresses, "accepted an advert with no address"
    if advert.version == 2:
        assert advert.auth_type == expect.auth_type and \
            (advert.auth_type != p.AUTH_PASS or advert.auth_data == expect.auth_data)
        assert (wrapped is not None) == (advert.auth_type == p.AUTH_AH), "AH or not, wrongly"
        assert wrapped is None or wrapped.verify(expect.auth_data, expect.unicast) is None
    return outcome


def fix_checksum(context: Context, wire: bytes) -> bytes:
    """``wire`` with the VRRP checksum put right, so mutations reach the checks after it (and
    for AH the ICV, as a sender with the key would)."""
    if context.family == 4:
        if len(wire) < 20:
            return wire
        offset = context.vrrp_start(wire)
        _, src, dst, _ = split_ipv4(wire)
        message = wire[offset:]
    else:
        offset, message, src, dst = 0, wire, context.src, context.dst
    if len(message) < p.HEADER_LEN or message[0] >> 4 not in (2, 3):
        return wire
    zeroed = message[:6] + b"\0\0" + message[8:]
    summed = zeroed if message[0] >> 4 == 2 else \
        p.pseudo_header(context.family, src, dst, len(zeroed)) + zeroed
    checksum = struct.pack("!H", p.internet_checksum(summed))
    wire = wire[:offset + 6] + checksum + wire[offset + 8:]
    if context.ah:
        wire = fix_icv(context, wire)
    return wire


def fix_icv(context: Context, wire: bytes) -> bytes:
    try:
        wrapped = ah.unwrap(wire)
    except ValueError:
        return wire
    (expect,) = context.expectations.values()
    start = context.vrrp_start(wire)
    digest = ah.icv(wrapped.ip_header, wire[start - ah.HEADER_LEN:start], wrapped.message,
                    expect.auth_data, expect.unicast)
    return wire[:start - ah.ICV_LEN] + digest + wire[start:]


# Offsets of the VRRP header's fields, and values worth trying in each.
FIELDS = {0: (0x21, 0x31, 0x20, 0x22, 0x11, 0x41, 0x2F, 0x3F, 0x30, 0x32),   # version|type
          1: (0, 1, 51, 52, 53, 54, 255), 2: (0, 1, 100, 254, 255),         # vrid, priority
          3: (0, 1, 2, 3, 16, 255),                                          # count
          4: (0, 1, 2, 3, 0x10, 0xF0, 0xFF), 5: (0, 1, 2, 100, 255)}        # auth|rsvd, int


def mutate(rng: random.Random, context: Context, seeds: list[bytes]) -> bytes:
    """A structure-aware mutation of the context's advert: its header fields, its IPv4
    header (IHL, total length, TTL), then havoc, and half the time a correct checksum."""
    wire = bytearray(context.wire)
    start = context.vrrp_start(wire)
    for _ in range(rng.randint(0, 3)):
        where = rng.randrange(4)
        if where < 2:
            offset = rng.choice(tuple(FIELDS))
            wire[start + offset] = rng.choice(FIELDS[offset])
        elif where == 2 and context.family == 4:
            choice = rng.randrange(3)
            if choice == 0:
                wire[0] = 0x40 | rng.choice((0, 1, 4, 5, 6, 15))
            elif choice == 1:
                wire[2:4] = rng.choice((0, 20, 27, 28, len(wire) - 1, len(wire) + 8,
                                        0xFFFF)).to_bytes(2, "big")
            else:
                wire[8] = rng.choice((0, 1, 64, 254, 255))
        else:
            wire += rng.randbytes(rng.choice((1, 4, 8, 16)))
    data = bytes(wire)
    if rng.random() < 0.7:
        data = havoc(rng, data, seeds, max_len=1500)
    if rng.random() < 0.5:
        data = fix_checksum(context, data)
    return data


def run(seed: int, count: int) -> dict[str, int]:
    """``count`` mutated inputs from ``seed``: outcome counts by reason ("accepted" for
    Received). Raises what ``feed`` raises, with the input as hex in the message."""
    rng = random.Random(seed)
    all_contexts = contexts()
    seeds = [c.wire for c in all_contexts]
    counts: dict[str, int] = {}
    for _ in range(count):
        context = rng.choice(all_contexts)
        wire = mutate(rng, context, seeds)
        hop = rng.choice((None, None, None, 1, 254, 0)) if context.family == 6 else None
        try:
            outcome = feed(context, wire, hop)
        except Exception as exc:
            raise AssertionError(f"seed {seed}, context {context.name}, hop limit {hop}: "
                                 f"{exc!r} on input {wire.hex()}") from exc
        key = outcome.reason if isinstance(outcome, p.Dropped) else \
            "ignored" if outcome is None else "accepted"
        counts[key] = counts.get(key, 0) + 1
    return counts
