"""The web layer through Flask's test client, over a fake director that offers what
daemon.Director offers the app (snapshot, events, command, healthy, history). The state it
serves is built the way the daemon builds it: the views of director/state.py, made from a
parsed configuration by their own builders, with live values (and a hostile name) filled
in; its JSON is checked against CONTRACT.md's own example. Real daemons are in
tests/functional/test_web_daemon.py and test_state_contract.py."""

from __future__ import annotations

import functools
import json
import shutil
import subprocess
import tempfile
from dataclasses import replace
from pathlib import Path

import pytest

from director.config import load_config
from director.config.render import config_json
from director.errors import CommandError
from director.events import EventLog
from director.override_peers import OverridesView, PeerView
from director.state import (DURATION_BUCKETS, CheckView, InstanceCounters, InstanceView,
                            JobStats, LastCheck, LatenessView, LoadBalancerView, MainLoopView,
                            NotifyFifoView, RealServerView, ReloadView, State,
                            SyncGroupView, Traffic, VirtualServerView, VrrpView, WebView,
                            frozen)
from tests.contract import shape_errors, state_example
from web import create_app

HOSTILE = '<img src=x onerror="window.pwned=1">'
TOKEN = "s3cret-token"

CONFIG = """
vrrp_sync_group VG1 {
    group {
        VI_1
        VI_GATEWAY
    }
}
vrrp_instance VI_1 {
    interface eth0
    virtual_router_id 51
    priority 150
    virtual_ipaddress {
        192.168.1.11/32
    }
}
vrrp_instance VI_GATEWAY {
    interface eth1
    virtual_router_id 52
    priority 150
    virtual_ipaddress {
        10.20.40.1/24
    }
}
virtual_server 192.168.1.11 80 {
    lb_algo rr
    lb_kind NAT
    protocol TCP
    quorum 1
    real_server 10.20.40.10 80 {
        weight 1
        SSL_GET {
            url {
                path /
                status_code 200
            }
        }
    }
}
"""


@functools.cache
def configuration():
    """CONFIG parsed (once: the fake serves a state per request)."""
    with tempfile.TemporaryDirectory(prefix="director-web-api-") as folder:
        path = Path(folder) / "keepalived.conf"
        path.write_text(CONFIG)
        result = load_config(str(path), config_id="lb1", interface_exists=None)
    assert result.ok, [str(d) for d in result.errors]
    return result.config


def contract_state(with_jobs: bool = False) -> State:
    """The contract's example as the daemon would serve it."""
    config = configuration()
    traffic = Traffic(7, 70, 60, 7000, 60000)
    counters = InstanceCounters(10, 0, 0, 0, 1, frozen({"bad_ttl": 2}), frozen({}),
                                frozen({("INIT", "BACKUP"): 1, ("BACKUP", "MASTER"): 1}))
    instances = tuple(
        InstanceView.of(item, 2, "VG1", state="MASTER", master_ip="192.168.1.9",
                        last_transition=1764000000.0, reason="master_down", counters=counters,
                        advert_lateness=LatenessView(DURATION_BUCKETS, (30,) + (0,) * 13, 0.01,
                                                     (0.0003,)))
        for item in config.vrrp_instances)
    (virtual,) = config.virtual_servers
    (real,) = virtual.real_servers
    jobs = (JobStats("192.168.1.11:80/TCP", "10.20.40.10:80", "SSL_GET", 9, 1,
                     (0, 3, 5, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1), 0.05),) if with_jobs else ()
    check = CheckView("SSL_GET", True, False, 9, 1,
                      LastCheck(True, 0.004, None, 1764000000.0, 1790000000), jobs)
    reals = (RealServerView.of(real, check, weight=1, desired_weight=1, counters=traffic),)
    return State(
        router_id=HOSTILE, pid=42, started=1764000000.0, config="/etc/k.conf",
        backend="ipvs", load_balancer=LoadBalancerView(
            "ipvs", frozen({}), None, 0, ("192.168.1.11:80/TCP: a note",)),
        not_running=(), reload=ReloadView(None, None),
        vrrp=VrrpView(instances, (SyncGroupView("VG1", ("VI_1", "VI_GATEWAY"), "MASTER"),),
                      None, frozen({("eth0", "vrid"): 3})),
        virtual_servers=(VirtualServerView.of(virtual, reals, quorum_ok=True, in_kernel=True,
                                              counters=traffic),),
        at=1764000001.0, reloads=frozen({"success": 2, "failure": 1}),
        last_reload_success=1764000000.0, notifications=frozen({("script", "ok"): 3}),
        lateness_p99=0.002, check_reply_errors=frozen({("HTTP_GET", "too_large"): 1}),
        main_loop=MainLoopView(LatenessView(DURATION_BUCKETS, (9,) + (0,) * 12 + (1,), 4.9,
                                            (0.0004, 4.9)), None, 1.0),
        web=WebView(frozen({"unauthorized": 2, "timeout": 1}), 3, 512, 1, 64, False),
        overrides=OverridesView(3, 2, (PeerView("http://192.0.2.2:8080", 1700000000.0,
                                                None, 4, 90),),
                                frozen({"unauthenticated": 1, "malformed": 0, "too_large": 0,
                                        "bad_entry": 2})),
        notify_fifos=(NotifyFifoView("/run/keepalived/vrrp.fifo", ("vrrp_notify_fifo",), True,
                                     None, 12, frozen({"full": 2}), "/usr/local/bin/reader",
                                     True, 0),))


class FakeDirector:
    def __init__(self):
        self.events = EventLog()
        self.commands = []
        self.is_healthy = True

    def history(self, name):
        return {"10.20.40.10:80": [[0.004, True]]} if name == "192.168.1.11:80/TCP" else None

    def snapshot(self, with_jobs=False):
        state = contract_state(with_jobs)
        if not self.is_healthy:
            state = replace(state, not_running=("load balancer (crashed, restarting)",))
        return state

    def healthy(self):
        return self.is_healthy

    def not_running(self):
        return [] if self.is_healthy else ["load balancer (crashed, restarting)"]

    def router_id(self):
        return HOSTILE

    def command(self, name, **arguments):
        self.commands.append((name, arguments))
        if arguments.get("real_server") == "nowhere:1" or \
                len(arguments.get("real_server", "")) > 1000:      # as the daemon answers
            raise CommandError(f"no real server {arguments['real_server']!r}")
        return {"done": name}

    def peer_message(self, body, signature, peer):
        self.commands.append(("peer_message", {"body": body, "signature": signature}))
        return 401 if signature != "good" else 200, b'{"origin": "x"}', \
            {"X-Director-Signature": "reply"}


@pytest.fixture
def director():
    return FakeDirector()


@pytest.fixture
def client(director):
    return create_app(director, admin_token=TOKEN).test_client()


@pytest.fixture
def read_only(director):
    return create_app(director).test_client()


def csrf(client) -> str:
    return client.get("/api/v1/state") and client.application.config["CSRF_TOKEN"]


def test_state_has_the_contract_shape(client):
    body = client.get("/api/v1/state").get_json()
    assert shape_errors(state_example(), body) == []
    assert body["router_id"] == HOSTILE
    assert [i["sync_group"] for i in body["vrrp"]["instances"]] == ["VG1", "VG1"]
    assert body["vrrp"]["dropped_by_interface"] == {"eth0/vrid": 3}
    assert body["load_balancer"]["warnings"] == ["192.168.1.11:80/TCP: a note"]
    real = body["virtual_servers"][0]["real_servers"][0]
    assert real["last_check"]["cert_not_after"] == 1790000000
    assert body["admin"] is True


def test_the_shape_check_can_fail(client):
    """Without one key, or with a wrong type, the state is not the contract's."""
    body = client.get("/api/v1/state").get_json()
    del body["vrrp"]["instances"][0]["sync_group"]
    body["virtual_servers"][0]["port"] = "80"
    body["vrrp"]["instances"][1]["state"] = "PRIMARY"
    assert shape_errors(state_example(), body) == [
        "state.vrrp.instances[0]: no 'sync_group'",
        "state.vrrp.instances[1].state: 'PRIMARY' is not one of MASTER|BACKUP|FAULT|INIT|STOP",
        "state.virtual_servers[0].port: str '80', the contract has int 80"]


def test_dump_json_is_the_same_views_without_the_live_fields():
    """--dump-json: every key of the contract's example but the live ones, and none of
    those (the views' LIVE sets say which)."""
    data = json.loads(json.dumps(config_json(configuration(), "lb1")))
    live = InstanceView.LIVE | SyncGroupView.LIVE | VirtualServerView.LIVE | \
        RealServerView.LIVE
    example = state_example()

    def without_live(value):
        if isinstance(value, dict):
            return {k: without_live(v) for k, v in value.items() if k not in live}
        if isinstance(value, list):
            return [without_live(v) for v in value]
        return value

    vrrp, servers = without_live(example["vrrp"]), without_live(example["virtual_servers"])
    for server in servers:                      # a configuration's, as configured
        for real in server["real_servers"]:
            real["weight"] = real["configured_weight"]
    assert shape_errors({"vrrp": vrrp, "virtual_servers": servers}, data) == []
    for instance in data["vrrp"]["instances"]:
        assert InstanceView.LIVE.isdisjoint(instance) and instance["sync_group"] == "VG1"
    assert SyncGroupView.LIVE.isdisjoint(data["vrrp"]["sync_groups"][0])
    (server,) = data["virtual_servers"]
    assert VirtualServerView.LIVE.isdisjoint(server)
    (real,) = server["real_servers"]
    # "weight" is also a keyword: the configured one
    assert (RealServerView.LIVE - {"weight"}).isdisjoint(real) and real["weight"] == 1
    assert real["name"] == "10.20.40.10:80"


def test_events_since_and_limits(client, director):
    for number in range(5):
        director.events.add("real_server", real_server=f"r{number}", state="down")
    assert [e["real_server"] for e in client.get("/api/v1/events?since=3").get_json()] == \
        ["r3", "r4"]
    assert len(client.get("/api/v1/events?limit=2").get_json()) == 2
    for bad in ("since=x", "limit=0", "limit=100000", "since=-1"):
        response = client.get(f"/api/v1/events?{bad}")
        assert response.status_code == 400, bad
        assert "error" in response.get_json()


def test_event_ring_is_bounded_and_slow_subscribers_are_dropped():
    events = EventLog(capacity=10)
    slow = events.subscribe()
    for number in range(1200):
        events.add("reload", result="success", n=number)
    assert len(events.ring) == 10 and events.since(0)[0].fields["n"] == 1190
    assert slow.dropped and slow not in events.subscribers and events.dropped_subscribers == 1


def test_stream_sends_missed_then_new_events(client, director):
    director.events.add("reload", result="success")
    response = client.get("/api/v1/stream", headers={"Last-Event-ID": "0"}, buffered=False)
    assert response.mimetype == "text/event-stream"
    frames = (frame.decode() for frame in response.response)
    assert next(frames) == "retry: 2000\n\n"
    first = next(frames)
    assert first.startswith("id: 1\nevent: reload\ndata: ")
    director.events.add("vrrp.transition", instance="VI_1", from_state="BACKUP",
                        to_state="MASTER", reason="master_down")
    second = next(frames)
    data = json.loads(second.split("data: ", 1)[1])
    assert data["to_state"] == "MASTER" and data["id"] == 2
    response.close()
    assert not director.events.subscribers          # the subscription went with the client


def test_history_and_unknown_virtual_server(client):
    assert client.get("/api/v1/history?virtual_server=192.168.1.11:80/TCP").get_json() == \
        {"10.20.40.10:80": [[0.004, True]]}
    assert client.get("/api/v1/history?virtual_server=nope").status_code == 404


def test_healthz_follows_the_daemon(client, director):
    assert client.get("/healthz").status_code == 200
    director.is_healthy = False
    response = client.get("/healthz")
    assert response.status_code == 503 and b"not running: load balancer" in response.data


def test_metrics_names_types_and_labels(client):
    from prometheus_client.parser import text_string_to_metric_families
    text = client.get("/metrics").get_data(as_text=True)
    families = {f.name: f for f in text_string_to_metric_families(text)}
    expected = {
        "director_vrrp_state": ("gauge", {"instance", "vrid", "interface"}),
        "director_vrrp_transitions": ("counter", {"instance", "from_state", "to_state"}),
        "director_vrrp_became_master": ("counter", {"instance"}),
        "director_vrrp_adverts_sent": ("counter", {"instance"}),
        "director_vrrp_adverts_received": ("counter", {"instance"}),
        "director_vrrp_packets_dropped": ("counter", {"instance", "interface", "reason"}),
        "director_vrrp_priority": ("gauge", {"instance"}),
        "director_check_duration_seconds": ("histogram",
                                            {"virtual_server", "real_server", "checker"}),
        "director_checks": ("counter", {"virtual_server", "real_server", "checker", "result"}),
        "director_real_server_up": ("gauge", {"virtual_server", "real_server"}),
        "director_real_server_weight": ("gauge", {"virtual_server", "real_server"}),
        "director_virtual_server_quorum_up": ("gauge", {"virtual_server"}),
        "director_config_reloads": ("counter", {"result"}),
        "director_config_last_reload_success_timestamp_seconds": ("gauge", set()),
        "director_notifications": ("counter", {"kind", "result"}),
        "director_real_server_connections": ("counter", {"virtual_server", "real_server"}),
        "director_virtual_server_bytes": ("counter", {"virtual_server", "direction"}),
        "director_web_requests_refused": ("counter", {"reason"}),
        "director_notify_fifo_lines": ("counter", {"fifo", "result"}),
        "director_overrides_active": ("gauge", set()),
        "director_override_peer_sync_failures": ("counter", {"peer"}),
        "director_override_peer_last_sync_timestamp_seconds": ("gauge", {"peer"}),
        "director_override_peer_messages_dropped": ("counter", {"reason"}),
    }
    for name, (kind, labels) in expected.items():
        assert name in families, name
        assert families[name].type == kind, name
        sample_labels = {key for s in families[name].samples for key in s.labels} - {"le"}
        assert sample_labels == labels, name
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for f in families.values() for s in f.samples}
    assert samples[("director_vrrp_state", (("instance", "VI_1"), ("interface", "eth0"),
                                            ("vrid", "51")))] == 2
    bucket = ("director_check_duration_seconds_bucket",
              (("checker", "SSL_GET"), ("le", "0.005"), ("real_server", "10.20.40.10:80"),
               ("virtual_server", "192.168.1.11:80/TCP")))
    assert samples[bucket] == 8                      # cumulative: 0 + 3 + 5
    assert samples[("director_config_reloads_total", (("result", "failure"),))] == 1
    assert samples[("director_vrrp_packets_dropped_total",
                    (("instance", ""), ("interface", "eth0"), ("reason", "vrid")))] == 3
    assert samples[("director_web_requests_refused_total", (("reason", "unauthorized"),))] == 2
    assert samples[("director_web_requests_refused_total", (("reason", "tls_handshake"),))] == 0
    fifo = (("fifo", "/run/keepalived/vrrp.fifo"),)
    assert samples[("director_notify_fifo_lines_total", fifo + (("result", "written"),))] == 12
    assert samples[("director_notify_fifo_lines_total", fifo + (("result", "full"),))] == 2
    peer = (("peer", "http://192.0.2.2:8080"),)
    assert samples[("director_override_peer_sync_failures_total", peer)] == 4
    assert samples[("director_override_peer_messages_dropped_total",
                    (("reason", "unauthenticated"),))] == 1


@pytest.mark.skipif(shutil.which("promtool") is None,
                    reason="promtool missing (apt-get install prometheus)")
def test_metrics_pass_promtool(client):
    text = client.get("/metrics").get_data()
    done = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True,
                          timeout=30)
    assert done.returncode == 0, done.stdout + done.stderr
    assert not done.stdout.strip() and not done.stderr.strip(), done.stdout + done.stderr


def test_dashboard_escapes_names_and_forbids_inline_script(client):
    response = client.get("/")
    page = response.get_data(as_text=True)
    assert HOSTILE not in page and "&lt;img src=x" in page
    policy = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy
    assert client.get("/static/dashboard.js").status_code == 200


# === admin actions ============================================================================

BODY = {"virtual_server": "192.168.1.11:80/TCP", "real_server": "10.20.40.10:80"}


def test_read_only_without_an_admin_token(read_only, director):
    response = read_only.post("/api/v1/reload", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 403 and "read-only" in response.get_json()["error"]
    assert read_only.get("/api/v1/state").get_json()["admin"] is False
    assert director.commands == []


@pytest.mark.parametrize("path", ["/api/v1/reload", "/api/v1/reload?dry_run=1",
                                  "/api/v1/real-servers/drain", "/api/v1/real-servers/restore"])
def test_every_action_needs_the_token_and_the_csrf_token(client, director, path):
    token = csrf(client)
    assert client.post(path, json=BODY).status_code == 401
    assert client.post(path, json=BODY).headers["WWW-Authenticate"].startswith("Bearer")
    assert client.post(path, json=BODY, headers={"Authorization": "Bearer wrong"}
                       ).status_code == 403
    assert client.post(path, json=BODY, headers={"Authorization": f"Bearer {TOKEN}"}
                       ).status_code == 403                                  # no CSRF token
    assert client.post(path, json=BODY, headers={"Authorization": f"Bearer {TOKEN}",
                                                 "X-CSRF-Token": "forged"}).status_code == 403
    assert client.post(path, json=BODY, headers={
        "Authorization": f"Bearer {TOKEN}", "X-CSRF-Token": token,
        "Origin": "http://evil.example"}).status_code == 403
    assert director.commands == []
    response = client.post(path, json=BODY, headers={"Authorization": f"Bearer {TOKEN}",
                                                     "X-CSRF-Token": token,
                                                     "Origin": "http://localhost"})
    assert response.status_code == 200, response.get_json()
    name, arguments = director.commands[0]
    if path.endswith("drain") or path.endswith("restore"):
        assert name == "drain" and arguments["drained"] is path.endswith("drain")
        assert arguments["virtual_server"] == BODY["virtual_server"]
    else:
        assert name == ("preview" if "dry_run=1" in path else "reload")
        assert "path" not in arguments          # only the configured file, over HTTP
    assert arguments["actor"]


def test_a_preview_over_http_takes_no_path(client, director):
    """A path from HTTP would let a token holder read any file the daemon can: refused."""
    headers = {"Authorization": f"Bearer {TOKEN}", "X-CSRF-Token": csrf(client)}
    for query in ("dry_run=1&path=/etc/shadow", "path=/etc/shadow", "dry_run=yes"):
        response = client.post(f"/api/v1/reload?{query}", headers=headers)
        assert response.status_code == 400, query
    assert director.commands == []
    assert client.post("/api/v1/reload?dry_run=0", headers=headers).status_code == 200
    assert director.commands[0][0] == "reload"


@pytest.mark.parametrize("path, field, good, bad", [
    ("/api/v1/real-servers/weight", "weight", [0, 5, -1, None], ["5", True, 1.5, [1], -2, 65536]),
    ("/api/v1/real-servers/maintenance", "maintenance", [True, False], [1, "yes", None])])
def test_weight_and_maintenance_take_one_more_field(client, director, path, field, good, bad):
    assert client.post(path, json={**BODY, field: good[0]}).status_code == 401
    headers = {"Authorization": f"Bearer {TOKEN}", "X-CSRF-Token": csrf(client)}
    for value in bad:
        assert client.post(path, headers=headers, json={**BODY, field: value}
                           ).status_code == 400, value
    assert client.post(path, headers=headers, json=BODY).status_code == 400     # missing
    assert client.post(path, headers=headers, json={**BODY, field: good[0], "x": 1}
                       ).status_code == 400                                   # a typo
    assert director.commands == []
    for value in good:
        assert client.post(path, headers=headers, json={**BODY, field: value}
                           ).status_code == 200
    names = {name for name, _ in director.commands}
    assert names == {field}
    key = "weight" if field == "weight" else "on"
    assert [arguments[key] for _, arguments in director.commands] == good
    assert all(arguments["actor"] for _, arguments in director.commands)


def test_the_peer_sync_is_signed_not_tokened(client, director):
    """A peer presents no bearer or CSRF token: its body's signature is the daemon's to
    check (director/override_peers.py); the answer and its signature pass through."""
    response = client.post("/api/v1/overrides/sync", data=b'{"a": 1}',
                           headers={"X-Director-Signature": "good"})
    assert response.status_code == 200 and response.headers["X-Director-Signature"] == "reply"
    assert client.post("/api/v1/overrides/sync", data=b"{}").status_code == 401
    assert director.commands[0] == ("peer_message", {"body": b'{"a": 1}', "signature": "good"})
    big = b"x" * (1 << 20)                          # above the admin bodies' 64 KiB
    assert client.post("/api/v1/overrides/sync", data=big,
                       headers={"X-Director-Signature": "good"}).status_code == 200
    assert director.commands[-1][1]["body"] == big
    response = client.post("/api/v1/overrides/sync", data=b"x" * (9 << 20),
                           headers={"X-Director-Signature": "good"})
    assert response.status_code == 413 and str(8 << 20) in response.get_json()["error"]
    assert len(director.commands) == 3


def test_bad_bodies_and_unknown_servers(client, director):
    headers = {"Authorization": f"Bearer {TOKEN}", "X-CSRF-Token": csrf(client)}
    for body in (None, "not json", {"virtual_server": 1, "real_server": "x"}, {}):
        kwargs = {"json": body} if not isinstance(body, str) else {"data": body}
        response = client.post("/api/v1/real-servers/drain", headers=headers, **kwargs)
        assert response.status_code == 400, body
    response = client.post("/api/v1/real-servers/drain", headers=headers,
                           json={**BODY, "real_server": "nowhere:1"})
    assert response.status_code == 404 and "nowhere" in response.get_json()["error"]


def test_hostile_bodies_are_clear_400s_and_413s(client, director):
    """JSON nested a thousand deep gave a 500 (RecursionError); a body of megabytes was read
    whole; a long unknown name came back in the 404 whole."""
    headers = {"Authorization": f"Bearer {TOKEN}", "X-CSRF-Token": csrf(client),
               "Content-Type": "application/json"}
    deep = "[" * 1000 + "]" * 1000
    response = client.post("/api/v1/real-servers/drain", headers=headers, data=deep)
    assert response.status_code == 400, response.data[:200]
    huge = '{"virtual_server": "' + "x" * (2 << 20) + '", "real_server": "y"}'
    response = client.post("/api/v1/real-servers/drain", headers=headers, data=huge)
    assert response.status_code == 413, response.status_code
    assert response.is_json and "bytes" in response.get_json()["error"]
    long_name = "n" * 50_000                         # under the body limit
    response = client.post("/api/v1/real-servers/drain", headers=headers,
                           json={**BODY, "real_server": long_name})
    assert response.status_code == 404 and len(response.data) < 1000, len(response.data)


def test_an_out_of_range_argument_says_its_range(client):
    response = client.get("/api/v1/events?since=-1")
    assert response.status_code == 400
    assert "None" not in response.get_json()["error"], response.get_json()
    assert "at least 0" in response.get_json()["error"], response.get_json()


def test_healthz_verbose_gives_the_runtime_figures(client, director):
    """The soak bench's probe: greenlets, threads, fds and RSS of this very process."""
    import os

    from director import hub
    before = client.get("/healthz?verbose=1").get_json()
    assert before["ok"] is True and before["not_running"] == []
    runtime = before["runtime"]
    assert runtime["threads"] >= 1 and runtime["rss_bytes"] > 10 * 2**20
    assert runtime["fds"] == pytest.approx(len(os.listdir("/proc/self/fd")), abs=3)
    spares = [hub.spawn(lambda: None, name="spare") for _ in range(50)]   # not run yet
    assert client.get("/healthz?verbose=1").get_json()["runtime"]["greenlets"] >= \
        runtime["greenlets"] + 50
    hub.joinall(spares)
    director.is_healthy = False
    response = client.get("/healthz?verbose=1")
    assert response.status_code == 503 and response.get_json()["not_running"]
    assert client.get("/healthz").get_data(as_text=True).startswith("unhealthy")
