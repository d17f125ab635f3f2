"""Reload (SIGHUP) of VRRP in a running daemon, with Debian's keepalived as its BACKUP peer:
adding and removing an instance touches nothing else (the untouched instance makes no
transition and misses no advert: the peer never takes over), a changed instance restarts,
and a broken file leaves everything running with the failure counted."""

from __future__ import annotations

import signal

import pytest

from tests.functional.lab import start_keepalived, wait_for
from tests.functional.test_vrrp_failover import (VIP, down_interval, holds, lacks, pair,  # noqa: F401
                                                 start_director, stats, stays, vrrp_config)

pytestmark = [pytest.mark.netns, pytest.mark.slow, pytest.mark.timeout(120)]

VIP2 = "192.0.2.102"


def hup_and_wait(lab, proc, expected: str, count: int):
    """SIGHUP, then wait for the count-th reload.* line carrying ``expected``."""
    proc.send_signal(signal.SIGHUP)
    wait_for(lambda: lab.log_of(proc).count(expected) >= count, 5,
             message=lambda: lab.log_of(proc))


def test_reload_adds_and_removes_instances_without_touching_the_others(lab, pair):  # noqa: F811
    _, a, b = pair
    one = vrrp_config(150)
    two = one + vrrp_config(150, vrid=52, name="VI_2", vips=(f"{VIP2}/24",))
    ours = start_director(lab, a, one, "ours")
    wait_for(holds(a), down_interval(150) + 1, message=lambda: lab.log_of(ours))
    peer = start_keepalived(b, vrrp_config(100))
    wait_for(lambda: "Entering BACKUP STATE" in lab.log_of(peer), 5,
             message=lambda: lab.log_of(peer))
    transitions = stats(lab, ours)["VI_1"]["transitions"]
    config = lab.tmp / "ours" / "keepalived.conf"

    config.write_text(two)                                   # add VI_2
    hup_and_wait(lab, ours, "reload.applied", 1)
    assert "1 kept, 1 added" in lab.log_of(ours)
    wait_for(holds(a, VIP2), down_interval(150) + 1, message=lambda: lab.log_of(ours))

    config.write_text(one)                                   # remove it again
    hup_and_wait(lab, ours, "reload.applied", 2)
    wait_for(lacks(a, VIP2), 3, message=lambda: lab.log_of(ours))
    assert "VI_2" not in stats(lab, ours)

    config.write_text(one + "vrrp_instance VI_3 {\n")         # broken: nothing changes
    hup_and_wait(lab, ours, "reload.failed", 1)

    # VI_1 never moved, and sent every advert: the peer never went MASTER
    assert stats(lab, ours)["VI_1"]["transitions"] == transitions
    stays(holds(a), 1.5, "ours lost the VIP")
    assert "Entering MASTER STATE" not in lab.log_of(peer)

    config.write_text(vrrp_config(90))                       # changed: it restarts, lower
    hup_and_wait(lab, ours, "reload.applied", 3)
    assert "1 changed" in lab.log_of(ours)
    wait_for(holds(b), down_interval(100) + 1, message=lambda: lab.log_of(peer))
    wait_for(lacks(a), 3, message=lambda: lab.log_of(ours))


def test_a_changed_track_script_is_run_as_changed(lab, pair):  # noqa: F811
    """The instance tracking a vrrp_script whose command changed restarts with the new
    command (not the old script's runner)."""
    _, a, _ = pair

    def config(command: str) -> str:
        script = (f'vrrp_script chk {{\n    script "{command}"\n    interval 1\n'
                  "    fall 1\n    rise 1\n}\n")
        return script + vrrp_config(150, extra="    track_script {\n        chk\n    }\n")

    ours = start_director(lab, a, config("/bin/true"), "ours")
    wait_for(holds(a), down_interval(150) + 1, message=lambda: lab.log_of(ours))
    (lab.tmp / "ours" / "keepalived.conf").write_text(config("/bin/false"))
    hup_and_wait(lab, ours, "reload.applied", 1)
    wait_for(lambda: "to=FAULT" in lab.log_of(ours), 5, message=lambda: lab.log_of(ours))
    wait_for(lacks(a), 3, message=lambda: lab.log_of(ours))


def test_a_reload_that_cannot_be_applied_fails_and_the_daemon_goes_on(lab, pair):  # noqa: F811
    """An instance on an interface this host lacks passes -t with a warning but cannot open
    its socket: the reload is refused before anything changes (the valid new instance beside
    it does not start either: one transaction), the rest keeps running."""
    _, a, _ = pair
    ours = start_director(lab, a, vrrp_config(150), "ours")
    wait_for(holds(a), down_interval(150) + 1, message=lambda: lab.log_of(ours))
    (lab.tmp / "ours" / "keepalived.conf").write_text(
        vrrp_config(150) + vrrp_config(150, vrid=52, name="VI_2", vips=("192.0.2.152/24",)) +
        vrrp_config(150, vrid=60, name="VI_9", interface="nope0", vips=("192.0.2.160/24",)))
    hup_and_wait(lab, ours, "reload.refused", 1)
    assert ours.poll() is None
    assert set(stats(lab, ours)) == {"VI_1", "dropped_by_interface"}
    assert "VI_2" not in lab.log_of(ours)
    stays(holds(a), 1.5, "the running instance lost its VIP")
    assert stats(lab, ours)["VI_1"]["transitions"] == {"INIT->BACKUP": 1, "BACKUP->MASTER": 1}
