"""Direct routing on nftables (nftables_dr.py, pure; the host reading in nftables.py): the
netdev table's rules per scheduler, weight 0 and no live server, real servers without a
connected route, changes_dr() touching only what changed, the notes; and nft itself
applying them in a throwaway namespace with two interfaces, a change leaving the table a
full apply makes."""

from __future__ import annotations

import ast
import os
import re
import secrets
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from director.lb import nftables_dr
from director.lb.maglev import TABLE_SIZE
from director.lb.model import Destination, DestinationKey, Pool, Service, ServiceKey
from director.lb.nftables import NftablesBackend, egress_devices, ingress_devices, objects_of
from director.lb.nftables_dr import (Links, changes_dr, dr_chain_name, notes, problems,
                                     render_dr)
from director.lb.nftables_script import changes, render

VIP = ServiceKey("TCP", "192.0.2.100", 80)
VIP6 = ServiceKey("TCP", "2001:db8::100", 80, family=6)
DR = dr_chain_name(VIP)
SERVERS = ("10.20.40.10", "10.20.40.11", "10.20.40.12")
LINKS = Links(("eth0", "eth1"), tuple((address, "eth1") for address in SERVERS))


def dest(address, weight=1, port=80, method="DR"):
    return Destination(DestinationKey(address, port), weight, method)


def state(key=VIP, scheduler="mh", dests=(), **service):
    return {key: Pool(Service(key, scheduler, **service), {d.key: d for d in dests})}


THREE = [dest(address) for address in SERVERS]


def chain(script, name):
    match = re.search(rf"^    chain {name} {{\n(.*?)^    }}", script, re.M | re.S)
    assert match, f"no chain {name} in:\n{script}"
    return [line.strip() for line in match.group(1).splitlines()]


def map_of(rule):
    """The slot -> address map of a fwd rule."""
    body = re.search(r"map \{ (.*) \}", rule).group(1)
    return dict(entry.split(" : ") for entry in body.split(", "))


def test_mh_forwards_by_maglev_on_the_connected_device():
    script = render_dr(state(dests=THREE, flags=("mh-port",)), LINKS)
    assert script.splitlines()[1:3] == ["add table netdev director",
                                        "delete table netdev director"]
    assert chain(script, "ingress") == [
        'type filter hook ingress devices = { "eth0", "eth1" } priority filter; '
        'policy accept;',
        f'meta pkttype host ip daddr 192.0.2.100 tcp dport 80 counter jump {DR} '
        f'comment "TCP 192.0.2.100:80 mh DR"']
    [rule] = chain(script, DR)
    assert rule.startswith("fwd ip to jhash ip saddr . tcp sport mod 4093 seed 0x6d61676c map")
    assert rule.endswith('device "eth1"')
    slots = map_of(rule)
    assert len(slots) == TABLE_SIZE
    counts = Counter(slots.values())
    assert set(counts) == set(SERVERS) and max(counts.values()) - min(counts.values()) <= 1
    # not on the NAT path: no dnat, no reject for it in the inet table
    nat = render(state(dests=THREE))
    assert "192.0.2.100" not in nat


def test_the_table_is_the_same_whatever_order_the_pool_comes_in():
    forward = render_dr(state(dests=THREE), LINKS)
    backward = render_dr(state(dests=THREE[::-1]), LINKS)
    assert forward == backward


def test_without_mh_port_the_client_address_alone_is_hashed():
    [rule] = chain(render_dr(state(dests=THREE), LINKS), DR)
    assert "jhash ip saddr mod 4093 seed 0x6d61676c map" in rule


def test_ipv6_forwards_with_fwd_ip6():
    servers = ("2001:db8:1::10", "2001:db8:1::11")
    links = Links(("eth1",), tuple((address, "eth1") for address in servers))
    script = render_dr(state(VIP6, dests=[dest(a) for a in servers]), links)
    assert "meta pkttype host ip6 daddr 2001:db8::100 tcp dport 80 counter jump" in script
    assert "fwd ip6 to jhash ip6 saddr mod 4093 seed 0x6d61676c map" in script


def test_one_live_server_is_forwarded_to_directly():
    script = render_dr(state(dests=[dest(SERVERS[0]), dest(SERVERS[1], weight=0)]), LINKS)
    assert chain(script, DR) == ['fwd ip to 10.20.40.10 device "eth1"']


def test_drained_servers_leave_the_table_and_none_live_drops():
    script = render_dr(state(dests=[dest(SERVERS[0], 0), *THREE[1:]]), LINKS)
    assert SERVERS[0] not in script
    script = render_dr(state(dests=[dest(address, 0) for address in SERVERS]), LINKS)
    assert chain(script, "ingress")[1] == (
        'meta pkttype host ip daddr 192.0.2.100 tcp dport 80 counter drop '
        'comment "TCP 192.0.2.100:80: no DR destination"')
    assert f"chain {DR}" not in script


def test_sh_and_fo_are_stateless_as_they_are_and_rr_runs_as_mh():
    [rule] = chain(render_dr(state(scheduler="sh", dests=[dest(SERVERS[0], 2),
                                                          dest(SERVERS[1], 1)]), LINKS), DR)
    assert rule == ("fwd ip to jhash ip saddr mod 3 seed 0x6d61676c map "
                    "{ 0 : 10.20.40.10, 1 : 10.20.40.11, 2 : 10.20.40.10 } device \"eth1\"")
    [rule] = chain(render_dr(state(scheduler="fo", dests=[dest(SERVERS[0], 2),
                                                          dest(SERVERS[1], 5)]), LINKS), DR)
    assert rule == 'fwd ip to 10.20.40.11 device "eth1"'
    rr = state(scheduler="rr", dests=THREE, persistence_timeout=300)
    assert "mod 4093" in render_dr(rr, LINKS) and "numgen" not in render_dr(rr, LINKS)
    assert notes(rr.values()) == [
        "lb_algo rr runs as mh for DR on nftables (stateless: every packet of a flow must "
        "hash to the same server)",
        "persistence_timeout 300 is ignored for DR on nftables: a flow sticks to its server "
        "by its hash, with no state to time out"]
    assert notes(state(dests=THREE, flags=("mh-port", "mh-fallback")).values()) == []


def test_servers_without_a_connected_route_are_left_out_and_said():
    links = Links(("eth0", "eth1"), (("10.20.40.10", "eth1"), ("10.20.40.11", "eth1"),
                                     ("10.20.40.12", "eth0")))
    pool = state(dests=[*THREE, dest("198.51.100.7")])
    script = render_dr(pool, links)
    assert "10.20.40.12" not in script and "198.51.100.7" not in script
    assert problems(pool, links) == [
        "TCP 192.0.2.100:80: DR real server 10.20.40.12:80 is on eth0, the others on eth1 "
        "(one device per service): left out",
        "TCP 192.0.2.100:80: DR real server 198.51.100.7:80 has no directly connected route "
        "(LVS-DR needs it on a link of the director): left out"]
    nowhere = render_dr(state(dests=[dest("198.51.100.7")]), Links(("eth0",)))
    assert "counter drop" in nowhere
    assert problems(state(dests=THREE), Links()) [-1] == \
        "no interface is up to hook the DR services' ingress on"
    assert problems(state(dests=THREE), LINKS) == []


def test_mixed_nat_and_dr_and_fwmark_stay_on_the_nat_path():
    mixed = state(scheduler="rr", dests=[dest(SERVERS[0]), dest(SERVERS[1], method="NAT")])
    assert render_dr(mixed, LINKS).count("\n") == 3           # the table is only deleted
    assert "dnat ip to 10.20.40.11:80" in render(mixed)
    fwmark = ServiceKey("TCP", fwmark=5)
    assert "table netdev director {" not in render_dr(state(fwmark, dests=THREE), LINKS)


def test_no_dr_service_only_deletes_the_table_and_changes_nothing():
    assert "table netdev director {" not in render_dr({}, LINKS)
    assert changes_dr({}, {}, LINKS, LINKS).script == ""


def test_a_server_down_rewrites_only_its_services_chain():
    other = ServiceKey("TCP", "192.0.2.101", 443)
    before = {**state(dests=THREE), **state(other, dests=THREE)}
    after = {**state(dests=THREE[:2]), **state(other, dests=THREE)}
    done = changes_dr(before, after, LINKS, LINKS)
    assert done.script.splitlines()[0] == f"flush chain netdev director {DR}"
    assert "ingress" not in done.script and dr_chain_name(other) not in done.script
    assert done.touched == {f"netdev chain {DR}"} and done.gone == frozenset()


def test_a_service_added_rebuilds_the_dispatch_and_adds_its_chain():
    other = ServiceKey("TCP", "192.0.2.101", 443)
    done = changes_dr(state(dests=THREE), {**state(dests=THREE), **state(other, dests=THREE)},
                      LINKS, LINKS)
    assert "flush chain netdev director ingress" in done.script
    assert f"add chain netdev director {dr_chain_name(other)}" in done.script
    assert done.touched == {"netdev chain ingress", f"netdev chain {dr_chain_name(other)}"}


def test_a_dr_service_losing_every_server_adds_the_reject_chain_it_never_had():
    """The DR service was never in the NAT table's input chain (there was none): the
    change adds that chain, it does not flush it."""
    script = changes(state(dests=THREE), state(dests=[])).script
    assert "flush chain inet director input" not in script, script
    assert "add chain inet director input" in script, script
    back = changes(state(dests=[]), state(dests=THREE)).script
    assert "delete chain inet director input" in back, back


def test_a_new_interface_replaces_the_table():
    more = Links(("eth0", "eth1", "eth2"), LINKS.egress)
    done = changes_dr(state(dests=THREE), state(dests=THREE), LINKS, more)
    assert done.script == render_dr(state(dests=THREE), more)
    assert "netdev chain ingress" in done.touched


def test_ingress_devices_are_the_interfaces_up_but_loopback():
    links = [{"ifname": "lo", "flags": ["LOOPBACK", "UP", "LOWER_UP"]},
             {"ifname": "eth1", "flags": ["BROADCAST", "UP", "LOWER_UP"]},
             {"ifname": "eth0", "flags": ["BROADCAST", "UP"]},
             {"ifname": "eth9", "flags": ["BROADCAST"]}]
    assert ingress_devices(links) == ("eth0", "eth1")


def test_egress_is_the_longest_connected_route_and_never_a_gateway():
    routes = [(4, {"dst": "default", "gateway": "10.20.40.1", "dev": "eth1"}),
              (4, {"dst": "10.20.40.0/24", "dev": "eth1", "scope": "link"}),
              (4, {"dst": "10.20.40.12", "gateway": "10.20.40.1", "dev": "eth1"}),
              (4, {"dst": "10.20.50.0/24", "type": "blackhole"}),
              (6, {"dst": "2001:db8:1::/64", "dev": "eth2"})]
    assert egress_devices(routes, ["10.20.40.10", "10.20.40.12", "198.51.100.7",
                                   "10.20.50.5", "2001:db8:1::10"]) == (
        ("10.20.40.10", "eth1"), ("2001:db8:1::10", "eth2"))


def test_the_dr_renderer_stays_pure():
    tree = ast.parse(Path(nftables_dr.__file__).read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import)
                 for alias in node.names}
    assert imported == {"__future__", "hashlib", "collections", "collections.abc",
                        "dataclasses", "model", "nftables_script"}, imported


# === nft itself, in a throwaway namespace with eth0 and eth1 ===============================

@pytest.fixture(scope="module")
def nft_in_namespace(tmp_path_factory):
    if shutil.which("nft") is None:
        pytest.skip("nft is not installed (apt-get install nftables)")
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("needs root and `ip netns` (nft runs in a throwaway namespace)")
    ns = f"dnftdr-{os.getpid()}-{secrets.token_hex(3)}"
    added = subprocess.run(["ip", "netns", "add", ns], capture_output=True, text=True,
                           timeout=10, check=False)
    if added.returncode != 0:
        pytest.skip(f"ip netns add failed: {added.stderr.strip()}")
    try:
        for argv in (["link", "add", "eth0", "type", "veth", "peer", "name", "eth1"],
                     ["link", "set", "eth0", "up"], ["link", "set", "eth1", "up"],
                     ["addr", "add", "10.20.40.2/24", "dev", "eth1"]):
            subprocess.run(["ip", "-n", ns, *argv], check=True, timeout=10)
        wrapper = tmp_path_factory.mktemp("nft") / "nft"
        wrapper.write_text(f'#!/bin/sh\nexec ip netns exec {ns} "$(basename "$0")" "$@"\n')
        wrapper.chmod(0o755)
        ip = wrapper.with_name("ip")
        ip.write_text(f'#!/bin/sh\nexec ip -n {ns} "$@"\n')
        ip.chmod(0o755)
        yield NftablesBackend(table="drtest", nft=str(wrapper), ip=str(ip))
    finally:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10, check=False)


def test_the_host_links_are_read(nft_in_namespace):
    links = nft_in_namespace.links(["10.20.40.10", "198.51.100.7"])
    assert links == Links(("eth0", "eth1"), (("10.20.40.10", "eth1"),))


CHANGES = {
    "server-down": (state(dests=THREE), state(dests=THREE[:2])),
    "service-added": (state(dests=THREE), {**state(dests=THREE),
                                           **state(VIP6, dests=[dest("2001:db8:1::10")])}),
    "all-drained": (state(dests=THREE), state(dests=[dest(a, 0) for a in SERVERS])),
    "dr-gone": (state(dests=THREE), {}),
    "dr-comes": ({}, state(dests=THREE)),
    # every real server down without inhibit_on_failure: the pool has none left, so it
    # takes the NAT path's reject (an input chain the DR table never had), and back
    "every-server-gone": (state(dests=THREE), state(dests=[])),
    "servers-back": (state(dests=[]), state(dests=THREE)),
}


@pytest.mark.parametrize("case", sorted(CHANGES))
def test_changes_give_the_tables_a_full_apply_gives(nft_in_namespace, case):
    backend = nft_in_namespace
    before, after = CHANGES[case]
    links = Links(("eth0", "eth1"), tuple((a, "eth1") for a in (*SERVERS, "2001:db8:1::10")))
    try:
        backend.apply(after, links)
        expected = backend.read(family="netdev")
        backend.apply(before, links)
        listed = backend.fingerprint()
        done = backend.apply_changes(before, after, links, links)
        kept = {name: text for name, text in listed.items() if name not in done.gone}
        assert kept | backend.fingerprint(done.touched) == backend.fingerprint()
        assert objects_of(backend.read(family="netdev")) == objects_of(expected)
        assert ("fwd ip to" in expected) == bool(after) or \
            case in ("all-drained", "every-server-gone")
    finally:
        backend.flush()
    assert backend.read(family="netdev") == "" and backend.read() == ""


def test_sync_follows_the_links_and_says_what_it_cannot_reach():
    """NftablesSync reads the links at each sync: a new interface is a change; a real
    server with no connected route is a "route" error while the rest is applied; links
    that cannot be read are an error and the table stays as it was built."""
    from director.lb.backends import NftablesSync
    from director.lb.nftables_script import Changes

    class Fake:
        def __init__(self):
            self.calls, self.host = [], LINKS

        def links(self, addresses):
            if self.host is None:
                raise OSError("ip: no answer")
            return self.host

        def apply(self, desired, links):
            self.calls.append(("apply", links))

        def apply_changes(self, before, after, links_before, links_after):
            self.calls.append(("changes", links_after))
            return Changes("", frozenset(), frozenset())

        def fingerprint(self, names=None):
            return {}

    sync = NftablesSync()
    sync.backend = fake = Fake()
    desired = state(dests=[*THREE, dest("198.51.100.7")])
    errors = sync.sync(desired, frozenset())
    assert [error.operation for error in errors] == ["route"]
    assert "198.51.100.7:80 has no directly connected route" in errors[0].message
    assert fake.calls == [("apply", LINKS)]
    sync.sync(desired, frozenset())
    assert len(fake.calls) == 1                         # nothing changed: nothing run
    fake.host = Links(("eth0", "eth1", "eth2"), LINKS.egress)
    sync.sync(desired, frozenset())
    assert fake.calls[-1] == ("changes", fake.host)
    fake.host = None
    errors = sync.sync(desired, frozenset())
    assert "links" in [error.operation for error in errors] and len(fake.calls) == 2
    assert sync.sync({}, frozenset()) == [] and fake.calls[-1] == ("changes", Links())
