"""Notification scripts: no shell, arguments appended, results counted, hung ones killed."""

from __future__ import annotations

import time

from director.config.values import Command
from director.notify import Notifier


def run(notifier, command, extra=()):
    return notifier.notify(command, extra, "test").get(timeout=10)


def test_arguments_are_appended_without_a_shell(tmp_path):
    out = tmp_path / "out"
    script = tmp_path / "s.sh"
    script.write_text(f'#!/bin/sh\nprintf "%s|" "$@" > {out}\n')
    script.chmod(0o755)
    notifier = Notifier()
    assert run(notifier, Command(f"{script} 'two words' $HOME;x"), ("INSTANCE", "VI_1")) == "ok"
    assert out.read_text() == "two words|$HOME;x|INSTANCE|VI_1|"     # nothing expanded
    assert notifier.results == {"ok": 1}


def test_failures_errors_and_timeouts_are_counted(tmp_path):
    notifier = Notifier(timeout=0.3)
    assert run(notifier, Command("/bin/false")) == "failed"
    assert run(notifier, Command(str(tmp_path / "missing"))) == "error"
    assert run(notifier, Command("/bin/true", user="no-such-user-here")) == "error"
    started = time.monotonic()
    assert run(notifier, Command("/bin/sleep 30")) == "timeout"
    assert time.monotonic() - started < 5
    assert notifier.results == {"failed": 1, "error": 2, "timeout": 1}


def test_scripts_run_as_the_configured_user_with_its_primary_group_only():
    import pwd
    import shutil
    import tempfile
    from pathlib import Path

    folder = Path(tempfile.mkdtemp(dir="/tmp"))     # pytest's tmp_path is closed to nobody
    folder.chmod(0o777)
    out = folder / "who"
    script = folder / "who.sh"
    script.write_text(f'#!/bin/sh\nid -u > {out}\nid -G >> {out}\n')
    script.chmod(0o755)
    nobody = pwd.getpwnam("nobody")
    assert run(Notifier(script_user="nobody"), Command(str(script))) == "ok"
    try:
        uid, groups = out.read_text().split("\n")[:2]
    finally:
        shutil.rmtree(folder)
    assert int(uid) == nobody.pw_uid
    assert groups.split() == [str(nobody.pw_gid)]


def test_syslog_gets_one_event_per_datagram_with_the_facility(tmp_path):
    """-S 3: LOCAL3; what syslog receives is the same event line, tagged director[pid]."""
    import logging
    import os
    import socket

    from director import log
    path = str(tmp_path / "log.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(path)
    server.settimeout(5)
    try:
        log.setup(console=False, facility="3", syslog_address=path)
        log.event(logging.getLogger("director.test"), "vrrp.transition", instance="VI_1",
                  to="MASTER")
        datagram = server.recv(4096).decode()
    finally:
        server.close()
        log.setup()
    local3_info = (16 + 3) * 8 + 6
    assert datagram.startswith(f"<{local3_info}>director[{os.getpid()}]: INFO ")
    assert "vrrp.transition instance=VI_1 to=MASTER" in datagram


def test_without_a_syslog_socket_it_logs_to_stderr_and_says_so(tmp_path, capsys):
    import io
    import logging

    from director import log
    stream = io.StringIO()
    try:
        log.setup(console=False, syslog_address=str(tmp_path / "none"), stream=stream)
        log.event(logging.getLogger("director.test"), "check.state", state="down")
    finally:
        log.setup()
    text = stream.getvalue()
    assert "log.syslog_unavailable no syslog at" in text
    assert "check.state state=down" in text


def test_a_hung_script_is_killed_with_the_children_it_left(tmp_path):
    """A shell script stuck waiting on its 'sleep': the whole group is killed, not only the
    shell (before, the sleep lived on; under the daemon's gevent it held the stderr pipe and
    a shutdown_script's wait for its full 60 s: failed before)."""
    import os
    child = tmp_path / "child"
    script = tmp_path / "hang.sh"
    script.write_text(f"#!/bin/sh\nsleep 60 &\necho $! > {child}\nwait\n")
    script.chmod(0o755)
    started = time.monotonic()
    assert run(Notifier(timeout=0.5), Command(str(script))) == "timeout"
    assert time.monotonic() - started < 5
    pid = int(child.read_text())
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and os.path.exists(f"/proc/{pid}") and \
            open(f"/proc/{pid}/stat").read().split()[2] != "Z":
        time.sleep(0.05)
    alive = os.path.exists(f"/proc/{pid}") and open(f"/proc/{pid}/stat").read().split()[2] != "Z"
    if alive:
        os.kill(pid, 9)
    assert not alive, "the script's child outlived the timeout"


def test_set_supplementary_groups_gives_the_user_its_other_groups():
    import grp
    import os
    import pwd

    from director.notify import identity
    member = next(((g.gr_mem[0], g.gr_gid) for g in grp.getgrall()
                   if g.gr_mem and g.gr_mem[0] in {p.pw_name for p in pwd.getpwall()}), None)
    if member is None:
        import pytest
        pytest.skip("no user here with a supplementary group")
    user, gid = member
    assert identity(user, None)["extra_groups"] == []
    assert gid in identity(user, None, supplementary=True)["extra_groups"]
    assert identity(user, None, True)["extra_groups"] == os.getgrouplist(
        user, pwd.getpwnam(user).pw_gid)
