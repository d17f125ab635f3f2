"""A virtual server announced over BGP shares its flows with the other directors: on IPVS the
load balancer turns on sloppy_tcp / sloppy_sctp (a flow the router moved here mid-stream is
scheduled, not reset), once, and says so; nothing without a bgp_announce. The sysctls are
files in a temporary directory here; the kernel's are written in the qemu guest
(tests/qemu/ipvs_cases.py)."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest

from director.config import load_config
from director.lb.backends import IpvsSync
from director.lb.service import LoadBalancer
from director.notify import Notifier

VS = """
virtual_server 192.0.2.10 80 {
    lb_algo mh
    lb_kind DR
    protocol TCP
    real_server 10.0.0.1 80 {
        TCP_CHECK {
        }
    }%s
}
"""
BGP = """
bgp {
    local_as 65001
    router_id 10.0.0.11
    peer 10.0.0.1 {
        peer_as 65000
    }
}
"""
ANNOUNCE = """
    bgp_announce {
    }"""


@pytest.fixture
def sysctls(tmp_path):
    folder = tmp_path / "vs"
    folder.mkdir()
    for name in IpvsSync.MID_FLOW:
        (folder / name).write_text("0\n")
    return folder


def balancer(tmp_path, sysctls, text):
    path = tmp_path / "keepalived.conf"
    path.write_text(text)
    result = load_config(str(path), interface_exists=None)
    assert result.ok, [str(d) for d in result.diagnostics]
    checks = SimpleNamespace(state_of=lambda name, real: None, listeners=[], effect_listeners=[], real_servers=[])
    lb = LoadBalancer(result.config, checks, "none", Notifier(None))
    lb.backend = IpvsSync.__new__(IpvsSync)       # no netlink: only the sysctls are used
    lb.backend.SYSCTLS = str(sysctls)
    return lb, result.config


def test_announced_over_bgp_turns_the_sysctls_on_once(tmp_path, sysctls, caplog):
    lb, config = balancer(tmp_path, sysctls, BGP + VS % ANNOUNCE)
    with caplog.at_level(logging.INFO, logger="director.lb"):
        lb._shared_flows(config)
        lb._shared_flows(config)                  # a reload: already on, nothing said
    assert [(sysctls / name).read_text() for name in IpvsSync.MID_FLOW] == ["1\n", "1\n"]
    lines = [r.getMessage() for r in caplog.records if "lb.mid_flow" in r.getMessage()]
    assert len(lines) == 1 and "turned_on=sloppy_tcp,sloppy_sctp" in lines[0], lines


def test_without_bgp_nothing_changes(tmp_path, sysctls):
    lb, config = balancer(tmp_path, sysctls, VS % "")
    lb._shared_flows(config)
    assert [(sysctls / name).read_text() for name in IpvsSync.MID_FLOW] == ["0\n", "0\n"]


def test_a_sysctl_that_cannot_be_written_is_said_not_raised(tmp_path, sysctls, caplog):
    lb, config = balancer(tmp_path, sysctls, BGP + VS % ANNOUNCE)
    (sysctls / "sloppy_tcp").unlink()
    with caplog.at_level(logging.INFO, logger="director.lb"):
        lb._shared_flows(config)
    assert any("lb.mid_flow_failed" in r.getMessage() for r in caplog.records)
