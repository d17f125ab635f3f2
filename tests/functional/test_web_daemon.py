"""The web API of a running daemon (``director -C``, checks on loopback servers, backend
none): the state follows the checks, the event stream delivers a server going down, /metrics
passes promtool, admin actions need the token and the CSRF token, a drain survives a
restart, and a broken reload is counted and shown while the old configuration runs on."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.functional.lab import wait_for
from tests.functional.test_check_daemon import listen

pytestmark = [pytest.mark.slow, pytest.mark.timeout(90)]

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "web-test-token"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def config_text(ports: list[int]) -> str:
    reals = "".join(f"""
    real_server 127.0.0.1 {port} {{
        weight 3
        TCP_CHECK {{
            connect_timeout 0.5
            retry 1
            delay_before_retry 0.2
        }}
    }}""" for port in ports)
    return f"""global_defs {{
    router_id WEB_TEST
}}
virtual_server 127.0.0.1 80 {{
    delay_loop 1
    lb_algo wrr
    protocol TCP{reals}
}}
"""


class Daemon:
    def __init__(self, tmp_path: Path, ports: list[int]):
        self.tmp = tmp_path
        self.config = tmp_path / "keepalived.conf"
        self.config.write_text(config_text(ports))
        (tmp_path / "token").write_text(TOKEN + "\n")
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = tmp_path / "log"
        self.proc = None
        self.extra: list[str] = []          # more flags
        self.preexec = None                 # run in the child before director (a ulimit)
        self.ready = lambda: self.status("/healthz") == 200

    def start(self):
        log = open(self.log_path, "a")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "director", "-C", "-l", "-f", str(self.config),
             "--backend", "none", "--web", f"127.0.0.1:{self.port}",
             "--admin-token-file", str(self.tmp / "token"),
             "--state-dir", str(self.tmp / "state"), *self.extra],
            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, preexec_fn=self.preexec,
            env=dict(os.environ, PYTHONPATH=str(ROOT)))
        log.close()
        wait_for(self.ready, 15, message=self.log)

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            assert self.proc.wait(10) == 0

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    def status(self, path: str) -> int:
        try:
            with urllib.request.urlopen(self.base + path, timeout=3) as response:
                return response.status
        except urllib.error.HTTPError as exc:
            return exc.code
        except OSError:
            return 0

    def get(self, path: str):
        with urllib.request.urlopen(self.base + path, timeout=5) as response:
            body = response.read()
        return json.loads(body) if path.startswith("/api") else body.decode()

    def post(self, path: str, body: dict | None = None, token: str | None = TOKEN,
             csrf: bool = True) -> tuple[int, dict]:
        headers = {"Content-Type": "application/json"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        if csrf:
            page = self.get("/")
            headers["X-CSRF-Token"] = re.search(r'name="csrf-token" content="([^"]+)"',
                                                page).group(1)
        request = urllib.request.Request(self.base + path, data=json.dumps(body or {}).encode(),
                                         headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=35) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    def reals(self) -> dict:
        (virtual,) = self.get("/api/v1/state")["virtual_servers"]
        return {real["port"]: real for real in virtual["real_servers"]}


class Stream:
    """Reads /api/v1/stream in a thread; ``events`` fills as frames arrive."""

    def __init__(self, url: str):
        self.events: list[dict] = []
        self.response = urllib.request.urlopen(url, timeout=30)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        try:
            for raw in self.response:
                line = raw.decode().rstrip("\n")
                if line.startswith("data: "):
                    self.events.append(json.loads(line[6:]))
        except (OSError, ValueError, AttributeError):    # closed under us: the end
            pass

    def close(self):
        self.response.close()


@pytest.fixture
def servers():
    socks = [listen(), listen()]
    yield socks
    for sock in socks:
        sock.close()


@contextlib.contextmanager
def running(daemon: Daemon):
    """``daemon`` started, then stopped with TERM (exit 0 asserted) when the block ends
    normally, and killed whatever happened: no test leaves a daemon behind."""
    try:
        daemon.start()
        yield daemon
        daemon.stop()
    finally:
        if daemon.proc is not None and daemon.proc.poll() is None:
            daemon.proc.kill()
            daemon.proc.wait(5)


@pytest.fixture
def daemon(tmp_path, servers):
    with running(Daemon(tmp_path, [sock.getsockname()[1] for sock in servers])) as daemon:
        yield daemon


def test_state_stream_and_metrics_follow_the_checks(daemon, servers):
    ports = [sock.getsockname()[1] for sock in servers]
    wait_for(lambda: all(r["last_check"] for r in daemon.reals().values()), 5,
             message=daemon.log)
    state = daemon.get("/api/v1/state")
    assert state["router_id"] == "WEB_TEST" and state["backend"] == "none"
    assert all(real["up"] and real["configured_weight"] == 3 and real["weight"] is None
               for real in daemon.reals().values())
    stream = Stream(daemon.base + "/api/v1/stream")
    try:
        servers[0].close()
        died = time.monotonic()
        wait_for(lambda: any(e["kind"] == "real_server" and e["state"] == "down"
                             for e in stream.events), 1 + 1 * (0.5 + 0.2) + 2,
                 message=lambda: f"no event on the stream: {stream.events}\n{daemon.log()}")
        assert time.monotonic() - died <= 1 + 1 * (0.5 + 0.2) + 2
    finally:
        stream.close()
    (down,) = [e for e in stream.events if e["kind"] == "real_server"]
    assert down["real_server"] == f"127.0.0.1:{ports[0]}" and "refused" in down["error"]
    assert daemon.reals()[ports[0]]["up"] is False and daemon.reals()[ports[1]]["up"] is True
    assert any(e["id"] == down["id"] for e in daemon.get("/api/v1/events?since=0"))
    metrics = daemon.get("/metrics")
    assert (f'director_real_server_up{{virtual_server="127.0.0.1:80/TCP",'
            f'real_server="127.0.0.1:{ports[0]}"}} 0\n') in metrics
    if shutil.which("promtool"):
        done = subprocess.run(["promtool", "check", "metrics"], input=metrics.encode(),
                              capture_output=True, timeout=30)
        assert done.returncode == 0 and not done.stdout.strip(), done.stdout + done.stderr
    history = daemon.get("/api/v1/history?virtual_server=127.0.0.1:80/TCP")
    assert [ok for _, ok in history[f"127.0.0.1:{ports[0]}"]][-1] is False


def test_drain_needs_the_tokens_and_survives_a_restart(daemon, servers):
    port = servers[1].getsockname()[1]
    body = {"virtual_server": "127.0.0.1:80/TCP", "real_server": f"127.0.0.1:{port}"}
    assert daemon.post("/api/v1/real-servers/drain", body, token=None)[0] == 401
    assert daemon.post("/api/v1/real-servers/drain", body, token="wrong")[0] == 403
    assert daemon.post("/api/v1/real-servers/drain", body, csrf=False)[0] == 403
    assert not daemon.reals()[port]["drained"]
    status, answer = daemon.post("/api/v1/real-servers/drain", body)
    assert status == 200 and answer["drained"] is True
    real = daemon.reals()[port]
    assert real["drained"] and real["desired_weight"] == 0 and real["up"]   # still checked
    assert any(e["kind"] == "admin" and e["action"] == "drain"
               for e in daemon.get("/api/v1/events"))
    daemon.stop()
    daemon.start()
    assert daemon.reals()[port]["drained"], daemon.log()
    assert daemon.post("/api/v1/real-servers/restore", body)[0] == 200
    assert not daemon.reals()[port]["drained"]
    assert daemon.post("/api/v1/real-servers/drain",
                       {**body, "real_server": "127.0.0.1:1"})[0] == 404


def test_a_broken_reload_is_counted_and_shown_and_changes_nothing(daemon, servers):
    before = daemon.reals()
    daemon.config.write_text(daemon.config.read_text() + "\nvirtual_server {\n")
    daemon.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: daemon.get("/api/v1/state")["reload"]["result"] == "failure", 5,
             message=daemon.log)
    reload = daemon.get("/api/v1/state")["reload"]
    assert reload["errors"] and "keepalived.conf:" in reload["errors"][0]
    assert 'director_config_reloads_total{result="failure"} 1.0' in daemon.get("/metrics")
    assert "director_config_last_reload_successful 0.0" in daemon.get("/metrics")
    status, answer = daemon.post("/api/v1/reload")               # the same file: fails again
    assert status == 200 and answer["result"] == "failure"
    assert daemon.reals().keys() == before.keys()
    assert daemon.status("/healthz") == 200


def test_wsgi_module_runs_the_daemon_in_its_process(tmp_path, servers):
    """wsgi.py: what gunicorn -k gevent would import; the app answers with the embedded
    daemon's live state."""
    config = tmp_path / "keepalived.conf"
    config.write_text(config_text([sock.getsockname()[1] for sock in servers]))
    script = """
import json, time
import wsgi
client = wsgi.app.test_client()
from director import hub
for _ in range(100):                       # bounded: the first checks take a moment
    state = client.get("/api/v1/state").get_json()
    if all(r["last_check"] for r in state["virtual_servers"][0]["real_servers"]):
        break
    hub.sleep(0.1)
print(json.dumps({"health": client.get("/healthz").status_code, "state": state}))
"""
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60,
        env=dict(os.environ, PYTHONPATH=str(ROOT),
                 DIRECTOR_ARGS=f"-C -f {config} --backend none --state-dir {tmp_path}/s"))
    assert done.returncode == 0, done.stderr[-3000:]
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    assert answer["health"] == 200 and answer["state"]["router_id"] == "WEB_TEST"
    assert all(real["up"] for real in answer["state"]["virtual_servers"][0]["real_servers"])


def test_a_taken_web_address_or_a_missing_token_file_is_one_clear_line(tmp_path, servers):
    config = tmp_path / "keepalived.conf"
    config.write_text(config_text([servers[0].getsockname()[1]]))
    taken = listen()
    base = [sys.executable, "-m", "director", "-C", "-l", "-f", str(config), "--backend", "none",
            "--state-dir", str(tmp_path / "state")]
    try:
        for extra, expected in (
                (["--web", f"127.0.0.1:{taken.getsockname()[1]}"], "Address already in use"),
                (["--web", "127.0.0.1:nope"], "expected HOST:PORT or off"),
                (["--web", f"127.0.0.1:{free_port()}", "--admin-token-file",
                  str(tmp_path / "missing")], "No such file")):
            done = subprocess.run(base + extra, cwd=ROOT, capture_output=True, text=True,
                                  timeout=30, env=dict(os.environ, PYTHONPATH=str(ROOT)))
            assert done.returncode == 1, done.stderr
            assert expected in done.stderr and "Traceback" not in done.stderr, done.stderr
            assert "check.started" not in done.stderr        # nothing started before it
    finally:
        taken.close()


def test_reload_applies_the_difference_without_flapping_what_stayed(daemon, servers):
    """Add a real server, remove one, change a weight: each HUP applies only that; the
    servers that stayed keep their state and counters (no down/up event, counts go on)."""
    first, second = (sock.getsockname()[1] for sock in servers)
    third = listen()
    try:
        wait_for(lambda: all(r["checks"]["ok"] >= 2 for r in daemon.reals().values()), 10,
                 message=daemon.log)

        def hup(ports, weights=None):
            text = config_text(ports)
            for port, weight in (weights or {}).items():
                text = text.replace(f"real_server 127.0.0.1 {port} {{\n        weight 3",
                                    f"real_server 127.0.0.1 {port} {{\n        weight {weight}")
            daemon.config.write_text(text)
            before = len(daemon.get("/api/v1/events"))
            daemon.proc.send_signal(signal.SIGHUP)
            wait_for(lambda: any(e["kind"] == "reload" for e in
                                 daemon.get("/api/v1/events")[before:]), 5, message=daemon.log)
            return daemon.get("/api/v1/state")["reload"]

        checks_before = daemon.reals()[first]["checks"]["ok"]
        added = third.getsockname()[1]
        assert "1 added" in hup([first, second, added])["note"]
        wait_for(lambda: (daemon.reals().get(added) or {}).get("last_check"), 5,
                 message=daemon.log)
        assert daemon.reals()[added]["up"]
        assert "1 removed" in hup([first, added])["note"]
        assert set(daemon.reals()) == {first, added}
        status = hup([first, added], {first: 7})
        assert status["result"] == "success" and "2 kept" in status["note"], status
        real = daemon.reals()[first]
        assert real["configured_weight"] == 7 and real["desired_weight"] == 7
        assert real["checks"]["ok"] >= checks_before             # not reset ...
        wait_for(lambda: daemon.reals()[first]["checks"]["ok"] > checks_before, 3,
                 message=daemon.log)                          # ... and going on
        assert not [e for e in daemon.get("/api/v1/events") if e["kind"] == "real_server"]
        metrics = daemon.get("/metrics")
        assert f'real_server="127.0.0.1:{second}"' not in metrics
        assert 'director_config_reloads_total{result="success"} 3.0' in metrics
    finally:
        third.close()
