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


KINDS = (Kind("BFD_CHECK", "BfdCheck", None, _keywords, shared=False,
              unsupported="BFD is not implemented by director"),)
