"""global_defs' process keywords as an operator sees them (issue 14, part H): the name in
/proc/PID/comm, nice value, SCHED_RR and its priority, CPU affinity and locked memory from
/proc, the umask of the files director writes, startup_script before VRRP and
shutdown_script after it (a hung one killed at its timeout), and the dump files named by
state_dump_file / stats_dump_file / json_dump_file written on USR1 / USR2 / SIGRTMIN+2."""

from __future__ import annotations

import json
import os
import signal
import stat
from pathlib import Path

import pytest

from tests.functional.here import director_here
from tests.functional.lab import wait_for
from tests.functional.test_vrrp_failover import start_director, vrrp_config

pytestmark = [pytest.mark.netns, pytest.mark.slow, pytest.mark.timeout(120)]

VIP = "192.0.2.100"


def proc_status(pid: int) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {key: value.strip() for key, _, value in (line.partition(":") for line in lines)}


def proc_stat(pid: int) -> list[str]:
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rindex(")") + 2:].split()       # the fields after the name


def test_process_settings_scripts_and_dump_files(lab, tmp_path):
    switch = lab.switch()
    host = lab.host("a", [(switch, "eth0", ["192.0.2.1/24"])])
    trail = tmp_path / "trail"
    startup = tmp_path / "startup.sh"
    # What the startup script sees: is the VIP there yet (it must not be: VRRP has not started).
    startup.write_text(f"#!/bin/sh\nip -o addr show dev eth0 | grep -c {VIP} >> {trail}\n"
                       f"echo startup >> {trail}\n")
    shutdown = tmp_path / "shutdown.sh"
    shutdown.write_text(f"#!/bin/sh\nip -o addr show dev eth0 | grep -c {VIP} >> {trail}\n"
                        f"echo shutdown >> {trail}\nsleep 60\necho not-killed >> {trail}\n")
    for script in (startup, shutdown):
        script.chmod(0o755)
    dumps = tmp_path / "dumps"
    config = f"""global_defs {{
    process_name lbproc
    vrrp_priority -5
    checker_priority 3
    vrrp_rt_priority 5
    checker_rt_priority 7
    vrrp_rlimit_rttime 50000
    vrrp_cpu_affinity 0
    vrrp_no_swap
    umask IWGRP|IWOTH|IRGRP|IROTH
    startup_script {startup}
    shutdown_script {shutdown}
    shutdown_script_timeout 2
    state_dump_file {dumps}/lb.data
    stats_dump_file {dumps}/lb.stats
    json_dump_file {dumps}/lb.json
    json_version 2
}}
""" + vrrp_config(150, vips=(f"{VIP}/24",))
    proc = start_director(lab, host, config, "a")
    wait_for(lambda: host.has_address("eth0", VIP), 10, message=lambda: lab.log_of(proc))
    pid = proc.pid

    assert Path(f"/proc/{pid}/comm").read_text().strip() == "lbproc"
    fields = proc_stat(pid)
    # stat fields 18 nice, 17 rt_priority... counted after the name: state is index 0, so
    # field N (1-based, man 5 proc) is index N - 3.
    assert int(fields[19 - 3]) == -5                 # the lower nice value of the two
    assert int(fields[40 - 3]) == 7                  # rt_priority: the higher of the two
    assert int(fields[41 - 3]) == os.SCHED_RR        # policy
    status = proc_status(pid)
    assert status["Cpus_allowed_list"] == "0"
    assert int(status["VmLck"].split()[0]) > 0, status["VmLck"]
    assert status["Umask"] == "0066"
    limits = Path(f"/proc/{pid}/limits").read_text()
    assert "Max realtime timeout" in limits and "50000" in limits
    assert trail.read_text().splitlines() == ["0", "startup"]     # no VIP yet

    proc.send_signal(signal.SIGUSR1)
    proc.send_signal(signal.SIGUSR2)
    proc.send_signal(signal.SIGRTMIN + 2)
    for name in ("lb.data", "lb.stats", "lb.json"):
        wait_for((dumps / name).exists, 5, message=lambda: f"no {name}\n{lab.log_of(proc)}")
    for name in ("lb.data", "lb.stats", "lb.json"):
        wait_for(lambda: stat.S_IMODE((dumps / name).stat().st_mode) == 0o600, 5,
                 message=f"{name} is not 0600 under umask 066")
    state = json.loads((dumps / "lb.data").read_text())
    assert state["vrrp"]["instances"][0]["name"] == "VI_1"
    # The same as /api/v1/state's "process": what the operator asked for, as applied.
    assert state["process"] == {"name": "lbproc", "umask": "0066", "nice": -5,
                                "rt_priority": 7, "cpus": [0], "lock_memory": True,
                                "net_namespace": None, "reload_at": None}
    assert "VI_1" in json.loads((dumps / "lb.stats").read_text())
    document = json.loads((dumps / "lb.json").read_text())
    assert document["version"] == 2
    assert document["vrrp"][0]["data"]["name"] == "VI_1"
    assert document["vrrp"][0]["data"]["state"] == "MASTER"

    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    lines = trail.read_text().splitlines()
    # The shutdown script ran after the VIP was removed, and was killed at 2 s.
    assert lines == ["0", "startup", "0", "shutdown"], lines
    assert any("why=shutdown_script" in line and "result=timeout" in line
               for line in lab.log_of(proc).splitlines())


def test_max_auto_priority_switches_to_real_time_when_the_loop_runs_late(tmp_path):
    """Stopped (SIGSTOP) for longer than min_auto_priority_delay, the main loop wakes late:
    SCHED_RR at priority 1, then 2 after a second stop, never past max_auto_priority."""
    import time
    config = tmp_path / "keepalived.conf"
    config.write_text("global_defs {\n    max_auto_priority 2\n"
                      "    min_auto_priority_delay 300000\n}\n")
    log_path = tmp_path / "log"
    with director_here(config, tmp_path / "state", log_path) as proc:
        wait_for(lambda: "director.started" in log_path.read_text(), 20,
                 message=lambda: log_path.read_text())
        assert int(proc_stat(proc.pid)[41 - 3]) == os.SCHED_OTHER
        for expected in (1, 2, 2):
            proc.send_signal(signal.SIGSTOP)
            time.sleep(0.6)          # the lateness under test: a stop, not a wait for a state
            proc.send_signal(signal.SIGCONT)
            wait_for(lambda: int(proc_stat(proc.pid)[40 - 3]) == expected, 5,
                     message=lambda: log_path.read_text())
            assert int(proc_stat(proc.pid)[41 - 3]) == os.SCHED_RR
        assert log_path.read_text().count("director.auto_priority ") == 2
