"""The announcer in the daemon (director/bgp/service.py) over a stand-in engine implementing
engine.BgpEngine (the real one runs against BIRD in tests/functional/test_bgp_daemon.py):
what it hands the engine as health and roles change, what it records and shows, the order
of TERM, and which reloads restart the engine."""

from __future__ import annotations

from dataclasses import replace

from director.bgp.engine import EngineCounters
from director.bgp.model import Route, Session
from director.bgp.service import BgpService
from director.reconcile import BgpPlan
from tests.unit.test_bgp_announcer import WEB, load, server

PREFIX = "192.0.2.10/32"


class Engine:
    def __init__(self):
        self.calls = []
        self.routes = {}

    def start(self, peers): self.calls.append(("start", tuple(p.address for p in peers)))
    def configure(self, peers): self.calls.append(("configure", tuple(p.address for p in peers)))
    def set_routes(self, desired): self.routes = desired
    def sessions(self): return {"10.0.0.1": Session("10.0.0.1", "up", 0.0)}
    def withdraw_all(self, timeout):
        self.calls.append(("withdraw_all", tuple(self.routes)))
        self.routes = {}
        return True
    def stop(self): self.calls.append(("stop",))
    def counters(self): return EngineCounters(restarts=2)
    def running(self): return True


def service(tmp_path, health, roles, announce="med 10\n        vrrp_instance VI_1"):
    config = load(tmp_path, server(80, announce))
    engine = Engine()
    events = []
    bgp = BgpService(config, engine, lambda: health, lambda: roles,
                     on_event=lambda kind, **fields: events.append(fields))
    return bgp, engine, events


def test_the_engine_gets_what_health_and_roles_decide(tmp_path):
    health, roles = {WEB: (True, 1)}, {"VI_1": "MASTER"}
    bgp, engine, events = service(tmp_path, health, roles)
    bgp._recompute()
    route = Route(PREFIX, med=10)
    assert engine.routes == {"10.0.0.1": {PREFIX: route}, "10.0.0.2": {PREFIX: route}}
    roles["VI_1"] = "BACKUP"
    bgp._recompute()
    assert engine.routes == {}
    health[WEB] = (False, 0)
    roles["VI_1"] = "MASTER"
    bgp._recompute()
    assert engine.routes == {}
    health[WEB] = (True, 1)
    bgp._recompute()
    bgp._recompute()                                    # nothing changed: nothing recorded
    assert [(e["action"], e["cause"]) for e in events] == [
        ("announce", "healthy"), ("withdraw", "VI_1 is BACKUP"),
        ("withdraw", f"quorum lost on {WEB}"), ("announce", "healthy")]
    view = bgp.view()
    assert [(p.prefix, p.announced, p.cause) for p in view.prefixes] == \
        [(PREFIX, True, "healthy")]
    assert [c.action for c in view.changes] == ["announce", "withdraw", "withdraw", "announce"]
    assert view.counters["restarts"] == 2 and view.sessions[0].state == "up"


def test_term_withdraws_everything_before_the_engine_stops(tmp_path):
    bgp, engine, events = service(tmp_path, {WEB: (True, 1)}, {"VI_1": "MASTER"})
    bgp.config = replace(bgp.config, bgp=replace(bgp.config.bgp, shutdown_delay=0.0))
    bgp.start()
    assert engine.routes
    bgp.withdraw_for_stop()
    bgp.stop()
    assert engine.calls == [("start", ("10.0.0.1", "10.0.0.2")),
                            ("withdraw_all", ("10.0.0.1", "10.0.0.2")), ("stop",)]
    assert events[-1] == {"prefix": PREFIX, "action": "withdraw", "cause": "shutdown"}
    assert bgp.not_running() == []


def test_only_a_reload_that_changes_peers_restarts_the_engine(tmp_path):
    bgp, engine, _ = service(tmp_path, {WEB: (True, 1)}, {"VI_1": "MASTER"})
    bgp.reload(load(tmp_path, server(80, "med 20")), BgpPlan(announcements=True))
    assert engine.calls == []
    bgp._recompute()
    assert engine.routes["10.0.0.1"][PREFIX].med == 20
    bgp.reload(bgp.config, BgpPlan(peers_changed=("10.0.0.1",)))
    assert engine.calls == [("configure", ("10.0.0.1", "10.0.0.2"))]
