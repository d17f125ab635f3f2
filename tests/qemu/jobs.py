"""The qemu guest runs of the test suite as named jobs, run in the background of the other tests.

Each qemu test module's guest run (tests/qemu/guest.py: a Debian kernel under TCG, minutes of
CPU) is a ``Job``: the function that runs it, its timeout and its usual length. After
collection, tests/functional/conftest.py hands the jobs the selected tests need to a
``JobRunner``, whose one background thread runs them one after another (one guest at a time:
each boots -smp 2 and TCG is CPU-heavy), longest first, qemu under ``nice`` so that the
namespace tests, which mostly wait on VRRP timers, keep the CPU they need. The qemu modules run
last in the session; their module fixtures call ``JobRunner.result(name)``, which waits for the
job (with a deadline), or runs it in the foreground if the background has not started it:
never twice. A job that raised (a pytest skip or failure included) raises the same exception in
every fixture that asks for it.

``DIRECTOR_QEMU_BACKGROUND=0`` turns the background off: every job runs in the foreground when
its fixture asks, as before. ``DIRECTOR_QEMU_NICE`` sets the background guest's nice (10).
"""

from __future__ import annotations

import os
import shutil
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from tests.qemu import guest

REPO = Path(__file__).resolve().parents[2]
# The guest's priority beside the other tests: they are timing-sensitive (VRRP timers), and so
# is the guest (its own failover bound, its daemons' start): DIRECTOR_QEMU_NICE to change it.
BACKGROUND_NICE = 10
# Beyond a job's own timeout (qemu's `timeout` wrapper): prepare(), the results read back.
GRACE = 60.0
ECMP_FLOWS = 80               # long-lived flows through the ECMP route (test_ipvs_ecmp_qemu)


@dataclass(frozen=True)
class Job:
    name: str
    run: Callable[..., object]    # run(nice=, running=) -> the result the fixtures read
    timeout: float                # the guest run's own bound (seconds)
    estimate: float               # its usual length here, to order the jobs: longest first


@dataclass
class _State:
    job: Job
    where: str = "queued"         # queued, background, foreground
    started: float | None = None
    ended: float | None = None
    value: object = None
    error: BaseException | None = None
    waited: float = 0.0           # what the fixtures spent waiting for it
    running: guest.Running = field(default_factory=guest.Running)

    @property
    def done(self) -> bool:
        return self.ended is not None


class JobTimeout(Exception):
    """A job gave no result within its deadline."""


class JobRunner:
    """Runs jobs, each at most once, one at a time: in a background thread in the order given
    to start(), or in the caller's thread when result() asks for one the background has not
    started. A caller waiting for the guest has priority over the background's next job."""

    def __init__(self, jobs: Iterable[Job], clock: Callable[[], float] = time.monotonic,
                 grace: float = GRACE, nice: int = BACKGROUND_NICE) -> None:
        self._nice = nice
        self._states = {job.name: _State(job) for job in jobs}
        self._clock = clock
        self._grace = grace
        self._cond = threading.Condition()
        self._busy: _State | None = None    # the job that holds the guest
        self._foreground_waiting = 0
        self._queue: list[_State] = []
        self._closed = False
        self._thread: threading.Thread | None = None

    @staticmethod
    def order(jobs: Iterable[Job]) -> list[Job]:
        """Longest first: the one most likely to make a fixture wait starts first."""
        return sorted(jobs, key=lambda job: -job.estimate)

    def start(self, names: Iterable[str]) -> None:
        """Run these jobs in a background thread, longest first; a daemon thread, so that
        it never keeps the interpreter alive (close() kills its guest)."""
        with self._cond:
            self._queue = [self._states[job.name] for job in
                           self.order(self._states[name].job for name in set(names))]
            if not self._queue:
                return
            self._thread = threading.Thread(target=self._background, name="qemu-jobs",
                                            daemon=True)
            self._thread.start()

    def _background(self) -> None:
        while True:
            with self._cond:
                while not self._closed and (self._busy or self._foreground_waiting):
                    self._cond.wait()
                queued = [s for s in self._queue if s.where == "queued"]
                if self._closed or not queued:
                    return
                state = queued[0]
                self._take(state, "background")
            self._run(state, nice=self._nice)

    def _take(self, state: _State, where: str) -> None:
        state.where, state.started, self._busy = where, self._clock(), state

    def _run(self, state: _State, nice: int) -> None:
        value, error = None, None
        try:
            value = state.job.run(nice=nice, running=state.running)
        except BaseException as exc:        # pytest's skip and fail are BaseExceptions
            error = exc
        with self._cond:
            state.value, state.error, state.ended = value, error, self._clock()
            self._busy = None
            self._cond.notify_all()

    def result(self, name: str) -> object:
        """The job's result (waiting for it) or its exception, raised again. A job the
        background has not started runs here and now, once the guest is free."""
        asked = self._clock()
        with self._cond:
            state = self._states[name]
            if state.where == "queued" and not self._closed:
                self._foreground_waiting += 1
                try:
                    # the guest may be busy with another job: at most that one's bound
                    if self._busy is not None:
                        self._wait(lambda: self._busy is None, self._deadline(self._busy),
                                   f"qemu job {name}: the guest stayed busy with "
                                   f"{self._busy.job.name}")
                    self._take(state, "foreground")
                finally:
                    self._foreground_waiting -= 1
                    self._cond.notify_all()
            elif state.where == "queued":
                raise JobTimeout(f"qemu job {name}: the session is ending")
            else:
                self._wait(lambda: state.done, self._deadline(state),
                           f"qemu job {name}: no result")
                state.waited += self._clock() - asked
                return self._outcome(state)
        state.waited += self._clock() - asked
        self._run(state, nice=0)
        return self._outcome(state)

    def _deadline(self, state: _State) -> float:
        return (state.started if state.started is not None else self._clock()) \
            + state.job.timeout + self._grace

    def _wait(self, predicate: Callable[[], bool], deadline: float, what: str) -> None:
        while not predicate():
            left = deadline - self._clock()
            if left <= 0:
                raise JobTimeout(f"{what} within its deadline")
            self._cond.wait(min(left, 5.0))

    @staticmethod
    def _outcome(state: _State) -> object:
        if state.error is not None:
            raise state.error
        return state.value

    def close(self, join_timeout: float = 15.0) -> None:
        """The session's end: no job starts any more, a running guest is killed, its results
        folder removed. Safe to call twice."""
        with self._cond:
            self._closed = True
            running = [s for s in self._states.values() if s.started and not s.done]
            self._cond.notify_all()
        for state in running:
            results = state.running.results
            state.running.kill()
            if self._thread is not None and state.where == "background":
                self._thread.join(join_timeout)
            if results is not None:     # run() removes it unless its thread is stuck
                shutil.rmtree(results, ignore_errors=True)

    def summary(self) -> list[str]:
        """One line per job that ran or was asked for, for the end of the session."""
        lines = []
        for state in self._states.values():
            if state.started is None:
                continue
            ran = (f"{state.ended - state.started:.1f} s" if state.done else "unfinished")
            outcome = ("" if not state.done else
                       " ok" if state.error is None else f" {type(state.error).__name__}")
            lines.append(f"{state.job.name}: {state.where}, ran {ran}{outcome}, "
                         f"fixtures waited {state.waited:.1f} s")
        return lines


def background_enabled() -> bool:
    return os.environ.get("DIRECTOR_QEMU_BACKGROUND", "1") != "0"


def background_nice() -> int:
    """DIRECTOR_QEMU_NICE (0 to 19), else BACKGROUND_NICE."""
    text = os.environ.get("DIRECTOR_QEMU_NICE", "")
    if not text:
        return BACKGROUND_NICE
    if not text.isdigit() or int(text) > 19:
        raise ValueError(f"DIRECTOR_QEMU_NICE={text!r}: a number from 0 to 19")
    return int(text)


# The guest runs. Each returns guest.run()'s GuestResult; the test modules judge it.

def _howto(**options) -> guest.GuestResult:
    return guest.run(f"cd {REPO} && {sys.executable} tests/qemu/howto_lab_case.py director "
                     "both", guest=guest.prepare_or_skip(), timeout=900, **options)


def _ecmp(**options) -> guest.GuestResult:
    return guest.run(f"cd {REPO} && {sys.executable} tests/qemu/ecmp_ipvs_case.py {ECMP_FLOWS}",
                     guest=guest.prepare_or_skip(), timeout=1500, **options)


def _daemon(**options) -> guest.GuestResult:
    # the host's interpreter: a worktree has no .venv of its own
    script = f"REPO={REPO}\nPYTHON={sys.executable}\n" + \
        (REPO / "tests/qemu/daemon_ipvs_case.sh").read_text()
    return guest.run(script, guest=guest.prepare_or_skip(), timeout=300, **options)


def _short(**options) -> guest.GuestResult:
    """The short guest cases in one boot (a boot costs 20-40 s under TCG), each test module
    reading its part: the IPVS backend's cases (tests/qemu/ipvs_cases.py, whose JSON is the last
    line of stdout and whose exit code is the run's), then use_ipvlan
    (tests/qemu/ipvlan_case.sh, its files in $RESULTS)."""
    python = sys.executable
    script = (f'cd {REPO} && {python} tests/qemu/ipvs_cases.py > "$RESULTS/ipvs.out"\n'
              f'echo $? > "$RESULTS/ipvs_rc"\n'
              f'REPO={REPO} PYTHON={python} sh {REPO}/tests/qemu/ipvlan_case.sh '
              f'> "$RESULTS/ipvlan.out" 2>&1\n'
              f'cat "$RESULTS/ipvs.out"\n'
              f'exit "$(cat "$RESULTS/ipvs_rc")"\n')
    return guest.run(script, guest=guest.prepare_or_skip(), timeout=600, **options)


# estimate: the module fixtures' setup in CI on this two-core host (2026-12), rounded up
JOBS = (
    Job("howto", _howto, timeout=900, estimate=320),
    Job("ecmp", _ecmp, timeout=1500, estimate=130),
    Job("short", _short, timeout=600, estimate=70),
    Job("daemon", _daemon, timeout=300, estimate=60),
)
