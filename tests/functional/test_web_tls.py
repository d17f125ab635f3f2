"""The web face over TLS (--web-tls-cert, --web-tls-key) and the rule that keeps the admin
token off the network in clear text: a daemon (``-C``, loopback servers) answers HTTPS with
the test CA, shrugs off plain HTTP on its TLS port (counted), refuses to start with a
non-loopback --web and an admin token but no TLS (one line, exit 1) unless --web-insecure,
names a TLS file that is wrong, and starts read-only on a non-loopback address without a
token, saying so (in a namespace of its own: nothing listens on the host's addresses)."""

from __future__ import annotations

import json
import os
import re
import socket
import ssl
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

from tests.functional.lab import wait_for
from tests.functional.test_web_daemon import ROOT, TOKEN, Daemon, config_text, free_port
from tests.tls import make_ca_and_server

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


@pytest.fixture
def tls_files(tmp_path):
    folder = tmp_path / "tls"
    folder.mkdir()
    return make_ca_and_server(folder)


def https(daemon: Daemon, ca, path: str, data: bytes | None = None, headers=None):
    context = ssl.create_default_context(cafile=str(ca))
    request = urllib.request.Request(f"https://127.0.0.1:{daemon.port}{path}", data=data,
                                     headers=headers or {})
    with urllib.request.urlopen(request, timeout=10, context=context) as response:
        return response.status, response.read()


def test_https_with_the_test_ca_and_plain_http_refused_cleanly(tmp_path, tls_files):
    ca, cert, key = tls_files
    server = socket.create_server(("127.0.0.1", 0))
    daemon = Daemon(tmp_path, [server.getsockname()[1]])
    daemon.extra = ["--web-tls-cert", str(cert), "--web-tls-key", str(key)]
    daemon.ready = lambda: _answers(daemon, ca)
    try:
        daemon.start()
        status, body = https(daemon, ca, "/api/v1/state")
        state = json.loads(body)
        assert status == 200 and state["web"]["tls"] is True and state["admin"] is True
        # plain HTTP on the TLS port: no answer, the connection closed, nothing hurt
        with socket.create_connection(("127.0.0.1", daemon.port), timeout=10) as plain:
            plain.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            try:
                assert plain.recv(4096) == b""
            except ConnectionResetError:
                pass
        # a client that does not trust the certificate fails its own handshake
        with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
            urllib.request.urlopen(f"https://127.0.0.1:{daemon.port}/healthz", timeout=10,
                                   context=ssl.create_default_context())
        page = https(daemon, ca, "/")[1].decode()
        csrf = re.search(r'name="csrf-token" content="([^"]+)"', page).group(1)
        status, body = https(daemon, ca, "/api/v1/reload", b"{}", {
            "Authorization": f"Bearer {TOKEN}", "X-CSRF-Token": csrf,
            "Content-Type": "application/json"})
        assert status == 200 and json.loads(body)["result"] == "success"
        refused = json.loads(https(daemon, ca, "/api/v1/state")[1])["web"]["refused"]
        assert refused.get("tls_handshake", 0) >= 2, refused
        assert https(daemon, ca, "/healthz")[0] == 200
        assert "Traceback" not in daemon.log()
        daemon.stop()
    finally:
        server.close()
        if daemon.proc is not None and daemon.proc.poll() is None:
            daemon.proc.kill()


def _answers(daemon: Daemon, ca) -> bool:
    try:
        return https(daemon, ca, "/healthz")[0] == 200
    except OSError:
        return False


def test_the_admin_token_never_crosses_a_network_in_clear_text(tmp_path, tls_files):
    """Each refusal is one line and exit 1, before anything starts."""
    ca, cert, key = tls_files
    config = tmp_path / "keepalived.conf"
    config.write_text(config_text([free_port()]))
    (tmp_path / "token").write_text(TOKEN)
    (tmp_path / "junk.pem").write_text("junk\n")
    base = [sys.executable, "-m", "director", "-C", "-l", "-f", str(config), "--backend",
            "none", "--state-dir", str(tmp_path / "state")]
    token = ["--admin-token-file", str(tmp_path / "token")]
    for extra, expected in (
            (["--web", "0.0.0.0:1", *token], "must not cross a network in clear text"),
            (["--web", "[::]:1", *token], "must not cross a network in clear text"),
            (["--web", "127.0.0.1:1", "--web-tls-cert", str(cert)], "go together"),
            (["--web", "127.0.0.1:1", "--web-tls-cert", str(tmp_path / "junk.pem"),
              "--web-tls-key", str(key)], f"{tmp_path / 'junk.pem'}: not a PEM certificate"),
            (["--web", "127.0.0.1:1", "--web-tls-cert", str(cert), "--web-tls-key",
              str(tmp_path / "nokey")], f"{tmp_path / 'nokey'}: No such file")):
        done = subprocess.run(base + extra, cwd=ROOT, capture_output=True, text=True,
                              timeout=30, env=dict(os.environ, PYTHONPATH=str(ROOT)))
        assert done.returncode == 1, (extra, done.stderr)
        lines = done.stderr.strip().splitlines()
        assert expected in lines[-1] and "Traceback" not in done.stderr, (extra, done.stderr)
        assert "check.started" not in done.stderr


@pytest.mark.netns
def test_a_non_loopback_address_starts_read_only_or_with_tls_or_insecure(lab, tmp_path,
                                                                         tls_files):
    ca, cert, key = tls_files
    host = lab.host("web")
    config = tmp_path / "keepalived.conf"
    config.write_text(config_text([1]))
    (tmp_path / "token").write_text(TOKEN)
    token = ["--admin-token-file", str(tmp_path / "token")]
    for number, (extra, admin, tls) in enumerate((
            ([], False, False),                                  # read-only, said so
            ([*token, "--web-insecure"], True, False),           # the operator's choice
            ([*token, "--web-tls-cert", cert, "--web-tls-key", key], True, True))):
        port = 8000 + number
        proc = host.popen([sys.executable, "-m", "director", "-C", "-l", "-f", config,
                           "--backend", "none", "--state-dir", tmp_path / f"s{number}",
                           "--web", f"0.0.0.0:{port}", *extra],
                          env={"PYTHONPATH": str(ROOT)})
        line = wait_for(lambda: [x for x in lab.log_of(proc).splitlines()
                                 if "web.listening" in x] or proc.poll() is not None, 20,
                        message=lambda: lab.log_of(proc))
        assert isinstance(line, list), lab.log_of(proc)
        assert f"admin={admin}" in line[0] and f"tls={tls}" in line[0], line
        assert ("admin off" in line[0]) == (not admin), line
        scheme = "https" if tls else "http"
        fetch = ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5",
                 f"{scheme}://127.0.0.1:{port}/healthz"] + (["--cacert", ca] if tls else [])
        wait_for(lambda: host.run(fetch, check=False).stdout == "200", 15,
                 message=lambda: lab.log_of(proc))
        proc.terminate()
        assert proc.wait(10) == 0
