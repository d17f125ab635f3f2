"""Checks across the whole configuration (validate.py) that no single block can make."""

from __future__ import annotations

import pytest

from director import cli
from director.config import load_config

EMPTY = ("warning: the configuration defines no vrrp_instance and no virtual_server: a reload "
         "with it removes every instance and pool")


def load(tmp_path, text: str):
    path = tmp_path / "keepalived.conf"
    path.write_text(text)
    return load_config(str(path), config_id="t", interface_exists=None)


@pytest.mark.parametrize("text", ["", "! only a comment\n\n",
                                  "global_defs {\n    router_id LB1\n}\n"])
def test_a_configuration_with_nothing_to_run_is_a_warning(tmp_path, text):
    result = load(tmp_path, text)
    assert result.ok
    assert [f"{d.location.line}: {d.severity}: {d.message}" for d in result.diagnostics] == \
        [f"1: {EMPTY}"]


@pytest.mark.parametrize("text", [
    "vrrp_instance VI_1 {\n interface eth0\n virtual_router_id 1\n"
    " virtual_ipaddress {\n  10.0.0.1\n }\n}\n",
    "virtual_server 10.0.0.1 80 {\n protocol TCP\n real_server 10.0.0.2 80 {\n }\n}\n",
])
def test_one_instance_or_one_pool_is_enough(tmp_path, text):
    result = load(tmp_path, text)
    assert result.ok
    assert EMPTY.split(": ", 1)[1] not in [d.message for d in result.diagnostics]


def test_no_such_warning_on_top_of_errors(tmp_path):
    result = load(tmp_path, "global_defs {\n    router_id\n}\n")
    assert [d.severity for d in result.diagnostics] == ["error"]


def test_config_test_of_an_empty_file_says_so_and_exits_0(tmp_path, capsys):
    path = tmp_path / "empty.conf"
    path.write_text("")
    assert cli.main(["-t", "-f", str(path)]) == 0
    assert f"{path}:1: {EMPTY}" in capsys.readouterr().err


SCRIPTS = """global_defs {
    script_user nobody
    vrrp_notify_fifo /run/fifo
    vrrp_notify_fifo_script /bin/fifo_script
}
vrrp_script chk {
    script "/bin/chk arg"
    user checker
}
vrrp_instance VI_1 {
    interface eth0
    virtual_router_id 1
    notify_master "/bin/up 1" alice staff
    notify_backup /bin/down
    virtual_ipaddress {
        10.0.0.1
    }
}
vrrp_sync_group G {
    group {
        VI_1
    }
    notify /bin/group
}
virtual_server 10.0.0.1 80 {
    protocol TCP
    quorum_up /bin/quorum
    real_server 10.0.0.2 80 {
        notify_up /bin/rs_up bob
        MISC_CHECK {
            misc_path /bin/misc
            user miscuser
        }
        TCP_CHECK {
            connect_timeout 3
        }
    }
    real_server 10.0.0.3 80 {
    }
}
"""


def test_every_script_of_the_model_is_found_with_its_line_and_user(tmp_path):
    """The walk -t's script check makes over the model (validate._commands): every Command
    in any block, each at its block's line and run as its own USER, else its block's user,
    else script_user."""
    from director.config.validate import _commands
    config = load(tmp_path, SCRIPTS).config
    found = [(where.line, keyword, command.line, user)
             for where, keyword, command, user in _commands(config, config.location,
                                                            "nobody", lambda: None)]
    assert sorted(found) == sorted([
        (1, "vrrp_notify_fifo_script", "/bin/fifo_script", "nobody"),
        (6, "script", "/bin/chk arg", "checker"),
        (10, "notify_master", "/bin/up 1", "alice staff"),
        (10, "notify_backup", "/bin/down", "nobody"),
        (19, "notify", "/bin/group", "nobody"),
        (25, "quorum_up", "/bin/quorum", "nobody"),
        (28, "notify_up", "/bin/rs_up", "bob"),
        (30, "misc_path", "/bin/misc", "miscuser"),
    ])
