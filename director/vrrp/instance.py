"""One VRRP instance at run time: a greenlet owns its state, feeds the pure state machine
with events (adverts, timeouts, faults, priority changes) and carries out its actions.

Nothing else writes the state: the receiver, the trackers and the daemon only post events to
the inbox, which is what keeps the instance's story consistent (keepalived assigns instance
state from dozens of places; we do not).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from .. import hub
from ..config import strict
from ..clock import Clock
from ..lateness import Lateness
from ..log import event as log_event
from . import ah, fsm, wire
from .addresses import Addresses, apply_all
from ..names import default_interface
from .packet import (AUTH_AH, AUTH_PASS, TTL, Advert, Expectation, encode, pass_auth_data)
from .vmac import InstanceLinks, extra_garp_interfaces

if TYPE_CHECKING:
    from ..state import InstanceView

log = logging.getLogger("director.vrrp")
RETIRE = object()           # in the inbox: end the greenlet, keep the role (Instance.retire)


@dataclass
class Counters:
    """What an instance counts for the dashboard, /metrics and the stats dump."""

    adverts_sent: int = 0
    adverts_received: int = 0
    send_errors: int = 0
    address_errors: int = 0
    became_master: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    noted: dict[str, int] = field(default_factory=dict)
    transitions: dict[tuple[str, str], int] = field(default_factory=dict)


class Instance:
    def __init__(self, config: Any, global_defs: Any, version: int, family: int,
                 clock: Clock, addresses: Addresses, announcer: Any, sender: Any) -> None:
        self.config = config
        self.name = config.name
        self.global_defs = global_defs
        self.version = version
        self.family = family
        self.clock = clock
        self.addresses = addresses
        self.announcer = announcer
        self.sender = sender                  # VrrpSocket of our interface and family
        self.inbox: hub.Queue = hub.Queue()
        self.counters = Counters()
        self.advert_lateness = Lateness()         # as MASTER: how late each due advert went
        self.params: fsm.Params | None = None
        self.state: fsm.State | None = None
        self.last_transition_wall: float | None = None
        self.listeners: list[Callable[["Instance", fsm.Transition], None]] = []
        self.fault_listeners: list[Callable[["Instance"], None]] = []    # its faults changed
        # told what is not a transition: MASTER_PRIORITY / BACKUP_PRIORITY (the effective
        # priority changed), MASTER_RX_LOWER_PRI (a lower priority heard as MASTER)
        self.notices: list[Callable[["Instance", str], None]] = []
        self._announcing: hub.Greenlet | None = None
        self._reannouncing: hub.Greenlet | None = None   # the garp_lower_prio burst
        self._extra_garp: hub.Greenlet | None = None     # garp_extra_if
        self.vmac: InstanceLinks | None = None    # use_vmac / use_ipvlan (set before prepare)
        self.socket_keys: list[tuple] = []        # its sockets (the service's keys), sender first
        self.greenlet: hub.Greenlet | None = None
        self.started = False                    # Startup was applied
        self.source = config.unicast_src_ip or config.mcast_src_ip
        self._read_before: float | None = None   # the deadline the sockets were read for
        self.startup_hold_until: float | None = None   # vrrp_startup_delay (the service's)
        self.listening_since: float | None = None      # vrrp/early.py: adverts heard since
        self.heard_early: list[fsm.AdvertReceived] = []    # ... these, applied after Startup
        self.quick_taken = False        # its VIPs went up at exec (vrrp/quickstart.py)
        # old_unicast_checksum: configured, or learnt from a peer's advert (keepalived's AUTO)
        self.old_checksum = config.old_unicast_checksum == "config"
        # what strict mode resets (config.strict), by field; read through configured()
        self.overrides: dict[str, Any] = strict.overrides(config, global_defs)
        self.firewall: Any = None     # vrrp.firewall.Firewall when accept mode may be off
        self.ah_sequence = ah.Sequence()        # AH: sent and accepted (a reload carries it)
        self._ip_ident = 0                      # AH: we write the IP header, so its id too

    # -- set-up ----------------------------------------------------------------------------

    @property
    def vip_interface(self) -> str:
        """Where a VIP without 'dev' goes: the instance's interface; for a unicast instance
        without one, global_defs default_interface (keepalived's eth0 when unset)."""
        return self.config.interface or default_interface(self.global_defs)

    def prepare(self, primary_ip: str) -> None:
        """Fix the parameters once the interface's address is known (I/O done by the caller)."""
        config = self.config
        self.source = self.source or primary_ip
        self.params = fsm.Params(
            name=config.name, vrid=config.virtual_router_id, priority=config.priority,
            advert_int=self._advert_int(), version=self.version, preempt=config.preempt,
            preempt_delay=self.configured("preempt_delay") or 0.0, primary_ip=self.source,
            down_timer_adverts=self.configured("down_timer_adverts") or
            self.global_defs.vrrp_down_timer_adverts or 3,
            lower_prio_no_advert=bool(self._setting("lower_prio_no_advert", False)),
            higher_prio_send_advert=bool(self._setting("higher_prio_send_advert", True)),
            timer_expired_backup=config.timer_expired_backup)
        self.state = fsm.initial_state(self.params)

    def _advert_int(self) -> float:
        if self.version == 2:
            return float(max(1, round(self.config.advert_int)))
        return max(0.01, round(self.config.advert_int * 100) / 100)

    def vips(self) -> tuple:
        return self.placed(self.config.virtual_ipaddress)

    def placed(self, vips: tuple) -> tuple:
        """The VIPs with ``dev`` naming the VMAC that holds them, where one does."""
        if self.vmac is None:
            return vips
        return tuple(self.vmac.place(vip, self.config.interface) for vip in vips)

    @property
    def vip_interface(self) -> str:
        """Where the VIPs without ``dev`` go: the VMAC, or the instance's interface."""
        return self.vmac.primary.name if self.vmac else self.config.interface

    def advertised_addresses(self) -> tuple[str, ...]:
        return tuple(vip.address.split("/")[0] for vip in self.config.virtual_ipaddress
                     if vip.family == self.family)

    def configured(self, name: str) -> Any:
        """The instance's keyword as it runs: as written, unless strict mode resets it."""
        return self.overrides[name] if name in self.overrides else getattr(self.config, name)

    def auth(self) -> tuple[int, bytes]:
        """(auth type, 8 bytes: the password or the AH key) as this instance uses them:
        keepalived ignores authentication with VRRPv3 (and VRRPv2 has no IPv6), and strict
        mode resets it."""
        auth = self.configured("authentication")
        if auth is None or not ah.applies(self.version, self.family):
            return 0, b""
        return (AUTH_AH if auth.auth_type == "AH" else AUTH_PASS,
                pass_auth_data(auth.auth_pass.reveal()))

    def expectation(self) -> Expectation:
        auth_type, auth_data = self.auth()
        unicast = bool(self.config.unicast_peer)
        peers = self.config.unicast_peer
        return Expectation(
            version=self.version, advert_int=self.params.advert_int,
            addresses=frozenset(self.advertised_addresses()),
            auth_type=auth_type, auth_data=auth_data,
            check_ttl=not unicast, unicast=unicast,
            min_ttl=min((p.min_ttl for p in peers if p.min_ttl is not None), default=None),
            max_ttl=max((p.max_ttl for p in peers if p.max_ttl is not None), default=None),
            **wire.expectation(self.config, self.global_defs, self.params.priority))

    # -- the greenlet ------------------------------------------------------------------------

    def start(self) -> hub.Greenlet:
        self.greenlet = hub.supervise(self.run, name=f"vrrp instance {self.name}")
        return self.greenlet

    def post(self, event: fsm.Event) -> None:
        self.inbox.put(event)

    def begin(self, first: fsm.Event) -> None:
        """What tracking reported before we started (a link already down, a priority
        already lowered) is known before ``first`` (Startup, or a reload's Resume), so we
        start in the right state. The service calls it for a Resume before start(), so
        that a kept MASTER's advert and VIPs do not wait for the greenlet's first turn."""
        self.started = True
        if wire.fault_no_peer(self.config):
            self.apply(fsm.FaultRaised(wire.NO_PEER))
        while not self.inbox.empty():
            self.apply(self.inbox.get_nowait())
        self.apply(first)
        if isinstance(first, fsm.Resume) and self.state.role == fsm.MASTER and \
                self._announcing is None:
            self._start_extra_garp()        # Announce starts it, else the kept MASTER does

    def retire(self) -> None:
        """A reload hands this instance's role to its successor (vrrp/carry.py): the
        greenlet ends without a transition (no priority 0, the VIPs stay)."""
        self.inbox.put(RETIRE)

    def quiet(self) -> None:
        """Its gratuitous ARP greenlets end (they would go on with the old settings)."""
        for greenlet in (self._announcing, self._reannouncing, self._extra_garp):
            if greenlet is not None:
                greenlet.kill(block=False)
        self._announcing = self._reannouncing = self._extra_garp = None

    def run(self) -> None:
        # After a crash (hub.supervise restarts run) the state machine goes on where it was.
        if not self.started:
            self.begin(fsm.Startup(self.startup_hold_until, self.listening_since))
            if self.quick_taken and self.state.role != fsm.MASTER:
                self._addresses(add=False)      # the exec's plan no longer holds (a fault)
            for advert in self.heard_early:     # in order, as if heard when they came
                self.apply(advert)
            self.heard_early = []
        while self.state.role != fsm.STOP:
            deadline = self.state.next_deadline()
            timeout = None if deadline is None else max(0.0, deadline - self.clock.now())
            try:
                event = self.inbox.get(timeout=timeout)
            except hub.Empty:
                if deadline != self._read_before and self._adverts_may_wait(deadline):
                    # Let the receivers read what waits in the sockets first: a process
                    # stopped past the master down interval (SIGSTOP, a paused VM) wakes
                    # with its timer run out AND its master's adverts queued, and the timer
                    # came first: BACKUP -> MASTER -> BACKUP in 3 ms, a VIP on two hosts.
                    # Once per deadline, so that a flood of adverts cannot defer it.
                    self._read_before = deadline
                    hub.breathe()
                    if not self.inbox.empty():
                        continue
                event = fsm.Timeout()
            if event is RETIRE:
                self.quiet()
                return
            self.apply(event)

    def _adverts_may_wait(self, deadline: float) -> bool:
        """Whether an expired timer must wait for the adverts the sockets hold: always
        before a BACKUP declares its master down (rare, and the one that hurts when wrong),
        and for a MASTER held past a whole interval (a higher priority that took over
        meanwhile is heard before our late advert goes out)."""
        return self.state.role == fsm.BACKUP or \
            self.clock.now() - deadline > self.params.advert_int

    def apply(self, event: fsm.Event) -> None:
        if isinstance(event, fsm.AdvertReceived):
            self.counters.adverts_received += 1
        state, now = self.state, self.clock.now()
        self.state, actions = fsm.step(self.params, state, event, now)
        for action in actions:
            self._carry_out(action)
        if state is not None and self.state.faults != state.faults:
            for listener in list(self.fault_listeners):
                listener(self)
        if self.state.priority != state.priority and state.role != fsm.INIT:
            # (before Startup the priority is the initial one, as keepalived's, not a change)
            self._notice("MASTER_PRIORITY" if self.state.role == fsm.MASTER
                         else "BACKUP_PRIORITY")
        due = state.advert_at
        if due is not None and now >= due and state.role == fsm.MASTER and \
                any(type(action) is fsm.SendAdvert for action in actions):
            # an advert was due: the one that went out now (on its timer, or in answer to a
            # lower priority after a hold) says how late
            self.advert_lateness.add(now - due)

    # -- actions -------------------------------------------------------------------------------

    def _carry_out(self, action: fsm.Action) -> None:
        if isinstance(action, fsm.SendAdvert):
            self.send_advert(action.priority)
        elif isinstance(action, fsm.AddAddresses):
            self._addresses(add=True)
        elif isinstance(action, fsm.RemoveAddresses):
            self._addresses(add=False)
        elif isinstance(action, fsm.Announce):
            self._start_announcing()
        elif isinstance(action, fsm.AnnounceAfterLowerPriority):
            self._notice("MASTER_RX_LOWER_PRI")
            self._start_reannouncing(action)
        elif isinstance(action, fsm.Transition):
            self._transition(action)

    def send_advert(self, priority: int) -> None:
        for destination, message, ttl, source in self.advert_messages(priority):
            try:
                self.sender.send(message, destination, ttl, source)
                self.counters.adverts_sent += 1
            except OSError as exc:
                self.counters.send_errors += 1
                log_event(log, "vrrp.send_error", logging.WARNING, instance=self.name,
                          destination=destination, error=exc)

    def advert_messages(self, priority: int) -> list[tuple[str, bytes, int | None, str | None]]:
        """The advert of ``priority`` as it goes out to each destination: (destination,
        message, this packet's TTL or None, the IPv6 source or None). With AH, the sequence
        number and the IP id advance: one per advert, as keepalived's."""
        auth_type, auth_data = self.auth()
        advert = Advert(self.version, self.params.vrid, priority, self.params.advert_int,
                        self.advertised_addresses(), self.family, auth_type,
                        auth_data if auth_type == AUTH_PASS else b"")
        peers = [peer.address for peer in self.config.unicast_peer]
        as_v2 = wire.checksum_as_v2(self.config, self.global_defs)
        ttl = self.config.unicast_ttl if peers else None
        if auth_type == AUTH_AH:
            sequence = self.ah_sequence.next()
            self._ip_ident = self._ip_ident % 0xFFFF + 1          # never 0: the kernel's
        messages = []
        for destination in peers or [self.multicast_group()]:
            pseudo = self.multicast_group() if peers and self.old_checksum else destination
            message = encode(advert, self.source, pseudo, as_v2)
            if auth_type == AUTH_AH:
                # we write the IP header: unicast_ttl goes in it, not in a socket option
                messages.append((destination, ah.wrap(
                    message, self.source, destination, sequence=sequence,
                    ident=self._ip_ident, key=auth_data, ttl=ttl or TTL, unicast=bool(peers)),
                    None, None))
            else:
                messages.append((destination, message, ttl,
                                 self.source if self.family == 6 else None))
        return messages

    def multicast_group(self) -> str:
        return wire.multicast_group(self.config, self.global_defs, self.family)

    def _addresses(self, add: bool) -> None:
        if add is False:
            for greenlet in (self._announcing, self._reannouncing, self._extra_garp):
                if greenlet is not None:
                    greenlet.kill(block=False)
            self._announcing = self._reannouncing = self._extra_garp = None
        config = self.config
        if add and self.firewall is not None:
            self.firewall.block(self)         # before the VIPs, as keepalived does
        self.counters.address_errors += apply_all(
            self.addresses, self.placed(config.virtual_ipaddress +
                                        config.virtual_ipaddress_excluded),
            config.virtual_routes, self.vip_interface, add, self.name, config.virtual_rules)
        if not add and self.firewall is not None:
            self.firewall.unblock(self)

    def _transition(self, transition: fsm.Transition) -> None:
        key = (transition.old, transition.new)
        self.counters.transitions[key] = self.counters.transitions.get(key, 0) + 1
        if transition.new == fsm.MASTER:
            self.counters.became_master += 1
            self.ah_sequence.becoming_master()      # before the first advert goes out
        self.last_transition_wall = self.clock.wall()
        log_event(log, "vrrp.transition", instance=self.name, vrid=self.params.vrid,
                  **{"from": transition.old, "to": transition.new},
                  reason=transition.reason, priority=self.state.priority)
        for listener in list(self.listeners):
            listener(self, transition)

    def _notice(self, what: str) -> None:
        for listener in list(self.notices):
            listener(self, what)

    # -- gratuitous ARP / unsolicited NA --------------------------------------------------

    def _setting(self, name: str, fallback):
        value = self.configured(name)
        if value is None:
            value = getattr(self.global_defs, f"vrrp_{name}")
        return fallback if value is None else value

    def _lower_prio_setting(self, name: str, fallback: int) -> int:
        """garp_lower_prio_NAME, else the global vrrp_garp_lower_prio_NAME, else the global
        vrrp_garp_master_NAME: keepalived 2.2.7 takes the global value, not the instance's
        garp_master_NAME."""
        value = self._setting(f"garp_lower_prio_{name}", None)
        if value is None:
            value = getattr(self.global_defs, f"vrrp_garp_master_{name}")
        return fallback if value is None else value

    def _start_announcing(self) -> None:
        if self._announcing is not None:
            self._announcing.kill(block=False)
        self._announcing = hub.spawn(self._announce, name=f"vrrp announce {self.name}")
        self._start_extra_garp()

    def _announce(self) -> None:
        """keepalived's schedule: a set at once, another after garp_master_delay, and a
        refresh set every garp_master_refresh seconds while MASTER, counted from the
        transition as keepalived's refresh timer is (not from the delayed set)."""
        repeat = self._setting("garp_master_repeat", 5)
        self._announce_set(repeat)
        delay = self._setting("garp_master_delay", 5)
        refresh = self._setting("garp_master_refresh", 0)
        refresh_repeat = self._setting("garp_master_refresh_repeat", 1)
        start = self.clock.now()
        delayed_at = start + delay if delay else None
        refresh_at = start + refresh if refresh else None
        while self.state.role == fsm.MASTER and (delayed_at is not None or
                                                 refresh_at is not None):
            due = min(t for t in (delayed_at, refresh_at) if t is not None)
            hub.sleep(max(0.0, due - self.clock.now()))
            if due == delayed_at:
                delayed_at = None
                self._announce_set(repeat)
            else:
                refresh_at += refresh
                if refresh_at <= self.clock.now():   # held up past an interval: no catch-up
                    refresh_at = self.clock.now() + refresh
                self._announce_set(refresh_repeat)

    def _start_reannouncing(self, heard: fsm.AnnounceAfterLowerPriority) -> None:
        """A lower priority heard while MASTER. keepalived arms one delayed set per advert
        heard; here a newer advert restarts the burst (and its delay), so a peer that keeps
        advertising lower, or a forger (v3 has no authentication), cannot pile up greenlets
        (nor log lines: one per burst that was not already under way)."""
        repeat = self._lower_prio_setting("repeat", 5)
        if not repeat:
            return
        if self._reannouncing is not None:
            self._reannouncing.kill(block=False)
        else:
            log_event(log, "vrrp.lower_priority_heard", instance=self.name, src=heard.src,
                      priority=heard.priority, ours=self.state.priority, garp_repeat=repeat)
        self._reannouncing = hub.spawn(self._reannounce, name=f"vrrp reannounce {self.name}")

    def _reannounce(self) -> None:
        """garp_lower_prio_repeat rounds at once, as many again after garp_lower_prio_delay."""
        repeat = self._lower_prio_setting("repeat", 5)
        self._announce_set(repeat)
        delay = self._lower_prio_setting("delay", 5)
        if delay:
            hub.sleep(delay)
            self._announce_set(repeat)
        self._reannouncing = None

    def _start_extra_garp(self) -> None:
        """garp_extra_if: while MASTER, one GARP / NA every N seconds on each other VMAC of
        the VIPs (keepalived's vmac_garp_timer), so switches keep the virtual MACs' ports."""
        setting = self.config.garp_extra_if or self.global_defs.vrrp_garp_extra_if
        if self._extra_garp is not None:
            self._extra_garp.kill(block=False)
            self._extra_garp = None
        if setting is None or not setting.interval:
            return
        vips = self.placed(self.config.virtual_ipaddress + self.config.virtual_ipaddress_excluded)
        names = {link.name for link in self.vmac.all} if self.vmac else set()
        advert_interface = self.vmac.advert_interface if self.vmac else self.config.interface
        targets = extra_garp_interfaces(vips, self.vip_interface, advert_interface, names,
                                        setting.all)
        if targets:
            self._extra_garp = hub.spawn(self._refresh_extra, setting.interval, targets,
                                         name=f"vrrp extra garp {self.name}")

    def _refresh_extra(self, interval: int, targets: dict[str, str]) -> None:
        while True:
            hub.sleep(interval)
            if self.state.role != fsm.MASTER:
                return
            for ifname, address in targets.items():
                try:
                    self.announcer.announce(ifname, [address])
                except OSError as exc:
                    log_event(log, "vrrp.announce_error", logging.WARNING, instance=self.name,
                              interface=ifname, error=exc)

    def announced(self) -> dict[str, list[str]]:
        """What a MASTER announces: its addresses (VIPs and excluded ones) by interface."""
        by_interface: dict[str, list[str]] = {}
        for vip in self.placed(self.config.virtual_ipaddress +
                               self.config.virtual_ipaddress_excluded):
            by_interface.setdefault(vip.dev or self.vip_interface, []).append(
                vip.address.split("/")[0])
        return by_interface

    def _announce_set(self, repeat: int) -> None:
        """``repeat`` rounds, each address once per round, through the per-interface pacer
        (garp_pacing: garp_interval / gna_interval space the frames, as keepalived's)."""
        by_interface = self.announced()
        for _ in range(max(1, repeat)):
            if self.state.role != fsm.MASTER:
                return
            for ifname, addresses in by_interface.items():
                try:
                    self.announcer.announce(
                        ifname, addresses, self.config.garp_interval, self.config.gna_interval,
                        wanted=lambda: self.state.role == fsm.MASTER)
                except OSError as exc:
                    log_event(log, "vrrp.announce_error", logging.WARNING, instance=self.name,
                              interface=ifname, error=exc)

    # -- what the dashboard, the metrics and the dump files read ---------------------------

    def snapshot(self, sync_group: str | None = None) -> InstanceView:
        """Its view now; ``sync_group`` is the group it is in (the service knows its groups)."""
        # the views load when first asked for: they are not on the way to the first advert
        from ..state import InstanceCounters, InstanceView, VmacView, frozen
        from .vmac_links import link_state
        state, config, counters = self.state, self.config, self.counters
        return InstanceView.of(
            config, self.version, sync_group,
            effective_priority=state.priority if state else config.priority,
            state=state.role if state else fsm.INIT,
            master_ip=(self.source if state and state.role == fsm.MASTER
                       else state.master_ip if state else None),
            last_transition=self.last_transition_wall,
            reason=state.reason if state else None,
            faults=tuple(sorted(state.faults)) if state else (),
            counters=InstanceCounters(
                counters.adverts_sent, counters.adverts_received, counters.send_errors,
                counters.address_errors, counters.became_master, frozen(counters.dropped),
                frozen(counters.noted), frozen(counters.transitions)),
            advert_lateness=self.advert_lateness.view(),
            vmacs=tuple(VmacView(link.name, link.kind, link.base, *link_state(link.name))
                        for link in (self.vmac.all if self.vmac else ())))
