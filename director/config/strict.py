"""Strict mode and accept mode, as keepalived 2.2.7 decides them (vrrp.c,
vrrp_complete_instance), and the firewall settings that follow.

- ``strict_mode`` (unset: global_defs ``vrrp_strict``) refuses an instance with no virtual
  address and resets, with a warning, what RFC 3768 / 5798 do not have: authentication,
  preempt_delay, down_timer_adverts, garp_lower_prio_*, lower_prio_no_advert off,
  higher_prio_send_advert on, and accept mode with VRRPv2. ``overrides()`` is what the
  instance then runs with, ``problems()`` what -t says (validate reports it at the block).
- Accept mode (RFC 5798 Accept_Mode): unset, it is on for the address owner (priority 255)
  and, outside strict mode, for everyone (keepalived's default); a MASTER without it drops
  what is addressed to its VIPs: ``blocks()``. The nftables tables that do it are
  director/vrrp/firewall.py's; their keywords are in blocks/firewall.py.

Pure: the model in, values and messages out.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

OWNER = 255                        # the address owner's priority
DEFAULT_TABLE = "keepalived"       # keepalived's DEFAULT_NFTABLES_TABLE


# -- decisions -----------------------------------------------------------------------------

def strict_mode(instance: Any, defs: Any) -> bool:
    return bool(defs.vrrp_strict if instance.strict_mode is None else instance.strict_mode)


def accept_mode(instance: Any, defs: Any, version: int) -> bool:
    """The owner always accepts (no_accept or not); unset, accept is off in strict mode;
    strict mode with VRRPv2 turns it off (RFC 3768 has no accept mode)."""
    if instance.priority == OWNER:
        return True
    strict = strict_mode(instance, defs)
    if instance.accept is None:
        return not strict
    return bool(instance.accept) and not (strict and version == 2)


def blocks(instance: Any, defs: Any, version: int) -> bool:
    """Whether this instance's addresses are dropped while it holds them."""
    return not accept_mode(instance, defs, version)


# What a strict instance runs with whatever it says (keepalived resets each, warning only
# when the instance itself asked for something else).
STRICT = {"authentication": None, "preempt_delay": 0.0, "down_timer_adverts": 3,
          "garp_lower_prio_repeat": 0, "garp_lower_prio_delay": 0,
          "lower_prio_no_advert": True, "higher_prio_send_advert": False}


def overrides(instance: Any, defs: Any) -> dict[str, Any]:
    return dict(STRICT) if strict_mode(instance, defs) else {}


def problems(instance: Any, defs: Any, version: int, family: int) -> list[tuple[str, str]]:
    """(severity, message) for each keepalived strict-mode refusal or reset."""
    if not strict_mode(instance, defs):
        return []
    name = f"vrrp_instance {instance.name}: strict mode"
    found = []

    def reset(message: str) -> None:
        found.append(("warning", f"{name} {message}"))

    if not instance.virtual_ipaddress:
        found.append(("error", f"{name} needs at least one virtual_ipaddress"))
    owner = instance.priority == OWNER
    if (instance.initial_state == "MASTER") != owner:
        reset("takes 'state MASTER' for the address owner (priority 255) only: the "
              f"initial state is {'MASTER' if owner else 'BACKUP'}")
    if instance.authentication is not None:
        reset("has no authentication: ignored, adverts carry none")
    if instance.preempt_delay:
        reset("has no preempt_delay: reset to 0")
    if instance.down_timer_adverts not in (None, 3):
        reset("has no down_timer_adverts: reset to 3")
    if instance.garp_lower_prio_repeat:
        reset("sends no repeated gratuitous ARPs: garp_lower_prio_repeat reset to 0")
    if instance.garp_lower_prio_delay:
        reset("sends no repeated gratuitous ARPs: garp_lower_prio_delay reset to 0")
    if instance.lower_prio_no_advert is False:
        reset("answers no lower priority advert: lower_prio_no_advert reset to on")
    if instance.higher_prio_send_advert:
        reset("sends no advert before stepping down: higher_prio_send_advert reset to off")
    if instance.accept and not owner and version == 2:
        reset("with VRRPv2 has no accept mode (RFC 3768): accept reset to off, the VIPs are "
              "not answered")
    if family == 6 and instance.version == 2:
        reset("runs IPv6 with VRRP version 3: version 2 reset to 3")
    first = instance.virtual_ipaddress[0] if instance.virtual_ipaddress else None
    if family == 6 and first is not None and not instance.unicast_peer and \
            not ipaddress.ip_interface(first.address).is_link_local:
        reset("wants the first IPv6 virtual address link-local (RFC 5798); running as "
              "written")
    if instance.unicast_peer:
        reset("should not use unicast_peer (keepalived's documentation), but keepalived "
              "2.2.7 runs it (its check comes before it knows the instance is unicast); so "
              "does director")
    return found


# -- the firewall ------------------------------------------------------------------------------

@dataclass(frozen=True)
class FirewallSettings:
    table: str
    priority: int = -1
    counters: bool = False
    ifindex: bool = False
    families: tuple[int, ...] = (4,)     # a table per family of the addresses dropped
    link_local: tuple[str, ...] = ()     # the link-local sets used (keepalived: only those)
