"""UDP_CHECK: one datagram; judged by the reply, or by an ICMP unreachable
(director/check/udp.py)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from .kind import Kind

if TYPE_CHECKING:
    from ...config.blocks.checkers import Vocabulary
    from ...config.schema import Kw


def _implementation() -> type:
    from ..udp import UdpCheck     # here, not above: -t reads the keywords without the checker
    return UdpCheck


def _keywords(c: type[Vocabulary]) -> tuple[Kw, ...]:
    def hex_bytes(args, ctx, wildcards: bool = False):
        """Hex bytes, spaces allowed between them; ``require_reply`` also takes X as a
        nibble that matches anything."""
        text = "".join(str(a) for a in args)
        allowed = r"[0-9a-fA-FxX]*" if wildcards else r"[0-9a-fA-F]*"
        if not text or len(text) % 2 or not re.fullmatch(allowed, text):
            raise c.Invalid(f"expects an even number of hex digits, got '{' '.join(args)}'")
        return text.lower()

    def reply(args, ctx):
        return hex_bytes(args, ctx, wildcards=True) if args else True

    return (
        c.Kw("payload", c.Custom(hex_bytes, "hex bytes")),
        c.Kw("require_reply", c.Custom(reply, "[hex bytes, X matches any nibble]")),
        c.Kw("min_reply_length", c.Int(0, 65535)),
        c.Kw("max_reply_length", c.Int(0, 65535)),
    )


KINDS = (Kind("UDP_CHECK", "UdpCheck", _implementation, _keywords),)
