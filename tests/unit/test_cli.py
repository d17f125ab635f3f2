"""The command line's contract: -t exit codes and diagnostic format, dumps, subcommands."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

from director import cli

DIAGNOSTIC = re.compile(r"^(?P<file>[^:]+):(?P<line>\d+): (?P<severity>error|warning): .+$")

VALID = """global_defs {
    router_id lb-test
}
vrrp_instance VI_1 {
    state MASTER
    interface lo
    virtual_router_id 51
    priority 150
    authentication {
        auth_type PASS
        auth_pass s3cr3tpw
    }
    virtual_ipaddress {
        10.0.0.1/24
    }
}
virtual_server 10.0.0.1 80 {
    lb_algo rr
    protocol TCP
    real_server 10.0.1.1 80 {
        TCP_CHECK {
            connect_timeout 2
        }
    }
}
"""


def write(tmp_path, text, name="keepalived.conf"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_valid_config_exits_0(tmp_path, capsys):
    assert cli.main(["-t", "-f", write(tmp_path, VALID)]) == 0
    assert capsys.readouterr().err == ""


def test_errors_exit_1_with_one_diagnostic_per_line(tmp_path, capsys):
    path = write(tmp_path, VALID.replace("priority 150", "priorty 150")
                 .replace("virtual_router_id 51", "virtual_router_id 300"))
    assert cli.main(["-t", "-f", path]) == 1
    lines = capsys.readouterr().err.splitlines()
    diagnostics = [line for line in lines if DIAGNOSTIC.match(line)]
    assert diagnostics == [
        f"{path}:7: error: virtual_router_id: must be an integer from 1 to 255, got 300",
        f"{path}:8: error: unknown keyword 'priorty' in vrrp_instance (did you mean "
        "'priority'?)",
        f"{path}:4: warning: vrrp_instance VI_1: 'state MASTER' without 'priority' means "
        "priority 255 (address owner), as in keepalived; set a priority to share the address",
    ]
    assert lines[-1] == f"director: {path}: 2 error(s), 1 warning(s)"


def test_unreadable_file_exits_2(tmp_path, capsys):
    assert cli.main(["-t", "-f", str(tmp_path / "missing.conf")]) == 2
    assert "cannot read configuration" in capsys.readouterr().err
    (tmp_path / "dir.conf").mkdir()
    assert cli.main(["-t", "-f", str(tmp_path / "dir.conf")]) == 2


def test_dump_json_has_the_contract_shape_and_no_secret(tmp_path, capsys):
    assert cli.main(["--dump-json", "-f", write(tmp_path, VALID)]) == 0
    out = capsys.readouterr().out
    assert "s3cr3tpw" not in out
    data = json.loads(out)
    assert data["router_id"] == "lb-test"
    (instance,) = data["vrrp"]["instances"]
    assert {k: instance[k] for k in ("name", "vrid", "interface", "priority",
                                     "effective_priority", "vips", "sync_group")} == \
        {"name": "VI_1", "vrid": 51, "interface": "lo", "priority": 150,
         "effective_priority": 150, "vips": ["10.0.0.1/24"], "sync_group": None}
    (server,) = data["virtual_servers"]
    assert {k: server[k] for k in ("name", "address", "port", "fwmark", "protocol", "lb_algo",
                                   "lb_kind")} == \
        {"name": "10.0.0.1:80/TCP", "address": "10.0.0.1", "port": 80, "fwmark": None,
         "protocol": "TCP", "lb_algo": "rr", "lb_kind": "NAT"}
    (real,) = server["real_servers"]
    assert {k: real[k] for k in ("address", "port", "weight", "configured_weight",
                                 "checker")} == \
        {"address": "10.0.1.1", "port": 80, "weight": 1, "configured_weight": 1,
         "checker": "TCP_CHECK"}
    for live in ("state", "up", "last_check", "master_ip"):
        assert live not in instance and live not in real


def test_dump_conf_masks_the_password(tmp_path, capsys):
    assert cli.main(["-d", "-f", write(tmp_path, VALID)]) == 0
    out = capsys.readouterr().out
    assert "Auth pass = ********" in out and "s3cr3tpw" not in out
    assert " VRRP instance = VI_1" in out and " Virtual server = 10.0.0.1:80/TCP" in out


def test_config_id_selects_conditional_lines(tmp_path, capsys):
    path = write(tmp_path, VALID.replace("priority 150", "@lb1 priority 150\n@lb2 priority 50"))
    assert cli.main(["--dump-json", "-f", path, "-i", "lb2"]) == 0
    assert json.loads(capsys.readouterr().out)["vrrp"]["instances"][0]["priority"] == 50


def test_contract_flags_are_accepted(tmp_path):
    args = cli.parser().parse_args(["-f", "x", "-P", "-C", "-n", "-l", "-D", "-p", "/run/d.pid",
                                    "-i", "a", "--web", "off", "--backend", "none",
                                    "--state-dir", "/tmp/s"])
    assert (args.vrrp, args.check, args.web, args.backend) == (True, True, "off", "none")


def test_genhash_subcommand_is_wired(capsys):
    assert cli.main(["genhash", "--help"]) == 0
    assert "--use-ssl" in capsys.readouterr().out


def _imports_gevent(*args: str) -> bool:
    """Does ``python -m director ARGS`` import gevent (-X importtime lists every import)?"""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "director", *args],
                          capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, PYTHONPATH=root), cwd=root)
    return any(line.split("|")[-1].strip() == "gevent" for line in done.stderr.splitlines()
               if line.startswith("import time:"))


def test_config_test_does_without_gevent(tmp_path):
    """-t exits after the check: gevent's patching is the daemon's (issue 17)."""
    path = write(tmp_path, VALID)
    assert not _imports_gevent("-t", "-f", path)
    assert not _imports_gevent("--config-test", "-f", path)
    assert _imports_gevent("-d", "-f", path)         # the rest patched as before


def _run(*args: str, importtime: bool = False) -> subprocess.CompletedProcess:
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    flags = ["-X", "importtime"] if importtime else []
    env = dict(os.environ, PYTHONPATH=root)
    env.pop("PYTHONUNBUFFERED", None)       # stdout block-buffered, as a pipe has it
    return subprocess.run([sys.executable, *flags, "-m", "director", *args],
                          capture_output=True, text=True, timeout=120, env=env, cwd=root)


def test_config_test_imports_only_what_it_needs(tmp_path):
    """-t of a file without a misspelt keyword, ${_RANDOM}, script, include pattern or
    override_peers: none of the modules only those need (issue 17)."""
    done = _run("-t", "-f", write(tmp_path, VALID), importtime=True)
    assert done.returncode == 0, done.stderr
    imported = {line.split("|")[-1].strip() for line in done.stderr.splitlines()
                if line.startswith("import time:")}
    assert "director.config.loader" in imported            # the listing is read right
    assert not imported & {"difflib", "random", "director.scriptsec", "json", "socket", "glob",
                           "urllib.parse", "shutil"}


def test_process_leaves_with_the_verdict_and_output_written(tmp_path, capsys):
    """``python -m director`` ends -t and the dumps with os._exit (cli._leave): what the
    process prints through pipes (block-buffered) is what cli.main prints, exit code
    included, for a valid file, a file with errors and --dump-json."""
    valid = write(tmp_path, VALID)
    broken = write(tmp_path, VALID.replace("priority 150", "priority 999\n    bogus_kw 1"),
                   "broken.conf")
    for args in (["-t", "-f", valid], ["-t", "-f", broken], ["--dump-json", "-f", valid],
                 ["-d", "-f", valid]):
        args += ["-i", "lb-test"]
        code = cli.main(args)
        printed = capsys.readouterr()
        done = _run(*args)
        assert (done.returncode, done.stdout, done.stderr) == (code, printed.out, printed.err)
    assert done.stdout and code == 0
    assert _run("-t", "-f", broken).returncode == 1


def test_help_is_argparse_own_at_any_width(monkeypatch):
    """cli's formatter finds the width as shutil would (without importing it, issue 17)."""
    import argparse
    for columns in ("", "40", "0", "x", "200"):
        monkeypatch.setenv("COLUMNS", columns)
        plain = cli.parser()
        plain.formatter_class = argparse.HelpFormatter
        assert cli.parser().format_help() == plain.format_help()
    assert cli._columns() == 200
