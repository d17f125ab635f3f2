"""The VRRP state machine, pure: ``step(params, state, event, now) -> (state, actions)``.

It never reads a clock, touches a socket or logs: timers are deadlines kept in the state,
which the instance's greenlet sleeps until and then reports as a ``Timeout`` event. That is
what makes a table-driven test of every RFC transition possible (tests/unit/test_vrrp_fsm.py).

RFC 3768 / 5798 section 6.4, with keepalived's additions kept where its users rely on them:
priority 0 on leaving MASTER (also into FAULT), a MASTER that hears a lower priority
re-advertises at once (how a split brain heals in one advert) and re-sends its gratuitous
ARPs, one that steps down for a higher priority advertises once on the way out (so that the
winner hears it), ``preempt_delay``, and the tracking faults that hold an instance in FAULT.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, replace

from .proto import OWNER_PRIORITY  # noqa: F401 (the state machine's name for it too)

INIT, BACKUP, MASTER, FAULT, STOP = "INIT", "BACKUP", "MASTER", "FAULT", "STOP"
STOP_PRIORITY = 0


@dataclass(frozen=True)
class Params:
    """What the configuration fixes for one instance."""

    name: str
    vrid: int
    priority: int                   # configured; the state holds the effective one
    advert_int: float
    version: int = 2
    preempt: bool = True
    preempt_delay: float = 0.0
    primary_ip: str = "0.0.0.0"     # our source address: breaks ties between equal priorities
    down_timer_adverts: int = 3     # adverts missed before the master is declared down
    lower_prio_no_advert: bool = False      # MASTER hearing a lower priority: no answer (RFC)
    higher_prio_send_advert: bool = True    # MASTER stepping down: one advert on the way out
    timer_expired_backup: int | None = None  # MASTER held up past this backup's wait: BACKUP


@dataclass(frozen=True)
class State:
    """An instance's state machine state: role, effective priority, timers (absolute
    times on the instance's clock, None when not running) and what it knows of the master."""

    role: str = INIT
    priority: int = 100                      # effective priority (tracking applied)
    master_adver_interval: float = 1.0       # v3: learned from the master
    master_down_at: float | None = None      # BACKUP: when the master is declared down
    advert_at: float | None = None           # MASTER: when the next advert goes out
    preempt_at: float | None = None          # BACKUP: when a lower master gets preempted
    master_ip: str | None = None
    master_priority: int | None = None
    since: float = 0.0                       # when the role last changed
    reason: str = "startup"                  # why it changed
    faults: frozenset[str] = frozenset()
    hold_until: float | None = None          # vrrp_startup_delay: no master down before

    def next_deadline(self) -> float | None:
        times = [t for t in (self.master_down_at, self.advert_at) if t is not None]
        return min(times) if times else None


# -- events --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Startup:
    hold_until: float | None = None    # vrrp_startup_delay: BACKUP's timer starts from here
    # the moment adverts began to be captured for this instance (vrrp/early.py: at exec), when
    # before now: BACKUP's timer counts from there, the adverts heard meanwhile are applied
    # right after this event
    listening_since: float | None = None


@dataclass(frozen=True)
class AdvertReceived:
    priority: int
    src: str
    advert_int: float          # v3: the master's Max Adver Int; v2: ours (checked equal)


@dataclass(frozen=True)
class Timeout:
    """A deadline of the state has come (the driver sleeps until next_deadline())."""


@dataclass(frozen=True)
class Shutdown:
    pass


@dataclass(frozen=True)
class Resume:
    """A reload changed the instance's settings but not what it is (vrid, interface,
    family, unicast or multicast: keepalived's vrrp_exist): instead of Startup, it goes on
    in the role it had (keepalived's restore_vrrp_state). ``previous`` is the state the old
    instance left; ``announce``: VIPs were added (or garp_master_refresh is set), so a kept
    MASTER announces them."""

    previous: State
    announce: bool = False
    hold_until: float | None = None


@dataclass(frozen=True)
class FaultRaised:
    name: str                  # "interface eth0", "script chk_http", "sync group VG1"


@dataclass(frozen=True)
class FaultCleared:
    name: str


@dataclass(frozen=True)
class PriorityChanged:
    priority: int


@dataclass(frozen=True)
class ForceRole:
    """A sync group moves a member with the others."""

    role: str                  # MASTER or BACKUP
    reason: str


# -- actions -------------------------------------------------------------------------------

@dataclass(frozen=True)
class SendAdvert:
    priority: int


@dataclass(frozen=True)
class AddAddresses:
    pass


@dataclass(frozen=True)
class RemoveAddresses:
    pass


@dataclass(frozen=True)
class Announce:
    """Gratuitous ARP / unsolicited NA for our addresses."""


@dataclass(frozen=True)
class AnnounceAfterLowerPriority:
    """A MASTER heard a lower priority (the other side of a healed split brain, whose
    gratuitous ARPs may have taken the neighbours away): keepalived's garp_lower_prio burst."""

    src: str
    priority: int


@dataclass(frozen=True)
class Transition:
    old: str
    new: str
    reason: str


Event = Startup | AdvertReceived | Timeout | Shutdown | FaultRaised | FaultCleared | \
    PriorityChanged | ForceRole | Resume
Action = SendAdvert | AddAddresses | RemoveAddresses | Announce | AnnounceAfterLowerPriority | \
    Transition


# -- timers ----------------------------------------------------------------------------------

def skew_time(params: Params, state: State) -> float:
    """v2: (256 - priority) / 256 seconds (RFC 3768); v3: scaled by the master's interval."""
    if params.version == 2:
        return (256 - state.priority) / 256
    return (256 - state.priority) * state.master_adver_interval / 256


def master_down_interval(params: Params, state: State) -> float:
    interval = params.advert_int if params.version == 2 else state.master_adver_interval
    return params.down_timer_adverts * interval + skew_time(params, state)


def _down_at(params: Params, state: State, now: float) -> float:
    """When a BACKUP declares its master down: a master down interval from now, or from
    the end of the start-up hold (keepalived's vrrp_delayed_start_time)."""
    start = now if state.hold_until is None else max(now, state.hold_until)
    return start + master_down_interval(params, state)


def initial_state(params: Params) -> State:
    return State(priority=params.priority, master_adver_interval=params.advert_int)


# -- the machine -------------------------------------------------------------------------------

def step(params: Params, state: State, event: Event,
         now: float) -> tuple[State, tuple[Action, ...]]:
    handler = _HANDLERS.get((state.role, type(event))) or _ANY_ROLE.get(type(event))
    if handler is None:
        return state, ()
    return handler(params, state, event, now)


def _become_master(params, state, now, reason) -> tuple[State, tuple[Action, ...]]:
    new = replace(state, role=MASTER, since=now, reason=reason, master_down_at=None,
                  preempt_at=None, advert_at=now + params.advert_int, master_ip=None,
                  master_priority=None)
    return new, (Transition(state.role, MASTER, reason), SendAdvert(state.priority),
                 AddAddresses(), Announce())


def _become_backup(params, state, now, reason):
    new = replace(state, role=BACKUP, since=now, reason=reason, advert_at=None, preempt_at=None)
    new = replace(new, master_down_at=_down_at(params, new, now))
    actions: tuple[Action, ...] = (Transition(state.role, BACKUP, reason),)
    if state.role == MASTER:
        actions += (RemoveAddresses(),)
    return new, actions


def _start(params, state, now, reason):
    """INIT or a cleared FAULT: the owner takes over at once, others wait as BACKUP."""
    if state.faults:
        return _enter_fault(params, state, now, "fault: " + ", ".join(sorted(state.faults)))
    if state.priority == OWNER_PRIORITY:
        return _become_master(params, state, now, reason)
    state = replace(state, master_adver_interval=params.advert_int)
    return _become_backup(params, state, now, reason)


def _enter_fault(params, state, now, reason):
    new = replace(state, role=FAULT, since=now, reason=reason, advert_at=None,
                  master_down_at=None, preempt_at=None)
    actions: tuple[Action, ...] = (Transition(state.role, FAULT, reason),)
    if state.role == MASTER:
        actions += (SendAdvert(STOP_PRIORITY), RemoveAddresses())
    return new, actions


def _on_startup(params, state, event, now):
    state, actions = _start(params, replace(state, hold_until=event.hold_until), now,
                            "startup")
    if state.role == BACKUP and event.hold_until is None and \
            event.listening_since is not None and event.listening_since < now:
        # listening since then: the master down interval has been running since then too
        state = replace(state, master_down_at=event.listening_since +
                        master_down_interval(params, state))
    return state, actions


def _on_resume(params, state, event, now):
    """keepalived's restore_vrrp_state and vrrp_init_state on reload: a MASTER stays MASTER
    (its VIPs stay; an advert with the new priority goes out at once, as keepalived's
    reload_master sets its timer to now; no priority 0, no transition, nothing notified);
    a BACKUP stays BACKUP with a fresh master down timer; FAULT is worked out afresh from
    the tracking already posted (a fault kept is no transition either). The priority and
    faults are the new instance's (its tracking ran before this event); the role's since
    and reason are the old one's. If the new priority loses to a peer, the RFC's rules act
    on the next adverts, as in keepalived."""
    previous = event.previous
    state = replace(state, hold_until=event.hold_until)
    if previous.role not in (MASTER, BACKUP, FAULT):        # never started: as at start-up
        return _start(params, state, now, "startup")
    state = replace(state, role=previous.role, since=previous.since, reason=previous.reason)
    if state.faults:
        if previous.role == FAULT:
            return state, ()
        return _enter_fault(params, state, now, "fault: " + ", ".join(sorted(state.faults)))
    if previous.role == FAULT:
        return _start(params, state, now, "reload")
    if previous.role == MASTER:
        new = replace(state, advert_at=now + params.advert_int, master_down_at=None,
                      preempt_at=None)
        return new, (SendAdvert(state.priority), AddAddresses()) + \
            ((Announce(),) if event.announce else ())
    new = replace(state, advert_at=None, preempt_at=None, master_ip=previous.master_ip,
                  master_priority=previous.master_priority)
    return replace(new, master_down_at=_down_at(params, new, now)), ()


def _higher_ip(src: str, ours: str) -> bool:
    try:
        return ipaddress.ip_address(src) > ipaddress.ip_address(ours)
    except (ValueError, TypeError):     # mixed families never tie-break; keep our role
        return False


def _backup_advert(params, state, event, now):
    if event.priority == STOP_PRIORITY:
        # The master is leaving: take over after the skew alone (RFC 3768 6.4.2).
        return replace(state, master_down_at=now + skew_time(params, state)), ()
    interval = event.advert_int if params.version == 3 else params.advert_int
    if not params.preempt or event.priority >= state.priority:
        new = replace(state, master_adver_interval=interval, master_ip=event.src,
                      master_priority=event.priority, preempt_at=None)
        return replace(new, master_down_at=_down_at(params, new, now)), ()
    # A lower-priority master while we may preempt: RFC discards the advert so that our
    # timer runs out; preempt_delay lets the lower master serve that much longer first.
    new = replace(state, master_ip=event.src, master_priority=event.priority)
    if params.preempt_delay > 0:
        preempt_at = state.preempt_at if state.preempt_at is not None \
            else now + params.preempt_delay
        new = replace(new, preempt_at=preempt_at, master_adver_interval=interval,
                      master_down_at=min(_down_at(params, new, now), preempt_at))
    return new, ()


def _backup_timeout(params, state, event, now):
    if state.master_down_at is not None and now >= state.master_down_at:
        reason = "preempt" if state.master_priority is not None and \
            state.master_priority < state.priority and state.master_priority > 0 \
            else "master_down"
        return _become_master(params, state, now, reason)
    return state, ()


def _held_past_backup(params, state, now) -> bool:
    """keepalived 2.3's timer_expired_backup: a MASTER held up (a stopped process, a paused
    VM) past what a BACKUP of that priority waits has most likely been replaced. Checked on
    whatever comes first after the hold, the timer or an advert read late."""
    other = params.timer_expired_backup
    if other is None or state.advert_at is None:
        return False
    skew = (256 - other) / 256 * (1.0 if params.version == 2 else params.advert_int)
    return now - (state.advert_at - params.advert_int) >= 3 * params.advert_int + skew


def _master_advert(params, state, event, now):
    if _held_past_backup(params, state, now):
        state, actions = _become_backup(params, state, now, "timer_expired")
        return _backup_advert(params, state, event, now)[0], actions
    if event.priority == STOP_PRIORITY:
        return replace(state, advert_at=now + params.advert_int), (SendAdvert(state.priority),)
    if event.priority > state.priority or (
            event.priority == state.priority and _higher_ip(event.src, params.primary_ip)):
        interval = event.advert_int if params.version == 3 else params.advert_int
        new = replace(state, master_adver_interval=interval, master_ip=event.src,
                      master_priority=event.priority)
        new, actions = _become_backup(params, new, now, "higher_priority")
        # Two masters: if the winner's advert crossed first, the winner has heard nothing
        # from us and would not re-announce; our lower advert makes it (keepalived's
        # higher_prio_send_advert; keepalived leaves it off, which after a healed split
        # brain leaves the neighbours on our MAC about half of the time).
        if params.higher_prio_send_advert:
            actions = (SendAdvert(state.priority),) + actions
        return new, actions
    # Another master with a lower priority: answer at once so it steps down now, not
    # at our next advert (a healed partition converges in one advert), and repoint the
    # neighbours its gratuitous ARPs took (keepalived's garp_lower_prio_repeat).
    if params.lower_prio_no_advert:
        return state, (AnnounceAfterLowerPriority(event.src, event.priority),)
    return replace(state, advert_at=now + params.advert_int), \
        (SendAdvert(state.priority), AnnounceAfterLowerPriority(event.src, event.priority))


def _master_timeout(params, state, event, now):
    if state.advert_at is None or now < state.advert_at:
        return state, ()
    if _held_past_backup(params, state, now):
        return _become_backup(params, state, now, "timer_expired")
    following = state.advert_at + params.advert_int
    if following <= now:          # we were held up past a whole interval: do not burst
        following = now + params.advert_int
    return replace(state, advert_at=following), (SendAdvert(state.priority),)


def _on_shutdown(params, state, event, now):
    actions: tuple[Action, ...] = (Transition(state.role, STOP, "shutdown"),)
    if state.role == MASTER:
        actions += (SendAdvert(STOP_PRIORITY), RemoveAddresses())
    return replace(state, role=STOP, since=now, reason="shutdown", advert_at=None,
                   master_down_at=None, preempt_at=None), actions


def _on_fault_raised(params, state, event, now):
    new = replace(state, faults=state.faults | {event.name})
    if state.role in (INIT, STOP, FAULT):
        return new, ()
    return _enter_fault(params, new, now, f"fault: {event.name}")


def _on_fault_cleared(params, state, event, now):
    new = replace(state, faults=state.faults - {event.name})
    if state.role == FAULT and not new.faults:
        return _start(params, new, now, f"recovered: {event.name}")
    return new, ()


def _on_priority(params, state, event, now):
    priority = OWNER_PRIORITY if params.priority == OWNER_PRIORITY else \
        max(1, min(254, event.priority))
    if priority == state.priority:
        return state, ()
    new = replace(state, priority=priority)
    if state.role == MASTER:      # tell the backups now, not at the next tick
        return replace(new, advert_at=now + params.advert_int), (SendAdvert(priority),)
    return new, ()


def _on_force(params, state, event, now):
    if state.role == BACKUP and event.role == MASTER:
        return _become_master(params, state, now, event.reason)
    if state.role == MASTER and event.role == BACKUP:
        return _become_backup(params, state, now, event.reason)
    return state, ()


_HANDLERS = {
    (INIT, Startup): _on_startup,
    (INIT, Resume): _on_resume,
    (BACKUP, AdvertReceived): _backup_advert,
    (BACKUP, Timeout): _backup_timeout,
    (MASTER, AdvertReceived): _master_advert,
    (MASTER, Timeout): _master_timeout,
}
_ANY_ROLE = {
    Shutdown: _on_shutdown,
    FaultRaised: _on_fault_raised,
    FaultCleared: _on_fault_cleared,
    PriorityChanged: _on_priority,
    ForceRole: _on_force,
}



def _ignore(params, state, event, now):
    return state, ()


# STOP is final: nothing leaves it.
_HANDLERS.update({(STOP, event_type): _ignore for event_type in _ANY_ROLE})
