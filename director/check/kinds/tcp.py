"""TCP_CHECK: a connection that completes is a healthy server (director/check/tcp.py)."""

from __future__ import annotations

from .kind import Kind


def _implementation() -> type:
    from ..tcp import TcpCheck     # here, not above: -t reads the keywords without the checker
    return TcpCheck


KINDS = (Kind("TCP_CHECK", "TcpCheck", _implementation),)
