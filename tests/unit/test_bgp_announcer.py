"""The announcer's rules, table-driven: configurations parsed by the real loader, live state
as values, decisions and commands compared whole."""

from __future__ import annotations

import pytest

from director.bgp.announcer import Decision, Health, changes, desired, peers_of, shutdown
from director.bgp.model import Peer, Route, RouteCommand
from director.config import load_config

WEB = "192.0.2.10:80/TCP"
TLS = "192.0.2.10:443/TCP"
PREFIX = "192.0.2.10/32"
BOTH = ("10.0.0.1", "10.0.0.2")

HEAD = """
vrrp_instance VI_1 {
    interface eth0
    virtual_router_id 51
    priority 100
    virtual_ipaddress {
        192.0.2.10
    }
}
bgp {
    local_as 65001
    router_id 10.0.0.11
    hold_time 9
    peer 10.0.0.1 {
        peer_as 65000
        local_address 10.0.0.11
        md5_password hush-hush
        hold_time 30
    }
    peer 10.0.0.2 {
        peer_as 65002
        passive
        ttl 2
        description "spine-2"
    }
}
"""


def server(port: int, announce: str) -> str:
    return f"""
virtual_server 192.0.2.10 {port} {{
    protocol TCP
    real_server 10.1.0.1 {port} {{
    }}
    bgp_announce {{
        {announce}
    }}
}}
"""


def load(tmp_path, *servers: str):
    path = tmp_path / "keepalived.conf"
    path.write_text(HEAD + "".join(servers))
    result = load_config(str(path), config_id="test", interface_exists=None)
    assert result.ok, [str(d) for d in result.diagnostics]
    return result.config


UP = Health(quorum_ok=True, live=2)
NO_QUORUM = Health(quorum_ok=False, live=0)
DRAINED = Health(quorum_ok=True, live=0)
MAINTENANCE = "/run/director/maintenance"
MEDS = "med 100\n down_med 1000\n maintenance_med 500\n"
FOLLOW = f"vrrp_instance VI_1\n maintenance_file {MAINTENANCE}\n"


def route(med: int | None) -> Route:
    return Route(PREFIX, "self", med, ("65000:100",))


# (name, bgp_announce of :80 (and of :443 when not None), health, roles, maintenance files,
#  expected: (med or "withdraw", cause, peers))
CASES = [
    ("healthy", "med 100", None, {WEB: UP}, {}, set(), (100, "healthy", BOTH)),
    ("healthy without med", "", None, {WEB: UP}, {}, set(), (None, "healthy", BOTH)),
    ("quorum lost", "med 100", None, {WEB: NO_QUORUM}, {}, set(),
     ("withdraw", f"quorum lost on {WEB}", BOTH)),
    ("all drained", "med 100", None, {WEB: DRAINED}, {}, set(),
     ("withdraw", f"all servers drained on {WEB}", BOTH)),
    ("not checked yet", "med 100", None, {}, {}, set(),
     ("withdraw", f"no health known yet for {WEB}", BOTH)),
    ("quorum lost, down_med", MEDS, None, {WEB: NO_QUORUM}, {}, set(),
     (1000, f"quorum lost on {WEB}", BOTH)),
    ("drained, down_med", MEDS, None, {WEB: DRAINED}, {}, set(),
     (1000, f"all servers drained on {WEB}", BOTH)),
    ("MASTER", "med 100\n vrrp_instance VI_1", None, {WEB: UP}, {"VI_1": "MASTER"}, set(),
     (100, "healthy", BOTH)),
    ("BACKUP", "med 100\n vrrp_instance VI_1", None, {WEB: UP}, {"VI_1": "BACKUP"}, set(),
     ("withdraw", "VI_1 is BACKUP", BOTH)),
    ("BACKUP withdraws despite down_med", MEDS + FOLLOW, None, {WEB: UP},
     {"VI_1": "BACKUP"}, set(), ("withdraw", "VI_1 is BACKUP", BOTH)),
    ("FAULT", "vrrp_instance VI_1", None, {WEB: UP}, {"VI_1": "FAULT"}, set(),
     ("withdraw", "VI_1 is FAULT", BOTH)),
    ("instance not running", "vrrp_instance VI_1", None, {WEB: UP}, {}, set(),
     ("withdraw", "VI_1 is not running", BOTH)),
    ("maintenance without maintenance_med",
     f"med 100\n maintenance_file {MAINTENANCE}", None, {WEB: UP}, {}, {MAINTENANCE},
     ("withdraw", f"maintenance ({MAINTENANCE})", BOTH)),
    ("maintenance with maintenance_med", MEDS + FOLLOW, None, {WEB: UP},
     {"VI_1": "MASTER"}, {MAINTENANCE}, (500, f"maintenance ({MAINTENANCE})", BOTH)),
    ("another file is no maintenance", MEDS + FOLLOW, None, {WEB: UP},
     {"VI_1": "MASTER"}, {"/run/other"}, (100, "healthy", BOTH)),
    ("maintenance and unhealthy: the higher MED", MEDS + FOLLOW, None, {WEB: NO_QUORUM},
     {"VI_1": "MASTER"}, {MAINTENANCE}, (1000, f"quorum lost on {WEB}", BOTH)),
    ("maintenance (withdraw) beats down_med",
     f"med 100\n down_med 1000\n maintenance_file {MAINTENANCE}", None, {WEB: NO_QUORUM},
     {}, {MAINTENANCE}, ("withdraw", f"maintenance ({MAINTENANCE})", BOTH)),
    ("two ports, both healthy", "med 100", "med 100", {WEB: UP, TLS: UP}, {}, set(),
     (100, "healthy", BOTH)),
    ("two ports, one lost its quorum", "med 100", "med 100", {WEB: UP, TLS: NO_QUORUM}, {},
     set(), ("withdraw", f"quorum lost on {TLS}", BOTH)),
    ("two ports, one drained, down_med", MEDS, MEDS, {WEB: DRAINED, TLS: UP}, {}, set(),
     (1000, f"all servers drained on {WEB}", BOTH)),
    ("peers subset", "med 100\n peers 10.0.0.2", None, {WEB: UP}, {}, set(),
     (100, "healthy", ("10.0.0.2",))),
]


@pytest.mark.parametrize("announce, other, health, roles, maintenance, expected",
                         [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_desired(tmp_path, announce, other, health, roles, maintenance, expected):
    servers = [server(80, announce + "\n community 65000:100")]
    if other is not None:
        servers.append(server(443, other + "\n community 65000:100"))
    decisions = desired(load(tmp_path, *servers), health, roles, frozenset(maintenance))
    med, cause, peers = expected
    assert decisions == {PREFIX: Decision(PREFIX, None if med == "withdraw" else route(med),
                                          cause, peers)}


def decisions_of(tmp_path, announce: str, health=UP) -> dict[str, Decision]:
    return desired(load(tmp_path, server(80, announce + "\n community 65000:100")),
                   {WEB: health}, {}, frozenset())


def announce(peer: str, med: int | None) -> RouteCommand:
    return RouteCommand("announce", peer, route(med))


def withdraw(peer: str, med: int | None) -> RouteCommand:
    return RouteCommand("withdraw", peer, route(med))


# (name, bgp_announce before, health before, after, health after, commands)
CHANGES = [
    ("unchanged: nothing", "med 100", UP, "med 100", UP, []),
    ("a reload changing the med: one re-announce per peer", "med 100\n peers 10.0.0.1", UP,
     "med 200\n peers 10.0.0.1", UP, [announce("10.0.0.1", 200)]),
    ("first announcement", "med 100", NO_QUORUM, "med 100", UP,
     [announce("10.0.0.1", 100), announce("10.0.0.2", 100)]),
    ("quorum lost: withdrawn from every peer", "med 100", UP, "med 100", NO_QUORUM,
     [withdraw("10.0.0.1", 100), withdraw("10.0.0.2", 100)]),
    ("down_med: re-announced with it", MEDS, UP, MEDS, NO_QUORUM,
     [announce("10.0.0.1", 1000), announce("10.0.0.2", 1000)]),
    ("a peer dropped from peers: withdrawn there only", "med 100", UP,
     "med 100\n peers 10.0.0.2", UP, [withdraw("10.0.0.1", 100)]),
    ("a peer added to peers: announced there only", "med 100\n peers 10.0.0.2", UP,
     "med 100", UP, [announce("10.0.0.1", 100)]),
    ("still withdrawn: nothing", "med 100", NO_QUORUM, "med 200", DRAINED, []),
]


@pytest.mark.parametrize("before, health_before, after, health_after, commands",
                         [case[1:] for case in CHANGES], ids=[case[0] for case in CHANGES])
def test_changes(tmp_path, before, health_before, after, health_after, commands):
    old = decisions_of(tmp_path, before, health_before)
    new = decisions_of(tmp_path, after, health_after)
    assert changes(old, new) == commands


def test_withdrawals_come_before_announcements(tmp_path):
    first = load(tmp_path, server(80, "prefix 192.0.2.0/31\n med 1"))
    old = desired(first, {WEB: UP}, {}, frozenset())
    second = load(tmp_path, server(80, "prefix 192.0.2.8/29\n med 1"))
    new = desired(second, {WEB: UP}, {}, frozenset())
    assert [(c.action, c.route.prefix) for c in changes(old, new)] == [
        ("withdraw", "192.0.2.0/31"), ("withdraw", "192.0.2.0/31"),
        ("announce", "192.0.2.8/29"), ("announce", "192.0.2.8/29")]


def test_shutdown_withdraws_everything_announced(tmp_path):
    config = load(tmp_path, server(80, "med 100\n community 65000:100"),
                  server(8080, "prefix 198.51.100.0/24\n peers 10.0.0.2"))
    current = desired(config, {WEB: UP, "192.0.2.10:8080/TCP": NO_QUORUM}, {}, frozenset())
    stopping = shutdown(current)
    assert stopping == {PREFIX: Decision(PREFIX, None, "shutdown", BOTH),
                        "198.51.100.0/24": Decision("198.51.100.0/24", None, "shutdown",
                                                    ("10.0.0.2",))}
    # what was announced goes; what was withdrawn already is not withdrawn again
    assert changes(current, stopping) == [withdraw("10.0.0.1", 100), withdraw("10.0.0.2", 100)]
    assert changes(stopping, stopping) == []


def test_peers_take_the_blocks_defaults_and_their_overrides(tmp_path):
    assert peers_of(load(tmp_path)) == (
        Peer("10.0.0.1", peer_as=65000, local_as=65001, router_id="10.0.0.11",
             local_address="10.0.0.11", hold_time=30, md5_password="hush-hush"),
        Peer("10.0.0.2", peer_as=65002, local_as=65001, router_id="10.0.0.11", hold_time=9,
             passive=True, ttl=2, description="spine-2"))
    assert "hush-hush" not in repr(peers_of(load(tmp_path)))


def test_no_bgp_block_no_peers_no_decisions(tmp_path):
    path = tmp_path / "plain.conf"
    path.write_text("virtual_server 192.0.2.10 80 {\n protocol TCP\n real_server 10.1.0.1 80 "
                    "{\n }\n}\n")
    config = load_config(str(path), config_id="test", interface_exists=None).config
    assert peers_of(config) == ()
    assert desired(config, {WEB: UP}, {}, frozenset()) == {}
