"""SMTP_CHECK: a 220 greeting, 250 to HELO, a line after QUIT (director/check/smtp.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .kind import Kind

if TYPE_CHECKING:
    from ...config.blocks.checkers import Vocabulary
    from ...config.schema import Kw


def _implementation() -> type:
    from ..smtp import SmtpCheck   # here, not above: -t reads the keywords without the checker
    return SmtpCheck


def _keywords(c: type[Vocabulary]) -> tuple[Kw, ...]:
    host = c.Block("host", "SmtpHost", header=c.no_header, keywords=c.CONNECTION)
    return (
        c.Kw("helo_name", c.Text("a host name")),
        c.Kw("host", host, repeat="append", field="hosts",
             deprecated="SMTP_CHECK 'host' blocks are deprecated in keepalived 2: write one "
                        "SMTP_CHECK per address; director checks every host block"),
    )


KINDS = (Kind("SMTP_CHECK", "SmtpCheck", _implementation, _keywords),)
