"""Slow start (director/lb/slowstart.py): the ramp as a pure function of (since, now,
duration), the tracker that decides which rises ramp, their part in the pool rules, and the
load balancer waking per step, all on a FakeClock (the load balancer's monotonic time is
the fake's)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from director.check.service import RealServerState
from director.clock import FakeClock
from director.config import load_config
from director.lb import service as lb_service
from director.lb.model import DestinationKey, ServiceKey
from director.lb.pool import Live, live_weight, pool, weight_of
from director.lb.service import LoadBalancer
from director.lb.slowstart import (MIN_STEP, STEPS, Ramps, fraction, ramped_weight,
                                   step_seconds)
from director.notify import Notifier
from director.reconcile import plan_servers
from director.state import RampView, RealServerView
from metrics.collector import LabelCache, per_server_text


# --- the ramp, pure --------------------------------------------------------------------------

def test_the_ramp_goes_by_whole_steps_from_0_to_the_end():
    assert fraction(100.0, 100.0, 10.0) == 0.0
    assert fraction(100.0, 100.49, 10.0) == 0.0                 # steps of 0.5 s
    assert fraction(100.0, 100.5, 10.0) == pytest.approx(0.05)
    assert fraction(100.0, 104.99, 10.0) == pytest.approx(0.45)
    assert fraction(100.0, 109.99, 10.0) == pytest.approx(0.95)
    assert fraction(100.0, 110.0, 10.0) is None                  # over: full weight
    assert fraction(100.0, 100.0, 0.0) is None                   # off
    assert fraction(100.0, 99.0, 10.0) == 0.0                    # a clock that steps back


def test_a_timer_firing_a_hair_early_counts_as_on_its_step():
    assert fraction(100.0, 100.4999, 10.0) == pytest.approx(0.05)


def test_steps_are_never_shorter_than_min_step():
    assert step_seconds(60.0) == 60.0 / STEPS
    assert step_seconds(1.0) == MIN_STEP                         # 10 steps, not 20
    assert [fraction(0.0, t / 10, 1.0) for t in range(11)] == pytest.approx(
        [i / 10 for i in range(10)] + [None])


def test_the_weight_starts_at_1_and_ends_at_the_full_weight():
    assert ramped_weight(100, 0.0) == 1
    assert ramped_weight(100, 0.05) == 5
    assert ramped_weight(100, 0.5) == 50
    assert ramped_weight(100, None) == 100
    assert ramped_weight(1, 0.0) == 1                            # nothing to ramp
    assert ramped_weight(3, 0.5) == 2                            # rounded up
    assert ramped_weight(0, 0.5) == 0                            # weight 0 stays 0


def weights_over(duration: float, weight: int, clock: FakeClock, ramps: Ramps,
                 key=("vs", "rs")) -> list[tuple[float, int]]:
    """The weight at every next_step of a ramp, until it is over."""
    out = []
    for _ in range(1000):
        out.append((clock.now(), ramped_weight(weight, ramps.fraction(key, clock.now(),
                                                                        duration))))
        due = ramps.next_step(clock.now())
        if due is None:
            return out
        clock.set(due)
    raise AssertionError("the ramp never ended")


def test_a_ramp_is_20_monotonic_steps_ending_at_its_duration():
    clock, ramps = FakeClock(), Ramps()
    ramps.observe("k", True, False, clock.now())                 # start-up: up
    ramps.observe("k", False, False, clock.now())                # fails
    clock.advance(5)
    start = clock.now()
    assert ramps.observe("k", True, False, clock.now())          # back: a ramp
    ramps.fraction("k", clock.now(), 8.0)
    samples = weights_over(8.0, 100, clock, ramps, key="k")
    weights = [w for _, w in samples]
    assert weights == sorted(weights) and weights[0] == 1 and weights[-1] == 100
    assert len(set(weights)) == STEPS + 1                       # 1, 5, 10 ... 95, 100
    assert samples[-1][0] - start == pytest.approx(8.0)
    assert "k" not in ramps.ramps                                # over: forgotten


# --- which rises ramp ------------------------------------------------------------------------

def test_the_first_verdict_never_ramps():
    ramps = Ramps()
    assert not ramps.observe("up at start", True, False, 0.0)
    assert not ramps.observe("alpha", False, False, 0.0)         # starts down (alpha) ...
    assert not ramps.observe("alpha", True, False, 1.0, seen_failed=lambda: False)
    assert ramps.ramps == {}                                     # ... its first checks pass


def test_a_rise_after_failed_checks_ramps():
    ramps = Ramps()
    ramps.observe("alpha", False, False, 0.0)
    assert ramps.observe("alpha", True, False, 30.0, seen_failed=lambda: True)
    assert ramps.ramps["alpha"].since == 30.0
    ramps.observe("k", True, False, 0.0)
    ramps.observe("k", False, False, 1.0)                        # went down: it failed
    assert ramps.observe("k", True, False, 2.0, seen_failed=lambda: False)


def test_a_restore_from_a_drain_ramps_and_a_drain_ends_a_ramp():
    ramps = Ramps()
    ramps.observe("k", True, True, 0.0)                          # drained at start-up
    assert ramps.observe("k", True, False, 10.0)                 # restored
    assert not ramps.observe("k", True, True, 11.0)              # drained again: no ramp
    assert "k" not in ramps.ramps
    assert not ramps.observe("k", False, True, 12.0)             # down while drained
    assert not ramps.observe("k", True, True, 13.0)              # up, still drained
    assert ramps.observe("k", True, False, 14.0)                 # restored: ramps


def test_going_down_during_a_ramp_ends_it_and_the_next_rise_starts_again():
    ramps = Ramps()
    ramps.observe("k", False, False, 0.0)
    ramps.observe("k", True, False, 1.0)
    ramps.fraction("k", 5.0, 10.0)
    ramps.observe("k", False, False, 6.0)
    assert ramps.ramps == {} and ramps.next_step(6.0) is None
    ramps.observe("k", True, False, 7.0)
    assert ramps.fraction("k", 7.0, 10.0) == 0.0


def test_keep_forgets_the_servers_a_reload_removed():
    ramps = Ramps()
    for key in ("a", "b"):
        ramps.observe(key, False, False, 0.0)
        ramps.observe(key, True, False, 1.0)
    ramps.keep({"a"})
    assert set(ramps.seen) == set(ramps.ramps) == {"a"}
    ramps.observe("a", False, False, 2.0)
    ramps.keep(set())
    assert not ramps.went_down


# --- the pool rules --------------------------------------------------------------------------

CONFIG = """
virtual_server 192.0.2.10 80 {
    delay_loop 60
    lb_algo wrr
    lb_kind NAT
    protocol TCP
    quorum 150
    slow_start 10
    real_server 10.0.0.1 80 {
        weight 100
        TCP_CHECK {
            connect_timeout 1
        }
    }
    real_server 10.0.0.2 80 {
        weight 100
        TCP_CHECK {
            connect_timeout 1
        }
    }
}
"""
NAME = "192.0.2.10:80/TCP"


def config_of(tmp_path, text=CONFIG):
    path = tmp_path / "keepalived.conf"
    path.write_text(text)
    result = load_config(str(path), interface_exists=None)
    assert result.ok, [str(d) for d in result.errors]
    return result.config


def test_a_drain_wins_over_a_ramp_and_a_ramp_scales_the_checks_weight(tmp_path):
    real = config_of(tmp_path).virtual_servers[0].real_servers[0]
    assert weight_of(real, Live(ramp=0.5)) == 50
    assert weight_of(real, Live(ramp=0.5, drained=True)) == 0
    assert weight_of(real, Live(ramp=0.5, weight=40)) == 20       # misc_dynamic, FILE_CHECK
    assert weight_of(real, Live(ramp=0.5), ramped=False) == 100


def test_the_quorum_counts_a_ramping_server_at_its_full_weight(tmp_path):
    virtual = config_of(tmp_path).virtual_servers[0]
    lives = {"10.0.0.1": Live(), "10.0.0.2": Live(ramp=0.0)}
    assert live_weight(virtual, lambda real: lives[real.address]) == 200
    built = pool(virtual, ServiceKey("TCP", "192.0.2.10", 80),
                 lambda real: lives[real.address], True)
    assert {key.address: dest.weight for key, dest in built.destinations.items()} == \
        {"10.0.0.1": 100, "10.0.0.2": 1}


# --- the load balancer -----------------------------------------------------------------------

class Checks:
    """CheckService's part the load balancer reads, over real RealServerStates."""

    def __init__(self, config):
        self.listeners = []
        self.effect_listeners = []
        self.real_servers = [RealServerState(virtual, real, (NAME, f"{real.address}:80"))
                             for virtual in config.virtual_servers
                             for real in virtual.real_servers]

    def state_of(self, name, real):
        return next((s for s in self.real_servers if s.real_server.address == real.address),
                    None)

    def views(self, name, reals, with_jobs=False):
        return [None for _ in reals]

    def reload(self, config):
        """CheckService.apply's swap: kept servers get their new models."""
        for state, real in zip(self.real_servers, config.virtual_servers[0].real_servers):
            state.real_server = real

    def set(self, address, up=None, drained=None):
        state = next(s for s in self.real_servers if s.real_server.address == address)
        if drained is not None:
            state.drained = drained
        if up is not None and up != state.up:
            state.up = up
            for listener in self.listeners:
                listener(state)


@pytest.fixture
def balancer(tmp_path, monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(lb_service.time, "monotonic", clock.now)
    config = config_of(tmp_path)
    checks = Checks(config)
    heard = []
    lb = LoadBalancer(config, checks, "none", Notifier(None),
                      on_event=lambda kind, **fields: heard.append((kind, fields)))
    lb.start()
    lb.clock, lb.fake_checks, lb.heard = clock, checks, heard
    yield lb
    lb.stop()


def recover(lb, checks) -> None:
    """10.0.0.2 goes down (the load balancer sees it) and comes back: its ramp starts."""
    checks.set("10.0.0.2", up=False)
    desired(lb)
    checks.set("10.0.0.2", up=True)


def desired(lb, address="10.0.0.2") -> int | None:
    lb._converge_guarded(verify=False)
    found = lb.desired[ServiceKey("TCP", "192.0.2.10", 80)].destinations.get(
        DestinationKey(address, 80))
    return None if found is None else found.weight


def test_start_up_is_full_weight_and_a_recovery_ramps_step_by_step(balancer):
    lb, clock, checks = balancer, balancer.clock, balancer.fake_checks
    assert desired(lb) == 100 and lb.ramps.next_step(clock.now()) is None
    checks.set("10.0.0.2", up=False)
    assert desired(lb) is None
    clock.advance(3)
    checks.set("10.0.0.2", up=True)            # the listener: the ramp counts from now
    clock.advance(0.2)                         # the converge it wakes comes a little later
    assert desired(lb) == 1
    assert lb.ramps.next_step(clock.now()) == pytest.approx(clock.now() + 0.3)
    seen = []
    for _ in range(100):
        due = lb.ramps.next_step(clock.now())
        if due is None:
            break
        clock.set(due)
        seen.append(desired(lb))
    assert seen == sorted(seen) and seen[-1] == 100 and len(seen) == STEPS
    assert [kind for kind, _ in lb.heard] == ["quorum", "slow_start", "quorum"]
    assert lb.heard[1][1] == {"virtual_server": NAME, "real_server": "10.0.0.2:80",
                              "seconds": 10.0}
    # the quorum (150) is back as the ramp starts: it counts the ramping server in full
    assert lb.heard[2][1]["state"] == "up" and lb.heard[2][1]["live_weight"] == 200
    assert desired(lb, "10.0.0.1") == 100
    assert lb.quorum[NAME]


def test_the_ramp_is_in_the_real_servers_view(balancer):
    lb, clock, checks = balancer, balancer.clock, balancer.fake_checks
    recover(lb, checks)
    clock.advance(5)
    assert desired(lb) == 50
    (view,) = lb.virtual_servers()
    ramping = {real.address: real.ramp for real in view.real_servers}
    assert ramping["10.0.0.1"] is None
    ramp = ramping["10.0.0.2"]
    assert ramp.fraction == 0.5 and ramp.seconds == 10.0
    assert ramp.until - ramp.since == pytest.approx(10.0)
    data = view.real_servers[1].as_json()
    assert data["ramp"] == ramp.as_json() and data["desired_weight"] == 50
    text = per_server_text(SimpleNamespace(virtual_servers=(view,), jobs=lambda: ()),
                           LabelCache())
    ratios = [line for line in text.splitlines()
              if line.startswith("director_real_server_slow_start_ratio{")]
    assert ratios == ['director_real_server_slow_start_ratio{virtual_server="192.0.2.10:80/TCP",'
                      'real_server="10.0.0.2:80"} 0.5']


def test_a_reload_changing_only_slow_start_keeps_the_checks_and_the_ramp(balancer, tmp_path):
    lb, clock, checks = balancer, balancer.clock, balancer.fake_checks
    recover(lb, checks)
    clock.advance(5)
    assert desired(lb) == 50
    old = lb.config
    new = config_of(tmp_path, CONFIG.replace("slow_start 10", "slow_start 20"))
    servers = plan_servers(old, new)
    assert servers.unchanged and len(servers.kept) == 2        # no checker restarts
    checks.reload(new)
    lb.reload(new)
    assert desired(lb) == 25                                     # 5 s of 20, same start
    clock.advance(15)
    assert desired(lb) == 100


def test_a_server_without_slow_start_never_ramps(balancer, tmp_path):
    lb, checks = balancer, balancer.fake_checks
    config = config_of(tmp_path, CONFIG.replace("slow_start 10", ""))
    checks.reload(config)
    lb.reload(config)
    recover(lb, checks)
    assert desired(lb) == 100 and lb.ramps.ramps == {}


def test_the_view_json_has_no_ramp_when_none_runs():
    view = RealServerView("10.0.0.1:80", "10.0.0.1", 80, 1, None)
    assert view.as_json()["ramp"] is None
    assert RampView.of(100.0, 10.0, 0.25, 1000.0).as_json() == {
        "since": 1100.0, "until": 1110.0, "seconds": 10.0, "fraction": 0.25}


def test_slow_start_turned_off_mid_ramp_ends_the_ramp(balancer, tmp_path):
    lb, clock, checks = balancer, balancer.clock, balancer.fake_checks
    recover(lb, checks)
    clock.advance(2)
    assert desired(lb) == 20
    config = config_of(tmp_path, CONFIG.replace("slow_start 10", "slow_start 0"))
    checks.reload(config)
    lb.reload(config)
    assert desired(lb) == 100
    assert lb.ramps.ramps == {} and lb.ramps.next_step(clock.now()) is None


# --- what a step costs in the kernel ---------------------------------------------------------

def two_states(tmp_path, ramp: float):
    virtual = config_of(tmp_path).virtual_servers[0]
    key = ServiceKey("TCP", "192.0.2.10", 80)
    states = []
    for lives in ({"10.0.0.1": Live(), "10.0.0.2": Live(ramp=ramp)},
                  {"10.0.0.1": Live(), "10.0.0.2": Live(ramp=ramp + 0.05)}):
        states.append({key: pool(virtual, key, lambda real, lives=lives: lives[real.address],
                                 True)})
    return states


def test_a_step_is_one_destination_edit_on_ipvs(tmp_path):
    from director.lb.plan import EditDestination, plan
    before, after = two_states(tmp_path, 0.3)
    (operation,) = plan(after, before, frozenset(after))
    assert isinstance(operation, EditDestination)
    assert (operation.destination.key.address, operation.destination.weight) == \
        ("10.0.0.2", 35)


def test_a_step_refills_one_service_chain_on_nftables_not_the_table(tmp_path):
    from director.lb.nftables_script import chain_name, changes
    before, after = two_states(tmp_path, 0.3)
    done = changes(before, after)
    chain = chain_name(ServiceKey("TCP", "192.0.2.10", 80))
    assert done.touched == {f"chain {chain}"} and not done.gone
    assert "delete table" not in done.script and "prerouting" not in done.script
    assert f"flush chain inet director {chain}" in done.script
