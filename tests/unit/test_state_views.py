"""The views the services return of themselves (director/state.py), without sockets: a
VrrpService built from a configuration (its constructor touches nothing) with instances and
a sync group as its start-up would make them, and the views' own rules."""

from __future__ import annotations

import tempfile
from pathlib import Path

from director.clock import FakeClock
from director.config import load_config
from director.state import RealServerView, Traffic, VirtualServerView, static_json
from director.vrrp.instance import Instance
from director.vrrp.service import VrrpService
from director.vrrp.sync import SyncGroup

CONFIG = """
vrrp_sync_group VG1 {
    group {
        VI_1
        VI_2
    }
}
""" + "".join(f"""
vrrp_instance {name} {{
    interface eth0
    virtual_router_id {vrid}
    priority 150
    virtual_ipaddress {{
        192.0.2.{vrid}/24
    }}
}}
""" for name, vrid in (("VI_1", 51), ("VI_2", 52), ("VI_ALONE", 53))) + """
virtual_server 192.0.2.51 80 {
    quorum 2
    sorry_server 192.0.2.99 8080
    real_server 10.0.0.1 80 {
        TCP_CHECK {
        }
    }
    real_server 10.0.0.2 80 {
    }
}
"""


def configuration():
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "keepalived.conf"
        path.write_text(CONFIG)
        result = load_config(str(path), config_id="lb1", interface_exists=None)
    assert result.ok, [str(d) for d in result.errors]
    return result.config


def vrrp_service(config) -> VrrpService:
    """The service with its instances and sync group as start() builds them (no socket: an
    instance only sends when it runs)."""
    clock = FakeClock()
    service = VrrpService(config, clock, announcer=None)
    for item in config.vrrp_instances:
        instance = Instance(item, config.global_defs, 2, 4, clock, service.addresses, None, None)
        instance.prepare("192.0.2.1")
        service.instances.append(instance)
    by_name = {instance.name: instance for instance in service.instances}
    service.sync_groups.append(SyncGroup("VG1", [by_name["VI_1"], by_name["VI_2"]]))
    return service


def test_each_instance_names_its_sync_group_and_the_drops_no_instance_knew_are_there():
    service = vrrp_service(configuration())
    service.dropped[("eth0", "vrid")] = 4
    service.dropped[("eth0", "length")] = 3
    view = service.snapshot()
    assert {i.name: i.sync_group for i in view.instances} == \
        {"VI_1": "VG1", "VI_2": "VG1", "VI_ALONE": None}
    assert [(g.name, g.instances, g.state) for g in view.sync_groups] == \
        [("VG1", ("VI_1", "VI_2"), "INIT")]
    data = view.as_json()
    assert data["dropped_by_interface"] == {"eth0/length": 3, "eth0/vrid": 4}
    assert [i["sync_group"] for i in data["instances"]] == ["VG1", "VG1", None]
    # a view is of its moment: the counters going on do not change it
    service.dropped[("eth0", "vrid")] = 5
    service.instances[0].counters.dropped["ttl"] = 1
    assert view.dropped_by_interface[("eth0", "vrid")] == 4
    assert dict(view.instances[0].counters.dropped) == {}


def test_a_configurations_views_have_no_live_values():
    (virtual,) = configuration().virtual_servers
    view = VirtualServerView.of(virtual, tuple(RealServerView.of(r)
                                               for r in virtual.real_servers))
    assert view.name == "192.0.2.51:80/TCP" and view.sorry_server == "192.0.2.99:8080"
    assert [(r.name, r.checker, r.up, r.weight) for r in view.real_servers] == \
        [("10.0.0.1:80", "TCP_CHECK", None, None), ("10.0.0.2:80", None, None, None)]
    assert view.up == 0 and not view.sorry_server_active
    assert static_json(view).keys().isdisjoint(VirtualServerView.LIVE)
    lost = VirtualServerView.of(virtual, (), quorum_ok=False)
    assert lost.sorry_server_active and lost.as_json()["sorry_server_active"] is True


def test_traffic_adds_up_what_is_there():
    assert Traffic.total([None, None]) is None
    one = Traffic(1, 2, 3, 4, 5)
    assert Traffic.total([one, None]) is one
    assert Traffic.total([one, Traffic(10, 20, 30, 40, 50)]) == Traffic(11, 22, 33, 44, 55)


def test_the_load_balancers_view_says_what_its_status_says(tmp_path):
    """What reaches /api/v1/state is view(); status() is what its own tests read. A field
    added to one and not the other (the backend's warnings were) fails here."""
    from tests.unit.test_lb_nftables import LIMITS, LIMITS_CONFIG, _balancer, _load
    balancer = _balancer(_load(tmp_path, LIMITS_CONFIG), "nftables")
    try:
        balancer.start()
        assert balancer.view().as_json() == balancer.status()
        assert list(balancer.view().warnings) == LIMITS
    finally:
        balancer.stop()
