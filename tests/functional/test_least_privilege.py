"""Least privilege, proven: the daemon does its whole job (VRRP against keepalived, nftables,
checks, scripts as another user, priority 0 on TERM) under capsh with only the capabilities
the systemd unit grants, enable_script_security refuses real world-writable scripts, and a
state directory another user could change stops the start-up."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.functional.lab import start_keepalived, wait_for
from tests.functional.test_lb_daemon_nftables import real_servers
from tests.functional.test_lb_nftables_netns import SERVERS, VIP, requests
from tests.functional.test_vrrp_failover import down_interval, vrrp_config
from tests.unit.test_systemd_unit import unit_capabilities

pytestmark = [pytest.mark.netns, pytest.mark.slow, pytest.mark.timeout(120)]

REPO = Path(__file__).resolve().parents[2]
GATEWAY = "10.20.40.1"


def decode(mask: str) -> set[str]:
    """A /proc status capability mask -> names (capsh --decode)."""
    out = subprocess.run(["capsh", f"--decode={mask}"], capture_output=True, text=True,
                         timeout=10, check=True).stdout
    names = out.strip().partition("=")[2]
    return set(names.split(",")) if names else set()


def capabilities_of(pid: int) -> dict[str, set[str]]:
    status = Path(f"/proc/{pid}/status").read_text()
    return {key: decode(value) for key, value in re.findall(r"^(Cap\w+):\s+(\w+)$", status,
                                                            re.MULTILINE)}


def under_capsh(argv: list[str], keep: set[str]) -> list[str]:
    """argv run as root whose bounding and inheritable sets are only ``keep``: what root can
    hold after exec is then exactly ``keep`` (file capabilities of root = all, masked)."""
    current = subprocess.run(["capsh", "--print"], capture_output=True, text=True, timeout=10,
                             check=True).stdout
    bounding = set(re.search(r"^Bounding set =(.*)$", current, re.MULTILINE).group(1).split(","))
    drop = sorted(bounding - keep)
    return ["capsh", f"--inh={','.join(sorted(keep))}", f"--drop={','.join(drop)}", "--",
            "-c", 'exec "$0" "$@"', *argv]


@pytest.fixture
def scripts():
    """Scripts in a directory under /tmp that the user nobody can reach (lab.tmp is 0700):
    safe ones (root's, 0755) and, in a world-writable directory, unsafe ones."""
    top = Path(tempfile.mkdtemp(dir="/tmp", prefix="director-scripts-"))
    top.chmod(0o755)
    out, open_dir = top / "out", top / "open"
    for folder in (out, open_dir):
        folder.mkdir()
        folder.chmod(0o777)
    (top / "master.sh").write_text(f"#!/bin/sh\nid -u > {out}/master\n")
    (open_dir / "notify.sh").write_text(f"#!/bin/sh\ntouch {out}/unsafe-notify-ran\n")
    (open_dir / "check.sh").write_text("#!/bin/sh\nexit 0\n")
    for script in (top / "master.sh", open_dir / "notify.sh", open_dir / "check.sh"):
        script.chmod(0o755)
    yield top
    shutil.rmtree(top)


def director_config(scripts: Path) -> str:
    notify = (f'    notify_master "{scripts}/master.sh"\n'
              f'    notify "{scripts}/open/notify.sh" root\n')
    reals = "".join(f"""
    real_server {address} 80 {{
        TCP_CHECK {{
            connect_timeout 1
        }}
    }}""" for address in (SERVERS["rs1"], SERVERS["rs2"]))
    return f"""global_defs {{
    script_user nobody
    enable_script_security
}}
{vrrp_config(150, vips=(f"{VIP}/24",), extra=notify)}
virtual_server {VIP} 80 {{
    delay_loop 1
    lb_algo rr
    lb_kind NAT
    protocol TCP{reals}
    real_server {SERVERS["rs3"]} 80 {{
        MISC_CHECK {{
            misc_path "{scripts}/open/check.sh"
            user root
        }}
    }}
}}
"""


def test_the_daemon_does_its_job_with_only_the_units_capabilities(lab, scripts):
    if shutil.which("nft") is None or shutil.which("capsh") is None:
        pytest.skip("nft and capsh are needed (apt-get install nftables libcap2-bin)")
    keep = unit_capabilities()
    assert {"cap_net_admin", "cap_net_raw"} <= keep and "cap_sys_admin" not in keep
    client_side, server_side = lab.switch("cs"), lab.switch("ss")
    client = lab.host("client", links=[(client_side, "eth0", ["203.0.113.2/24"])])
    peer = lab.host("peer", links=[(client_side, "eth0", ["203.0.113.3/24"])])
    director = lab.host("director", sysctls={"net.ipv4.ip_forward": 1},
                        links=[(client_side, "eth0", ["203.0.113.1/24"]),
                               (server_side, "eth1", [f"{GATEWAY}/24"])])
    hosts, servers = real_servers(lab, server_side, SERVERS)

    folder = Path(lab.tmp) / "director"
    folder.mkdir()
    (folder / "keepalived.conf").write_text(director_config(scripts))
    daemon = director.popen(under_capsh(
        [sys.executable, "-m", "director", "-l", "-D", "-f", str(folder / "keepalived.conf"),
         "--backend", "nftables", "--web", "off", "--state-dir", str(folder / "state"),
         "-p", str(folder / "pid")], keep), log_path=str(folder / "log"),
        env={"PYTHONPATH": str(REPO)})
    log = lambda: lab.log_of(daemon)                                  # noqa: E731
    wait_for(lambda: director.has_address("eth0", VIP), down_interval(150) + 5, message=log)
    keepalived = start_keepalived(peer, vrrp_config(100, vips=(f"{VIP}/24",)))
    wait_for(lambda: "Entering BACKUP STATE" in lab.log_of(keepalived), 10,
             message=lambda: lab.log_of(keepalived))

    pid = int((folder / "pid").read_text())
    held = capabilities_of(pid)
    assert held["CapEff"] == keep and held["CapPrm"] == keep and held["CapBnd"] == keep, held

    # notify_master ran as script_user nobody (set*id with CAP_SETUID/CAP_SETGID)...
    wait_for(lambda: (scripts / "out" / "master").exists(), 5, message=log)
    assert int((scripts / "out" / "master").read_text()) == 65534
    # ...while root's scripts in a world-writable directory were refused, saying why
    wait_for(lambda: "result=refused" in log() and "refused: unsafe:" in log(), 5, message=log)
    assert f"{scripts}/open is writable by every user" in log()
    assert not (scripts / "out" / "unsafe-notify-ran").exists()
    # nftables carries the two checked servers, not the one whose check was refused
    wait_for(lambda: "real_server=10.20.40.12:80 state=down" in log()
             or "real_server=10.20.40.10:80 state=up" in log(), 5, message=log)
    assert requests(client, 20) == {"rs1": 10, "rs2": 10}
    servers["rs2"].kill()
    servers["rs2"].wait(5)
    wait_for(lambda: "real_server=10.20.40.11:80 state=down" in log(), 5, message=log)
    assert requests(client, 10) == {"rs1": 10}

    daemon.send_signal(signal.SIGTERM)
    assert daemon.wait(10) == 0, log()
    wait_for(lambda: "Backup received priority 0 advertisement" in lab.log_of(keepalived), 5,
             message=lambda: lab.log_of(keepalived))
    assert not director.has_address("eth0", VIP)
    wait_for(lambda: peer.has_address("eth0", VIP), 5, message=lambda: lab.log_of(keepalived))
    assert "Traceback" not in log() and "PermissionError" not in log(), log()


@pytest.mark.parametrize("setup, reason", [
    (lambda folder: folder.chmod(0o777), "is writable by every user (mode 0777)"),
    (lambda folder: folder.chmod(0o1777), "is writable by every user (mode 1777)"),
    (lambda folder: os.chown(folder, 65534, 65534), "is owned by uid 65534"),
])
def test_a_state_directory_another_user_could_change_is_refused(lab, setup, reason):
    host = lab.host("director")
    folder = Path(lab.tmp) / "state"
    folder.mkdir()
    setup(folder)
    (Path(lab.tmp) / "keepalived.conf").write_text(vrrp_config(150, interface="lo"))
    daemon = host.popen([sys.executable, "-m", "director", "-l", "-f",
                         str(Path(lab.tmp) / "keepalived.conf"), "-P", "--web", "off",
                         "--state-dir", str(folder), "-p", str(Path(lab.tmp) / "pid")],
                        env={"PYTHONPATH": str(REPO)})
    try:
        code = daemon.wait(15)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the daemon started with {folder} {reason}:\n{lab.log_of(daemon)}")
    assert code == 1
    assert f"director: {folder} {reason}" in lab.log_of(daemon)
    assert not (Path(lab.tmp) / "pid").exists()
