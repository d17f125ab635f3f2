"""Checker keywords against real servers on 127.0.0.1: log_all_failures /
checker_log_all_failures (every failed attempt logged while up, not only the fall),
fast_recovery (a recovering server's rise checks back to back) in ``director -C``, and
SSL_GET's tls_compliant (a close_notify the server receives)."""

from __future__ import annotations

import http.server
import os
import signal
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.functional.lab import wait_for
from tests.functional.loopback import RequestServer
from tests.functional.test_check_http import OK, Url, cert, make_check, tls_context  # noqa: F401

pytestmark = [pytest.mark.slow, pytest.mark.timeout(90)]

ROOT = Path(__file__).resolve().parents[2]


class Switchable:
    """An HTTP server on 127.0.0.1 whose status the test sets."""

    def __init__(self) -> None:
        self.status = 200
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(outer.status)
                self.send_header("Content-Length", "3")
                self.end_headers()
                self.wfile.write(b"ok\n")

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def real_server(port: int, checker: str) -> str:
    return f"""
virtual_server 127.0.0.1 {port} {{
    delay_loop 1
    protocol TCP
    real_server 127.0.0.1 {port} {{
        HTTP_GET {{
            url {{
                path /health
            }}
            connect_timeout 1
            retry 2
            delay_before_retry 0.2
{checker}
        }}
    }}
}}
"""


def run_director(tmp_path: Path, text: str):
    config = tmp_path / "keepalived.conf"
    config.write_text(text)
    log = tmp_path / "log"
    proc = subprocess.Popen([sys.executable, "-m", "director", "-C", "-l", "-D", "-f", str(config),
                             "--state-dir", str(tmp_path / "state"), "--web", "off"],
                            cwd=ROOT, stdout=open(log, "w"), stderr=subprocess.STDOUT,
                            env=dict(os.environ, PYTHONPATH=str(ROOT)))
    proc.log = log
    wait_for(lambda: "director.started" in log.read_text(), 20, message=log.read_text)
    return proc


def lines(proc, what: str, port: int) -> list[str]:
    return [line for line in proc.log.read_text().splitlines()
            if what in line and f"real_server=127.0.0.1:{port}" in line]


def stop(proc) -> None:
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(15) == 0


@pytest.mark.parametrize("where", ["checker", "global"])
def test_log_all_failures_logs_each_failed_attempt_while_up(tmp_path, where):
    loud, quiet = Switchable(), Switchable()
    text = real_server(loud.port, "            log_all_failures" if where == "checker" else "")
    text += real_server(quiet.port, "            log_all_failures false"
                        if where == "checker" else "")
    if where == "global":     # the global keyword: both servers log; quiet's own 'false' aside
        text = "global_defs {\n    checker_log_all_failures\n}\n" + \
            real_server(loud.port, "") + real_server(quiet.port, "")
    proc = run_director(tmp_path, text)
    try:
        loud.status = quiet.status = 503
        for server in (loud, quiet):
            wait_for(lambda: lines(proc, "state=down", server.port), 15,
                     message=proc.log.read_text)
        attempts = lines(proc, "check.attempt_failed", loud.port)
        # retry 2: three failed attempts while up, the third the one that takes it down
        assert [line.split("attempt=")[1].split()[0] for line in attempts] == ["1", "2", "3"], \
            proc.log.read_text()
        assert "status 503" in attempts[0]
        expected_quiet = 3 if where == "global" else 0
        assert len(lines(proc, "check.attempt_failed", quiet.port)) == expected_quiet
        # down: the failures go on, but keepalived logs them only while the server is up
        checks = len(lines(proc, "check.http.fail", loud.port))
        wait_for(lambda: len(lines(proc, "check.http.fail", loud.port)) >= checks + 2, 10,
                 message=proc.log.read_text)
        assert len(lines(proc, "check.attempt_failed", loud.port)) == 3
    finally:
        stop(proc)
        loud.close()
        quiet.close()


def test_fast_recovery_runs_the_rise_checks_back_to_back(tmp_path):
    """rise 3, delay_loop 2: without fast_recovery a recovered server is up two delay_loops
    (4 s) after its first good check; with it, at once."""
    fast, slow = Switchable(), Switchable()
    text = (real_server(fast.port, "            rise 3\n            fast_recovery") +
            real_server(slow.port, "            rise 3")).replace("delay_loop 1", "delay_loop 2")
    proc = run_director(tmp_path, text)
    try:
        fast.status = slow.status = 503
        for server in (fast, slow):
            wait_for(lambda: lines(proc, "state=down", server.port), 20,
                     message=proc.log.read_text)
        fast.status = slow.status = 200
        recovered = time.monotonic()
        wait_for(lambda: lines(proc, "state=up", fast.port), 2 + 2,
                 message=proc.log.read_text)
        assert not lines(proc, "state=up", slow.port), "rise 3 without fast_recovery was fast"
        wait_for(lambda: lines(proc, "state=up", slow.port), 3 * 2 + 2,
                 message=proc.log.read_text)
        assert time.monotonic() - recovered >= 2 * 2
    finally:
        stop(proc)
        fast.close()
        slow.close()


class ShutdownWatcher(RequestServer):
    """Answers, then ends its TLS session properly (close_notify) and records whether the
    client answered with its own close_notify."""

    def __init__(self, tls):
        self.closed_properly: list[bool] = []

        def handler(conn, request):
            conn.sendall(OK)
            try:
                conn.unwrap()
                self.closed_properly.append(True)
            except (OSError, ssl.SSLError):
                self.closed_properly.append(False)

        super().__init__(handler, tls=tls)


@pytest.mark.parametrize("where", ["checker", "url", None])
def test_tls_compliant_sends_close_notify(cert, where):
    with ShutdownWatcher(tls_context(cert)) as srv:
        url = Url(path="/", tls_compliant=where == "url")
        check = make_check(srv.port, url, kind="SSL_GET", tls_compliant=where == "checker")
        result = check.check()
        assert result.ok, result.error
        wait_for(lambda: srv.closed_properly, 5, message="the server never finished")
    assert srv.closed_properly == [where is not None]


@pytest.mark.parametrize("no_checker_emails", [False, True])
def test_a_checker_changing_alone_mails_unless_no_checker_emails(lab, no_checker_emails):
    """A real server with a TCP_CHECK and an HTTP_GET: the TCP one fails first (the server goes
    down: one mail either way), then the HTTP one while the server is already down: a second
    mail, as keepalived sends it, unless no_checker_emails."""
    from tests.functional.test_smtp_alerts import SMTP_SERVER, mails
    switch = lab.switch()
    host = lab.host("lb", links=[(switch, "eth0", ["192.0.2.1/24"])])
    inbox = lab.tmp / "inbox.jsonl"
    smtp = host.popen([sys.executable, "-c", SMTP_SERVER, "127.0.0.1", "2525", inbox])
    tcp = host.popen([sys.executable, "-c", "import socket, time\n"
                      "s = socket.create_server(('127.0.0.1', 8081))\nwhile True: time.sleep(1)"])
    web = host.popen([sys.executable, "-m", "http.server", "8080", "--bind", "127.0.0.1",
                      "--directory", str(lab.tmp)])
    wait_for(lambda: all(port in host.run(["ss", "-Hltn"]).stdout
                         for port in ("2525", "8080", "8081")), 10, message="servers")
    folder = lab.tmp / "director"
    folder.mkdir()
    (folder / "keepalived.conf").write_text(f"""global_defs {{
    router_id LB_MAIL
    notification_email {{
        ops@example.org
    }}
    notification_email_from director@example.org
    smtp_server 127.0.0.1 2525
    {"no_checker_emails" if no_checker_emails else ""}
}}
virtual_server 127.0.0.1 8080 {{
    delay_loop 1
    protocol TCP
    smtp_alert
    real_server 127.0.0.1 8080 {{
        TCP_CHECK {{
            connect_port 8081
            connect_timeout 1
            retry 0
        }}
        HTTP_GET {{
            url {{
                path /
            }}
            connect_timeout 1
            retry 0
        }}
    }}
}}
""")
    daemon = host.popen([sys.executable, "-m", "director", "-C", "-l", "-f",
                         folder / "keepalived.conf", "--backend", "none", "--web", "off",
                         "--state-dir", folder / "state"], env={"PYTHONPATH": str(ROOT)})
    wait_for(lambda: "check.started" in lab.log_of(daemon), 15, message=lambda: lab.log_of(daemon))
    def subjects() -> list[str]:      # the quorum's mails aside
        return [mail["subject"] for mail in mails(inbox) if "Realserver" in mail["subject"]]

    tcp.kill()
    down = "[LB_MAIL] Realserver [127.0.0.1]:tcp:8080 - DOWN"
    wait_for(lambda: down in subjects(), 10, message=lambda: f"{subjects()}\n{lab.log_of(daemon)}")
    web.kill()
    wait_for(lambda: "checker=HTTP_GET state=down" in lab.log_of(daemon), 10,
             message=lambda: lab.log_of(daemon))
    if no_checker_emails:
        # the mail a checker change would send goes within the second; give it three
        stays_true = time.monotonic() + 3
        while time.monotonic() < stays_true:
            assert subjects() == [down], subjects()
            time.sleep(0.1)
    else:
        wait_for(lambda: len(subjects()) == 2, 10, message=lambda: f"{subjects()}")
        assert subjects() == [down, down]
        assert "(HTTP_GET)" in [mail for mail in mails(inbox)
                                if "Realserver" in mail["subject"]][1]["body"]
    daemon.send_signal(signal.SIGTERM)
    assert daemon.wait(15) == 0
    smtp.kill()
