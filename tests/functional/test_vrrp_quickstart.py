"""The address owner's quick start (director/vrrp/quickstart.py), in network namespaces: the
plan a running daemon writes, carried out at the next exec before anything else loads: the
advert and the gratuitous ARP seen on the wire, the VIP kept through the daemon's own start,
nothing done when the files changed, and the VIPs taken back when the start then fails."""

from __future__ import annotations

import json
import os
import signal
import sys
import textwrap
import time

import pytest

from tests.functional.test_vrrp_failover import (ROOT, VIP, holds, lacks, pair,  # noqa: F401
                                                 start_director, stays, until, vrrp_config)

pytestmark = [pytest.mark.netns, pytest.mark.slow, pytest.mark.timeout(120)]

OWNER = vrrp_config(255)            # VRRPv2, PASS: the HOWTO's kind of instance

# Prints each VRRP advert and ARP frame that reaches eth0, for ``seconds``.
LISTENER = textwrap.dedent("""
    import select, socket, struct, sys, time
    seconds = float(sys.argv[1])
    vrrp = socket.socket(socket.AF_INET, socket.SOCK_RAW, 112)
    index = socket.if_nametoindex("eth0")
    vrrp.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP,
                    struct.pack("4s4si", socket.inet_aton("224.0.0.18"), bytes(4), index))
    arp = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0806))
    arp.bind(("eth0", 0))
    print("ready", flush=True)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        ready, _, _ = select.select([vrrp, arp], [], [], 0.1)
        for sock in ready:
            data = sock.recv(2048)
            if sock is vrrp:
                body = data[(data[0] & 15) * 4:]
                print("vrrp", socket.inet_ntoa(data[12:16]), body[1], body[2],
                      socket.inet_ntoa(body[8:12]), flush=True)
            else:
                print("arp", data[6:12].hex(":"), socket.inet_ntoa(data[28:32]),
                      socket.inet_ntoa(data[38:42]), flush=True)
""")

# The exec side alone, as director/__main__.py runs it, with the daemon's own argv.
EXEC_SIDE = textwrap.dedent("""
    import json, sys
    from director.vrrp.quickstart import QUICK
    undo = sys.argv[1] == "undo"
    QUICK.run(sys.argv[2:])
    print(json.dumps({"taken": sorted(QUICK.taken), "added": len(QUICK.added),
                      "errors": QUICK.errors}), flush=True)
    if undo:
        QUICK.undo()
""")


def daemon_argv(folder) -> list[str]:
    """start_director's command line after ``python -m director``."""
    return ["-f", str(folder / "keepalived.conf"), "-P", "-l", "-n", "-D", "--web", "off",
            "--state-dir", str(folder / "state"), "-p", str(folder / "director.pid")]


def planned(lab, host, config: str, name: str = "a"):
    """A daemon run until its plan is written, then stopped (TERM): its folder."""
    proc = start_director(lab, host, config, name)
    until(lambda: "vrrp.quick_start_plan" in lab.log_of(proc), 20, lambda: lab.log_of(proc))
    assert "vrrp.quick_start_plan instances=VI_1" in lab.log_of(proc), lab.log_of(proc)
    stop(proc)
    return proc.state_dir.parent


def this_run(lab, proc) -> str:
    """The log of the daemon's last start (a restart appends to the same file)."""
    return "director.process" + lab.log_of(proc).split("director.process")[-1]


def stop(proc) -> None:
    proc.send_signal(signal.SIGTERM)
    proc.wait(15)


def exec_side(host, folder, undo: bool = False) -> dict:
    result = host.run([sys.executable, "-c", EXEC_SIDE, "undo" if undo else "keep",
                       *daemon_argv(folder)], env=dict(os.environ, PYTHONPATH=str(ROOT)),
                      timeout=20)
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_the_plan_alone_sends_the_advert_adds_the_vip_and_announces_it(lab, pair):  # noqa: F811
    _, a, b = pair
    folder = planned(lab, a, OWNER)
    until(lacks(a), 10, "the stopped daemon left its VIP")
    listener = b.popen([sys.executable, "-c", LISTENER, "30"])
    until(lambda: "ready" in lab.log_of(listener), 10, lambda: lab.log_of(listener))
    result = exec_side(a, folder)
    assert result == {"taken": ["VI_1"], "added": 1, "errors": []}
    assert holds(a)()
    mac = a.mac("eth0")

    def heard() -> str:
        return lab.log_of(listener)
    # no daemon runs: what b hears came from the exec side alone
    until(lambda: f"vrrp 192.0.2.1 51 255 {VIP}" in heard(), 5, heard)
    until(lambda: f"arp {mac} {VIP} {VIP}" in heard(), 5, heard)


def test_a_start_that_fails_takes_the_vips_back(lab, pair):  # noqa: F811
    """The web address taken: the daemon stops before its VRRP runs (as it always did),
    and the VIP the quick start added goes with it."""
    _, a, _ = pair
    folder = lab.tmp / "web"
    folder.mkdir()
    (folder / "keepalived.conf").write_text(OWNER)
    argv = [sys.executable, "-m", "director", *daemon_argv(folder)]
    argv[argv.index("off")] = "127.0.0.1:18080"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    first = a.popen(argv, log_path=str(folder / "first.log"), env=env)
    until(lambda: "vrrp.quick_start_plan instances=VI_1" in lab.log_of(first), 20,
          lambda: lab.log_of(first))
    stop(first)
    until(lacks(a), 10, "the stopped daemon left its VIP")
    squatter = a.popen([sys.executable, "-c", "import socket, time\n"
                        "s = socket.socket(); s.bind(('127.0.0.1', 18080)); s.listen()\n"
                        "print('ready', flush=True); time.sleep(60)"])
    until(lambda: "ready" in lab.log_of(squatter), 10, lambda: lab.log_of(squatter))
    monitor = a.popen(["ip", "-o", "monitor", "address"])
    second = a.popen(argv, log_path=str(folder / "second.log"), env=env)
    assert second.wait(30) != 0, lab.log_of(second)
    assert "18080" in lab.log_of(second), lab.log_of(second)

    def seen() -> str:
        return lab.log_of(monitor)
    until(lambda: "Deleted" in seen() and VIP in seen(), 5, seen)
    added = [line for line in seen().splitlines() if VIP in line and "Deleted" not in line]
    assert added, seen()                    # it was there: the quick start's doing
    assert lacks(a)(), "the failed start left the VIP"


def test_a_restarted_owner_keeps_its_vip_through_the_start(lab, pair):  # noqa: F811
    _, a, _ = pair
    planned(lab, a, OWNER)
    until(lacks(a), 10, "the stopped daemon left its VIP")
    proc = start_director(lab, a, OWNER, "a")
    until(holds(a), 20, lambda: lab.log_of(proc))
    # from its first moment to well after VRRP's own start: never taken away
    deadline = time.monotonic() + 20
    while "to=MASTER" not in lab.log_of(proc) and time.monotonic() < deadline:
        assert holds(a)(), "the VIP went away while the daemon started"
        assert proc.poll() is None, lab.log_of(proc)
    stays(holds(a), 1, "the VIP went away after the daemon's start")
    log = this_run(lab, proc)
    assert "vrrp.quick_start instances=VI_1" in log, log
    assert "leftover_removed" not in log, log
    assert log.count("to=MASTER") == 1, log


def test_changed_files_or_a_held_pid_file_mean_no_quick_start(lab, pair):  # noqa: F811
    _, a, _ = pair
    planned(lab, a, OWNER)
    until(lacks(a), 10, "the stopped daemon left its VIP")
    other = "192.0.2.101"
    changed = vrrp_config(255, vips=(f"{other}/24",))
    proc = start_director(lab, a, changed, "a")          # the same command line
    until(holds(a, other), 20, lambda: lab.log_of(proc))
    assert lacks(a)(), "the old plan's VIP was added"
    # the running daemon holds the pid file: a second exec does nothing
    until(lambda: "vrrp.quick_start_plan instances=VI_1" in this_run(lab, proc), 10,
          lambda: lab.log_of(proc))
    assert "vrrp.quick_start " not in this_run(lab, proc), lab.log_of(proc)
    a.run(["ip", "addr", "del", f"{other}/24", "dev", "eth0"])
    result = exec_side(a, proc.state_dir.parent)
    assert result["taken"] == [] and result["added"] == 0, result
    assert lacks(a, other)()


def test_an_interface_down_at_exec_is_left_alone(lab, pair):  # noqa: F811
    _, a, _ = pair
    folder = planned(lab, a, OWNER)
    until(lacks(a), 10, "the stopped daemon left its VIP")
    a.link("eth0", False)
    result = exec_side(a, folder)
    assert result["taken"] == [] and result["added"] == 0, result
    assert lacks(a)()


def test_a_file_that_does_not_qualify_writes_no_plan(lab, pair):  # noqa: F811
    _, a, _ = pair
    tracked = vrrp_config(255, extra="    track_interface {\n        lo\n    }\n")
    for config in (vrrp_config(254), tracked):
        proc = start_director(lab, a, config, "a")
        until(lambda: "vrrp.quick_start_plan" in lab.log_of(proc), 20,
              lambda: lab.log_of(proc))
        assert "vrrp.quick_start_plan instances=none" in lab.log_of(proc), lab.log_of(proc)
        assert not (proc.state_dir / "quickstart.plan").exists()
        stop(proc)


def test_the_plan_is_private_and_a_plan_others_could_write_is_ignored(lab, pair):  # noqa: F811
    _, a, _ = pair
    folder = planned(lab, a, OWNER)
    until(lacks(a), 10, "the stopped daemon left its VIP")
    plan = folder / "state" / "quickstart.plan"
    mode = os.stat(plan).st_mode & 0o777
    assert mode == 0o600, oct(mode)           # it holds the files' bytes, passwords too
    os.chmod(plan, 0o602)                     # anyone could have written this one
    result = exec_side(a, folder)
    assert result["taken"] == [] and "not ours alone" in " ".join(result["errors"]), result
    assert lacks(a)()
