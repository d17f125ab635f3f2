"""The bgp block and bgp_announce (director extensions): what the keyword tables make of
them, their defaults, and that the MD5 password never shows. The diagnostics of broken
files are golden files (tests/golden/broken/bgp_*)."""

from __future__ import annotations

import json

import pytest

from director.config import load_config
from director.config.render import config_json, dump_text

PEERS = """
bgp {
    local_as %(local_as)s
    %(router_id)s
    peer 10.0.0.1 {
        peer_as 65000
        local_address 10.0.0.11
        md5_password hush-hush
    }
    peer 2001:db8::1 {
        peer_as 65000
        local_address 2001:db8::11
        hold_time 30
    }
}
"""

SERVER = """
virtual_server %(address)s 80 {
    protocol TCP
    real_server %(real)s 80 {
    }
    bgp_announce {
%(announce)s
    }
}
"""


def load(tmp_path, text: str):
    path = tmp_path / "keepalived.conf"
    path.write_text(text)
    return load_config(str(path), config_id="test", interface_exists=None)


def config(tmp_path, local_as="65001", router_id="", address="192.0.2.10", real="10.1.0.1",
           announce=""):
    result = load(tmp_path, PEERS % {"local_as": local_as, "router_id": router_id} +
                  SERVER % {"address": address, "real": real, "announce": announce})
    assert result.ok, [str(d) for d in result.diagnostics]
    return result.config


@pytest.mark.parametrize("written, number", [
    ("65001", 65001), ("4200000001", 4200000001), ("1.10", 65546), ("0.1", 1),
    ("4294967295", 4294967295)])
def test_as_numbers_asplain_and_asdot(tmp_path, written, number):
    assert config(tmp_path, local_as=written).bgp.local_as == number


@pytest.mark.parametrize("written", ["0", "4294967296", "1.65536", "65536.0", "AS65001", "-1",
                                     "+5", "65_001", "1.", ".1"])
def test_bad_as_numbers_are_errors_at_their_line(tmp_path, written):
    result = load(tmp_path, PEERS % {"local_as": written, "router_id": ""})
    assert not result.ok
    assert [(d.location.line, d.severity) for d in result.diagnostics] == [(3, "error")]
    assert "AS number" in result.diagnostics[0].message


def test_router_id_defaults_to_the_first_peers_ipv4_local_address(tmp_path):
    assert config(tmp_path).bgp.router_id == "10.0.0.11"
    assert config(tmp_path, router_id="router_id 192.0.2.1").bgp.router_id == "192.0.2.1"


def test_defaults_of_the_bgp_block(tmp_path):
    bgp = config(tmp_path).bgp
    assert (bgp.engine, bgp.hold_time, bgp.shutdown_delay, bgp.exabgp_command) == \
        ("exabgp", 9, 1.0, None)
    assert [(p.address, p.port, p.hold_time, p.passive, p.ttl) for p in bgp.peers] == \
        [("10.0.0.1", 179, None, False, None), ("2001:db8::1", 179, 30, False, None)]


@pytest.mark.parametrize("address, real, prefix", [
    ("192.0.2.10", "10.1.0.1", "192.0.2.10/32"),
    ("2001:db8:10::0010", "2001:db8:20::1", "2001:db8:10::10/128")])
def test_prefix_defaults_to_the_virtual_servers_address(tmp_path, address, real, prefix):
    announce = config(tmp_path, address=address, real=real).virtual_servers[0].bgp_announce
    assert announce.prefix == prefix
    assert (announce.next_hop, announce.med, announce.peers) == ("self", None, None)


def test_values_are_normalised(tmp_path):
    announce = config(tmp_path, announce="""
        prefix 2001:DB8:10:0::/64
        community 65000:0100 NO-EXPORT
        large_community 65000:01:2
        next_hop SELF
        peers 2001:0db8::1 10.0.0.1 2001:db8::1
        maintenance_file /run//director/./maintenance
    """, address="2001:db8:10::10", real="2001:db8:20::1").virtual_servers[0].bgp_announce
    assert announce.prefix == "2001:db8:10::/64"
    assert announce.communities == ("65000:100", "no-export")
    assert announce.large_communities == ("65000:1:2",)
    assert announce.next_hop == "self"
    assert announce.peers == ("2001:db8::1", "10.0.0.1")
    assert announce.maintenance_file == "/run/director/maintenance"


def test_the_md5_password_never_shows(tmp_path):
    model = config(tmp_path)
    assert model.bgp.peers[0].md5_password.reveal() == "hush-hush"
    shown = json.dumps(config_json(model, "test")) + dump_text(model, "test") + repr(model)
    assert "hush-hush" not in shown
    assert config_json(model, "test")["bgp"]["peers"][0]["md5_password"] == "********"


def test_a_file_without_extensions_dumps_as_before(tmp_path):
    """A keepalived.conf stays one: no bgp key, no bgp_announce key."""
    result = load(tmp_path, "virtual_server 192.0.2.10 80 {\n protocol TCP\n"
                            " real_server 10.1.0.1 80 {\n }\n}\n")
    data = config_json(result.config, "test")
    assert "bgp" not in data and "bgp_announce" not in data["virtual_servers"][0]
    assert "BGP" not in dump_text(result.config, "test")


def test_a_prefix_outside_the_address_is_a_warning_not_an_error(tmp_path):
    result = load(tmp_path, PEERS % {"local_as": 65001, "router_id": ""} +
                  SERVER % {"address": "192.0.2.10", "real": "10.1.0.1",
                            "announce": "prefix 192.0.2.0/28"} +
                  SERVER % {"address": "192.0.2.20", "real": "10.1.0.1",
                            "announce": "prefix 192.0.2.0/28"})
    # the same prefix with the same block in two virtual servers is allowed
    assert result.ok, [str(d) for d in result.diagnostics]
    assert [(d.severity, d.location.line, d.message) for d in result.diagnostics] == [
        ("warning", 30, "virtual_server 192.0.2.20:80/TCP: bgp_announce prefix 192.0.2.0/28 "
                        "does not contain 192.0.2.20: the router sends that address's flows "
                        "elsewhere")]


def test_bgp_keywords_are_marked_as_director_extensions():
    from director.config.docs import render
    text = render()
    assert "## director extensions" in text
    assert "`bgp` (top level)" in text and "`bgp_announce` (virtual_server)" in text
    for block in ("bgp", "peer", "bgp_announce"):
        section = text.split(f"\n## {block}\n", 1)[1]
        assert section.lstrip().startswith("*director extension*"), block


@pytest.mark.parametrize("keyword, words", [
    ("community", "65000:\u00b2"), ("community", "1:" + "9" * 5000),
    ("large_community", "1:2:" + "9" * 5000), ("med", "9" * 5000)])
def test_odd_digits_are_errors_not_crashes(tmp_path, keyword, words):
    result = load(tmp_path, PEERS % {"local_as": 65001, "router_id": ""} +
                  SERVER % {"address": "192.0.2.10", "real": "10.1.0.1",
                            "announce": f"{keyword} {words}"})
    assert not result.ok
    assert [d.severity for d in result.diagnostics] == ["error"]


def test_a_huge_as_number_is_an_error_not_a_crash(tmp_path):
    result = load(tmp_path, PEERS % {"local_as": "9" * 5000, "router_id": ""})
    assert [d.severity for d in result.diagnostics] == ["error"]
