"""GRPC_CHECK's pure parts: its keywords (defaults, the FILE:LINE errors, --dump-json, a
reload that changes one server's check and keeps the others'), and what a Check reply or an
RPC error means (the cause first). The checker against real grpcio servers is in
tests/functional/test_check_grpc.py."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from director import reconcile
from director.check.base import resolve_settings
from director.check.grpc import rpc_failure, shorten, status_failure, target_name
from director.check.service import CheckService
from director.clock import FakeClock
from director.config import load_config
from director.config.render import config_json
from tests.unit.test_check_migrate import Notes

ROOT = Path(__file__).resolve().parents[2]
VS = "192.0.2.1:80/TCP"


def load(tmp_path, checkers: str, second: str = "        TCP_CHECK {\n        }\n"):
    path = tmp_path / "k.conf"
    path.write_text(f"""virtual_server 192.0.2.1 80 {{
    delay_loop 1
    protocol TCP
    real_server 10.0.0.1 50051 {{
{checkers}
    }}
    real_server 10.0.0.2 50051 {{
{second}
    }}
}}
""")
    return load_config(str(path), config_id="t", interface_exists=None)


def loaded(tmp_path, checkers: str, second: str = "        TCP_CHECK {\n        }\n"):
    result = load(tmp_path, checkers, second)
    assert result.ok, [str(d) for d in result.diagnostics]
    return result.config


def errors(tmp_path, checkers: str) -> list[str]:
    result = load(tmp_path, checkers)
    assert not result.ok
    return [str(d).split("k.conf:", 1)[1] for d in result.diagnostics if d.severity == "error"]


def block(body: str = "") -> str:
    return "        GRPC_CHECK {\n" + body + "        }\n"


# --- keywords -------------------------------------------------------------------------------

def test_defaults_and_inheritance(tmp_path):
    config = loaded(tmp_path, block())
    (check,) = config.virtual_servers[0].real_servers[0].checkers
    assert (check.kind, check.service_name, check.tls, check.tls_ca) == \
        ("GRPC_CHECK", "", False, None)
    virtual, real = config.virtual_servers[0], config.virtual_servers[0].real_servers[0]
    settings = resolve_settings(virtual, real, check)
    # HTTP_GET's: one retry, 3 s apart; the virtual server's delay_loop
    assert (settings.retry, settings.delay_before_retry, settings.delay_loop,
            settings.connect_timeout) == (1, 3.0, 1.0, 5.0)


def test_every_keyword_and_the_dump(tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text("not read at parse time, only checked readable\n")
    config = loaded(tmp_path, block(f"""            service_name "my.pkg.Service"
            connect_port 50052
            connect_timeout 2
            retry 3
            delay_before_retry 0.5
            tls
            tls_ca {ca}
            tls_certificate {ca}
            tls_key {ca}
            tls_server_name api.example
"""))
    (check,) = config.virtual_servers[0].real_servers[0].checkers
    assert (check.service_name, check.connect_port, check.tls, check.tls_server_name) == \
        ("my.pkg.Service", 50052, True, "api.example")
    dumped = config_json(config, "r")["virtual_servers"][0]["real_servers"][0]["checkers"][0]
    assert {key: dumped[key] for key in ("kind", "service_name", "tls", "tls_ca", "tls_key",
                                         "tls_server_name", "retry")} == \
        {"kind": "GRPC_CHECK", "service_name": "my.pkg.Service", "tls": True,
         "tls_ca": str(ca), "tls_key": str(ca), "tls_server_name": "api.example", "retry": 3}


def test_an_empty_service_name_is_the_overall_health(tmp_path):
    config = loaded(tmp_path, block('            service_name ""\n'))
    assert config.virtual_servers[0].real_servers[0].checkers[0].service_name == ""


@pytest.mark.parametrize("line", ["bindto 10.0.0.9", "bind_to 10.0.0.9", "bind_port 4000",
                                  "bind_if eth0", "fwmark 7"])
def test_socket_options_grpcio_cannot_honour_are_refused_at_their_line(tmp_path, line):
    (error,) = errors(tmp_path, block(f"            {line}\n"))
    assert error.startswith(f"6: error: {line.split()[0]}: grpcio makes its own sockets")


def test_tls_settings_without_tls_and_half_a_client_pair(tmp_path):
    pem = tmp_path / "x.pem"
    pem.write_text("x")
    assert errors(tmp_path, block(f"            tls_ca {pem}\n")) == \
        ["5: error: GRPC_CHECK: tls_ca without 'tls'"]
    assert errors(tmp_path, block(f"            tls\n            tls_certificate {pem}\n")) == \
        ["5: error: GRPC_CHECK needs both tls_certificate and tls_key, or neither"]


def test_an_unreadable_file_is_an_error_at_its_line(tmp_path):
    assert errors(tmp_path, block("            tls\n            tls_ca /nonexistent/ca.pem\n")) \
        == ["7: error: tls_ca: cannot read '/nonexistent/ca.pem'"]


def test_a_reload_changing_one_grpc_check_keeps_the_other_servers_jobs(tmp_path):
    before = loaded(tmp_path, block('            service_name "a"\n'),
                    block('            service_name "b"\n'))
    checks = CheckService(before, FakeClock(), Notes(), workers=0)
    checks.start()                       # built, never run: no yield
    try:
        first, second = checks.find(VS, "10.0.0.1:50051"), checks.find(VS, "10.0.0.2:50051")
        kept_job, old_job = second.jobs[0], first.jobs[0]
        old_job.health = old_job.health.__class__(up=False)
        first.up = False
        after = loaded(tmp_path, block('            service_name "a2"\n'),
                       block('            service_name "b"\n'))
        checks.apply(reconcile.plan(before, after).servers, after)
        changed = checks.find(VS, "10.0.0.1:50051")
        assert checks.find(VS, "10.0.0.2:50051").jobs[0] is kept_job       # untouched
        assert changed.jobs[0] is not old_job and changed.jobs[0].checker.service == "a2"
        assert not changed.up and not changed.jobs[0].health.up            # state carried
    finally:
        checks.stop()


def test_building_a_checker_does_not_load_grpcio(tmp_path):
    """grpcio (about 200 ms) loads at the first attempt, never at start-up."""
    path = tmp_path / "k.conf"
    path.write_text("virtual_server 192.0.2.1 80 {\n  real_server 10.0.0.1 50051 {\n"
                    "    GRPC_CHECK {\n    }\n  }\n}\n")
    code = ("import sys\nfrom director.config import load_config\n"
            "from director.check.service import CheckService\n"
            "from director.clock import FakeClock\nfrom director.notify import Notifier\n"
            f"result = load_config({str(path)!r}, config_id='t', interface_exists=None)\n"
            "checks = CheckService(result.config, FakeClock(), Notifier(), workers=0)\n"
            "checks.start()\n"
            "assert type(checks.real_servers[0].jobs[0].checker).__name__ == 'GrpcCheck'\n"
            "print(' '.join(sorted(sys.modules)))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    loaded_modules = set(done.stdout.split())
    assert "director.check.grpc" in loaded_modules
    assert not {"grpc", "grpc_health.v1.health_pb2", "google.protobuf"} & loaded_modules


# --- what a reply or an error means ---------------------------------------------------------

def test_status():
    assert status_failure("SERVING") is None
    assert status_failure("NOT_SERVING") == "NOT_SERVING"
    assert status_failure("SERVICE_UNKNOWN") == "SERVICE_UNKNOWN"
    assert status_failure("UNKNOWN").startswith("UNKNOWN: ")
    assert status_failure("status 42") == "status 42"       # a value the enum does not have


# grpcio 1.85's own words, captured against the servers of the functional tests
REFUSED = ("failed to connect to all addresses; last error: UNKNOWN: ipv4:127.0.0.1:51001: "
           "Failed to connect to remote host: Connection refused")
HTTP1 = ("failed to connect to all addresses; last error: UNAVAILABLE: ipv4:127.0.0.1:51000: "
         "Failed parsing HTTP/2 (Expected SETTINGS frame as the first frame, got frame type 80)")
CLOSED = ("failed to connect to all addresses; last error: UNAVAILABLE: ipv4:127.0.0.1:51000: "
          "Socket closed")
TLS_TO_PLAIN = ("failed to connect to all addresses; last error: UNKNOWN: ipv4:127.0.0.1:50001:"
                " Tls handshake failed (TSI_PROTOCOL_FAILURE): SSL_ERROR_SSL: error:100000f7:SSL"
                " routines:OPENSSL_internal:WRONG_VERSION_NUMBER: Invalid certificate "
                "verification context: OK")


@pytest.mark.parametrize("code, details, tls, want", [
    ("UNAVAILABLE", REFUSED, False,
     ("UNAVAILABLE: Failed to connect to remote host: Connection refused", None)),
    ("UNAVAILABLE", HTTP1, False, ("NOT_GRPC: " + shorten(HTTP1), "not_grpc")),
    ("UNAVAILABLE", HTTP1, True, ("NOT_GRPC: " + shorten(HTTP1), "not_grpc")),
    ("UNAVAILABLE", CLOSED, False, ("UNAVAILABLE: Socket closed", None)),
    ("UNAVAILABLE", TLS_TO_PLAIN, True, ("TLS_ERROR: WRONG_VERSION_NUMBER", None)),
    ("UNAVAILABLE", "Custom verification check failed with error: UNAUTHENTICATED: Hostname "
     "Verification Check failed.", True, ("TLS_ERROR: Hostname Verification Check failed.",
                                          None)),
    ("DEADLINE_EXCEEDED", "Deadline Exceeded", False,
     ("DEADLINE_EXCEEDED: no answer within 1.5 s", None)),
    ("NOT_FOUND", "", False, ("SERVICE_UNKNOWN: the server has no health status for 'svc'",
                              None)),
    ("UNIMPLEMENTED", "Method not found!", False,
     ("UNIMPLEMENTED: the server has no grpc.health.v1.Health service", None)),
    ("RESOURCE_EXHAUSTED", "Received message larger than max (70000 vs. 65536)", False,
     ("NOT_GRPC: reply larger than 64 KiB (Received message larger than max (70000 vs. "
      "65536))", "too_large")),
    ("INTERNAL", "Exception deserializing response!", False,
     ("NOT_GRPC: Exception deserializing response!", "not_grpc")),
    ("PERMISSION_DENIED", "", False, ("PERMISSION_DENIED", None)),
])
def test_rpc_failures_name_their_cause_first(code, details, tls, want):
    assert rpc_failure(code, details, "svc", 1.5, tls) == want


def test_targets_are_address_literals():
    assert target_name("10.0.0.1", 50051) == "ipv4:10.0.0.1:50051"
    assert target_name("2001:db8::1", 443) == "ipv6:[2001:db8::1]:443"
