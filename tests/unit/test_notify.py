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
