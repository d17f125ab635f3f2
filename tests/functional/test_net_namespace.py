"""net_namespace (issue 14, part H): director started in the root namespace with
``net_namespace NAME`` runs its VRRP inside NAME. A keepalived 2.2.7 peer there (another
namespace on the same bridge) sees its adverts and stays BACKUP; the VIP is added inside
NAME, and nothing of it appears in the root namespace. VRRPv3 every 0.2 s (fast_config): the
waits are master down intervals of ~0.7 s, not ~3.4 s."""

from __future__ import annotations

import os
import subprocess
import time

import pytest

from tests.functional.here import director_here
from tests.functional.lab import start_keepalived, wait_for
from tests.functional.test_vrrp_failover import fast_config, fast_down

pytestmark = [pytest.mark.netns, pytest.mark.slow, pytest.mark.timeout(120)]

VIP = "192.0.2.100"


def test_director_in_the_root_namespace_runs_vrrp_in_net_namespace(lab, tmp_path):
    switch = lab.switch()
    a = lab.host("a", [(switch, "eth0", ["192.0.2.1/24"])])
    b = lab.host("b", [(switch, "eth0", ["192.0.2.2/24"])])
    config = tmp_path / "keepalived.conf"
    config.write_text(f"net_namespace {a.ns}\n" + fast_config(150))
    log_path = tmp_path / "log"
    with director_here(config, tmp_path / "state", log_path, "-D") as proc:
        wait_for(lambda: a.has_address("eth0", VIP), fast_down(150) + 5,
                 message=lambda: log_path.read_text())
        assert os.readlink(f"/proc/{proc.pid}/ns/net") == \
            os.readlink(f"/proc/{_pid_in(a)}/ns/net")
        peer = start_keepalived(b, fast_config(100))      # after ours is MASTER
        wait_for(lambda: "Entering BACKUP STATE" in lab.log_of(peer), 10,
                 message=lambda: lab.log_of(peer))
        # The peer hears the adverts: it stays BACKUP past its own master-down interval.
        end = time.monotonic() + fast_down(100) + 1
        while time.monotonic() < end:
            assert "Entering MASTER STATE" not in lab.log_of(peer), lab.log_of(peer)
            assert not b.has_address("eth0", VIP)
            time.sleep(0.2)
        # Nothing in the root namespace: the VIP is not ours here.
        root_addresses = subprocess.run(["ip", "-o", "addr"], capture_output=True,
                                        text=True).stdout
        assert VIP not in root_addresses
    # On stop ours sent priority 0 (the peer says so): it takes over.
    wait_for(lambda: "Backup received priority 0 advertisement" in lab.log_of(peer) and
             b.has_address("eth0", VIP), 2, message=lambda: lab.log_of(peer))


def _pid_in(host) -> int:
    """A process living in the host's namespace (a sleep the lab reaps)."""
    sleeper = host.popen(["sleep", "30"])
    wait_for(lambda: os.readlink(f"/proc/{sleeper.pid}/ns/net") !=
             os.readlink("/proc/self/ns/net"), 5, message="sleep never entered the namespace")
    return sleeper.pid
