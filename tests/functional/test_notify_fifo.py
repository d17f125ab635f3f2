"""Notify FIFOs (issue 14): director and Debian's keepalived 2.2.7 run one scenario each, and
a consumer reading each daemon's FIFO sees the same lines (same words, quoting and order):
start as BACKUP, become MASTER, a priority change with notify_priority_changes, a lower
priority advert heard as MASTER, FAULT and back, stop. Then what only director is asked
here: a FIFO nobody reads does not hold the failover back, and lvs_notify_fifo's VS / RS
lines follow a real server going down and up (nftables backend; keepalived's checker does
not run without IP_VS).

Waits have deadlines, never fixed sleeps; every namespace and process is the lab's.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import pytest

from director.vrrp.packet import Advert, encode
from tests.functional.lab import start_keepalived, wait_for
from tests.functional.test_vrrp_failover import (VIP, down_interval, holds, start_director,
                                                 vrrp_config)

pytestmark = [pytest.mark.netns, pytest.mark.slow, pytest.mark.timeout(180)]

# The consumer keepalived's sample script is: it reads the FIFO until the daemon closes it,
# ignoring the TERM a stopping daemon sends it first (the STOP lines come after).
READER = """#!/bin/sh
trap '' TERM
while read -r line; do
    printf '%s\\n' "$line" >> "{out}"
done < "$1"
"""


def reader_script(folder: Path) -> tuple[Path, Path]:
    out = folder / "lines"
    script = folder / "reader.sh"
    script.write_text(READER.format(out=out))
    script.chmod(0o755)
    return script, out


def advertise(host, src: str, priority: int) -> None:
    """One advert of VRID 51 at ``priority`` to the multicast group, from ``host``'s eth0."""
    message = encode(Advert(2, 51, priority, 1.0, (VIP,), 4, 1, b"secret12"), src,
                     "224.0.0.18").hex()
    host.run([sys.executable, "-c",
              "import socket; s = socket.socket(socket.AF_INET, socket.SOCK_RAW, 112); "
              "s.setsockopt(socket.SOL_SOCKET, 25, b'eth0'); "
              "s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 255); "
              f"s.sendto(bytes.fromhex('{message}'), ('224.0.0.18', 0))"])


def lines_of(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def scenario_config(folder: Path, flag: Path) -> str:
    script, _ = reader_script(folder)
    return (
        "global_defs {\n    script_user root\n"
        f"    vrrp_notify_fifo {folder / 'fifo'}\n"
        f"    vrrp_notify_fifo_script {script}\n}}\n"
        f"vrrp_script chk {{\n    script \"/usr/bin/test -e {flag}\"\n    interval 1\n"
        "    weight -20\n    fall 1\n    rise 1\n}\n" +
        vrrp_config(100, extra="    track_interface {\n        eth1\n    }\n"
                               "    track_script {\n        chk\n    }\n"
                               "    notify_priority_changes\n"))


def run_scenario(lab, start, name: str) -> list[str]:
    """The daemon ``start(host, text, folder)`` starts alone on a bridge with a forger:
    returns the lines its FIFO consumer read."""
    switch, inner = lab.switch(f"sw{name}"), lab.switch(f"in{name}")
    host = lab.host(f"h{name}", [(switch, "eth0", ["192.0.2.1/24"]),
                                 (inner, "eth1", ["198.51.100.1/24"])])
    forger = lab.host(f"x{name}", [(switch, "eth0", ["192.0.2.66/24"])])
    folder = Path(lab.tmp) / f"fifo-{name}"
    folder.mkdir()
    flag = folder / "healthy"
    flag.touch()
    out = folder / "lines"
    proc = start(host, scenario_config(folder, flag), folder)

    def saw(count: int, what: str, timeout: float) -> None:
        wait_for(lambda: len(lines_of(out)) >= count, timeout,
                 message=lambda: f"{name}: waiting for {what}, got {lines_of(out)}\n"
                                 f"{lab.log_of(proc)[-3000:]}")

    saw(2, "BACKUP then MASTER", down_interval(100) + 5)
    wait_for(holds(host), 2, message="no VIP")
    flag.unlink()                                   # the script fails: priority 80
    saw(3, "the priority change", 5)
    advertise(forger, "192.0.2.66", 50)
    saw(4, "the lower priority advert", 5)
    host.link("eth1", False)                        # a tracked interface down: FAULT
    saw(5, "FAULT", 5)
    host.link("eth1", True)
    saw(7, "BACKUP then MASTER again", down_interval(80) + 5)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(15) == 0, lab.log_of(proc)
    saw(8, "STOP", 5)
    return lines_of(out)


def start_ours(lab):
    return lambda host, text, folder: start_director(lab, host, text, folder.name)


def start_theirs(host, text, folder):
    return start_keepalived(host, text, name=folder.name)


EXPECTED = ['INSTANCE "VI_1" BACKUP 100', 'INSTANCE "VI_1" MASTER 100',
            'INSTANCE "VI_1" MASTER_PRIORITY 80', 'INSTANCE "VI_1" MASTER_RX_LOWER_PRI 80',
            'INSTANCE "VI_1" FAULT 80', 'INSTANCE "VI_1" BACKUP 80',
            'INSTANCE "VI_1" MASTER 80', 'INSTANCE "VI_1" STOP 80']


def test_keepalived_writes_the_reference_lines(lab):
    assert run_scenario(lab, start_theirs, "k") == EXPECTED


def test_director_writes_the_lines_keepalived_writes(lab):
    assert run_scenario(lab, start_ours(lab), "d") == EXPECTED
