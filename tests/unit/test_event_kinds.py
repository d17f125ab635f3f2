"""The kinds the daemon publishes are the kinds the dashboard listens to: director/state.py
EVENT_KINDS is the one list; the page carries it to dashboard.js (an SSE frame named by a kind the
browser does not listen to is silently lost: four kinds were, with a copy in the script)."""

from __future__ import annotations

import re
from pathlib import Path

from director.state import EVENT_KINDS as KINDS

ROOT = Path(__file__).resolve().parents[2]
# events.add("kind", ...) and the engines' on_event("kind", ...) callbacks
PUBLISHED = re.compile(r'(?:events\.add|on_event)\(\s*"([a-z_.]+)"')


def published_kinds() -> set[str]:
    found = set()
    for path in [*ROOT.joinpath("director").rglob("*.py"), *ROOT.joinpath("web").rglob("*.py")]:
        found |= set(PUBLISHED.findall(path.read_text()))
    return found


def test_every_published_kind_is_listed():
    found = published_kinds()
    assert {"admin", "reload", "bgp", "lb_error", "drain_complete"} <= found   # the scan works
    assert found <= set(KINDS), sorted(found - set(KINDS))


def test_the_dashboard_reads_the_list_from_its_page():
    script = ROOT.joinpath("web/static/dashboard.js").read_text()
    assert 'meta[name="event-kinds"]' in script
    assert "EVENT_KINDS = [" not in script          # no second copy to drift


def test_the_page_carries_every_kind():
    from web import create_app

    class Stub:
        snapshot = None

        def router_id(self):
            return "r1"

    app = create_app(Stub())
    page = app.test_client().get("/").get_data(as_text=True)
    meta = re.search(r'<meta name="event-kinds" content="([^"]*)">', page)
    assert meta is not None and meta.group(1).split(" ") == list(KINDS)
