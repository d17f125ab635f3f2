"""LoadBalancer.health(): what the BGP announcer reads after each converge (quorum and the
destinations of weight above 0), from the desired state the loop computed, and the listeners
it calls after each converge."""

from __future__ import annotations

import time
from types import SimpleNamespace

from director import hub
from director.config import load_config
from director.lb.service import LoadBalancer
from director.notify import Notifier

CONFIG = """
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
NAME = "192.0.2.10:80/TCP"


class Kernel:
    name = "fake"

    def open(self): pass
    def sync(self, desired, owned, verify=True): return []
    def counters(self): return {}
    def connections_of(self, key, dest_key): return None
    def refresh_connections(self): pass
    def close(self, remove=None): pass


def test_health_follows_the_checks_and_the_listeners_hear_each_converge(tmp_path):
    path = tmp_path / "keepalived.conf"
    path.write_text(CONFIG)
    config = load_config(str(path), interface_exists=None).config
    servers = {"10.0.0.1": SimpleNamespace(up=True, drained=False, dynamic_weight=lambda: None),
               "10.0.0.2": SimpleNamespace(up=True, drained=False, dynamic_weight=lambda: None)}
    checks = SimpleNamespace(state_of=lambda name, real: servers[real.address], listeners=[],
                             real_servers=[])
    lb = LoadBalancer(config, checks, "none", Notifier(None))
    lb.backend = Kernel()
    heard = []
    lb.listeners.append(lambda: heard.append(lb.health()))
    try:
        lb.start()
        assert heard[-1] == {NAME: (True, 2)}
        servers["10.0.0.1"].drained = True             # weight 0: in the pool, not live
        lb.changed.set()
        deadline = time.monotonic() + 5
        while heard[-1] != {NAME: (True, 1)} and time.monotonic() < deadline:
            hub.sleep(0.01)
        assert heard[-1] == {NAME: (True, 1)}
        servers["10.0.0.2"].up = False                  # live weight 0 < quorum 2: lost
        lb.changed.set()
        deadline = time.monotonic() + 5
        while heard[-1][NAME][0] and time.monotonic() < deadline:
            hub.sleep(0.01)
        assert heard[-1] == {NAME: (False, 0)}
    finally:
        lb.stop()
