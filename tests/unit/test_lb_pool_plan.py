"""The pool rules (inhibit, quorum with hysteresis, sorry server, groups, weights) and the
plan against the kernel's state (idempotent, foreign services untouched)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from director.config import load_config
from director.lb.model import Destination, DestinationKey, Pool, Service, ServiceKey
from director.lb.plan import (AddDestination, AddService, DeleteDestination, DeleteService,
                              EditDestination, EditService, plan)
from director.lb.pool import (Live, desired_state, initial_quorum, live_weight, paced,
                              quorum_step, service_keys)

SHARED = Path(__file__).resolve().parents[3] / "shared" / "configs" / "keepalived-samples"


def shared_sample(name: str) -> Path:
    """One of keepalived's samples from ../shared, which CI lays beside the clone; a clone
    without it skips the test that needs it, saying why, rather than failing."""
    if not SHARED.is_dir():
        pytest.skip(f"{SHARED} is not here (CI lays ../shared beside the clone)")
    return SHARED / name


def parse(tmp_path, text):
    path = tmp_path / "keepalived.conf"
    path.write_text(text)
    result = load_config(str(path), config_id="t", interface_exists=None)
    assert result.ok, [str(d) for d in result.errors]
    return result.config


POOL = """
virtual_server 192.0.2.10 80 {
    lb_algo wrr
    lb_kind NAT
    protocol TCP
    persistence_timeout 60
    quorum 3
    hysteresis 1
    sorry_server 198.51.100.9 8080
    real_server 10.0.0.1 80 {
        weight 2
    }
    real_server 10.0.0.2 80 {
        weight 1
        inhibit_on_failure
    }
    real_server 10.0.0.3 80 {
        weight 1
        lvs_method DR
    }
}
"""
VIP = ServiceKey("TCP", "192.0.2.10", 80, fwmark=None, family=4)


def lives_from(down=(), drained=(), weights=None):
    weights = weights or {}

    def lives(_virtual, real):
        return Live(up=real.address not in down, weight=weights.get(real.address),
                    drained=real.address in drained)
    return lives


def weights(state, key=VIP):
    return {k.address: d.weight for k, d in state[key].destinations.items()}


def test_all_up(tmp_path):
    config = parse(tmp_path, POOL)
    state = desired_state(config, lives_from(), {})
    pool = state[VIP]
    assert pool.service.scheduler == "wrr" and pool.service.persistence_timeout == 60
    assert weights(state) == {"10.0.0.1": 2, "10.0.0.2": 1, "10.0.0.3": 1}
    assert pool.destinations[DestinationKey("10.0.0.3", 80)].method == "DR"


def test_down_servers_leave_or_stay_at_weight_zero_with_inhibit(tmp_path):
    config = parse(tmp_path, POOL)
    state = desired_state(config, lives_from(down={"10.0.0.2", "10.0.0.3"}), {})
    assert weights(state) == {"10.0.0.1": 2, "10.0.0.2": 0}


def test_drain_and_dynamic_weights(tmp_path):
    config = parse(tmp_path, POOL)
    state = desired_state(config, lives_from(drained={"10.0.0.1"}, weights={"10.0.0.3": 7}), {})
    assert weights(state) == {"10.0.0.1": 0, "10.0.0.2": 1, "10.0.0.3": 7}


@pytest.mark.parametrize("up, weight, after, change", [
    (True, 4, True, None),          # at quorum + hysteresis: stays up
    (True, 2, True, None),          # quorum - hysteresis = 2: not below it, stays up
    (True, 1, False, False),        # below 2: lost
    (True, 0, False, False),        # nothing up: lost whatever the numbers
    (False, 3, False, None),        # needs quorum + hysteresis = 4 to come back
    (False, 4, True, True),
])
def test_quorum_hysteresis(tmp_path, up, weight, after, change):
    virtual = parse(tmp_path, POOL).virtual_servers[0]
    state, action = quorum_step(virtual, up, weight)
    assert state is after
    assert (action.up if action else None) is change


def test_quorum_lost_means_the_sorry_server_alone(tmp_path):
    config = parse(tmp_path, POOL)
    state = desired_state(config, lives_from(down={"10.0.0.1"}), {"192.0.2.10:80/TCP": False})
    assert weights(state) == {"198.51.100.9": 1}


def test_sorry_server_inhibit_keeps_it_at_weight_zero(tmp_path):
    config = parse(tmp_path, POOL.replace("sorry_server 198.51.100.9 8080",
                                          "sorry_server 198.51.100.9 8080\n"
                                          "    sorry_server_inhibit"))
    state = desired_state(config, lives_from(), {})
    assert weights(state)["198.51.100.9"] == 0


def test_alpha_starts_the_quorum_down():
    result = load_config(str(shared_sample("keepalived.conf.quorum")), config_id="t",
                         interface_exists=None)
    virtual = result.config.virtual_servers[0]
    assert initial_quorum(virtual, lambda real: Live(up=False)) is False
    assert initial_quorum(virtual, lambda real: Live(up=True)) is True


def test_a_clone_without_shared_skips_the_sample_tests(monkeypatch, tmp_path):
    """CI lays ../shared beside the clone; a clone without it skips, saying why."""
    monkeypatch.setattr(sys.modules[__name__], "SHARED", tmp_path / "absent")
    for test in (test_alpha_starts_the_quorum_down, test_groups_expand_ranges_and_fwmarks):
        with pytest.raises(pytest.skip.Exception, match="absent is not here"):
            test()


def test_groups_expand_ranges_and_fwmarks():
    result = load_config(str(shared_sample("keepalived.conf.virtual_server_group")),
                         config_id="t", interface_exists=None)
    config = result.config
    keys = service_keys(config.virtual_servers[0],
                        {g.name: g for g in config.virtual_server_groups})
    assert [str(k) for k in keys] == [
        "TCP 10.0.0.1:8080", "TCP 10.0.0.2:80", "TCP 192.168.200.1:1358",
        *[f"TCP 192.168.200.{n}:80" for n in range(3, 11)], "FWM 1 IPv4", "FWM 2 IPv4"]
    state = desired_state(config, lambda name, real: Live(), {})
    assert len(state) == 13 and all(len(pool.destinations) == 2 for pool in state.values())


def test_fwmark_services_carry_no_protocol_of_their_own(tmp_path):
    config = parse(tmp_path, POOL.replace("virtual_server 192.0.2.10 80", "virtual_server fwmark 9")
                   .replace("protocol TCP", "protocol UDP"))
    (key,) = desired_state(config, lives_from(), {})
    assert key == ServiceKey("TCP", fwmark=9)       # as IPVS reads it back


def test_ha_suspend_leaves_the_service_out(tmp_path):
    config = parse(tmp_path, POOL)
    assert desired_state(config, lives_from(), {}, frozenset({"192.0.2.10:80/TCP"})) == {}


# -- plan -------------------------------------------------------------------------------------

def test_matching_kernel_state_needs_nothing(tmp_path):
    """A restart finds its entries in the kernel and adopts them: no operation at all."""
    desired = desired_state(parse(tmp_path, POOL), lives_from(), {})
    assert plan(desired, dict(desired), frozenset(desired)) == []


def test_from_empty_kernel(tmp_path):
    desired = desired_state(parse(tmp_path, POOL), lives_from(), {})
    operations = plan(desired, {}, frozenset())
    assert isinstance(operations[0], AddService)
    assert [type(op) for op in operations[1:]] == [AddDestination] * 3


def test_one_change_is_one_operation(tmp_path):
    config = parse(tmp_path, POOL)
    before = desired_state(config, lives_from(), {})
    after = desired_state(config, lives_from(down={"10.0.0.3"}), {})
    assert plan(after, before, frozenset(before)) == [
        DeleteDestination(VIP, DestinationKey("10.0.0.3", 80))]
    inhibited = desired_state(config, lives_from(down={"10.0.0.2"}), {})
    assert plan(inhibited, before, frozenset(before)) == [
        EditDestination(VIP, Destination(DestinationKey("10.0.0.2", 80), 0, "NAT"))]


def test_edits_behind_our_back_are_put_back_and_foreign_services_left_alone(tmp_path):
    desired = desired_state(parse(tmp_path, POOL), lives_from(), {})
    pool = desired[VIP]
    tampered = dict(pool.destinations)
    tampered.pop(DestinationKey("10.0.0.1", 80))                              # deleted
    tampered[DestinationKey("10.0.0.2", 80)] = Destination(DestinationKey("10.0.0.2", 80), 9)
    foreign = ServiceKey("UDP", "203.0.113.5", 53)
    current = {VIP: Pool(pool.service, tampered), foreign: Pool(desired[VIP].service)}
    operations = plan(desired, current, frozenset(desired))
    assert operations == [
        AddDestination(VIP, pool.destinations[DestinationKey("10.0.0.1", 80)]),
        EditDestination(VIP, pool.destinations[DestinationKey("10.0.0.2", 80)])]


def test_service_settings_and_removed_services(tmp_path):
    desired = desired_state(parse(tmp_path, POOL), lives_from(), {})
    old_key = ServiceKey("TCP", "192.0.2.99", 80)
    changed = Service(VIP, "rr", 60)
    current = {VIP: Pool(changed, desired[VIP].destinations), old_key: Pool(changed)}
    operations = plan(desired, current, frozenset({VIP, old_key}))
    assert operations == [DeleteService(old_key), EditService(desired[VIP].service)]


def test_fwmark_and_address_services_sort_together():
    fwmark, plain = ServiceKey("TCP", fwmark=1), ServiceKey("TCP", "192.0.2.1", 80)
    desired = {fwmark: Pool(Service(fwmark)), plain: Pool(Service(plain))}
    assert [op.service.key for op in plan(desired, {}, frozenset())] == [plain, fwmark]


@pytest.mark.parametrize("written, value", [("", None), ("lvs_flush_onstop", "ALL"),
                                            ("lvs_flush_on_stop VS", "VS")])
def test_lvs_flush_on_stop_alone_or_for_our_services(tmp_path, written, value):
    config = parse(tmp_path, f"global_defs {{\n    {written}\n}}\n")
    assert config.global_defs.lvs_flush_on_stop == value


def test_lvs_flush_on_stop_refuses_other_words(tmp_path):
    path = tmp_path / "keepalived.conf"
    path.write_text("global_defs {\n    lvs_flush_on_stop everything\n}\n")
    result = load_config(str(path), config_id="t", interface_exists=None)
    assert [str(d) for d in result.errors] == [
        f"{path}:2: error: lvs_flush_on_stop: expects nothing or VS, got 'everything'"]


def test_an_address_is_local_only_while_configured():
    from director.lb.service import address_is_local
    assert address_is_local("127.0.0.1") and address_is_local("::1")
    assert not address_is_local("192.0.2.77")     # TEST-NET-1: never configured here


def big_virtual_server(count: int) -> str:
    reals = "".join(f"    real_server 10.1.{n // 250}.{n % 250 + 1} 80 {{\n    }}\n"
                    for n in range(count))
    return ("virtual_server 192.0.2.10 80 {\n    lb_algo rr\n    lb_kind NAT\n"
            f"    protocol TCP\n{reals}}}\n")


def test_one_big_virtual_server_is_walked_in_slices(tmp_path):
    """Issue 17: the loop runs every pause_every real servers, also inside one virtual server
    of ten thousand (a converge of that was one 40 ms piece of work, and a MASTER's adverts
    waited behind it: on a busy host longer than advert_int 0.02 s's master down interval)."""
    config = parse(tmp_path, big_virtual_server(1200))
    pauses = []
    state = desired_state(config, lives_from(), {}, pause=lambda: pauses.append(1),
                          pause_every=100)
    assert len(state[VIP].destinations) == 1200
    assert len(pauses) >= 11


def test_paced_lives_pause_every_so_many_servers_and_answer_the_same(tmp_path):
    config = parse(tmp_path, big_virtual_server(1200))
    (virtual,) = config.virtual_servers
    pauses = []
    lives = lives_from(down={"10.1.0.1"})
    paced_lives = paced(lives, lambda: pauses.append(1), 100)
    assert live_weight(virtual, lambda real: paced_lives("vs", real)) == 1199
    assert len(pauses) == 12
