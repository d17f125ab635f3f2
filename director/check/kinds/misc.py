"""MISC_CHECK: a script's exit code is the server's health, and with misc_dynamic its weight
(director/check/misc.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .kind import Kind

if TYPE_CHECKING:
    from ...config.blocks.checkers import Vocabulary
    from ...config.schema import Kw


def _implementation() -> type:
    from ..misc import MiscCheck   # here, not above: -t reads the keywords without the checker
    return MiscCheck


def _keywords(c: type[Vocabulary]) -> tuple[Kw, ...]:
    return (
        c.Kw("misc_path", c.Script(with_user=False)),
        c.Kw("misc_timeout", c.Seconds(0, 4294), doc="Default: delay_loop."),
        c.Kw("misc_dynamic", c.Flag(), doc="Exit code 2-255 sets the weight to code - 2."),
        c.Kw("user", c.Text("USER [GROUP]")),
    )


def _inputs(config, real, settings) -> dict:
    """keepalived runs the script as script_user unless the block names a user, and its
    misc_timeout defaults to the delay_loop."""
    return {"script_user": config.global_defs.script_user, "delay_loop": settings.delay_loop,
            "script_security": config.global_defs.enable_script_security}


KINDS = (Kind("MISC_CHECK", "MiscCheck", _implementation, _keywords, required=("misc_path",),
              retry=0, inputs=_inputs),)
