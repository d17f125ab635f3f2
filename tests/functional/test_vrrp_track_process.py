"""track_process, track_file and sync-group tracking in network namespaces, against Debian's
keepalived 2.2.7 as the peer: a tracked process killed -> director's priority drops (weight)
or it goes FAULT (no weight) within the configured delay and keepalived takes the VIP;
restarted -> back. The tracked processes are ``sleep`` under a distinctive name (a symlink:
its name is the process's comm), started by the test and killed at its end.

director runs in a namespace here, where the kernel's process events cannot be had (the
proc connector lives in the initial network namespace only): it polls /proc, every 0.5 s.
test_process_events_in_the_initial_namespace covers the events themselves.

Bounds are deadlines: the delay + the poll period + the protocol's master-down interval
(keepalived's BACKUP ignores a lower-priority advert and waits its own down timer) + slack.
Both daemons speak VRRPv3 every 0.2 s (fast_config): what is tracked is the point here, and
each takeover then waits ~0.7 s, not VRRPv2's ~3.6 s.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from director.vrrp.process_monitor import POLL_PERIOD
from tests.functional.lab import start_keepalived
from tests.functional.test_vrrp_failover import (  # noqa: F401 (pair: a fixture)
    ROOT, fast_config, fast_down, holds, lacks, pair, stays, until)

pytestmark = [pytest.mark.netns, pytest.mark.slow, pytest.mark.timeout(180)]

SLACK = 1.5          # the two cores are shared with other runs: generous, these are deadlines


class Processes:
    """Processes under a distinctive name, each killed at the end of the test."""

    def __init__(self, folder) -> None:
        self.folder = folder
        self.running: list[subprocess.Popen] = []

    def name(self, tag: str) -> str:
        name = f"trk{os.getpid() % 100000}{tag}"[:15]      # comm keeps 15 characters
        path = self.folder / name
        if not path.exists():
            path.symlink_to("/bin/sleep")
        return name

    def start(self, tag: str) -> subprocess.Popen:
        proc = subprocess.Popen([str(self.folder / self.name(tag)), "600"])
        self.running.append(proc)
        return proc

    def kill(self, proc: subprocess.Popen) -> None:
        proc.kill()
        proc.wait(5)

    def close(self) -> None:
        for proc in self.running:
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)


@pytest.fixture
def processes(lab):
    procs = Processes(lab.tmp)
    try:
        yield procs
    finally:
        procs.close()


WEB = "127.0.0.1:8080"        # inside the director's own namespace
FETCH = ("import sys, urllib.request\n"
         "print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())")


def start_ours(lab, host, config_text: str):
    """start_director with its web face on, in its namespace."""
    folder = lab.tmp / "ours"
    folder.mkdir(exist_ok=True)
    (folder / "keepalived.conf").write_text(config_text)
    proc = host.popen([sys.executable, "-m", "director", "-f", str(folder / "keepalived.conf"),
                       "-P", "-l", "-n", "-D", "--web", WEB, "--state-dir",
                       str(folder / "state"), "-p", str(folder / "director.pid")],
                      log_path=str(folder / "log"), env=dict(os.environ, PYTHONPATH=str(ROOT)))
    proc.host = host
    return proc


def state(lab, proc) -> dict:
    """/api/v1/state, fetched inside the daemon's namespace; {} while it does not answer."""
    done = proc.host.run([sys.executable, "-c", FETCH, f"http://{WEB}/api/v1/state"],
                         check=False)
    return json.loads(done.stdout) if done.returncode == 0 else {}


def instance(lab, proc, name="VI_1") -> dict:
    instances = state(lab, proc).get("vrrp", {}).get("instances", [])
    return next((i for i in instances if i["name"] == name), {})


def test_weighted_process_ours_master_keepalived_backup(lab, pair, processes):
    """Kill -> priority 150-100 = 50 after terminate_delay -> keepalived (100) takes the VIP;
    restart -> 150 at once -> ours preempts. The API shows the process and its count."""
    _, a, b = pair
    name = processes.name("w")
    tracked = processes.start("w")
    delay = 2.0
    config = (f"vrrp_track_process app {{\n    process {name}\n    weight -100\n"
              f"    delay {delay}\n}}\n" +
              fast_config(150, extra="    track_process {\n        app\n    }\n"))
    ours = start_ours(lab, a, config)
    peer = start_keepalived(b, fast_config(100))
    until(holds(a), fast_down(150) + 3, lambda: f"ours never MASTER\n{lab.log_of(ours)}")
    view = instance(lab, ours)
    assert view["effective_priority"] == 150
    monitor = state(lab, ours)["vrrp"]["process_monitor"]
    assert monitor["mode"] == "polling" and monitor["period"] >= POLL_PERIOD
    assert view["tracking"][-1] == {"kind": "process", "name": "app", "weight": -100,
                                    "reverse": False, "status": True, "effect": 0,
                                    "running": 1, "quorum": "1"}
    processes.kill(tracked)
    killed = time.monotonic()
    stays(holds(a), delay - 0.3, "ours lost the VIP before terminate_delay ran out")
    until(holds(b), delay + POLL_PERIOD + fast_down(100) + SLACK,
          lambda: f"keepalived did not take over\n{lab.log_of(peer)}\n{lab.log_of(ours)}")
    assert time.monotonic() - killed >= delay - 0.3
    view = instance(lab, ours)
    assert (view["state"], view["effective_priority"]) == ("BACKUP", 50)
    assert view["tracking"][-1]["running"] == 0 and view["tracking"][-1]["effect"] == -100
    processes.start("w")
    until(holds(a), POLL_PERIOD + fast_down(150) + SLACK,
          lambda: f"ours did not take the VIP back\n{lab.log_of(ours)}")
    until(lacks(b), 2.0, lambda: f"keepalived kept the VIP\n{lab.log_of(peer)}")
    assert instance(lab, ours)["effective_priority"] == 150


def test_quorum_of_two_faults_ours_keepalived_master_meanwhile(lab, pair, processes):
    """No weight, quorum 2: one of two killed -> FAULT at once (no delay) and keepalived is
    MASTER; a second one again -> ours leaves FAULT and preempts."""
    _, a, b = pair
    name = processes.name("q")
    first, _ = processes.start("q"), processes.start("q")
    config = (f"vrrp_track_process pair {{\n    process {name}\n    quorum 2\n}}\n" +
              fast_config(200, extra="    track_process {\n        pair\n    }\n"))
    ours = start_ours(lab, a, config)
    peer = start_keepalived(b, fast_config(100))
    until(holds(a), fast_down(200) + 3, lambda: f"ours never MASTER\n{lab.log_of(ours)}")
    processes.kill(first)
    until(lambda: "to=FAULT" in lab.log_of(ours), POLL_PERIOD + SLACK,
          lambda: f"ours did not go FAULT\n{lab.log_of(ours)}")
    until(holds(b), fast_down(100) + SLACK,
          lambda: f"keepalived did not take over\n{lab.log_of(peer)}")
    assert not a.has_address("eth0", "192.0.2.100")
    view = instance(lab, ours)
    assert view["state"] == "FAULT" and view["faults"] == ["process pair"]
    assert view["tracking"][-1]["effect"] == "FAULT" and view["tracking"][-1]["running"] == 1
    processes.start("q")
    until(holds(a), POLL_PERIOD + fast_down(200) + SLACK,
          lambda: f"ours did not come back\n{lab.log_of(ours)}")
    until(lacks(b), 2.0, lambda: f"keepalived kept the VIP\n{lab.log_of(peer)}")


def test_positive_weight_lets_ours_preempt_keepalived(lab, pair, processes):
    """The reverse roles: keepalived MASTER at 150, ours BACKUP at 100 tracking a process
    with weight +100: it starts -> 200 -> ours preempts; it dies -> keepalived preempts."""
    _, a, b = pair
    name = processes.name("p")
    config = (f"vrrp_track_process standby {{\n    process {name}\n    weight 100\n}}\n" +
              fast_config(100, extra="    track_process {\n        standby\n    }\n"))
    peer = start_keepalived(b, fast_config(150))
    until(holds(b), fast_down(150) + 3, lambda: f"keepalived never MASTER\n{lab.log_of(peer)}")
    ours = start_ours(lab, a, config)
    until(lambda: "to=BACKUP" in lab.log_of(ours), 10, lambda: lab.log_of(ours))
    # at 200 it would preempt within its master down interval
    stays(lacks(a), fast_down(200) + 1.0,
          f"ours took the VIP without its process\n{lab.log_of(ours)}")
    tracked = processes.start("p")
    until(holds(a), POLL_PERIOD + fast_down(200) + SLACK,
          lambda: f"ours did not preempt\n{lab.log_of(ours)}")
    until(lacks(b), 2.0, lambda: f"keepalived kept the VIP\n{lab.log_of(peer)}")
    processes.kill(tracked)
    until(holds(b), POLL_PERIOD + fast_down(150) + SLACK,
          lambda: f"keepalived did not preempt back\n{lab.log_of(peer)}\n{lab.log_of(ours)}")


def test_track_file_value_times_weight(lab, pair):
    """A number in a file x weight -1: 60 -> priority 90 < keepalived's 100 -> keepalived
    takes over; 0 -> back to 150; 254 -> FAULT."""
    _, a, b = pair
    path = lab.tmp / "maintenance"
    config = (f"track_file maintenance {{\n    file {path}\n    weight -1\n    init_file 0\n}}\n"
              + fast_config(150, extra="    track_file {\n        maintenance\n    }\n"))
    ours = start_ours(lab, a, config)
    peer = start_keepalived(b, fast_config(100))
    until(holds(a), fast_down(150) + 3, lambda: f"ours never MASTER\n{lab.log_of(ours)}")
    assert path.read_text() == "0\n"                            # init_file wrote it
    path.write_text("60\n")
    until(holds(b), fast_down(100) + SLACK,
          lambda: f"keepalived did not take over\n{lab.log_of(peer)}\n{lab.log_of(ours)}")
    view = instance(lab, ours)
    assert view["effective_priority"] == 90
    assert view["tracking"][-1] == {"kind": "file", "name": "maintenance", "weight": -1,
                                    "reverse": False, "status": 60, "effect": -60,
                                    "path": str(path)}
    path.write_text("0\n")
    until(holds(a), fast_down(150) + SLACK, lambda: f"ours did not preempt\n{lab.log_of(ours)}")
    path.write_text("254\n")
    until(lambda: instance(lab, ours)["state"] == "FAULT", 2.0,
          lambda: f"254 x -1 is not FAULT\n{lab.log_of(ours)}")
    until(holds(b), fast_down(100) + SLACK, lambda: f"no takeover\n{lab.log_of(peer)}")


def test_sync_group_process_moves_the_whole_group(lab, processes):
    """A sync group's track_process (no weight): killed -> both members FAULT -> keepalived,
    with the same sync group, takes both VIPs; restarted -> ours takes both back."""
    outside, inside = lab.switch("out"), lab.switch("in")
    a = lab.host("a", [(outside, "eth0", ["192.0.2.1/24"]), (inside, "eth1", ["198.51.100.1/24"])])
    b = lab.host("b", [(outside, "eth0", ["192.0.2.2/24"]), (inside, "eth1", ["198.51.100.2/24"])])
    name = processes.name("g")
    tracked = processes.start("g")

    def config(priority, tracking=""):
        return ("vrrp_sync_group VG1 {\n    group {\n        VI_1\n        VI_2\n    }\n"
                f"{tracking}}}\n" + fast_config(priority) +
                fast_config(priority, vrid=52, interface="eth1", name="VI_2",
                            vips=("198.51.100.254/24",)))

    ours = start_ours(lab, a, f"vrrp_track_process app {{\n    process {name}\n}}\n" +
                      config(150, "    track_process {\n        app\n    }\n"))
    peer = start_keepalived(b, config(100))
    until(lambda: holds(a)() and holds(a, "198.51.100.254", "eth1")(), fast_down(150) + 3,
          lambda: f"ours never MASTER of both\n{lab.log_of(ours)}")
    group = state(lab, ours)["vrrp"]["sync_groups"][0]
    assert group["tracking"] == [{"kind": "process", "name": "app", "weight": 0,
                                  "reverse": False, "status": True, "effect": 0,
                                  "running": 1, "quorum": "1"}]
    processes.kill(tracked)
    until(lambda: holds(b)() and holds(b, "198.51.100.254", "eth1")(),
          POLL_PERIOD + fast_down(100) + SLACK,
          lambda: f"keepalived did not take both\n{lab.log_of(peer)}\n{lab.log_of(ours)}")
    assert {i["state"] for i in state(lab, ours)["vrrp"]["instances"]} == {"FAULT"}
    processes.start("g")
    until(lambda: holds(a)() and holds(a, "198.51.100.254", "eth1")(),
          POLL_PERIOD + fast_down(150) + SLACK,
          lambda: f"ours did not take both back\n{lab.log_of(ours)}")


def test_a_reload_applies_a_changed_track_process(lab, pair, processes):
    """HUP with the process's weight changed: the instance runs on the new weight (the
    reload plan counts the definitions an instance tracks); HUP with the same file changes
    nothing (no transition, the count kept)."""
    _, a, _ = pair
    name = processes.name("r")

    def text(weight):
        return (f"vrrp_track_process app {{\n    process {name}\n    weight {weight}\n}}\n" +
                fast_config(150, extra="    track_process {\n        app\n    }\n"))

    ours = start_ours(lab, a, text(-20))
    until(lambda: instance(lab, ours).get("effective_priority") == 130, 10,
          lambda: f"not 150-20 without the process\n{lab.log_of(ours)}")
    (lab.tmp / "ours" / "keepalived.conf").write_text(text(-60))
    ours.send_signal(signal.SIGHUP)
    until(lambda: instance(lab, ours).get("effective_priority") == 90, 10,
          lambda: f"the reload did not apply weight -60\n{lab.log_of(ours)}")
    assert "changed=1" in lab.log_of(ours)
    processes.start("r")
    until(lambda: instance(lab, ours).get("effective_priority") == 150, POLL_PERIOD + SLACK,
          lambda: f"the process was not seen after the reload\n{lab.log_of(ours)}")
    transitions = lab.log_of(ours).count("vrrp.transition")
    ours.send_signal(signal.SIGHUP)
    until(lambda: "reload.unchanged" in lab.log_of(ours), 10, lambda: lab.log_of(ours))
    assert lab.log_of(ours).count("vrrp.transition") == transitions
    assert instance(lab, ours)["tracking"][-1]["running"] == 1
