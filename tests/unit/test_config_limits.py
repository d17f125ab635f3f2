"""Absurd input gives one clear error, fast: bounded diagnostics, early stops, size limits.
A large valid configuration still loads."""

from __future__ import annotations

import random

from director import cli
from director.config import lexer, load_config
from director.config.diagnostics import Diagnostics, Location

GARBAGE_WORDS = ["vrrp_instance", "virtual_server", "priority", "weight", "state", "MASTER",
                 "eth0", "10.0.0.1", "80", "foo", "bar", "delay_loop", "rr", "{", "}"]


def load(tmp_path, text: str):
    path = tmp_path / "keepalived.conf"
    path.write_text(text)
    return load_config(str(path), config_id="t", interface_exists=None)


def test_errors_past_the_limit_stop_checking_and_say_so_once():
    diagnostics = Diagnostics(max_errors=3)
    for line in range(1, 7):
        diagnostics.error(Location("f", line), f"e{line}")
    assert diagnostics.stopped
    assert [str(d) for d in diagnostics] == [
        "f:1: error: e1", "f:2: error: e2", "f:3: error: e3",
        "f:4: error: too many errors (more than 3): checking stopped here, the rest of the "
        "configuration is not checked"]


def test_warnings_past_the_limit_are_counted_not_kept():
    diagnostics = Diagnostics(max_warnings=2)
    for line in range(1, 6):
        diagnostics.warning(Location("f", line), f"w{line}")
    assert not diagnostics.stopped and not diagnostics.has_errors()
    assert [str(d) for d in diagnostics] == [
        "f:1: warning: w1", "f:2: warning: w2", "f:3: warning: too many warnings (3 more not "
                                                "shown)"]


def test_a_fatal_error_stops_checking_even_past_the_limit():
    diagnostics = Diagnostics(max_errors=1)
    diagnostics.error(Location("f", 1), "e1")
    diagnostics.fatal(Location("f", 2), "binary")
    diagnostics.error(Location("f", 3), "e3")
    assert diagnostics.stopped
    assert [d.message for d in diagnostics] == ["e1", "binary"]


def test_garbage_words_give_two_hundred_errors_and_stop_early(tmp_path):
    rng = random.Random(12)
    text = "".join(" ".join(rng.choice(GARBAGE_WORDS[:-2]) for _ in range(rng.randint(1, 6)))
                   + "\n" for _ in range(20_000))
    result = load(tmp_path, text)
    assert not result.ok
    assert len(result.diagnostics) == 201
    last = result.diagnostics[-1]
    assert (last.location.line, last.message) == (
        201, "too many errors (more than 200): checking stopped here, the rest of the "
             "configuration is not checked")


def test_stray_braces_stop_the_tree_builder(tmp_path):
    result = load(tmp_path, "}\n" * 5000)
    assert len(result.diagnostics) == 201
    assert result.diagnostics[0].message == "unexpected '}': no block is open here"
    assert result.diagnostics[-1].location.line == 201


def test_many_warnings_are_capped_with_a_count(tmp_path):
    result = load(tmp_path, "global_defs {\n" + "    router_id a\n" * 400 + "}\n"
                            "virtual_server 10.0.0.1 80 {\n protocol TCP\n"
                            " real_server 10.0.0.2 80 {\n }\n}\n")
    assert result.ok
    assert len(result.warnings) == 201
    assert result.warnings[-1].message == "too many warnings (199 more not shown)"


def test_a_large_valid_configuration_still_loads(tmp_path):
    lines = ["global_defs {", "    router_id LB1", "}"]
    server = 0
    while len(lines) < 100_000:
        server += 1
        lines += [f"virtual_server 10.{server >> 8 & 255}.{server & 255}.1 80 {{   "
                  "! a generated pool",
                  "    delay_loop 6", "    lb_algo wrr", "    lb_kind NAT", "    protocol TCP"]
        for real in range(3):
            lines += [f"    real_server 172.16.{server & 255}.{real + 10} 8080 {{",
                      "        weight 1            ! share of the connections",
                      "        TCP_CHECK {", "            connect_timeout 3    ! seconds",
                      "            retry 3              ! failed attempts before down",
                      "        }", "    }"]
        lines.append("}")
    text = "\n".join(lines) + "\n"
    assert len(text) > 3_000_000
    result = load(tmp_path, text)
    assert result.ok, [str(d) for d in result.errors][:3]
    assert len(result.config.virtual_servers) == server


def test_config_test_of_a_file_past_the_limit_is_one_line(tmp_path, capsys):
    path = tmp_path / "huge.conf"
    path.write_bytes(b"priority 100\n" * (lexer.MAX_FILE_BYTES // 13 + 1))
    assert cli.main(["-t", "-f", str(path)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[0] == (f"{path}:1: error: {path} is larger than 16 MiB, the limit for one file: "
                      "not a configuration file director reads")
    assert len(err) <= 2      # and the summary line of -t, if it prints one
