"""The ExaBGP driver (director/bgp/exabgp.py) against a real router: Debian's BIRD 2 in a
namespace of its own (its configuration, log and control socket in the lab's temp dir,
never the system's), exporting what it learns to its kernel table with ECMP (merge paths).
Each director namespace runs tests/functional/bgp_harness.py: the driver under gevent, as the
daemon will run it, ExaBGP its child. What counts is what the router does: its kernel table
(``ip -j route``) and ``birdc show route all``.

Times are measured and printed (run with -s to see them), never asserted."""

from __future__ import annotations

import json
import os
import select
import signal
import sys
import time
from pathlib import Path

import pytest

from tests.functional.bird import (DIRECTOR_AS, HOLD_TIME, NEEDS_BIRD_AND_EXABGP, ROUTER,
                                   ROUTER_AS, VIP, Bird)
from tests.functional.lab import wait_for

pytestmark = [pytest.mark.netns, pytest.mark.slow, pytest.mark.timeout(180),
              *NEEDS_BIRD_AND_EXABGP]

ROOT = Path(__file__).resolve().parents[2]
HARNESS = ROOT / "tests" / "functional" / "bgp_harness.py"
MD5 = "s3cret; with {braces} and spaces"   # the second director's session is signed

class Harness:
    """bgp_harness.py in a director namespace, ordered over its stdin."""

    def __init__(self, lab, host, address, md5=None, peer=ROUTER):
        self.lab, self.host, self.address = lab, host, address
        self.state = lab.tmp / f"{host.name}-state"
        self.process = lab._popen(host, [sys.executable, HARNESS, self.state],
                                  env={"PYTHONPATH": str(ROOT)}, pipes=True)
        self.peer = {"address": peer, "peer_as": ROUTER_AS, "local_as": DIRECTOR_AS,
                     "router_id": address, "local_address": address, "hold_time": HOLD_TIME,
                     "md5_password": md5}

    def read(self, timeout=10.0) -> dict:
        ready, _, _ = select.select([self.process.stdout], [], [], timeout)
        line = self.process.stdout.readline() if ready else ""
        assert line, f"no answer from the harness\n{self.lab.log_of(self.process)[-3000:]}"
        return json.loads(line)

    def ask(self, op, **fields) -> dict:
        self.process.stdin.write(json.dumps({"op": op, **fields}) + "\n")
        self.process.stdin.flush()
        return self.read()

    def start(self):
        assert self.ask("start", peers=[self.peer]) == {"ok": True}

    def announce(self, med=50, communities=("65001:100",)):
        return self.ask("routes", routes={ROUTER: {VIP: {"med": med,
                                                         "communities": list(communities)}}})

    def withdraw(self):
        return self.ask("routes", routes={})

    def session(self, peer=ROUTER) -> dict:
        return self.ask("sessions")[peer]

    def log(self) -> str:
        return self.lab.log_of(self.process)


def router_and_directors(lab, count=1, md5=None):
    switch = lab.switch()
    router = lab.host("r", [(switch, "eth0", [f"{ROUTER}/24"])])
    addresses = [f"10.0.0.{n + 2}" for n in range(count)]
    directors = [lab.host(f"d{n + 1}", [(switch, "eth0", [f"{a}/24"])])
                 for n, a in enumerate(addresses)]
    bird = Bird(lab, router, {f"d{n + 1}": a for n, a in enumerate(addresses)}, md5 or {})
    bird.start()
    harnesses = [Harness(lab, host, a, (md5 or {}).get(a))
                 for host, a in zip(directors, addresses)]
    for harness in harnesses:
        harness.start()
    return bird, harnesses


def wait_route(bird, hops, timeout, why, harness=None) -> float:
    """Wait until the router's kernel table has VIP via exactly ``hops``; the seconds it took."""
    began = time.monotonic()
    wait_for(lambda: bird.nexthops() == set(hops), timeout, interval=0.005,
             message=lambda: f"{why}: router has {bird.nexthops()}, wanted {set(hops)}\n"
                             f"{bird.log.read_text()[-2000:] if bird.log.exists() else ''}\n"
                             f"{harness.log()[-4000:] if harness else ''}")
    return time.monotonic() - began


def test_two_directors_ecmp_attributes_and_withdraw(lab):
    bird, (d1, d2) = router_and_directors(lab, 2, md5={"10.0.0.3": MD5})
    wait_for(lambda: d1.session()["state"] == "up" and d2.session()["state"] == "up", 20,
             message=lambda: f"sessions: {d1.session()} {d2.session()}\n{d2.log()[-3000:]}")
    config = d2.state / "exabgp.conf"
    assert config.stat().st_mode & 0o777 == 0o600       # it holds d2's MD5 password

    d1.announce()
    d2.announce()
    wait_route(bird, {"10.0.0.2", "10.0.0.3"}, 15, "two nexthops (ECMP)", d1)
    shown = bird.birdc("show", "route", "all", VIP).stdout
    assert "BGP.med: 50" in shown and "(65001,100)" in shown, shown
    d1.announce()                                        # the same again: nothing is sent
    assert d1.ask("counters")["commands"] == 1

    began = time.monotonic()
    d1.withdraw()
    wait_route(bird, {"10.0.0.3"}, 10, "d1's path withdrawn", d1)
    one = time.monotonic() - began
    began = time.monotonic()
    d2.withdraw()
    wait_route(bird, set(), 10, "d2's path withdrawn", d2)
    print(f"\nwithdraw -> router kernel table: {one * 1000:.0f} ms (one of two paths), "
          f"{(time.monotonic() - began) * 1000:.0f} ms (the last path)")
    assert bird.established("d1") and bird.established("d2")   # withdrawn, not disconnected
    for harness in (d1, d2):
        counters = harness.ask("counters")
        assert counters["commands"] == 2 and counters["command_errors"] == 0, counters
        assert counters["dropped_lines"] == 0 and counters["session_drops"] == 0, counters


def test_exabgp_killed_is_restarted_and_the_route_restored(lab):
    bird, (d1,) = router_and_directors(lab)
    d1.announce()
    wait_route(bird, {"10.0.0.2"}, 20, "announced", d1)
    pid = d1.ask("pid")["pid"]
    os.kill(pid, signal.SIGKILL)
    began = time.monotonic()
    wait_for(lambda: d1.ask("counters")["restarts"] == 1, 10,
             message=lambda: d1.log()[-3000:])
    wait_route(bird, {"10.0.0.2"}, 20, "restored after the restart", d1)
    print(f"\nExaBGP killed -> route back at the router: {time.monotonic() - began:.2f} s")
    assert d1.ask("pid")["pid"] != pid
    assert d1.ask("running") == {"running": True}
    counters = d1.ask("counters")
    assert counters["session_drops"] == 1 and "SIGKILL" in counters["last_error"], counters
    assert d1.session()["flaps"] == 1


def test_router_down_then_up(lab):
    bird, (d1,) = router_and_directors(lab)
    d1.announce()
    wait_route(bird, {"10.0.0.2"}, 20, "announced", d1)
    bird.stop()
    wait_for(lambda: d1.session()["state"] != "up", 15, message=lambda: d1.log()[-3000:])
    session = d1.session()
    assert session["flaps"] == 1 and session["last_error"], session
    assert d1.ask("counters")["session_drops"] == 1
    bird.start()
    wait_for(lambda: d1.session()["state"] == "up", 30, message=lambda: d1.log()[-3000:])
    wait_route(bird, {"10.0.0.2"}, 15, "back once the session is", d1)
    assert d1.ask("counters")["restarts"] == 0           # ExaBGP itself never died


def test_director_killed_takes_exabgp_and_the_route_with_it(lab):
    bird, (d1,) = router_and_directors(lab)
    d1.announce()
    wait_route(bird, {"10.0.0.2"}, 20, "announced", d1)
    exabgp = d1.ask("pid")["pid"]
    d1.process.send_signal(signal.SIGKILL)
    began = time.monotonic()
    wait_route(bird, set(), HOLD_TIME, "the router dropped a dead director's route")
    gone = time.monotonic() - began
    wait_for(lambda: not Path(f"/proc/{exabgp}").exists(), 5,
             message=f"ExaBGP {exabgp} outlived its director")
    print(f"\ndirector SIGKILLed -> route gone at the router: {gone * 1000:.0f} ms "
          f"(hold time {HOLD_TIME} s)")


def test_term_withdraws_and_waits_for_the_acknowledgement(lab):
    bird, (d1,) = router_and_directors(lab)
    d1.announce()
    wait_route(bird, {"10.0.0.2"}, 20, "announced", d1)
    d1.process.send_signal(signal.SIGTERM)
    assert d1.read() == {"event": "withdrawn", "acknowledged": True}
    # the harness holds here: ExaBGP still runs, so the route left by a withdrawal
    wait_route(bird, set(), 5, "withdrawn at TERM", d1)
    assert bird.established("d1")
    d1.process.stdin.write("exit\n")
    d1.process.stdin.flush()
    assert d1.read() == {"event": "stopped"}
    assert d1.process.wait(10) == 0


def test_a_peer_that_never_answers(lab):
    switch = lab.switch()
    host = lab.host("d1", [(switch, "eth0", ["10.0.0.2/24"])])
    d1 = Harness(lab, host, "10.0.0.2", peer="10.0.0.99")          # nobody has that address
    d1.start()
    d1.ask("routes", routes={"10.0.0.99": {VIP: {"med": 5}}})
    wait_for(lambda: d1.ask("sessions")["10.0.0.99"]["failed_connects"] >= 2, 30,
             message=lambda: d1.log()[-3000:])
    session = d1.ask("sessions")["10.0.0.99"]
    assert session["state"] != "up" and session["flaps"] == 0, session
    assert d1.ask("running") == {"running": True}
    counters = d1.ask("counters")
    assert counters["restarts"] == 0 and counters["command_errors"] == 0, counters
    d1.process.send_signal(signal.SIGTERM)
    assert d1.read()["acknowledged"] is True
    d1.process.stdin.write("exit\n")
    d1.process.stdin.flush()
    assert d1.process.wait(15) == 0


def test_reload_restarts_exabgp_only_when_the_peers_change(lab):
    bird, (d1,) = router_and_directors(lab)
    d1.announce()
    wait_route(bird, {"10.0.0.2"}, 20, "announced", d1)
    pid = d1.ask("pid")["pid"]
    assert d1.ask("configure", peers=[d1.peer]) == {"ok": True}       # the same peers
    assert d1.ask("pid")["pid"] == pid and d1.ask("counters")["reloads"] == 0
    changed = {**d1.peer, "hold_time": 12}
    assert d1.ask("configure", peers=[changed]) == {"ok": True}
    wait_for(lambda: d1.ask("pid")["pid"] not in (pid, None), 10, message=lambda: d1.log())
    assert "hold-time 12;" in (d1.state / "exabgp.conf").read_text()
    wait_for(lambda: d1.session()["state"] == "up", 20, message=lambda: d1.log()[-3000:])
    wait_route(bird, {"10.0.0.2"}, 15, "restored after the reload", d1)
    counters = d1.ask("counters")
    assert (counters["reloads"], counters["restarts"], counters["session_drops"]) == (1, 0, 0)
