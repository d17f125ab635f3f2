"""Fixtures for functional tests: `lab`, a network-namespace Lab closed after the test.

Tests marked `netns` are skipped, with the reason, where root or `ip netns add` is missing
(probed once per session). When a test using `lab` fails, the tail of every process log it
started is printed in the failure report. SIGTERM (a cancelled CI job) is turned into
KeyboardInterrupt while these tests run, so labs are torn down as on Ctrl-C.

The qemu guest runs (tests/qemu/jobs.py) start in the background after collection, while the
other tests run; the qemu modules run last and read them through the `qemu_jobs` fixture.
"""
import signal

import pytest

from tests.functional.lab import Lab, netns_unavailable
from tests.qemu import guest
from tests.qemu.jobs import JOBS, JobRunner, background_enabled, background_nice

LOG_TAIL_LINES = 40


def pytest_collection_modifyitems(config, items):
    netns_items = [item for item in items if item.get_closest_marker("netns")]
    if netns_items and netns_unavailable():
        skip = pytest.mark.skip(reason=f"network namespaces unavailable: {netns_unavailable()}")
        for item in netns_items:
            item.add_marker(skip)
    # The qemu modules last, in the order their jobs run in the background: by the time they
    # ask, their guest run is done or under way (a module's tests stay together).
    rank = {job.name: i for i, job in enumerate(JobRunner.order(JOBS))}
    order = {id(item): (rank[job] + 1 if (job := _job_of(item)) else 0, i)
             for i, item in enumerate(items)}
    items.sort(key=lambda item: order[id(item)])


def _job_of(item) -> str | None:
    marker = item.get_closest_marker("qemu_job")
    return marker.args[0] if marker else None


def _skipped(item) -> bool:
    if item.get_closest_marker("skip"):
        return True
    return any(c is True for m in item.iter_markers("skipif")
               for c in (*m.args, m.kwargs.get("condition")))


_jobs_key = pytest.StashKey[JobRunner]()
_sigterm_installed_key = pytest.StashKey[bool]()


def pytest_collection_finish(session):
    runner = session.config.stash[_jobs_key] = JobRunner(JOBS, nice=background_nice())
    needed = {job for item in session.items if (job := _job_of(item)) and not _skipped(item)}
    if not needed or session.config.option.collectonly or not background_enabled():
        return
    try:
        guest.prepare()
    except Exception:               # each fixture meets it again: skips or fails, saying why
        return
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:     # a cancelled CI job: clean end
        signal.signal(signal.SIGTERM, _interrupt)
        session.config.stash[_sigterm_installed_key] = True
    runner.start(needed)


def pytest_sessionfinish(session):
    """Normal end, failure, Ctrl-C or SIGTERM: a guest still running is killed."""
    runner = session.config.stash.get(_jobs_key, None)
    if runner is not None:
        runner.close()
    if session.config.stash.get(_sigterm_installed_key, False):
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def pytest_terminal_summary(terminalreporter, config):
    runner = config.stash.get(_jobs_key, None)
    lines = runner.summary() if runner is not None else []
    if lines:
        terminalreporter.section("qemu guest jobs")
        for line in lines:
            terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def qemu_jobs(request) -> JobRunner:
    """The session's qemu guest runs: qemu_jobs.result(name) (tests/qemu/jobs.py)."""
    runner = request.config.stash.get(_jobs_key, None)
    if runner is None:              # collected without this conftest's hooks: all foreground
        runner = request.config.stash[_jobs_key] = JobRunner(JOBS)
    return runner


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.failed:
        item.stash.setdefault(_failed_key, True)
    return report


_failed_key = pytest.StashKey[bool]()


def _interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


@pytest.fixture(scope="session", autouse=True)
def _sigterm_tears_labs_down():
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield                                      # somebody else handles SIGTERM: leave it
        return
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


@pytest.fixture
def lab(request):
    reason = netns_unavailable()
    if reason:
        pytest.skip(f"network namespaces unavailable: {reason}")
    with Lab() as the_lab:
        yield the_lab
        if request.node.stash.get(_failed_key, False):
            for proc in the_lab.processes:
                lines = the_lab.log_of(proc).splitlines()[-LOG_TAIL_LINES:]
                print(f"--- pid {proc.pid} {' '.join(map(str, proc.args[4:]))} "
                      f"(exit {proc.poll()}), last {len(lines)} lines ---")
                print("\n".join(lines))
