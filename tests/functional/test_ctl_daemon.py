"""``director ctl`` against a running daemon (``director -C``, checks on loopback servers,
backend none), as test_web_daemon.py runs one: its status is /api/v1/state's; drain and
restore work for root and are refused to nobody by the socket's permissions (exit 3);
``events --follow`` shows the drain; reload, dump; a garbage line gets an error reply and the
daemon lives; stop removes the socket; a stale socket is replaced, a live one left alone."""

from __future__ import annotations

import grp
import json
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest

from tests.functional.lab import wait_for
from tests.functional.test_web_daemon import ROOT, Daemon, config_text, running

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


@pytest.fixture
def state_dir():
    """A state directory everyone may pass through (0755, as /var/lib's are), so that what
    keeps another user out is the socket's own mode, not pytest's 0700 tmp_path."""
    path = Path(tempfile.mkdtemp(prefix="director-ctl-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def ctl(state_dir: Path, *args: str, user: str | None = None,
        timeout: float = 60) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "director", "ctl", "--state-dir", str(state_dir), *args]
    if user is not None:
        command = ["setpriv", f"--reuid={user}", "--regid=nogroup", "--clear-groups",
                   *command]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)))


def ctl_json(state_dir: Path, *args: str) -> dict:
    done = ctl(state_dir, "--json", *args)
    assert done.returncode == 0, done.stderr
    reply = json.loads(done.stdout)
    assert reply["ok"] is True
    return reply["result"]


def start(tmp_path: Path, state_dir: Path, ports: list[int]) -> Daemon:
    daemon = Daemon(tmp_path, ports)
    daemon.extra = ["--state-dir", str(state_dir)]      # the last one counts
    return daemon


@pytest.fixture
def servers():
    socks = [socket.create_server(("127.0.0.1", 0)) for _ in range(2)]
    yield socks
    for sock in socks:
        sock.close()


class Follow:
    """``director ctl events --follow`` in the background; ``lines`` fill as it prints."""

    def __init__(self, state_dir: Path):
        # From the last event there is now: an event made before this client has connected
        # (it starts an interpreter first) still reaches it, from the daemon's ring.
        last = max([item["id"] for item in ctl_json(state_dir, "events", "--limit", "1")],
                   default=0)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "director", "ctl", "--state-dir", str(state_dir), "events",
             "--follow", "--since", str(last)], cwd=ROOT, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, env=dict(os.environ, PYTHONPATH=str(ROOT)))
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)            # ^C
        try:
            return self.proc.wait(10)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(5)


def test_status_drain_restore_and_who_may(tmp_path, state_dir, servers):
    ports = [sock.getsockname()[1] for sock in servers]
    with running(start(tmp_path, state_dir, ports)) as daemon:
        wait_for(lambda: all(r["last_check"] for r in daemon.reals().values()), 10,
                 message=daemon.log)
        path = state_dir / "control.sock"
        info = path.stat()
        assert stat.S_ISSOCK(info.st_mode) and stat.S_IMODE(info.st_mode) == 0o600
        assert info.st_uid == 0

        # status: what /api/v1/state says, as tables and as JSON (taken one after the
        # other: on a loaded host a check may flap in between, so until they agree)
        fields = ("name", "up", "drained", "weight", "desired_weight", "configured_weight")

        def servers_of(state):
            return [(v["name"], [{k: r[k] for k in fields} for r in v["real_servers"]])
                    for v in state["virtual_servers"]]

        def agree():
            api, status = daemon.get("/api/v1/state"), ctl_json(state_dir, "status")
            return (api, status) if servers_of(api) == servers_of(status) else None
        api, status = wait_for(agree, 30, interval=0.5, message=daemon.log)
        assert len(servers_of(status)[0][1]) == 2
        text = ctl(state_dir, "status")
        assert text.returncode == 0, text.stderr
        print(text.stdout)
        assert "TCP  127.0.0.1:80 wrr" in text.stdout.splitlines()
        for port in ports:
            (row,) = [line.split() for line in text.stdout.splitlines()
                      if f"-> 127.0.0.1:{port}" in line]
            assert row[2:6] == ["Masq", "-/3", "-", "-"] and row[6] == "up"

        # nobody: refused by the socket's permissions, said with the path
        refused = ctl(state_dir, "drain", "127.0.0.1:80", f"127.0.0.1:{ports[0]}",
                      user="nobody")
        assert refused.returncode == 3, refused
        assert f"permission denied on {path}" in refused.stderr
        assert daemon.reals()[ports[0]]["drained"] is False

        follow = Follow(state_dir)
        try:
            # root: drain (the name without /TCP), seen in the API and the event stream
            drained = ctl(state_dir, "drain", "127.0.0.1:80", f"127.0.0.1:{ports[0]}")
            assert drained.returncode == 0, drained.stderr
            assert drained.stdout == f"drained 127.0.0.1:{ports[0]} in 127.0.0.1:80/TCP\n"
            assert daemon.reals()[ports[0]]["drained"] is True
            assert daemon.reals()[ports[1]]["drained"] is False
            wait_for(lambda: any("admin action=drain" in line for line in follow.lines), 15,
                     message=lambda: f"{follow.lines}\n{daemon.log()}")
            (line,) = [line for line in follow.lines if "action=drain" in line]
            assert f"real_server=127.0.0.1:{ports[0]}" in line
            assert 'actor="ctl:uid=0"' in line
            (row,) = [line.split() for line in ctl(state_dir, "status").stdout.splitlines()
                      if f"-> 127.0.0.1:{ports[0]}" in line]
            assert row[-1] in ("draining", "drained")    # no connection count: until timeout
        finally:
            assert follow.stop() == 0, follow.proc.stderr.read()
        restored = ctl(state_dir, "restore", "127.0.0.1:80/TCP", f"127.0.0.1:{ports[0]}")
        assert restored.returncode == 0, restored.stderr
        assert daemon.reals()[ports[0]]["drained"] is False
        events = ctl_json(state_dir, "events")
        assert [(e["action"], e["actor"]) for e in events if e["kind"] == "admin"] == \
            [("drain", "ctl:uid=0"), ("restore", "ctl:uid=0")]

        # what the daemon refuses: exit 1, the candidates listed
        unknown = ctl(state_dir, "drain", "127.0.0.1:81", f"127.0.0.1:{ports[0]}")
        assert unknown.returncode == 1
        assert "no virtual server '127.0.0.1:81'; virtual servers: 127.0.0.1:80/TCP" \
            in unknown.stderr
        unknown = ctl(state_dir, "--json", "restore", "127.0.0.1:80", "127.0.0.9:80")
        assert unknown.returncode == 1 and json.loads(unknown.stdout)["kind"] == "refused"
        assert f"real servers: 127.0.0.1:{ports[0]}, 127.0.0.1:{ports[1]}" in unknown.stderr
        # bash's completion: the names come from the daemon; bash splits words at ':'
        tools = tmp_path / "bin"
        tools.mkdir()
        (tools / "director").write_text(f"#!/bin/sh\nexec {sys.executable} -m director "
                                        '"$@"\n')
        (tools / "director").chmod(0o755)
        line = f"director ctl --state-dir {state_dir} drain 127.0.0.1:80 127.0.0.1:"
        script = ('eval "$(director ctl completion bash)"\n'
                  f"COMP_LINE='{line}'; COMP_POINT=${{#COMP_LINE}}\n"
                  f"COMP_WORDS=(director ctl --state-dir {state_dir} drain 127.0.0.1 : 80 "
                  "127.0.0.1 : ''); COMP_CWORD=$((${#COMP_WORDS[@]} - 1))\n"
                  '_director_ctl; printf "%s\\n" "${COMPREPLY[@]}"\n')
        done = subprocess.run(["bash", "-c", script], cwd=ROOT, capture_output=True,
                              text=True, timeout=60,
                              env=dict(os.environ, PYTHONPATH=str(ROOT),
                                       PATH=f"{tools}:{os.environ['PATH']}"))
        assert sorted(done.stdout.split()) == sorted(str(port) for port in ports), done
    assert not path.exists() and not path.is_symlink()        # stop removed it


def test_reload_dump_and_garbage(tmp_path, state_dir, servers):
    ports = [sock.getsockname()[1] for sock in servers]
    with running(start(tmp_path, state_dir, ports[:1])) as daemon:
        daemon.config.write_text(config_text(ports))
        done = ctl(state_dir, "reload")
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith("reload: success")
        assert set(daemon.reals()) == set(ports)
        daemon.config.write_text("virtual_server 127.0.0.1 80 {\n    lb_algo nonsense\n}\n")
        done = ctl(state_dir, "reload")
        assert done.returncode == 1 and done.stdout.startswith("reload: failure"), done
        assert "keepalived.conf:2" in done.stdout
        assert set(daemon.reals()) == set(ports)             # the old configuration runs on

        dumped = json.loads(ctl(state_dir, "dump").stdout)
        assert [v["name"] for v in dumped["virtual_servers"]] == ["127.0.0.1:80/TCP"]
        assert {r["port"] for r in dumped["virtual_servers"][0]["real_servers"]} == set(ports)
        assert "notifications" in dumped                      # USR1's, not only the API's

        # garbage on the socket: an error reply each, the connection and the daemon go on
        with socket.socket(socket.AF_UNIX) as raw:
            raw.settimeout(10)
            raw.connect(str(state_dir / "control.sock"))
            reader = raw.makefile("rb")
            for line in (b"garbage\n", b"\xff\xfe\x00\n", b'{"command": "rm -rf"}\n',
                         b'{"command": "drain", "virtual_server": 1, "real_server": []}\n',
                         b"[" * 10000 + b"\n"):
                raw.sendall(line)
                reply = json.loads(reader.readline())
                assert reply["ok"] is False and reply["kind"] == "bad_request", reply
            raw.sendall(b'{"command": "status"}\n')
            assert json.loads(reader.readline())["result"]["router_id"] == "WEB_TEST"
            raw.sendall(b"x" * 100_000 + b"\n")              # too long: said, skipped
            reply = json.loads(reader.readline())
            assert reply["kind"] == "bad_request" and "at most" in reply["error"]
            raw.sendall(b'{"command": "names"}\n')
            assert json.loads(reader.readline())["result"] == {
                "127.0.0.1:80/TCP": [f"127.0.0.1:{port}" for port in ports]}
            raw.sendall(b"y" * 100_000)                       # and never ends: closed
            assert json.loads(reader.readline())["kind"] == "bad_request"
            assert reader.readline() == b""
        assert daemon.status("/healthz") == 200
        assert ctl(state_dir, "status").returncode == 0
        assert "control.bad_request" in daemon.log()


def test_the_socket_file_is_claimed_with_care(tmp_path, state_dir, servers):
    ports = [sock.getsockname()[1] for sock in servers]
    path = state_dir / "control.sock"
    stale = socket.socket(socket.AF_UNIX)                # a crashed daemon's socket file
    stale.bind(str(path))
    stale.close()
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = start(tmp_path / "a", state_dir, ports)
    second = start(tmp_path / "b", state_dir, ports)
    with running(first):
        assert "control.stale_socket" in first.log()
        assert ctl_json(state_dir, "status")["pid"] == first.proc.pid
        # a second daemon on the same state dir runs, without taking the live socket
        with running(second):
            assert "control.not_started" in second.log()
            assert ctl_json(state_dir, "status")["pid"] == first.proc.pid
        assert ctl_json(state_dir, "status")["pid"] == first.proc.pid   # its stop left it
        # a socket path asked for by name is a requirement: that daemon does not start
        done = subprocess.run(
            [sys.executable, "-m", "director", "-C", "-l", "-f", str(second.config),
             "--backend", "none", "--web", "off", "--state-dir", str(state_dir),
             "--control-socket", str(path)],
            cwd=ROOT, capture_output=True, text=True, timeout=60,
            env=dict(os.environ, PYTHONPATH=str(ROOT)))
        assert done.returncode == 1
        assert f"{path}: a running daemon answers on it" in done.stderr
        assert ctl_json(state_dir, "status")["pid"] == first.proc.pid
    assert not path.exists()


def test_a_group_may_be_let_in(tmp_path, state_dir, servers):
    """--control-socket-group: the socket 0660 and that group's; a member acts, recorded
    with its own uid."""
    ports = [sock.getsockname()[1] for sock in servers]
    daemon = start(tmp_path, state_dir, ports)
    daemon.extra += ["--control-socket-group", "nogroup"]
    with running(daemon):
        info = (state_dir / "control.sock").stat()
        assert stat.S_IMODE(info.st_mode) == 0o660 and info.st_uid == 0
        assert info.st_gid == grp.getgrnam("nogroup").gr_gid
        done = ctl(state_dir, "drain", "127.0.0.1:80", f"127.0.0.1:{ports[1]}", user="nobody")
        assert done.returncode == 0, done.stderr
        assert daemon.reals()[ports[1]]["drained"] is True
        (drain,) = [e for e in ctl_json(state_dir, "events") if e["kind"] == "admin"]
        assert drain["actor"] == f"ctl:uid={pwd.getpwnam('nobody').pw_uid}"


def test_weight_and_diff(tmp_path, state_dir, servers):
    """``weight`` overrides a real server's weight until a reload (the API, the pool and
    status say so); ``diff FILE`` says what a reload of a changed file would change, and the
    reload then does exactly that."""
    ports = [sock.getsockname()[1] for sock in servers]
    with running(start(tmp_path, state_dir, ports)) as daemon:
        wait_for(lambda: all(r["up"] for r in daemon.reals().values()), 10,
                 message=daemon.log)
        done = ctl(state_dir, "weight", "127.0.0.1:80", f"127.0.0.1:{ports[0]}", "7")
        assert done.returncode == 0, done.stderr
        assert done.stdout == (f"weight of 127.0.0.1:{ports[0]} in 127.0.0.1:80/TCP: 7 "
                               "(overridden until a reload)\n")
        real = daemon.reals()[ports[0]]
        assert (real["weight_override"], real["desired_weight"]) == (7, 7)
        assert daemon.reals()[ports[1]]["weight_override"] is None
        (row,) = [line for line in ctl(state_dir, "status").stdout.splitlines()
                  if f"-> 127.0.0.1:{ports[0]}" in line]
        assert "7*" in row and "overridden" in row, row
        bad = ctl(state_dir, "weight", "127.0.0.1:80", "127.0.0.1:1", "7")
        assert bad.returncode == 1 and "127.0.0.1:1" in bad.stderr, bad

        # diff: the configured file unchanged, then another file without the second server
        same = ctl(state_dir, "diff")
        assert same.returncode == 0 and same.stdout == "nothing would change\n", same
        other = tmp_path / "other.conf"
        other.write_text(config_text(ports[:1]))
        preview = ctl(state_dir, "diff", str(other))
        assert preview.returncode == 0, preview.stderr
        assert f"- real_server 127.0.0.1:{ports[1]} in 127.0.0.1:80/TCP" in preview.stdout
        # the pools the daemon last gave the (none) backend: one destination goes, and the
        # reload puts the file's weight back on the other
        assert f"- kernel destination TCP 127.0.0.1:80 -> 127.0.0.1:{ports[1]}" \
            in preview.stdout
        assert f"~ kernel destination TCP 127.0.0.1:80 -> 127.0.0.1:{ports[0]}: weight: 7 -> 3" \
            in preview.stdout
        assert set(daemon.reals()) == set(ports)                     # nothing changed
        assert daemon.reals()[ports[0]]["weight_override"] == 7

        # the reload does what the diff said, and puts the file's weight back
        daemon.config.write_text(other.read_text())
        assert ctl(state_dir, "reload").returncode == 0
        assert set(daemon.reals()) == {ports[0]}
        real = daemon.reals()[ports[0]]
        assert (real["weight_override"], real["desired_weight"]) == (None, 3)
        broken = tmp_path / "broken.conf"
        broken.write_text("virtual_server 127.0.0.1 80 {\n    lb_algo nonsense\n}\n")
        refused = ctl(state_dir, "diff", str(broken))
        assert refused.returncode == 1 and "would be refused" in refused.stdout, refused
        assert "broken.conf:2" in refused.stdout
