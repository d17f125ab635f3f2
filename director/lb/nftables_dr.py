"""Direct routing on nftables, pure (no subprocess, no I/O): State and Links in, nft script
out; nftables.py runs it in the same transaction as nftables_script.py's NAT table.

Why DR, and why stateless: with several directors active at once (each announcing the VIP,
an upstream router spreading flows over them by ECMP) a flow may reach any director, and
another one when a director leaves or the router's hash moves. DNAT needs the replies back
through the director that holds the connection's conntrack entry; DR does not: the real
server holds the VIP itself (on lo, with arp_ignore=1 and arp_announce=2, as in LVS-DR) and
answers the client directly. And with no per-flow state on the director, any director
forwards any packet of a flow to the same real server, provided they all choose alike: the
same Maglev table (maglev.py, built from the pool alone) and the same jhash seed.

Design:

- ``table netdev director``, one base chain ``ingress`` hooked on Links.ingress (the
  devices nftables.py finds: every non-loopback interface that is up, read again at each
  converge, so within a delay_loop of a link change; a change of that list replaces this
  table, its only stateless-safe way: counters restart). One rule per service matching its
  address, protocol and port jumps to the service's chain ``dr_<digest of its key>``, whose
  one rule is ``fwd ip to <selector> map { slot : real server, ... } device "<dev>"``: the
  packet, still addressed to the VIP, leaves on <dev> for the real server's MAC (the
  kernel's neighbour lookup of the real server's address). No conntrack, no NAT.
- Schedulers: mh -> Maglev (``jhash ip saddr [. tcp sport with mh-port] mod 4093 seed S``);
  sh, dh -> jhash over the weighted slots, as the NAT path; fo -> the heaviest; every other
  one (rr, wrr, lc, ...) would send the packets of one flow to different servers (numgen
  counts packets here, there is no connection to remember the choice): mh, noted.
- Egress: LVS-DR needs the real servers on a link of the director (the frame goes to their
  MAC). Links.egress has, per real server, the device of the directly connected route to
  it (nftables.py reads the routes); one with no such route, or on another device than
  the service's others (a fwd rule names one device: the service keeps the device most of
  its real servers are on), is left out of the table and reported by problems(), which
  the backend returns as errors (logged, counted, retried): not a crash, not a silent drop.
- Drained (weight 0) and down real servers leave the table: their flows move to the
  others (which reset them: a stateless director cannot keep a flow on a drained server;
  Maglev moves only those). A service with DR real servers but none live drops its packets
  here (``counter drop``): the client's SYN goes unanswered and it retries until its
  connect timeout, and a flow in progress stalls rather than being reset, so it resumes if
  a server is back within TCP's retries. (A pool with no real server at all, every one
  down without inhibit_on_failure, cannot be told from a NAT one: it takes the NAT path's
  reject, a TCP reset if the VIP is local. inhibit_on_failure keeps DR servers at weight 0
  and the service here.)
- Persistence is per flow by construction (the hash of the client's address, and port with
  mh-port); persistence_timeout is ignored (noted): there is no state to time out.
- Not here: fwmark services (the mark is set in prerouting, after ingress) and services
  mixing NAT and DR real servers: nftables_script.py keeps them on the NAT path and notes it.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from .model import Destination, Pool, ServiceKey, State
from .nftables_script import (Changes, _dest_name, _ip, _quote, _selector, _service_match,
                              _slots, _sorted, check_name, is_dr, unsupported)

DR_SCHEDULERS = {"mh", "sh", "dh", "fo"}      # stateless: one flow, one server
DR_FALLBACK = "mh"
INGRESS = "ingress"


@dataclass(frozen=True)
class Links:
    """What the DR rules need from the host: the devices whose ingress is hooked (sorted)
    and, per real-server address, the device of its directly connected route (absent: none)."""

    ingress: tuple[str, ...] = ()
    egress: tuple[tuple[str, str], ...] = ()      # (address, device), sorted

    def device_of(self, address: str) -> str | None:
        return dict(self.egress).get(address)


def dr_scheduler(scheduler: str) -> str:
    return scheduler if scheduler in DR_SCHEDULERS else DR_FALLBACK


def dr_chain_name(key: ServiceKey) -> str:
    text = f"{key.family}|{key.protocol}|{key.address}|{key.port}"
    return "dr_" + hashlib.sha1(text.encode()).hexdigest()[:12]


def dr_addresses(state: State) -> set[str]:
    """The real servers whose egress device the DR rules need."""
    return {dest.key.address for pool in state.values() if is_dr(pool)
            for dest in pool.destinations.values() if dest.method == "DR"}


def _placed(pool: Pool, links: Links) -> tuple[list[Destination], str | None, list[str]]:
    """The live DR destinations the table can reach, their device, and why others cannot."""
    key = pool.service.key
    live = [dest for dest in _sorted(pool.destinations.values())
            if dest.weight > 0 and dest.method == "DR"]
    devices = {dest.key: links.device_of(dest.key.address) for dest in live}
    counts = Counter(device for device in devices.values() if device is not None)
    device = min(counts, key=lambda name: (-counts[name], name)) if counts else None
    problems = []
    for dest in live:
        found = devices[dest.key]
        if found is None:
            problems.append(f"{key}: DR real server {_dest_name(key, dest)} has no directly "
                            f"connected route (LVS-DR needs it on a link of the director): "
                            f"left out")
        elif found != device:
            problems.append(f"{key}: DR real server {_dest_name(key, dest)} is on {found}, "
                            f"the others on {device} (one device per service): left out")
    if device is None:
        return [], None, problems
    return [dest for dest in live if devices[dest.key] == device], device, problems


def _service(pool: Pool, links: Links) -> tuple[str, list[str] | None]:
    """A DR service's rule in ``ingress`` and its chain's rules (None: the rule drops)."""
    key = pool.service.key
    scheduler = dr_scheduler(pool.service.scheduler)
    # only frames addressed to this host: a switch floods a frame for a real server's MAC
    # it has not learnt yet to the other directors too, which must not forward it again
    match = f"meta pkttype host {_service_match(key)}"
    reachable, device, _ = _placed(pool, links)
    if not reachable:
        return f"{match} counter drop comment {_quote(f'{key}: no DR destination')}", None
    label = f"{key} {pool.service.scheduler} DR"
    if scheduler != pool.service.scheduler:
        label += f" (as {scheduler})"
    name = dr_chain_name(key)
    slots = _slots(pool, reachable, scheduler)
    fwd = f"fwd {_ip(key)} to"
    if len(slots) == 1:
        target = slots[0].key.address
    else:
        entries = ", ".join(f"{i} : {dest.key.address}" for i, dest in enumerate(slots))
        target = f"{_selector(pool, len(slots), scheduler)} map {{ {entries} }}"
    return (f"{match} counter jump {name} comment {_quote(label)}",
            [f"{fwd} {target} device {_quote(device)}"])


def _objects(state: State, links: Links) -> tuple[dict[ServiceKey, str], dict[str, list[str]]]:
    """The dispatch rules by service and the service chains by name, in a stable order."""
    dispatch: dict[ServiceKey, str] = {}
    chains: dict[str, list[str]] = {}
    for key in sorted(state, key=ServiceKey.order):
        if is_dr(state[key]):
            dispatch[key], rules = _service(state[key], links)
            if rules is not None:
                chains[dr_chain_name(key)] = rules
    return dispatch, chains


def _base_chain(links: Links) -> str:
    return (f"type filter hook ingress devices = {{ {', '.join(map(_quote, links.ingress))} }} "
            f"priority filter; policy accept;")


def render_dr(state: State, links: Links, table: str = "director") -> str:
    """An ``nft -f`` script replacing ``table netdev <table>`` with one forwarding the DR
    services of state, or only deleting it when there is none (or no device to hook)."""
    check_name(table)
    dispatch, chains = _objects(state, links)
    out = [f"# director: direct routing ({len(dispatch)} services)",
           f"add table netdev {table}",
           f"delete table netdev {table}"]
    if not dispatch or not links.ingress:
        return "\n".join([*out, ""])
    out += [f"table netdev {table} {{",
            f"    chain {INGRESS} {{",
            f"        {_base_chain(links)}",
            *(f"        {rule}" for rule in dispatch.values()),
            "    }"]
    for name, rules in chains.items():
        out += ["", f"    chain {name} {{", *(f"        {rule}" for rule in rules), "    }"]
    out += ["}", ""]
    return "\n".join(out)


def changes_dr(before: State, after: State, links_before: Links, links_after: Links,
               table: str = "director") -> Changes:
    """A script turning the table render_dr(before, links_before) made into
    render_dr(after, links_after)'s, in one transaction: the chains of the services that
    changed are flushed and filled again (or added, or deleted), ``ingress`` rebuilt only
    when one of its rules changed; a change of the hooked devices, or the table appearing
    or going, replaces the whole table. Objects are named "netdev chain NAME"."""
    check_name(table)
    old_dispatch, old_chains = _objects(before, links_before)
    new_dispatch, new_chains = _objects(after, links_after)
    had = bool(old_dispatch) and bool(links_before.ingress)
    has = bool(new_dispatch) and bool(links_after.ingress)
    if not had and not has:
        return Changes("", frozenset(), frozenset())
    if not had or not has or links_before.ingress != links_after.ingress:
        objects = {f"netdev chain {name}" for name in (INGRESS, *new_chains)} if has else set()
        gone = {f"netdev chain {name}" for name in (INGRESS, *old_chains)} - objects
        return Changes(render_dr(after, links_after, table), frozenset(objects),
                       frozenset(gone))
    where = f"netdev {table}"
    out = []
    gone = [name for name in old_chains if name not in new_chains]
    added = [name for name in new_chains if name not in old_chains]
    redo = [name for name in new_chains if name in old_chains and
            old_chains[name] != new_chains[name]]
    dispatch = old_dispatch != new_dispatch
    if dispatch:
        out.append(f"flush chain {where} {INGRESS}")
    out += [f"flush chain {where} {name}" for name in redo + gone]
    out += [f"delete chain {where} {name}" for name in gone]
    out += [f"add chain {where} {name}" for name in added]
    for name in redo + added:
        out += [f"add rule {where} {name} {rule}" for rule in new_chains[name]]
    if dispatch:
        out += [f"add rule {where} {INGRESS} {rule}" for rule in new_dispatch.values()]
    touched = {f"netdev chain {name}" for name in redo + added}
    touched |= {f"netdev chain {INGRESS}"} if dispatch else set()
    return Changes("\n".join([*out, ""]) if out else "", frozenset(touched),
                   frozenset(f"netdev chain {name}" for name in gone))


def problems(state: State, links: Links) -> list[str]:
    """The live DR real servers the table cannot reach (no directly connected route, or
    another device than their service's), one sentence each; and a missing ingress."""
    found = []
    for key in sorted(state, key=ServiceKey.order):
        if is_dr(state[key]):
            found += _placed(state[key], links)[2]
    if found or any(is_dr(pool) for pool in state.values()):
        if not links.ingress:
            found.append("no interface is up to hook the DR services' ingress on")
    return found


def notes(pools: Iterable[Pool]) -> list[str]:
    """What the nftables backend does differently from IPVS for these pools (one virtual
    server's), each said once, in the pools' order: unsupported() for the NAT ones,
    dr_notes() for the DR ones."""
    found: dict[str, None] = {}
    for pool in pools:
        found.update(dict.fromkeys(dr_notes(pool) if is_dr(pool) else unsupported([pool])))
    return list(found)


def dr_notes(pool: Pool) -> list[str]:
    """What DR on nftables does differently from IPVS for a DR pool (unsupported())."""
    service = pool.service
    key = service.key
    notes = []
    if dr_scheduler(service.scheduler) != service.scheduler:
        notes.append(f"lb_algo {service.scheduler} runs as {DR_FALLBACK} for DR on nftables "
                     f"(stateless: every packet of a flow must hash to the same server)")
    for flag in service.flags:
        if flag in ("ops", "sh-fallback", "flag-1", "flag-2", "flag-3"):
            notes.append(f"{flag} is ignored on nftables")
    if service.persistence_timeout:
        notes.append(f"persistence_timeout {service.persistence_timeout:g} is ignored for DR "
                     f"on nftables: a flow sticks to its server by its hash, with no state "
                     f"to time out")
    for dest in _sorted(pool.destinations.values()):
        if dest.method == "TUN":
            notes.append(f"{_dest_name(key, dest)}: lb_kind TUN is dropped on nftables "
                         f"(NAT and DR only)")
        if dest.upper_threshold or dest.lower_threshold:
            notes.append(f"{_dest_name(key, dest)}: uthreshold and lthreshold are ignored on "
                         f"nftables")
    return notes
