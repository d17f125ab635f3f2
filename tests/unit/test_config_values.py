"""Value parsers: address lines, routes, group ranges, status codes, digests, commands."""

from __future__ import annotations

import pytest

from director.config.schema import Invalid
from director.config.values import (Command, GroupEntry, Route, Tracked, VirtualAddress, command,
                                    digest, group_entry, route, status_codes, tracked,
                                    virtual_address)


class Ctx:
    location = None

    def __init__(self):
        self.warnings = []

    def warn(self, message):
        self.warnings.append(message)

    def error(self, message):  # pragma: no cover - parsers raise instead
        raise AssertionError(message)


def test_virtual_address_with_every_option():
    vip = virtual_address("192.168.1.11/24 brd 192.168.1.255 dev eth0 scope global label "
                          "eth0:1 no_track".split(), Ctx())
    assert vip == VirtualAddress("192.168.1.11/24", dev="eth0", brd="192.168.1.255",
                                 scope="global", label="eth0:1", flags=("no_track",))
    assert virtual_address(["ae00::1"], Ctx()) == VirtualAddress("ae00::1/128")
    assert virtual_address(["10.0.0.1"], Ctx()).address == "10.0.0.1/32"


@pytest.mark.parametrize("words, message", [
    ("10.0.0.300", "expects an address[/prefix], got '10.0.0.300'"),
    ("10.0.0.1/33", "prefix '/33' of '10.0.0.1/33' must be a number from 0 to 32"),
    ("10.0.0.1 colour blue", "unknown address option 'colour'"),
    ("10.0.0.1 dev", "'dev' needs a value"),
    ("10.0.0.1 scope galaxy", "scope must be"),
    ("10.0.0.1 label averyveryverylonglabel", "longer than the kernel's 15 characters"),
])
def test_bad_virtual_address(words, message):
    with pytest.raises(Invalid, match=message.replace("[", r"\[").replace("]", r"\]")):
        virtual_address(words.split(), Ctx())


def test_routes_in_ip_route_syntax():
    assert route("src 192.168.100.1 192.168.109.0/24 via 192.168.200.254 dev eth1".split(),
                 Ctx()) == Route("192.168.109.0/24", src="192.168.100.1", via="192.168.200.254",
                                 dev="eth1")
    assert route("blackhole 192.168.113.1/32".split(), Ctx()).type == "blackhole"
    multipath = route("192.168.113.0/24 via 192.168.100.252 or 192.168.100.253".split(), Ctx())
    assert multipath.nexthops == ("192.168.100.253",)
    assert route("0.0.0.0/0 gw 192.168.0.1 table 100".split(), Ctx()).table == "100"
    with pytest.raises(Invalid, match="unknown route option 'sideways'"):
        route("10.0.0.0/8 sideways 1".split(), Ctx())
    with pytest.raises(Invalid, match="needs a destination"):
        route("dev eth0".split(), Ctx())


@pytest.mark.parametrize("words, via", [
    ("fd01::/64 via inet6 fd00::1 dev eth0", "fd00::1"),
    ("10.9.0.0/16 via inet 192.0.2.1 dev eth0", "192.0.2.1"),
    ("default via inet6 fe80::1 dev eth0", "fe80::1"),
    ("via inet 192.0.2.1 10.9.0.0/16", "192.0.2.1"),
])
def test_route_gateway_may_name_its_family_as_in_ip_route(words, via):
    assert route(words.split(), Ctx()).via == via


@pytest.mark.parametrize("words, message", [
    ("10.9.0.0/16 via inet6 fd00::1", "cannot mix IPv4 and IPv6 in one route"),
    ("10.9.0.0/16 via fd00::1", "cannot mix IPv4 and IPv6 in one route"),
    ("fd01::/64 src 192.0.2.2", "cannot mix IPv4 and IPv6 in one route"),
    ("10.9.0.0/16 via 192.0.2.1 or fd00::3", "cannot mix IPv4 and IPv6 in one route"),
    ("10.9.0.0/16 via inet6 192.0.2.1", "'via inet6' needs an IPv6 gateway, got '192.0.2.1'"),
    ("fd01::/64 via inet fd00::1", "'via inet' needs an IPv4 gateway, got 'fd00::1'"),
    ("10.9.0.0/16 via inet", "'via inet' needs a gateway address"),
])
def test_route_families_must_agree_as_keepalived_requires(words, message):
    with pytest.raises(Invalid, match=message):
        route(words.split(), Ctx())


def test_route_gw_is_deprecated_as_keepalived_says():
    ctx = Ctx()
    assert route("10.9.0.0/16 gw 192.0.2.1".split(), ctx).via == "192.0.2.1"
    assert ctx.warnings == ["'gw' for routes is deprecated: use 'via'"]


def test_group_entries_and_ranges():
    assert group_entry(["192.168.200.3-10", "80"], Ctx()) == \
        GroupEntry("192.168.200.3", "192.168.200.10", 80)
    assert group_entry(["ae00::2-9", "80"], Ctx()).range_end == "ae00::9"
    assert group_entry(["fwmark", "2"], Ctx()) == GroupEntry(fwmark=2)
    with pytest.raises(Invalid, match="ends below its start"):
        group_entry(["10.0.0.9-3", "80"], Ctx())
    with pytest.raises(Invalid, match="fwmark N"):
        group_entry(["fwmark", "0"], Ctx())


def test_status_codes_and_digest():
    assert status_codes("200-299 400-499 503".split(), Ctx()) == ((200, 299), (400, 499),
                                                                  (503, 503))
    with pytest.raises(Invalid, match="is reversed: write 200-299"):
        status_codes(["299-200"], Ctx())
    with pytest.raises(Invalid, match="within 100-599"):
        status_codes(["600-700"], Ctx())
    assert digest(["422834D1D2B972EEE9E5B875E4BD8C33"], Ctx()) == \
        "422834d1d2b972eee9e5b875e4bd8c33"
    with pytest.raises(Invalid, match="32 hex digits"):
        digest(["422834d1d2b972eee9e5b875e4bd8c3"], Ctx())


def test_tracked_weights_clamp_like_keepalived():
    ctx = Ctx()
    assert tracked("eth1 weight 254".split(), ctx) == Tracked("eth1", 253)
    assert ctx.warnings == ["eth1: weight 254 is clamped to 253, as keepalived does"]
    assert tracked("chk weight -2 reverse".split(), Ctx()) == Tracked("chk", -2, True)
    with pytest.raises(Invalid):
        tracked("chk weight 300".split(), Ctx())


def test_commands_take_user_and_group_like_keepalived():
    assert command(["/bin/notify arg", "nobody", "nogroup"], Ctx()) == \
        Command("/bin/notify arg", "nobody", "nogroup")
    ctx = Ctx()
    assert command(["killall", "-0", "haproxy"], ctx, with_user=False) == Command("killall")
    assert "quote the whole command" in ctx.warnings[0]


@pytest.mark.parametrize("word", ["1.2.3.4", "01.2.3.4", "1.2.3.04", "1.2.3.4/24", "1.2.3.4-5",
                                  "255.255.255.255", "0.0.0.0", "1.2.3", "1.2.3.256", "::1",
                                  "::ffff:1.2.3.4", "FE80::1", " 1.2.3.4", "1.2.3.4\x00",
                                  "1.2.3.4.5", "0x1.2.3.4", "1.2.3.-4", "", "1.2.3.4/33"])
def test_host_text_is_parse_host_as_text(word):
    """host_text's fast path (inet_pton/inet_ntop for a dotted quad) gives what
    str(parse_host(...)) gives: the same address, warnings and errors."""
    from director.config.values import host_text, parse_host

    class Ctx:
        def __init__(self):
            self.said = []

        def warn(self, message):
            self.said.append(message)

    def outcome(function):
        ctx = Ctx()
        try:
            return str(function(word, ctx)), ctx.said
        except Invalid as exc:
            return f"invalid: {exc}", ctx.said

    assert outcome(host_text) == outcome(parse_host)
