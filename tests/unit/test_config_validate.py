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
