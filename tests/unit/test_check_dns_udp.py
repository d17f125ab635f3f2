"""The pure parts of the DNS, UDP and SMTP checkers: the DNS query builder and reply reader
(checked against dnslib, a test-only dependency), the UDP reply pattern with X wildcards,
and SMTP's reply code rule and host-block endpoints."""

from __future__ import annotations

import pytest
from dnslib import QTYPE, RCODE, RR, A, DNSHeader, DNSQuestion, DNSRecord

from director.check.checker import Target
from director.check.dns import (TYPES, DnsCheck, build_query, encode_name, parse_header,
                                rcode_name, reply_rcode)
from director.check.smtp import DEFAULT_HELO, SmtpCheck, endpoints, reply_code
from director.check.udp import FILLER, UdpCheck, parse_pattern, reply_problem
from director.config.blocks.checkers import BLOCKS
from director.config.schema import model_for

DNS_CHECK, SMTP_CHECK, UDP_CHECK = BLOCKS["DNS_CHECK"], BLOCKS["SMTP_CHECK"], BLOCKS["UDP_CHECK"]
SMTP_HOST = SMTP_CHECK.lookup("host").value

TARGET = Target(host="192.0.2.10", port=25, connect_timeout=3.0)

# -- DNS query ----------------------------------------------------------------------------


@pytest.mark.parametrize("qtype", sorted(TYPES))
def test_the_query_is_what_a_resolver_reads(qtype):
    query = build_query("www.example.org", qtype, ident=0x1234)
    record = DNSRecord.parse(query)
    assert record.header.id == 0x1234
    assert (record.header.qr, record.header.rd, record.header.opcode) == (0, 1, 0)
    assert (record.header.q, record.header.a, record.header.auth, record.header.ar) == \
        (1, 0, 0, 0)
    assert str(record.q.qname) == "www.example.org."
    assert QTYPE[record.q.qtype] == qtype
    assert record.q.qclass == 1


def test_the_query_bytes_exactly():
    assert build_query("a.bc", "MX", ident=0xBEEF) == bytes.fromhex(
        "beef 0100 0001 0000 0000 0000 01 61 02 6263 00 000f 0001")


@pytest.mark.parametrize("name", ["", "."])
def test_the_root_is_one_zero_byte(name):
    assert encode_name(name) == b"\0"
    record = DNSRecord.parse(build_query(name, "SOA", ident=1))
    assert str(record.q.qname) == "." and record.q.qtype == QTYPE.SOA


def test_a_trailing_dot_changes_nothing_and_the_type_is_case_blind():
    assert build_query("example.org.", "aaaa", 7) == build_query("example.org", "AAAA", 7)
    assert build_query("example.org", 28, 7) == build_query("example.org", "AAAA", 7)


def test_ids_are_random():
    assert len({parse_header(build_query("x", "A"))[0] for _ in range(64)}) > 32


@pytest.mark.parametrize("name, message", [
    ("a..b", "empty label"),
    (".a", "empty label"),
    ("x" * 64 + ".org", "longer than 63 bytes"),
])
def test_names_that_cannot_be_encoded(name, message):
    with pytest.raises(ValueError, match=message):
        encode_name(name)


# -- DNS reply ----------------------------------------------------------------------------

def _reply(ident=0x1234, rcode=RCODE.NOERROR, answers=1, qr=1):
    record = DNSRecord(DNSHeader(id=ident, qr=qr, aa=1, ra=1, rcode=rcode),
                       q=DNSQuestion("www.example.test", QTYPE.A))
    for _ in range(answers):
        record.add_answer(RR("www.example.test", QTYPE.A, rdata=A("192.0.2.1"), ttl=60))
    return record.pack()


def test_noerror_with_an_answer():
    assert reply_rcode(_reply(), 0x1234) == 0


def test_noerror_without_an_answer_still_passes_as_in_keepalived():
    reply = _reply(answers=0)
    assert reply_rcode(reply, 0x1234) == 0 and parse_header(reply)[3] == 0


@pytest.mark.parametrize("rcode, name", [(RCODE.NXDOMAIN, "NXDOMAIN"),
                                         (RCODE.SERVFAIL, "SERVFAIL"),
                                         (RCODE.REFUSED, "REFUSED")])
def test_error_rcodes(rcode, name):
    code = reply_rcode(_reply(rcode=rcode, answers=0), 0x1234)
    assert rcode_name(code) == name


@pytest.mark.parametrize("reply", [
    _reply(ident=0x1235),        # another query's answer
    _reply(qr=0),                # a query, not a response
    _reply()[:11],               # shorter than a header
    b"",
], ids=["other-id", "not-a-response", "short", "empty"])
def test_datagrams_keepalived_skips(reply):
    assert reply_rcode(reply, 0x1234) is None


def test_unknown_rcodes_are_named_by_number():
    assert rcode_name(15) == "RCODE 15"


def test_dns_check_defaults_are_keepalived_s():
    config = model_for(DNS_CHECK)()
    check = DnsCheck(config, TARGET)
    assert (check.qtype, check.name, check.question()) == ("SOA", "", "SOA .")


# -- UDP pattern --------------------------------------------------------------------------

def test_pattern_nibbles_and_wildcards():
    assert parse_pattern("0aXf x1XX") == (bytes.fromhex("0a0f 0100"), bytes.fromhex("00f0 f0ff"))
    with pytest.raises(ValueError):
        parse_pattern("abc")
    with pytest.raises(ValueError):
        parse_pattern("")


@pytest.mark.parametrize("reply, problem", [
    (bytes.fromhex("0a1f 21ff"), None),
    (bytes.fromhex("0aef 5100"), None),          # X nibbles take anything
    (bytes.fromhex("0a1f 31"), None),            # three bytes: the fourth is not compared
    (bytes.fromhex("0b1f 2100"), "reply byte 0 is 0b, expected 0a"),
    (bytes.fromhex("0a1e 2100"), "reply byte 1 is 1e, expected xf"),
    (bytes.fromhex("0a1f 3200"), "reply byte 2 is 32, expected x1"),
    (bytes.fromhex("0a"), None),                 # shorter: only what arrived is compared
    (b"", None),
])
def test_reply_matching(reply, problem):
    data, mask = parse_pattern("0aXf x1XX")
    assert reply_problem(reply, data, mask) == problem


def test_reply_lengths():
    data, mask = parse_pattern("0a")
    assert reply_problem(b"\x0a" * 255, data, mask) is None
    assert reply_problem(b"\x0a" * 256, data, mask) == "reply of 256 bytes, outside 0..255"
    assert reply_problem(b"\x0a", data, mask, min_length=2) == \
        "reply of 1 bytes, outside 2..255"
    assert reply_problem(b"\x0a" * 300, data, mask, max_length=300) is None


def test_udp_check_settings_from_the_config_block():
    bare = UdpCheck(model_for(UDP_CHECK)(), TARGET)
    assert bare.payload == FILLER == b"keepalived check - keepalived ch"
    assert (bare.require_reply, bare.pattern) == (False, None)
    plain = UdpCheck(model_for(UDP_CHECK)(payload="0102", require_reply=True), TARGET)
    assert (plain.payload, plain.require_reply, plain.pattern) == (b"\1\2", True, None)
    pattern = UdpCheck(model_for(UDP_CHECK)(require_reply="0ax1", max_reply_length=10), TARGET)
    assert pattern.pattern == (b"\x0a\x01", b"\x00\xf0")
    assert (pattern.min_length, pattern.max_length) == (0, 10)


# -- SMTP rules ---------------------------------------------------------------------------

@pytest.mark.parametrize("line, code", [
    (b"220 mail.example.org ESMTP", 220),
    (b"250", 250),
    (b"250 ", 250),
    (b"220-mail.example.org ESMTP", None),       # multi-line: keepalived fails it
    (b"250\r", None),                            # strtoul then "not a space or the end"
    (b"2500 x", None),
    (b"22 x", None),
    (b"abc def", None),
    (b"", None),
])
def test_reply_code(line, code):
    assert reply_code(line) == code


def _smtp(**values):
    return model_for(SMTP_CHECK)(**values)


def test_smtp_defaults():
    check = SmtpCheck(_smtp(), TARGET)
    assert check.helo_name == DEFAULT_HELO == "smtpchecker.keepalived.org"
    assert check.targets == [TARGET]


def test_host_blocks_replace_the_checker_s_own_address_unless_it_set_one():
    host = model_for(SMTP_HOST)
    hosts = (host(connect_ip="192.0.2.20"), host(connect_ip="192.0.2.21", connect_port=2525,
                                                 bindto="192.0.2.1"))
    got = endpoints(_smtp(hosts=hosts), TARGET)
    assert [(t.host, t.port, t.bind_ip) for t in got] == [
        ("192.0.2.20", 25, None), ("192.0.2.21", 2525, "192.0.2.1")]
    with_own = endpoints(_smtp(hosts=hosts, connect_timeout=2.0), TARGET)
    assert [(t.host, t.port) for t in with_own] == [
        ("192.0.2.10", 25), ("192.0.2.20", 25), ("192.0.2.21", 2525)]
