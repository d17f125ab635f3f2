"""The VRRP wire and timing keywords (issue 14, part G): their receive checks, checksum
variants, gratuitous ARP / NA pacing, start-up hold, timer_expired_backup and config rules."""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

from director.config import load_config
from director.vrrp import fsm
from director.vrrp.garp_pacing import PacingState
from director.vrrp.packet import (ADDRESS_LIST, CHECKSUM, OLD_CHECKSUM, OWNER_IGNORE, TTL_REASON,
                                  UNICAST_SRC, Advert, Dropped, Expectation, Received,
                                  check_received, encode)
from director.vrrp.wire import received_notes, receive_buffer, startup_hold

A, B, C, GROUP = "192.0.2.1", "192.0.2.2", "192.0.2.3", "224.0.0.18"
V3 = Advert(3, 51, 100, 1.0, ("192.0.2.100",), 4)


def expect(**fields) -> dict[int, Expectation]:
    return {51: Expectation(3, 1.0, frozenset(V3.addresses), check_ttl=False, **fields)}


# -- receive checks ------------------------------------------------------------------------

def test_check_unicast_src_drops_an_address_not_in_unicast_peer():
    peers = ((A, 0, 255),)
    from_a = check_received(encode(V3, A, B), 4, A, B, 255, expect(unicast_peers=peers))
    from_c = check_received(encode(V3, C, B), 4, C, B, 255, expect(unicast_peers=peers))
    assert isinstance(from_a, Received)
    assert isinstance(from_c, Dropped) and from_c.reason == UNICAST_SRC
    # unchecked (None): anyone may speak, as before
    assert isinstance(check_received(encode(V3, C, B), 4, C, B, 255, expect()), Received)


def test_check_unicast_src_takes_the_ttl_bounds_of_that_peer():
    peers = ((A, 250, 255), (C, 0, 64))
    assert isinstance(check_received(encode(V3, A, B), 4, A, B, 254,
                                     expect(unicast_peers=peers)), Received)
    assert check_received(encode(V3, C, B), 4, C, B, 254,
                          expect(unicast_peers=peers)).reason == TTL_REASON
    assert isinstance(check_received(encode(V3, C, B), 4, C, B, 64,
                                     expect(unicast_peers=peers)), Received)


def test_owner_ignore_adverts_drops_everything_for_the_vrid():
    outcome = check_received(encode(V3, A, GROUP), 4, A, GROUP, 255, expect(owner_ignore=True))
    assert isinstance(outcome, Dropped) and outcome.reason == OWNER_IGNORE


def test_v3_checksum_as_v2_sends_the_v2_sum_and_checks_none():
    as_v2 = encode(V3, A, GROUP, as_v2=True)
    assert as_v2 != encode(V3, A, GROUP)
    # a receiver not told drops it; one told accepts it, and anything else too (keepalived)
    assert check_received(as_v2, 4, A, GROUP, 255, expect()).reason == CHECKSUM
    assert isinstance(check_received(as_v2, 4, A, GROUP, 255, expect(skip_checksum=True)),
                      Received)


def test_old_unicast_checksum_is_accepted_and_noted_unless_never():
    old = encode(V3, A, GROUP)                   # pseudo-header to the group, sent to B
    outcome = check_received(old, 4, A, B, 255, expect(old_checksum_group=GROUP))
    assert isinstance(outcome, Received) and outcome.notes == (OLD_CHECKSUM,)
    assert check_received(old, 4, A, B, 255, expect()).reason == CHECKSUM


# -- gratuitous ARP / NA pacing ------------------------------------------------------------

def test_unpaced_everything_goes_at_once():
    state = PacingState()
    assert state.request(("eth0", 4), ["a", "b"], 0, 0.0, lambda: True) == ["a", "b"]
    assert state.next_deadline() is None


def test_repeats_of_one_address_collapse_to_one_waiting_frame():
    """keepalived's per-address pending flag: repeat 5 while paced is 2 frames."""
    state, key = PacingState(), ("eth0", 4)
    sent = []
    for _ in range(5):
        sent += state.request(key, ["a"], 0.5, 0.0, lambda: True)
    assert sent == ["a"] and state.next_deadline() == 0.5
    assert state.due(0.4) == []
    assert state.due(0.5) == [(key, "a")]
    assert state.next_deadline() is None


def test_addresses_go_one_interval_apart_and_families_apart():
    state = PacingState()
    assert state.request(("eth0", 4), ["a", "b", "c"], 0.2, 0.0, lambda: True) == ["a"]
    assert state.request(("eth0", 6), ["x"], 0.3, 0.0, lambda: True) == ["x"]
    assert state.due(0.2) == [(("eth0", 4), "b")]
    assert state.due(0.3) == []                  # x went at once; c waits for 0.4
    assert state.due(0.4) == [(("eth0", 4), "c")]


def test_a_waiting_address_is_dropped_when_its_instance_left_master():
    state, key = PacingState(), ("eth0", 4)
    state.request(key, ["a", "b"], 0.2, 0.0, lambda: False)
    assert state.due(1.0) == [] and state.next_deadline() is None


# -- state machine: start-up hold and timer_expired_backup --------------------------------

PARAMS = fsm.Params("VI_1", 51, priority=100, advert_int=1.0, primary_ip="10.0.0.2")


def test_startup_delay_holds_the_master_down_timer():
    state, _ = fsm.step(PARAMS, fsm.initial_state(PARAMS), fsm.Startup(hold_until=10.0), 0.0)
    assert state.role == fsm.BACKUP
    assert state.master_down_at == 10.0 + fsm.master_down_interval(PARAMS, state)
    # an advert heard during the hold re-arms from the hold's end, as keepalived's sands
    state, _ = fsm.step(PARAMS, state, fsm.AdvertReceived(150, "10.0.0.1", 1.0), 5.0)
    assert state.master_down_at == 10.0 + fsm.master_down_interval(PARAMS, state)
    # past the hold: from now
    state, _ = fsm.step(PARAMS, state, fsm.AdvertReceived(150, "10.0.0.1", 1.0), 20.0)
    assert state.master_down_at == 20.0 + fsm.master_down_interval(PARAMS, state)


def test_timer_expired_backup_steps_down_after_being_held_up():
    params = replace(PARAMS, preempt=False, timer_expired_backup=200)
    master = fsm.State(role=fsm.MASTER, priority=100, advert_at=1.0)
    held = 3 * 1.0 + (256 - 200) / 256
    state, actions = fsm.step(params, master, fsm.Timeout(), held + 0.01)
    assert state.role == fsm.BACKUP and state.reason == "timer_expired"
    assert any(isinstance(a, fsm.RemoveAddresses) for a in actions)
    state, actions = fsm.step(params, master, fsm.Timeout(), 1.5)       # merely late
    assert state.role == fsm.MASTER and actions == (fsm.SendAdvert(100),)


# -- pure settings -------------------------------------------------------------------------

def test_receive_buffer_per_instance_as_keepalived():
    defs = SimpleNamespace(vrrp_rx_bufs_policy=("ADVERT",), vrrp_rx_bufs_multiplier=3)
    vip = SimpleNamespace(family=4)
    one = SimpleNamespace(kernel_rx_buf_size=None, virtual_ipaddress=(vip, vip),
                          interface="eth0")
    own = SimpleNamespace(kernel_rx_buf_size=4096, virtual_ipaddress=(vip,), interface="eth0")
    # v2 IPv4, 2 addresses: 20 + 8 + 8 + 8 = 44 bytes, times 3; plus the instance's own
    assert receive_buffer(defs, [(one, 4, 2), (own, 4, 2)], lambda _: 1500) == 132 + 4096
    defs = SimpleNamespace(vrrp_rx_bufs_policy=("MTU",), vrrp_rx_bufs_multiplier=2)
    assert receive_buffer(defs, [(one, 4, 2)], lambda _: 9000) == 18000
    defs = SimpleNamespace(vrrp_rx_bufs_policy=None, vrrp_rx_bufs_multiplier=3)
    assert receive_buffer(defs, [(one, 4, 2)], lambda _: 1500) == 0


def test_startup_hold_takes_the_later_of_the_two_delays():
    defs = SimpleNamespace(vrrp_startup_delay=5.0, vrrp_delay_after_boot=60.0)
    assert startup_hold(defs, 100.0, uptime=50.0) == 110.0          # boot delay: 10 s left
    assert startup_hold(defs, 100.0, uptime=3600.0) == 105.0
    assert startup_hold(SimpleNamespace(vrrp_startup_delay=None, vrrp_delay_after_boot=None),
                        100.0, 1.0) is None


# -- configuration -------------------------------------------------------------------------

def load(tmp_path, text):
    path = tmp_path / "keepalived.conf"
    path.write_text(text)
    return load_config(str(path), config_id="t", interface_exists=None)


INSTANCE = ("vrrp_instance VI_1 {{\n interface eth0\n virtual_router_id 51\n{extra}"
            " virtual_ipaddress {{\n  {vip}\n }}\n}}\n")


def test_min_garp_changes_only_the_defaults(tmp_path):
    result = load(tmp_path, "global_defs {\n vrrp_min_garp\n vrrp_garp_master_delay 2\n}\n" +
                  INSTANCE.format(extra="", vip="192.0.2.100/24"))
    defs = result.config.global_defs
    assert (defs.vrrp_garp_master_repeat, defs.vrrp_garp_master_delay,
            defs.vrrp_garp_master_refresh, defs.vrrp_garp_master_refresh_repeat) == (1, 2, 0, 0)


def test_keepalived_refusals_are_said_at_the_line(tmp_path):
    result = load(tmp_path, INSTANCE.format(
        extra=" unicast_ttl 10\n mcast_dst_ip 192.0.2.9\n", vip="192.0.2.100/24"))
    warnings = [str(w) for w in result.warnings]
    assert any("unicast_ttl without unicast_peer" in w for w in warnings), warnings
    assert any("mcast_dst_ip 192.0.2.9 is not multicast" in w
               for w in warnings), warnings
    assert result.config.vrrp_instances[0].mcast_dst_ip is None
    bad = load(tmp_path, INSTANCE.format(extra=" native_ipv6\n", vip="192.0.2.100/24"))
    assert any("native_ipv6 with IPv4" in str(e) for e in bad.errors)


def test_timer_expired_backup_needs_nopreempt(tmp_path):
    result = load(tmp_path, INSTANCE.format(extra=" timer_expired_backup\n",
                                            vip="192.0.2.100/24"))
    assert result.config.vrrp_instances[0].timer_expired_backup is None
    result = load(tmp_path, INSTANCE.format(extra=" state BACKUP\n nopreempt\n"
                                                  " timer_expired_backup\n",
                                            vip="192.0.2.100/24"))
    assert result.config.vrrp_instances[0].timer_expired_backup == 254



def test_a_reload_restarts_the_instances_whose_global_settings_changed(tmp_path):
    """vrrp_down_timer_adverts fixes a parameter, the multicast group a socket: a changed one
    restarts the instances that take it from global_defs (a kept one would keep the old)."""
    from director.reconcile import plan_instances
    own = INSTANCE.format(extra=" down_timer_adverts 5\n", vip="192.0.2.100/24")
    inherits = INSTANCE.replace("VI_1", "VI_2").replace("id 51", "id 52").format(
        extra="", vip="192.0.2.101/24")
    old = load(tmp_path, own + inherits).config
    new = load(tmp_path, "global_defs {\n vrrp_down_timer_adverts 4\n}\n" + own +
               inherits).config
    plan = plan_instances(old, new)
    assert plan.kept == ("VI_1",) and plan.changed == ("VI_2",)
    newer = load(tmp_path, "global_defs {\n vrrp_down_timer_adverts 4\n"
                           " vrrp_mcast_group4 224.0.0.19\n}\n" + own + inherits).config
    assert plan_instances(new, newer).changed == ("VI_1", "VI_2")


def test_skip_check_adv_addr_spares_only_the_current_master():
    notes = (ADDRESS_LIST, OLD_CHECKSUM)
    assert received_notes(notes, A, A, True) == ((OLD_CHECKSUM,), True)
    assert received_notes(notes, C, A, True) == (notes, True)          # not the master
    assert received_notes((ADDRESS_LIST,), A, A, False) == ((ADDRESS_LIST,), False)


def test_timer_expired_backup_also_on_an_advert_read_after_the_hold():
    """Woken with the other side's (lower) advert queued: without the rule we would answer
    it and take the addresses back; with it we step down and follow that master."""
    params = replace(PARAMS, preempt=False, timer_expired_backup=254)
    master = fsm.State(role=fsm.MASTER, priority=100, advert_at=1.0)
    state, actions = fsm.step(params, master, fsm.AdvertReceived(50, "10.0.0.1", 1.0), 10.0)
    assert state.role == fsm.BACKUP and state.master_ip == "10.0.0.1"
    assert not any(isinstance(a, fsm.SendAdvert) for a in actions)
