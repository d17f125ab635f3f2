"""The IPVS sync daemons' pure rules: which daemon a role calls for, what to stop and start
to get there, and what a configuration asks for (global_defs or keepalived 1.x's instance
keyword). The kernel side runs in the qemu guest (tests/functional/test_howto_ipvs_qemu.py)."""

from __future__ import annotations

import pytest

from director.config import load_config
from director.config.values import LvsSyncDaemon
from director.vrrp.lvs_sync import BACKUP, MASTER, Daemon, configured, plan, wanted

SETTING = LvsSyncDaemon("eth1", "VI_1")


@pytest.mark.parametrize("role, state", [
    ("MASTER", MASTER), ("BACKUP", BACKUP), ("FAULT", BACKUP), ("INIT", BACKUP),
    ("STOP", None), (None, None)])
def test_master_while_master_backup_otherwise(role, state):
    daemon = wanted(SETTING, role, vrid=51)
    assert (daemon.state if daemon else None) == state
    if daemon:
        assert (daemon.interface, daemon.syncid) == ("eth1", 51)   # sync id: the vrid


def test_given_options_are_kept_and_the_id_wins_over_the_vrid():
    setting = LvsSyncDaemon("eth1", "VI_1", id=7, maxlen=1400, port=8849, ttl=2,
                            group="224.0.0.82")
    assert wanted(setting, "MASTER", 51) == Daemon(MASTER, "eth1", 7, 1400, 8849, 2,
                                                   "224.0.0.82")


KERNEL_MASTER = Daemon(MASTER, "eth1", 51, 1472, 8848, 1, "224.0.0.81")   # as GET_DAEMON says
KERNEL_BACKUP = Daemon(BACKUP, "eth1", 51, 1472, 8848, 1, "224.0.0.81")


@pytest.mark.parametrize("want, running, stop, start", [
    (Daemon(MASTER, "eth1", 51), [KERNEL_MASTER], [], []),                  # in step
    (Daemon(MASTER, "eth1", 51), [], [], [MASTER]),                         # started
    (Daemon(MASTER, "eth1", 51), [KERNEL_BACKUP], [BACKUP], [MASTER]),      # a transition
    (Daemon(BACKUP, "eth1", 77), [KERNEL_BACKUP], [BACKUP], [BACKUP]),      # a new sync id
    (Daemon(BACKUP, "eth2", 51), [KERNEL_BACKUP], [BACKUP], [BACKUP]),      # a new interface
    (Daemon(MASTER, "eth1", 51, port=9000), [KERNEL_MASTER], [MASTER], [MASTER]),
    (None, [KERNEL_MASTER, KERNEL_BACKUP], [MASTER, BACKUP], []),            # stopped
    (Daemon(MASTER, "eth1", 51), [KERNEL_MASTER, KERNEL_BACKUP], [BACKUP], []),
])
def test_plan(want, running, stop, start):
    stops, starts = plan(want, running)
    assert stops == stop and [d.state for d in starts] == start
    assert all(d == want for d in starts)


def config(tmp_path, global_line: str, instance_line: str):
    path = tmp_path / "keepalived.conf"
    path.write_text(f"""global_defs {{
    {global_line}
}}
vrrp_instance VI_1 {{
    interface eth0
    virtual_router_id 51
    {instance_line}
    virtual_ipaddress {{
        192.0.2.1
    }}
}}
vrrp_instance VI_2 {{
    interface eth0
    virtual_router_id 52
    virtual_ipaddress {{
        192.0.2.2
    }}
}}
""")
    result = load_config(str(path), interface_exists=None)
    assert result.ok, result.diagnostics
    return result.config


def test_configured_from_global_defs_or_the_old_instance_keyword(tmp_path):
    assert configured(config(tmp_path, "", "")) is None
    assert configured(config(tmp_path, "lvs_sync_daemon eth2 VI_2 id 9", "")) == \
        LvsSyncDaemon("eth2", "VI_2", id=9)
    assert configured(config(tmp_path, "", "lvs_sync_daemon_interface eth1")) == \
        LvsSyncDaemon("eth1", "VI_1")
    # both: global_defs wins, as in keepalived 2.x
    assert configured(config(tmp_path, "lvs_sync_daemon eth2 VI_2",
                             "lvs_sync_daemon_interface eth1")).interface == "eth2"


@pytest.mark.parametrize("line, message", [
    ("lvs_sync_daemon eth1", "expects INTERFACE VRRP_INSTANCE"),
    ("lvs_sync_daemon eth1 VI_1 id 256", "id must be an integer from 0 to 255"),
    ("lvs_sync_daemon eth1 VI_1 maxlen 0", "maxlen must be an integer from 1 to 65507"),
    ("lvs_sync_daemon eth1 VI_1 group 10.0.0.1", "not a multicast address"),
    ("lvs_sync_daemon eth1 VI_1 bogus 1", "expects INTERFACE VRRP_INSTANCE"),
    ("lvs_sync_daemon eth1 VI_9", "follows vrrp_instance VI_9, which is not defined"),
])
def test_a_bad_line_is_an_error_at_its_line(tmp_path, line, message):
    path = tmp_path / "keepalived.conf"
    path.write_text(f"global_defs {{\n    {line}\n}}\nvrrp_instance VI_1 {{\n"
                    "    interface eth0\n    virtual_router_id 51\n"
                    "    virtual_ipaddress {\n        192.0.2.1\n    }\n}\n")
    result = load_config(str(path), interface_exists=None)
    errors = [str(d) for d in result.errors]
    assert any(f"keepalived.conf:2: error:" in e and message in e for e in errors), errors
