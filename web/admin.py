"""Admin actions: drain / restore a real server, its runtime weight, its maintenance, reload
the configuration (or preview it: ``?dry_run=1``); and the peer directors' exchange of those
overrides.

Off unless the daemon was given an admin token (--admin-token-file): then every POST needs
the token (``Authorization: Bearer TOKEN``: 401 without it, 403 when wrong) and the CSRF
token the dashboard page carries (``X-CSRF-Token``: 403 when missing or wrong), and a
cross-site Origin is refused. A browser never sends the Authorization header by itself,
so a forged cross-site form has neither. Every action is logged and becomes an event.

The peers' exchange (POST /api/v1/overrides/sync, director/override_peers.py) is signed
instead: an HMAC of the body keyed by the same admin token, which a browser cannot make.
"""

from __future__ import annotations

import hmac
import json

from flask import Blueprint, current_app, jsonify, request

from director import hub
from director.errors import CommandError

admin = Blueprint("admin", __name__)

MAX_BODY = 64 * 1024        # bytes an admin request may carry (two names: a few hundred)
MAX_ERROR_CHARS = 300       # of an error that quotes the request


@admin.app_errorhandler(413)
def too_large(error):
    limit = request.max_content_length or MAX_BODY     # a peer's sync may carry more
    return jsonify(error=f"the body is larger than {limit} bytes"), 413


def _refusal():
    """None when the request may act, else the (response, status) refusing it."""
    token = current_app.config["ADMIN_TOKEN"]
    if token is None:
        return jsonify(error="read-only: the daemon runs without an admin token "
                             "(--admin-token-file)"), 403
    presented = request.headers.get("Authorization", "")
    if not presented.startswith("Bearer ") or not presented[7:].strip():
        response = jsonify(error="an admin token is required (Authorization: Bearer ...)")
        response.headers["WWW-Authenticate"] = 'Bearer realm="director"'
        return response, 401
    if not hmac.compare_digest(presented[7:].strip().encode(), token.encode()):
        return jsonify(error="wrong admin token"), 403
    csrf = request.headers.get("X-CSRF-Token", "")
    if not hmac.compare_digest(csrf.encode(), current_app.config["CSRF_TOKEN"].encode()):
        return jsonify(error="missing or wrong CSRF token (X-CSRF-Token)"), 403
    origin = request.headers.get("Origin")
    if origin is not None and origin.split("://", 1)[-1] != request.host:
        return jsonify(error=f"cross-site request from {origin[:100]}"), 403
    return None


def _actor() -> str:
    return request.remote_addr or "?"


def _run(name: str, **arguments):
    """The command, on the daemon's main greenlet; the caller has checked _refusal()."""
    try:
        result = current_app.config["DIRECTOR"].command(name, actor=_actor(), **arguments)
    except CommandError as exc:       # its text may quote what the client sent: bounded
        return jsonify(error=_bounded(str(exc))), 404
    except hub.Timeout:
        return jsonify(error="the daemon did not answer in time"), 503
    return jsonify(result)


@admin.post("/api/v1/reload")
def reload():
    """``?dry_run=1``: the preview of what the reload would change, nothing changed. Of the
    configured file only: a path from HTTP would let a token holder read any file the
    daemon can (its diagnostics quote lines); ``director ctl diff FILE`` is the way."""
    refused = _refusal()
    if refused is not None:
        return refused
    dry_run = request.args.get("dry_run", "")
    if dry_run not in ("", "0", "1", "true", "false"):
        return jsonify(error="dry_run is 1 or 0"), 400
    if set(request.args) - {"dry_run"}:
        return jsonify(error="only the configured file can be previewed over HTTP "
                             "(the one argument is dry_run)"), 400
    return _run("preview" if dry_run in ("1", "true") else "reload")


def _bounded(text: str, limit: int = MAX_ERROR_CHARS) -> str:
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} characters)"


def _server_from_body(extra: str | None = None, valid=None):
    """The body's fields (the two names, and ``extra`` when named, which ``valid`` accepts),
    or None for anything else. The size is bounded before (MAX_BODY, create_app); JSON
    nested deeper than the parser's recursion limit is refused like any other bad body,
    not a 500."""
    try:
        body = json.loads(request.get_data(cache=False) or b"null")
    except (ValueError, RecursionError):
        return None
    fields = {"virtual_server", "real_server"} | ({extra} if extra else set())
    if not isinstance(body, dict) or set(body) != fields \
            or not isinstance(body["virtual_server"], str) \
            or not isinstance(body["real_server"], str) \
            or (extra is not None and not valid(body[extra])):
        return None           # an unknown field too: a typo is said, not ignored
    return body


@admin.post("/api/v1/real-servers/drain")
def drain():
    return _drain(True)


@admin.post("/api/v1/real-servers/restore")
def restore():
    return _drain(False)


def _drain(drained: bool):
    refused = _refusal()
    if refused is not None:
        return refused
    names = _server_from_body()
    if names is None:
        return jsonify(error='the body must be JSON: {"virtual_server": NAME, '
                             '"real_server": NAME} and nothing else'), 400
    return _run("drain", virtual_server=names["virtual_server"],
                real_server=names["real_server"], drained=drained)


MAX_WEIGHT = 65535           # keepalived's weights


def _weight_ok(value) -> bool:
    return value is None or (isinstance(value, int) and not isinstance(value, bool)
                             and -1 <= value <= MAX_WEIGHT)


@admin.post("/api/v1/real-servers/weight")
def weight():
    """A runtime weight until the next reload; null or -1 puts the file's back."""
    refused = _refusal()
    if refused is not None:
        return refused
    body = _server_from_body("weight", _weight_ok)
    if body is None:
        return jsonify(error='the body must be JSON: {"virtual_server": NAME, "real_server": '
                             'NAME, "weight": N (or null / -1 to clear)} and nothing else'), 400
    return _run("weight", virtual_server=body["virtual_server"],
                real_server=body["real_server"], weight=body["weight"])


@admin.post("/api/v1/real-servers/maintenance")
def maintenance():
    """Out of the pool entirely while still checked (true), back (false)."""
    refused = _refusal()
    if refused is not None:
        return refused
    body = _server_from_body("maintenance", lambda value: isinstance(value, bool))
    if body is None:
        return jsonify(error='the body must be JSON: {"virtual_server": NAME, "real_server": '
                             'NAME, "maintenance": true|false} and nothing else'), 400
    return _run("maintenance", virtual_server=body["virtual_server"],
                real_server=body["real_server"], on=body["maintenance"])


PEER_MAX_BODY = 8 * 1024 * 1024     # a peer's whole store (director/override_peers.py)


@admin.post("/api/v1/overrides/sync")
def override_sync():
    """A peer director's overrides, signed (not the token and CSRF of people): merged, and
    ours answered, signed too. Checked and counted by the daemon (peer_message)."""
    request.max_content_length = PEER_MAX_BODY
    director = current_app.config["DIRECTOR"]
    try:
        status, body, headers = director.peer_message(
            request.get_data(cache=False), request.headers.get("X-Director-Signature"),
            _actor())
    except hub.Timeout:
        return jsonify(error="the daemon did not answer in time"), 503
    response = current_app.response_class(body, status=status,
                                          mimetype="application/json")
    response.headers.update(headers)
    return response
