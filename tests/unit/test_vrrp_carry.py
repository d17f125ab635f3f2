"""A reload's changed instance that is still the same router keeps its role (keepalived's
restore_vrrp_state): the pure state machine's Resume, keepalived's identity (vrrp_exist),
and the hand-over between two real Instances through a recording sender and a recording
address table (no socket, no netlink), with a FakeClock."""

from __future__ import annotations

import tempfile
from dataclasses import replace
from pathlib import Path

import pytest

from director.clock import FakeClock
from director.config import load_config
from director.vrrp import carry
from director.vrrp.fsm import (BACKUP, FAULT, INIT, MASTER, AddAddresses, AdvertReceived,
                               Announce, FaultRaised, Params, PriorityChanged, RemoveAddresses,
                               Resume, SendAdvert, Startup, State, Transition, initial_state,
                               master_down_interval, step)
from director.vrrp.instance import Instance

P = Params("VI_1", 51, priority=120, advert_int=1.0, primary_ip="10.0.0.2")
NOW = 500.0


def resumed(previous: State, *before, announce=False, hold_until=None, params=P):
    """The new instance's machine: the tracking events first, then Resume."""
    state = initial_state(params)
    for event in before:
        state, _ = step(params, state, event, NOW)
    return step(params, state, Resume(previous, announce, hold_until), NOW)


OLD_MASTER = State(role=MASTER, priority=150, since=10.0, reason="master_down",
                   advert_at=NOW + 0.4)
OLD_BACKUP = State(role=BACKUP, priority=100, since=20.0, reason="startup",
                   master_down_at=NOW + 0.2, master_ip="10.0.0.9", master_priority=200)


def test_a_master_stays_master_and_advertises_its_new_priority_at_once():
    state, actions = resumed(OLD_MASTER)
    assert state.role == MASTER and state.priority == 120
    assert actions == (SendAdvert(120), AddAddresses())       # no 0, no removal, no GARP
    assert state.advert_at == NOW + 1.0 and state.master_down_at is None
    assert (state.since, state.reason) == (10.0, "master_down")     # the role's, kept


def test_a_master_with_added_addresses_announces_them():
    _, actions = resumed(OLD_MASTER, announce=True)
    assert actions == (SendAdvert(120), AddAddresses(), Announce())


def test_a_master_lowered_below_a_live_peer_steps_down_by_the_rfc_afterwards():
    state, _ = resumed(OLD_MASTER, PriorityChanged(90))
    assert state.role == MASTER and state.priority == 90
    state, actions = step(P, state, AdvertReceived(100, "10.0.0.9", 1.0), NOW + 0.1)
    assert state.role == BACKUP
    assert Transition(MASTER, BACKUP, "higher_priority") in actions


def test_a_backup_stays_backup_with_a_fresh_master_down_timer():
    state, actions = resumed(OLD_BACKUP)
    assert actions == ()
    assert state.role == BACKUP and state.advert_at is None
    fresh = initial_state(P)
    assert state.master_down_at == pytest.approx(NOW + master_down_interval(P, fresh))
    assert state.master_ip == "10.0.0.9"


def test_a_backup_in_the_start_up_hold_waits_for_its_end():
    state, _ = resumed(OLD_BACKUP, hold_until=NOW + 30)
    assert state.master_down_at == pytest.approx(NOW + 30 + master_down_interval(P, state))


def test_a_master_whose_tracking_now_fails_leaves_as_into_fault():
    state, actions = resumed(OLD_MASTER, FaultRaised("interface eth9"))
    assert state.role == FAULT
    assert actions == (Transition(MASTER, FAULT, "fault: interface eth9"), SendAdvert(0),
                       RemoveAddresses())


def test_fault_is_worked_out_afresh():
    old = State(role=FAULT, faults=frozenset({"script chk"}), since=5.0, reason="fault: x")
    state, actions = resumed(old, FaultRaised("script chk"))
    assert (state.role, actions) == (FAULT, ())               # still failing: said already
    state, actions = resumed(old)                               # the fault went with the file
    assert state.role == BACKUP
    assert actions == (Transition(FAULT, BACKUP, "reload"),)


def test_an_instance_that_never_started_starts_as_at_start_up():
    state, actions = resumed(initial_state(P))
    expected = step(P, initial_state(P), Startup(), NOW)
    assert (state.role, actions) == (expected[0].role, expected[1])
    assert actions[0] == Transition(INIT, BACKUP, "startup")


def test_the_owner_priority_kept_from_master_stays_master():
    owner = replace(P, priority=255)
    state, actions = resumed(OLD_MASTER, params=owner)
    assert state.role == MASTER and actions[0] == SendAdvert(255)


# -- keepalived's identity, on parsed configurations ------------------------------------------

BLOCK = """
vrrp_instance VI_1 {
    interface %(interface)s
    virtual_router_id %(vrid)s
    priority %(priority)s
    advert_int %(advert)s
    %(extra)s
    virtual_ipaddress {
%(vips)s
    }
}
"""
DEFAULTS = dict(interface="eth0", vrid=51, priority=150, advert=1, extra="",
                vips="        192.0.2.10/24\n        192.0.2.11/24")


def instance_block(**changes):
    values = dict(DEFAULTS, **changes)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "keepalived.conf"
        path.write_text(BLOCK % values)
        result = load_config(str(path), config_id="lb1", interface_exists=None)
    assert result.ok, [str(d) for d in result.errors]
    return result.config.vrrp_instances[0], result.config.global_defs


@pytest.mark.parametrize("changes", [
    dict(priority=90), dict(advert=2), dict(vips="        192.0.2.12/24"),
    dict(extra="authentication {\n auth_type AH\n auth_pass secret12\n }"),
    dict(extra="version 3"), dict(extra="nopreempt"),
])
def test_settings_are_not_the_identity(changes):
    assert carry.identity(instance_block()[0]) == carry.identity(instance_block(**changes)[0])


@pytest.mark.parametrize("changes", [
    dict(vrid=52), dict(interface="eth1"), dict(vips="        2001:db8::10/64"),
    dict(extra="unicast_peer {\n 192.0.2.2\n }"), dict(extra="use_vmac"),
])
def test_what_keepalived_matches_on_is(changes):
    assert carry.identity(instance_block()[0]) != carry.identity(instance_block(**changes)[0])


def test_unicast_source_is_part_of_a_unicast_identity():
    peer = "unicast_peer {\n 192.0.2.2\n }\n"
    one = instance_block(extra=peer + "unicast_src_ip 192.0.2.1")[0]
    other = instance_block(extra=peer + "unicast_src_ip 192.0.2.3")[0]
    assert carry.identity(one) != carry.identity(other)


# -- the hand-over between two Instances -------------------------------------------------------

class RecordingAddresses:
    def __init__(self):
        self.calls = []

    def add(self, vip, ifname):
        self.calls.append(("add", vip.address, ifname))

    def remove(self, vip, ifname):
        self.calls.append(("remove", vip.address, ifname))

    def add_route(self, route, ifname):
        self.calls.append(("add route", route.destination, ifname))

    def remove_route(self, route, ifname):
        self.calls.append(("remove route", route.destination, ifname))

    def add_rule(self, rule, ifname=""):
        self.calls.append(("add rule",))

    def remove_rule(self, rule, ifname=""):
        self.calls.append(("remove rule",))


class RecordingSender:
    def __init__(self):
        self.sent = []

    def send(self, message, destination, ttl=None, source=None):
        self.sent.append((message, destination))


class RecordingAnnouncer:
    def __init__(self):
        self.announced = []

    def announce(self, ifname, addresses, *args, **kwargs):
        self.announced.append((ifname, tuple(addresses)))


def built(item, defs, clock, addresses, sender, announcer):
    instance = Instance(item, defs, 2, 4, clock, addresses, announcer, sender)
    instance.prepare("192.0.2.1")
    return instance


def running_master(clock, addresses, sender, announcer):
    item, defs = instance_block()
    old = built(item, defs, clock, addresses, sender, announcer)
    old.state = replace(old.state, role=MASTER, since=1.0, advert_at=clock.now() + 1)
    old.started = True
    old.ah_sequence.next()
    old.counters.became_master = 1
    return old


def test_a_master_handed_over_keeps_its_vips_drops_the_removed_and_says_its_priority():
    clock, addresses, sender, announcer = (FakeClock(start=NOW), RecordingAddresses(),
                                           RecordingSender(), RecordingAnnouncer())
    old = running_master(clock, addresses, sender, announcer)
    item, defs = instance_block(priority=130,
                                vips="        192.0.2.11/24\n        192.0.2.12/24")
    new = built(item, defs, clock, addresses, sender, announcer)
    told = []
    new.listeners.append(lambda instance, transition: told.append(transition))
    assert carry.carries(old, item)

    announce = carry.hand_over(old, new)
    assert announce is True                                   # 192.0.2.12 is new
    assert addresses.calls == [("remove", "192.0.2.10/24", "eth0")]     # only the gone one
    addresses.calls.clear()
    new.begin(carry.resume_event(old, new, announce))

    assert new.state.role == MASTER and new.state.priority == 130
    assert told == []                                         # no transition, no notify
    assert ("remove", "192.0.2.11/24", "eth0") not in addresses.calls
    assert {call[1] for call in addresses.calls} == {"192.0.2.11/24", "192.0.2.12/24"}
    assert len(sender.sent) == 1
    advert = sender.sent[0][0]
    assert advert[2] == 130                                   # VRRP header: priority byte
    assert new.counters.became_master == 1 and new.ah_sequence is old.ah_sequence
    assert new.counters.transitions == {}
    assert new._announcing is not None                        # the added VIP is announced
    new.quiet()


def test_a_master_with_nothing_added_does_not_announce():
    clock, addresses, sender, announcer = (FakeClock(start=NOW), RecordingAddresses(),
                                           RecordingSender(), RecordingAnnouncer())
    old = running_master(clock, addresses, sender, announcer)
    item, defs = instance_block(priority=140)
    new = built(item, defs, clock, addresses, sender, announcer)
    announce = carry.hand_over(old, new)
    assert announce is False and addresses.calls == []
    new.begin(carry.resume_event(old, new, announce))
    assert new.state.role == MASTER and new._announcing is None
    assert sender.sent and sender.sent[0][0][2] == 140


def test_a_backup_hands_over_nothing_to_remove():
    clock, addresses, sender, announcer = (FakeClock(start=NOW), RecordingAddresses(),
                                           RecordingSender(), RecordingAnnouncer())
    item, defs = instance_block()
    old = built(item, defs, clock, addresses, sender, announcer)
    old.state, old.started = replace(old.state, role=BACKUP), True
    item, defs = instance_block(vips="        192.0.2.12/24")
    new = built(item, defs, clock, addresses, sender, announcer)
    assert carry.hand_over(old, new) is False and addresses.calls == []
    new.begin(carry.resume_event(old, new, False))
    assert new.state.role == BACKUP and sender.sent == [] and addresses.calls == []


def test_another_router_or_one_that_never_started_does_not_carry():
    clock = FakeClock(start=NOW)
    item, defs = instance_block()
    old = built(item, defs, clock, RecordingAddresses(), RecordingSender(), None)
    assert not carry.carries(old, item)                       # INIT: never started
    old.state, old.started = replace(old.state, role=MASTER), True
    assert carry.carries(old, item)
    assert not carry.carries(old, instance_block(vrid=52)[0])


# -- sync groups -----------------------------------------------------------------------------

def test_a_rebuilt_sync_group_whose_members_go_on_keeps_its_state():
    """Its members carried their roles (no transition): the rebuilt group takes over the
    old one's state, so it notifies only a real change; one with a restarted member starts
    afresh (its members' transitions will say its state)."""
    from tests.unit.test_state_views import configuration, vrrp_service
    config = configuration()
    service = vrrp_service(config)
    for instance in service.instances:
        instance.state = replace(instance.state, role=MASTER)
    service.sync_groups.clear()
    told = []
    service.on_new_sync_group.append(lambda group: group.listeners.append(
        lambda group, state: told.append(state)))
    service._build_sync_groups(config.vrrp_sync_groups, {"VG1": MASTER}, {"VI_1", "VI_2"})
    assert service.sync_groups[0].last_state == MASTER
    service.sync_groups[0]._group_changed()                   # nothing changed: silent
    assert told == []
    service.sync_groups.clear()
    service._build_sync_groups(config.vrrp_sync_groups, {"VG1": MASTER}, {"VI_1"})
    assert service.sync_groups[0].last_state == INIT
