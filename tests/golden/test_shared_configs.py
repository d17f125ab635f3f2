"""The HOWTO's three configs and keepalived's 25 samples (../shared/configs, which CI has):
all pass ``-t``, and ``--dump-json`` shows the HOWTO configs faithfully."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from director import cli
from director.config import load_config
from director.config.render import config_json

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared" / "configs"
GOLDEN = Path(__file__).parent / "howto"

if not SHARED.is_dir():
    pytest.skip(f"{SHARED} is not here (CI lays ../shared beside the clone)",
                allow_module_level=True)

HOWTO = sorted((SHARED / "howto").glob("*.conf"))
SAMPLES = sorted((SHARED / "keepalived-samples").iterdir())


def test_the_shared_corpus_is_complete():
    assert [p.name for p in HOWTO] == ["backup.conf", "master.conf", "two-vips.conf"]
    assert len(SAMPLES) == 25


@pytest.mark.parametrize("path", HOWTO + SAMPLES, ids=lambda p: p.name)
def test_config_test_passes(path, capsys):
    assert cli.main(["-t", "-f", str(path), "-i", "director-test"]) == 0
    err = capsys.readouterr().err
    assert " error: " not in err
    assert "Traceback" not in err


@pytest.mark.parametrize("config_id, priority, script", [
    ("high", 170, "/etc/keepalived/scripts/check_high_VI_0.sh"),
    ("low", 85, "/etc/keepalived/scripts/check_low_VI_0.sh"),
    ("other", 100, None),
])
def test_conditional_sample_follows_the_config_id(config_id, priority, script):
    result = load_config(str(SHARED / "keepalived-samples" / "keepalived.conf.conditional_conf"),
                         config_id=config_id, interface_exists=None)
    assert result.ok
    assert result.config.vrrp_instances[0].priority == priority
    found = result.config.vrrp_scripts[0].script
    assert (found.line if found else None) == script


def test_the_command_line_runs_as_a_program():
    path = SHARED / "howto" / "master.conf"
    done = subprocess.run([sys.executable, "-m", "director", "-t", "-f", str(path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "master.conf:38: warning: unknown keyword 'lvs_sync_daemon_inteface' in " \
           "vrrp_instance (did you mean 'lvs_sync_daemon_interface'?)" in done.stderr


def howto_json(name: str) -> dict:
    result = load_config(str(SHARED / "howto" / name), config_id="director-test",
                         interface_exists=None)
    assert result.ok, [str(d) for d in result.errors]
    return json.loads(json.dumps(config_json(result.config, "director-test")))


@pytest.mark.parametrize("name", [p.name for p in HOWTO])
def test_howto_json_matches_golden_file(name):
    data = howto_json(name)
    golden = GOLDEN / name.replace(".conf", ".json")
    if os.environ.get("UPDATE_GOLDEN"):
        golden.write_text(json.dumps(data, indent=2) + "\n")
    assert data == json.loads(golden.read_text())


def instance(data, name):
    return next(i for i in data["vrrp"]["instances"] if i["name"] == name)


def server(data, name):
    return next(s for s in data["virtual_servers"] if s["name"] == name)


@pytest.mark.parametrize("name, router_id, state, priority", [
    ("master.conf", "LVS_EXAMPLE_01", "MASTER", 150),
    ("backup.conf", "LVS_EXAMPLE_02", "BACKUP", 100),
])
def test_howto_master_and_backup_values(name, router_id, state, priority):
    data = howto_json(name)
    assert data["router_id"] == router_id
    defs = data["global_defs"]
    assert defs["notification_email"] == ["admins@example.com", "fakepager@example.com"]
    assert defs["notification_email_from"] == "admins@example.com"
    assert defs["smtp_server"] == ["127.0.0.1", None]
    assert defs["smtp_connect_timeout"] == 30
    assert data["vrrp"]["sync_groups"][0]["name"] == "VG1"
    assert data["vrrp"]["sync_groups"][0]["instances"] == ["VI_1", "VI_GATEWAY"]
    for name_, interface, vrid, vips in [("VI_1", "eth0", 51, ["192.168.1.11/32"]),
                                        ("VI_GATEWAY", "eth1", 52, ["10.20.40.1/32"])]:
        inst = instance(data, name_)
        assert (inst["interface"], inst["vrid"], inst["vips"]) == (interface, vrid, vips)
        assert (inst["initial_state"], inst["priority"]) == (state, priority)
        assert inst["advert_int"] == 1.0 and inst["smtp_alert"] is True
        assert inst["authentication"] == {"auth_type": "PASS", "auth_pass": "********"}
        assert inst["sync_group"] == "VG1"
        assert "state" not in inst, "a live field has no place in --dump-json"
    (vs,) = data["virtual_servers"]
    assert vs["name"] == "192.168.1.11:22/TCP"
    assert (vs["delay_loop"], vs["lb_algo"], vs["lb_kind"], vs["protocol"]) == \
        (6.0, "rr", "NAT", "TCP")
    (rs,) = vs["real_servers"]
    assert (rs["address"], rs["port"], rs["weight"], rs["checker"]) == \
        ("10.20.40.10", 22, 1, "TCP_CHECK")
    (check,) = rs["checkers"]
    assert (check["connect_timeout"], check["connect_port"]) == (3.0, 22)


def test_howto_two_vips_values():
    data = howto_json("two-vips.conf")
    assert instance(data, "VI_1")["vips"] == ["192.168.1.11/32", "192.168.1.12/32"]
    ssh = server(data, "192.168.1.12:22/TCP")
    assert [(r["address"], r["port"]) for r in ssh["real_servers"]] == \
        [("10.20.40.20", 22), ("10.20.40.21", 22)]
    assert all(r["checkers"][0]["connect_timeout"] == 3.0 for r in ssh["real_servers"])
    for port, kind in [(80, "HTTP_GET"), (443, "SSL_GET")]:
        vs = server(data, f"192.168.1.11:{port}/TCP")
        assert (vs["delay_loop"], vs["virtualhost"]) == (10.0, "www.example.com")
        assert [r["address"] for r in vs["real_servers"]] == ["10.20.40.10", "10.20.40.11"]
        for rs in vs["real_servers"]:
            assert rs["port"] == port and rs["checker"] == kind
            (check,) = rs["checkers"]
            assert check["kind"] == kind
            assert [(u["path"], u["digest"]) for u in check["url"]] == \
                [("/test.html", "422834d1d2b972eee9e5b875e4bd8c33")]
            assert (check["connect_timeout"], check["connect_port"], check["retry"],
                    check["delay_before_retry"]) == (10.0, 80, 3, 10.0)


def test_secrets_never_leave_the_model(capsys):
    path = str(SHARED / "keepalived-samples" / "keepalived.conf.vrrp")  # auth_pass 1111
    for flags in (["--dump-json"], ["-d"]):
        assert cli.main([*flags, "-f", path, "-i", "director-test"]) == 0
        out = capsys.readouterr().out
        assert "1111" not in out and "********" in out
