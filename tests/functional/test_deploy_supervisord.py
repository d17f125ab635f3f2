"""The shipped supervisord program section, run by real supervisord in a lab namespace: the
daemon holds the VIP and programs nftables; ``supervisorctl stop`` removes the VIP and the
daemon exits 0; after ``kill -9`` supervisord restarts it and the state converges again:
one copy of the VIP, one rule per service in the table, the pool's entries once each.
The systemd unit is checked for what operators rely on."""

from __future__ import annotations

import configparser
import os
import shutil
import signal
import sys
from pathlib import Path

import pytest

from tests.functional.lab import wait_for
from tests.functional.test_vrrp_failover import VIP, vrrp_config

pytestmark = [pytest.mark.netns, pytest.mark.slow, pytest.mark.timeout(120)]

ROOT = Path(__file__).resolve().parents[2]
PROGRAM = ROOT / "deploy" / "supervisor" / "director.conf"
UNIT = ROOT / "deploy" / "systemd" / "director.service"
REAL = "192.0.2.11"

CONFIG = vrrp_config(150, password=None) + f"""virtual_server {VIP} 80 {{
    delay_loop 1
    lb_algo rr
    lb_kind NAT
    protocol TCP
    real_server {REAL} 80 {{
        TCP_CHECK {{
            connect_timeout 1
        }}
    }}
}}
"""


def shipped_program() -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser(inline_comment_prefixes=(";",))
    parser.read(PROGRAM)
    return parser


def test_shipped_files_say_what_operators_rely_on():
    program = shipped_program()["program:director"]
    assert program["stopsignal"] == "TERM" and int(program["stopwaitsecs"]) >= 2
    assert program["autorestart"] == "true"
    unit = configparser.RawConfigParser(strict=False)
    unit.read(UNIT)
    service = unit["Service"]
    assert service["KillSignal"] == "SIGTERM" and service["Restart"] == "on-failure"
    assert service["ExecReload"] == "/bin/kill -HUP $MAINPID"
    # the pid file in the unit's own runtime directory, where ProtectSystem=strict lets it go
    assert service["PIDFile"] == "/run/director/director.pid"
    assert " -t " in service["ExecStartPre"] and f"-p {service['PIDFile']}" in service["ExecStart"]


def supervisor_config(lab, folder: Path) -> Path:
    """supervisord's own sections for the lab, and the shipped program section with only
    the command (this checkout, the lab's files) and the log path changed."""
    program = shipped_program()
    section = program["program:director"]
    section["command"] = (f"{sys.executable} -m director -f {folder / 'keepalived.conf'} -l "
                          f"-p {folder / 'director.pid'} --state-dir {folder / 'state'} "
                          "--backend nftables --web off")
    section["directory"] = str(ROOT)
    section["environment"] = f'PYTHONPATH="{ROOT}"'
    section["stdout_logfile"] = str(folder / "director.log")
    program["supervisord"] = {"logfile": str(folder / "supervisord.log"),
                              "pidfile": str(folder / "supervisord.pid"),
                              "childlogdir": str(folder)}
    program["unix_http_server"] = {"file": str(folder / "supervisor.sock")}
    program["rpcinterface:supervisor"] = {
        "supervisor.rpcinterface_factory": "supervisor.rpcinterface:make_main_rpcinterface"}
    program["supervisorctl"] = {"serverurl": f"unix://{folder / 'supervisor.sock'}"}
    path = folder / "supervisord.conf"
    with open(path, "w") as handle:
        program.write(handle)
    return path


def test_supervisord_stops_restarts_and_the_state_converges(lab):
    if shutil.which("supervisord") is None:
        pytest.skip("supervisord missing (apt-get install supervisor)")
    if shutil.which("nft") is None:
        pytest.skip("nft missing (apt-get install nftables)")
    switch = lab.switch()
    lb = lab.host("lb", links=[(switch, "eth0", ["192.0.2.1/24"])])
    rs = lab.host("rs", links=[(switch, "eth0", [f"{REAL}/24"])])
    rs.popen([sys.executable, "-m", "http.server", "80", "--bind", REAL,
              "--directory", str(lab.tmp)])
    folder = lab.tmp / "deploy"
    folder.mkdir()
    (folder / "keepalived.conf").write_text(CONFIG)
    conf = supervisor_config(lab, folder)
    supervisord = lb.popen(["supervisord", "-n", "-c", conf])

    def ctl(*args: str) -> str:
        return lb.run(["supervisorctl", "-c", conf, *args], check=False).stdout

    def log() -> str:
        return "\n".join(path.read_text() for path in sorted(folder.glob("*.log")))

    def vip_copies() -> int:
        return lb.run(["ip", "-o", "addr", "show", "dev", "eth0"]).stdout.count(f" {VIP}/")

    def table() -> str:
        return lb.run(["nft", "list", "table", "inet", "director"], check=False).stdout

    def converged() -> bool:
        return vip_copies() == 1 and table().count(f"ip daddr {VIP} tcp dport 80") == 1 and \
            table().count(f"dnat ip to {REAL}:80") == 1

    wait_for(lambda: "RUNNING" in ctl("status", "director"), 15,
             message=lambda: f"{ctl('status')}\n{lab.log_of(supervisord)}\n{log()}")
    wait_for(converged, 10, message=lambda: f"{table()}\n{log()}")

    ctl("stop", "director")
    wait_for(lambda: "STOPPED" in ctl("status", "director"), 15, message=log)
    assert vip_copies() == 0
    assert "exit status 0" in (folder / "supervisord.log").read_text()

    ctl("start", "director")
    wait_for(converged, 15, message=lambda: f"{ctl('status')}\n{log()}")
    pid = int(ctl("pid", "director").strip())
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: ctl("pid", "director").strip() not in ("", "0", str(pid)) and
             "RUNNING" in ctl("status", "director"), 15, message=log)
    assert vip_copies() <= 1                 # a killed run's VIP is removed, never doubled
    wait_for(converged, 15, message=lambda: f"{table()}\n{log()}")
    assert "leftover_removed" in log()
    ctl("shutdown")
    assert supervisord.wait(15) == 0
