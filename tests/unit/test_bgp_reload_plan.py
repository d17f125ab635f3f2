"""What a reload changes in the BGP part (reconcile.plan_bgp): its own identity, so that a
changed bgp block restarts only the BGP part (a peer alone where it can), and a changed
bgp_announce touches neither the load balancer nor the real servers."""

from __future__ import annotations

import pytest

from director import reconcile
from director.config import load_config

BASE = """
bgp {
    local_as 65001
    router_id 10.0.0.11
    hold_time 9
    peer 10.0.0.1 {
        peer_as 65000
        description "spine-1"
    }
    peer 10.0.0.2 {
        peer_as 65000
    }
}
virtual_server 192.0.2.10 80 {
    protocol TCP
    real_server 10.1.0.1 80 {
        TCP_CHECK {
            connect_timeout 1
        }
    }
    bgp_announce {
        med 100
    }
}
"""


def parse(tmp_path, text: str, name: str):
    path = tmp_path / name
    path.write_text(text)
    result = load_config(str(path), config_id="test", interface_exists=None)
    assert result.ok, [str(d) for d in result.diagnostics]
    return result.config


# (name, (old text, new text), expected BgpPlan, the load balancer must be reloaded)
CASES = [
    ("unchanged", ("", ""), reconcile.BgpPlan(), False),
    ("a med", ("med 100", "med 200"), reconcile.BgpPlan(announcements=True), False),
    ("a community added", ("med 100", "med 100\n community 65000:1"),
     reconcile.BgpPlan(announcements=True), False),
    ("a peer's AS", ("peer 10.0.0.2 {\n        peer_as 65000",
                     "peer 10.0.0.2 {\n        peer_as 65009"),
     reconcile.BgpPlan(peers_changed=("10.0.0.2",)), False),
    ("the block's hold_time: every peer that takes it",
     ("hold_time 9", "hold_time 30"),
     reconcile.BgpPlan(peers_changed=("10.0.0.1", "10.0.0.2")), False),
    ("a peer removed", ("    peer 10.0.0.2 {\n        peer_as 65000\n    }\n", ""),
     # the announcements name their peers: the announcer withdraws / announces there
     reconcile.BgpPlan(peers_removed=("10.0.0.2",), announcements=True), False),
    ("a peer added", ("    peer 10.0.0.2 {", "    peer 10.0.0.3 {\n peer_as 65000\n }\n"
                                             "    peer 10.0.0.2 {"),
     reconcile.BgpPlan(peers_added=("10.0.0.3",), announcements=True), False),
    ("a description is no reason to drop a session", ('"spine-1"', '"spine-one"'),
     reconcile.BgpPlan(), False),
    ("the engine's program", ("hold_time 9", "hold_time 9\n exabgp_command /opt/exabgp"),
     reconcile.BgpPlan(engine=True), False),
    ("shutdown_delay: read when stopping, nothing restarts", ("hold_time 9",
                                                             "hold_time 9\n shutdown_delay 3"),
     reconcile.BgpPlan(), False),
    ("the pool itself", ("lb_kind", "lb_kind"), reconcile.BgpPlan(), False),
    ("a real server's weight: the load balancer only",
     ("real_server 10.1.0.1 80 {", "real_server 10.1.0.1 80 {\n weight 5"),
     reconcile.BgpPlan(), True),
]


@pytest.mark.parametrize("edit, expected, load_balancer", [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_bgp_plan(tmp_path, edit, expected, load_balancer):
    old = parse(tmp_path, BASE, "old.conf")
    new = parse(tmp_path, BASE.replace(*edit) if edit[0] else BASE, "new.conf")
    plan = reconcile.plan(old, new)
    assert plan.bgp == expected
    assert plan.load_balancer is load_balancer
    assert plan.servers.unchanged or load_balancer
    assert plan.instances.unchanged


def test_adding_and_removing_the_whole_extension(tmp_path):
    plain = parse(tmp_path, BASE[BASE.index("virtual_server"):]
                  .replace("    bgp_announce {\n        med 100\n    }\n", ""), "plain.conf")
    full = parse(tmp_path, BASE, "full.conf")
    on = reconcile.plan(plain, full)
    assert on.bgp == reconcile.BgpPlan(engine=True, peers_added=("10.0.0.1", "10.0.0.2"),
                                       announcements=True)
    assert not on.load_balancer and not on.unchanged
    assert "BGP: engine (re)started, peers: 2 added, announcements recomputed" in on.describe()
    off = reconcile.plan(full, plain)
    assert off.bgp == reconcile.BgpPlan(engine=True, peers_removed=("10.0.0.1", "10.0.0.2"),
                                        announcements=True)
