"""Every RFC 3768 / 5798 transition and timer rule of the pure state machine, with a
FakeClock. Each row: the situation, one event, the role and actions that must follow."""

from __future__ import annotations

from dataclasses import replace

import pytest

from director.clock import FakeClock
from director.vrrp.fsm import (BACKUP, FAULT, INIT, MASTER, STOP, AddAddresses, AdvertReceived,
                               Announce, AnnounceAfterLowerPriority, FaultCleared, FaultRaised,
                               ForceRole, Params, PriorityChanged, RemoveAddresses, SendAdvert,
                               Shutdown, Startup, State, Timeout, Transition, initial_state,
                               master_down_interval, skew_time, step)

V2 = Params("VI_1", 51, priority=100, advert_int=1.0, primary_ip="10.0.0.2")
V3 = replace(V2, version=3, advert_int=0.1)


class Machine:
    """One instance driven the way its greenlet will drive it."""

    def __init__(self, params: Params, clock: FakeClock, **state) -> None:
        self.params, self.clock = params, clock
        self.state = replace(initial_state(params), **state)
        self.actions: list = []

    def send(self, event):
        self.state, actions = step(self.params, self.state, event, self.clock.now())
        self.actions = list(actions)
        return self.actions

    def run_until(self, when: float):
        """Fire every deadline up to ``when``, like the greenlet's sleeps would."""
        fired = []
        for _ in range(10_000):
            deadline = self.state.next_deadline()
            if deadline is None or deadline > when:
                break
            self.clock.set(max(deadline, self.clock.now()))
            fired += self.send(Timeout())
        self.clock.set(when)
        return fired


@pytest.fixture
def clock():
    return FakeClock(start=100.0)


def backup(params, clock, **state):
    machine = Machine(params, clock, **state)
    machine.send(Startup())
    assert machine.state.role == BACKUP
    return machine


def master(params, clock, **state):
    machine = backup(params, clock, **state)
    machine.run_until(machine.state.master_down_at)
    assert machine.state.role == MASTER
    return machine


# -- timer formulas --------------------------------------------------------------------------

@pytest.mark.parametrize("params, priority, interval, skew, down", [
    (V2, 100, 1.0, 156 / 256, 3 + 156 / 256),           # keepalived's 0.61 s / 3.61 s
    (V2, 150, 1.0, 106 / 256, 3 + 106 / 256),
    (replace(V2, advert_int=2.0), 100, 2.0, 156 / 256, 6 + 156 / 256),  # v2 skew unscaled
    (V3, 100, 0.1, 156 * 0.1 / 256, 0.3 + 156 * 0.1 / 256),            # v3 skew scaled
    (V3, 100, 1.0, 156 / 256, 3 + 156 / 256),           # v3 uses the master's interval
])
def test_skew_and_master_down_interval(params, priority, interval, skew, down):
    state = State(priority=priority, master_adver_interval=interval)
    assert skew_time(params, state) == pytest.approx(skew)
    assert master_down_interval(params, state) == pytest.approx(down)


# -- startup -----------------------------------------------------------------------------------

def test_startup_waits_as_backup_for_the_master_down_interval(clock):
    machine = Machine(V2, clock)
    assert machine.send(Startup()) == [Transition(INIT, BACKUP, "startup")]
    assert machine.state.master_down_at == pytest.approx(100 + 3 + 156 / 256)
    assert machine.send(Timeout()) == []                      # too early: nothing
    assert machine.run_until(103.5) == []
    fired = machine.run_until(104)
    assert fired == [Transition(BACKUP, MASTER, "master_down"), SendAdvert(100),
                     AddAddresses(), Announce()]
    assert machine.state.advert_at == pytest.approx(103.609375 + 1)


def test_the_address_owner_takes_over_at_once(clock):
    machine = Machine(replace(V2, priority=255), clock, priority=255)
    assert machine.send(Startup()) == [Transition(INIT, MASTER, "startup"), SendAdvert(255),
                                       AddAddresses(), Announce()]


def test_startup_with_a_fault_goes_to_fault(clock):
    machine = Machine(V2, clock)
    machine.send(FaultRaised("interface eth0"))
    assert machine.state.role == INIT
    assert machine.send(Startup()) == [Transition(INIT, FAULT, "fault: interface eth0")]


# -- BACKUP --------------------------------------------------------------------------------

@pytest.mark.parametrize("their_priority, preempt, resets", [
    (200, True, True),      # a higher master: follow it
    (100, True, True),      # equal priority: no preemption on a tie in BACKUP (RFC 6.4.2)
    (50, True, False),      # lower, preempt on: discard, let our timer run out
    (50, False, True),      # lower, nopreempt: follow it anyway
])
def test_backup_hearing_an_advert(clock, their_priority, preempt, resets):
    machine = backup(replace(V2, preempt=preempt), clock)
    clock.advance(2)
    before = machine.state.master_down_at
    assert machine.send(AdvertReceived(their_priority, "10.0.0.1", 1.0)) == []
    assert machine.state.master_ip == "10.0.0.1"
    expected = clock.now() + 3 + 156 / 256 if resets else before
    assert machine.state.master_down_at == pytest.approx(expected)


def test_backup_preempts_a_lower_master_after_the_master_down_interval(clock):
    machine = backup(V2, clock)
    deadline = machine.state.master_down_at
    for _ in range(3):
        clock.advance(1)
        machine.send(AdvertReceived(50, "10.0.0.1", 1.0))
    fired = machine.run_until(deadline)
    assert fired[0] == Transition(BACKUP, MASTER, "preempt")


def test_priority_zero_means_take_over_after_the_skew_alone(clock):
    machine = backup(V2, clock)
    machine.send(AdvertReceived(200, "10.0.0.1", 1.0))
    clock.advance(0.5)
    machine.send(AdvertReceived(0, "10.0.0.1", 1.0))
    assert machine.state.master_down_at == pytest.approx(clock.now() + 156 / 256)
    assert machine.run_until(clock.now() + 0.61)[0] == Transition(BACKUP, MASTER, "master_down")


def test_preempt_delay_lets_a_lower_master_serve_that_much_longer(clock):
    machine = backup(replace(V2, preempt_delay=10.0), clock)
    first = clock.now()
    for _ in range(9):
        clock.advance(1)
        machine.send(AdvertReceived(50, "10.0.0.1", 1.0))
        assert machine.run_until(clock.now()) == []
        assert machine.state.role == BACKUP
    assert machine.state.preempt_at == pytest.approx(first + 1 + 10)
    fired = machine.run_until(first + 11)
    assert fired[0] == Transition(BACKUP, MASTER, "preempt")


def test_v3_backup_adopts_the_masters_interval(clock):
    machine = backup(V3, clock)
    machine.send(AdvertReceived(200, "10.0.0.1", 1.0))
    assert machine.state.master_adver_interval == 1.0
    assert machine.state.master_down_at == pytest.approx(clock.now() + 3 + 156 / 256)


def test_v3_fast_failover_with_advert_int_0_1(clock):
    machine = backup(V3, clock)
    machine.send(AdvertReceived(200, "10.0.0.1", 0.1))
    last = clock.now()
    fired = machine.run_until(last + 0.5)
    assert fired[0] == Transition(BACKUP, MASTER, "master_down")
    assert machine.state.since == pytest.approx(last + 0.3 + 156 * 0.1 / 256)


# -- MASTER --------------------------------------------------------------------------------

def test_master_advertises_every_interval_without_drift_or_burst(clock):
    machine = master(V2, clock)
    start = machine.state.advert_at
    sent = machine.run_until(start + 2.5)
    assert sent == [SendAdvert(100)] * 3
    assert machine.state.advert_at == pytest.approx(start + 3)
    clock.advance(5)                         # the loop was held up for 5 intervals
    assert machine.send(Timeout()) == [SendAdvert(100)]
    assert machine.state.advert_at == pytest.approx(clock.now() + 1)


@pytest.mark.parametrize("their_priority, src, steps_down", [
    (200, "10.0.0.1", True),        # higher priority wins
    (100, "10.0.0.9", True),        # equal priority, higher primary address wins
    (100, "10.0.0.1", False),       # equal priority, lower address: we stay
    (50, "10.0.0.9", False),        # lower priority: we stay
])
def test_master_hearing_another_master(clock, their_priority, src, steps_down):
    machine = master(V2, clock)
    actions = machine.send(AdvertReceived(their_priority, src, 1.0))
    if steps_down:
        # one advert of ours on the way out: the winner hears a lower priority and sends
        # its gratuitous ARPs (keepalived's higher_prio_send_advert, on by default here)
        assert actions == [SendAdvert(100), Transition(MASTER, BACKUP, "higher_priority"),
                           RemoveAddresses()]
        assert machine.state.master_down_at == pytest.approx(clock.now() + 3 + 156 / 256)
        assert machine.state.advert_at is None
    else:   # split brain: answer at once so that the other one steps down now, and repoint
        # the neighbours that the other master's gratuitous ARPs took away
        assert actions == [SendAdvert(100), AnnounceAfterLowerPriority(src, their_priority)]
        assert machine.state.advert_at == pytest.approx(clock.now() + 1)


def test_keepalived_exact_when_asked_silent_step_down_and_no_answer_to_lower(clock):
    """higher_prio_send_advert off (keepalived's default), lower_prio_no_advert on (RFC)."""
    params = replace(V2, higher_prio_send_advert=False, lower_prio_no_advert=True)
    machine = master(params, clock)
    next_advert = machine.state.advert_at
    clock.advance(0.5)
    assert machine.send(AdvertReceived(50, "10.0.0.9", 1.0)) == [
        AnnounceAfterLowerPriority("10.0.0.9", 50)]
    assert machine.state.advert_at == next_advert          # the regular advert keeps its time
    assert machine.send(AdvertReceived(200, "10.0.0.9", 1.0)) == [
        Transition(MASTER, BACKUP, "higher_priority"), RemoveAddresses()]


def test_master_answers_a_priority_zero_advert_at_once(clock):
    machine = master(V2, clock)
    assert machine.send(AdvertReceived(0, "10.0.0.1", 1.0)) == [SendAdvert(100)]


# -- shutdown, faults, priority changes, sync groups ----------------------------------------

def test_shutdown_of_a_master_sends_priority_zero_and_removes_addresses(clock):
    machine = master(V2, clock)
    assert machine.send(Shutdown()) == [Transition(MASTER, STOP, "shutdown"), SendAdvert(0),
                                        RemoveAddresses()]
    assert machine.state.next_deadline() is None
    for event in (Startup(), Timeout(), AdvertReceived(200, "10.0.0.1", 1.0),
                  FaultCleared("x"), ForceRole(MASTER, "x")):
        assert machine.send(event) == [] and machine.state.role == STOP


def test_shutdown_of_a_backup_sends_nothing(clock):
    machine = backup(V2, clock)
    assert machine.send(Shutdown()) == [Transition(BACKUP, STOP, "shutdown")]


def test_a_fault_takes_a_master_out_and_recovery_needs_every_fault_cleared(clock):
    machine = master(V2, clock)
    assert machine.send(FaultRaised("interface eth0")) == [
        Transition(MASTER, FAULT, "fault: interface eth0"), SendAdvert(0), RemoveAddresses()]
    machine.send(FaultRaised("script chk"))
    assert machine.send(FaultCleared("interface eth0")) == []
    assert machine.state.role == FAULT
    assert machine.send(FaultCleared("script chk")) == [
        Transition(FAULT, BACKUP, "recovered: script chk")]
    assert machine.state.master_down_at == pytest.approx(clock.now() + 3 + 156 / 256)


def test_a_backup_in_fault_ignores_adverts_and_timers(clock):
    machine = backup(V2, clock)
    machine.send(FaultRaised("interface eth0"))
    assert machine.state.next_deadline() is None
    assert machine.send(AdvertReceived(0, "10.0.0.1", 1.0)) == []
    assert machine.send(Timeout()) == [] and machine.state.role == FAULT


def test_priority_changes_are_advertised_at_once_by_a_master(clock):
    machine = master(V2, clock)
    assert machine.send(PriorityChanged(90)) == [SendAdvert(90)]
    assert machine.send(PriorityChanged(90)) == []
    assert machine.send(PriorityChanged(400)) == [SendAdvert(254)]     # 255 is the owner's
    assert machine.send(PriorityChanged(-5)) == [SendAdvert(1)]


def test_the_owner_keeps_255_whatever_tracking_says(clock):
    machine = Machine(replace(V2, priority=255), clock, priority=255)
    machine.send(Startup())
    assert machine.send(PriorityChanged(200)) == []
    assert machine.state.priority == 255


def test_a_lowered_backup_priority_changes_its_skew(clock):
    machine = backup(V2, clock)
    machine.send(PriorityChanged(50))
    machine.send(AdvertReceived(200, "10.0.0.1", 1.0))
    assert machine.state.master_down_at == pytest.approx(clock.now() + 3 + 206 / 256)


def test_a_backup_raised_above_the_master_preempts_it(clock):
    machine = backup(V2, clock)
    machine.send(AdvertReceived(120, "10.0.0.1", 1.0))
    machine.send(PriorityChanged(150))
    deadline = machine.state.master_down_at
    clock.advance(1)
    machine.send(AdvertReceived(120, "10.0.0.1", 1.0))   # now lower than us: discarded
    assert machine.state.master_down_at == deadline
    assert machine.run_until(deadline)[0] == Transition(BACKUP, MASTER, "preempt")


def test_sync_group_forces_members_along(clock):
    machine = backup(V2, clock)
    assert machine.send(ForceRole(MASTER, "sync group VG1")) == [
        Transition(BACKUP, MASTER, "sync group VG1"), SendAdvert(100), AddAddresses(),
        Announce()]
    assert machine.send(ForceRole(MASTER, "again")) == []
    assert machine.send(ForceRole(BACKUP, "sync group VG1"))[0] == \
        Transition(MASTER, BACKUP, "sync group VG1")


# -- start-up with adverts heard since exec (vrrp/early.py) -----------------------------------

def test_a_backup_listening_since_exec_counts_its_master_down_timer_from_then(clock):
    machine = Machine(V2, clock)
    machine.send(Startup(listening_since=clock.now() - 0.4))     # 0.4 s of imports
    assert machine.state.role == BACKUP
    down = master_down_interval(V2, machine.state)
    assert machine.state.master_down_at == pytest.approx(clock.now() - 0.4 + down)
    # what was heard meanwhile comes next: a higher priority resets it as ever
    machine.send(AdvertReceived(200, "10.0.0.9", 1.0))
    assert machine.state.master_down_at == pytest.approx(clock.now() + down)


def test_a_timer_that_ran_out_while_starting_fires_at_once_unless_an_advert_came(clock):
    machine = Machine(V3, clock)
    machine.send(Startup(listening_since=clock.now() - 1.0))     # longer than 0.3 s + skew
    assert machine.state.master_down_at < clock.now()
    assert any(isinstance(a, Transition) and a.new == MASTER
               for a in machine.run_until(clock.now()))


@pytest.mark.parametrize("event", [Startup(hold_until=100.5, listening_since=99.0),
                                   Startup(listening_since=100.0),     # not before now
                                   Startup(listening_since=None)])
def test_a_start_up_hold_or_no_earlier_listening_counts_from_now_or_the_hold(clock, event):
    machine = Machine(V2, clock)
    machine.send(event)
    start = max(clock.now(), event.hold_until or 0)
    assert machine.state.master_down_at == pytest.approx(
        start + master_down_interval(V2, machine.state))


def test_the_address_owner_takes_over_at_once_whenever_it_listened(clock):
    machine = Machine(replace(V2, priority=255), clock, priority=255)
    actions = machine.send(Startup(listening_since=clock.now() - 0.4))
    assert machine.state.role == MASTER and AddAddresses() in actions
