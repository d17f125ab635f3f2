"""The dashboard page. The HTML is a shell (Jinja escapes what it prints); the live content
is drawn by static/dashboard.js from /api/v1/state and the event stream, with
``textContent`` only, so a name from the configuration can never become markup."""

from __future__ import annotations

from flask import Blueprint, current_app, render_template

from director.state import EVENT_KINDS

dashboard = Blueprint("dashboard", __name__)


@dashboard.get("/")
def index():
    director = current_app.config["DIRECTOR"]
    return render_template(
        "index.html",
        router_id=director.router_id(),
        admin=current_app.config["ADMIN_TOKEN"] is not None,
        csrf_token=current_app.config["CSRF_TOKEN"],
        event_kinds=" ".join(EVENT_KINDS))
