"""Exceptions shared by the daemon and its faces (web, ctl), here so that neither imports
the other for them."""

from __future__ import annotations


class CommandError(Exception):
    """A command from the web API that cannot be done (unknown server, ...)."""
