"""Read-only endpoints: /api/v1/state, /api/v1/events, /api/v1/stream (SSE),
/api/v1/history, /healthz (``?verbose=1``: JSON with the process's runtime figures) and
/metrics."""

from __future__ import annotations

import json
from typing import Iterator

from flask import Blueprint, Response, current_app, jsonify, request

from director import hub
from director.state import REFUSED_KEY
from metrics import CONTENT_TYPE

from . import bodies

api = Blueprint("api", __name__)

STREAMS_DEFAULT = 64        # open streams (create_app's max_streams; the daemon sizes it)
KEEPALIVE = 15.0            # seconds between SSE comments on a quiet stream (proxies close
                            # idle connections; the browser notices a dead one)
EVENTS_LIMIT = 1000
PAGE_LIMIT = 100_000        # virtual servers in one /api/v1/state page


class StreamSlots:
    """How many /api/v1/stream responses are open, and how many may be: a stream lives as
    long as its browser tab, and without a cap they could take every connection."""

    RETRY_AFTER = 10        # seconds a refused client is told to wait

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.open = 0

    def take(self) -> bool:
        if self.open >= self.limit:
            return False
        self.open += 1
        return True

    def give_back(self) -> None:
        self.open -= 1


def _director():
    return current_app.config["DIRECTOR"]


def _int_arg(name: str, default: int, low: int = 0, high: int | None = None) -> int:
    text = request.args.get(name)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        raise BadRequest(f"{name} must be an integer, got {text[:40]!r}") from None
    if value < low or (high is not None and value > high):
        raise BadRequest(f"{name} must be between {low} and {high}" if high is not None
                         else f"{name} must be at least {low}")
    return value


class BadRequest(Exception):
    pass


@api.errorhandler(BadRequest)
def bad_request(error):
    return jsonify(error=str(error)), 400


@api.get("/api/v1/state")
def state():
    """The live state, streamed (web/bodies.py). ``?virtual_server=NAME`` (repeatable) keeps
    those virtual servers; ``?offset=&limit=`` a page of them (in the configuration's order).
    Either adds ``page``: {offset, limit, total} (total: the virtual servers that matched)."""
    names = request.args.getlist("virtual_server")
    paged = bool(names) or "offset" in request.args or "limit" in request.args
    offset = _int_arg("offset", 0)
    limit = _int_arg("limit", PAGE_LIMIT, 1, PAGE_LIMIT)
    snapshot = _director().snapshot()
    servers = snapshot.virtual_servers
    if names:
        known = {server.name for server in servers}
        missing = [name for name in names if name not in known]
        if missing:
            return jsonify(error=f"no virtual server {missing[0][:100]!r}"), 404
        wanted = set(names)
        servers = tuple(server for server in servers if server.name in wanted)
    tail: dict = {"admin": current_app.config["ADMIN_TOKEN"] is not None}
    if paged:
        tail["page"] = {"offset": offset, "limit": limit, "total": len(servers)}
        servers = servers[offset:offset + limit]
    fragments: bodies.FragmentCache = current_app.config["STATE_FRAGMENTS"]
    chunks = bodies.state_chunks(snapshot.head_json(), servers, tail, fragments.dumps,
                                 fragments.walk())
    headers = {"Vary": "Accept-Encoding"}
    if bodies.accepts_gzip(request.accept_encodings):
        chunks = bodies.gzip_stream(chunks)
        headers["Content-Encoding"] = "gzip"
    return Response(chunks, mimetype="application/json", headers=headers)


@api.get("/api/v1/events")
def events():
    since = _int_arg("since", 0)
    limit = _int_arg("limit", EVENTS_LIMIT, 1, EVENTS_LIMIT)
    return jsonify([event.as_json() for event in _director().events.since(since, limit)])


@api.get("/api/v1/history")
def history():
    """Recent check durations of one virtual server's real servers (the sparklines):
    {real server: [[seconds, ok], ...]}, oldest first."""
    name = request.args.get("virtual_server", "")
    found = _director().history(name)
    if found is None:
        return jsonify(error=f"no virtual server {name[:100]!r}"), 404
    return jsonify(found)


@api.get("/api/v1/stream")
def stream():
    """Each new event as ``id``/``event``/``data``; a client reconnecting with Last-Event-ID
    (or asking ``?since=ID``) first gets what it missed from the ring."""
    director = _director()
    slots: StreamSlots = current_app.config["STREAMS"]
    if not slots.take():
        request.environ[REFUSED_KEY] = "too_many_streams"
        response = jsonify(error=f"{slots.limit} event streams are open already; "
                                 "try again later")
        response.headers["Retry-After"] = str(StreamSlots.RETRY_AFTER)
        return response, 503
    resume = request.headers.get("Last-Event-ID", request.args.get("since"))
    try:
        last_id = int(resume) if resume is not None else None
    except ValueError:
        last_id = None
    subscription = director.events.subscribe()
    missed = director.events.since(last_id, EVENTS_LIMIT) if last_id is not None else []

    def frames() -> Iterator[str]:
        yield "retry: 2000\n\n"
        for event in missed:
            yield _frame(event)
        # A subscriber that falls SUBSCRIBER_QUEUE events behind is dropped by the event
        # log (counted) and its stream ends; one that stops reading is cut by the server.
        while not subscription.dropped:
            event = subscription.get(KEEPALIVE)
            yield ": keep-alive\n\n" if event is None else _frame(event)

    def closed() -> None:
        # On close, not in the generator's finally: a generator the server never started
        # (the client left before the first byte) runs no finally.
        subscription.close()
        slots.give_back()

    response = Response(frames(), mimetype="text/event-stream",
                        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})
    response.call_on_close(closed)
    return response


def _frame(event) -> str:
    return f"id: {event.id}\nevent: {event.kind}\ndata: {json.dumps(event.as_json())}\n\n"


@api.get("/healthz")
def healthz():
    problems = _director().not_running()
    if request.args.get("verbose") == "1":
        # For a soak run or a curious operator: the process's own figures (hub.runtime),
        # computed only here so that the plain probe stays as cheap as it was.
        return jsonify(ok=not problems, not_running=problems,
                       runtime=hub.runtime()), 503 if problems else 200
    if not problems:
        return Response("ok\n", mimetype="text/plain")
    return Response("unhealthy: not running: " + ", ".join(problems) + "\n", 503,
                    mimetype="text/plain")


@api.get("/metrics")
def metrics():
    body = current_app.config["METRICS"].render()
    headers = {"Vary": "Accept-Encoding"}
    if len(body) >= bodies.GZIP_MIN and bodies.accepts_gzip(request.accept_encodings):
        body = bodies.gzip_bytes(body)
        headers["Content-Encoding"] = "gzip"
    return Response(body, content_type=CONTENT_TYPE, headers=headers)
