"""BFD_CHECK: parsed, so that a keepalived configuration using it loads, and never run."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .kind import Kind

if TYPE_CHECKING:
    from ...config.blocks.checkers import Vocabulary
    from ...config.schema import Kw


def _keywords(c: type[Vocabulary]) -> tuple[Kw, ...]:
    return (
        c.Kw("name", c.Word("a bfd_instance name")),
        c.Kw("weight", c.Text("N [reverse]")),
        c.Kw("alpha", c.Flag()),
    )


# config.blocks.common.BFD, written out: the kinds load before the keyword tables
# (tests/unit/test_keyword_tables.py holds the two equal)
BFD = ("left out: BFD (RFC 5880) needs a BFD speaker, keepalived's being a process of its own; "
       "director has none (fast failure detection: VRRPv3 centisecond adverts, or FRR's bfdd "
       "beside director)")

KINDS = (Kind("BFD_CHECK", "BfdCheck", None, _keywords, shared=False, unsupported=BFD),)
