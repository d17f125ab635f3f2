"""Adverts captured from the real keepalived 2.2.7 (tests/golden/tools/capture_keepalived_adverts.py
wrote tests/golden/vrrp/): our decoder reads them, our receive checks accept them, and our encoder
builds the very same bytes from the same fields."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from director.vrrp import ah
from director.vrrp.packet import (AUTH_AH, AUTH_PASS, Advert, Expectation, Received,
                                  check_received, decode, encode, pass_auth_data)
from director.vrrp.transport import split_ipv4

GOLDEN = Path(__file__).parent / "vrrp"
CASES = ["v2_pass", "v2_pass_long", "v2_noauth", "v3_ipv4", "v3_ipv6", "v2_prio0",
         "unicast_v2", "unicast_v3"]


def packets(case):
    data = json.loads((GOLDEN / f"{case}.json").read_text())
    return [(data, packet) for packet in data["packets"]]


ALL = [(case, index, data, packet) for case in CASES
       for index, (data, packet) in enumerate(packets(case))]


@pytest.mark.parametrize("case, index, data, packet", ALL,
                         ids=[f"{c}-{i}" for c, i, _, _ in ALL])
def test_keepalived_advert_decodes_and_reencodes_byte_for_byte(case, index, data, packet):
    fields = packet["fields"]
    family = packet["family"]
    message = bytes.fromhex(packet["vrrp_hex"])
    if family == 4:   # the raw IPv4 socket hands us the header too: split it as we would
        payload, src, dst, ttl = split_ipv4(bytes.fromhex(packet["ip_packet_hex"]))
        assert (payload, src, dst, ttl) == (message, packet["src"], packet["dst"],
                                            packet["ttl_or_hop_limit"])
    advert = decode(message, family)
    interval = fields["advert_int"] if fields["version"] == 2 else \
        fields["max_advert_int_centiseconds"] / 100
    assert (advert.version, advert.vrid, advert.priority, list(advert.addresses),
            advert.advert_int) == (fields["version"], fields["vrid"], fields["priority"],
                                   fields["addresses"], interval)
    password = fields.get("auth_data_ascii")
    expectation = Expectation(
        advert.version, interval,
        frozenset(fields["addresses"]),
        AUTH_PASS if fields.get("auth_type") == AUTH_PASS else 0,
        pass_auth_data(password) if fields.get("auth_type") == AUTH_PASS else b"",
        check_ttl=packet["packet_type"] == "multicast")
    outcome = check_received(message, family, packet["src"], packet["dst"],
                             packet["ttl_or_hop_limit"], {advert.vrid: expectation})
    assert isinstance(outcome, Received), outcome
    ours = Advert(advert.version, advert.vrid, advert.priority, interval, advert.addresses,
                  family, advert.auth_type, advert.auth_data)
    assert encode(ours, packet["src"], packet["dst"]).hex() == packet["vrrp_hex"]


def test_keepalived_sends_only_eight_password_characters():
    (_, packet), *_ = packets("v2_pass_long")
    assert bytes.fromhex(packet["fields"]["auth_data_hex"]) == pass_auth_data("toolongpassword")


def test_keepalived_leaves_master_with_priority_zero():
    """The capture holds what keepalived sent after SIGTERM: one advert, priority 0."""
    assert [p["fields"]["priority"] for _, p in packets("v2_prio0")] == [0]


AH_CASES = {"v2_ah": False, "unicast_v2_ah": True}      # case -> a unicast instance
AH_ALL = [(case, index, packet) for case in AH_CASES
          for index, (_, packet) in enumerate(packets(case))]


@pytest.mark.parametrize("case, index, packet", AH_ALL, ids=[f"{c}-{i}" for c, i, _ in AH_ALL])
def test_keepalived_ah_advert_is_rebuilt_byte_for_byte_and_verified(case, index, packet):
    """keepalived 2.2.7 with auth_type AH: IP protocol 51, SPI = source, sequence from 1.
    For the same sequence number, identification and TTL our encoder builds the very same IP
    packet (ICV and IP checksum included), and our decoder accepts it with the password and
    refuses it with another one, or with the other TTL rule."""
    key, unicast = pass_auth_data("secret12"), AH_CASES[case]
    assert packet["ip_header"]["protocol"] == ah.PROTOCOL
    assert packet["ah"]["sequence"] == index + 1
    message = bytes.fromhex(packet["vrrp_hex"])
    built = ah.wrap(message, packet["src"], packet["dst"], sequence=packet["ah"]["sequence"],
                    ident=packet["ip_header"]["identification"], key=key,
                    ttl=packet["ttl_or_hop_limit"], unicast=unicast)
    assert built.hex() == packet["ip_packet_hex"]
    wrapped = ah.unwrap(bytes.fromhex(packet["ip_packet_hex"]))
    assert (wrapped.message, wrapped.sequence) == (message, index + 1)
    assert wrapped.verify(key, unicast) is None
    assert wrapped.verify(pass_auth_data("secret13"), unicast) is not None
    assert wrapped.verify(key, not unicast) is not None
    advert = decode(message, 4)
    ours = Advert(2, advert.vrid, advert.priority, 1.0, advert.addresses, 4, AUTH_AH)
    assert encode(ours).hex() == packet["vrrp_hex"]   # auth type 2, eight zero bytes
    expect = Expectation(2, 1.0, frozenset(advert.addresses), AUTH_AH, key,
                         check_ttl=not unicast, unicast=unicast)
    assert isinstance(check_received(message, 4, packet["src"], packet["dst"],
                                     packet["ttl_or_hop_limit"], {advert.vrid: expect},
                                     ah=wrapped), Received)
