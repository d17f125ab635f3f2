"""``director -C`` against HTTP servers on loopback that never stop talking: an endless header
line, an endless body, a 100 MB Content-Length streamed. Each check fails with its own clear
error well within connect_timeout, the daemon's peak memory stays bounded (no reply is
buffered past its cap), a healthy server beside them stays up, and /metrics counts the
replies in director_check_reply_errors_total (and passes promtool).

Before the caps (64 KiB of headers, 16 MiB of reply) a server streaming at loopback speed
for the whole connect_timeout would have been buffered whole: gigabytes."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from tests.functional.lab import wait_for
from tests.functional.loopback import LoopbackServer, OnePageServer
from tests.functional.test_web_daemon import free_port

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

ROOT = Path(__file__).resolve().parents[2]
CONNECT_TIMEOUT = 3
PEAK_RSS_LIMIT_MB = 150     # measured: 61 MB peak; one reply buffered whole would be 200 MB+


class Endless(LoopbackServer):
    """Sends ``head`` then ``filler`` until the client goes away (at most ``limit``)."""

    def __init__(self, head: bytes, filler: bytes, limit: int = 200 << 20) -> None:
        super().__init__()
        self.head, self.filler, self.limit = head, filler, limit

    def handle(self, conn) -> None:
        conn.sendall(self.head)
        sent = 0
        while sent < self.limit and not self.stop.is_set():     # ends when the check hangs up
            conn.sendall(self.filler)
            sent += len(self.filler)


SERVERS = {
    "endless header line": (Endless(b"HTTP/1.1 200 OK\r\nX-Endless: ", b"a" * 65536),
                            "GET /: no end of the headers in the first 64 KiB"),
    "endless body": (Endless(b"HTTP/1.1 200 OK\r\n\r\n", b"b" * 65536),
                     "GET /: reply larger than 16 MiB"),
    "100 MB Content-Length": (Endless(b"HTTP/1.1 200 OK\r\nContent-Length: 104857600\r\n\r\n",
                                      b"c" * 65536, limit=100 << 20),
                              "GET /: reply larger than 16 MiB"),
}


def get(port: int, path: str) -> bytes:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as reply:
        return reply.read()


def vm(pid: int, field: str) -> int:
    """A /proc/PID/status figure in kB (VmRSS, VmHWM)."""
    text = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(rf"^{field}:\s+(\d+) kB", text, re.M).group(1))


def test_endless_replies_fail_clearly_with_bounded_memory_and_are_counted(tmp_path):
    servers = {name: server for name, (server, _) in SERVERS.items()}
    with OnePageServer() as healthy, servers["endless header line"], \
            servers["endless body"], servers["100 MB Content-Length"]:
        reals = "".join(f"""
    real_server 127.0.0.1 {port} {{
        HTTP_GET {{
            url {{
                path /
            }}
            connect_timeout {CONNECT_TIMEOUT}
            retry 1
            delay_before_retry 0.2
        }}
    }}""" for port in [healthy.port] + [s.port for s in servers.values()])
        config = tmp_path / "keepalived.conf"
        config.write_text(f"virtual_server 127.0.0.1 80 {{\n    delay_loop 1\n"
                          f"    protocol TCP\n{reals}\n}}\n")
        web = free_port()
        log_path = tmp_path / "log"
        log = open(log_path, "w")
        proc = subprocess.Popen([sys.executable, "-m", "director", "-C", "-l", "-f",
                                 str(config), "--state-dir", str(tmp_path / "state"),
                                 "--web", f"127.0.0.1:{web}"], cwd=ROOT, stdout=log,
                                stderr=subprocess.STDOUT,
                                env=dict(os.environ, PYTHONPATH=str(ROOT)))
        try:
            wait_for(lambda: "director.started" in log_path.read_text(), 20,
                     message=lambda: log_path.read_text())

            def reals_by_port() -> dict[int, dict]:
                state = json.loads(get(web, "/api/v1/state"))
                return {r["port"]: r for r in state["virtual_servers"][0]["real_servers"]}

            def settled():
                reals = reals_by_port()
                if not reals[healthy.port]["up"]:
                    return None
                if all(not reals[s.port]["up"] and reals[s.port]["last_check"]
                       for s in servers.values()):
                    return reals
                return None

            reals = wait_for(settled, 30, message=lambda: (reals_by_port(),
                                                           log_path.read_text()[-3000:]))
            for name, (server, error) in SERVERS.items():
                last = reals[server.port]["last_check"]
                assert last["error"] == error, (name, last)
                assert last["duration_seconds"] < CONNECT_TIMEOUT, (name, last)

            def counted():
                text = get(web, "/metrics").decode()
                found = dict(re.findall(r'^director_check_reply_errors_total\{checker="HTTP_GET",'
                                        r'reason="(\w+)"\} (\d+)', text, re.M))
                return text if int(found.get("too_large", 0)) >= 6 else None

            # two rounds of the three endless servers, each counted as too_large
            metrics = wait_for(counted, 30, message=lambda: get(web, "/metrics").decode())
            if shutil.which("promtool"):
                done = subprocess.run(["promtool", "check", "metrics"], input=metrics.encode(),
                                      capture_output=True, timeout=30)
                assert done.returncode == 0, done.stdout + done.stderr
            peak = vm(proc.pid, "VmHWM") >> 10
            print(f"peak RSS {peak} MB")
            assert peak < PEAK_RSS_LIMIT_MB, f"peak RSS {peak} MB"
            assert proc.poll() is None
            assert reals_by_port()[healthy.port]["up"]
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(10) == 0
            log.close()
