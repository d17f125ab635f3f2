"""The reload preview against plans: each change said with its old -> new settings, the VRRP
transition that would follow, the kernel's operations in words, a bad file refused with its
diagnostics, and nothing of the running daemon changed by a preview."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from director import reconcile
from director.check.service import CheckService
from director.clock import FakeClock
from director.config import load_config
from director.lb.service import LoadBalancer
from director.notify import Notifier
from director.reload_preview import preview, transition
from tests.unit.test_reload_property import set_up

BASE = """vrrp_instance VI_1 {
    interface lo
    virtual_router_id 51
    priority 100
    virtual_ipaddress {
        192.0.2.1/24
    }
}
vrrp_instance VI_OLD {
    interface lo
    virtual_router_id 52
    priority 100
    virtual_ipaddress {
        192.0.2.2/24
    }
}
virtual_server 192.0.2.10 80 {
    delay_loop 1
    lb_algo rr
    real_server 10.0.0.1 80 {
        weight 1
        TCP_CHECK {
            connect_timeout 1
        }
    }
    real_server 10.0.0.2 80 {
        TCP_CHECK {
            connect_timeout 1
        }
    }
}
"""
CHANGED = BASE.replace("priority 100", "priority 90", 1) \
    .replace("weight 1", "weight 3") \
    .replace("""    real_server 10.0.0.2 80 {
        TCP_CHECK {
            connect_timeout 1""", """    real_server 10.0.0.2 80 {
        TCP_CHECK {
            connect_timeout 2""") \
    .replace("vrrp_instance VI_OLD", "vrrp_instance VI_NEW") \
    .replace("lb_algo rr", "lb_algo wrr") + """virtual_server 192.0.2.11 80 {
    real_server 10.0.0.3 80 {
        TCP_CHECK {
            connect_timeout 1
            alpha
        }
    }
}
"""


def load(tmp_path, text, name="keepalived.conf"):
    path = tmp_path / name
    path.write_text(text)
    result = load_config(str(path), config_id="t", interface_exists=None)
    assert result.ok, [str(d) for d in result.errors]
    return result.config, str(path)


class Instance(SimpleNamespace):
    pass


@pytest.fixture
def daemon(tmp_path):
    config, path = load(tmp_path, BASE)
    checks = CheckService(config, FakeClock(), Notifier(), workers=0)
    checks.start()
    lb = LoadBalancer(config, checks, "none", Notifier())
    for name in lb.keys:
        lb.quorum[name] = True
    lb._converge(verify=False)
    state = SimpleNamespace(role="MASTER", priority=100, master_priority=None)
    vrrp = SimpleNamespace(instances=[Instance(name="VI_1", state=state),
                                      Instance(name="VI_OLD", state=state)])
    yield SimpleNamespace(config=config, config_id="t", options=SimpleNamespace(
        vrrp=False, use_file=path), checks=checks, lb=lb, vrrp=vrrp, path=path)
    checks.stop()


def test_every_change_is_said_with_its_settings(daemon, tmp_path):
    _, changed = load(tmp_path, CHANGED, "new.conf")
    desired_before = dict(daemon.lb.desired)
    ups = [(s.name, s.up, s.drained) for s in daemon.checks.real_servers]

    answer = preview(daemon, changed)

    assert answer["would_apply"] and not answer["unchanged"] and answer["errors"] == []
    vrrp = answer["vrrp_instances"]
    assert [i["name"] for i in vrrp["changed"]] == ["VI_1"]
    assert vrrp["changed"][0]["settings"] == ["priority: 100 -> 90"]
    assert vrrp["changed"][0]["transition"].startswith("MASTER stays")   # keeps its role
    assert [i["name"] for i in vrrp["added"]] == ["VI_NEW"]
    assert vrrp["removed"] == [{"name": "VI_OLD",
                                "transition": "MASTER -> stopped: its VIPs are given up"}]
    assert answer["virtual_servers"]["added"] == ["192.0.2.11:80/TCP"]
    assert answer["virtual_servers"]["changed"] == [
        {"name": "192.0.2.10:80/TCP", "settings": ["lb_algo: rr -> wrr"]}]
    real = {r["real_server"]: r for r in answer["real_servers"]["changed"]}
    assert real["10.0.0.1:80"]["settings"] == ["weight: 1 -> 3"]
    assert real["10.0.0.1:80"]["checkers_restart"] is False
    assert real["10.0.0.2:80"]["checkers_restart"] is True
    assert answer["checkers"]["restart"] == ["192.0.2.10:80/TCP / 10.0.0.2:80"]
    assert answer["checkers"]["start"] == ["192.0.2.11:80/TCP / 10.0.0.3:80"]
    kernel = answer["kernel"]
    assert kernel["backend"] == "none"
    assert kernel["services"]["update"] == ["TCP 192.0.2.10:80: scheduler: rr -> wrr"]
    assert kernel["destinations"]["update"] == [
        "TCP 192.0.2.10:80 -> 10.0.0.1:80: weight: 1 -> 3"]
    # the new virtual server's only real server starts down (alpha): no destination
    assert kernel["services"]["add"] == ["TCP 192.0.2.11:80 (wlc)"]
    assert kernel["destinations"]["add"] == []
    assert "VRRP instances" in answer["summary"] and "kernel: 3 operations" in answer["summary"]

    # nothing changed: the running configuration, the pools, the checks' states
    assert daemon.lb.desired == desired_before and daemon.lb.config is daemon.config
    assert [(s.name, s.up, s.drained) for s in daemon.checks.real_servers] == ups


def test_the_configured_file_unchanged_changes_nothing(daemon):
    answer = preview(daemon, daemon.path)
    assert answer["unchanged"] and answer["summary"] == "nothing would change"
    assert answer["kernel"]["operations"] == 0
    assert answer["vrrp_instances"]["kept"] == ["VI_1", "VI_OLD"]


def test_a_file_that_does_not_parse_is_refused_with_file_and_line(daemon, tmp_path):
    bad = tmp_path / "bad.conf"
    bad.write_text(BASE.replace("priority 100", "priority 300", 1))
    answer = preview(daemon, str(bad))
    assert answer["would_apply"] is False
    assert answer["errors"] and answer["errors"][0].startswith(f"{bad}:4")
    assert "refused" in answer["summary"]
    missing = preview(daemon, str(tmp_path / "nowhere.conf"))
    assert missing["would_apply"] is False and "nowhere.conf" in missing["errors"][0]


def test_a_daemon_without_load_balancer_says_so(daemon, tmp_path):
    _, changed = load(tmp_path, CHANGED, "new.conf")
    daemon.options.vrrp = True
    answer = preview(daemon, changed)
    assert answer["kernel"] == {"backend": None, "note": "this daemon runs no load balancer"}


@pytest.mark.parametrize("args, expected", [
    (("added", None, None, 100), "INIT -> BACKUP (MASTER if no higher priority is heard)"),
    (("added", None, None, 255), "INIT -> MASTER (priority 255)"),
    (("removed", "MASTER"), "MASTER -> stopped: its VIPs are given up"),
    (("removed", "BACKUP"), "BACKUP -> stopped"),
    (("changed", None, 100, 90), None),
    (("changed", "BACKUP", 100, 90), "BACKUP -> restarted as BACKUP"),
])
def test_transitions_while_a_changed_instance_restarts(args, expected):
    assert transition(*args, restarts=True) == expected


@pytest.mark.parametrize("args, expected", [
    (("changed", "MASTER", 100, 90, 95), "MASTER -> BACKUP (a peer advertised priority 95)"),
    (("changed", "MASTER", 100, 90, None),
     "MASTER stays unless a BACKUP has a priority above 90"),
    (("changed", "MASTER", 100, 110, None), None),
    (("changed", "BACKUP", 100, 120, 110), "BACKUP -> MASTER (preempts the master's "
                                            "priority 110)"),
    (("changed", "BACKUP", 100, 120, 110, False), None),          # nopreempt
    (("changed", "BACKUP", 100, 105, 110), None),
    (("changed", "BACKUP", 100, 100, 90), None),                  # its priority is the same
])
def test_transitions_when_a_changed_instance_keeps_its_role(args, expected):
    assert transition(*args, restarts=False) == expected


def test_a_reload_that_leaves_the_pools_alone_foresees_no_kernel_change(daemon, tmp_path):
    """Only the VRRP part changed: the reload does not hand the load balancer the file, so
    the kernel operations a converge might do meanwhile are not the reload's."""
    _, path = load(tmp_path, BASE.replace("priority 100", "priority 90", 1), "vrrp.conf")
    set_up(daemon.checks.real_servers[0], False)       # a converge now would change pools
    answer = preview(daemon, path)
    assert [i["name"] for i in answer["vrrp_instances"]["changed"]] == ["VI_1"]
    assert answer["kernel"]["operations"] == 0


def test_an_instance_that_is_another_router_now_restarts(daemon, tmp_path):
    """A changed vrid makes another router (vrrp/carry.py identity, keepalived's
    vrrp_exist): the reload stops it and starts it afresh, and the preview says so."""
    _, changed = load(tmp_path, BASE.replace("virtual_router_id 51", "virtual_router_id 61", 1),
                      "new.conf")
    (instance,) = preview(daemon, changed)["vrrp_instances"]["changed"]
    assert instance["settings"] == ["virtual_router_id: 51 -> 61"]
    assert instance["transition"].startswith("MASTER -> restarted: its VIPs are given up")
