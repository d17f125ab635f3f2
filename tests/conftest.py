"""Suite-wide hooks: the time each test file costs (setup, call and teardown together), printed
after pytest's per-test --durations, so that the suite's budget (25 minutes in CI) can be
spent where it matters."""

from __future__ import annotations

from collections import defaultdict

import pytest

_SECONDS_BY_FILE: dict[str, float] = defaultdict(float)
_TESTS_BY_FILE: dict[str, set[str]] = defaultdict(set)


def pytest_runtest_logreport(report) -> None:
    path = report.nodeid.split("::", 1)[0]
    _SECONDS_BY_FILE[path] += report.duration
    _TESTS_BY_FILE[path].add(report.nodeid)


@pytest.hookimpl(trylast=True)
def pytest_terminal_summary(terminalreporter) -> None:
    if not _SECONDS_BY_FILE:
        return
    total = sum(_SECONDS_BY_FILE.values())
    terminalreporter.section(f"slowest files ({total:.0f} s in all)")
    ranked = sorted(_SECONDS_BY_FILE.items(), key=lambda item: -item[1])
    for path, seconds in ranked[:25]:
        terminalreporter.write_line(
            f"{seconds:8.1f}s {100 * seconds / total:5.1f}% {len(_TESTS_BY_FILE[path]):4d} tests"
            f"  {path}")
