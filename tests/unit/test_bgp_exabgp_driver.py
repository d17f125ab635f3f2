"""The ExaBGP driver's bookkeeping, without ExaBGP: what it makes of the lines ExaBGP sends
(sessions, flaps, acknowledgements, malformed lines), the routes it refuses, the file it
writes. The talk with a real ExaBGP and router is tests/functional/test_bgp_exabgp.py."""

from __future__ import annotations

import json
import os
import stat

import pytest

from director.bgp import exabgp_text as text
from director.bgp.exabgp import RESTART_PAUSES, ExaBgpEngine, restart_pause
from director.bgp.model import Peer, Route

PEER = Peer("10.0.0.1", 65000, 65001, "10.0.0.2", "10.0.0.2", md5_password="secret")


def state(peer: str, value: str, reason: str = "") -> str:
    neighbor = {"address": {"local": "10.0.0.2", "peer": peer}, "state": value}
    if reason:
        neighbor["reason"] = reason
    return json.dumps({"exabgp": "5.0.15", "type": "state", "neighbor": neighbor})


def engine(tmp_path) -> ExaBgpEngine:
    driver = ExaBgpEngine(tmp_path / "state")
    driver.peers = (PEER,)
    return driver


def test_constructing_does_nothing(tmp_path):
    ExaBgpEngine(tmp_path / "state")
    assert not (tmp_path / "state").exists()


def test_sessions_start_down_and_count_flaps_with_the_last_error(tmp_path):
    driver = engine(tmp_path)
    assert driver.sessions()["10.0.0.1"].state == "down"
    driver._heard(state("10.0.0.1", "connected"))
    assert driver.sessions()["10.0.0.1"].state == "connecting"
    driver._heard(state("10.0.0.1", "up"))
    driver._heard(state("10.0.0.1", "down", "peer reset"))
    session = driver.sessions()["10.0.0.1"]
    assert (session.state, session.flaps, session.last_error) == ("down", 1, "peer reset")
    assert driver.counters().session_drops == 1
    driver._heard(state("10.0.0.1", "connected"))
    driver._heard(state("10.0.0.1", "down", "closing connection"))
    session = driver.sessions()["10.0.0.1"]
    assert (session.flaps, session.failed_connects) == (1, 1)
    driver._heard(state("10.0.0.9", "up"))                   # not a peer of ours
    assert set(driver.sessions()) == {"10.0.0.1"}


def test_malformed_lines_are_counted_drops(tmp_path):
    driver = engine(tmp_path)
    for line in ("garbage", "{", state("10.0.0.1", "sideways"), "done"):   # done: no command
        driver._heard(line)
    assert driver.counters().dropped_lines == 4
    assert driver.sessions()["10.0.0.1"].state == "down"


def test_an_error_acknowledgement_takes_the_announcement_back(tmp_path):
    driver = engine(tmp_path)
    route = Route("192.0.2.10/32")
    change = text.Change("10.0.0.1", route, True)
    driver.announced = {"10.0.0.1": {route.prefix: route}}
    driver.pending.append(change)
    driver._heard("error")
    assert driver.announced == {"10.0.0.1": {}}               # the next set_routes tries again
    counters = driver.counters()
    assert counters.command_errors == 1 and "announce route 192.0.2.10/32" in counters.last_error
    assert driver.settled.is_set()


def test_routes_that_cannot_be_said_are_counted_once_and_left_out(tmp_path):
    driver = engine(tmp_path)
    bad, good = Route("192.0.2.10/24"), Route("192.0.2.11/32")
    for _ in range(3):
        driver.set_routes({"10.0.0.1": {bad.prefix: bad, good.prefix: good}})
    assert driver.desired == {"10.0.0.1": {good.prefix: good}}
    assert driver.counters().errors == 1


def test_after_withdraw_all_no_route_goes_out_again(tmp_path):
    driver = engine(tmp_path)
    assert driver.withdraw_all(1.0) is True                 # no ExaBGP: nothing announced
    driver.set_routes({"10.0.0.1": {"192.0.2.10/32": Route("192.0.2.10/32")}})
    assert driver.desired == {}


def test_the_config_file_is_private(tmp_path):
    driver = engine(tmp_path)
    driver.state_dir.mkdir()
    driver.config_path.write_text("old, world-readable")
    os.chmod(driver.config_path, 0o644)
    driver._write_config()
    assert stat.S_IMODE(driver.config_path.stat().st_mode) == 0o600
    assert "md5-password" in driver.config_path.read_text()


def test_start_refuses_a_bad_peer_before_doing_anything(tmp_path):
    driver = ExaBgpEngine(tmp_path / "state")
    with pytest.raises(ValueError):
        driver.start((Peer("nowhere", 65000, 65001, "10.0.0.2"),))
    assert not (tmp_path / "state").exists()


def test_restart_pause_doubles_up_to_a_ceiling():
    assert [restart_pause(n) for n in range(3)] == list(RESTART_PAUSES[:3])
    assert restart_pause(100) == RESTART_PAUSES[-1]


def test_a_state_directory_too_deep_for_a_unix_socket_is_refused(tmp_path):
    driver = ExaBgpEngine(tmp_path / ("x" * 120))
    with pytest.raises(ValueError, match="too long for a Unix socket"):
        driver.start((PEER,))
