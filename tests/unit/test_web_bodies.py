"""/api/v1/state streamed, filtered and paged; /metrics and /api/v1/state gzipped when the
client accepts it (web/bodies.py). Over the fake director of test_web_api.py."""

from __future__ import annotations

import gzip
import json
from dataclasses import replace

import pytest

from tests.unit.test_web_api import TOKEN, FakeDirector, contract_state
from web import create_app

NAMES = [f"10.0.0.{n}:80/TCP" for n in range(1, 6)]


class ManyServers(FakeDirector):
    """Five virtual servers (copies of the contract's one under other names)."""

    def snapshot(self, with_jobs=False):
        state = contract_state(with_jobs)
        (server,) = state.virtual_servers
        return replace(state, virtual_servers=tuple(replace(server, name=name)
                                                    for name in NAMES))


@pytest.fixture
def many():
    return create_app(ManyServers(), admin_token=TOKEN).test_client()


def names(response):
    assert response.status_code == 200, response.data
    return [server["name"] for server in response.get_json()["virtual_servers"]]


def test_the_streamed_state_is_what_jsonify_sent(many):
    """Byte for byte the document the endpoint sent before it streamed (jsonify of the
    whole dict), several chunks or one."""
    app = many.application
    body = ManyServers().snapshot().as_json()
    body["admin"] = True
    with app.app_context():
        expected = app.json.response(body).get_data()
    response = many.get("/api/v1/state")
    assert response.get_data() == expected
    assert response.mimetype == "application/json"
    assert "page" not in response.get_json()          # the unfiltered shape is unchanged


def test_state_chunks_in_batches_are_the_same_json(monkeypatch):
    from web import bodies
    monkeypatch.setattr(bodies, "BATCH", 10)           # a chunk per virtual server
    servers = ManyServers().snapshot().virtual_servers
    chunks = list(bodies.state_chunks({"a": 1}, servers, {"admin": False}, json.dumps))
    assert len(chunks) > len(servers)
    whole = json.loads(b"".join(chunks))
    assert whole["a"] == 1 and whole["admin"] is False
    assert [s["name"] for s in whole["virtual_servers"]] == NAMES
    empty = b"".join(bodies.state_chunks({}, (), {}, json.dumps))
    assert json.loads(empty) == {"virtual_servers": []}


def test_filter_by_virtual_server(many):
    response = many.get(f"/api/v1/state?virtual_server={NAMES[2]}")
    assert names(response) == [NAMES[2]]
    assert response.get_json()["page"] == {"offset": 0, "limit": 100000, "total": 1}
    both = many.get(f"/api/v1/state?virtual_server={NAMES[3]}&virtual_server={NAMES[0]}")
    assert names(both) == [NAMES[0], NAMES[3]]        # in the configuration's order
    body = both.get_json()
    assert body["vrrp"]["instances"] and body["admin"] is True   # the rest is all there


def test_paging(many):
    page = many.get("/api/v1/state?offset=1&limit=2")
    assert names(page) == NAMES[1:3]
    assert page.get_json()["page"] == {"offset": 1, "limit": 2, "total": 5}
    assert names(many.get("/api/v1/state?offset=4")) == NAMES[4:]
    assert names(many.get("/api/v1/state?offset=9")) == []
    assert names(many.get(f"/api/v1/state?virtual_server={NAMES[1]}&offset=1")) == []


@pytest.mark.parametrize("query", ["offset=-1", "offset=x", "limit=0", "limit=100001",
                                   "limit=1e3", "offset="])
def test_bad_paging_is_a_400(many, query):
    response = many.get(f"/api/v1/state?{query}")
    assert response.status_code == 400
    assert "must be" in response.get_json()["error"]


def test_an_unknown_virtual_server_is_a_404(many):
    response = many.get(f"/api/v1/state?virtual_server={NAMES[0]}&virtual_server=nope")
    assert response.status_code == 404
    assert "nope" in response.get_json()["error"]
    assert many.get("/api/v1/state?virtual_server=").status_code == 404


@pytest.mark.parametrize("path", ["/metrics", "/api/v1/state"])
def test_gzip_when_the_client_accepts_it(many, path):
    plain = many.get(path)
    assert "Content-Encoding" not in plain.headers
    assert plain.headers["Vary"] == "Accept-Encoding"
    packed = many.get(path, headers={"Accept-Encoding": "gzip, deflate"})
    assert packed.headers["Content-Encoding"] == "gzip"
    assert packed.headers["Vary"] == "Accept-Encoding"
    body = gzip.decompress(packed.get_data())
    if path == "/metrics":
        assert body == plain.get_data()
    else:
        assert json.loads(body) == plain.get_json()
    assert len(packed.get_data()) < len(plain.get_data())
    refused = many.get(path, headers={"Accept-Encoding": "gzip;q=0, identity"})
    assert "Content-Encoding" not in refused.headers


def test_the_same_body_gives_the_same_gzip_bytes(many):
    """No time in the gzip header: two scrapes of an unchanged state are identical."""
    first = many.get("/metrics", headers={"Accept-Encoding": "gzip"}).get_data()
    assert many.get("/metrics", headers={"Accept-Encoding": "gzip"}).get_data() == first


def test_gzip_bytes_in_slices(monkeypatch):
    from web import bodies
    monkeypatch.setattr(bodies, "SLICE", 7)
    data = b"director_checks_total 1\n" * 100
    assert gzip.decompress(bodies.gzip_bytes(data)) == data
    assert gzip.decompress(bodies.gzip_bytes(b"")) == b""


# === /metrics: each checker's lines kept while its counters do not change ====================

def with_job(state, **changes):
    (server,) = state.virtual_servers[:1]
    (real,) = server.real_servers
    (job,) = real.check.jobs
    check = replace(real.check, jobs=(replace(job, **changes),))
    return replace(state, virtual_servers=(
        replace(server, real_servers=(replace(real, check=check),)),))


def test_per_server_text_is_kept_until_a_checker_runs():
    from metrics.collector import LabelCache, per_server_text
    cache = LabelCache()
    state = contract_state(True)
    first = per_server_text(state, cache)
    assert per_server_text(state, cache) == first                 # no change: same text
    ran = with_job(state, ok=10, buckets=(0, 4, 5, 1) + (0,) * 9 + (1,), duration_sum=0.06)
    after = per_server_text(ran, cache)
    assert after != first
    assert after == per_server_text(ran, LabelCache())            # what a fresh cache writes
    assert 'result="success"} 10\n' in after
    assert 'le="0.005"} 9\n' in after and "_sum{" in after and "} 0.06\n" in after
    # only the sum changed (a check's duration rounds to the same bucket): written again
    summed = with_job(ran, duration_sum=0.07)
    assert "} 0.07\n" in per_server_text(summed, cache)
    failed = with_job(summed, failed=2)
    assert 'result="failure"} 2\n' in per_server_text(failed, cache)


class Changing(FakeDirector):
    def __init__(self):
        super().__init__()
        self.ok = 9

    def snapshot(self, with_jobs=False):
        state = contract_state(with_jobs)
        return with_job(state, ok=self.ok) if with_jobs else state


def test_a_scrape_after_a_check_differs_and_without_one_is_identical():
    director = Changing()
    client = create_app(director).test_client()
    first = client.get("/metrics").get_data()
    assert client.get("/metrics").get_data() == first
    director.ok = 11
    second = client.get("/metrics").get_data()
    assert second != first and b'result="success"} 11\n' in second
    assert client.get("/metrics").get_data() == second


def test_the_cache_is_bounded():
    from metrics.collector import LabelCache, per_server_text
    cache = LabelCache()
    state = contract_state(True)
    for n in range(600):                # each scrape a server under another name (reloads)
        renamed = with_job(state, real_server=f"10.0.{n // 250}.{n % 250}:80")
        per_server_text(renamed, cache)
    assert len(cache.histograms) < 600


# === the JSON of real servers kept between requests (FragmentCache, real_server_text) ===========

class Weight(int):
    pass


def real_views():
    """Real server views of every shape the short encoder writes, and some it leaves to json."""
    from director.state import CheckView, DrainView, LastCheck, RampView, Traffic
    (server,) = contract_state(True).virtual_servers
    (real,) = server.real_servers
    check = real.check
    hostile = 'a"b\\c\n\u00e9\u2603'
    usual = [
        real,
        replace(real, check=None, checker=None, weight=None, desired_weight=None, port=None,
                counters=None),
        replace(real, check=None, checker="TCP_CHECK"),
        replace(real, check=replace(check, last_check=None, up=False, drained=True)),
        replace(real, check=replace(check, last_check=LastCheck(False, 2.0, hostile, 1.5))),
        replace(real, name=hostile, address=hostile, checker=hostile,
                active_connections=3, inactive_connections=0,
                counters=Traffic(0, 2**70, 1, 2, 3)),
        replace(real, check=replace(check, last_check=LastCheck(True, 1e-07, None, 1e22,
                                                                  1790000000.5))),
    ]
    unusual = [
        replace(real, check=replace(check, last_check=LastCheck(True, float("nan"), None,
                                                                  1.0))),
        replace(real, drain=DrainView(1.0, 2.0, 3, False, None, None)),
        replace(real, ramp=RampView(1.0, 21.0, 20.0, 0.25)),
        replace(real, check=replace(check, agent={"reply": "up 50%"})),
        replace(real, weight=Weight(3)),            # a type json may write its own way
    ]
    return usual + [replace(real, weight=True)], unusual


def test_real_server_text_is_what_json_writes():
    """Byte for byte the app's dumps of as_json() (a key added to as_json() and not to the
    short encoder fails here); None where it leaves the work to json."""
    from web import bodies
    app = create_app(FakeDirector())
    dumps = app.config["STATE_FRAGMENTS"].dumps
    usual, unusual = real_views()
    for view in usual:
        assert bodies.real_server_text(view) == dumps(view.as_json()), view
    for view in unusual:
        assert bodies.real_server_text(view) is None, view


def test_fragments_kept_by_identity_and_never_stale():
    """A view given again is not encoded again; a new view (something changed) is, and the
    body is the whole document's JSON either way."""
    from web import bodies
    app = create_app(FakeDirector())
    cache = app.config["STATE_FRAGMENTS"]
    usual, unusual = real_views()
    (server,) = contract_state().virtual_servers
    servers = [replace(server, name=f"vs{n}", real_servers=(view,))
               for n, view in enumerate(usual + unusual)]

    def body(servers, cache=cache):
        walk = cache.walk()
        text = b"".join(bodies.state_chunks({"a": 1}, servers, {}, cache.dumps, walk))
        expected = cache.dumps({"a": 1, "virtual_servers": [s.as_json() for s in servers]})
        assert text == (expected + "\n").encode()
        return walk.encoded

    assert body(servers) == 2 * len(servers)        # each virtual server and its real one
    assert body(servers) == 0
    changed = replace(servers[3].real_servers[0], weight=7)
    servers[3] = replace(servers[3], real_servers=(changed,))
    assert body(servers) == 2
    assert body(servers[2:5]) == 0                  # a page: found, nothing dropped
    assert body(servers) == 0
    # kept on the views themselves (director/state.py ENCODED), nothing in the cache
    assert all(s.json_text is not None and s.real_servers[0].json_text is not None
               for s in servers)
    assert vars(cache).keys() == {"dumps", "short"}
    # an app that encodes its own way neither uses nor keeps the bytes on the views
    other = bodies.FragmentCache(cache.dumps, short=False)
    assert body(servers, other) == body(servers, other) == 2 * len(servers)
    assert body(servers) == 0
