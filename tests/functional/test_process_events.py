"""track_process on the kernel's process events (the proc connector), which exist only in the
initial network namespace: the monitor runs there, in a child process under gevent as in the
daemon, tracking ``sleep`` under a distinctive name. No network is touched.

Two processes make quorum 2; one killed loses it only after terminate_delay; a new one
restores it. process_monitor_rcv_bufs_force sets the socket's buffer past rmem_max. The namespace tests (test_vrrp_track_process.py) cover the /proc polling."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time

import pytest

from tests.functional.test_vrrp_failover import ROOT
from tests.functional.test_vrrp_track_process import Processes

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120),
              pytest.mark.skipif(os.geteuid() != 0, reason="the proc connector needs root")]

MONITOR = """
from gevent import monkey; monkey.patch_all()
import json, socket, sys, time
from director import hub
from director.clock import MonotonicClock
from director.vrrp.process_monitor import ProcessMonitor
from director.vrrp.process_tracking import ProcessSpec

monitor = ProcessMonitor(MonotonicClock())
monitor.configure([ProcessSpec("app", sys.argv[1], quorum=2, terminate_delay=1.0)])
monitor.set_buffer(1 << 20, True)      # global_defs process_monitor_rcv_bufs(_force)
monitor.start()
def said(name, up):
    print(json.dumps({"up": up, "running": monitor.quorums[name].count,
                      "at": time.monotonic()}), flush=True)
monitor.subscribe("app", said)
rcvbuf = monitor.sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) if monitor.sock else 0
print(json.dumps({"mode": monitor.mode, "rcvbuf": rcvbuf}), flush=True)
hub.sleep(100)
"""


class Lines:
    """The monitor's lines, read by a thread (a select on a buffered pipe misses lines that
    arrived together)."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.proc = proc
        self.queue: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.queue.put(line)

    def next(self, timeout: float) -> dict:
        try:
            return json.loads(self.queue.get(timeout=timeout))
        except queue.Empty:
            raise AssertionError(f"nothing from the monitor in {timeout} s") from None


def test_process_events_quorum_and_terminate_delay(tmp_path):
    processes = Processes(tmp_path)
    name = processes.name("e")
    monitor = subprocess.Popen([sys.executable, "-c", MONITOR, name], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, cwd=ROOT,
                               env=dict(os.environ, PYTHONPATH=str(ROOT)))
    try:
        lines = Lines(monitor)
        assert lines.next(30) == {"up": False, "running": 0, "at": pytest.approx(0, abs=1e9)}
        mode = lines.next(10)
        if mode["mode"] != "events":
            pytest.skip("no process events here (not the initial network namespace, or a "
                        "kernel without CONFIG_PROC_EVENTS)")
        assert mode["rcvbuf"] == 2 << 20        # the kernel doubles what it is given
        first = processes.start("e")
        processes.start("e")
        up = lines.next(10)
        assert (up["up"], up["running"]) == (True, 2)
        killing = time.monotonic()
        processes.kill(first)
        down = lines.next(10)
        assert (down["up"], down["running"]) == (False, 1)
        assert down["at"] - killing >= 1.0, \
            f"quorum lost before terminate_delay: {down}, {up}, killed at {killing}"
        processes.start("e")
        assert lines.next(10) == {"up": True, "running": 2, "at": pytest.approx(0, abs=1e9)}
    finally:
        monitor.kill()
        monitor.wait(5)
        processes.close()
