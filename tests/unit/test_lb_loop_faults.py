"""The load balancer's loop under a backend that fails: it never ends, counts every error by
operation, retries with a growing pause and converges once the backend recovers. The backend
here is a stand-in implementing the backends' sync interface (a real kernel's failure is in
tests/functional/test_lb_ipvs_daemon_qemu.py); the assertions are on the loop: what it
counted, that it kept trying, what it finally asked for."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest

from director import hub
from director.config import load_config
from director.lb.model import BackendError
from director.lb.service import LoadBalancer
from director.notify import Notifier

CONFIG = """
virtual_server 192.0.2.10 80 {
    delay_loop 60
    lb_algo rr
    lb_kind NAT
    protocol TCP
    real_server 10.0.0.1 80 {
        TCP_CHECK {
            connect_timeout 1
        }
    }
}
"""


class FailingBackend:
    """Fails its first ``failures`` syncs (an error returned, or raised), then works."""

    name = "fake"

    def __init__(self, failures: int, raise_instead: bool = False) -> None:
        self.failures = failures
        self.raise_instead = raise_instead
        self.calls = 0
        self.kernel: dict = {}

    def open(self) -> None:
        pass

    def sync(self, desired, owned, verify=True):
        self.calls += 1
        if self.calls <= self.failures:
            if self.raise_instead:
                raise OSError(104, "Connection reset by peer")
            return [BackendError("AddDestination", "File exists")]
        self.kernel = dict(desired)
        return []

    def counters(self):
        return {}

    def connections_of(self, key, dest_key):
        return None

    def refresh_connections(self):
        pass

    def close(self, remove=None):
        pass


def wait_until(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        hub.sleep(0.01)
    return False


@pytest.fixture
def balancer(tmp_path):
    path = tmp_path / "keepalived.conf"
    path.write_text(CONFIG)
    config = load_config(str(path), interface_exists=None).config
    checks = SimpleNamespace(state_of=lambda name, real: None, listeners=[], effect_listeners=[], real_servers=[])
    events = []
    lb = LoadBalancer(config, checks, "none", Notifier(None),
                      on_event=lambda kind, **fields: events.append((kind, fields)))
    lb.RETRY_FIRST, lb.RETRY_MAX = 0.01, 0.05
    lb.events = events
    yield lb
    lb.stop()


@pytest.mark.parametrize("raise_instead", [False, True], ids=["returned", "raised"])
def test_the_loop_survives_failing_syncs_and_converges_after(balancer, raise_instead):
    backend = FailingBackend(failures=6, raise_instead=raise_instead)
    balancer.backend = backend
    balancer.start()
    assert wait_until(lambda: backend.calls > 6 and balancer.failing == 0), \
        (backend.calls, balancer.failing)
    loop = [g for g in balancer.greenlets if g.name == "load balancer"][0]
    assert not loop.dead
    operation = "converge" if raise_instead else "AddDestination"
    assert balancer.errors == {operation: 6}
    assert "Connection reset" in balancer.last_error["error"] if raise_instead else \
        balancer.last_error["error"] == "File exists"
    # the kernel got the desired state once the backend worked again
    assert set(backend.kernel) == set(balancer.desired) and balancer.desired
    kinds = [kind for kind, _ in balancer.events]
    assert kinds.count("lb_error") == 1 and kinds.count("lb_recovered") == 1
    status = balancer.status()
    assert status["errors"] == {operation: 6} and status["failing_converges"] == 0


def test_a_failing_backend_is_retried_with_a_growing_pause(balancer):
    backend = FailingBackend(failures=10**6)
    balancer.backend = backend
    balancer.RETRY_FIRST, balancer.RETRY_MAX = 0.05, 0.4
    balancer.start()
    hub.sleep(1.0)
    # 0.05 + 0.1 + 0.2 + 0.4 + 0.4 ...: a handful of tries a second, not a busy loop
    assert 3 <= backend.calls <= 8, backend.calls
    assert balancer.failing == backend.calls
    assert balancer.status()["failing_converges"] == backend.calls


def test_a_crashing_long_lived_greenlet_is_restarted_and_named_meanwhile():
    runs = []

    def flaky():
        runs.append(time.monotonic())
        if len(runs) < 3:
            raise RuntimeError("boom")
        hub.sleep(30)

    greenlet = hub.supervise(flaky, name="flaky part")
    try:
        assert wait_until(lambda: "flaky part" in hub.not_running(), 2)
        assert wait_until(lambda: len(runs) == 3, 5)
        assert "flaky part" not in hub.not_running() and not greenlet.dead
        assert greenlet.restarts == 2 and hub.crashes["flaky part"] >= 2
        assert runs[2] - runs[1] > runs[1] - runs[0]          # the pause grew
    finally:
        greenlet.kill()
    assert greenlet not in hub.supervised
