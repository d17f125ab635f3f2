"""Accept mode's nftables rules (vrrp/firewall.py): the text is pure and checked here; the
Firewall runs it through an nft stand-in that records its scripts (a real nft in the
namespace tests: tests/functional/test_vrrp_strict_netns.py)."""

from __future__ import annotations

import os
import stat

import pytest

from director.config import load_config
from director.config.strict import FirewallSettings
from director.vrrp import firewall
from director.vrrp.firewall import Blocked, Firewall, FirewallError

V4 = FirewallSettings("keepalived", -1, False, False, (4,))


def config(tmp_path, text: str):
    path = tmp_path / "keepalived.conf"
    path.write_text(text)
    result = load_config(str(path), config_id="t", interface_exists=None)
    assert result.ok, result.diagnostics
    return result.config


def instance(name="VI_1", priority=100, extra="", vips="10.0.0.9", vrid=1):
    return (f"vrrp_instance {name} {{\n interface eth0\n virtual_router_id {vrid}\n"
            f" priority {priority}\n {extra}\n virtual_ipaddress {{\n  {vips}\n }}\n}}\n")


def test_the_ipv4_table_drops_to_and_from_the_vips_in_keepalived_s_layout():
    script = firewall.install_script(V4, [Blocked(4, "10.0.0.9"), Blocked(4, "10.0.0.8")])
    assert script == (
        "add table ip keepalived\ndelete table ip keepalived\n"
        "table ip keepalived {\n"
        "\tset vips { type ipv4_addr; elements = { 10.0.0.8, 10.0.0.9 } }\n"
        "\tchain out { type filter hook output priority -1; policy accept;\n"
        "\t\tip saddr @vips drop\n\t}\n"
        "\tchain in { type filter hook input priority -1; policy accept;\n"
        "\t\tip daddr @vips drop\n\t}\n}\n")


def test_ipv6_lets_neighbour_discovery_through_and_keys_link_local_by_interface():
    settings = FirewallSettings("vr", 5, True, False, (6,),
                                ("vips_link_local", "vips_link_local_name"))
    script = firewall.install_script(settings, [Blocked(6, "2001:db8::9"),
                                                Blocked(6, "fe80::9", "eth0"),
                                                Blocked(6, "fe80::8", "eth1", True)])
    assert "table ip6 vr {" in script and "table ip vr" not in script
    assert "set vips { type ipv6_addr; elements = { 2001:db8::9 } }" in script
    assert 'set vips_link_local { type ipv6_addr . iface_index; elements = { fe80::9 . ' \
           '"eth0" } }' in script
    assert 'set vips_link_local_name { type ipv6_addr . ifname; elements = { fe80::8 . ' \
           '"eth1" } }' in script
    chain_in = script[script.index("chain in {"):script.index("chain in_link_local")]
    assert chain_in.splitlines()[1:4] == [
        "\t\ticmpv6 type @neighbor-discovery counter accept",
        "\t\tip6 daddr fe80::/10 counter goto in_link_local",
        "\t\tip6 daddr @vips counter drop"]
    assert "priority 5;" in script
    # keepalived makes a link-local set (and its rule) only when a VIP needs it
    alone = firewall.install_script(FirewallSettings("vr", families=(6,)),
                                    [Blocked(6, "2001:db8::9")])
    assert "vips_link_local" not in alone and "chain in_link_local {\n\t}" in alone


def test_installing_other_settings_deletes_the_previous_tables_in_the_same_transaction():
    new = FirewallSettings("other", -1, False, False, (4,))
    script = firewall.install_script(new, [], previous=FirewallSettings(
        "keepalived", -1, False, False, (4, 6)))
    assert script.splitlines()[:4] == ["add table ip keepalived", "delete table ip keepalived",
                                       "add table ip6 keepalived",
                                       "delete table ip6 keepalived"]
    assert firewall.install_script(None, [], previous=V4) == \
        "add table ip keepalived\ndelete table ip keepalived\n"


def test_a_change_adds_and_deletes_only_the_elements_that_differ():
    before = frozenset({Blocked(4, "10.0.0.1"), Blocked(4, "10.0.0.2")})
    after = frozenset({Blocked(4, "10.0.0.2"), Blocked(4, "10.0.0.3")})
    assert firewall.change_script(V4, before, after) == (
        "delete element ip keepalived vips { 10.0.0.1 }\n"
        "add element ip keepalived vips { 10.0.0.3 }\n")
    assert firewall.change_script(V4, after, after) == ""


def test_blocked_addresses_are_the_vips_and_evips_link_local_by_name_with_dont_track_primary(
        tmp_path):
    cfg = config(tmp_path, instance(extra="dont_track_primary\n virtual_ipaddress_excluded "
                                          "{\n  10.0.1.1/24\n }", vips="10.0.0.9/32"))
    assert firewall.blocked_of(cfg.vrrp_instances[0], ifindex=False) == {
        Blocked(4, "10.0.0.9"), Blocked(4, "10.0.1.1")}
    cfg = config(tmp_path, instance(extra="dont_track_primary\n version 3",
                                    vips="fe80::5/64\n  2001:db8::5"))
    assert firewall.blocked_of(cfg.vrrp_instances[0], ifindex=False) == {
        Blocked(6, "fe80::5", "eth0", True), Blocked(6, "2001:db8::5")}
    assert Blocked(6, "fe80::5", "eth0", False) in \
        firewall.blocked_of(cfg.vrrp_instances[0], ifindex=True)


@pytest.mark.parametrize("text, wanted", [
    (instance(), None),                                              # accept by default
    (instance(extra="no_accept"), V4),
    ("global_defs {\n vrrp_strict\n}\n" + instance(), V4),          # strict: off by default
    ("global_defs {\n vrrp_strict\n}\n" + instance(priority=255), None),   # the owner accepts
    ("global_defs {\n vrrp_strict\n}\n" + instance(extra="strict_mode off"), None),
    ("global_defs {\n vrrp_strict\n}\n" + instance(extra="version 3\n accept"), None),
    ("global_defs {\n vrrp_strict\n}\n" + instance(extra="accept"), V4),   # v2: reset to off
    ("global_defs {\n nftables vr\n nftables_priority -300\n nftables_counters\n"
     " nftables_ifindex\n}\n" + instance(extra="no_accept", vips="fe80::1\n  2001:db8::1"),
     FirewallSettings("vr", -300, True, True, (6,), ("vips_link_local",))),
    ("global_defs {\n vrrp_iptables IN OUT\n vrrp_ipsets a b\n}\n" +
     instance(extra="no_accept"), V4),
])
def test_the_tables_exist_when_an_instance_drops_its_vips_traffic(tmp_path, text, wanted):
    assert firewall.settings(config(tmp_path, text)) == wanted


class Fake:
    """What Firewall needs of an Instance."""

    def __init__(self, cfg, name="VI_1"):
        self.config = cfg.vrrp_instances[0]
        self.global_defs = cfg.global_defs
        self.version = 2
        self.name = name


def fake_nft(tmp_path, fail: bool = False) -> str:
    """An nft that appends its script to scripts.log and exits 1 when ``fail``."""
    path = tmp_path / "nft"
    path.write_text(f"#!/bin/sh\ncat >> {tmp_path}/scripts.log\necho '--' >> "
                    f"{tmp_path}/scripts.log\nexit {1 if fail else 0}\n")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return str(path)


def scripts(tmp_path) -> list[str]:
    log = tmp_path / "scripts.log"
    text = log.read_text() if log.exists() else ""
    os.truncate(log, 0) if log.exists() else None
    return [part.strip("\n") for part in text.split("--\n") if part.strip()]


def test_elements_follow_the_masters_and_a_failure_is_counted_then_repaired(tmp_path):
    cfg = config(tmp_path, instance(extra="no_accept"))
    wall = Firewall(fake_nft(tmp_path))
    wall.install(firewall.settings(cfg))
    assert "table ip keepalived {" in scripts(tmp_path)[0]
    master = Fake(cfg)
    wall.block(master)
    assert scripts(tmp_path) == ["add element ip keepalived vips { 10.0.0.9 }"]
    assert wall.snapshot().blocked == ("10.0.0.9",)
    wall.nft = fake_nft(tmp_path, fail=True)
    wall.unblock(master)
    view = wall.snapshot()
    assert (view.errors, view.in_step, view.blocked) == (1, False, ())
    assert "exited 1" in view.last_error
    scripts(tmp_path)
    wall.nft = fake_nft(tmp_path)
    wall.block(master)                   # out of step: the whole table again
    assert scripts(tmp_path)[0].startswith("add table ip keepalived\ndelete table")
    assert wall.snapshot().in_step
    wall.stop()
    assert scripts(tmp_path) == ["add table ip keepalived\ndelete table ip keepalived"]
    assert wall.snapshot().table is None


def test_an_accepting_instance_adds_nothing(tmp_path):
    cfg = config(tmp_path, instance(extra="no_accept") + instance("VI_2", 255, vrid=2,
                                                                   vips="10.0.0.5"))
    wall = Firewall(fake_nft(tmp_path))
    wall.install(firewall.settings(cfg))
    scripts(tmp_path)
    owner = Fake(cfg, "VI_2")
    owner.config = cfg.vrrp_instances[1]
    wall.block(owner)
    assert scripts(tmp_path) == [] and wall.snapshot().blocked == ()


def test_a_kept_master_reloaded_with_accept_mode_on_unblocks_its_vips(tmp_path):
    """A reload keeps a MASTER's role (vrrp/carry.py) and turns accept on beside another
    instance that still drops: its successor's block() takes its VIPs out of the set, as
    keepalived's clear_diff_vrrp_vip changes a kept MASTER's firewall entries."""
    cfg = config(tmp_path, instance(extra="no_accept") +
                 instance("VI_2", 100, vrid=2, vips="10.0.0.5", extra="no_accept"))
    wall = Firewall(fake_nft(tmp_path))
    wall.install(firewall.settings(cfg))
    wall.block(Fake(cfg))
    assert wall.snapshot().blocked == ("10.0.0.9",)
    scripts(tmp_path)
    accepting = config(tmp_path, instance(extra="accept") +
                       instance("VI_2", 100, vrid=2, vips="10.0.0.5", extra="no_accept"))
    wall.block(Fake(accepting))
    assert wall.snapshot().blocked == ()
    assert scripts(tmp_path) == ["delete element ip keepalived vips { 10.0.0.9 }"]


def test_a_missing_nft_is_a_firewall_error(tmp_path):
    wall = Firewall(str(tmp_path / "no-such-nft"))
    with pytest.raises(FirewallError, match="no-such-nft"):
        wall.install(V4)
    assert wall.settings is None


def test_the_view_reaches_the_json_and_the_metrics(tmp_path):
    import dataclasses

    from metrics.collector import SnapshotCollector
    from tests.unit.test_web_api import contract_state

    cfg = config(tmp_path, instance(extra="no_accept"))
    wall = Firewall(fake_nft(tmp_path))
    wall.install(firewall.settings(cfg))
    wall.block(Fake(cfg))
    view = wall.snapshot()
    assert view.as_json() == {"table": "keepalived", "families": ["ip"], "priority": -1,
                              "blocked": ["10.0.0.9"], "by_instance": {"VI_1": ["10.0.0.9"]},
                              "in_step": True, "errors": 0, "last_error": None}
    state = contract_state()
    state = dataclasses.replace(state, vrrp=dataclasses.replace(state.vrrp, firewall=view))
    assert state.vrrp.as_json()["firewall"]["blocked"] == ["10.0.0.9"]
    samples = {s.name: s.value for family in SnapshotCollector(state).collect()
               for s in family.samples}
    assert samples["director_vrrp_firewall_blocked_addresses"] == 1
    assert samples["director_vrrp_firewall_in_step"] == 1
    assert samples["director_vrrp_firewall_errors_total"] == 0


def test_a_reload_restarts_what_strict_mode_changes_and_reinstalls_changed_tables(tmp_path):
    from director.reconcile import plan_instances

    base = instance(extra="no_accept") + instance("VI_2", vrid=2, vips="10.0.0.5")
    old = config(tmp_path, base)
    # vrrp_strict changes what both instances run with: both restart, the tables stay
    new = config(tmp_path, "global_defs {\n vrrp_strict\n}\n" + base)
    plan = plan_instances(old, new)
    assert (plan.changed, plan.kept, plan.firewall) == (("VI_1", "VI_2"), (), False)
    # another chain priority: no instance restarts, the tables are made again
    new = config(tmp_path, "global_defs {\n nftables_priority 10\n}\n" + base)
    plan = plan_instances(old, new)
    assert (plan.changed, plan.firewall, plan.unchanged) == ((), True, False)
