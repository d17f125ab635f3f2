"""gevent's monkey-patching, done once before anything imports socket, subprocess or
threading (``python -m director``, ``wsgi.py``).

``gevent.monkey.patch_all()`` announces each module it patches to plugins registered as
package entry points and looks them up each time: it imports importlib.metadata (with the
email package, zipfile, csv, ...) and scans every installed distribution's metadata 25 times.
That was half the cost of patching, a sixth of a second of CPU on the path from exec to the
first advert (issue 17, profiled). The only such plugin installed is gevent's own
``_subscribe_signal_os``, which warns when ``signal`` is patched without ``os``: never the
case here (tests/unit/test_patching.py fails should another appear). So the announcements go
to the in-process subscribers only (``gevent.events.notify``), as gevent does without
plugins."""

from __future__ import annotations


def patch_all() -> None:
    import gevent.events
    from gevent import monkey
    if monkey.is_module_patched("socket"):
        return
    with_plugins = gevent.events.notify_and_call_entry_points
    gevent.events.notify_and_call_entry_points = gevent.events.notify
    try:
        monkey.patch_all()
    finally:
        gevent.events.notify_and_call_entry_points = with_plugins
