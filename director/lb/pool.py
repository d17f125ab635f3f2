"""keepalived's pool logic, pure: from the configuration and what the checks say, the
services and destinations the kernel should have.

- A real server is in its pool while its checkers say it is up, with its configured weight,
  the weight a MISC_CHECK (misc_dynamic), FILE_CHECK or AGENT_CHECK asked for, or 0 while
  drained (by an operator, or by its agent); during a slow start ramp (slowstart.py)
  that weight scaled by the ramp's fraction. An agent's ``maint`` takes it out of the
  pool (not a failure: inhibit_on_failure does not keep it); its ``maxconn`` is the
  upper connection threshold.
- An operator's runtime weight (director/overrides.py) replaces the configured and the
  checks' weight until a reload; a real server in maintenance leaves the pool (and the
  quorum's weight) while still checked.
- A real server that is down leaves the pool, or stays at weight 0 with inhibit_on_failure.
- Quorum: the live weight (sum of the weights of the servers up) must reach quorum; with
  hysteresis it is lost below quorum - hysteresis and regained at quorum + hysteresis.
  While it is lost the real servers leave and the sorry server serves (keepalived's
  perform_quorum_state); sorry_server_inhibit keeps it at weight 0 the rest of the time.
- A virtual_server_group expands into one service per address (ranges) or fwmark, all with
  the same pool; ha_suspend leaves a service out while its address is not ours.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any, Callable

from ..config.blocks.virtual_server import virtual_server_name
from .model import Destination, DestinationKey, Pool, Service, ServiceKey, State
from .slowstart import ramped_weight


@dataclass(frozen=True)
class Live:
    """What the checks say of one real server now."""

    up: bool = True
    weight: int | None = None       # a weight the checks asked for (misc_dynamic, FILE_CHECK)
    drained: bool = False           # an operator set it to weight 0 (dashboard "drain")
    # AGENT_CHECK: its agent's administrative state ("drain": weight 0; "maint": out of the
    # pool; "ready": neither) and maxconn (None: the configured uthreshold)
    agent_admin: str = "ready"
    agent_maxconn: int | None = None
    ramp: float | None = None       # slow start: the fraction of its ramp (None: full weight)
    weight_override: int | None = None  # an operator's runtime weight (until a reload)
    maintenance: bool = False       # an operator took it out of the pool (still checked)


@dataclass(frozen=True)
class QuorumChange:
    up: bool                        # True: quorum_up runs; False: quorum_down runs


FWMARK_PROTOCOL = "TCP"


def _family(address: str) -> int:
    return 6 if ":" in address else 4


def service_keys(virtual: Any, groups: dict[str, Any]) -> list[ServiceKey]:
    """The kernel services one virtual_server block stands for."""
    protocol = virtual.protocol or "TCP"
    # The kernel keeps no protocol for a fwmark service (IPVS reads it back as TCP): the key
    # must not carry one, or a restart would never recognise its own service.
    if virtual.fwmark is not None:
        family = 6 if virtual.ip_family == "inet6" else 4
        return [ServiceKey(FWMARK_PROTOCOL, fwmark=virtual.fwmark, family=family)]
    if virtual.group is None:
        return [ServiceKey(protocol, virtual.address, virtual.port,
                           family=_family(virtual.address))]
    keys = []
    for entry in groups[virtual.group].entries:
        if entry.fwmark is not None:
            keys.append(ServiceKey(FWMARK_PROTOCOL, fwmark=entry.fwmark,
                                   family=6 if virtual.ip_family == "inet6" else 4))
            continue
        first = ipaddress.ip_address(entry.address)
        last = ipaddress.ip_address(entry.range_end) if entry.range_end else first
        port = entry.port if entry.port is not None else virtual.port
        for value in range(int(first), int(last) + 1):
            address = str(ipaddress.ip_address(value))
            keys.append(ServiceKey(protocol, address, port, family=first.version))
    return keys


def service_flags(virtual: Any) -> tuple[str, ...]:
    """The service's flags as keepalived sets them (check_parser.c, lbflags_handler):
    flag-1, flag-2 and flag-3 are IPVS's scheduler flags 1, 2 and 3 whatever the scheduler;
    sh-port and sh-fallback count only with lb_algo sh, mh-port and mh-fallback only with
    mh (the configuration warns otherwise). Named as the kernel's are read back
    (ipvs._flag_names): ``<sched>-port`` (flag 2) and ``<sched>-fallback`` (flag 1) for sh
    and mh, flag-N for the others; so that what we program compares equal to what we read."""
    scheduler = virtual.lb_algo or "wlc"
    own = scheduler if scheduler in ("sh", "mh") else None
    port = virtual.flag_2 or (own == "sh" and virtual.sh_port) or \
        (own == "mh" and virtual.mh_port)
    fallback = virtual.flag_1 or (own == "sh" and virtual.sh_fallback) or \
        (own == "mh" and virtual.mh_fallback)
    return tuple(name for name, on in (
        ("ops", virtual.ops),
        (f"{own}-port" if own else "flag-2", port),
        (f"{own}-fallback" if own else "flag-1", fallback),
        ("flag-3", virtual.flag_3)) if on)


def service(virtual: Any, key: ServiceKey) -> Service:
    flags = service_flags(virtual)
    timeout = virtual.persistence_timeout
    if timeout is None and virtual.persistence_granularity is not None:
        timeout = 360                # keepalived: a granularity alone implies persistence
    return Service(key, virtual.lb_algo or "wlc", timeout, virtual.persistence_granularity,
                   flags)


def weight_of(real: Any, live: Live, ramped: bool = True) -> int:
    """The weight the kernel should give ``real``: a drain (an operator's, or its agent's
    drain / maint) wins (0); then the weight the checks ask for, else the configured one;
    then, ``ramped``, its slow start ramp. Each a separate factor, applied in this order."""
    if live.drained or live.agent_admin != "ready":     # drain: 0; maint: not in the pool
        return 0
    if live.weight_override is not None:       # the operator's word beats a script's
        weight = live.weight_override
    else:
        weight = live.weight if live.weight is not None else real.weight
    return ramped_weight(weight, live.ramp) if ramped else weight


def paced(lives: Callable[[str, Any], Live], pause: Callable[[], None],
          every: int) -> Callable[[str, Any], Live]:
    """``lives`` calling ``pause`` every ``every`` real servers asked about: a walk of ten
    thousand lets the loop run between slices, even inside one virtual server (the VRRP
    adverts wait for nothing longer than a slice)."""
    asked = 0

    def paced_lives(virtual_name: str, real: Any) -> Live:
        nonlocal asked
        asked += 1
        if asked >= every:
            asked = 0
            pause()
        return lives(virtual_name, real)
    return paced_lives


def live_weight(virtual: Any, lives: Callable[[Any], Live]) -> int:
    """The quorum's sum: a ramping server counts at its full weight (slowstart.py); one in
    maintenance not at all."""
    return sum(weight_of(real, live, ramped=False) for live, real in
               ((lives(real), real) for real in virtual.real_servers)
               if live.up and not live.maintenance)


def quorum_step(virtual: Any, quorum_up: bool, weight: int) -> tuple[bool, QuorumChange | None]:
    """keepalived's rule: lost when nothing is up or below quorum - hysteresis; regained at
    quorum + hysteresis."""
    if quorum_up and (weight == 0 or weight < virtual.quorum - virtual.hysteresis):
        return False, QuorumChange(False)
    if not quorum_up and weight > 0 and weight >= virtual.quorum + virtual.hysteresis:
        return True, QuorumChange(True)
    return quorum_up, None


def initial_quorum(virtual: Any, lives: Callable[[Any], Live]) -> bool:
    """At start the quorum is up if the servers that start up reach it (with alpha they all
    start down, so it is down: keepalived.conf.quorum's sample)."""
    weight = live_weight(virtual, lives)
    return weight > 0 and weight >= virtual.quorum


def pool(virtual: Any, key: ServiceKey, lives: Callable[[Any], Live], quorum_up: bool) -> Pool:
    destinations: dict[DestinationKey, Destination] = {}
    method = virtual.lb_kind or "NAT"
    sorry = virtual.sorry_server
    if quorum_up or sorry is None:
        for real in virtual.real_servers:
            live = lives(real)
            if live.maintenance:        # out entirely, inhibit_on_failure or not
                continue
            inhibit = real.inhibit_on_failure or virtual.inhibit_on_failure
            if not live.up and not inhibit or live.agent_admin == "maint":
                continue
            dest_key = DestinationKey(real.address, real.port)
            upper = live.agent_maxconn if live.agent_maxconn is not None else real.uthreshold
            destinations[dest_key] = Destination(
                dest_key, weight_of(real, live) if live.up else 0,
                real.lvs_method or method, upper or 0, real.lthreshold or 0)
    if sorry is not None and (not quorum_up or virtual.sorry_server_inhibit):
        address, port = sorry
        sorry_key = DestinationKey(address, port if port is not None else virtual.port)
        destinations[sorry_key] = Destination(sorry_key, 1 if not quorum_up else 0,
                                              virtual.sorry_server_lvs_method or method)
    return Pool(service(virtual, key), destinations)


def desired_state(config: Any, lives: Callable[[str, Any], Live],
                  quorum: dict[str, bool], suspended: frozenset[str] = frozenset(),
                  pause: Callable[[], None] | None = None, pause_every: int = 500) -> State:
    """Every service of the configuration as it should be in the kernel now. ``lives`` tells
    what the checks say of (virtual server name, real server); ``quorum`` holds each virtual
    server's quorum state; ``suspended`` names the ha_suspend services whose address is not
    ours. ``pause``, if given, is called every ``pause_every`` real servers (the loop runs
    meanwhile: ten thousand of them took 85 ms), inside a virtual server too."""
    groups = {group.name: group for group in config.virtual_server_groups}
    state: State = {}
    if pause is not None:
        lives = paced(lives, pause, pause_every)
    for virtual in config.virtual_servers:
        name = virtual_server_name(virtual)
        if name in suspended:
            continue

        def live(real, name=name):
            return lives(name, real)

        for key in service_keys(virtual, groups):
            state[key] = pool(virtual, key, live, quorum.get(name, True))
    return state
