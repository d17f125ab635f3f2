"""tests/qemu/jobs.py's JobRunner with fake jobs (no qemu): longest first, one at a time, each
job once, the foreground fallback, a failure passed on, the deadline, a clean end; and
guest.Running killing a whole process group."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time

import pytest

from tests.qemu import guest
from tests.qemu.jobs import BACKGROUND_NICE, JOBS, Job, JobRunner, JobTimeout, \
    background_enabled, background_nice

WITHIN = 10.0       # seconds any condition below may take on a loaded host


def wait_until(condition, within: float = WITHIN) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.005)


class FakeJobs:
    """Jobs that record who ran them, how and how many at once; a job named in `held` waits
    for its gate (or for a kill) before it returns."""

    def __init__(self, *held: str) -> None:
        self.calls: list[tuple[str, str, int]] = []     # (job, thread name, nice)
        self.gates = {name: threading.Event() for name in held}
        self.started = {name: threading.Event() for name in held}
        self.running = 0
        self.most_at_once = 0
        self._lock = threading.Lock()

    def job(self, name: str, estimate: float, timeout: float = 30, error=None) -> Job:
        def run(nice, running):
            with self._lock:
                self.calls.append((name, threading.current_thread().name, nice))
                self.running += 1
                self.most_at_once = max(self.most_at_once, self.running)
            try:
                if name in self.gates:
                    self.started[name].set()
                    deadline = time.monotonic() + WITHIN
                    while not self.gates[name].is_set() and not running.killed:
                        assert time.monotonic() < deadline
                        time.sleep(0.005)
                    if running.killed:
                        return "killed"
                if error is not None:
                    raise error
                return f"result of {name}"
            finally:
                with self._lock:
                    self.running -= 1
        return Job(name, run, timeout=timeout, estimate=estimate)

    def names(self) -> list[str]:
        return [name for name, _, _ in self.calls]


def test_the_real_jobs_are_ordered_longest_first():
    assert [job.name for job in JobRunner.order(JOBS)] == ["howto", "ecmp", "short", "daemon"]
    assert len({job.name for job in JOBS}) == len(JOBS)
    for job in JOBS:       # the deadline a fixture waits covers the guest run's own bound
        assert job.timeout > job.estimate


def test_the_background_runs_the_needed_jobs_longest_first_one_at_a_time():
    fake = FakeJobs("howto")
    runner = JobRunner([fake.job("short", 70), fake.job("howto", 320), fake.job("daemon", 60),
                        fake.job("unused", 500)])
    runner.start(["daemon", "short", "howto"])
    assert fake.started["howto"].wait(WITHIN)
    fake.gates["howto"].set()
    wait_until(lambda: len(fake.calls) == 3 and fake.running == 0)
    assert runner.result("daemon") == "result of daemon"
    assert runner.result("howto") == "result of howto"
    assert runner.result("short") == "result of short"
    assert fake.names() == ["howto", "short", "daemon"]
    assert {thread for _, thread, _ in fake.calls} == {"qemu-jobs"}
    assert {nice for _, _, nice in fake.calls} == {BACKGROUND_NICE}
    assert fake.most_at_once == 1
    runner.close()


def test_a_job_runs_once_however_many_fixtures_ask():
    fake = FakeJobs("short")
    runner = JobRunner([fake.job("short", 70)])
    runner.start(["short"])
    assert fake.started["short"].wait(WITHIN)
    results = []
    askers = [threading.Thread(target=lambda: results.append(runner.result("short")))
              for _ in range(3)]
    for asker in askers:
        asker.start()
    fake.gates["short"].set()
    for asker in askers:
        asker.join(WITHIN)
    assert results == ["result of short"] * 3
    assert runner.result("short") == "result of short"
    assert fake.names() == ["short"]
    runner.close()


def test_without_the_background_a_job_runs_in_the_fixture_once():
    fake = FakeJobs()
    runner = JobRunner([fake.job("daemon", 60)])
    assert runner.result("daemon") == "result of daemon"
    assert runner.result("daemon") == "result of daemon"
    assert fake.calls == [("daemon", threading.current_thread().name, 0)]
    assert "daemon: foreground" in runner.summary()[0]


def test_a_job_not_started_yet_runs_in_the_foreground_after_the_running_one():
    fake = FakeJobs("howto")
    runner = JobRunner([fake.job("howto", 320), fake.job("short", 70), fake.job("daemon", 60)])
    runner.start(["howto", "short", "daemon"])
    assert fake.started["howto"].wait(WITHIN)
    asked = threading.Thread(target=lambda: runner.result("daemon"))
    asked.start()
    # the fixture waits for the guest: nothing else starts while howto holds it
    wait_until(lambda: runner._foreground_waiting == 1)
    assert fake.names() == ["howto"]
    fake.gates["howto"].set()
    asked.join(WITHIN)
    assert not asked.is_alive()
    wait_until(lambda: len(fake.calls) == 3)       # the background goes on with its queue
    assert runner.result("short") == "result of short"
    # the fixture's job went before the background's next one, and ran in the fixture's thread
    assert fake.names() == ["howto", "daemon", "short"]
    assert [(thread == "qemu-jobs", nice) for _, thread, nice in fake.calls] == \
        [(True, BACKGROUND_NICE), (False, 0), (True, BACKGROUND_NICE)]
    assert fake.most_at_once == 1
    runner.close()


@pytest.mark.parametrize("background", [True, False])
def test_a_job_that_raised_raises_the_same_in_every_fixture(background):
    fake = FakeJobs()
    runner = JobRunner([fake.job("ecmp", 130, error=AssertionError("rc=1")),
                        fake.job("daemon", 60)])
    if background:
        runner.start(["ecmp", "daemon"])
    for _ in range(2):
        with pytest.raises(AssertionError, match="rc=1"):
            runner.result("ecmp")
    assert runner.result("daemon") == "result of daemon"      # the next job still ran
    assert fake.names() == ["ecmp", "daemon"]
    assert "ecmp" in runner.summary()[0] and "AssertionError" in runner.summary()[0]
    runner.close()


def test_a_skip_in_the_background_skips_the_fixture_with_its_message():
    def unavailable(nice, running):
        pytest.skip("no qemu guest: qemu-system-x86_64 missing")
    runner = JobRunner([Job("short", unavailable, timeout=600, estimate=70)])
    runner.start(["short"])
    with pytest.raises(pytest.skip.Exception, match="qemu-system-x86_64 missing"):
        runner.result("short")
    runner.close()


def test_a_job_past_its_deadline_fails_the_fixture_instead_of_hanging():
    fake = FakeJobs("howto")
    runner = JobRunner([fake.job("howto", 320, timeout=0.2), fake.job("daemon", 60)],
                       grace=0.0)
    runner.start(["howto"])
    assert fake.started["howto"].wait(WITHIN)
    with pytest.raises(JobTimeout, match="howto: no result"):
        runner.result("howto")
    with pytest.raises(JobTimeout, match="busy with howto"):
        runner.result("daemon")
    assert fake.names() == ["howto"]
    runner.close()
    assert fake.running == 0


def test_close_kills_the_running_guest_and_starts_no_other():
    fake = FakeJobs("howto")
    runner = JobRunner([fake.job("howto", 320), fake.job("daemon", 60)])
    runner.start(["howto", "daemon"])
    assert fake.started["howto"].wait(WITHIN)
    runner.close()
    assert fake.running == 0 and not runner._thread.is_alive()
    assert fake.names() == ["howto"]
    with pytest.raises(JobTimeout, match="session is ending"):
        runner.result("daemon")
    runner.close()                                              # twice: harmless


def test_background_is_on_unless_turned_off(monkeypatch):
    monkeypatch.delenv("DIRECTOR_QEMU_BACKGROUND", raising=False)
    assert background_enabled()
    monkeypatch.setenv("DIRECTOR_QEMU_BACKGROUND", "0")
    assert not background_enabled()


def test_the_background_nice_is_ten_unless_set(monkeypatch):
    monkeypatch.delenv("DIRECTOR_QEMU_NICE", raising=False)
    assert background_nice() == BACKGROUND_NICE == 10
    monkeypatch.setenv("DIRECTOR_QEMU_NICE", "5")
    assert background_nice() == 5
    for bad in ("-3", "20", "ten"):
        monkeypatch.setenv("DIRECTOR_QEMU_NICE", bad)
        with pytest.raises(ValueError, match="0 to 19"):
            background_nice()


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.parametrize("kill_first", [False, True])
def test_running_kill_ends_the_wrapper_and_its_child(tmp_path, kill_first):
    """As `timeout` and qemu: a wrapper in its own process group with a child."""
    running = guest.Running()
    if kill_first:                   # close() before the process started: killed on start
        running.kill()
    proc = subprocess.Popen(["sh", "-c", f"sleep 60 & echo $! > {tmp_path}/child; wait"],
                            start_new_session=True)
    wait_until(lambda: (tmp_path / "child").exists() and (tmp_path / "child").read_text())
    child = int((tmp_path / "child").read_text())
    running._started(proc, tmp_path)
    if not kill_first:
        assert running.results == tmp_path and _alive(child)
        running.kill()
    assert proc.wait(WITHIN) == -signal.SIGKILL
    wait_until(lambda: not _alive(child))
    running._ended()
    assert running.results is None
    if _alive(child):                # never leave it behind, whatever failed above
        os.kill(child, signal.SIGKILL)


def test_a_niced_guest_gets_a_niced_scheduler_group():
    """qemu runs in a session of its own: with autogroups, the group's nice is what counts."""
    proc = subprocess.Popen(["sleep", "30"], start_new_session=True)
    try:
        path = f"/proc/{proc.pid}/autogroup"
        if not os.path.exists(path):
            pytest.skip("no scheduler autogroups on this kernel")
        guest._nice_session(proc.pid, 10)
        with open(path) as f:
            text = f.read()
        if os.geteuid() != 0 and "nice 10" not in text:
            pytest.skip("raising an autogroup's nice back needs root here")
        assert text.strip().endswith("nice 10"), text
    finally:
        proc.kill()
        proc.wait()
