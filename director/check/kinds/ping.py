"""PING_CHECK (ICMP_CHECK): an echo reply within connect_timeout (director/check/ping.py)."""

from __future__ import annotations

from .kind import Kind


def _implementation() -> type:
    from ..ping import PingCheck   # here, not above: -t reads the keywords without the checker
    return PingCheck


KINDS = (Kind("PING_CHECK", "PingCheck", _implementation, aliases=("ICMP_CHECK",)),)
