"""The nftables backend's rules, pure (no subprocess, no I/O): State in, nft script out.

LVS-NAT done with DNAT, for kernels without IP_VS; nftables.py runs the scripts with nft.

``render(state)`` turns the desired State into one ``nft -f`` script that replaces the whole
table director owns in one transaction (nft applies a file atomically: ``add table`` so that
the ``delete table`` cannot fail, ``delete table``, then the table as it should be): the
first apply, and the fallback. ``changes(before, after)`` turns the table
``render(before)`` made into ``render(after)``'s, also in one transaction, touching only what
changed: the chains (and persistence sets) of the services that changed are flushed and
filled again, added or deleted, and the ``prerouting`` dispatch chain (one rule per service)
or the ``input`` reject chain is rebuilt only when one of its rules changed. Chain and set
names derive from the service's key (and the destination's), not from positions, so that
services coming and going rename nothing. A failed apply leaves the previous table in place.

Design:

- One ``inet`` table (``table inet director``) for IPv4 and IPv6 alike: one name to add,
  delete, list and flush; nat chains in the inet family need Linux >= 5.2.
- ``prerouting`` (nat, priority dstnat): one rule per service matching its address,
  protocol and port (``ip daddr V tcp dport P``) or its firewall mark (``meta mark M``, set
  earlier, e.g. in a mangle chain at priority -150), with a counter (new connections only:
  nat chains see the first packet of a connection), jumping to the service's chain
  ``svc_<digest of its key>`` (chain_name()), which picks a destination and DNATs to it;
  the map of destinations is anonymous, in the rule, so flushing the chain replaces it.
- Schedulers: rr -> ``numgen inc mod N map { 0 : d1, 1 : d2, ... }``; wrr -> the same map
  with each destination ``weight`` times (weights divided by their gcd, slots interleaved);
  sh -> ``jhash ip saddr mod N seed S`` over the same weighted slots (sh-port adds the
  source port); dh -> ``jhash ip daddr``; fo -> the destination of highest weight; mh ->
  Maglev (maglev.py): ``jhash ip saddr mod 4093 seed S`` into the 4093 slots of the
  destinations' Maglev table (mh-port adds the source port, as IPVS's mh), so that a pool
  change moves only the flows it must; anything else (lc, wlc, sed, nq, lblc, lblcr, ovf,
  twos) needs connection counts nftables does not have here: wrr, said in a comment in the
  script and by ``unsupported()``. Every jhash has the fixed seed JHASH_SEED: nft's default
  is random per rule, so two directors (or one re-applying its table) would disagree.
- mh-fallback: weight-0 and removed destinations leave the Maglev table, which is where
  IPVS's mh-fallback sends their flows too (it differs only for a destination over its
  upper threshold, and thresholds are ignored here: noted).
- Weight 0 (drained, inhibited): the destination is left out of the map, so it gets no new
  connections; established ones keep their DNAT, which conntrack holds per connection, and
  so do connections to a destination removed from the state.
- A service with no live destination: its packets to a local address are rejected in an
  ``input`` filter chain (TCP reset, ICMP port unreachable), as IPVS does.
- NAT return path: as in LVS-NAT, the real servers route back through the director and
  conntrack undoes the DNAT on the replies: no SNAT, no masquerade.
- Persistence (persistence_timeout, persistence_granularity): the scheduler picks a chain
  per destination (``numgen ... vmap { 0 : goto svc_X_dY, ... }``, Y a digest of the
  destination's key) which adds the client's address (masked by the granularity) to that
  destination's dynamic set, with the timeout; the service chain looks the client up in
  these sets before scheduling. Unlike IPVS, an entry expires ``timeout`` after the
  client's last new connection (not after its last connection ends), and a full apply
  re-creates the table, so the sets start empty again (changes() keeps the sets of
  unchanged destinations, and their clients): listed by ``unsupported()``.
- DR: a virtual server whose real servers are all DR is not in this table at all: it is
  forwarded statelessly in ``table netdev director`` (nftables_dr.py). A DR real server in
  a virtual server that also has NAT ones, or in a fwmark one, is dropped (noted).
- Not expressible with DNAT, listed by ``unsupported()`` and left out: TUN destinations,
  upper/lower connection thresholds, one-packet scheduling (ops) and sh-fallback.
"""

from __future__ import annotations

import hashlib
import ipaddress
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass

from .maglev import table as maglev_table
from .model import Destination, Pool, ServiceKey, State

MAX_SLOTS = 1024           # the largest numgen/jhash modulus we emit; bigger weights are scaled
_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,30}$")

# The seed of every jhash we emit: fixed, so that every director (and every re-apply) hashes
# a flow to the same slot; any constant does, as long as all directors have the same.
JHASH_SEED = 0x6D61676C

_EXACT = {"rr", "wrr", "sh", "dh", "fo", "mh"}
_HASH_PORT_FLAGS = {"sh": "sh-port", "mh": "mh-port"}
_FLAGS_UNSUPPORTED = ("ops", "sh-fallback", "flag-1", "flag-2", "flag-3")
_SET_REF = re.compile(r"@(\w+)")
_BASE_CHAINS = {
    "prerouting": "type nat hook prerouting priority dstnat; policy accept;",
    "input": "type filter hook input priority filter; policy accept;",
}


def chain_name(key: ServiceKey) -> str:
    """The chain of a service: ``svc_`` and a digest of its key, so that it keeps its name
    when other services come and go (its dispatch rule's comment names the service)."""
    text = f"{key.fwmark}|{key.family}|{key.protocol}|{key.address}|{key.port}"
    return "svc_" + hashlib.sha1(text.encode()).hexdigest()[:12]


def _dest_chain_name(service_chain: str, dest: Destination) -> str:
    text = f"{dest.key.address}|{dest.key.port}"
    return f"{service_chain}_d{hashlib.sha1(text.encode()).hexdigest()[:8]}"


class _Objects:
    """What some services put in the table: the sets and chains of their own (by name, in
    order; a chain is its comment lines and its rules) and their rules in the shared
    ``prerouting`` (dispatch) and ``input`` (reject) chains, by service."""

    def __init__(self) -> None:
        self.sets: dict[str, list[str]] = {}
        self.chains: dict[str, tuple[list[str], list[str]]] = {}
        self.dispatch: dict[ServiceKey, str] = {}
        self.rejects: dict[ServiceKey, str] = {}


def _objects(pools: Iterable[Pool], chains: bool = True) -> _Objects:
    """The objects of these services (without their own sets and chains: not chains)."""
    objects = _Objects()
    for pool in sorted(pools, key=lambda pool: pool.service.key.order()):
        if is_dr(pool):
            continue                          # forwarded in the netdev table: nftables_dr.py
        key = pool.service.key
        match = _service_match(key)
        live = _live(pool)
        if not live:
            objects.rejects[key] = (f"{_reject(key, match)} "
                                    f"comment {_quote(f'{key}: no destination')}")
            continue
        name = chain_name(key)
        scheduler = pool.service.scheduler
        label = f"{key} {scheduler}"
        if _as_scheduler(scheduler) != scheduler:
            label += f" (as {_as_scheduler(scheduler)})"
        objects.dispatch[key] = f"{match} counter jump {name} comment {_quote(label)}"
        if chains:
            _service_chains(pool, name, live, objects)
    return objects


def render(state: State, table: str = "director") -> str:
    """An ``nft -f`` script replacing ``table inet <table>`` with one implementing state."""
    check_name(table)
    objects = _objects(state.values())
    out = [f"# director: load balancing by DNAT ({len(state)} services)",
           f"add table inet {table}",
           f"delete table inet {table}",
           f"table inet {table} {{"]
    for name, body in objects.sets.items():
        out += ["", f"    set {name} {{", *(f"        {line}" for line in body), "    }"]
    out += ["",
            "    chain prerouting {",
            f"        {_BASE_CHAINS['prerouting']}",
            *(f"        {rule}" for rule in objects.dispatch.values()),
            "    }"]
    for name, (comments, rules) in objects.chains.items():
        out += ["", f"    chain {name} {{", *(f"        {line}" for line in comments + rules),
                "    }"]
    if objects.rejects:
        out += ["",
                "    chain input {",
                f"        {_BASE_CHAINS['input']}",
                *(f"        {rule}" for rule in objects.rejects.values()),
                "    }"]
    out += ["}", ""]
    return "\n".join(out)


@dataclass(frozen=True)
class Changes:
    script: str
    touched: frozenset[str]      # objects the script writes ("chain NAME", "set NAME")
    gone: frozenset[str]         # objects it deletes


def changes(before: State, after: State, table: str = "director") -> Changes:
    """An ``nft -f`` script turning the table render(before) made into the one render(after)
    makes, in one transaction, touching only what changed: the chains (and sets) of the
    services that changed, flushed and filled again (or added, or deleted), and the
    ``prerouting`` or ``input`` chain only when a service's rule there changed (a service
    added, removed or renamed its scheduler, or lost or regained all its destinations).
    Unchanged services keep their chains, counters and persistence sets; so do the
    unchanged destinations of a changed persistent service."""
    check_name(table)
    changed = [key for key in before.keys() | after.keys() if before.get(key) != after.get(key)]
    old = _objects(before[key] for key in changed if key in before)
    new = _objects(after[key] for key in changed if key in after)
    where = f"inet {table}"
    out = [f"# director: {len(changed)} of {len(after)} services changed"]

    dispatch = old.dispatch != new.dispatch
    rejects = old.rejects != new.rejects
    prerouting = _objects(after.values(), chains=False).dispatch if dispatch else {}
    # the input chain exists only where render(before) wrote a reject: a DR service with
    # no NAT destination was never one (it is forwarded in the netdev table)
    had_input = rejects and bool(_objects(before.values(), chains=False).rejects)
    rejecting = _objects(after.values(), chains=False).rejects if rejects else {}

    sets_gone = [name for name in old.sets if name not in new.sets]
    sets_new = [name for name in new.sets if name not in old.sets]
    sets_redo = [name for name in new.sets if name in old.sets and old.sets[name] != new.sets[name]]
    redone = set(sets_redo)
    chains_gone = [name for name in old.chains if name not in new.chains]
    chains_new = [name for name in new.chains if name not in old.chains]
    chains_redo = [name for name, (_, rules) in new.chains.items() if name in old.chains and (
        old.chains[name][1] != rules or any(ref in redone for rule in rules
                                            for ref in _SET_REF.findall(rule)))]

    if dispatch:
        out.append(f"flush chain {where} prerouting")
    if had_input:
        out.append(f"flush chain {where} input")
    out += [f"flush chain {where} {name}" for name in chains_redo + chains_gone]
    out += [f"delete chain {where} {name}" for name in chains_gone]
    if had_input and not rejecting:
        out.append(f"delete chain {where} input")
    out += [f"delete set {where} {name}" for name in sets_gone + sets_redo]
    out += [f"add set {where} {name} {{ {'; '.join(new.sets[name])}; }}"
            for name in sets_new + sets_redo]
    if rejecting and not had_input:
        out.append(f"add chain {where} input {{ {_BASE_CHAINS['input']} }}")
    out += [f"add chain {where} {name}" for name in chains_new]
    for name in chains_redo + chains_new:
        out += [f"add rule {where} {name} {rule}" for rule in new.chains[name][1]]
    out += [f"add rule {where} prerouting {rule}" for rule in prerouting.values()]
    out += [f"add rule {where} input {rule}" for rule in rejecting.values()]
    out.append("")
    touched = {f"chain {name}" for name in chains_redo + chains_new}
    touched |= {f"set {name}" for name in sets_new + sets_redo}
    touched |= {"chain prerouting"} if dispatch else set()
    touched |= {"chain input"} if rejecting else set()
    gone = {f"chain {name}" for name in chains_gone} | {f"set {name}" for name in sets_gone}
    gone |= {"chain input"} if had_input and not rejecting else set()
    return Changes("\n".join(out), frozenset(touched), frozenset(gone))


def unsupported(pools: Iterable[Pool]) -> list[str]:
    """What render() does differently from IPVS for these pools (the NAT ones:
    nftables_dr.notes() has the DR ones too), one sentence each, in the
    configuration's words, each said once (the pools of a virtual server's group share their
    destinations): for the log and the state, which prefix the virtual server."""
    notes: dict[str, None] = {}                     # ordered, without repeats
    for pool in pools:
        if is_dr(pool):
            continue                          # nftables_dr.dr_notes()
        service = pool.service
        key = service.key
        scheduler = service.scheduler
        if scheduler not in _EXACT:
            notes[f"lb_algo {scheduler} runs as {_as_scheduler(scheduler)} on nftables"] = None
        for flag in service.flags:
            if flag in _FLAGS_UNSUPPORTED:
                notes[f"{flag} is ignored on nftables"] = None
            elif flag in ("sh-port", "mh-port") and key.fwmark is not None:
                notes[f"{flag} is ignored on nftables for a fwmark service"] = None
        if service.persistence_timeout:
            timeout = f"{service.persistence_timeout:g}"
            notes[f"persistence_timeout {timeout} is approximate on nftables: a client's entry "
                  f"expires {timeout} s after its last new connection, and a full apply "
                  f"forgets all clients"] = None
        dests = _sorted(pool.destinations.values())
        for dest in dests:
            if dest.method == "DR" and key.fwmark is not None:
                notes[f"{_dest_name(key, dest)}: lb_kind DR is dropped on nftables for a "
                      f"fwmark service (the mark is set after the ingress hook DR runs "
                      f"in)"] = None
            elif dest.method == "DR":
                notes[f"{_dest_name(key, dest)}: lb_kind DR is dropped on nftables in a "
                      f"virtual server that has NAT real servers too"] = None
            elif dest.method != "NAT":
                notes[f"{_dest_name(key, dest)}: lb_kind {dest.method} is dropped on nftables "
                      f"(NAT and DR only)"] = None
            if dest.upper_threshold or dest.lower_threshold:
                notes[f"{_dest_name(key, dest)}: uthreshold and lthreshold are ignored on "
                      f"nftables"] = None
        live = [dest for dest in dests if dest.weight > 0 and dest.method == "NAT"]  # _live()
        if key.fwmark is not None and _port_mode(pool, live) == "mixed":
            notes["some real servers have a port and some do not: the ports are ignored on "
                  "nftables (connections keep theirs)"] = None
        if len(live) > 1 and _as_scheduler(scheduler) != "mh" and _needs_scaling(pool, live):
            notes[f"weights are scaled to {MAX_SLOTS} slots on nftables: ratios are "
                  f"approximate"] = None
    return list(notes)


def check_name(name: str) -> None:
    """ValueError unless ``name`` can be written into a script as a table name unquoted."""
    if not _NAME_RE.fullmatch(name):
        raise ValueError(f"bad nftables table name {name!r} ([A-Za-z][A-Za-z0-9_]{{0,30}})")


def _quote(text: str) -> str:
    return '"' + text.replace('"', "'") + '"'


def _sorted(dests: Iterable[Destination]) -> list[Destination]:
    return sorted(dests, key=lambda dest: dest.key.order())


def is_dr(pool: Pool) -> bool:
    """Whether a service is forwarded by direct routing on nftables (nftables_dr.py): it
    has DR real servers and no NAT one, and an address (not a fwmark)."""
    methods = {dest.method for dest in pool.destinations.values()}
    return pool.service.key.fwmark is None and "DR" in methods and "NAT" not in methods


def _live(pool: Pool) -> list[Destination]:
    """The destinations that take new connections: NAT, weight > 0."""
    return [dest for dest in _sorted(pool.destinations.values())
            if dest.weight > 0 and dest.method == "NAT"]


def _as_scheduler(scheduler: str) -> str:
    return scheduler if scheduler in _EXACT else "wrr"


def _ip(key: ServiceKey) -> str:
    return "ip6" if key.family == 6 else "ip"


def _proto(key: ServiceKey) -> str:
    return (key.protocol or "TCP").lower()


def _service_match(key: ServiceKey) -> str:
    if key.fwmark is not None:
        nfproto = "ipv6" if key.family == 6 else "ipv4"
        return f"meta mark {key.fwmark:#x} meta nfproto {nfproto}"
    return f"{_ip(key)} daddr {key.address} {_proto(key)} dport {key.port}"


def _reject(key: ServiceKey, match: str) -> str:
    if key.fwmark is None and _proto(key) == "tcp":
        return f"{match} reject with tcp reset"
    return f"{match} reject"


def _port_mode(pool: Pool, live: list[Destination]) -> str:
    """'port': DNAT to address and port; 'address': the port is kept; 'mixed' (fwmark only,
    some destinations with a port, some without): treated as 'address'."""
    if pool.service.key.fwmark is None:
        return "port"               # a destination without a port takes the service's port
    with_port = [bool(dest.key.port) for dest in live]
    if all(with_port):
        return "port"
    return "mixed" if any(with_port) else "address"


def _target(key: ServiceKey, dest: Destination, with_port: bool, concat: bool) -> str:
    """A destination as nft writes it: in a map (concat: ``a . p``) or after ``dnat to``."""
    address = dest.key.address
    if not with_port:
        return address
    port = dest.key.port or key.port
    if concat:
        return f"{address} . {port}"
    return f"[{address}]:{port}" if key.family == 6 else f"{address}:{port}"


def _dest_name(key: ServiceKey, dest: Destination) -> str:
    if dest.key.port:
        host = f"[{dest.key.address}]" if key.family == 6 else dest.key.address
        return f"{host}:{dest.key.port}"
    return dest.key.address


def _needs_scaling(pool: Pool, live: list[Destination]) -> bool:
    weights = _raw_weights(pool, live)
    return sum(weights) // math.gcd(*weights) > MAX_SLOTS


def _raw_weights(pool: Pool, live: list[Destination]) -> list[int]:
    if _as_scheduler(pool.service.scheduler) == "rr":
        return [1] * len(live)
    return [dest.weight for dest in live]


def _weights(pool: Pool, live: list[Destination]) -> list[int]:
    """Slots per live destination: the weights over their gcd, scaled down to MAX_SLOTS."""
    weights = _raw_weights(pool, live)
    divisor = math.gcd(*weights)
    weights = [weight // divisor for weight in weights]
    total = sum(weights)
    if total > MAX_SLOTS:
        weights = [max(1, weight * MAX_SLOTS // total) for weight in weights]
        weights[weights.index(max(weights))] += MAX_SLOTS - sum(weights)
    return weights


def maglev_key(dest: Destination) -> str:
    """A destination's name in the Maglev table (its place there follows from it)."""
    return f"{dest.key.address}|{dest.key.port or 0}"


def _slots(pool: Pool, live: list[Destination], scheduler: str | None = None) -> list[Destination]:
    """The scheduler's slots: mh's Maglev table (maglev.py); else each destination `weight`
    times, interleaved (d1 d2 d3 d1 ...) so that numgen spreads consecutive connections as
    IPVS's wrr does. One slot when they all name one destination."""
    scheduler = scheduler or _as_scheduler(pool.service.scheduler)
    if scheduler == "fo":
        best = max(dest.weight for dest in live)
        return [next(dest for dest in live if dest.weight == best)]
    if scheduler == "mh":
        by_key = {maglev_key(dest): dest for dest in live}
        slots = [by_key[key] for key in maglev_table(
            (key, dest.weight) for key, dest in by_key.items())]
        return slots[:1] if len(by_key) == 1 else slots
    weights = _weights(pool, live)
    return [dest for turn in range(max(weights))
            for dest, weight in zip(live, weights, strict=True) if weight > turn]


def _selector(pool: Pool, modulus: int, scheduler: str | None = None) -> str:
    """The expression choosing a slot: numgen (rr, wrr, fallbacks) or jhash (sh, dh, mh),
    with the fixed seed."""
    service = pool.service
    key = service.key
    scheduler = scheduler or _as_scheduler(service.scheduler)
    if scheduler in ("sh", "dh", "mh"):
        field = f"{_ip(key)} {'daddr' if scheduler == 'dh' else 'saddr'}"
        if _HASH_PORT_FLAGS.get(scheduler) in service.flags and key.fwmark is None:
            field += f" . {_proto(key)} sport"
        return f"jhash {field} mod {modulus} seed {JHASH_SEED:#x}"
    return f"numgen inc mod {modulus}"


def _client_key(pool: Pool) -> tuple[str, str]:
    """The persistence map's key: its type and the expression (the client's masked address)."""
    service = pool.service
    key = service.key
    kind = "ipv6_addr" if key.family == 6 else "ipv4_addr"
    expr = f"{_ip(key)} saddr"
    granularity = service.persistence_netmask
    if granularity:
        text = str(granularity).lstrip("/")
        if key.family == 6:
            mask = ipaddress.IPv6Network(f"::/{text}").netmask
        else:
            mask = ipaddress.IPv4Network(f"0.0.0.0/{text}").netmask
        if int(mask) != (1 << mask.max_prefixlen) - 1:       # not /32, /128
            expr += f" & {mask}"
    return kind, expr


def _service_chains(pool: Pool, name: str, live: list[Destination], objects: _Objects) -> None:
    """Adds the sets and chains of one service to objects: its chain and, with persistence,
    one chain and one client set per destination, named after the destination."""
    service = pool.service
    key = service.key
    fam = _ip(key)
    mode = _port_mode(pool, live)
    with_port = mode == "port"
    # a transport protocol match must come before a port mapping or a port hash
    l4 = f"meta l4proto {_proto(key)} " if key.fwmark is None or with_port else ""
    slots = _slots(pool, live)
    comment = []
    if _as_scheduler(service.scheduler) != service.scheduler:
        comment = [f"# {service.scheduler} is not available with nftables: "
                   f"scheduled as {_as_scheduler(service.scheduler)}"]
    if not service.persistence_timeout:
        if len(slots) == 1:
            rule = f"{l4}dnat {fam} to {_target(key, slots[0], with_port, concat=False)}"
        else:
            entries = ", ".join(f"{i} : {_target(key, dest, with_port, concat=True)}"
                                for i, dest in enumerate(slots))
            dnat = f"dnat {fam} addr . port to" if with_port else f"dnat {fam} to"
            rule = f"{l4}{dnat} {_selector(pool, len(slots))} map {{ {entries} }}"
        objects.chains[name] = (comment, [rule])
        return

    # One client set per destination (not one client -> destination map: nft 1.0.6 cannot
    # add an IPv6 address . port to a map from the packet path). A known client is sent to
    # its destination's chain, whose `update` refreshes its entry's timeout.
    kind, client = _client_key(pool)
    dest_chains: dict = {}
    lookups = []
    chains: dict[str, tuple[list[str], list[str]]] = {}
    for dest in live:
        if dest not in slots:
            continue
        chain = _dest_chain_name(name, dest)
        dest_chains[dest.key] = chain
        objects.sets[f"{chain}_clients"] = [f"type {kind}", "flags dynamic,timeout",
                                             f"timeout {int(service.persistence_timeout)}s"]
        lookups.append(f"{client} @{chain}_clients goto {chain}")
        chains[chain] = ([], [f"update @{chain}_clients {{ {client} }}",
                              f"{l4}dnat {fam} to {_target(key, dest, with_port, concat=False)}"])
    if len(slots) == 1:
        choose = f"goto {dest_chains[slots[0].key]}"
    else:
        entries = ", ".join(f"{i} : goto {dest_chains[dest.key]}" for i, dest in enumerate(slots))
        choose = f"{_selector(pool, len(slots))} vmap {{ {entries} }}"
    objects.chains[name] = ([*comment, "# a known client goes where it went before"],
                            [*lookups, choose])
    objects.chains.update(chains)
