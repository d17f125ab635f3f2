"""global_defs' process keywords (issue 14, part H): their values, the one-process plan
(the strictest of keepalived's per-child settings), the dump file names."""

from __future__ import annotations

import pytest

from director import dumps, process
from director.config import load_config


def load(tmp_path, text: str):
    path = tmp_path / "keepalived.conf"
    path.write_text(text)
    return load_config(str(path), config_id="t", interface_exists=None)


def defs(tmp_path, *lines: str):
    result = load(tmp_path, "global_defs {\n" + "".join(f"    {line}\n" for line in lines)
                  + "}\n")
    return result


def messages(result) -> list[str]:
    return [f"{d.location.line}: {d.severity}: {d.message}" for d in result.diagnostics
            if "defines no vrrp_instance" not in d.message]


@pytest.mark.parametrize("written, value", [
    ("022", 0o022), ("0x12", 0o022), ("18", 0o022), ("0", 0),
    ("IWGRP|IWOTH", 0o022), ("IWGRP | IWOTH", 0o022), ("IRUSR", 0o400),
])
def test_umask_takes_numbers_and_bits(tmp_path, written, value):
    result = defs(tmp_path, f"umask {written}")
    assert result.ok, messages(result)
    assert result.config.global_defs.umask == value


@pytest.mark.parametrize("line, error", [
    ("umask 0778", "umask: invalid umask value 0778"),
    ("umask 01000", "invalid umask value 01000 (at most 0777)"),
    ("umask IWFOO", "unknown umask bit 'IWFOO'"),
    ("lvs_timeouts", "lvs_timeouts: expects at least one of tcp N, tcpfin N, udp N"),
    ("lvs_timeouts tcp", "no value for tcp"),
    ("lvs_timeouts tcp 2678401", "tcp must be a number of seconds from 0 to 2678400"),
    ("lvs_timeouts tcp 10 syn 3", "unknown option 'syn'"),
    ("vrrp_priority -21", "vrrp_priority: must be an integer from -20 to 19"),
    ("checker_rt_priority 100", "must be an integer from 1 to 99"),
    ("vrrp_cpu_affinity one", "expects CPU numbers"),
    ("process_name a/b", "without '/'"),
    ("process_name abcdefghijklmnop", "15 characters"),
    ("state_dump_file relative.data", "expects an absolute path"),
    ("include_check +nothing", "unknown include check 'nothing'"),
    ("startup_script_timeout 1001", "from 1 to 1000"),
])
def test_bad_values_are_errors_with_their_line(tmp_path, line, error):
    result = defs(tmp_path, line)
    assert not result.ok
    assert any(m.startswith("2: error: ") and error in m for m in messages(result)), \
        messages(result)


def test_lvs_timeouts_keep_what_is_not_given(tmp_path):
    timeouts = defs(tmp_path, "lvs_timeouts tcpfin 30 udp 0").config.global_defs.lvs_timeouts
    assert (timeouts.tcp, timeouts.tcpfin, timeouts.udp) == (None, 30, 0)


def test_include_check_options(tmp_path):
    def checks(line):
        return defs(tmp_path, line).config.global_defs.include_check
    assert checks("include_check") == ("readable", "match", "wildcard_match", "brace_match")
    assert checks("include_check match") == ("readable", "match")
    assert checks("include_check readable +wildcard_match -readable") == \
        ("readable", "wildcard_match")          # wildcard_match implies readable


def test_one_process_takes_the_strictest_and_warns_where_the_two_differ(tmp_path):
    result = defs(tmp_path, "vrrp_priority 5", "checker_priority -3", "vrrp_rt_priority 10",
                  "checker_rt_priority 30", "checker_rlimit_rttime 40000",
                  "vrrp_rlimit_rttime 20000", "vrrp_cpu_affinity 0 1",
                  "checker_cpu_affinity 3", "checker_no_swap",
                  "vrrp_process_name lb_v", "checker_process_name lb_c")
    assert result.ok
    plan = process.plan(result.config)
    assert plan == process.ProcessPlan(name="lb_v", umask=0o022, nice=-3, rt_priority=30,
                                       rlimit_rttime=20000, cpus=(0, 1, 3), lock_memory=True)
    warned = "\n".join(messages(result))
    for expected in ("vrrp_priority and checker_priority differ (5 and -3): director is one "
                     "process and applies the lower nice value",
                     "vrrp_rt_priority and checker_rt_priority differ (10 and 30)",
                     "vrrp_rlimit_rttime and checker_rlimit_rttime differ",
                     "vrrp_cpu_affinity and checker_cpu_affinity differ (0 1 and 3)",
                     "vrrp_process_name lb_v and checker_process_name lb_c differ"):
        assert expected in warned


def test_plan_defaults_change_nothing_but_the_umask(tmp_path):
    plan = process.plan(defs(tmp_path).config)
    assert plan == process.ProcessPlan()
    assert plan.umask == 0o022 and plan.rlimit_rttime is None


def test_rttime_defaults_to_keepalived_s_with_real_time_scheduling(tmp_path):
    plan = process.plan(defs(tmp_path, "checker_rt_priority 3", "process_names").config)
    assert (plan.rt_priority, plan.rlimit_rttime, plan.name) == (3, 10000, "keepalived")


def test_dump_files_by_keyword_by_instance_and_by_default(tmp_path):
    plain = defs(tmp_path).config
    assert dumps.path(plain, "state", "/var/lib/director") == "/var/lib/director/director.data"
    assert dumps.path(plain, "json", "/s") == "/s/director.json"
    named = load(tmp_path, "instance LB_A\nnet_namespace blue\nglobal_defs {\n"
                           "    data_use_instance\n    stats_dump_file /run/x.stats\n}\n").config
    assert dumps.path(named, "state", "/s") == "/s/director_LB_A_blue.data"
    assert dumps.path(named, "stats", "/s") == "/run/x.stats"


def test_json_dump_versions():
    vrrp = {"instances": [{"name": "VI_1", "state": "MASTER", "counters": {"adverts_sent": 3}}]}
    assert dumps.vrrp_json(vrrp, 1) == [{"data": {"name": "VI_1", "state": "MASTER"},
                                        "stats": {"adverts_sent": 3}}]
    assert dumps.vrrp_json(vrrp, 2) == {"version": 2, "vrrp": dumps.vrrp_json(vrrp, 1)}


def test_use_pid_dir_names_the_pid_file_after_the_instance(tmp_path):
    assert process.pid_dir_file(defs(tmp_path).config) is None
    assert process.pid_dir_file(load(tmp_path, "use_pid_dir\n").config) == \
        "/run/keepalived/keepalived.pid"
    assert process.pid_dir_file(load(tmp_path, "instance B\nglobal_defs {\n use_pid_dir\n}\n"
                                     ).config) == "/run/keepalived/keepalived_B.pid"


def test_tmp_config_directory_must_exist(tmp_path):
    assert defs(tmp_path, f"tmp_config_directory {tmp_path}").ok
    result = defs(tmp_path, f"tmp_config_directory {tmp_path}/none")
    assert any("is not a directory" in m for m in messages(result))


def test_netlink_buffers_reach_the_sockets(tmp_path):
    """lvs_ and vrrp_netlink_cmd_rcv_bufs (_force: past rmem_max, root only) on the IPVS
    generic netlink socket and the VIPs' rtnetlink socket (the kernel doubles the value)."""
    import os
    import socket

    from pyroute2.netlink import CTRL_CMD_GETFAMILY, ctrlmsg

    from director.lb.genl import GenlSocket
    from director.vrrp.addresses import Addresses
    config = defs(tmp_path, "lvs_netlink_monitor_rcv_bufs 100000",
                  "lvs_netlink_cmd_rcv_bufs 9000000", "lvs_netlink_cmd_rcv_bufs_force",
                  "vrrp_netlink_cmd_rcv_bufs 7000000", "vrrp_netlink_cmd_rcv_bufs_force").config
    assert process.netlink_buffer(config, "lvs") == (9000000, True)
    assert process.netlink_buffer(config, "vrrp") == (7000000, True)
    assert process.netlink_buffer(defs(tmp_path, "lvs_netlink_monitor_rcv_bufs 1000").config,
                                  "lvs") == (1000, False)
    assert process.netlink_buffer(defs(tmp_path).config, "vrrp") is None
    if os.geteuid() != 0:
        pytest.skip("SO_RCVBUFFORCE needs root")
    genl = GenlSocket(family="nlctrl", message_class=ctrlmsg, version=1,
                      receive_buffer=process.netlink_buffer(config, "lvs"))
    addresses = Addresses()
    addresses.receive_buffer = process.netlink_buffer(config, "vrrp")
    try:
        genl.request(CTRL_CMD_GETFAMILY, [], dump=True)
        assert genl._socket.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) == 2 * 9000000
        addresses.open()
        assert addresses.ipr.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) == 2 * 7000000
    finally:
        genl.close()
        addresses.close()


def test_auto_priority_rises_one_step_per_late_run_up_to_the_maximum(tmp_path, monkeypatch):
    applied = []
    monkeypatch.setattr(process, "_realtime", lambda plan: applied.append(plan.rt_priority))
    auto = process.AutoPriority()
    config = defs(tmp_path, "max_auto_priority 2", "min_auto_priority_delay 200000").config
    auto.configure(config, process.plan(config))
    auto.on_lag(0.1)                         # under the delay: nothing
    for _ in range(4):
        auto.on_lag(0.25)
    assert applied == [1, 2]                 # SCHED_RR 1, then one more, never past 2
    off = process.AutoPriority()
    plain = defs(tmp_path).config
    off.configure(plain, process.plan(plain))
    off.on_lag(30.0)
    assert applied == [1, 2]
