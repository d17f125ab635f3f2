"""MISC_CHECK scripts for real (exit codes, misc_dynamic, timeouts that kill a script's
children too, scripts that cannot run) and PING_CHECK against lab namespaces (IPv4 and
IPv6, datagram and raw ICMP sockets, a host that is up, one whose link is down, an address
nobody has). Traffic goes only to loopback or to lab namespaces (documentation ranges)."""

from __future__ import annotations

import json
import os
import pwd
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from director.check.checker import Target
from director.check.misc import MiscCheck
from director.check.ping import PingCheck, open_icmp_socket
from director.config.values import Command
from tests.functional.lab import wait_for

ROOT = Path(__file__).resolve().parents[2]
SLACK = 1.0                      # scheduling slack on top of a timeout


def misc(line, *, timeout=None, dynamic=False, user=None, connect_timeout=5.0, **kw):
    config = SimpleNamespace(kind="MISC_CHECK", misc_path=Command(line), misc_timeout=timeout,
                             misc_dynamic=dynamic, user=user)
    return MiscCheck(config, Target("192.0.2.10", None, connect_timeout), **kw)


def script(tmp_path, name, body):
    path = tmp_path / name
    path.write_text("#!/bin/sh\n" + textwrap.dedent(body))
    path.chmod(0o755)
    return path


def alive(pid: int) -> bool:
    """Whether pid is a live process (a zombie, waiting for a reaper, is dead)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def read_pid(path: Path) -> int:
    wait_for(lambda: path.exists() and path.read_text().strip(), 5, message=f"{path} written")
    return int(path.read_text())


HANGING = """\
    sleep 1000 &
    echo $! > "$(dirname "$0")/child.pid"
    echo $$ > "$(dirname "$0")/parent.pid"
    wait
"""

# -- MISC_CHECK ---------------------------------------------------------------------------------


def test_exit_codes(tmp_path):
    ok, fails, three = (script(tmp_path, f"exit{n}", f"exit {n}\n") for n in (0, 1, 3))
    result = misc(str(ok)).check()
    assert (result.ok, result.error, result.weight) == (True, None, None)
    result = misc(str(fails)).check()
    assert (result.ok, result.error) == (False, "exit 1")
    result = misc(str(three)).check()
    assert (result.ok, result.error) == (False, "exit 3")
    assert result.duration < 5


def test_misc_dynamic_sets_the_weight(tmp_path):
    seven = script(tmp_path, "seven", "exit 7\n")
    result = misc(str(seven), dynamic=True).check()
    assert (result.ok, result.weight, result.error) == (True, 5, None)
    result = misc(str(script(tmp_path, "one", "exit 1\n")), dynamic=True).check()
    assert (result.ok, result.weight, result.error) == (False, None, "exit 1")
    result = misc(str(script(tmp_path, "zero", "exit 0\n")), dynamic=True).check()
    assert (result.ok, result.weight) == (True, None)        # the configured weight


def test_arguments_are_split_without_a_shell(tmp_path):
    out = tmp_path / "args"
    args = script(tmp_path, "args", f'printf "%s|" "$@" > {out}\n')
    assert misc(f"{args} 'two words' $HOME;x").check().ok
    assert out.read_text() == "two words|$HOME;x|"


def test_loader_variables_are_removed(tmp_path, monkeypatch):
    monkeypatch.setenv("LD_LIBRARY_PATH", "/nowhere")
    monkeypatch.setenv("DIRECTOR_TEST_KEPT", "yes")
    check = script(tmp_path, "env",
                   '[ -z "$LD_LIBRARY_PATH" ] && [ "$DIRECTOR_TEST_KEPT" = yes ]\n')
    assert misc(str(check)).check().ok


def test_a_hanging_script_and_its_child_are_killed_at_the_timeout(tmp_path):
    hang = script(tmp_path, "hang", HANGING)
    started = time.monotonic()
    result = misc(str(hang), timeout=0.5).check()
    elapsed = time.monotonic() - started
    assert (result.ok, result.error) == (False, "timed out after 0.5 s")
    assert 0.5 <= elapsed < 0.5 + SLACK
    parent, child = read_pid(tmp_path / "parent.pid"), read_pid(tmp_path / "child.pid")
    wait_for(lambda: not alive(parent) and not alive(child), 5,
             message=f"script {parent} and its child {child} gone")


def test_a_script_ignoring_sigterm_is_killed_after_the_grace(tmp_path):
    stubborn = script(tmp_path, "stubborn", "trap '' TERM\n" + textwrap.dedent(HANGING))
    started = time.monotonic()
    result = misc(str(stubborn), timeout=0.3, kill_grace=0.2).check()
    assert (result.ok, result.error) == (False, "timed out after 0.3 s")
    assert time.monotonic() - started < 0.3 + 0.2 + SLACK
    parent, child = read_pid(tmp_path / "parent.pid"), read_pid(tmp_path / "child.pid")
    wait_for(lambda: not alive(parent) and not alive(child), 5,
             message=f"script {parent} and its child {child} gone")


def test_the_timeout_defaults_to_delay_loop_else_connect_timeout(tmp_path):
    assert misc("/bin/true", connect_timeout=2.5).timeout == 2.5
    assert misc("/bin/true", connect_timeout=2.5, delay_loop=7.0).timeout == 7.0
    assert misc("/bin/true", timeout=3.0, delay_loop=7.0).timeout == 3.0
    assert misc("/bin/true", timeout=0, delay_loop=7.0).timeout == 7.0   # 0: not set


def test_scripts_that_cannot_run(tmp_path):
    result = misc(str(tmp_path / "missing")).check()
    assert not result.ok and result.error.startswith("cannot run: ")
    assert "No such file or directory" in result.error
    plain = tmp_path / "plain"
    plain.write_text("exit 0\n")
    result = misc(str(plain)).check()
    assert not result.ok and "Permission denied" in result.error
    result = misc("/bin/true", user="no-such-user-here").check()
    assert (result.ok, result.error) == (
        False, "cannot run: script user 'no-such-user-here' does not exist")
    result = misc("'unbalanced").check()
    assert not result.ok and result.error.startswith("cannot run: cannot split the command")


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to change user")
def test_runs_as_the_checker_user_else_script_user():
    nobody = pwd.getpwnam("nobody")
    is_nobody = f"""sh -c '[ "$(id -u)" = {nobody.pw_uid} ] && [ "$(id -G)" = {nobody.pw_gid} ]'"""
    assert misc(is_nobody, user="nobody").check().ok
    assert misc(is_nobody, script_user="nobody").check().ok
    assert not misc(is_nobody, user="root", script_user="nobody").check().ok
    assert not misc(is_nobody).check().ok                       # ourselves


GEVENT_SCRIPT = r"""
from gevent import monkey; monkey.patch_all()
import json, sys, time
from pathlib import Path
from types import SimpleNamespace
import gevent
from director.check.checker import Target
from director.check.misc import MiscCheck
from director.config.values import Command

hang, timeout = sys.argv[1], float(sys.argv[2])
config = SimpleNamespace(kind="MISC_CHECK", misc_path=Command(hang), misc_timeout=timeout,
                         misc_dynamic=False, user=None)
check = MiscCheck(config, Target("192.0.2.10", None, 5.0))
ticks = []
ticker = gevent.spawn(lambda: [ticks.append(gevent.sleep(0.05)) for _ in range(1000)])
attempt = gevent.spawn(check.check)
pidfile = Path(hang).parent / "child.pid"
for _ in range(500):                      # until the script has started its child (5 s)
    if pidfile.exists() and pidfile.read_text().strip():
        break
    gevent.sleep(0.01)
attempt.join(float(sys.argv[3]))
finished = attempt.ready()
result = attempt.value if finished else None
attempt.kill(block=True, timeout=10)     # what the scheduler does at its hard deadline
ticker.kill()
print(json.dumps({"finished": finished, "error": result and result.error,
                  "ticks": len(ticks)}))
"""


def run_gevent_attempt(hang, timeout, join):
    done = subprocess.run([sys.executable, "-c", GEVENT_SCRIPT, str(hang), str(timeout),
                           str(join)], capture_output=True, text=True, timeout=30, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.mark.slow
def test_under_gevent_the_wait_is_cooperative_and_a_killed_attempt_kills_the_script(tmp_path):
    hang = script(tmp_path, "hang", HANGING)
    out = run_gevent_attempt(hang, 0.5, 5)
    assert out["finished"] and out["error"] == "timed out after 0.5 s"
    assert out["ticks"] >= 5                  # the loop kept running while the script hung
    parent, child = read_pid(tmp_path / "parent.pid"), read_pid(tmp_path / "child.pid")
    wait_for(lambda: not alive(parent) and not alive(child), 5, message="script gone")

    for name in ("parent.pid", "child.pid"):
        (tmp_path / name).unlink()
    out = run_gevent_attempt(hang, 60, 0.3)   # killed long before its own timeout
    assert not out["finished"]
    parent, child = read_pid(tmp_path / "parent.pid"), read_pid(tmp_path / "child.pid")
    wait_for(lambda: not alive(parent) and not alive(child), 5,
             message=f"script {parent} and its child {child} gone after the kill")

# -- PING_CHECK ---------------------------------------------------------------------------------


def _can_ping_here():
    try:
        sock, _ = open_icmp_socket(socket.AF_INET)
    except OSError as exc:
        return str(exc)
    sock.close()
    return None


@pytest.mark.skipif(_can_ping_here() is not None, reason=f"no ICMP socket: {_can_ping_here()}")
@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_ping_loopback(host):
    check = PingCheck(SimpleNamespace(kind="PING_CHECK"), Target(host, None, 1.0))
    results = [check.check(), check.check()]
    assert [r.ok for r in results] == [True, True], results


# Runs PingChecks inside a lab namespace: argv[1] is a JSON list of
# {"host", "timeout", "kinds", "bind_if"}; prints a JSON list of results.
PING_SCRIPT = r"""
import json, sys
if sys.argv[2] == "gevent":
    from gevent import monkey; monkey.patch_all()
from types import SimpleNamespace
from director.check.checker import Target
from director.check.ping import PingCheck
out = []
for spec in json.loads(sys.argv[1]):
    check = PingCheck(SimpleNamespace(kind="PING_CHECK"),
                      Target(spec["host"], None, spec["timeout"], bind_if=spec.get("bind_if")))
    check.socket_kinds = tuple(spec.get("kinds", check.socket_kinds))
    result = check.check()
    out.append({"ok": result.ok, "error": result.error, "duration": result.duration})
print(json.dumps(out))
"""


def ping_from(host, specs, gevent=False):
    wall = sum(spec["timeout"] for spec in specs) + 20
    done = host.run([sys.executable, "-c", PING_SCRIPT, json.dumps(specs),
                     "gevent" if gevent else "plain"], check=False, timeout=wall, cwd=ROOT,
                    env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


ADDRESSES = {4: ("192.0.2.1/24", "192.0.2.2/24", "192.0.2.2", "192.0.2.99"),
             6: ("2001:db8::1/64", "2001:db8::2/64", "2001:db8::2", "2001:db8::99")}


def two_hosts(lab, version, dgram_allowed=True):
    mine, theirs, _, _ = ADDRESSES[version]
    sw = lab.switch()
    sysctls = {"net.ipv4.ping_group_range": "0 2147483647"} if dgram_allowed else {}
    client = lab.host("c", links=[(sw, "eth0", [mine])], sysctls=sysctls)
    # keep_addr_on_down: a link going down must not flush the server's IPv6 address
    server = lab.host("s", links=[(sw, "eth0", [theirs])],
                      sysctls={"net.ipv6.conf.default.keep_addr_on_down": 1})
    return client, server


@pytest.mark.netns
@pytest.mark.slow
@pytest.mark.parametrize("version", [4, 6])
def test_ping_a_host_that_is_up(lab, version):
    client, server = two_hosts(lab, version)
    target = ADDRESSES[version][2]
    specs = [{"host": target, "timeout": 2.0, "kinds": kinds}
             for kinds in (["dgram"], ["raw"], ["dgram"], ["raw"])]
    for gevent in (False, True):
        results = ping_from(client, specs, gevent=gevent)
        assert [r["ok"] for r in results] == [True] * 4, results
        assert all(r["duration"] < 2.0 for r in results)


@pytest.mark.netns
@pytest.mark.slow
@pytest.mark.parametrize("version", [4, 6])
def test_ping_falls_back_to_a_raw_socket(lab, version):
    client, server = two_hosts(lab, version, dgram_allowed=False)   # ping_group_range "1 0"
    results = ping_from(client, [{"host": ADDRESSES[version][2], "timeout": 2.0},
                                 {"host": ADDRESSES[version][2], "timeout": 2.0,
                                  "kinds": ["dgram"]}])
    assert results[0]["ok"], results
    assert not results[1]["ok"] and "cannot open an ICMP socket" in results[1]["error"]


@pytest.mark.netns
@pytest.mark.slow
@pytest.mark.parametrize("version", [4, 6])
def test_ping_fails_within_the_timeout(lab, version):
    client, server = two_hosts(lab, version)
    _, _, target, nobody = ADDRESSES[version]
    timeout = 0.5
    assert ping_from(client, [{"host": target, "timeout": 2.0}])[0]["ok"]

    results = ping_from(client, [{"host": nobody, "timeout": timeout, "kinds": kinds}
                                 for kinds in (["dgram"], ["raw"])], gevent=True)
    for result in results:
        assert not result["ok"] and result["error"] == f"no reply within {timeout:g} s"
        assert timeout <= result["duration"] < timeout + SLACK

    server.link("eth0", False)
    results = ping_from(client, [{"host": target, "timeout": timeout, "kinds": kinds}
                                 for kinds in (["dgram"], ["raw"])])
    for result in results:
        assert not result["ok"] and result["error"] == f"no reply within {timeout:g} s"
        assert timeout <= result["duration"] < timeout + SLACK

    server.link("eth0", True)
    wait_for(lambda: ping_from(client, [{"host": target, "timeout": 0.5}])[0]["ok"], 10,
             message="the server answers again once its link is back")

    client.link("eth0", False)                 # our own link: no route, fails at once
    result = ping_from(client, [{"host": target, "timeout": timeout}])[0]
    assert not result["ok"] and result["error"].startswith("cannot send: ")
    assert result["duration"] < timeout
