"""Reloads that go wrong, on a running ``director -C`` (checks on loopback servers, backend
none): the file gone, a directory, an empty file, a checker changed on a dead server; and the
pid lock that outlives its file. After each the daemon runs, the result is counted, and
nothing dead came back to life."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from tests.functional.lab import wait_for
from tests.functional.test_check_daemon import listen
from tests.functional.test_web_daemon import ROOT, config_text, daemon, servers  # noqa: F401

pytestmark = [pytest.mark.slow, pytest.mark.timeout(90)]


def reload_by_hup(daemon) -> dict:  # noqa: F811
    """HUP, then the reload's outcome as /api/v1/state shows it (waits for the event)."""
    before = len(daemon.get("/api/v1/events"))
    daemon.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: any(e["kind"] == "reload" for e in daemon.get("/api/v1/events")[before:]),
             10, message=daemon.log)
    return daemon.get("/api/v1/state")["reload"]


def failures(daemon) -> str:  # noqa: F811
    return next(line for line in daemon.get("/metrics").splitlines()
                if line.startswith('director_config_reloads_total{result="failure"}'))


def test_a_hup_with_the_file_gone_keeps_the_daemon_running(daemon, servers):  # noqa: F811
    """A config manager that replaces the file with rm + write: the HUP in between fails,
    is counted, and the daemon goes on with what it ran."""
    before = daemon.reals()
    moved = daemon.config.with_name("moved.conf")
    daemon.config.rename(moved)
    status = reload_by_hup(daemon)
    assert daemon.proc.poll() is None, daemon.log()
    assert status["result"] == "failure" and "No such file" in status["errors"][0], status
    assert failures(daemon).endswith(" 1.0")
    assert daemon.status("/healthz") == 200
    assert daemon.reals().keys() == before.keys()
    assert "Traceback" not in daemon.log()
    moved.rename(daemon.config)
    assert reload_by_hup(daemon)["result"] == "success"


def test_the_api_reload_of_a_missing_file_or_a_directory_answers_and_counts(
        daemon, servers):  # noqa: F811
    daemon.config.rename(daemon.config.with_name("moved.conf"))
    status, answer = daemon.post("/api/v1/reload")
    assert status == 200 and answer["result"] == "failure", (status, answer)
    assert "No such file" in answer["errors"][0]
    daemon.config.mkdir()
    status, answer = daemon.post("/api/v1/reload")
    assert status == 200 and answer["result"] == "failure", (status, answer)
    assert "directory" in answer["errors"][0].lower(), answer
    assert failures(daemon).endswith(" 2.0")
    assert daemon.proc.poll() is None and daemon.status("/healthz") == 200


def test_a_fifo_in_place_of_the_file_does_not_hang_the_daemon(daemon, servers):  # noqa: F811
    """Opening a FIFO for reading waits for a writer: the reload must refuse what is not a
    regular file instead of waiting forever."""
    daemon.config.unlink()
    os.mkfifo(daemon.config)
    status = reload_by_hup(daemon)
    assert status["result"] == "failure" and "regular file" in status["errors"][0], status
    assert daemon.status("/healthz") == 200


def test_an_empty_file_is_applied_and_says_it_removed_everything(daemon, servers):  # noqa: F811
    daemon.config.write_text("")
    status = reload_by_hup(daemon)
    assert status["result"] == "success", status
    assert "removes every" in status["note"], status
    assert daemon.get("/api/v1/state")["virtual_servers"] == []


def test_a_dead_server_whose_checker_changed_stays_down_after_a_reload(
        daemon, servers):  # noqa: F811
    """keepalived migrates a checker's state across a reload: a changed connect_timeout on
    a dead server must not bring it back (up, in the pool) with no event."""
    dead, alive = (sock.getsockname()[1] for sock in servers)
    wait_for(lambda: all(r["last_check"] for r in daemon.reals().values()), 5,
             message=daemon.log)
    servers[0].close()
    wait_for(lambda: daemon.reals()[dead]["up"] is False, 5, message=daemon.log)
    assert daemon.reals()[dead]["desired_weight"] in (None, 0)
    daemon.config.write_text(config_text([dead, alive]).replace(
        "connect_timeout 0.5", "connect_timeout 0.6", 1))
    status = reload_by_hup(daemon)
    assert status["result"] == "success" and "1 changed" in status["note"], status
    end = time.monotonic() + 2.5                       # two delay_loops and more
    while time.monotonic() < end:
        real = daemon.reals()[dead]
        assert real["up"] is False and real["desired_weight"] in (None, 0), real
        time.sleep(0.1)
    ups = [e for e in daemon.get("/api/v1/events")
           if e["kind"] == "real_server" and e["state"] == "up"]
    assert ups == [], ups
    again = listen(dead)                                 # it comes back: an event says so
    try:
        wait_for(lambda: daemon.reals()[dead]["up"] is True, 5, message=daemon.log)
        assert any(e["kind"] == "real_server" and e["state"] == "up"
                   and e["real_server"] == f"127.0.0.1:{dead}"
                   for e in daemon.get("/api/v1/events"))
        assert daemon.reals()[dead]["desired_weight"] == 3
    finally:
        again.close()


def test_a_second_daemon_refuses_even_when_the_pid_file_was_deleted(tmp_path, servers):  # noqa: F811
    config = tmp_path / "keepalived.conf"
    config.write_text(config_text([servers[0].getsockname()[1]]))
    pid_file = tmp_path / "director.pid"
    base = [sys.executable, "-m", "director", "-C", "-l", "-f", str(config), "--backend",
            "none", "--web", "off", "-p", str(pid_file)]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    first = subprocess.Popen(base + ["--state-dir", str(tmp_path / "one")], cwd=ROOT, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(pid_file.exists, 15, message="the first daemon wrote no pid file")
        pid_file.unlink()
        second = subprocess.run(base + ["--state-dir", str(tmp_path / "two")], cwd=ROOT,
                                env=env, capture_output=True, text=True, timeout=30)
        assert second.returncode == 1, second.stderr
        assert f"already running as pid {first.pid}" in second.stderr, second.stderr
        assert "check.started" not in second.stderr
        assert first.poll() is None
    finally:
        first.send_signal(signal.SIGTERM)
        assert first.wait(10) == 0, first.stderr.read()[-3000:]


def test_fifty_megabytes_of_garbage_are_refused_at_once_and_the_daemon_keeps_answering(
        daemon, servers):  # noqa: F811
    """A HUP with 50 MB of garbage words once held the loop 32 s, logged 657,000 lines and
    grew to 1.2 GB. Now: one clear error within seconds, /healthz answers throughout."""
    before = len(daemon.log().splitlines())
    lines = [" ".join(f"w{n + k}" for k in range(12)) + "\n" for n in range(1000)]
    with open(daemon.config, "w") as handle:             # about 600,000 short lines
        for number in range((50 << 20) // len(lines[0]) + 1):
            handle.write(lines[number % 1000])
    started = time.monotonic()
    daemon.proc.send_signal(signal.SIGHUP)
    slowest = 0.0
    deadline = started + 10
    while daemon.get("/api/v1/state")["reload"]["result"] != "failure":
        assert time.monotonic() < deadline, daemon.log()[-3000:]
        asked = time.monotonic()
        assert daemon.status("/healthz") == 200
        slowest = max(slowest, time.monotonic() - asked)
    assert slowest < 1.0, slowest
    errors = daemon.get("/api/v1/state")["reload"]["errors"]
    assert len(errors) == 1 and "MiB" in errors[0], errors
    assert len(daemon.log().splitlines()) - before < 50
    rss_kb = int(next(line.split()[1] for line in
                      open(f"/proc/{daemon.proc.pid}/status") if line.startswith("VmRSS:")))
    assert rss_kb < 300 * 1024, rss_kb


def test_a_drain_that_cannot_be_saved_says_it_will_not_survive_a_restart(
        daemon, servers):  # noqa: F811
    """It used to answer 200 "drained" and nothing else while the state directory could not
    be written: the operator believed the drain would outlast a restart."""
    import shutil
    state_dir = daemon.tmp / "state"
    shutil.rmtree(state_dir, ignore_errors=True)
    state_dir.write_text("a file where the directory should be\n")
    port = servers[0].getsockname()[1]
    body = {"virtual_server": "127.0.0.1:80/TCP", "real_server": f"127.0.0.1:{port}"}
    status, answer = daemon.post("/api/v1/real-servers/drain", body)
    assert status == 200 and answer["drained"] is True, answer
    assert answer["saved"] is False and "will not survive a restart" in answer["warning"]
    assert daemon.reals()[port]["drained"]


def test_a_link_planted_at_a_state_file_is_not_written_through(daemon, servers, tmp_path):  # noqa: F811
    """keepalived's CVE-2018-19044 class: a symbolic link where the daemon writes its dump
    would have it write, as root, wherever the link points."""
    target = tmp_path / "victim"
    target.write_text("precious\n")
    state_dir = daemon.tmp / "state"
    state_dir.mkdir(exist_ok=True)
    (state_dir / "director.data.tmp").symlink_to(target)
    daemon.proc.send_signal(signal.SIGUSR1)
    wait_for(lambda: (state_dir / "director.data").exists(), 5, message=daemon.log)
    assert target.read_text() == "precious\n"
    assert not (state_dir / "director.data").is_symlink()
    assert (state_dir / "director.data").stat().st_mode & 0o777 == 0o644
