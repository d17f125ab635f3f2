"""``director -C`` end to end: a real server that dies is marked down within
delay_loop + retry x (connect_timeout + delay_before_retry) + 1 s, its notify_down runs, the
state dump shows it, and it comes back up."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.functional.lab import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(60)]

ROOT = Path(__file__).resolve().parents[2]


def listen(port: int = 0) -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(64)
    return sock


def dump(proc, state_dir: Path) -> dict:
    path = state_dir / "director.data"
    if path.exists():
        path.unlink()
    proc.send_signal(signal.SIGUSR1)
    wait_for(path.exists, 5, message="no state dump")
    return json.loads(path.read_text())


def test_dead_server_goes_down_within_the_bound_and_comes_back(tmp_path):
    server = listen()
    port = server.getsockname()[1]
    notes = tmp_path / "notes"
    script = tmp_path / "note.sh"
    script.write_text(f'#!/bin/sh\necho "$@" >> {notes}\n')
    script.chmod(0o755)
    delay_loop, retry, connect_timeout, before_retry = 1, 2, 0.5, 0.3
    config = tmp_path / "keepalived.conf"
    config.write_text(f"""
virtual_server 127.0.0.1 {port} {{
    delay_loop {delay_loop}
    lb_algo rr
    protocol TCP
    real_server 127.0.0.1 {port} {{
        notify_down "{script} down"
        notify_up "{script} up"
        TCP_CHECK {{
            connect_timeout {connect_timeout}
            retry {retry}
            delay_before_retry {before_retry}
        }}
    }}
}}
""")
    state = tmp_path / "state"
    log = open(tmp_path / "log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "director", "-C", "-l", "-f", str(config),
                             "--state-dir", str(state), "--web", "off"], cwd=ROOT,
                            stdout=log, stderr=subprocess.STDOUT,
                            env=dict(os.environ, PYTHONPATH=str(ROOT)))
    try:
        wait_for(lambda: "director.started" in (tmp_path / "log").read_text(), 15,
                 message=lambda: (tmp_path / "log").read_text())

        def real():
            (virtual,) = dump(proc, state)["virtual_servers"]
            return virtual["real_servers"][0]

        first = wait_for(lambda: (lambda r: r if r["last_check"] else None)(real()), 5,
                         message=lambda: (tmp_path / "log").read_text())
        assert first["up"] and first["last_check"]["ok"] and first["checker"] == "TCP_CHECK"
        server.close()
        died = time.monotonic()
        bound = delay_loop + retry * (connect_timeout + before_retry) + 1
        down = wait_for(lambda: (lambda r: r if not r["up"] else None)(real()), bound,
                        message=lambda: (tmp_path / "log").read_text())
        assert time.monotonic() - died <= bound
        assert down["last_check"]["error"] == "connect: Connection refused"
        wait_for(lambda: notes.exists() and "down" in notes.read_text(), 5,
                 message="notify_down did not run")
        server = listen(port)
        wait_for(lambda: real()["up"], delay_loop + 2, message="the server did not come back")
        wait_for(lambda: "up" in notes.read_text().split(), 5, message="notify_up did not run")
        assert "check.real_server" in (tmp_path / "log").read_text()
    finally:
        server.close()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
        log.close()


def test_http_get_goes_down_on_a_wrong_status_after_its_retries(tmp_path):
    import http.server
    import threading

    status = {"code": 200}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(status["code"])
            self.send_header("Content-Length", "3")
            self.end_headers()
            self.wfile.write(b"ok\n")

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    port = server.server_address[1]
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                     daemon=True).start()
    delay_loop, retry, timeout, before_retry = 1, 1, 1, 0.5
    config = tmp_path / "keepalived.conf"
    config.write_text(f"""
virtual_server 127.0.0.1 {port} {{
    delay_loop {delay_loop}
    protocol TCP
    real_server 127.0.0.1 {port} {{
        HTTP_GET {{
            url {{
                path /health
            }}
            connect_timeout {timeout}
            retry {retry}
            delay_before_retry {before_retry}
        }}
    }}
}}
""")
    state = tmp_path / "state"
    log_path = tmp_path / "log"
    log = open(log_path, "w")
    proc = subprocess.Popen([sys.executable, "-m", "director", "-C", "-l", "-f", str(config),
                             "--state-dir", str(state), "--web", "off"], cwd=ROOT,
                            stdout=log, stderr=subprocess.STDOUT,
                            env=dict(os.environ, PYTHONPATH=str(ROOT)))
    try:
        wait_for(lambda: "director.started" in log_path.read_text(), 15,
                 message=lambda: log_path.read_text())

        def real():
            return dump(proc, state)["virtual_servers"][0]["real_servers"][0]

        wait_for(lambda: (real()["last_check"] or {}).get("ok"), 5,
                 message=lambda: log_path.read_text())
        status["code"] = 503
        changed = time.monotonic()
        bound = delay_loop + retry * (timeout + before_retry) + 1
        down = wait_for(lambda: (lambda r: r if not r["up"] else None)(real()), bound,
                        message=lambda: log_path.read_text())
        assert down["last_check"]["error"] == "GET /health: status 503 not in 200-299"
        assert down["checker"] == "HTTP_GET"
        assert time.monotonic() - changed <= bound
        status["code"] = 200
        wait_for(lambda: real()["up"], delay_loop + 2, message=lambda: log_path.read_text())
    finally:
        server.shutdown()
        server.server_close()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
        log.close()
