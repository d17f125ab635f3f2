"""The web face of a running director: dashboard, JSON API, Server-Sent Events, /metrics.

``create_app(director)`` builds the Flask app over anything that offers what daemon.Director
offers: ``snapshot()`` (a director.state.State), ``events``, ``command()``, ``not_running()``,
``router_id()`` and ``history()`` (the sparklines). The app reads States only; changes
(drain, restore, reload) go to the daemon's main greenlet as commands. It imports nothing of
director but the views (director.state), the errors and the hub
(tests/unit/test_imports.py). The daemon serves the app itself on ``--web``; wsgi.py exposes
the same app to another WSGI server.
"""

from __future__ import annotations

import functools
import secrets
from typing import Any

from flask import Flask, jsonify

from director import __version__
from director.errors import BodyTimeout
from metrics import Exposition

from . import bodies
from .admin import MAX_BODY, admin
from .api import STREAMS_DEFAULT, StreamSlots, api
from .dashboard import dashboard


def create_app(director: Any, admin_token: str | None = None,
               max_streams: int = STREAMS_DEFAULT) -> Flask:
    app = Flask(__name__, template_folder="templates", static_folder="static")
    app.config.update(
        DIRECTOR=director,
        ADMIN_TOKEN=admin_token,
        # Per process: a page served before a restart must fetch a fresh one.
        CSRF_TOKEN=secrets.token_urlsafe(32),
        METRICS=Exposition(director.snapshot, __version__),
        STREAMS=StreamSlots(max_streams),
        JSON_SORT_KEYS=False,
        MAX_CONTENT_LENGTH=MAX_BODY,          # 413 before a larger body is read
        SEND_FILE_MAX_AGE_DEFAULT=300,
    )
    app.json.sort_keys = False
    app.json.compact = True
    # each virtual and real server's JSON, kept between requests (web/bodies.py)
    app.config["STATE_FRAGMENTS"] = bodies.FragmentCache(
        functools.partial(app.json.dumps, separators=(",", ":")),
        short=app.json.ensure_ascii)
    app.register_blueprint(dashboard)
    app.register_blueprint(api)
    app.register_blueprint(admin)

    @app.errorhandler(BodyTimeout)
    def body_too_slow(error):
        # The daemon's server raises it when a declared body does not arrive in time
        # (director/webserver.py); it closes the connection after this answer.
        return jsonify(error=str(error)), 408

    @app.after_request
    def hardened(response):
        # The dashboard loads only its own assets: an injected <script> would not run.
        response.headers.setdefault(
            "Content-Security-Policy",
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
            "frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        return response

    return app
