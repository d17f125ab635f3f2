"""ExaBGP's configuration and process-API text (director/bgp/exabgp_text.py), pure."""

from __future__ import annotations

import base64

import pytest

from director.bgp import exabgp_text as text
from director.bgp.model import Peer, Route

PEER = Peer("10.0.0.1", peer_as=65000, local_as=65001, router_id="10.0.0.2",
            local_address="10.0.0.2")
RELAY = ["/usr/bin/python3", "-m", "director.bgp.relay", "/var/lib/director/exabgp.sock"]


def test_neighbor_block_says_every_peer_field():
    peer = Peer("10.0.0.1", peer_as=65000, local_as=65001, router_id="10.0.0.2",
                local_address="10.0.0.2", hold_time=30, port=1179, ttl=4,
                md5_password='a "quoted"; {secret}\n')
    block = text.neighbor_block(peer)
    for line in ("neighbor 10.0.0.1 {", "router-id 10.0.0.2;", "local-as 65001;",
                 "peer-as 65000;", "hold-time 30;", "local-address 10.0.0.2;",
                 "passive false;", "connect 1179;", "outgoing-ttl 4;", "md5-base64 true;",
                 "processes [ director ];", "neighbor-changes;"):
        assert line in block
    secret = base64.b64encode(peer.md5_password.encode()).decode()
    assert f"md5-password {secret};" in block
    assert "quoted" not in block                   # only its base64 reaches the file


def test_passive_peer_listens_on_its_port_and_needs_a_local_address():
    block = text.neighbor_block(Peer("10.0.0.1", 65000, 65001, "10.0.0.2", "10.0.0.2",
                                     passive=True))
    assert "passive true;" in block and "listen 179;" in block and "connect" not in block
    with pytest.raises(ValueError, match="passive peer needs a local_address"):
        text.check_peers([Peer("10.0.0.1", 65000, 65001, "10.0.0.2", passive=True)])


def test_without_local_address_exabgp_chooses():
    block = text.neighbor_block(Peer("10.0.0.1", 65000, 65001, "10.0.0.2"))
    assert "local-address" not in block


@pytest.mark.parametrize("peer, message", [
    (Peer("10.0.0.1; x", 65000, 65001, "10.0.0.2"), "not an IP address"),
    (Peer("10.0.0.1", 0, 65001, "10.0.0.2"), "peer_as 0"),
    (Peer("10.0.0.1", 65000, 2**32, "10.0.0.2"), "local_as"),
    (Peer("10.0.0.1", 65000, 65001, "2001:db8::1"), "router_id"),
    (Peer("10.0.0.1", 65000, 65001, "10.0.0.2", "2001:db8::2"), "address family"),
    (Peer("10.0.0.1", 65000, 65001, "10.0.0.2", hold_time=2), "hold_time 2"),
    (Peer("10.0.0.1", 65000, 65001, "10.0.0.2", port=0), "port 0"),
    (Peer("10.0.0.1", 65000, 65001, "10.0.0.2", ttl=256), "ttl 256"),
    (Peer("10.0.0.1", 65000, 65001, "10.0.0.2", md5_password=""), "empty md5"),
])
def test_a_peer_exabgp_cannot_be_given_is_refused_with_a_reason(peer, message):
    with pytest.raises(ValueError, match=message):
        text.config_text([peer], RELAY)


def test_duplicate_peers_are_refused():
    with pytest.raises(ValueError, match="given twice"):
        text.check_peers([PEER, PEER])


def test_config_runs_the_relay_as_a_json_api_process():
    config = text.config_text([PEER], RELAY)
    assert f"run {' '.join(RELAY)};" in config and "encoder json;" in config
    assert config.count("neighbor 10.0.0.1 {") == 1
    with pytest.raises(ValueError, match="plain words"):
        text.config_text([PEER], ["/state dir/python", "-m", "director.bgp.relay"])


def test_environment_keeps_root_in_the_foreground_and_acks():
    env = text.environment()
    assert env["exabgp_daemon_user"] == "root" and env["exabgp_daemon_drop"] == "false"
    assert env["exabgp_daemon_daemonize"] == "false" and env["exabgp_api_ack"] == "true"
    assert env["exabgp_log_destination"] == "stdout" and env["exabgp_api_respawn"] == "false"


def test_announce_and_withdraw_commands():
    route = Route("192.0.2.10/32", med=50, communities=("65001:100", "65001:200"),
                  large_communities=("65001:1:2",))
    assert text.announce_command("10.0.0.1", route) == (
        "neighbor 10.0.0.1 announce route 192.0.2.10/32 next-hop self med 50 "
        "community [ 65001:100 65001:200 ] large-community [ 65001:1:2 ]")
    assert text.withdraw_command("10.0.0.1", route) == (
        "neighbor 10.0.0.1 withdraw route 192.0.2.10/32 next-hop self")
    assert text.announce_command("10.0.0.1", Route("2001:db8::10/128",
                                                   next_hop="2001:db8::2")) == (
        "neighbor 10.0.0.1 announce route 2001:db8::10/128 next-hop 2001:db8::2")


@pytest.mark.parametrize("route, message", [
    (Route("192.0.2.10/32\nneighbor 10.0.0.9 announce"), "prefix"),
    (Route("192.0.2.10/24"), "prefix"),                       # host bits set
    (Route("192.0.2.10"), "no length"),
    (Route("192.0.2.10/32", next_hop="2001:db8::1"), "other address family"),
    (Route("192.0.2.10/32", next_hop="self; x"), "neither self"),
    (Route("192.0.2.10/32", med=-1), "med"),
    (Route("192.0.2.10/32", communities=("65001:100 ] med 1",)), "community"),
    (Route("192.0.2.10/32", communities=("65536:1",)), "community"),
    (Route("192.0.2.10/32", large_communities=("1:2",)), "large community"),
])
def test_a_route_that_cannot_be_said_is_refused(route, message):
    assert message in text.route_problem(route)


def test_a_good_route_has_no_problem():
    assert text.route_problem(Route("192.0.2.10/32", med=0, communities=("65535:65535",),
                                    large_communities=("4294967295:0:1",))) is None


def test_plan_sends_only_the_difference_withdrawals_first():
    a, b = Route("192.0.2.10/32", med=1), Route("192.0.2.11/32")
    a2 = Route("192.0.2.10/32", med=2)
    peers = {"10.0.0.1", "10.0.0.9"}
    assert text.plan({"10.0.0.1": {a.prefix: a}}, {"10.0.0.1": {a.prefix: a}}, peers) == []
    changes = text.plan({"10.0.0.1": {a2.prefix: a2}}, {"10.0.0.1": {a.prefix: a, b.prefix: b}},
                        peers)
    assert changes == [text.Change("10.0.0.1", b, False), text.Change("10.0.0.1", a2, True)]
    # a peer ExaBGP does not know gets nothing
    assert text.plan({"10.0.0.7": {a.prefix: a}}, {}, peers) == []


def test_parse_acknowledgements_and_session_reports():
    assert text.parse_line("done\n") == text.Ack(True)
    assert text.parse_line("error") == text.Ack(False)
    assert text.parse_line('{ "answer": "done", "message": "command completed" }') == \
        text.Ack(True)
    up = ('{ "exabgp": "5.0.15", "time": 1.0, "host" : "d", "pid" : 1, "ppid" : 1, '
          '"counter": 1, "type": "state", "neighbor": { "address": { "local": "10.0.0.2", '
          '"peer": "10.0.0.1" }, "asn": { "local": 65001, "peer": 65000 } , "state": "up" } }')
    assert text.parse_line(up) == text.PeerState("10.0.0.1", "up")
    down = up.replace('"state": "up"', '"state": "down", "reason": "peer reset"')
    assert text.parse_line(down) == text.PeerState("10.0.0.1", "down", "peer reset")
    fsm = up.replace('"type": "state"', '"type": "fsm"').replace('"up"', '"OPENSENT"')
    assert text.parse_line(fsm) == text.PeerFsm("10.0.0.1", "opensent")
    assert text.parse_line('{ "type": "notification", "notification": "shutdown" }') == \
        text.Shutdown()
    assert text.parse_line('{ "type": "update" }') == text.Other("update")


@pytest.mark.parametrize("line", ["garbage", "{not json", "[1, 2]",
                                  '{ "type": "state", "neighbor": {} }',
                                  '{ "type": "state", "neighbor": { "address": { "peer": 1 }, '
                                  '"state": "up" } }'])
def test_malformed_lines_are_named_not_raised(line):
    assert isinstance(text.parse_line(line), text.Malformed)
