"""Adverts heard from exec (director/vrrp/early.py), against Debian's keepalived: a BACKUP's
master down timer counts from the start of the process, and the adverts that came while the
daemon loaded are heard, in order, before that timer can run out."""

from __future__ import annotations

import re
import time

import pytest

from tests.functional.lab import start_keepalived
from tests.functional.test_vrrp_failover import (holds, lacks, pair, start_director,  # noqa: F401
                                                 stays, until, vrrp_config)

pytestmark = [pytest.mark.netns, pytest.mark.slow, pytest.mark.timeout(120)]

FAST = 0.05         # VRRPv3: a master down interval (~0.18 s) shorter than our start-up


def config(priority: int) -> str:
    return vrrp_config(priority, version=3, advert_int=FAST, password=None)


def heard_early(log: str) -> int:
    match = re.search(r"vrrp\.listening_since_exec instance=VI_1 seconds=\S+ adverts=(\d+)",
                      log)
    assert match, log[-3000:]
    return int(match.group(1))


def test_a_backup_hears_the_adverts_that_came_while_it_started(lab, pair):  # noqa: F811
    """Its timer counts from exec, so it has run out by the time VRRP starts: only the
    adverts queued meanwhile (keepalived's, higher priority) keep it BACKUP."""
    _, a, b = pair
    keepalived = start_keepalived(b, config(200))
    until(holds(b), 10, lambda: lab.log_of(keepalived))
    ours = start_director(lab, a, config(100), "ours")
    until(lambda: "to=BACKUP" in lab.log_of(ours), 20, lambda: lab.log_of(ours))
    stays(lacks(a), 2, "ours took the VIP from a higher priority master")
    assert "to=MASTER" not in lab.log_of(ours), lab.log_of(ours)
    assert heard_early(lab.log_of(ours)) > 0
    assert holds(b)()


def test_a_restarted_higher_priority_director_takes_over_counting_from_exec(lab, pair):  # noqa: F811
    _, a, b = pair
    keepalived = start_keepalived(b, config(100))
    until(holds(b), 10, lambda: lab.log_of(keepalived))
    started = time.monotonic()
    ours = start_director(lab, a, config(150), "ours")
    until(holds(a), 20, lambda: lab.log_of(ours))
    took = time.monotonic() - started
    until(lacks(b), 5, lambda: lab.log_of(keepalived))
    assert heard_early(lab.log_of(ours)) > 0          # keepalived's, lower: discarded
    assert lab.log_of(ours).count("to=MASTER") == 1
    print(f"exec -> VIP on the restarted director: {took:.3f} s "
          f"(master down interval 0.171 s)")
