"""Exceptions shared by the daemon and its faces (web, ctl), here so that neither imports
the other for them."""

from __future__ import annotations


class CommandError(Exception):
    """A command from the web API that cannot be done (unknown server, ...)."""


class BodyTimeout(Exception):
    """A request body that did not arrive in time: the daemon's web server raises it from
    a read (director/webserver.py), the app answers 408. Not an OSError, which werkzeug
    would turn into a 400 'client disconnected'."""
