"""The pure parts of tracking: keepalived 2.2.7's weight rules (vrrp_track.c, track_file.c),
what an instance tracks with its sync group's lines (vrrp.c), and track_process's matching,
quorum and delays (core/track_process.c)."""

from __future__ import annotations

import struct

import pytest

from director.clock import FakeClock
from director.config import load_config
from director.vrrp.process_monitor import (COMM, EXEC, EXIT, FORK, listen_message, parse_event,
                                           scan)
from director.vrrp.process_tracking import ProcessQuorum, ProcessSpec, matches
from director.vrrp.tracked import Tracked, contribution, effect, tracked_for


@pytest.mark.parametrize("weight, reverse, fine, added", [
    (None, False, True, 0), (None, False, False, None),
    (None, True, True, None), (None, True, False, 0),          # reverse: FAULT while fine
    (10, False, True, 10), (10, False, False, 0),
    (-10, False, True, 0), (-10, False, False, -10),
    (10, True, True, -10), (10, True, False, 0),               # keepalived: negated, not swapped
    (-10, True, True, 0), (-10, True, False, 10),
])
def test_weight_rule(weight, reverse, fine, added):
    assert contribution(Tracked("process p", weight, reverse), fine) == added


@pytest.mark.parametrize("weight, reverse, value, added", [
    (0, False, 0, 0), (0, False, 3, None), (0, True, 0, None), (0, True, 3, 0),
    (1, False, 7, 7), (-10, False, 2, -20), (5, True, 2, -10),
    (1, False, 300, 253),                      # clamped to 253
    (-254, False, 1, None),                    # -254 is FAULT
    (1, False, -254, None), (1, False, -253, -253),
])
def test_file_rule(weight, reverse, value, added):
    assert contribution(Tracked("file f", weight, reverse, valued=True), value) == added


def test_effect_clamps_and_spares_the_owner():
    items = [Tracked("file f", 1, valued=True), Tracked("process p", -50)]
    assert effect(100, items, {"file f": 200, "process p": False}) == (250, frozenset())
    assert effect(100, items, {"file f": 253}) == (254, frozenset())
    assert effect(20, items, {"process p": False}) == (1, frozenset())
    assert effect(255, items, {"file f": -300, "process p": False}) == \
        (255, frozenset({"file f"}))


def _config(tmp_path, text):
    path = tmp_path / "keepalived.conf"
    path.write_text(text)
    result = load_config(str(path), config_id="t", interface_exists=None)
    assert result.ok, [str(d) for d in result.errors]
    return result.config, [str(w) for w in result.warnings]


DEFS = """
vrrp_script chk { script "/bin/true"
  weight 5 }
track_file f { file /tmp/nowhere }
vrrp_track_process p { process haproxy
  weight -20 }
"""


def _instance(name, extra="", priority=100):
    return (f"vrrp_instance {name} {{ interface lo\n virtual_router_id {priority % 200 + 1}\n"
            f" priority {priority}\n virtual_ipaddress {{ 10.0.0.{priority % 200 + 1} }}\n"
            f"{extra}\n}}\n")


def test_instance_alone_keeps_its_weights(tmp_path):
    config, _ = _config(tmp_path, DEFS + _instance("A", """
      track_interface { lo weight 10 }
      track_script { chk }
      track_file { f }
      track_process { p weight 30 reverse }"""))
    items, notes = tracked_for(config, config.vrrp_instances[0])
    assert items == [Tracked("interface lo", 10), Tracked("script chk", 5),
                     Tracked("file f", 1, valued=True), Tracked("process p", 30, True)]
    assert notes == []


def test_sync_group_without_tracking_weight(tmp_path):
    config, warnings = _config(tmp_path, DEFS + _instance("A", """
      track_interface { lo weight 10 }
      track_script { chk }
      track_file { f }
      track_process { p }""") + _instance("B", priority=90) + """
vrrp_sync_group G {
  group {
 A
 B
 }
  track_process { p weight -5 }
  track_file { f weight 0 }
}""")
    a, b = config.vrrp_instances
    items, notes = tracked_for(config, a)
    # interface: unweighted; script: dropped; file weight 1: unweighted (the instance's
    # unweighted line beats the group's); process: the group's weight
    assert items == [Tracked("interface lo", 0), Tracked("file f", 0, valued=True),
                     Tracked("process p", -5)]
    assert len(notes) == 3 and any("track_script chk ignored" in n for n in notes)
    assert tracked_for(config, b)[0] == [Tracked("interface lo", None),
                                         Tracked("file f", 0, valued=True),
                                         Tracked("process p", -5)]
    assert sum("ignored" in w for w in warnings) == 3


def test_sync_group_tracking_weight_and_owner(tmp_path):
    config, _ = _config(tmp_path, DEFS + _instance("A", "track_script { chk }") +
                        _instance("B", priority=255) + """
vrrp_sync_group G {
  group {
 A
 B
 }
  sync_group_tracking_weight
  track_process { p }
}""")
    a, b = config.vrrp_instances
    # with the flag, A keeps its script's weight; the owner member clears the group's weight
    assert tracked_for(config, a)[0][1:] == [Tracked("script chk", 5), Tracked("process p", 0)]
    assert tracked_for(config, b)[0][1:] == [Tracked("process p", 0)]


def test_global_tracking_is_the_old_name(tmp_path):
    config, warnings = _config(tmp_path, DEFS + _instance("A") + _instance("B", priority=90) +
                               "vrrp_sync_group G {\n group {\n A\n B\n }\n global_tracking\n}")
    assert config.vrrp_sync_groups[0].sync_group_tracking_weight is True
    assert any("global_tracking is deprecated" in w for w in warnings)


def test_track_process_block(tmp_path):
    config, _ = _config(tmp_path, """
vrrp_track_process a { process nginx: master process
  delay 2
  fork_delay 0.5 }
vrrp_track_process none { process sshd
  quorum_max 0 }""" + _instance("A", "track_process { a\n none weight 254 }"))
    spec = ProcessSpec.of(config.vrrp_track_processes[0])
    assert spec == ProcessSpec("a", "nginx:", b"master\0process\0", "exact", True, 1,
                               spec.quorum_max, 2.0, 0.5)
    none = ProcessSpec.of(config.vrrp_track_processes[1])
    assert (none.quorum, none.quorum_max) == (0, 0)
    assert config.vrrp_instances[0].track_process[1].weight == 254     # not clamped


@pytest.mark.parametrize("text, error", [
    ("vrrp_track_process a { weight 2 }", "needs 'process'"),
    ("vrrp_track_process a { process x\n quorum 3\n quorum_max 2 }", "greater than quorum_max"),
    ("vrrp_track_process a { process x\n delay 0 }", "from 1e-06 to 3600"),
    ("vrrp_track_process a { process x\n param_match all }", "initial"),
    (_instance("A", "track_process { missing }"), "not defined"),
])
def test_track_process_errors(tmp_path, text, error):
    path = tmp_path / "k.conf"
    path.write_text(text)
    result = load_config(str(path), config_id="t", interface_exists=None)
    assert any(error in str(d) for d in result.errors), [str(d) for d in result.errors]
    assert all(":" in str(d).split(" ")[0] for d in result.errors)      # FILE:LINE


# -- matching -------------------------------------------------------------------------------

@pytest.mark.parametrize("spec, comm, cmdline, expected", [
    (ProcessSpec("p", "haproxy"), "haproxy", b"/usr/sbin/haproxy\0-f\0", True),
    (ProcessSpec("p", "haproxy"), None, b"/usr/sbin/haproxy\0", False),          # zombie
    (ProcessSpec("p", "/usr/sbin/haproxy", full_command=True), "x", b"/usr/sbin/haproxy\0-f\0",
     True),
    (ProcessSpec("p", "a", b"-f\0", "exact", True), "a", b"a\0-f\0", True),
    (ProcessSpec("p", "a", b"-f\0", "exact", True), "a", b"a\0-f\0x\0", False),
    (ProcessSpec("p", "a", None, "exact", True), "a", b"a\0", True),
    (ProcessSpec("p", "a", None, "exact", True), "a", b"a\0-x\0", False),
    (ProcessSpec("p", "a", b"-f\0", "partial", True), "a", b"a\0-f\0x\0", True),
    (ProcessSpec("p", "a", b"-f\0", "partial", True), "a", b"a\0-fx\0", False),
    (ProcessSpec("p", "a", b"-f\0", "initial", True), "a", b"a\0-fx\0", True),
    (ProcessSpec("p", "a", b"-g\0", "initial", True), "a", b"a\0-fx\0", False),
])
def test_matches(spec, comm, cmdline, expected):
    assert matches(spec, comm, cmdline) is expected


# -- quorum and delays ------------------------------------------------------------------------

def test_quorum_of_two_with_a_limit():
    quorum = ProcessQuorum(ProcessSpec("p", "x", quorum=2, quorum_max=3))
    clock = FakeClock()
    assert not quorum.reset({1})
    assert quorum.found(2, clock.now()) and quorum.up
    assert not quorum.found(3, clock.now())
    assert quorum.found(4, clock.now()) and not quorum.up          # above quorum_max
    assert quorum.exited(4, clock.now()) and quorum.up
    assert quorum.exited(3, clock.now()) is False
    assert quorum.exited(2, clock.now()) and not quorum.up


def test_terminate_delay_and_a_restart_within_it():
    quorum = ProcessQuorum(ProcessSpec("p", "x", terminate_delay=2.0))
    clock = FakeClock()
    quorum.reset({10})
    assert not quorum.exited(10, clock.now()) and quorum.up        # held for the delay
    clock.advance(1.0)
    assert not quorum.expire(clock.now())
    assert not quorum.found(11, clock.now()) and quorum.up         # back in time: no flap
    assert quorum.deadline is None
    assert not quorum.exited(11, clock.now())
    clock.advance(2.0)
    assert quorum.expire(clock.now()) and not quorum.up            # gone for the delay


def test_fork_delay_and_exec():
    quorum = ProcessQuorum(ProcessSpec("p", "x", quorum=2, fork_delay=1.0))
    clock = FakeClock()
    quorum.reset({1})
    assert not quorum.forked(2, clock.now()) and not quorum.up     # a fork waits
    clock.advance(1.0)
    assert quorum.expire(clock.now()) and quorum.up
    assert quorum.lost(2, clock.now()) and not quorum.up           # exec'd away: at once
    assert quorum.found(3, clock.now()) and quorum.up              # a new process: at once
    quorum.exited(3, clock.now())
    assert not quorum.forked(4, clock.now())
    assert quorum.exited(4, clock.now()) is False and quorum.deadline is None  # gain cancelled
    clock.advance(5)
    assert not quorum.expire(clock.now()) and not quorum.up


def test_quorum_zero_means_none_running():
    quorum = ProcessQuorum(ProcessSpec("p", "x", quorum=0, quorum_max=0))
    assert quorum.reset(set()) and quorum.up
    assert quorum.found(5, 0.0) and not quorum.up
    assert quorum.exited(5, 0.0) and quorum.up


# -- the kernel's messages and /proc ------------------------------------------------------

def _event(what, *words, comm=b""):
    body = struct.pack("=IIQ", what, 0, 0) + struct.pack(f"={len(words)}I", *words) + comm
    cn = struct.pack("=IIIIHH", 1, 1, 7, 0, len(body), 0) + body
    return struct.pack("=IHHII", 16 + len(cn), 3, 0, 0, 0) + cn


def test_parse_event():
    assert parse_event(_event(FORK, 100, 100, 200, 200)) == (FORK, 200, 100)
    assert parse_event(_event(FORK, 100, 100, 201, 200)) is None       # a thread
    assert parse_event(_event(EXEC, 300, 300)) == (EXEC, 300)
    assert parse_event(_event(EXIT, 300, 300, 0, 9)) == (EXIT, 300)
    assert parse_event(_event(EXIT, 301, 300, 0, 9)) is None            # a thread
    assert parse_event(_event(COMM, 5, 5, comm=b"newname\0".ljust(16, b"\0"))) == \
        (COMM, 5, "newname")
    assert parse_event(b"\0" * 20) is None
    assert parse_event(_event(0x4, 1, 1, 0, 0)) is None                 # uid change
    assert len(listen_message(1)) == 40


def test_scan_reads_names_and_command_lines(tmp_path):
    for pid, stat, cmdline in ((1, "1 (my proc) S 0", b"/bin/my\0-x\0"),
                               (2, "2 (my proc) Z 0", b""),
                               (3, "3 (other) S 0", b"/bin/my\0-y\0")):
        (tmp_path / str(pid)).mkdir()
        (tmp_path / str(pid) / "stat").write_text(stat)
        (tmp_path / str(pid) / "cmdline").write_bytes(cmdline)
    (tmp_path / "self").mkdir()
    found = scan([ProcessSpec("a", "my proc"),
                  ProcessSpec("b", "/bin/my", b"-y\0", "exact", True)], str(tmp_path))
    assert found == {"a": {1}, "b": {3}}


# -- reload -----------------------------------------------------------------------------------

def test_reload_restarts_what_tracks_a_changed_definition(tmp_path):
    from director.reconcile import plan_instances
    base = (DEFS + _instance("A", "track_process { p }") + _instance("B", priority=90) +
            _instance("C", priority=80))
    old, _ = _config(tmp_path, base + "vrrp_sync_group G {\n group {\n B\n C\n }\n}\n")
    # p's delay changed: A restarts; G gained a track_file: B and C restart
    new, _ = _config(tmp_path, base.replace("weight -20 }", "weight -20\n delay 1 }") +
                     "vrrp_sync_group G {\n group {\n B\n C\n }\n track_file {\n f\n }\n}\n")
    plan = plan_instances(old, new)
    assert plan.changed == ("A", "B", "C") and plan.kept == ()
    assert plan_instances(old, old).kept == ("A", "B", "C")
    # C leaves the group: it restarts, B does not (the group is rebuilt around it)
    alone, _ = _config(tmp_path, base + "vrrp_sync_group G {\n group {\n B\n }\n}\n")
    plan = plan_instances(old, alone)
    assert plan.changed == ("C",) and plan.sync_groups == ("G",)


def test_a_late_exec_event_of_a_process_gone_changes_nothing(tmp_path):
    """Events queue while a scan runs: an exec reported after its process died must not
    count as 'no longer matching' (that skipped terminate_delay); its exit counts."""
    from director.vrrp.process_monitor import ProcessMonitor
    (tmp_path / "7").mkdir()
    (tmp_path / "7" / "stat").write_text("7 (app) S 1")
    (tmp_path / "7" / "cmdline").write_bytes(b"app\0")
    clock = FakeClock()
    monitor = ProcessMonitor(clock, proc=str(tmp_path))
    monitor.configure([ProcessSpec("p", "app", terminate_delay=1.0)])
    told = []
    monitor.subscribe("p", lambda name, up: told.append(up))
    (tmp_path / "7" / "stat").unlink()                 # it died
    monitor.handle((EXEC, 7))
    assert monitor.quorums["p"].pids == {7} and told == [True]
    monitor.handle((EXIT, 7))
    assert told == [True] and monitor.quorums["p"].pending == "terminate"
    clock.advance(1.0)
    monitor._due()
    assert told == [True, False]


# -- track_file -----------------------------------------------------------------------------

def test_init_file_as_keepalived(tmp_path):
    from director.vrrp.file_tracking import init_file
    path = tmp_path / "f"
    assert init_file(str(path), 5, False, reload=False) is None and path.read_text() == "5\n"
    path.write_text("9\n")
    assert init_file(str(path), 5, False, reload=False) is None and path.read_text() == "9\n"
    assert init_file(str(path), 5, True, reload=True) is None and path.read_text() == "9\n"
    assert init_file(str(path), 5, True, reload=False) is None and path.read_text() == "5\n"
    assert init_file(str(tmp_path), 1, True, reload=False) == "not a regular file"
    assert init_file(str(tmp_path / "no" / "f"), 1, False, reload=False)     # no directory


def test_file_watcher_values(tmp_path):
    from types import SimpleNamespace
    from director.vrrp.file_tracking import FileWatcher
    path = tmp_path / "f"
    watcher = FileWatcher()
    watcher.configure([SimpleNamespace(name="f", file=str(path), init_file=None)])
    told = []
    watcher.subscribe("f", lambda name, value: told.append(value))
    assert told == [0]                                  # missing: 0
    for text, value in (("0x10\n", 16), ("  -7 apples", -7), ("99999999999", -7),  # ignored
                        ("", 0), ("012", 10)):
        path.write_text(text)
        watcher._read("f")
        assert told[-1] == value, text


def test_track_group_follows_the_interfaces_of_the_static_entries_naming_it(tmp_path):
    """keepalived's track_group: its instances track, unweighted, the dev of a static address
    or route and the iif of a static rule naming the group (not no_track ones); an instance
    outside the group tracks none of them (failed before: 'not acted on')."""
    config, warnings = _config(tmp_path, """
track_group TG { group { A } }
static_ipaddress {
    10.9.0.1/24 dev up0 track_group TG
    10.9.1.1/24 dev up9 track_group TG no_track
}
static_routes { 10.8.0.0/16 via 10.9.0.254 dev up1 track_group TG }
static_rules { from 10.9.0.1 iif up2 table 100 track_group TG }
""" + _instance("A", "track_interface { up1 weight 10 }") + _instance("B", priority=101))
    assert not [w for w in warnings if "not acted on" in w]
    a, b = config.vrrp_instances
    items, _ = tracked_for(config, a)
    assert items == [Tracked("interface lo", None), Tracked("interface up1", None),
                     Tracked("interface up0", None), Tracked("interface up2", None)]
    assert tracked_for(config, b)[0] == [Tracked("interface lo", None)]
