"""The nftables backend's pure part (nftables_script.py): render() scripts per scheduler,
weight 0, fwmark, IPv6, persistence; changes() touching only what changed; unsupported().
test_lb_nftables.py has nft itself check and apply them, in a throwaway namespace."""

from __future__ import annotations

import ast
import hashlib
import re
from collections import Counter
from pathlib import Path

import pytest

from director.lb import nftables_script
from director.lb.model import Destination, DestinationKey, Pool, Service, ServiceKey
from director.lb.nftables_script import changes, chain_name, render, unsupported

VIP = ServiceKey("TCP", "203.0.113.100", 80)
VIP6 = ServiceKey("TCP", "2001:db8::100", 443, family=6)
FWM7 = ServiceKey("TCP", fwmark=7)
SVC = chain_name(VIP)


def dest(address, port=80, weight=1, **kw):
    return Destination(DestinationKey(address, port), weight, **kw)


def state(key=VIP, scheduler="rr", dests=(), **service):
    return {key: Pool(Service(key, scheduler, **service), {d.key: d for d in dests})}


def chain(script, name):
    """The lines of one chain in a rendered script."""
    match = re.search(rf"^    chain {name} {{\n(.*?)^    }}", script, re.M | re.S)
    assert match, f"no chain {name} in:\n{script}"
    return [line.strip() for line in match.group(1).splitlines()]


BAD_TABLE_NAMES = ("", "x y", "a;b", "1abc", "x\n")
THREE = [dest("10.20.40.10"), dest("10.20.40.11"), dest("10.20.40.12")]

CASES = {
    "empty": {},
    "rr": state(dests=THREE),
    "wrr": state(scheduler="wrr", dests=[dest("10.20.40.10", weight=3),
                                         dest("10.20.40.11", weight=1)]),
    "sh": state(scheduler="sh", dests=THREE[:2]),
    "sh-port": state(scheduler="sh", dests=THREE[:2], flags=("sh-port",)),
    "fwmark": state(ServiceKey("TCP", fwmark=7), "rr",
                    [dest("10.20.40.10", None), dest("10.20.40.11", None)]),
    "fwmark-ports": state(ServiceKey("UDP", fwmark=9), "rr",
                          [dest("10.20.40.10", 53), dest("10.20.40.11", 53)]),
    "weight0": state(dests=[dest("10.20.40.10"), dest("10.20.40.11", weight=0)]),
    "nodest": state(dests=[dest("10.20.40.10", weight=0)]),
    "udp-nodest": state(ServiceKey("UDP", "203.0.113.100", 53), "rr", []),
    "ipv6": state(VIP6, "wrr", [dest("2001:db8::10", 443, 2), dest("2001:db8::11", 443, 1)]),
    "fwmark6": state(ServiceKey("TCP", fwmark=8, family=6), "sh",
                     [dest("2001:db8::10", None), dest("2001:db8::11", None)]),
    "wlc": state(scheduler="wlc", dests=[dest("10.20.40.10", weight=2),
                                         dest("10.20.40.11", weight=4)]),
    "persistent": state(dests=THREE, persistence_timeout=300,
                        persistence_netmask="255.255.255.0"),
    "persistent6": state(VIP6, "rr", [dest("2001:db8::10", 443), dest("2001:db8::11", 443)],
                         persistence_timeout=60, persistence_netmask="64"),
    "mh": state(scheduler="mh", dests=THREE, flags=("mh-port",)),
    "mh-persistent": state(scheduler="mh", dests=THREE, persistence_timeout=60),
    "big-weights": state(scheduler="wrr", dests=[dest("10.20.40.10", weight=65535),
                                                 dest("10.20.40.11", weight=1)]),
    "all": {**state(dests=THREE), **state(VIP6, "rr", [dest("2001:db8::10", 443)]),
            **state(ServiceKey("TCP", fwmark=7), "sh", [dest("10.20.40.10", None)])},
}


def test_empty_state_is_just_the_table():
    script = render({})
    assert script.splitlines()[1:4] == ["add table inet director", "delete table inet director",
                                        "table inet director {"]
    assert "dnat" not in script and "chain input" not in script
    assert chain(script, "prerouting") == [
        "type nat hook prerouting priority dstnat; policy accept;"]


def test_table_name_is_checked_and_used():
    assert "table inet lb_test {" in render({}, table="lb_test")
    for bad in BAD_TABLE_NAMES:
        with pytest.raises(ValueError):
            render({}, table=bad)
        with pytest.raises(ValueError):
            changes({}, {}, table=bad)


def test_rr_numgen_map_over_the_destinations():
    script = render(CASES["rr"])
    assert chain(script, "prerouting")[1] == (
        f'ip daddr 203.0.113.100 tcp dport 80 counter jump {SVC} '
        'comment "TCP 203.0.113.100:80 rr"')
    assert chain(script, SVC) == [
        "meta l4proto tcp dnat ip addr . port to numgen inc mod 3 map "
        "{ 0 : 10.20.40.10 . 80, 1 : 10.20.40.11 . 80, 2 : 10.20.40.12 . 80 }"]


def test_rr_ignores_weights():
    script = render(state(dests=[dest("10.20.40.10", weight=5), dest("10.20.40.11", weight=1)]))
    assert "numgen inc mod 2 map" in script


def test_wrr_each_destination_weight_times_interleaved():
    assert chain(render(CASES["wrr"]), SVC) == [
        "meta l4proto tcp dnat ip addr . port to numgen inc mod 4 map { 0 : 10.20.40.10 . 80, "
        "1 : 10.20.40.11 . 80, 2 : 10.20.40.10 . 80, 3 : 10.20.40.10 . 80 }"]


def test_wrr_weights_reduced_by_gcd():
    script = render(state(scheduler="wrr", dests=[dest("10.20.40.10", weight=20),
                                                  dest("10.20.40.11", weight=10)]))
    assert "numgen inc mod 3 map { 0 : 10.20.40.10 . 80, 1 : 10.20.40.11 . 80, " \
           "2 : 10.20.40.10 . 80 }" in script


def test_wrr_huge_weights_scaled_and_reported():
    script = render(CASES["big-weights"])
    assert "numgen inc mod 1024 map" in script
    assert unsupported(CASES["big-weights"].values()) == [
        "weights are scaled to 1024 slots on nftables: ratios are approximate"]


def test_sh_hashes_the_source():
    assert chain(render(CASES["sh"]), SVC) == [
        "meta l4proto tcp dnat ip addr . port to jhash ip saddr mod 2 seed 0x6d61676c map "
        "{ 0 : 10.20.40.10 . 80, 1 : 10.20.40.11 . 80 }"]
    assert "jhash ip saddr . tcp sport mod 2 seed 0x6d61676c" in render(CASES["sh-port"])


def test_fwmark_matches_the_mark_and_keeps_the_port():
    script = render(CASES["fwmark"])
    assert chain(script, "prerouting")[1].startswith(
        f"meta mark 0x7 meta nfproto ipv4 counter jump {chain_name(FWM7)}")
    assert chain(script, chain_name(FWM7)) == [
        "dnat ip to numgen inc mod 2 map { 0 : 10.20.40.10, 1 : 10.20.40.11 }"]
    assert chain(render(CASES["fwmark-ports"]), chain_name(ServiceKey("UDP", fwmark=9))) == [
        "meta l4proto udp dnat ip addr . port to numgen inc mod 2 map "
        "{ 0 : 10.20.40.10 . 53, 1 : 10.20.40.11 . 53 }"]


def test_destination_without_port_takes_the_service_port():
    script = render(state(dests=[dest("10.20.40.10", None), dest("10.20.40.11", 8080)]))
    assert "{ 0 : 10.20.40.10 . 80, 1 : 10.20.40.11 . 8080 }" in script


def test_weight_zero_gets_no_new_connections():
    script = render(CASES["weight0"])
    assert "10.20.40.11" not in script
    assert chain(script, SVC) == ["meta l4proto tcp dnat ip to 10.20.40.10:80"]


def test_no_live_destination_rejects():
    script = render(CASES["nodest"])
    assert "dnat" not in script
    assert chain(script, "input") == [
        "type filter hook input priority filter; policy accept;",
        'ip daddr 203.0.113.100 tcp dport 80 reject with tcp reset '
        'comment "TCP 203.0.113.100:80: no destination"']
    assert "udp dport 53 reject comment" in render(CASES["udp-nodest"])


def test_ipv6():
    script = render(CASES["ipv6"])
    assert f"ip6 daddr 2001:db8::100 tcp dport 443 counter jump {chain_name(VIP6)}" in script
    assert chain(script, chain_name(VIP6)) == [
        "meta l4proto tcp dnat ip6 addr . port to numgen inc mod 3 map "
        "{ 0 : 2001:db8::10 . 443, 1 : 2001:db8::11 . 443, 2 : 2001:db8::10 . 443 }"]
    single = render(state(VIP6, "rr", [dest("2001:db8::10", 443)]))
    assert "dnat ip6 to [2001:db8::10]:443" in single
    assert "meta mark 0x8 meta nfproto ipv6" in render(CASES["fwmark6"])
    assert "jhash ip6 saddr mod 2 seed 0x6d61676c" in render(CASES["fwmark6"])


def test_fallback_scheduler_is_wrr_with_a_comment_and_a_warning():
    script = render(CASES["wlc"])
    assert "# wlc is not available with nftables: scheduled as wrr" in script
    assert "numgen inc mod 3 map { 0 : 10.20.40.10 . 80, 1 : 10.20.40.11 . 80, " \
           "2 : 10.20.40.11 . 80 }" in script
    assert unsupported(CASES["wlc"].values()) == ["lb_algo wlc runs as wrr on nftables"]
    assert unsupported(state(scheduler="mh", dests=THREE, flags=("mh-port", "mh-fallback"))
                       .values()) == []


def test_mh_is_maglev_with_a_fixed_seed():
    """4093 slots from maglev.table(), the client's address (and port with mh-port) hashed
    with the fixed seed, so that every director sends a flow to the same server."""
    [rule] = chain(render(CASES["mh"]), SVC)
    assert rule.startswith("meta l4proto tcp dnat ip addr . port to jhash ip saddr . tcp sport "
                           "mod 4093 seed 0x6d61676c map { 0 : ")
    slots = re.search(r"map \{ (.*) \}", rule).group(1).split(", ")
    assert len(slots) == 4093
    counts = Counter(entry.split(" : ")[1] for entry in slots)
    assert sorted(counts) == ["10.20.40.10 . 80", "10.20.40.11 . 80", "10.20.40.12 . 80"]
    assert max(counts.values()) - min(counts.values()) <= 1
    assert "jhash ip saddr mod 4093 seed" in render(state(scheduler="mh", dests=THREE))
    assert render(state(scheduler="mh", dests=THREE[::-1])) == \
        render(state(scheduler="mh", dests=THREE))
    assert chain(render(state(scheduler="mh", dests=THREE[:1])), SVC) == [
        "meta l4proto tcp dnat ip to 10.20.40.10:80"]


def test_mh_destination_down_moves_only_its_slots():
    before = render(CASES["mh"])
    after = render(state(scheduler="mh", dests=THREE[:2], flags=("mh-port",)))
    old, new = (re.search(r"map \{ (.*) \}", chain(script, SVC)[0]).group(1).split(", ")
                for script in (before, after))
    kept = [a == b for a, b in zip(old, new, strict=True) if not a.endswith(" 10.20.40.12 . 80")]
    assert sum(kept) / len(kept) >= 0.95


def test_fo_sends_everything_to_the_heaviest():
    script = render(state(scheduler="fo", dests=[dest("10.20.40.10", weight=1),
                                                 dest("10.20.40.11", weight=5)]))
    assert chain(script, SVC) == ["meta l4proto tcp dnat ip to 10.20.40.11:80"]


def test_dr_tun_thresholds_and_flags_are_unsupported():
    pool = state(dests=[dest("10.20.40.10", method="DR"), dest("10.20.40.11", method="TUN"),
                        dest("10.20.40.12", upper_threshold=100)], flags=("ops",))
    script = render(pool)
    assert "10.20.40.10" not in script and "10.20.40.11" not in script
    assert unsupported(pool.values()) == [
        "ops is ignored on nftables",
        "10.20.40.10:80: lb_kind DR is dropped on nftables in a virtual server that has NAT "
        "real servers too",
        "10.20.40.11:80: lb_kind TUN is dropped on nftables (NAT and DR only)",
        "10.20.40.12:80: uthreshold and lthreshold are ignored on nftables"]
    assert unsupported(CASES["rr"].values()) == [] and unsupported([]) == []


def test_unsupported_says_each_difference_once_over_pools():
    """A virtual_server_group's services share one pool: the notes are the virtual server's,
    not repeated per address; a fwmark service adds what only fwmark changes."""
    dests = [dest("10.20.40.10", method="DR"), dest("10.20.40.11")]
    pools = [*state(ServiceKey("TCP", "203.0.113.100", 80), "wlc", dests,
                    flags=("sh-port",)).values(),
             *state(ServiceKey("TCP", "203.0.113.101", 80), "wlc", dests,
                    flags=("sh-port",)).values(),
             *state(ServiceKey("TCP", fwmark=7), "wlc", dests, flags=("sh-port",)).values()]
    assert unsupported(pools) == [
        "lb_algo wlc runs as wrr on nftables",
        "10.20.40.10:80: lb_kind DR is dropped on nftables in a virtual server that has NAT "
        "real servers too",
        "sh-port is ignored on nftables for a fwmark service",
        "10.20.40.10:80: lb_kind DR is dropped on nftables for a fwmark service (the mark is "
        "set after the ingress hook DR runs in)"]
    mixed = state(FWM7, "rr", [dest("10.20.40.10", None), dest("10.20.40.11", 8080)])
    assert unsupported(mixed.values()) == [
        "some real servers have a port and some do not: the ports are ignored on nftables "
        "(connections keep theirs)"]


def test_persistence_sets_per_destination():
    script = render(CASES["persistent"])
    d0, d1, d2 = (f"{SVC}_d{_digest(a, 80)}" for a in ("10.20.40.10", "10.20.40.11",
                                                         "10.20.40.12"))
    assert f"set {d0}_clients {{\n        type ipv4_addr\n        flags dynamic,timeout\n" \
           "        timeout 300s\n    }" in script
    assert chain(script, SVC) == [
        "# a known client goes where it went before",
        f"ip saddr & 255.255.255.0 @{d0}_clients goto {d0}",
        f"ip saddr & 255.255.255.0 @{d1}_clients goto {d1}",
        f"ip saddr & 255.255.255.0 @{d2}_clients goto {d2}",
        f"numgen inc mod 3 vmap {{ 0 : goto {d0}, 1 : goto {d1}, 2 : goto {d2} }}"]
    assert chain(script, d1) == [
        f"update @{d1}_clients {{ ip saddr & 255.255.255.0 }}",
        "meta l4proto tcp dnat ip to 10.20.40.11:80"]
    assert unsupported(CASES["persistent"].values()) == [
        "persistence_timeout 300 is approximate on nftables: a client's entry expires 300 s "
        "after its last new connection, and a full apply forgets all clients"]
    six = render(CASES["persistent6"])
    six0 = f"{chain_name(VIP6)}_d{_digest('2001:db8::10', 443)}"
    assert f"update @{six0}_clients {{ ip6 saddr & ffff:ffff:ffff:ffff:: }}" in six
    assert f"ip saddr @{d0}_clients" in render(state(dests=THREE, persistence_timeout=5))


def _digest(address, port):
    return hashlib.sha1(f"{address}|{port}".encode()).hexdigest()[:8]


def test_chain_names_are_stable_and_distinct():
    keys = [VIP, VIP6, FWM7, ServiceKey("TCP", fwmark=7, family=6),
            ServiceKey("UDP", "203.0.113.100", 80), ServiceKey("TCP", "203.0.113.100", 81)]
    names = [chain_name(key) for key in keys]
    assert len(set(names)) == len(names)
    assert all(re.fullmatch(r"svc_[0-9a-f]{12}", name) for name in names)
    assert chain_name(ServiceKey("TCP", "203.0.113.100", 80)) == SVC


def test_services_in_a_stable_order():
    script = render(CASES["all"])
    rules = chain(script, "prerouting")[1:]
    assert [r.split(" counter")[0] for r in rules] == [
        "ip daddr 203.0.113.100 tcp dport 80", "ip6 daddr 2001:db8::100 tcp dport 443",
        "meta mark 0x7 meta nfproto ipv4"]
    assert render(dict(reversed(list(CASES["all"].items())))) == script


# === changes: only what changed, in one transaction ========================================

def _services(count, per_service=3, down=(), scheduler="wrr", **service):
    pools = {}
    for s in range(count):
        key = ServiceKey("TCP", f"10.0.0.{s + 1}", 80)
        dests = [dest(f"172.16.{s}.{r + 1}", 8080) for r in range(per_service)
                 if (s, r) not in down]
        pools.update(state(key, scheduler, dests, **service))
    return pools


BASE = {**_services(4), **CASES["persistent"], **CASES["fwmark"], **CASES["udp-nodest"]}
PERSISTENT = CASES["persistent"][VIP]
CHANGES = {
    "destination-down": (BASE, {**BASE, **_services(4, down={(2, 1)})}),
    "destination-up": ({**BASE, **_services(4, down={(2, 1)})}, BASE),
    "persistent-destination-down": (BASE, {**BASE, VIP: Pool(PERSISTENT.service, {
        k: d for k, d in PERSISTENT.destinations.items() if d.key.address != "10.20.40.11"})}),
    "persistence-timeout": (BASE, {**BASE, **state(dests=THREE, persistence_timeout=60,
                                                   persistence_netmask="255.255.255.0")}),
    "service-added": (BASE, {**BASE, **_services(6)}),
    "service-removed": (BASE, {k: p for k, p in BASE.items()
                               if k != ServiceKey("TCP", "10.0.0.2", 80)}),
    "persistent-removed": (BASE, {k: p for k, p in BASE.items() if k != VIP}),
    "scheduler": (BASE, {**BASE, **_services(1, scheduler="sh")}),
    "mh-destination-down": ({**BASE, **_services(2, scheduler="mh")},
                            {**BASE, **_services(2, down={(1, 0)}, scheduler="mh")}),
    "all-down": (BASE, {**BASE, **_services(1, down={(0, 0), (0, 1), (0, 2)})}),
    "last-reject-gone": (BASE, {k: p for k, p in BASE.items()
                                if k != ServiceKey("UDP", "203.0.113.100", 53)}),
    "from-empty": ({}, BASE),
    "to-empty": (BASE, {}),
}


def _commands(script):
    return [line for line in script.splitlines() if line and not line.startswith("#")]


def _touched(commands):
    """The service chains the commands touch, but for the dispatch rules jumping to them."""
    return {word for command in commands if "director prerouting" not in command
            for word in command.split() if word.startswith("svc_")}


def test_one_destination_down_touches_only_its_chain():
    before, after = CHANGES["destination-down"]
    name = chain_name(ServiceKey("TCP", "10.0.0.3", 80))
    commands = _commands(changes(before, after).script)
    assert commands == [f"flush chain inet director {name}",
                        f"add rule inet director {name} meta l4proto tcp dnat ip addr . port to "
                        "numgen inc mod 2 map { 0 : 172.16.2.1 . 8080, 1 : 172.16.2.3 . 8080 }"]
    assert _commands(changes(after, after).script) == []


def test_persistent_destination_down_keeps_the_other_client_sets():
    commands = _commands(changes(*CHANGES["persistent-destination-down"]).script)
    gone = f"{SVC}_d{_digest('10.20.40.11', 80)}"
    assert all(SVC in command for command in commands), commands
    assert f"delete set inet director {gone}_clients" in commands
    assert not any(command.startswith(("add set", "flush chain inet director prerouting"))
                   for command in commands)


def test_added_and_removed_services_rebuild_only_the_dispatch_chain():
    added = _commands(changes(*CHANGES["service-added"]).script)
    new = {chain_name(ServiceKey("TCP", f"10.0.0.{n}", 80)) for n in (5, 6)}
    assert _touched(added) == new
    assert f"add chain inet director {min(new)}" in added
    assert "flush chain inet director prerouting" in added
    removed = _commands(changes(*CHANGES["service-removed"]).script)
    name = chain_name(ServiceKey("TCP", "10.0.0.2", 80))
    assert f"delete chain inet director {name}" in removed
    assert _touched(removed) == {name}
    assert "flush chain inet director prerouting" in removed


def test_the_renderer_stays_pure():
    """No subprocess, no socket, no I/O module: what it imports says so (nft runs in the
    runner, nftables.py)."""
    tree = ast.parse(Path(nftables_script.__file__).read_text())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert imported == {"__future__", "hashlib", "ipaddress", "math", "re", "collections.abc",
                        "dataclasses", "model", "maglev"}, imported
