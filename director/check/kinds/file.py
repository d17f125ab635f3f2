"""FILE_CHECK: the number in a track_file decides up/down and the weight
(director/check/file.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .kind import Kind

if TYPE_CHECKING:
    from ...config.blocks.checkers import Vocabulary
    from ...config.schema import Kw


def _implementation() -> type:
    from ..file import FileCheck   # here, not above: -t reads the keywords without the checker
    return FileCheck


def _keywords(c: type[Vocabulary]) -> tuple[Kw, ...]:
    return (
        c.Kw("track_file", c.Word("a track_file name")),
        c.Kw("weight", c.Text("N [reverse]")),
    )


def _inputs(config, real, settings) -> dict:
    """The track_file blocks it reads, and the configured weight its value adjusts."""
    return {"track_files": {item.name: item for item in config.track_files},
            "base_weight": real.weight}


# keepalived watches the file with inotify and reacts at once, with no retries: here it is
# read at least once a second.
KINDS = (Kind("FILE_CHECK", "FileCheck", _implementation, _keywords, shared=False, retry=0,
              max_delay_loop=1.0, inputs=_inputs),)
