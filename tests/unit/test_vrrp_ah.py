"""IPsec AH around VRRPv2 (director/vrrp/ah.py) and its receive checks in packet.check_received.
What keepalived 2.2.7 itself sends is in tests/golden/test_vrrp_keepalived_packets.py."""

from __future__ import annotations

import pytest

from director.config import load_config
from director.vrrp import ah
from director.vrrp.packet import (AUTH_AH, AUTH_FAILURE, AUTH_PASS, AUTH_TYPE_MISMATCH, Advert,
                                  Dropped, Expectation, Received, check_received, encode,
                                  pass_auth_data)
from director.vrrp.transport import split_ipv4

SRC, GROUP = "192.0.2.1", "224.0.0.18"
KEY = pass_auth_data("secret12")
ADVERT = Advert(2, 57, 150, 1.0, ("192.0.2.100",), 4, AUTH_AH)
EXPECT = {57: Expectation(2, 1.0, frozenset({"192.0.2.100"}), AUTH_AH, KEY)}


def packet(sequence=1, key=KEY, src=SRC, ttl=255, unicast=False, message=None):
    return ah.wrap(message or encode(ADVERT), src, GROUP, sequence=sequence, ident=7, key=key,
                   ttl=ttl, unicast=unicast)


def receive(raw, expectations=EXPECT):
    wrapped = ah.unwrap(raw)
    _, src, dst, ttl = split_ipv4(raw)
    return check_received(wrapped.message, 4, src, dst, ttl, expectations, ah=wrapped)


def test_a_wrapped_advert_is_accepted_with_its_sequence_number():
    raw = packet(sequence=42)
    assert raw[9] == ah.PROTOCOL and len(raw) == 20 + 24 + 20
    assert ah.unwrap(raw).sequence == 42 and ah.unwrap(raw).spi == 0xC0000201
    outcome = receive(raw)
    assert isinstance(outcome, Received) and outcome.advert.priority == 150


def test_another_password_is_an_auth_failure():
    outcome = receive(packet(key=pass_auth_data("secret13")))
    assert isinstance(outcome, Dropped) and outcome.reason == AUTH_FAILURE
    assert "ICV" in outcome.detail


@pytest.mark.parametrize("offset", [20 + 4, 20 + 8, 20 + 24 + 2, 16])   # SPI, seq, prio, dst
def test_a_changed_protected_byte_is_an_auth_failure(offset):
    raw = bytearray(packet())
    raw[offset] ^= 1
    assert receive(bytes(raw)).reason == AUTH_FAILURE


def test_the_mutable_fields_are_not_protected():
    """TOS and fragment flags may change on the way (RFC 2402 3.3.3.1.1.1)."""
    raw = bytearray(packet())
    raw[1] = 0
    raw[6] = 0x40      # DF
    assert isinstance(receive(bytes(raw)), Received)


def test_the_ttl_is_protected_for_multicast_and_not_for_unicast():
    """keepalived zeroes the TTL in the ICV only for an instance with unicast peers."""
    unicast = {57: Expectation(2, 1.0, frozenset({"192.0.2.100"}), AUTH_AH, KEY,
                               check_ttl=False, unicast=True)}
    assert isinstance(receive(packet(ttl=64, unicast=True), unicast), Received)
    assert isinstance(receive(packet(ttl=255, unicast=True), unicast), Received)
    multicast = bytearray(packet())
    multicast[8] = 254
    assert receive(bytes(multicast)).reason in ("ttl", AUTH_FAILURE)
    relaxed = {57: Expectation(2, 1.0, frozenset({"192.0.2.100"}), AUTH_AH, KEY,
                               check_ttl=False)}
    assert receive(bytes(multicast), relaxed).reason == AUTH_FAILURE


def test_an_spi_that_is_not_the_source_is_an_auth_failure():
    raw = bytearray(packet())
    raw[20 + 4:20 + 8] = bytes([192, 0, 2, 9])
    # the ICV covers the SPI: recompute it as a peer with the password would
    forged = ah.unwrap(bytes(raw))
    digest = ah.icv(forged.ip_header, bytes(raw[20:32]), forged.message, KEY, False)
    raw[32:44] = digest
    outcome = receive(bytes(raw))
    assert outcome.reason == AUTH_FAILURE and "SPI" in outcome.detail


def test_plain_vrrp_where_ah_is_expected_and_the_reverse_are_auth_type_mismatches():
    plain = Advert(2, 57, 150, 1.0, ("192.0.2.100",), 4, AUTH_PASS, KEY)
    outcome = check_received(encode(plain), 4, SRC, GROUP, 255, EXPECT)
    assert (outcome.reason, outcome.detail) == (AUTH_TYPE_MISMATCH, "no AH header, we use AH")
    as_pass = {57: Expectation(2, 1.0, frozenset({"192.0.2.100"}), AUTH_PASS, KEY)}
    outcome = receive(packet(), as_pass)
    assert (outcome.reason, outcome.detail) == (AUTH_TYPE_MISMATCH, "an AH header, we use none")


def test_what_cannot_be_unwrapped():
    with pytest.raises(ValueError):
        ah.unwrap(packet()[:40])
    other = bytearray(packet())
    other[20] = 6          # AH protecting TCP: IPsec traffic that is not ours
    with pytest.raises(ah.NotVrrp):
        ah.unwrap(bytes(other))


def test_the_sequence_counter_follows_keepalived():
    counter = ah.Sequence()
    assert [counter.next(), counter.next()] == [1, 2]
    assert counter.accept(10) and counter.number == 10
    assert not counter.accept(10) and not counter.accept(3)      # replayed, or older
    assert counter.next() == 11                                   # a new master goes on
    counter.becoming_master()
    assert counter.number == 11                                   # no reset unless cycled
    counter.number = ah.SEQUENCE_LIMIT + 1
    assert counter.next() == ah.SEQUENCE_LIMIT + 1 and counter.cycled
    counter.becoming_master()
    assert (counter.number, counter.cycled) == (0, False)
    assert counter.next() == 1


AH_INSTANCE = """vrrp_instance VI_1 {{
    interface eth0
    virtual_router_id 1
{version}    authentication {{
        auth_type AH
        auth_pass {password}
    }}
    virtual_ipaddress {{
        {vip}
    }}
}}
"""


@pytest.mark.parametrize("version, password, vip, expected", [
    ("", "secret12", "10.0.0.1", []),
    ("", "secret1234", "10.0.0.1",
     ["6: warning: only the first 8 characters of the password are used (it has 10)"]),
    ("    version 3\n", "secret12", "10.0.0.1",
     ["5: warning: vrrp_instance VI_1: VRRPv3 has no authentication; its adverts go without "
      "AH (as keepalived's)"]),
    ("", "secret12", "2001:db8::1",     # IPv6 is VRRPv3: keepalived refuses AH there too
     ["4: warning: vrrp_instance VI_1: VRRPv3 has no authentication; its adverts go without "
      "AH (as keepalived's)"]),
])
def test_config_test_on_ah(tmp_path, version, password, vip, expected):
    """-t: AH is acted on (no 'not implemented' warning any more); what keepalived refuses or
    truncates is said with its line."""
    path = tmp_path / "keepalived.conf"
    path.write_text(AH_INSTANCE.format(version=version, password=password, vip=vip))
    result = load_config(str(path), config_id="t", interface_exists=None)
    assert result.ok
    assert [f"{d.location.line}: {d.severity}: {d.message}" for d in result.diagnostics] == \
        expected
