"""The load balancer's verify timer alone does not decide the pools again: only a change
(``changed``), a reload, a failed converge, a slow start ramping or an ha_suspend address
does. What is asserted is what the backend is handed and how often the pools are decided."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest

from director.config import load_config
from director.lb import service as lb_service
from director.lb.service import LoadBalancer
from director.notify import Notifier
from tests.unit.test_lb_loop_faults import FailingBackend, wait_until

CONFIG = """
virtual_server 192.0.2.10 80 {
    delay_loop 60
    lb_algo rr
    lb_kind NAT
    protocol TCP
    real_server 10.0.0.1 80 {
        weight 3
        TCP_CHECK {
            connect_timeout 1
        }
    }
    real_server 10.0.0.2 80 {
        TCP_CHECK {
            connect_timeout 1
        }
    }
}
"""


class State:
    """What the checks say of one real server, as the balancer reads it."""

    def __init__(self, real):
        self.real_server, self.up, self.drained = real, True, False
        self.has_agent, self.weight_override, self.maintenance = False, None, False
        self.name, self.jobs = ("VS", f"{real.address}:{real.port}"), []

    def dynamic_weight(self):
        return None


@pytest.fixture
def balancer(tmp_path, monkeypatch):
    path = tmp_path / "keepalived.conf"
    path.write_text(CONFIG)
    config = load_config(str(path), interface_exists=None).config
    states = {(r.address, r.port): State(r) for r in config.virtual_servers[0].real_servers}
    checks = SimpleNamespace(state_of=lambda name, real: states[(real.address, real.port)],
                             listeners=[], effect_listeners=[], real_servers=[])
    decided, ours = [], []
    real_desired_state = lb_service.desired_state

    def counting(decided_for, *args, **kwargs):
        # another test's balancer still running in this process calls it too: not counted
        if ours and decided_for is ours[0].config:
            decided.append(time.monotonic())
        return real_desired_state(decided_for, *args, **kwargs)

    monkeypatch.setattr(lb_service, "desired_state", counting)
    lb = LoadBalancer(config, checks, "none", Notifier(None), reconcile_every=0.02)
    lb.RETRY_FIRST, lb.RETRY_MAX = 0.01, 0.05
    lb.backend = FailingBackend(failures=0)
    lb.test_states, lb.test_decided = states, decided
    ours.append(lb)
    yield lb
    lb.stop()


def weights(backend):
    return sorted(dest.weight for pool in backend.kernel.values()
                  for dest in pool.destinations.values())


def test_the_verify_timer_hands_the_same_pools_without_deciding_them_again(balancer):
    backend = balancer.backend
    balancer.start()
    assert wait_until(lambda: backend.calls >= 10), backend.calls
    assert len(balancer.test_decided) == 1          # the start's converge only
    assert weights(backend) == [1, 3]
    # a change that nothing announced is not seen by the verify timer ...
    balancer.test_states[("10.0.0.1", 80)].up = False
    calls = backend.calls
    assert wait_until(lambda: backend.calls >= calls + 5)
    assert weights(backend) == [1, 3] and len(balancer.test_decided) == 1
    # ... the checks' listener announces it (as check/service.py does): decided again
    balancer.changed.set()
    assert wait_until(lambda: weights(backend) == [1]), weights(backend)
    assert len(balancer.test_decided) == 2


def test_a_failed_converge_decides_again_on_the_timer(balancer):
    backend = FailingBackend(failures=3)
    balancer.backend = backend
    balancer.start()
    assert wait_until(lambda: backend.calls > 3 and balancer.failing == 0)
    settled = len(balancer.test_decided)
    assert settled >= 4                              # one per failed try and the one after
    calls = backend.calls
    assert wait_until(lambda: backend.calls >= calls + 5)
    assert len(balancer.test_decided) == settled
    assert weights(backend) == [1, 3]


def test_a_reload_decides_again(balancer, tmp_path):
    backend = balancer.backend
    balancer.start()
    assert wait_until(lambda: backend.calls >= 3)
    path = tmp_path / "keepalived.conf"
    path.write_text(CONFIG.replace("weight 3", "weight 5"))
    config = load_config(str(path), interface_exists=None).config
    for real in config.virtual_servers[0].real_servers:
        balancer.test_states[(real.address, real.port)].real_server = real
    balancer.reload(config)
    assert wait_until(lambda: weights(backend) == [1, 5]), weights(backend)
