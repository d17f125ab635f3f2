"""Reload (SIGHUP) of VRRP in a running daemon, with Debian's keepalived as its BACKUP peer:
adding and removing an instance touches nothing else (the untouched instance makes no
transition and misses no advert: the peer never takes over), a changed instance that is
still the same router keeps its role as in keepalived (a MASTER never lets its VIP go, its
peer never hears priority 0), and a broken file leaves everything running with the failure
counted."""

from __future__ import annotations

import signal
import threading
import time

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

    # changed, lower than the peer: MASTER still (keepalived's restore_vrrp_state), and
    # the peer preempts by the RFC's rules, never told priority 0
    config.write_text(vrrp_config(90))
    hup_and_wait(lab, ours, "reload.applied", 3)
    assert "1 changed" in lab.log_of(ours)
    wait_for(holds(b), down_interval(100) + 1, message=lambda: lab.log_of(peer))
    wait_for(lacks(a), 3, message=lambda: lab.log_of(ours))
    assert "priority 0" not in lab.log_of(peer), lab.log_of(peer)


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


VIP3 = "192.0.2.103"
STARTUP = 15         # seconds a daemon may take to start on a busy host (python imports)


class Watch:
    """Polls (every 10 ms plus two `ip` runs, in a thread, bounded) who holds each address, and listens to
    ``ip monitor address`` on both hosts: a VIP removed and added back between two polls
    still shows as a Deleted line."""

    def __init__(self, lab, hosts: dict, addresses: tuple[str, ...], limit: float = 90):
        self.hosts, self.addresses, self.limit = hosts, addresses, limit
        self.samples: list[tuple[float, str, str, bool]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._poll, daemon=True)
        self.monitors = {name: host.popen(["ip", "monitor", "address"]) for name, host in
                         hosts.items()}
        self.lab = lab

    def _poll(self) -> None:
        end = time.monotonic() + self.limit
        while not self.stop.is_set() and time.monotonic() < end:
            for name, host in self.hosts.items():
                held = {a.split("/")[0] for a in host.addresses("eth0")}
                for address in self.addresses:
                    self.samples.append((time.monotonic(), name, address, address in held))
            self.stop.wait(0.01)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(5)

    def held(self, name: str, address: str) -> list[bool]:
        return [held for _, host, vip, held in self.samples if host == name and vip == address]

    def deleted(self, name: str, address: str) -> list[str]:
        return [line for line in self.lab.log_of(self.monitors[name]).splitlines()
                if line.startswith("Deleted") and f" {address}/" in line]


def test_a_reloaded_master_keeps_its_vip_while_its_priority_and_vips_change(lab, pair):  # noqa: F811
    """keepalived's restore_vrrp_state: a MASTER whose priority changes (up, then down but
    above its peer) and which gains one VIP and loses another never lets go of the VIP it
    keeps: it is on our host at every poll and never deleted, the keepalived peer never
    hears priority 0 nor takes it; the added VIP comes, the removed one goes; no
    transition."""
    _, a, b = pair

    def ours_with(priority: int, other: str) -> str:
        # the other VIP is an excluded one: keepalived drops adverts whose address list is
        # not its own, and the peer's file does not change here
        return vrrp_config(priority, extra=f"    virtual_ipaddress_excluded {{\n"
                                           f"        {other}/24\n    }}\n")

    ours = start_director(lab, a, ours_with(150, VIP3), "ours")
    wait_for(holds(a), down_interval(150) + STARTUP, message=lambda: lab.log_of(ours))
    wait_for(holds(a, VIP3), 3, message=lambda: lab.log_of(ours))
    peer = start_keepalived(b, vrrp_config(100))
    wait_for(lambda: "Entering BACKUP STATE" in lab.log_of(peer), STARTUP,
             message=lambda: lab.log_of(peer))
    transitions = stats(lab, ours)["VI_1"]["transitions"]
    config = lab.tmp / "ours" / "keepalived.conf"
    both = (VIP, VIP2, VIP3)

    with Watch(lab, {"a": a, "b": b}, both) as watch:
        time.sleep(0.2)                        # a few samples before: the poller works
        started = time.monotonic()
        config.write_text(ours_with(200, VIP2))
        hup_and_wait(lab, ours, "reload.applied", 1)
        wait_for(holds(a, VIP2), 3, message=lambda: lab.log_of(ours))
        wait_for(lacks(a, VIP3), 3, message=lambda: lab.log_of(ours))
        print(f"VIP2 added, VIP3 removed {time.monotonic() - started:.3f} s after the HUP")
        config.write_text(ours_with(120, VIP2))
        hup_and_wait(lab, ours, "reload.applied", 2)
        # the peer's master down interval passes: had it heard priority 0 (or missed our
        # adverts), it would have taken over by now
        stays(holds(a), down_interval(100) + 0.5, f"ours lost the VIP\n{lab.log_of(ours)}")
    print(f"{len(watch.held('a', VIP))} polls of each host over "
          f"{watch.samples[-1][0] - watch.samples[0][0]:.1f} s")

    assert watch.held("a", VIP) and all(watch.held("a", VIP)), lab.log_of(ours)
    assert not any(watch.held("b", VIP)), lab.log_of(peer)
    assert watch.deleted("a", VIP) == [], lab.log_of(ours)
    assert watch.deleted("a", VIP3), "the removed VIP went: ip monitor saw it"
    assert "priority 0" not in lab.log_of(peer), lab.log_of(peer)
    assert "Entering MASTER STATE" not in lab.log_of(peer), lab.log_of(peer)
    assert stats(lab, ours)["VI_1"]["transitions"] == transitions
    assert lab.log_of(ours).count("kept=True") == 2, lab.log_of(ours)
    assert "role=MASTER" in lab.log_of(ours)


def test_a_sync_group_whose_member_changed_stays_master(lab, pair):  # noqa: F811
    """A sync group of two MASTERs; a reload changes one member's priority (the group is
    rebuilt around it): both keep their role and their VIP throughout, the keepalived peer
    (the same group, lower) never takes over nor hears priority 0; no transition."""
    _, a, b = pair

    def config(priority: int, first: int | None = None) -> str:
        return ("vrrp_sync_group VG1 {\n    group {\n        VI_1\n        VI_2\n    }\n}\n" +
                vrrp_config(first or priority) +
                vrrp_config(priority, vrid=52, name="VI_2", vips=(f"{VIP2}/24",)))

    ours = start_director(lab, a, config(150), "ours")
    wait_for(lambda: a.has_address("eth0", VIP) and a.has_address("eth0", VIP2),
             down_interval(150) + STARTUP, message=lambda: lab.log_of(ours))
    peer = start_keepalived(b, config(100))
    wait_for(lambda: lab.log_of(peer).count("Entering BACKUP STATE") >= 2, STARTUP,
             message=lambda: lab.log_of(peer))
    before = stats(lab, ours)
    with Watch(lab, {"a": a, "b": b}, (VIP, VIP2)) as watch:
        time.sleep(0.2)
        (lab.tmp / "ours" / "keepalived.conf").write_text(config(150, first=170))
        hup_and_wait(lab, ours, "reload.applied", 1)
        stays(lambda: a.has_address("eth0", VIP) and a.has_address("eth0", VIP2),
              down_interval(100) + 0.5, f"ours lost a VIP\n{lab.log_of(ours)}")
    after = stats(lab, ours)
    for vip in (VIP, VIP2):
        assert watch.held("a", vip) and all(watch.held("a", vip)), lab.log_of(ours)
        assert not any(watch.held("b", vip)), lab.log_of(peer)
        assert watch.deleted("a", vip) == [], lab.log_of(ours)
    assert "priority 0" not in lab.log_of(peer), lab.log_of(peer)
    assert "Entering MASTER STATE" not in lab.log_of(peer), lab.log_of(peer)
    for name in ("VI_1", "VI_2"):
        assert after[name]["transitions"] == before[name]["transitions"], lab.log_of(ours)
    assert "vrrp.reloaded instance=VI_1 role=MASTER kept=True" in lab.log_of(ours)


def test_a_reloaded_backup_stays_backup(lab, pair):  # noqa: F811
    """A BACKUP under a keepalived MASTER, reloaded with a higher priority (still lower) and
    another VIP: it stays BACKUP with no transition (it once went STOP, INIT, BACKUP) and
    takes nothing; the keepalived MASTER is undisturbed."""
    _, a, b = pair
    peer = start_keepalived(b, vrrp_config(150))
    wait_for(holds(b), down_interval(150) + STARTUP, message=lambda: lab.log_of(peer))
    ours = start_director(lab, a, vrrp_config(100), "ours")
    wait_for(lambda: "to=BACKUP" in lab.log_of(ours), STARTUP, message=lambda: lab.log_of(ours))
    before = stats(lab, ours)["VI_1"]["transitions"]
    logged = lab.log_of(ours).count("vrrp.transition")
    (lab.tmp / "ours" / "keepalived.conf").write_text(
        vrrp_config(120, extra=f"    virtual_ipaddress_excluded {{\n        {VIP2}/24\n    }}\n"))
    hup_and_wait(lab, ours, "reload.applied", 1)
    stays(lambda: b.has_address("eth0", VIP) and not a.has_address("eth0", VIP) and
          not a.has_address("eth0", VIP2), down_interval(120) + 0.5, lab.log_of(ours))
    assert lab.log_of(ours).count("vrrp.transition") == logged, lab.log_of(ours)
    assert stats(lab, ours)["VI_1"]["transitions"] == before, lab.log_of(ours)  # carried
    assert lab.log_of(peer).count("Entering MASTER STATE") == 1, lab.log_of(peer)
    assert "vrrp.reloaded instance=VI_1 role=BACKUP kept=True" in lab.log_of(ours), \
        lab.log_of(ours)
