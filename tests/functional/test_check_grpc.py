"""GRPC_CHECK against real grpcio health servers (tests/functional/grpc_servers.py).

First the checker alone, run directly as the other test_check_*.py do, against servers on
127.0.0.1 in this process: SERVING / NOT_SERVING for a named service and for "" (overall),
an unknown service, a server without the health service, TLS with a throwaway CA (the right
CA, the wrong one, a wrong name, a client certificate asked for), and servers that are not
gRPC: HTTP/1, garbage bytes, closing at once, hung. Then under gevent's monkey-patching, as
the daemon runs it: a hung server's check does not stop the hub.

Last, ``director -C`` in a network namespace checking a server in another: its state, read
from /api/v1/state, follows the statuses the server switches, within the checker's retry
rules (down only after retry + 1 failed attempts), in clear and over TLS, and the hung and
garbage servers stay down with their causes; a reload changing one check leaves the others'
running.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from director.check.checker import Target
from director.check.grpc import GrpcCheck
from director.config.blocks.checkers import BLOCKS
from director.config.schema import model_for
from tests.functional.grpc_servers import HealthServer, RawServer, make_pki
from tests.functional.lab import wait_for

pytestmark = pytest.mark.timeout(120)

ROOT = Path(__file__).resolve().parents[2]
Block = model_for(BLOCKS["GRPC_CHECK"])


def checker(port: int, timeout: float = 2.0, ssl_defs=None, host="127.0.0.1", **keywords):
    return GrpcCheck(Block(kind="GRPC_CHECK", **keywords), Target(host, port, timeout),
                     ssl_defs=ssl_defs)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"))


# --- in clear ---------------------------------------------------------------------------------

def test_serving_and_not_serving_for_a_service_and_overall():
    with HealthServer() as server:
        named, overall = checker(server.port, service_name="svc"), checker(server.port)
        server.set("svc", "SERVING")
        assert named.check().ok and overall.check().ok      # "" is SERVING by default
        server.set("svc", "NOT_SERVING")
        result = named.check()
        assert not result.ok and result.error == "NOT_SERVING"
        assert overall.check().ok                           # the other service is not it
        server.set("", "NOT_SERVING")
        assert overall.check().error == "NOT_SERVING"
        server.set("", "SERVING")
        server.set("svc", "SERVING")
        assert named.check().ok and overall.check().ok      # on the same kept channel
        server.set("svc", "UNKNOWN")
        assert named.check().error.startswith("UNKNOWN: ")


def test_an_unknown_service_and_a_server_without_the_health_service():
    with HealthServer() as server, HealthServer(with_health=False) as bare:
        assert checker(server.port, service_name="nope").check().error == \
            "SERVICE_UNKNOWN: the server has no health status for 'nope'"
        assert checker(bare.port).check().error == \
            "UNIMPLEMENTED: the server has no grpc.health.v1.Health service"


def test_a_dead_server_then_a_live_one_on_the_same_port():
    """The channel of a failed attempt is dropped: the next one connects at once, with no
    reconnect backoff inherited (grpcio's would wait a second and more)."""
    with HealthServer() as server:
        port = server.port
        check = checker(port)
        assert check.check().ok
    result = check.check()
    assert not result.ok and result.error.startswith("UNAVAILABLE: "), result
    with HealthServer(f"127.0.0.1:{port}"):
        started = time.monotonic()
        assert check.check().ok
        print(f"back up in {time.monotonic() - started:.3f} s")


@pytest.mark.parametrize("mode, cause, reply_error", [
    ("http", "NOT_GRPC: Failed parsing HTTP/2", "not_grpc"),
    ("garbage", "NOT_GRPC: Failed parsing HTTP/2", "not_grpc"),
    ("close", "UNAVAILABLE: ", None),
])
def test_servers_that_are_not_grpc_fail_with_their_cause(mode, cause, reply_error):
    with RawServer(mode) as server:
        result = checker(server.port).check()
    assert not result.ok and result.error.startswith(cause), result
    assert result.reply_error == reply_error
    assert result.duration < 2.0


def test_a_hung_server_fails_at_connect_timeout():
    with RawServer("hung") as server:
        result = checker(server.port, timeout=0.5).check()
    assert not result.ok and result.error == "DEADLINE_EXCEEDED: no answer within 0.5 s"
    assert result.duration < 0.5 + 0.5          # the call's own deadline, not the wait's
    print(f"hung: {result.duration:.3f} s")


# --- TLS --------------------------------------------------------------------------------------

def test_tls_with_the_ca_and_the_name(pki):
    with HealthServer(pki=pki) as server:
        server.set("svc", "SERVING")
        good = checker(server.port, service_name="svc", tls=True, tls_ca=str(pki["ca"]))
        assert good.check().ok                                  # the IP is in the SAN
        named = checker(server.port, tls=True, tls_ca=str(pki["ca"]),
                        tls_server_name="grpc.test")
        assert named.check().ok
        server.set("svc", "NOT_SERVING")
        assert good.check().error == "NOT_SERVING"
        wrong_name = checker(server.port, tls=True, tls_ca=str(pki["ca"]),
                             tls_server_name="other.test").check()
        assert wrong_name.error == "TLS_ERROR: Hostname Verification Check failed.", wrong_name
        plain = checker(server.port).check()                    # clear text to a TLS port
        assert not plain.ok and plain.error.split(":")[0] in ("UNAVAILABLE", "NOT_GRPC"), plain


def test_tls_with_another_ca_or_none_fails(pki, tmp_path):
    other = make_pki(tmp_path / "other", ca_name="another CA")
    with HealthServer(pki=pki) as server:
        for ca in (str(other["ca"]), None):                     # None: the system's CAs
            result = checker(server.port, tls=True, tls_ca=ca).check()
            assert result.error == "TLS_ERROR: CERTIFICATE_VERIFY_FAILED", (ca, result)


def test_tls_to_a_clear_server():
    with HealthServer() as server:
        result = checker(server.port, tls=True).check()
    assert result.error == "TLS_ERROR: WRONG_VERSION_NUMBER", result


def test_a_client_certificate_from_the_block_or_the_ssl_block(pki):
    ssl_defs = SimpleNamespace(ca=str(pki["ca"]), certificate=str(pki["client_cert"]),
                               key=str(pki["client_key"]), password=None)
    with HealthServer(pki=pki, client_auth=True) as server:
        without = checker(server.port, tls=True, tls_ca=str(pki["ca"])).check()
        assert not without.ok and without.error.split(":")[0] in ("TLS_ERROR", "UNAVAILABLE")
        assert checker(server.port, tls=True, tls_ca=str(pki["ca"]),
                       tls_certificate=str(pki["client_cert"]),
                       tls_key=str(pki["client_key"])).check().ok
        assert checker(server.port, tls=True, ssl_defs=ssl_defs).check().ok   # all defaults


def test_an_encrypted_client_key_with_the_ssl_blocks_password(pki, tmp_path):
    from cryptography.hazmat.primitives import serialization
    key = serialization.load_pem_private_key(pki["client_key"].read_bytes(), None)
    locked = tmp_path / "client.key"
    locked.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"s3cret")))
    ssl_defs = SimpleNamespace(ca=str(pki["ca"]), certificate=str(pki["client_cert"]),
                               key=str(locked),
                               password=SimpleNamespace(reveal=lambda: "s3cret"))
    with HealthServer(pki=pki, client_auth=True) as server:
        assert checker(server.port, tls=True, ssl_defs=ssl_defs).check().ok
        wrong = SimpleNamespace(**{**vars(ssl_defs),
                                   "password": SimpleNamespace(reveal=lambda: "nope")})
        result = checker(server.port, tls=True, ssl_defs=wrong).check()
        assert result.error.startswith("TLS_ERROR: "), result


def test_ipv6():
    with HealthServer("[::1]:0") as server:
        assert checker(server.port, host="::1").check().ok


def test_a_certificate_file_gone_is_a_tls_error(pki, tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_bytes(pki["ca"].read_bytes())
    check = checker(1, tls=True, tls_ca=str(ca))
    ca.unlink()
    result = check.check()
    assert result.error.startswith("TLS_ERROR: No such file or directory"), result


# --- under gevent, as the daemon runs it -----------------------------------------------------

UNDER_GEVENT = """
from gevent import monkey; monkey.patch_all()
import sys, time
import gevent
from director.check.checker import Target
from director.check.grpc import GrpcCheck
from director.config.blocks.checkers import BLOCKS
from director.config.schema import model_for
block = model_for(BLOCKS["GRPC_CHECK"])(kind="GRPC_CHECK")
ticks = []
def tick():
    while True:
        gevent.sleep(0.01)
        ticks.append(time.monotonic())
gevent.spawn(tick)
gevent.sleep(0.05)
checks = [GrpcCheck(block, Target("127.0.0.1", int(port), 1.0)) for port in sys.argv[1:]]
started = time.monotonic()
greenlets = [gevent.spawn(c.check) for c in checks]
gevent.joinall(greenlets)
results = [greenlet.value for greenlet in greenlets]
during = [t for t in ticks if t > started]
gaps = [b - a for a, b in zip(during, during[1:])]
print(len(during), round(max(gaps, default=0.0), 3))
for result in results:
    print(result.ok, result.error)
"""


def test_under_gevent_the_hub_runs_while_checks_wait():
    """Against a hung server, a call made from the greenlet itself would hold the hub for
    the whole connect_timeout; here a ticker greenlet goes on ticking through it."""
    with RawServer("hung") as hung, HealthServer() as healthy:
        done = subprocess.run([sys.executable, "-c", UNDER_GEVENT, str(hung.port),
                               str(healthy.port)], capture_output=True, text=True, timeout=60,
                              cwd=ROOT)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    ticks, longest_gap = lines[0].split()
    print(f"ticks during the checks: {ticks}, longest gap {longest_gap} s")
    assert int(ticks) >= 10              # 1 s of checks at 10 ms: a blocked hub ticks once
    assert lines[1] == "False DEADLINE_EXCEEDED: no answer within 1 s"
    assert lines[2] == "True None"
    assert not re.search(r"^[IW]\d{4} ", done.stderr, re.M), done.stderr   # grpcio's INFO lines


# --- the daemon, in network namespaces ---------------------------------------------------------

SERVER, SERVER2, DIRECTOR, WEB_PORT, PORT = "192.0.2.20", "192.0.2.21", "192.0.2.10", 8080, 50051
DELAY_LOOP, CONNECT_TIMEOUT, RETRY, BEFORE_RETRY = 1, 1, 2, 0.5
# A server answering NOT_SERVING is down after retry + 1 failed attempts: the check due
# (up to delay_loop away), then retry more, delay_before_retry apart; each a round trip.
DOWN_BOUND = DELAY_LOOP + RETRY * (BEFORE_RETRY + CONNECT_TIMEOUT) + CONNECT_TIMEOUT
UP_BOUND = DELAY_LOOP + CONNECT_TIMEOUT     # rise 1: the next good check
SLACK = 5.0                                  # polling through `ip netns exec`, a busy machine


def grpc_block(service: str = "", extra: str = "") -> str:
    return (f"GRPC_CHECK {{\n            service_name \"{service}\"\n"
            f"            connect_timeout {CONNECT_TIMEOUT}\n            retry {RETRY}\n"
            f"            delay_before_retry {BEFORE_RETRY}\n{extra}        }}")


def daemon_config(ca: Path, wrong_name: str = "wrong.test") -> str:
    tls = f"            tls\n            tls_ca {ca}\n"
    reals = {
        f"{SERVER} {PORT}": grpc_block("svc"),                  # a named service, clear
        f"{SERVER2} {PORT}": grpc_block(),                      # overall, clear
        f"{SERVER} {PORT + 1}": grpc_block("svc", tls),         # TLS, verified by the test CA
        f"{SERVER2} {PORT + 1}": grpc_block("", tls + f"            tls_server_name {wrong_name}\n"),
        f"{SERVER} {PORT + 2}": grpc_block(),                   # hung
        f"{SERVER} {PORT + 3}": grpc_block(),                   # garbage
    }
    body = "".join(f"    real_server {address} {{\n        {check}\n    }}\n"
                   for address, check in reals.items())
    return (f"virtual_server 192.0.2.100 {PORT} {{\n    delay_loop {DELAY_LOOP}\n"
            f"    protocol TCP\n{body}}}\n")


def fetch(host, path: str) -> str:
    code = ("import sys, urllib.request\nsys.stdout.write(urllib.request.urlopen("
            f"'http://{DIRECTOR}:{WEB_PORT}{path}', timeout=5).read().decode())")
    return host.run([sys.executable, "-c", code]).stdout


def api(host, path: str):
    return json.loads(fetch(host, path))


@pytest.mark.netns
@pytest.mark.slow
def test_the_daemon_follows_serving_and_not_serving(lab):
    switch = lab.switch()
    director = lab.host("dir", [(switch, "eth0", [f"{DIRECTOR}/24"])])
    server = lab.host("grpc", [(switch, "eth0", [f"{SERVER}/24", f"{SERVER2}/24"])])
    folder = Path(lab.tmp)
    pki = make_pki(folder / "pki", ips=(SERVER, SERVER2))
    control, applied = folder / "control.json", folder / "applied.json"
    env = {"PYTHONPATH": str(ROOT)}

    def switch_to(statuses: dict) -> None:
        text = json.dumps(statuses)
        written = control.with_suffix(".new")
        written.write_text(text)
        written.replace(control)
        wait_for(lambda: applied.exists() and applied.read_text() == text, 10,
                 message="the server did not apply its new statuses")

    control.write_text(json.dumps({"svc": "SERVING", "": "SERVING"}))
    server.popen([sys.executable, str(ROOT / "tests/functional/grpc_servers.py"),
                  "--pki", str(folder / "pki"), "--control", str(control),
                  "--applied", str(applied), "--port", str(PORT)], env=env)
    wait_for(lambda: applied.exists(), 20, message="the gRPC servers did not start")
    config = folder / "keepalived.conf"
    config.write_text(daemon_config(pki["ca"]))
    log_path = folder / "director.log"
    daemon = director.popen([sys.executable, "-m", "director", "-C", "-l", "-f", str(config),
                    "--state-dir", str(folder / "state"),
                    "--web", f"{DIRECTOR}:{WEB_PORT}"], log_path=log_path, env=env)

    def reals() -> dict[str, dict]:
        state = api(director, "/api/v1/state")
        return {f"{r['address']}:{r['port']}": r
                for r in state["virtual_servers"][0]["real_servers"]}

    named, overall = f"{SERVER}:{PORT}", f"{SERVER2}:{PORT}"
    tls, tls_wrong = f"{SERVER}:{PORT + 1}", f"{SERVER2}:{PORT + 1}"
    hung, garbage = f"{SERVER}:{PORT + 2}", f"{SERVER}:{PORT + 3}"

    def settled():
        try:
            now = reals()
        except subprocess.CalledProcessError:          # the web server is not up yet
            return None
        if all(now[key]["last_check"] for key in now) and now[named]["up"] and \
                now[overall]["up"] and now[tls]["up"] and not now[hung]["up"] and \
                not now[garbage]["up"] and not now[tls_wrong]["up"]:
            return now
        return None

    now = wait_for(settled, 30, message=lambda: log_path.read_text()[-3000:])
    assert now[hung]["last_check"]["error"] == \
        f"DEADLINE_EXCEEDED: no answer within {CONNECT_TIMEOUT} s"
    assert now[garbage]["last_check"]["error"].startswith("NOT_GRPC: Failed parsing HTTP/2")
    assert now[tls_wrong]["last_check"]["error"].startswith("TLS_ERROR: ")
    counted = re.search(r'^director_check_reply_errors_total\{checker="GRPC_CHECK",'
                        r'reason="not_grpc"\} (\d+)', fetch(director, "/metrics"), re.M)
    assert counted and float(counted.group(1)) >= 1         # the garbage server's replies

    def switch_and_follow(statuses: dict, changing: list[str], up: bool,
                          bound: float) -> None:
        """Switch the server's statuses; each of ``changing`` must follow, the others
        stay as they were."""
        before = reals()
        switch_to(statuses)
        started = time.monotonic()
        for key in changing:
            last = wait_for(lambda: (lambda r: r if r["up"] == up else None)(reals()[key]),
                            bound + SLACK,
                            message=lambda: (reals()[key], log_path.read_text()[-2000:]))
            print(f"{key} {'up' if up else 'down'} after {time.monotonic() - started:.2f} s "
                  f"(bound {bound:g} s + polling)")
            if not up:      # the retry rule: down only after retry + 1 failed attempts
                failed = last["checks"]["failed"] - before[key]["checks"]["failed"]
                assert failed >= RETRY + 1, (before[key], last)
                assert last["last_check"]["error"] == "NOT_SERVING", last
        after = reals()
        for key in set(after) - set(changing):
            assert after[key]["up"] == before[key]["up"], (key, after[key])

    # the named service only: its servers go down and back, the overall one stays up
    switch_and_follow({"svc": "NOT_SERVING", "": "SERVING"}, [named, tls], False, DOWN_BOUND)
    switch_and_follow({"svc": "SERVING", "": "SERVING"}, [named, tls], True, UP_BOUND)
    # the overall health ("")
    switch_and_follow({"svc": "SERVING", "": "NOT_SERVING"}, [overall], False, DOWN_BOUND)
    switch_and_follow({"svc": "SERVING", "": "SERVING"}, [overall], True, UP_BOUND)
    final = reals()
    assert not final[hung]["up"] and not final[garbage]["up"]

    # A reload fixing the wrong server name changes that check only: it comes up, and the
    # others keep their jobs (their counts go on from where they were).
    before = reals()
    config.write_text(daemon_config(pki["ca"], wrong_name="grpc.test"))
    daemon.send_signal(signal.SIGHUP)       # `ip netns exec` became the daemon (exec)
    wait_for(lambda: reals()[tls_wrong]["up"], UP_BOUND + SLACK,
             message=lambda: (reals()[tls_wrong], log_path.read_text()[-2000:]))
    (reloaded,) = re.findall(r"check\.reloaded .*", log_path.read_text())
    assert all(f in reloaded.split() for f in ("kept=5", "added=0", "removed=0", "changed=1"))
    print(reloaded)
    after = reals()
    for key in set(after) - {tls_wrong}:
        assert after[key]["checks"]["ok"] >= before[key]["checks"]["ok"], key
        assert after[key]["checks"]["failed"] >= before[key]["checks"]["failed"], key
        assert after[key]["up"] == before[key]["up"], key
    log = log_path.read_text()
    assert "hub.crash" not in log and "Traceback" not in log
    assert not re.search(r"^[IW]\d{4} ", log, re.M)      # grpcio's C core kept to errors
