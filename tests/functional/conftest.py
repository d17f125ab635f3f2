"""Fixtures for functional tests: `lab`, a network-namespace Lab closed after the test.

Tests marked `netns` are skipped, with the reason, where root or `ip netns add` is missing
(probed once per session). When a test using `lab` fails, the tail of every process log it
started is printed in the failure report. SIGTERM (a cancelled CI job) is turned into
KeyboardInterrupt while these tests run, so labs are torn down as on Ctrl-C.
"""
import signal

import pytest

from tests.functional.lab import Lab, netns_unavailable

LOG_TAIL_LINES = 40


def pytest_collection_modifyitems(config, items):
    netns_items = [item for item in items if item.get_closest_marker("netns")]
    if netns_items and netns_unavailable():
        skip = pytest.mark.skip(reason=f"network namespaces unavailable: {netns_unavailable()}")
        for item in netns_items:
            item.add_marker(skip)


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
