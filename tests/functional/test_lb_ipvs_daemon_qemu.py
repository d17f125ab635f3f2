"""The daemon on --backend ipvs in the qemu guest, a real server stopped and started again
(tests/qemu/daemon_ipvs_case.sh). Written first as the reproduction of a load-balancer loop
that died on pyroute2's NetlinkError(104) and left the dead server in the pool."""

from __future__ import annotations

import pytest

# The guest run is job "daemon" of tests/qemu/jobs.py, run in the background of the other tests.
pytestmark = [pytest.mark.qemu, pytest.mark.slow, pytest.mark.qemu_job("daemon")]


@pytest.fixture(scope="module")
def guest_files(qemu_jobs) -> dict:
    result = qemu_jobs.result("daemon")
    files = dict(result.files)
    log = files.get("daemon.log", "")
    assert result.rc == 0, (result.stderr[-2000:], log[-4000:], result.console[-2000:])
    print(f"guest run: {result.seconds:.1f} s")
    return files


def test_a_stopped_server_leaves_the_pool_and_comes_back(guest_files):
    assert "127.0.0.3:8002" in guest_files["started"]
    assert "127.0.0.3:8002" not in guest_files["stopped"]
    assert "127.0.0.2:8001" in guest_files["stopped"]
    assert "127.0.0.3:8002" in guest_files["restarted"], guest_files["daemon.log"][-3000:]
    assert "127.0.0.2:8001" in guest_files["repaired"], guest_files["daemon.log"][-3000:]


def test_the_load_balancer_loop_never_died(guest_files):
    log = guest_files["daemon.log"]
    assert "hub.crash" not in log and "NetlinkError" not in log, log[-3000:]
    status, _, body = guest_files["healthz"].partition("\n")
    assert status == "200" and body.startswith("ok"), guest_files["healthz"]
    metrics = guest_files["metrics"]
    assert "director_greenlet_crashes_total" in metrics
    assert 'director_greenlet_crashes_total{greenlet="load balancer"}' not in metrics
    assert "director_lb_errors_total" in metrics


def test_the_daemon_stops_cleanly(guest_files):
    assert guest_files["daemon_rc"].strip() == "0", guest_files["daemon.log"][-2000:]
