"""Operator overrides (director/overrides.py, director/override_peers.py): the merge rules
peers converge by, the state file (round trip, drained.json's migration, a broken file),
their effect on the pools, the peer messages' signature and the override_peers keyword."""

from __future__ import annotations

import itertools
import json
import random
from pathlib import Path
from types import SimpleNamespace

import pytest

from director.check.service import RealServerState
from director.config import load_config
from director.config.render import config_json
from director.lb.pool import Live, live_weight, weight_of
from director.override_peers import Peer, PeerSync, message, parse_message, sign, verify
from director.overrides import (FILE, BadEntry, Entry, Overrides, OverrideStore, newer,
                                parse_entries)
from director.dumps import write_state_file

VS, RS = "192.0.2.10:80/TCP", "10.0.0.1:80"


# -- merge rules --------------------------------------------------------------------------------

def test_a_newer_entry_wins_and_an_older_one_never_overwrites():
    a, b = OverrideStore("a"), OverrideStore("b")
    drained = a.set(VS, RS, "drain", True, "ops", 1.0)
    assert b.merge([drained]) == [drained]
    restored = b.set(VS, RS, "drain", False, "ops", 2.0)       # b saw a's: counter above it
    assert restored.counter > drained.counter
    assert a.merge([restored]) == [restored]
    assert a.merge([drained]) == []                            # a late (replayed) message
    assert a.value(VS, RS, "drain") is False and b.value(VS, RS, "drain") is False


def test_a_director_that_lost_its_state_still_wins_with_a_later_write():
    old = OverrideStore("b")
    drained = old.set(VS, RS, "drain", True, "ops", 1_700_000_000.0)
    wiped = OverrideStore("a")                               # counter 0, has heard nothing
    restored = wiped.set(VS, RS, "drain", False, "ops", 1_700_000_060.0)
    assert newer(restored, drained)
    old.merge([restored])
    assert old.value(VS, RS, "drain") is False


def test_equal_counters_are_broken_by_origin_the_same_way_everywhere():
    x = Entry(VS, RS, "weight", 5, 3, "director_a", "", 0.0)
    y = Entry(VS, RS, "weight", 7, 3, "director_b", "", 0.0)
    for first, second in ((x, y), (y, x)):
        store = OverrideStore("c")
        store.merge([first])
        store.merge([second])
        assert store.value(VS, RS, "weight") == 7


def test_any_order_of_delivery_ends_in_the_same_store():
    random.seed(16)
    writers = [OverrideStore(name) for name in "abc"]
    written = []
    for step in range(30):
        writer = random.choice(writers)
        if step % 4 == 0 and written:                      # some writers saw others first
            writer.merge(random.sample(written, len(written) // 2))
        kind = random.choice(["drain", "weight", "maintenance"])
        value = random.randint(0, 9) if kind == "weight" else random.random() < 0.5
        written.append(writer.set(VS, random.choice([RS, "10.0.0.2:80"]), kind, value, "",
                                  float(step)))
    results = set()
    for order in itertools.islice(itertools.permutations(written), 0, 200, 40):
        store = OverrideStore("z")
        store.merge(order)
        results.add(tuple(sorted((key, entry.version) for key, entry in store.entries.items())))
    store = OverrideStore("z")
    store.merge(reversed(written))
    results.add(tuple(sorted((key, entry.version) for key, entry in store.entries.items())))
    assert len(results) == 1


def test_kinds_are_separate_keys():
    a, b = OverrideStore("a"), OverrideStore("b")
    drain = a.set(VS, RS, "drain", True, "", 0.0)
    weight = b.set(VS, RS, "weight", 4, "", 0.0)
    a.merge([weight])
    b.merge([drain])
    assert {e.kind for e in a.active(VS, RS)} == {e.kind for e in b.active(VS, RS)} == \
        {"drain", "weight"}


@pytest.mark.parametrize("item", [
    "x", [VS, RS, "drain", True, 1, "a", ""],                       # 7 items
    [VS, RS, "freeze", True, 1, "a", "", 0], [VS, RS, "drain", 1, 1, "a", "", 0],
    [VS, RS, "weight", 70000, 1, "a", "", 0], [VS, RS, "weight", True, 1, "a", "", 0],
    [VS, RS, "weight", -1, 1, "a", "", 0], [VS, RS, "drain", True, 0, "a", "", 0],
    [VS, RS, "drain", True, 2 ** 60, "a", "", 0], [VS, RS, "drain", True, "1", "a", "", 0],
    [VS * 50, RS, "drain", True, 1, "a", "", 0], [VS, RS, "drain", True, 1, None, "", 0],
    [VS, RS, "drain", True, 1, "a", "", "now"]])
def test_entries_that_are_not_are_refused(item):
    with pytest.raises(BadEntry):
        Entry.from_list(item)
    good, bad = parse_entries([item, [VS, RS, "weight", None, 1, "a", "", 0]])
    assert (len(good), bad) == (1, 1)


def test_a_message_too_long_or_not_a_list_is_refused_whole():
    with pytest.raises(BadEntry):
        parse_entries({"a": 1})
    with pytest.raises(BadEntry):
        parse_entries([None] * 100_001)


# -- the state file ------------------------------------------------------------------------------

def overrides(tmp_path, origin="a") -> Overrides:
    return Overrides(str(tmp_path), origin, lambda name, lines: write_state_file(
        str(tmp_path), name, lines))


def test_the_file_round_trips_entries_and_the_counter(tmp_path):
    first = overrides(tmp_path)
    first.store.set(VS, RS, "drain", True, "10.9.9.9", 1.5)
    first.store.set(VS, RS, "weight", 3, "10.9.9.9", 2.5)
    first.store.merge([Entry(VS, "10.0.0.2:80", "maintenance", True, 4000, "b", "x", 3.0)])
    assert first.save()
    again = overrides(tmp_path)
    again.load()
    assert again.store.entries == first.store.entries
    assert again.store.set(VS, RS, "drain", False, "", 0.0).counter == 4001   # past all seen


def test_drained_json_is_migrated_once(tmp_path):
    (tmp_path / "drained.json").write_text(json.dumps([[VS, RS], ["bad"], 7]))
    store = overrides(tmp_path)
    store.load()
    (entry,) = store.store.entries.values()
    assert (entry.key, entry.value, entry.origin) == ((VS, RS, "drain"), True, "a")
    assert "drained.json" in entry.actor
    saved = json.loads((tmp_path / FILE).read_text())
    assert saved["entries"] == [entry.as_list()]
    (tmp_path / "drained.json").write_text("[]")       # read no more once overrides.json is
    again = overrides(tmp_path)
    again.load()
    assert again.store.value(VS, RS, "drain") is True


def test_a_broken_file_is_said_and_left_alone(tmp_path, caplog):
    (tmp_path / FILE).write_text("{not json")
    store = overrides(tmp_path)
    store.load()
    assert store.store.entries == {}
    assert "overrides.unreadable" in caplog.text
    assert (tmp_path / FILE).read_text() == "{not json"
    (tmp_path / FILE).write_text(json.dumps({"format": 1, "entries": [
        [VS, RS, "drain", True, 1, "a", "", 0], ["bad"]]}))
    store.load()
    assert store.store.value(VS, RS, "drain") is True
    assert "overrides.bad_entries" in caplog.text


# -- the effect on the pools ---------------------------------------------------------------------

def test_weights_drain_and_maintenance_in_the_pool():
    real = SimpleNamespace(weight=2)
    assert weight_of(real, Live(weight_override=5)) == 5
    assert weight_of(real, Live(weight=3, weight_override=5)) == 5     # beats a script's
    assert weight_of(real, Live(drained=True, weight_override=5)) == 0
    assert weight_of(real, Live(weight=3)) == 3
    virtual = SimpleNamespace(real_servers=[SimpleNamespace(weight=2), SimpleNamespace(weight=2)])
    lives = iter([Live(), Live(maintenance=True)])
    assert live_weight(virtual, lambda real: next(lives)) == 2


def checks_with(*names):
    states = [RealServerState(None, None, (VS, name)) for name in names]
    by_name = {state.name: state for state in states}
    return SimpleNamespace(real_servers=states, find=lambda v, r: by_name.get((v, r)))


def test_apply_puts_the_values_on_the_checked_servers_and_says_when_a_pool_changes(tmp_path):
    store = overrides(tmp_path)
    checks = checks_with(RS, "10.0.0.2:80")
    state, changed, saved = store.set(checks, VS, RS, "weight", 7, "ops")
    assert changed and saved and state.weight_override == 7
    assert [e.kind for e in state.overrides] == ["weight"]
    assert not store.apply(checks)                               # nothing new
    store.set(checks, VS, RS, "maintenance", True, "ops")
    assert state.maintenance and {e.kind for e in state.overrides} == {"weight", "maintenance"}
    with pytest.raises(Exception, match="no real server"):
        store.set(checks, VS, "10.0.0.9:80", "drain", True, "ops")


def test_a_reload_clears_weights_with_entries_that_reach_the_peers(tmp_path):
    here, peer = overrides(tmp_path / "a", "a"), OverrideStore("b")
    checks = checks_with(RS)
    here.set(checks, VS, RS, "weight", 7, "ops")
    here.set(checks, VS, RS, "drain", True, "ops")
    peer.merge(here.store.entries.values())
    pushed = []
    here.listeners.append(pushed.append)
    cleared = here.clear_weights(checks)
    assert [entry.value for entry in cleared] == [None] and pushed == [cleared]
    assert checks.real_servers[0].weight_override is None and checks.real_servers[0].drained
    peer.merge(cleared)
    assert peer.value(VS, RS, "weight") is None and peer.value(VS, RS, "drain") is True
    assert here.clear_weights(checks) == []                    # nothing left to clear


def test_a_peers_entries_for_a_server_not_here_are_kept_for_later(tmp_path):
    here = overrides(tmp_path)
    entry = Entry(VS, "10.0.0.5:80", "drain", True, 3, "b", "", 0.0)
    taken, changed = here.merge(checks_with(RS), [entry], "b")
    assert taken == [entry] and not changed
    assert here.apply(checks_with("10.0.0.5:80"))               # a reload brings it


# -- the peers' messages -------------------------------------------------------------------------

def test_signatures_and_received_messages():
    merged = []

    def command(name, **arguments):
        merged.append((name, arguments))
        return {"entries": [[VS, RS, "drain", True, 9, "a", "", 0]]}

    sync = PeerSync("a", "token", lambda: [], lambda *args: None)
    body = message("b", [[VS, RS, "weight", 4, 2, "b", "ops", 1.0], ["junk"]])
    assert sync.receive(body, sign("other", body), "10.0.0.2", command)[0] == 401
    assert sync.receive(body, None, "10.0.0.2", command)[0] == 401
    assert sync.receive(b"[1]", sign("token", b"[1]"), "10.0.0.2", command)[0] == 400
    assert sync.receive(b"{", sign("token", b"{"), "10.0.0.2", command)[0] == 400
    assert merged == []
    status, reply, headers = sync.receive(body, sign("token", body), "10.0.0.2", command)
    assert status == 200 and verify("token", reply, headers["X-Director-Signature"])
    assert parse_message(reply)[0] == "a"
    (name, arguments), = merged
    assert name == "override_sync" and arguments["bad"] == 1
    assert [e.value for e in arguments["entries"]] == [4]
    assert sync.dropped == {"unauthenticated": 2, "malformed": 2, "too_large": 0,
                            "bad_entry": 0}
    off = PeerSync("a", None, lambda: [], lambda *args: None)
    assert off.receive(body, sign("token", body), "x", command)[0] == 403


# -- the keyword ---------------------------------------------------------------------------------

def load_text(tmp_path, text):
    path = tmp_path / "keepalived.conf"
    path.write_text(text)
    return load_config(str(path), config_id="test", interface_exists=None)


def test_override_peers_keyword(tmp_path):
    result = load_text(tmp_path, "override_peers {\n    http://192.0.2.2:8080/\n"
                                 "    https://[2001:db8::2]:8443\n}\n")
    assert result.ok, [str(d) for d in result.diagnostics]
    assert result.config.override_peers == ("http://192.0.2.2:8080",
                                            "https://[2001:db8::2]:8443")
    assert config_json(result.config, "r")["override_peers"] == list(
        result.config.override_peers)
    assert "override_peers" not in config_json(load_text(tmp_path, "").config, "r")


@pytest.mark.parametrize("line", ["192.0.2.2:8080", "ftp://192.0.2.2:21", "http://192.0.2.2",
                                  "http://192.0.2.2:8080/api", "http://u@192.0.2.2:8080",
                                  "http://192.0.2.2:99999", "http://a:1 http://b:2"])
def test_bad_override_peers_are_errors_at_their_line(tmp_path, line):
    result = load_text(tmp_path, f"override_peers {{\n    {line}\n}}\n")
    assert not result.ok
    assert [(d.location.line, d.severity) for d in result.diagnostics] == [(2, "error")]


# -- the outgoing exchange, against a stand-in peer ------------------------------------

class StandInPeer:
    """An HTTP server on localhost answering each sync with ``reply(body) -> (status, body,
    signature)``; it records what it was sent."""

    def __init__(self, reply, tls=None):
        import http.server
        import ssl
        import threading
        received = self.received = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.append((self.path, body, self.headers["X-Director-Signature"]))
                status, out, signature = reply(body)
                self.send_response(status)
                if signature:
                    self.send_header("X-Director-Signature", signature)
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def log_message(self, *args):
                pass

        self.server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        if tls is not None:                              # (certificate, key)
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*map(str, tls))
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
            self.url = "https" + self.url[4:]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def test_an_exchange_merges_a_signed_reply_and_counts_what_is_wrong():
    theirs = message("b", [[VS, RS, "weight", 4, 7, "b", "ops", 1.0]])
    replies = iter([(200, theirs, sign("token", theirs)),
                    (200, theirs, sign("other", theirs)),          # not our token
                    (200, b"[1]", sign("token", b"[1]")),           # not a message
                    (401, b'{"error": "no"}', None),                # they refuse ours
                    (200, theirs, sign("token", theirs))])
    peer = StandInPeer(lambda body: next(replies))
    merged = []
    ours = [[VS, RS, "drain", True, 3, "a", "ops", 0.5]]
    sync = PeerSync("a", "token", lambda: ours, lambda *args: merged.append(args))
    try:
        sync.peers = {peer.url: Peer(peer.url)}       # not configure(): no greenlet here
        state = sync.peers[peer.url]
        sync._exchange(state)
        path, body, signature = peer.received[0]
        assert path == "/api/v1/overrides/sync" and verify("token", body, signature)
        assert parse_message(body)[1][0].as_list() == ours[0]
        assert [args[0][0].value for args in merged] == [4] and state.syncs == 1
        assert state.last_error is None and state.failures == 0
        backoffs = []
        for _ in range(3):
            sync._exchange(state)
            backoffs.append(state.backoff)
        assert len(merged) == 1 and state.failures == 3
        assert backoffs == [2.0, 4.0, 8.0]                 # doubles, up to BACKOFF_MAX
        assert "HTTP 401" in state.last_error
        assert sync.dropped["unauthenticated"] == 1 and sync.dropped["malformed"] == 1
        sync._exchange(state)                              # back: errors cleared, backoff too
        assert state.last_error is None and state.backoff == 1.0 and len(merged) == 2
        assert sync.view(OverrideStore("a")).peers[0].failures == 3
    finally:
        peer.close()
    dead = peer.url                                        # nothing listens there now
    state = sync.peers[dead]
    sync._exchange(state)
    assert state.failures == 4 and state.last_error


# -- the daemon's commands ----------------------------------------------------------------------

@pytest.fixture
def daemon(tmp_path):
    from director.daemon import Director
    path = tmp_path / "keepalived.conf"
    path.write_text("global_defs {\n    router_id here\n}\n")
    config = load_config(str(path), config_id="t", interface_exists=None).config
    options = SimpleNamespace(use_file=str(path), vrrp=False, check=False, pid=None,
                              state_dir=str(tmp_path / "state"))
    director = Director(config, options, "t")
    director.checks = checks_with(RS)
    director.lb = SimpleNamespace(changed=SimpleNamespace(set=lambda: kicks.append(1)))
    kicks = director.kicks = []
    return director


def test_the_commands_keep_the_drain_answer_and_wake_the_load_balancer(daemon):
    state = daemon.checks.real_servers[0]
    assert daemon.do_drain(VS, RS, actor="ops") == {
        "virtual_server": VS, "real_server": RS, "drained": True, "saved": True}
    assert daemon.do_restore(VS, RS)["drained"] is False
    assert daemon.do_weight(VS, RS, "3", actor="ctl")["weight_override"] == 3   # from argv
    assert state.weight_override == 3
    assert daemon.do_weight(VS, RS, -1)["weight_override"] is None
    assert daemon.do_maintenance(VS, RS, True)["maintenance"] is True
    assert len(daemon.kicks) == 5
    for bad in ("x", 1.5, True, 70000, -2):
        with pytest.raises(Exception, match="weight"):
            daemon.do_weight(VS, RS, bad)
    admin = [e.fields for e in daemon.events.since(0) if e.kind == "admin"]
    assert [(e["action"], e.get("value")) for e in admin] == [
        ("drain", None), ("restore", None), ("weight", 3), ("weight", None),
        ("maintenance", True)]
    assert admin[0]["actor"] == "ops" and admin[2]["actor"] == "ctl"
    saved = json.loads((Path(daemon.options.state_dir) / FILE).read_text())
    assert {entry[2] for entry in saved["entries"]} == {"drain", "weight", "maintenance"}


def test_a_successful_reload_clears_the_runtime_weights(daemon):
    daemon.do_weight(VS, RS, 9)
    daemon._reloaded("failure", ["bad"])
    assert daemon.checks.real_servers[0].weight_override == 9
    daemon._reloaded("success", [], "unchanged")
    assert daemon.checks.real_servers[0].weight_override is None
    assert daemon.overrides.store.get(VS, RS, "weight").actor == "reload"


def test_a_peers_entries_merge_on_the_main_greenlet_and_ours_are_answered(daemon):
    daemon.do_drain(VS, RS)
    theirs = Entry(VS, RS, "weight", 6, 50, "there", "ops", 1.0)
    answer = daemon.do_override_sync([theirs], 2, "there@10.0.0.2")
    assert answer["taken"] == 1 and len(answer["entries"]) == 2
    assert daemon.checks.real_servers[0].weight_override == 6
    assert daemon.override_peers.dropped["bad_entry"] == 2
    assert daemon.do_override_sync([theirs], 0, "again")["taken"] == 0   # nothing new


def test_an_https_peer_is_checked_against_override_peers_ca(tmp_path):
    from tests.tls import make_ca_and_server
    ca, cert, key = make_ca_and_server(tmp_path)
    theirs = message("b", [[VS, RS, "maintenance", True, 7, "b", "ops", 1.0]])
    peer = StandInPeer(lambda body: (200, theirs, sign("token", theirs)), tls=(cert, key))
    merged = []
    sync = PeerSync("a", "token", lambda: [], lambda *args: merged.append(args))
    state = Peer(peer.url)
    try:
        # configure() with no peer starts no greenlet; the peer is put in by hand
        for ca_file, error in ((None, "CERTIFICATE_VERIFY_FAILED"),     # the system's CAs
                               (tmp_path / "missing.pem", "override_peers_ca"),
                               (ca, None)):
            sync.configure((), None if ca_file is None else str(ca_file))
            sync.peers = {peer.url: state}
            sync._exchange(state)
            if error is None:
                assert state.last_error is None and len(merged) == 1
            else:
                assert error in state.last_error and not merged
    finally:
        peer.close()
