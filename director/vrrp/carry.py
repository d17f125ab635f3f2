"""A reload's changed instance that is still the same virtual router keeps its role.

keepalived matches the instances of the new file to the running ones by what they are on
the wire, not by their settings (vrrp.c vrrp_exist: the vrid, the family, the configured
interface, unicast or multicast, for unicast the source address, for multicast whether a
VMAC is used and use_vmac_addr; not the VRRP version, the priority, the authentication,
the advert interval nor the VIPs), and such a match goes on where the old one was
(restore_vrrp_state): a MASTER keeps its VIPs, loses those no longer configured
(clear_diff_vrrp), adds the new ones and announces them, and advertises its new priority
at once; a BACKUP stays BACKUP; FAULT is worked out afresh. Nothing of that is a
transition: no notify script, no FIFO line (fifo_write_vrrp_states_on_reload aside), no
priority 0 that makes the peer take over while we restart.

Here the name is the identity first (reconcile.plan pairs instances by name: a renamed
instance is another one), then keepalived's match decides whether the changed instance
carries its role (``identity``) or really restarts (leaves as on stop, starts as at
start-up). The state machine's part is fsm.Resume; this module says who carries, hands the
old instance's run-time state to the new one and removes what the MASTER no longer holds.
"""

from __future__ import annotations

import logging
from typing import Any

from .. import hub
from ..config.validate import instance_family
from ..log import event as log_event
from . import fsm
from .addresses import apply_all

log = logging.getLogger("director.vrrp")

CARRIED_ROLES = (fsm.MASTER, fsm.BACKUP, fsm.FAULT)


def identity(item: Any) -> tuple:
    """What keepalived's vrrp_exist compares: equal identities are the same router."""
    unicast = bool(item.unicast_peer)
    return (item.virtual_router_id, instance_family(item), item.interface, unicast,
            item.unicast_src_ip if unicast else None,
            None if unicast else (item.use_vmac is not None, bool(item.use_vmac_addr)))


def carries(old: Any, item: Any) -> bool:
    """Whether the running instance ``old`` hands its role to the new block ``item``: the
    same router, in a role worth keeping (one that never started starts as at start-up)."""
    return identity(old.config) == identity(item) and old.state is not None and \
        old.state.role in CARRIED_ROLES and old.started


def retire(instances: list, timeout: float) -> None:
    """Stop the old instances' greenlets without leaving their role: no priority 0, no
    VIP removed, no transition (Instance.retire)."""
    for instance in instances:
        instance.retire()
    hub.joinall([i.greenlet for i in instances if i.greenlet], timeout=timeout)
    for instance in instances:            # one stuck past the timeout, or crashed
        if instance.greenlet is not None and not instance.greenlet.dead:
            instance.greenlet.kill(block=False)
        instance.quiet()


def hand_over(old: Any, new: Any) -> bool:
    """What the new instance takes from the old (keepalived keeps the stats and the AH
    counter), and, from a MASTER, what it no longer holds removed first (VIPs, routes,
    rules the new block lacks, as clear_diff_vrrp). Returns whether the new block adds VIPs
    a MASTER must announce."""
    new.ah_sequence = old.ah_sequence
    new.counters = old.counters
    new.advert_lateness = old.advert_lateness
    new.last_transition_wall = old.last_transition_wall
    if new.config.old_unicast_checksum == old.config.old_unicast_checksum:
        new.old_checksum = old.old_checksum         # learnt from a peer's advert: still so
    new._ip_ident = old._ip_ident
    if old.state.role != fsm.MASTER:
        return False
    before = _held(old)
    after = _held(new)
    gone = [vip for vip in before[0] if vip not in after[0]]
    routes = [route for route in before[1] if route not in after[1]]
    rules = [rule for rule in before[2] if rule not in after[2]]
    if gone or routes or rules:
        new.counters.address_errors += apply_all(
            old.addresses, gone, routes, old.vip_interface, False, old.name, rules)
        log_event(log, "vrrp.reload_removed", instance=old.name,
                  addresses=",".join(vip.address for vip in gone) or None,
                  routes=len(routes), rules=len(rules))
    added = [vip for vip in after[0] if vip not in before[0]]
    return bool(added) or new.vip_interface != old.vip_interface


def _held(instance: Any) -> tuple[list, list, list]:
    config = instance.config
    return (list(instance.placed(config.virtual_ipaddress + config.virtual_ipaddress_excluded)),
            list(config.virtual_routes), list(config.virtual_rules))


def resume(new: Any, old: Any | None, announce: dict[str, bool]) -> bool:
    """A changed instance's first steps, before its greenlet starts (so that a kept
    MASTER's advert goes out now): Resume from ``old`` (None: it restarts, and starts as
    at start-up in its greenlet). Logged; returns whether the role was kept (nothing
    notified: fifo_write_vrrp_states_on_reload then writes it, as keepalived)."""
    if old is None:
        log_event(log, "vrrp.reloaded", instance=new.name, role=fsm.INIT, kept=False,
                  note="restarted: another router (vrid, interface, family, unicast or VMAC "
                       "changed), or it had not started")
        return False
    try:
        new.begin(resume_event(old, new, announce.get(new.name, False)))
    except Exception as exc:            # never seen; the instance then starts afresh
        log_event(log, "vrrp.resume_error", logging.ERROR, instance=new.name, error=exc)
        new.started, new.state = False, fsm.initial_state(new.params)
        return False
    kept = new.state.role == old.state.role
    log_event(log, "vrrp.reloaded", instance=new.name, role=new.state.role, kept=kept,
              priority=new.state.priority)
    return kept


def resume_event(old: Any, new: Any, announce: bool) -> fsm.Resume:
    """The new instance's first event; garp_master_refresh restarts its GARPs as well
    (keepalived's reload sends a set then and rearms the refresh)."""
    refresh = new._setting("garp_master_refresh", 0)
    return fsm.Resume(old.state, announce or bool(refresh), new.startup_hold_until)
