"""The VRRP codec and the receive checks: round trips, every drop reason in its order, and
fuzzing (random and mutated packets never raise)."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from director.vrrp.packet import (ADDRESS_LIST, AUTH_AH, AUTH_FAILURE, AUTH_INVALID_TYPE,
                                  AUTH_NONE, AUTH_PASS, AUTH_TYPE_MISMATCH, CHECKSUM, INTERVAL,
                                  INTERVAL_ADOPTED, LENGTH, TTL_REASON, TYPE, VERSION, VRID,
                                  Advert, Dropped, Expectation, Received, ReceiveStats,
                                  check_received, decode, encode, internet_checksum,
                                  pass_auth_data, pseudo_header)

SRC4, DST4 = "192.0.2.1", "224.0.0.18"
SRC6, DST6 = "fe80::1", "ff02::12"

V2 = Advert(2, 51, 150, 1.0, ("192.168.1.11",), 4, AUTH_PASS, pass_auth_data("example"))
V3 = Advert(3, 53, 200, 0.5, ("192.0.2.100", "192.0.2.101"), 4)
V3_6 = Advert(3, 54, 120, 1.0, ("2001:db8::100", "2001:db8::101"), 6)

EXPECT = {
    51: Expectation(2, 1.0, frozenset(V2.addresses), AUTH_PASS, pass_auth_data("example")),
    53: Expectation(3, 0.5, frozenset(V3.addresses)),
    54: Expectation(3, 1.0, frozenset(V3_6.addresses)),
}


def wire(advert, src=SRC4, dst=DST4):
    return encode(advert, src, dst)


def test_v2_layout_is_rfc_3768():
    message = wire(V2)
    assert message.hex() == "213396010101e9c3c0a8010b6578616d706c6500"
    assert internet_checksum(message) == 0


def test_v3_layout_and_pseudo_header_checksum():
    message = wire(V3)
    assert message[:6].hex() == "3135c8020032"        # ver 3, type 1, vrid, prio, 2 addrs, 50 cs
    assert internet_checksum(pseudo_header(4, SRC4, DST4, len(message)) + message) == 0
    assert internet_checksum(message) != 0            # v3 without the pseudo-header is wrong


@pytest.mark.parametrize("advert, src, dst", [(V2, SRC4, DST4), (V3, SRC4, DST4),
                                              (V3_6, SRC6, DST6)])
def test_round_trip(advert, src, dst):
    message = encode(advert, src, dst)
    decoded = decode(message, advert.family)
    assert decoded == Advert(**{**advert.__dict__, "checksum": decoded.checksum})
    assert check_received(message, advert.family, src, dst, 255, EXPECT) == Received(decoded)


def test_only_eight_password_characters_count():
    assert pass_auth_data("toolongpassword") == b"toolongp"
    assert pass_auth_data("ab") == b"ab\0\0\0\0\0\0"


def test_v3_interval_is_in_centiseconds_up_to_40_95():
    assert decode(wire(Advert(3, 1, 100, 40.95, (), 4)), 4).advert_int == 40.95
    assert decode(wire(Advert(3, 1, 100, 0.01, (), 4)), 4).advert_int == 0.01


def test_encode_refuses_what_cannot_be_sent():
    with pytest.raises(ValueError):
        encode(Advert(2, 1, 100, 1.0, ("2001:db8::1",), 6))
    with pytest.raises(ValueError):
        encode(Advert(3, 1, 100, 1.0, ("192.0.2.1",), 4))          # v3 needs src and dst
    with pytest.raises(ValueError):
        encode(Advert(4, 1, 100, 1.0, (), 4), SRC4, DST4)


def corrupt(message: bytes, offset: int, value: int, fix_checksum_v2=True) -> bytes:
    changed = bytearray(message)
    changed[offset] = value
    if fix_checksum_v2:
        changed[6:8] = b"\0\0"
        changed[6:8] = struct.pack("!H", internet_checksum(bytes(changed)))
    return bytes(changed)


@pytest.mark.parametrize("make, ttl, reason", [
    (lambda: wire(V2)[:7], 255, LENGTH),
    (lambda: wire(V2)[:-1], 255, LENGTH),                   # auth data cut short
    (lambda: wire(V2), 64, TTL_REASON),
    (lambda: corrupt(wire(V2), 0, 0x41), 255, VERSION),     # version 4
    (lambda: wire(Advert(3, 51, 150, 1.0, V2.addresses, 4), SRC4, DST4), 255, VERSION),
    (lambda: corrupt(wire(V2), 4, 7), 255, AUTH_INVALID_TYPE),
    (lambda: corrupt(wire(V2), 4, AUTH_NONE), 255, AUTH_TYPE_MISMATCH),
    (lambda: corrupt(wire(V2), 4, AUTH_AH), 255, AUTH_TYPE_MISMATCH),
    (lambda: wire(Advert(2, 51, 150, 1.0, V2.addresses, 4, AUTH_PASS,
                         pass_auth_data("wrong"))), 255, AUTH_FAILURE),
    (lambda: corrupt(wire(V2), 0, 0x22), 255, TYPE),
    (lambda: corrupt(wire(V2), 5, 3), 255, INTERVAL),       # v2: a different interval drops
    (lambda: corrupt(wire(V2), 2, 151, fix_checksum_v2=False), 255, CHECKSUM),
    (lambda: wire(Advert(2, 99, 150, 1.0, V2.addresses, 4, AUTH_PASS,
                         pass_auth_data("example"))), 255, VRID),
])
def test_each_drop_reason(make, ttl, reason):
    outcome = check_received(make(), 4, SRC4, DST4, ttl, EXPECT)
    assert isinstance(outcome, Dropped) and outcome.reason == reason, outcome


def test_checks_run_in_order():
    # A packet wrong in TTL, password and checksum at once is counted for its TTL.
    bad = corrupt(wire(Advert(2, 51, 150, 1.0, V2.addresses, 4, AUTH_PASS,
                              pass_auth_data("wrong"))), 2, 1, fix_checksum_v2=False)
    assert check_received(bad, 4, SRC4, DST4, 1, EXPECT).reason == TTL_REASON
    assert check_received(bad, 4, SRC4, DST4, 255, EXPECT).reason == AUTH_FAILURE


def test_v3_interval_mismatch_is_adopted_and_noted():
    other = Advert(3, 53, 200, 1.0, V3.addresses, 4)
    outcome = check_received(wire(other), 4, SRC4, DST4, 255, EXPECT)
    assert isinstance(outcome, Received) and outcome.notes == (INTERVAL_ADOPTED,)


def test_address_list_mismatch_is_accepted_and_noted():
    other = Advert(2, 51, 150, 1.0, ("192.168.1.99",), 4, AUTH_PASS, pass_auth_data("example"))
    outcome = check_received(wire(other), 4, SRC4, DST4, 255, EXPECT)
    assert isinstance(outcome, Received) and outcome.notes == (ADDRESS_LIST,)


def test_unicast_ttl_bounds():
    expect = {51: Expectation(2, 1.0, frozenset(V2.addresses), AUTH_PASS,
                              pass_auth_data("example"), check_ttl=False, min_ttl=250)}
    assert isinstance(check_received(wire(V2), 4, SRC4, "192.0.2.2", 254, expect), Received)
    assert check_received(wire(V2), 4, SRC4, "192.0.2.2", 64, expect).reason == TTL_REASON


def test_stats_count_drops_and_notes():
    stats = ReceiveStats()
    stats.count(check_received(wire(V2), 4, SRC4, DST4, 64, EXPECT))
    stats.count(check_received(wire(V3), 4, SRC4, DST4, 255, EXPECT))
    stats.count(check_received(wire(Advert(3, 53, 200, 1.0, V3.addresses, 4)), 4, SRC4, DST4,
                               255, EXPECT))
    assert (stats.received, stats.dropped, stats.noted) == (3, {"ttl": 1},
                                                            {"interval_adopted": 1})


# -- fuzzing the receive path ------------------------------------------------------------------

FAMILIES = st.sampled_from([(4, SRC4, DST4), (6, SRC6, DST6)])


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=1200), FAMILIES, st.integers(0, 255))
def test_random_bytes_never_raise(data, family, ttl):
    outcome = check_received(data, family[0], family[1], family[2], ttl, EXPECT)
    assert isinstance(outcome, (Received, Dropped))


@settings(max_examples=500, deadline=None)
@given(st.sampled_from([(V2, 4, SRC4, DST4), (V3, 4, SRC4, DST4), (V3_6, 6, SRC6, DST6)]),
       st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255)), min_size=1, max_size=4),
       st.integers(0, 60))
def test_mutated_packets_never_raise(case, flips, cut):
    advert, family, src, dst = case
    message = bytearray(encode(advert, src, dst))
    for offset, value in flips:
        if offset < len(message):
            message[offset] = value
    message = bytes(message[:len(message) - cut] if cut < len(message) else message)
    outcome = check_received(message, family, src, dst, 255, EXPECT)
    assert isinstance(outcome, (Received, Dropped))
    if isinstance(outcome, Received):     # what is accepted is exactly what was checked
        assert outcome.advert.vrid in EXPECT


def test_an_advert_interval_of_zero_is_refused():
    """A v3 advert with Max Adver Int 0 was adopted: a backup's master-down interval became
    its skew alone, and it went MASTER after every advert of its master (one forged packet a
    second made 30 transitions in 15 s). v3 has no authentication: the receive check is the
    only guard."""
    zero = bytearray(wire(Advert(3, 53, 200, 0.5, V3.addresses, 4)))
    zero[4:6] = struct.pack("!H", 0)
    zero[6:8] = b"\0\0"
    zero[6:8] = struct.pack("!H", internet_checksum(pseudo_header(4, SRC4, DST4, len(zero))
                                                    + bytes(zero)))
    assert decode(bytes(zero), 4).advert_int == 0
    outcome = check_received(bytes(zero), 4, SRC4, DST4, 255, EXPECT)
    assert isinstance(outcome, Dropped) and outcome.reason == INTERVAL, outcome
    unknown = check_received(bytes(zero), 4, SRC4, DST4, 255, {})      # no instance of ours
    assert isinstance(unknown, Dropped) and unknown.reason == INTERVAL, unknown


def _v3_with(message: bytearray, src=SRC4, dst=DST4) -> bytes:
    """A v3 message with its checksum put right after an edit."""
    message[6:8] = b"\0\0"
    message[6:8] = struct.pack("!H", internet_checksum(
        pseudo_header(4 if ":" not in src else 6, src, dst, len(message)) + bytes(message)))
    return bytes(message)


@pytest.mark.parametrize("advert, src, dst", [(V2, SRC4, DST4), (V3, SRC4, DST4),
                                              (V3_6, SRC6, DST6)])
def test_trailing_bytes_are_a_length_drop(advert, src, dst):
    """Found by tests/fuzz: bytes after the addresses (v3) or the authentication data (v2)
    were accepted, covered by a checksum put right for them. keepalived 2.2.7 drops such a
    packet (its length differs from the one expected: packet_len_err); so do we."""
    message = bytearray(encode(advert, src, dst)) + b"\x01\x02\x03\x04"
    if advert.version == 2:
        message[6:8] = b"\0\0"
        message[6:8] = struct.pack("!H", internet_checksum(bytes(message)))
        message = bytes(message)
    else:
        message = _v3_with(message, src, dst)
    outcome = check_received(message, advert.family, src, dst, 255, EXPECT)
    assert isinstance(outcome, Dropped) and outcome.reason == LENGTH, outcome
    assert "4 bytes after" in outcome.detail


def test_no_address_is_an_address_list_drop_when_we_expect_some():
    """RFC 5798 5.2.5: Count IPvX Addr is at least 1; keepalived 2.2.7 drops an advert whose
    count differs from its own (addr_list_err). An instance without addresses (keepalived
    allows one) still accepts a count of 0 from its like."""
    empty = _v3_with(bytearray(encode(Advert(3, 53, 200, 0.5, (), 4), SRC4, DST4)))
    outcome = check_received(empty, 4, SRC4, DST4, 255, EXPECT)
    assert isinstance(outcome, Dropped) and outcome.reason == ADDRESS_LIST, outcome
    bare = {53: Expectation(3, 0.5, frozenset())}
    assert isinstance(check_received(empty, 4, SRC4, DST4, 255, bare), Received)


def test_v3_reserved_bits_are_ignored():
    """RFC 5798 5.2.6: the reserved bits MUST be ignored on reception (keepalived ignores
    them too): a set bit neither drops the advert nor changes its interval."""
    message = bytearray(wire(V3))
    message[4] |= 0xF0
    outcome = check_received(_v3_with(message), 4, SRC4, DST4, 255, EXPECT)
    assert isinstance(outcome, Received) and outcome.advert.advert_int == 0.5, outcome
