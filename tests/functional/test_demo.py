"""The README's first command, ``scripts/demo``: the namespace lab comes up with the MASTER's
dashboard on the host's loopback and traffic through the VIP; SIGTERM removes every
namespace and process it made. Its observe-only fallback serves the same dashboard."""

from __future__ import annotations

import collections
import json
import os
import re
import signal
import subprocess
import urllib.request
from pathlib import Path

import pytest

from tests.functional.lab import netns_unavailable, wait_for
from tests.functional.test_web_daemon import free_port

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

ROOT = Path(__file__).resolve().parents[2]


def start(tmp_path, *args: str):
    out = tmp_path / "demo.out"
    proc = subprocess.Popen([str(ROOT / "scripts" / "demo"), *args], cwd=ROOT,
                            stdout=open(out, "w"), stderr=subprocess.STDOUT,
                            start_new_session=True)
    wait_for(lambda: "\nready" in out.read_text() or proc.poll() is not None, 120,
             interval=0.2, message=lambda: out.read_text())
    assert proc.poll() is None, out.read_text()
    return proc, out


def state(port: int) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/state", timeout=5) as answer:
        return json.load(answer)


def all_up(port: int) -> bool:
    reals = state(port)["virtual_servers"][0]["real_servers"]
    return len(reals) == 3 and all(real["up"] for real in reals)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def stop(proc, out) -> None:
    """SIGTERM to the demo alone (scripts/demo execs it), as `timeout` or systemd send it."""
    proc.send_signal(signal.SIGTERM)
    try:
        assert proc.wait(30) == 0, out.read_text()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


@pytest.mark.netns
def test_the_demo_lab_serves_the_masters_dashboard_and_cleans_up(tmp_path):
    if netns_unavailable():
        pytest.skip(f"network namespaces unavailable: {netns_unavailable()}")
    port = free_port()
    proc, out = start(tmp_path, "--port", str(port))
    try:
        text = out.read_text()
        client = re.search(r"ip netns exec (\S+-client) curl", text).group(1)
        lab_id = client.rsplit("-", 1)[0]
        pids = [int(pid) for pid in re.findall(r"sudo kill (\d+)", text)]
        first = state(port)
        assert first["router_id"] == "director-lb1"
        assert {i["name"]: i["state"] for i in first["vrrp"]["instances"]} == {
            "VI_1": "MASTER", "VI_GATEWAY": "MASTER"}
        wait_for(lambda: all_up(port), 20, interval=0.2, message=lambda: state(port))
        if first["backend"] == "nftables":
            bodies = collections.Counter(
                subprocess.run(["ip", "netns", "exec", client, "curl", "-s", "-m", "3",
                                "http://192.168.1.11/"], capture_output=True, text=True,
                               timeout=10).stdout.strip() for _ in range(8))
            assert set(bodies) == {"rs1", "rs2", "rs3"}, bodies       # wrr 1:1:2
    finally:
        stop(proc, out)
    left = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert lab_id not in left, left
    assert not [pid for pid in pids if alive(pid)]
    assert "tearing the lab down" in out.read_text()


def test_the_observe_only_demo_serves_the_same_dashboard(tmp_path):
    port = free_port()
    proc, out = start(tmp_path, "--observe-only", "--port", str(port))
    try:
        (pid,) = [int(p) for p in re.findall(r"kill (\d+)", out.read_text())]
        wait_for(lambda: all_up(port), 20, interval=0.2, message=lambda: state(port))
        assert state(port)["backend"] == "none"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as answer:
            assert b"director-demo" in answer.read()
    finally:
        stop(proc, out)
    assert not alive(pid)
