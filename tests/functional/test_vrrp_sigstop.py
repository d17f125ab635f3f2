"""A director whose process is stopped (SIGSTOP: what a paused VM, a swapped-out host or a
debugger does to it) for longer than the peer's master_down_interval, then resumed, with
Debian's keepalived on the other side.

(a) The director is MASTER: keepalived must take over while it is stopped (the RFC's
    result: nothing is heard for a master down interval), and after the resume exactly one
    MASTER remains (the director, which preempts), with the VIP on one host only.
(b) The director is BACKUP: its master down timer expires while it is stopped, but the
    master's adverts wait in its socket; on the resume it must read them rather than go
    MASTER for a moment (a VIP on both hosts and a gratuitous ARP stealing the traffic).

Both: the director logs the cause ("held for N s"), and the transitions of both daemons
are counted over the whole run. Waits have deadlines; the stop itself is the stimulus.
"""

from __future__ import annotations

import os
import re
import signal
import time

import pytest

from tests.functional.lab import start_keepalived, wait_for
from tests.functional.test_vrrp_failover import (down_interval, holds, lacks, pair,  # noqa: F401
                                                 start_director, stats, stays, vrrp_config)

pytestmark = [pytest.mark.netns, pytest.mark.slow, pytest.mark.timeout(90)]

HOLD = 5.0          # seconds stopped: more than either side's master down interval (3.6 s)
SETTLE = 3.0        # seconds after the resume during which the roles must stay as they are


def transitions(log: str) -> list[str]:
    return [line.split("vrrp.transition ", 1)[1] for line in log.splitlines()
            if "vrrp.transition " in line]


def keepalived_entries(log: str, state: str) -> int:
    return sum(1 for line in log.splitlines() if f"Entering {state} STATE" in line)


def held_for(log: str) -> list[float]:
    return [float(seconds) for seconds in re.findall(r"held for (\d+(?:\.\d+)?) s", log)]


class Stopped:
    """SIGSTOP now, SIGCONT on leaving (also when the test fails inside)."""

    def __init__(self, proc) -> None:
        self.proc = proc

    def __enter__(self) -> float:
        os.kill(self.proc.pid, signal.SIGSTOP)
        return time.monotonic()

    def __exit__(self, *exc) -> None:
        os.kill(self.proc.pid, signal.SIGCONT)


def test_a_stopped_master_is_replaced_then_preempts_back(lab, pair):
    _, a, b = pair
    ours = start_director(lab, a, vrrp_config(150), "ours")
    wait_for(holds(a), down_interval(150) + 3, message=lambda: lab.log_of(ours))
    peer = start_keepalived(b, vrrp_config(100))
    wait_for(lambda: keepalived_entries(lab.log_of(peer), "BACKUP") == 1, 10,
             message=lambda: lab.log_of(peer))
    with Stopped(ours) as stopped:
        wait_for(holds(b), down_interval(100) + 1,
                 message=lambda: f"keepalived did not take over\n{lab.log_of(peer)}")
        stays(holds(b), max(0.0, HOLD - (time.monotonic() - stopped)),
              "keepalived gave the VIP up while the director was stopped")
    # The director's advert timer ran out long ago: it advertises at once, and keepalived
    # (priority 100) hears a higher priority and steps down.
    wait_for(lacks(b), 2.0, message=lambda: f"keepalived kept the VIP\n{lab.log_of(peer)}")
    wait_for(lambda: held_for(lab.log_of(ours)), 2.0, message=lambda: lab.log_of(ours))
    stays(lambda: a.has_address("eth0", "192.0.2.100") and
          not b.has_address("eth0", "192.0.2.100"), SETTLE,
          "not exactly one holder of the VIP after the resume")
    assert ours.poll() is None
    moves = transitions(lab.log_of(ours))
    assert len(moves) == 2 and "to=MASTER" in moves[1], moves     # INIT->BACKUP->MASTER
    assert keepalived_entries(lab.log_of(peer), "MASTER") == 1
    assert keepalived_entries(lab.log_of(peer), "BACKUP") == 2
    held = held_for(lab.log_of(ours))
    assert len(held) == 1 and HOLD - 1.0 <= held[0] <= HOLD + 1.5, held


def test_a_stopped_backup_reads_the_adverts_that_waited_before_it_judges(lab, pair):
    _, a, b = pair
    peer = start_keepalived(b, vrrp_config(150))
    wait_for(holds(b), down_interval(150) + 3, message=lambda: lab.log_of(peer))
    ours = start_director(lab, a, vrrp_config(100), "ours")
    wait_for(lambda: "to=BACKUP" in lab.log_of(ours), 10, message=lambda: lab.log_of(ours))
    received = stats(lab, ours)["VI_1"]["adverts_received"]
    with Stopped(ours) as stopped:
        stays(lambda: b.has_address("eth0", "192.0.2.100") and
              not a.has_address("eth0", "192.0.2.100"),
              max(0.0, HOLD - (time.monotonic() - stopped)), "the VIP moved during the stop")
    # it reads keepalived's adverts again (and those that waited in its socket)
    wait_for(lambda: stats(lab, ours)["VI_1"]["adverts_received"] >= received + HOLD, 3.0,
             message=lambda: lab.log_of(ours))
    stays(lambda: b.has_address("eth0", "192.0.2.100") and
          not a.has_address("eth0", "192.0.2.100"), SETTLE, "the VIP moved after the resume")
    assert ours.poll() is None
    moves = transitions(lab.log_of(ours))
    assert len(moves) == 1 and "to=BACKUP" in moves[0], moves        # INIT->BACKUP only
    assert keepalived_entries(lab.log_of(peer), "MASTER") == 1
    assert "lower priority" not in lab.log_of(peer).lower()
    held = held_for(lab.log_of(ours))
    assert len(held) == 1 and HOLD - 1.0 <= held[0] <= HOLD + 1.5, held
