"""Notify FIFOs (issue 14): director and Debian's keepalived 2.2.7 run one scenario each, and
a consumer reading each daemon's FIFO sees the same lines (same words, quoting and order):
start as BACKUP, become MASTER, a priority change as MASTER with notify_priority_changes, a
lower priority advert heard as MASTER, FAULT and back, a priority change as BACKUP, stop; and
a reload that removes and keeps instances; a sync group's changes. Then what only director
is asked here: a FIFO nobody reads does not hold the failover back, and lvs_notify_fifo's
VS / RS lines follow a real server going down and up (nftables backend; keepalived's checker
does not run without IP_VS).

Waits have deadlines, never fixed sleeps; every namespace and process is the lab's.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

import pytest

from director.vrrp.packet import Advert, encode
from tests.functional.lab import start_keepalived, wait_for
from tests.functional.test_vrrp_failover import (VIP, down_interval, fast_config, fast_down,
                                                 holds, start_director, vrrp_config)

pytestmark = [pytest.mark.netns, pytest.mark.slow, pytest.mark.timeout(180)]

# The first scenario runs VRRPv2 at 1 s: its vrrp_script checks every second (keepalived's
# least), and the priority change as BACKUP must come before the master down timer runs out.
# The others run VRRPv3 at 0.2 s (fast_config): the lines, not the interval, are the point.
SLACK = 1.0          # beyond the master down interval, on a loaded two-core CI host

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


def recorder(folder: Path) -> tuple[Path, Path]:
    """A notify script that appends its arguments to a file, a line a run."""
    script, out = folder / "record.sh", folder / "notified"
    script.write_text(f'#!/bin/sh\necho "$*" >> {out}\n')
    script.chmod(0o755)
    return script, out


def scenario_config(folder: Path, flag: Path) -> str:
    script, _ = reader_script(folder)
    record, _ = recorder(folder)
    return (
        "global_defs {\n    script_user root\n"
        f"    vrrp_notify_fifo {folder / 'fifo'}\n"
        f"    vrrp_notify_fifo_script {script}\n}}\n"
        f"vrrp_script chk {{\n    script \"/usr/bin/test -e {flag}\"\n    interval 1\n"
        "    weight -20\n    fall 1\n    rise 1\n}\n" +
        vrrp_config(100, extra="    track_interface {\n        eth1\n    }\n"
                               "    track_script {\n        chk\n    }\n"
                               "    notify_priority_changes\n"
                               f"    notify_master_rx_lower_pri \"{record} rx\"\n"))


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
    notified = folder / "notified"                  # notify_master_rx_lower_pri, no arguments
    wait_for(lambda: lines_of(notified) == ["rx"], 5, message=lambda: f"{lines_of(notified)}")
    host.link("eth1", False)                        # a tracked interface down: FAULT
    saw(5, "FAULT", 5)
    host.link("eth1", True)
    saw(6, "BACKUP", 5)
    flag.touch()                                    # healthy again while BACKUP: 100
    saw(7, "the priority change as BACKUP", down_interval(80))
    saw(8, "MASTER again", down_interval(100) + 5)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(15) == 0, lab.log_of(proc)
    saw(9, "STOP", 5)
    return lines_of(out)


def start_ours(lab):
    return lambda host, text, folder: start_director(lab, host, text, folder.name)


def start_theirs(host, text, folder):
    return start_keepalived(host, text, name=folder.name)


EXPECTED = ['INSTANCE "VI_1" BACKUP 100', 'INSTANCE "VI_1" MASTER 100',
            'INSTANCE "VI_1" MASTER_PRIORITY 80', 'INSTANCE "VI_1" MASTER_RX_LOWER_PRI 80',
            'INSTANCE "VI_1" FAULT 80', 'INSTANCE "VI_1" BACKUP 80',
            'INSTANCE "VI_1" BACKUP_PRIORITY 100', 'INSTANCE "VI_1" MASTER 100',
            'INSTANCE "VI_1" STOP 100']


def test_keepalived_writes_the_reference_lines(lab):
    assert run_scenario(lab, start_theirs, "k") == EXPECTED


def test_director_writes_the_lines_keepalived_writes(lab):
    assert run_scenario(lab, start_ours(lab), "d") == EXPECTED


def drain(path: Path, into: list[str]) -> list[str]:
    """What waits in the FIFO at ``path`` now, appended to ``into`` line by line (the
    daemon holds the FIFO open read-write, so a non-blocking read never sees end of file)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    data = b""
    try:
        while True:
            try:
                chunk = os.read(fd, 65536)
            except BlockingIOError:
                break
            if not chunk:
                break
            data += chunk
    finally:
        os.close(fd)
    into.extend(data.decode().splitlines())
    return into


def test_a_fifo_nobody_reads_does_not_hold_the_failover_back(lab):
    """director as BACKUP of keepalived, its FIFO full (nobody reads it): keepalived killed,
    director is MASTER within the master down interval, and the lines it could not write
    are counted."""
    switch = lab.switch()
    a = lab.host("a", [(switch, "eth0", ["192.0.2.1/24"])])
    b = lab.host("b", [(switch, "eth0", ["192.0.2.2/24"])])
    folder = Path(lab.tmp) / "ours"
    folder.mkdir()
    fifo = folder / "fifo"
    peer = start_keepalived(a, fast_config(150))
    wait_for(holds(a), fast_down(150) + 3, message=lambda: lab.log_of(peer))
    ours = start_director(lab, b, f"global_defs {{\n    vrrp_notify_fifo {fifo}\n}}\n" +
                          fast_config(100), "ours")
    wait_for(lambda: "to=BACKUP" in lab.log_of(ours), 10, message=lambda: lab.log_of(ours))
    assert drain(fifo, []) == ['INSTANCE "VI_1" BACKUP 100']
    writer = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)      # fill the pipe to the brim
    try:
        for _ in range(10000):                                # bounded: 64 kB pipes
            try:
                os.write(writer, b"x" * 4096)
            except BlockingIOError:
                break
        peer.kill()
        killed = time.monotonic()
        wait_for(holds(b), fast_down(100) + SLACK,
                 message=lambda: f"no failover\n{lab.log_of(ours)}")
        assert time.monotonic() - killed <= fast_down(100) + SLACK
    finally:
        os.close(writer)
    ours.send_signal(signal.SIGUSR1)
    dump = ours.state_dir / "director.data"
    wait_for(dump.exists, 5, message=lambda: lab.log_of(ours))
    (view,) = json.loads(dump.read_text())["notify_fifos"]
    assert view["dropped"] == {"full": 1} and view["written"] == 1, view     # MASTER dropped
    assert "notify_fifo.dropped" in lab.log_of(ours)


def test_lvs_fifo_lines_follow_a_real_server_down_and_up(lab):
    """lvs_notify_fifo with rs_init_notifies and quorum 3 (nftables backend): the three real
    servers' UP at start, then rs2's DOWN with the quorum's, then both UP again."""
    from tests.functional.test_lb_daemon_nftables import (BEFORE_RETRY, DELAY_LOOP, RETRY,
                                                          SERVERS, TIMEOUT, lay_out, listening,
                                                          serve)
    fifo = Path(lab.tmp) / "lvs.fifo"
    client, hosts, servers, daemon = lay_out(
        lab, "\n    quorum 3",
        global_defs=f"lvs_notify_fifo {fifo}\n    rs_init_notifies")
    service = "[203.0.113.100]:tcp:80"
    rs2 = f"RS [{SERVERS['rs2']}]:tcp:80 {service}"
    lines: list[str] = []
    wait_for(lambda: len(drain(fifo, lines)) >= 3, 10, message=lambda: f"{lines}")
    assert lines == [f"RS [{address}]:tcp:80 {service} UP" for address in SERVERS.values()]
    servers["rs2"].kill()
    servers["rs2"].wait(5)
    bound = DELAY_LOOP + RETRY * (TIMEOUT + BEFORE_RETRY) + 3
    wait_for(lambda: len(drain(fifo, lines)) >= 5, bound,
             message=lambda: f"{lines}\n{lab.log_of(daemon)}")
    assert lines[3:] == [f"{rs2} DOWN", f"VS {service} DOWN"]
    servers["rs2"] = serve(hosts["rs2"], "rs2", SERVERS["rs2"], Path(lab.tmp) / "rs2")
    wait_for(lambda: listening(hosts["rs2"]), 10, message="rs2 did not start again")
    wait_for(lambda: len(drain(fifo, lines)) >= 7, DELAY_LOOP + 5,
             message=lambda: f"{lines}\n{lab.log_of(daemon)}")
    assert lines[5:] == [f"{rs2} UP", f"VS {service} UP"]


def reload_config(folder: Path, names: tuple[str, ...], priority: int = 100) -> str:
    """``priority``: VI_3's and VI_4's (another one changes them: keepalived keeps their
    state, restore_vrrp_state)."""
    script, _ = reader_script(folder)
    record, _ = recorder(folder)
    blocks = {"VI_1": fast_config(100, name="VI_1",
                                  extra=f"    notify_deleted \"{record} deleted\"\n"
                                        f"    notify {record}\n"),
              "VI_2": fast_config(100, vrid=52, name="VI_2", vips=("192.0.2.102/24",)),
              "VI_3": fast_config(priority, vrid=53, name="VI_3", vips=("192.0.2.103/24",),
                                  extra="    track_interface {\n        eth1\n    }\n"),
              "VI_4": fast_config(priority, vrid=54, name="VI_4", vips=("192.0.2.104/24",))}
    return ("global_defs {\n    script_user root\n    fifo_write_vrrp_states_on_reload\n"
            f"    vrrp_notify_fifo {folder / 'fifo'}\n"
            f"    vrrp_notify_fifo_script {script}\n}}\n" +
            "".join(blocks[name] for name in names))


def run_reload_scenario(lab, start, name: str, conf_of, priority: int = 100) -> list[str]:
    """VI_1, VI_2 and VI_4 become MASTER, VI_3 stays in FAULT (its tracked link is down);
    a reload keeps VI_3 and VI_4 (at ``priority``: changed unless 100): returns the lines
    the reload wrote."""
    switch, inner = lab.switch(f"sw{name}"), lab.switch(f"in{name}")
    host = lab.host(f"h{name}", [(switch, "eth0", ["192.0.2.1/24"]),
                                 (inner, "eth1", ["198.51.100.1/24"])])
    host.link("eth1", False)
    folder = Path(lab.tmp) / f"fifo-{name}"
    folder.mkdir()
    out = folder / "lines"
    proc = start(host, reload_config(folder, ("VI_1", "VI_2", "VI_3", "VI_4")), folder)
    wait_for(lambda: sum("MASTER" in line for line in lines_of(out)) == 3,
             fast_down(100) + 5,
             message=lambda: f"{lines_of(out)}\n{lab.log_of(proc)[-3000:]}")
    conf_of(folder).write_text(reload_config(folder, ("VI_3", "VI_4"), priority))
    before = len(lines_of(out))
    proc.send_signal(signal.SIGHUP)
    wait_for(lambda: len(lines_of(out)) >= before + 3, 10,
             message=lambda: f"{lines_of(out)}\n{lab.log_of(proc)[-3000:]}")
    end = time.monotonic() + 2                   # and nothing more (polled, bounded)
    while time.monotonic() < end:
        assert len(lines_of(out)) == before + 3, lines_of(out)[before:]
        time.sleep(0.1)
    notified = folder / "notified"               # VI_1's notify_deleted and notify
    wait_for(lambda: sorted(lines_of(notified)) == [
        "INSTANCE VI_1 BACKUP 100", "INSTANCE VI_1 DELETED 100", "INSTANCE VI_1 MASTER 100",
        "deleted"], 5, message=lambda: f"{lines_of(notified)}")
    return lines_of(out)[before:]


# keepalived 2.2.7 writes no line on a reload for an instance kept as MASTER (VI_4): neither
# does director, so that a consumer acting on MASTER lines does not act again
RELOADED = ['INSTANCE "VI_1" DELETED 100', 'INSTANCE "VI_2" FAULT 100',
            'INSTANCE "VI_3" FAULT 100']


def test_keepalived_reload_lines(lab):
    assert run_reload_scenario(lab, start_theirs, "k",
                               lambda folder: Path(lab.tmp) / f"hk-{folder.name}.conf") \
        == RELOADED


def test_director_reload_lines_are_keepalived_s(lab):
    assert run_reload_scenario(lab, start_ours(lab), "d",
                               lambda folder: folder / "keepalived.conf") == RELOADED


# The same with VI_3's and VI_4's priority changed: keepalived keeps their state (the same
# vrid, interface and family), so still no line for the MASTER and VI_3's FAULT once, with
# its new priority; a restart would have written STOP, BACKUP, MASTER lines for VI_4.
CHANGED = RELOADED[:2] + ['INSTANCE "VI_3" FAULT 110']


def test_keepalived_reload_lines_for_changed_instances(lab):
    assert run_reload_scenario(lab, start_theirs, "k",
                               lambda folder: Path(lab.tmp) / f"hk-{folder.name}.conf",
                               110) == CHANGED


def test_director_reload_lines_for_changed_instances_are_keepalived_s(lab):
    assert run_reload_scenario(lab, start_ours(lab), "d",
                               lambda folder: folder / "keepalived.conf", 110) == CHANGED


def run_group_scenario(lab, start, name: str) -> list[list[str]]:
    """A sync group of two instances: start (BACKUP, MASTER), one link down (FAULT), back
    (BACKUP, MASTER), stop. Returns the lines of each step, each ending at its GROUP line."""
    switch, inner = lab.switch(f"sw{name}"), lab.switch(f"in{name}")
    host = lab.host(f"h{name}", [(switch, "eth0", ["192.0.2.1/24"]),
                                 (inner, "eth1", ["198.51.100.1/24"])])
    folder = Path(lab.tmp) / f"fifo-{name}"
    folder.mkdir()
    script, out = reader_script(folder)
    record, _ = recorder(folder)                 # the group's notify script: its arguments
    proc = start(host, "global_defs {\n    script_user root\n"
                       f"    vrrp_notify_fifo {folder / 'fifo'}\n"
                       f"    vrrp_notify_fifo_script {script}\n}}\n"
                       "vrrp_sync_group VG1 {\n    group {\n        VI_1\n        VI_2\n"
                       f"    }}\n    notify {record}\n}}\n" + fast_config(100) +
                 fast_config(100, vrid=52, interface="eth1", name="VI_2",
                             vips=("198.51.100.254/24",)), folder)
    steps: list[list[str]] = []

    def step(groups: int, timeout: float) -> None:
        wait_for(lambda: sum(line.startswith("GROUP") for line in lines_of(out)) >= groups,
                 timeout, message=lambda: f"{name}: {lines_of(out)}\n"
                                          f"{lab.log_of(proc)[-3000:]}")
        done = sum(len(lines) for lines in steps)
        steps.append(lines_of(out)[done:])

    step(2, fast_down(100) + 5)                    # BACKUP, MASTER
    host.link("eth1", False)
    step(3, 5)                                     # FAULT
    host.link("eth1", True)
    step(5, fast_down(100) + 5)                    # BACKUP, MASTER
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(15) == 0, lab.log_of(proc)
    step(6, 5)                                     # STOP
    wait_for(lambda: len(lines_of(folder / "notified")) == 6, 5,
             message=lambda: f"{lines_of(folder / 'notified')}")
    return steps + [sorted(lines_of(folder / "notified"))]


def test_sync_group_lines_come_after_their_members_as_keepalived_s(lab):
    """The members' lines, then the group's (priority 0), at each change; which member goes
    first is a race in both daemons. The group's notify script gets GROUP NAME STATE 0. At start keepalived writes the group's BACKUP before
    its members' (it sets the group first); director after them, as at every other change."""
    ours, theirs = (run_group_scenario(lab, start_ours(lab), "d"),
                    run_group_scenario(lab, start_theirs, "k"))
    assert sorted(ours[0]) == sorted(theirs[0]), (ours, theirs)
    for mine, reference in zip(ours[1:-1], theirs[1:-1], strict=True):
        assert sorted(mine) == sorted(reference) and mine[-1] == reference[-1], (ours, theirs)
        assert mine[-1].startswith('GROUP "VG1" ') and mine[-1].endswith(" 0")
    assert [lines[-1] for lines in ours[:-1]] == [
        'GROUP "VG1" MASTER 0', 'GROUP "VG1" FAULT 0', 'GROUP "VG1" MASTER 0',
        'GROUP "VG1" STOP 0']
    assert ours[-1] == theirs[-1] == sorted(   # the group's notify script: TYPE NAME STATE 0
        f"GROUP VG1 {state} 0" for state in ("BACKUP", "MASTER", "FAULT", "BACKUP", "MASTER",
                                             "STOP"))
