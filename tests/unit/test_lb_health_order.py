"""LoadBalancer.health(), what the BGP announcer reads: (quorum up, destinations of weight
above 0) per virtual server, following the checks, drains and quorum; and the order in which
the load balancer tells its listeners about it: a loss as soon as a converge decides it, before the backend applies
the pools (so the route is withdrawn first, as on TERM: the router moves the flows while
the pools still forward), a gain only once the backend has been given the pools (a route
is never announced for pools the kernel does not have yet). The backend here records what
``health()`` said while it was syncing; the listener records what it said when called."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from director.config import load_config
from director.lb.service import LoadBalancer
from director.notify import Notifier

CONFIG = """
virtual_server 192.0.2.10 80 {
    delay_loop 60
    lb_algo mh
    lb_kind DR
    protocol TCP
    real_server 10.0.0.1 80 {
        TCP_CHECK {
            connect_timeout 1
        }
    }
}
"""
NAME = "192.0.2.10:80/TCP"


class RecordingBackend:
    name = "fake"

    def __init__(self) -> None:
        self.lb: LoadBalancer | None = None
        self.syncs = 0
        self.during_sync: list[tuple[bool, int]] = []

    def open(self) -> None:
        pass

    def sync(self, desired, owned, verify=True):
        self.during_sync.append(self.lb.health()[NAME])
        self.syncs += 1
        return []

    def counters(self):
        return {}

    def connections_of(self, key, dest_key):
        return None

    def refresh_connections(self):
        pass

    def close(self, remove=None):
        pass


@pytest.fixture
def balancer(tmp_path):
    path = tmp_path / "keepalived.conf"
    path.write_text(CONFIG)
    config = load_config(str(path), interface_exists=None).config
    real = SimpleNamespace(up=True, drained=False, has_agent=False, weight_override=None,
                           maintenance=False, dynamic_weight=lambda: 1)
    checks = SimpleNamespace(state_of=lambda name, server: real, listeners=[], effect_listeners=[],
                             real_servers=[])
    lb = LoadBalancer(config, checks, "none", Notifier(None))
    backend = RecordingBackend()
    backend.lb = lb
    lb.backend = backend
    heard: list[tuple[tuple[bool, int], int]] = []     # (health, syncs done) per call
    lb.listeners.append(lambda: heard.append((lb.health()[NAME], backend.syncs)))
    lb.real, lb.heard = real, heard
    yield lb
    lb.stop()


def test_a_loss_is_told_before_the_pools_change_and_a_gain_after(balancer):
    lb, backend, heard = balancer, balancer.backend, balancer.heard
    lb.start()                                   # the first converge: up, applied
    assert heard[-1] == ((True, 1), 1)
    assert backend.during_sync == [(False, 0)]   # never healthy before the kernel has it

    lb.real.up = False                           # the only real server fails its check
    heard.clear()
    lb._converge_guarded(verify=False)
    # told first while the kernel still has the old pools (no sync yet), then again after
    assert heard == [((False, 0), 1), ((False, 0), 2)]
    assert backend.during_sync[-1] == (False, 0)

    lb.real.up = True                            # back: healthy only once synced
    heard.clear()
    lb._converge_guarded(verify=False)
    assert backend.during_sync[-1] == (False, 0)
    assert heard == [((True, 1), 3)]


def test_a_converge_that_changes_nothing_tells_once(balancer):
    lb, heard = balancer, balancer.heard
    lb.start()
    heard.clear()
    lb._converge_guarded(verify=False)
    assert heard == [((True, 1), 2)]


QUORUM_2 = """
virtual_server 192.0.2.10 80 {
    delay_loop 60
    lb_algo rr
    lb_kind NAT
    protocol TCP
    quorum 2
    real_server 10.0.0.1 80 {
        TCP_CHECK {
            connect_timeout 1
        }
    }
    real_server 10.0.0.2 80 {
        weight 2
        TCP_CHECK {
            connect_timeout 1
        }
    }
}
"""


def test_health_counts_live_weighted_servers_and_the_quorum(tmp_path):
    path = tmp_path / "keepalived.conf"
    path.write_text(QUORUM_2)
    config = load_config(str(path), interface_exists=None).config
    servers = {address: SimpleNamespace(up=True, drained=False, has_agent=False,
                                        weight_override=None, maintenance=False,
                                        dynamic_weight=lambda: None)
               for address in ("10.0.0.1", "10.0.0.2")}
    checks = SimpleNamespace(state_of=lambda name, real: servers[real.address], listeners=[], effect_listeners=[],
                             real_servers=[])
    lb = LoadBalancer(config, checks, "none", Notifier(None))
    lb.backend = RecordingBackend()
    lb.backend.lb = lb
    try:
        lb.start()
        assert lb.health() == {NAME: (True, 2)}
        servers["10.0.0.1"].drained = True           # weight 0: in the pool, not live
        lb._converge_guarded(verify=False)
        assert lb.health() == {NAME: (True, 1)}      # live weight 2 still makes quorum 2
        servers["10.0.0.2"].up = False               # live weight 0 < quorum 2: lost
        lb._converge_guarded(verify=False)
        assert lb.health() == {NAME: (False, 0)}
    finally:
        lb.stop()
