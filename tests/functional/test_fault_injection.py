"""Faults an operator meets, injected into a lab: the MASTER's link flapping ten times in
five seconds ends with exactly one MASTER; a real server flapping every second, checked
with rise and alpha, is never put in the pool; fifty SIGHUPs in a row under check load,
each after the file changed a weight, apply the last file and change nothing else (no VRRP
transition, no real server flap, the daemon healthy)."""

from __future__ import annotations

import json
import signal
import socket
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.functional.lab import wait_for
from tests.functional.test_vrrp_failover import (VIP, down_interval, holds, lacks, pair,  # noqa: F401
                                                 start_director, stats, stays, vrrp_config)

pytestmark = [pytest.mark.netns, pytest.mark.slow, pytest.mark.timeout(150)]

ROOT = Path(__file__).resolve().parents[2]
STARTUP = 5          # seconds a daemon may take to start on a busy host (python imports, and
                     # here 200 real servers' checkers): the first MASTER is not the point


def test_link_flapping_on_the_master_ends_with_one_master(lab, pair):  # noqa: F811
    _, a, b = pair
    high = start_director(lab, a, vrrp_config(150), "high")
    wait_for(holds(a), down_interval(150) + STARTUP, message=lambda: lab.log_of(high))
    low = start_director(lab, b, vrrp_config(100), "low")
    wait_for(lambda: "to=BACKUP" in lab.log_of(low), 5, message=lambda: lab.log_of(low))
    for flap in range(10):                                   # ten flaps in five seconds
        a.link("eth0", False)
        time.sleep(0.25)                                     # the fault's own rhythm
        a.link("eth0", True)
        time.sleep(0.25)
    # settles on the higher priority, once; then stays so
    wait_for(lambda: a.has_address("eth0", VIP) and not b.has_address("eth0", VIP),
             down_interval(100) + 3,
             message=lambda: f"{lab.log_of(high)}\n{lab.log_of(low)}")
    stays(lambda: a.has_address("eth0", VIP) and not b.has_address("eth0", VIP), 3,
          "more or less than one MASTER after the flaps")
    assert stats(lab, high)["VI_1"]["transitions"].get("FAULT->BACKUP", 0) >= 1


class FlappingServer:
    """A TCP listener on 127.0.0.1 in the test's own namespace that is there one second and
    gone the next, for a bounded number of flaps."""

    def __init__(self, flaps: int, period: float = 1.0):
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.port = probe.getsockname()[1]
        probe.close()
        self.flaps, self.period = flaps, period
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        for _ in range(self.flaps):
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", self.port))
            sock.listen(64)
            time.sleep(self.period)                          # up for a period ...
            sock.close()
            time.sleep(self.period)                          # ... down for the next
        self.done.set()


def test_a_flapping_server_with_rise_and_alpha_never_joins(tmp_path):
    from tests.functional.test_web_daemon import Daemon, free_port  # noqa: F401
    flapping = FlappingServer(flaps=5)
    steady = socket.socket()
    steady.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    steady.bind(("127.0.0.1", 0))
    steady.listen(64)
    daemon = Daemon(tmp_path, [flapping.port, steady.getsockname()[1]])
    daemon.config.write_text(daemon.config.read_text().replace(
        "    delay_loop 1\n", "    delay_loop 0.5\n    alpha\n").replace(
        "            retry 1\n", "            retry 0\n            rise 3\n"))
    flapping.thread.start()
    daemon.start()
    try:
        wait_for(flapping.done.is_set, 15, message="the flapping server did not finish")
        events = [e for e in daemon.get("/api/v1/events") if e["kind"] == "real_server"
                  and e["real_server"] == f"127.0.0.1:{flapping.port}"]
        # checked every 0.5 s, it passed at most two checks in a row: never three (rise)
        assert events == [], events
        assert daemon.reals()[flapping.port]["up"] is False
        assert daemon.reals()[flapping.port]["checks"]["ok"] >= 3     # it did pass some
        assert daemon.reals()[steady.getsockname()[1]]["up"] is True   # alpha, then rise 3
    finally:
        daemon.stop()
        steady.close()


def first_weight(lab, proc) -> int | None:
    """The configured weight of the first real server, from a state dump (USR1)."""
    dump = proc.state_dir / "director.data"
    if dump.exists():
        dump.unlink()
    proc.send_signal(signal.SIGUSR1)
    wait_for(dump.exists, 5, message=lambda: lab.log_of(proc))
    return json.loads(dump.read_text())["virtual_servers"][0]["real_servers"][0][
        "configured_weight"]


def test_fifty_hups_under_check_load_change_nothing(lab, pair):  # noqa: F811
    _, a, b = pair
    listener = a.popen([sys.executable, "-c", (
        "import socket, time\n"
        "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
        "s.bind(('127.0.0.1', 9000)); s.listen(4096)\n"
        "while True:\n    c, _ = s.accept(); c.close()\n")])
    wait_for(lambda: ":9000" in a.run(["ss", "-Hltn"]).stdout, 10,
             message=lambda: lab.log_of(listener))

    def reals(weight: int) -> str:
        return "".join(f"""    real_server 127.0.{n // 250}.{n % 250 + 1} 9000 {{
        weight {weight if n == 0 else 1}
        TCP_CHECK {{
            connect_timeout 1
        }}
    }}
""" for n in range(200))

    def config(weight: int) -> str:
        return vrrp_config(150) + (f"virtual_server 192.0.2.100 80 {{\n    delay_loop 1\n"
                                   f"    protocol TCP\n{reals(weight)}}}\n")

    ours = start_director(lab, a, config(1), "ours", mode=())
    peer = start_director(lab, b, vrrp_config(100), "peer")
    wait_for(holds(a), down_interval(150) + STARTUP, message=lambda: lab.log_of(ours))
    wait_for(lambda: "check.started jobs=200" in lab.log_of(ours), 5,
             message=lambda: lab.log_of(ours))
    # the 199 servers nobody listens for go down over the first checks: the baseline is
    # taken once they have (taken earlier, it failed a run in four on a busy host)
    wait_for(lambda: lab.log_of(ours).count("state=down") >= 199, 20,
             message=lambda: lab.log_of(ours)[-3000:])
    transitions = stats(lab, ours)["VI_1"]["transitions"]
    flaps_before = lab.log_of(ours).count("check.real_server")
    # The peer may have been MASTER until ours came up (a slow start under load): only what
    # follows the HUPs is this test's business.
    peer_log_before = len(lab.log_of(peer))
    path = lab.tmp / "ours" / "keepalived.conf"
    for number in range(1, 51):               # a burst: each HUP after its own change
        path.with_suffix(".tmp").write_text(config(1 + number % 7))
        path.with_suffix(".tmp").rename(path)   # as a config manager writes: atomically
        ours.send_signal(signal.SIGHUP)
    # The kernel merges a pending signal with the next of its kind, and the daemon merges
    # queued reloads: the burst ends in fewer reloads, the last of them reading the last file.
    wait_for(lambda: first_weight(lab, ours) == 1 + 50 % 7, 20,
             message=lambda: lab.log_of(ours)[-3000:])
    stays(holds(a), 3, "ours lost the VIP after the HUPs")
    assert stats(lab, ours)["VI_1"]["transitions"] == transitions
    assert lab.log_of(ours).count("check.real_server") == flaps_before
    assert "to=MASTER" not in lab.log_of(peer)[peer_log_before:]
    assert ours.poll() is None and "hub.crash" not in lab.log_of(ours)
    assert lab.log_of(ours).count("reload.failed") == 0
    assert lab.log_of(ours).count("reload.applied") >= 1
    assert lacks(b)()
    # and a graceful stop under that load: exit 0 within 2 s, VIP and pid file gone
    pid_file = ours.state_dir.parent / "director.pid"
    assert pid_file.exists()
    started = time.monotonic()
    ours.send_signal(signal.SIGTERM)
    assert ours.wait(5) == 0
    assert time.monotonic() - started <= 2.0, lab.log_of(ours)
    assert lacks(a)() and not pid_file.exists()
