"""Logging: one event per line with fields, ``vrrp.transition instance=VI_1 from=BACKUP ...``."""

from __future__ import annotations

import logging
import sys

FORMAT = "%(asctime)s.%(msecs)03d %(levelname)s %(message)s"


def setup(detail: bool = False, stream=None) -> None:
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(logging.Formatter(FORMAT, "%Y-%m-%dT%H:%M:%S"))
    root = logging.getLogger("director")
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if detail else logging.INFO)
    root.propagate = False


def fields(**values) -> str:
    """``key=value`` pairs; values with spaces are quoted so a line stays one record."""
    parts = []
    for key, value in values.items():
        text = str(value)
        if not text or any(c in text for c in ' ="'):
            text = '"' + text.replace('"', '\\"') + '"'
        parts.append(f"{key}={text}")
    return " ".join(parts)


def event(logger: logging.Logger, name: str, level: int = logging.INFO, **values) -> None:
    if logger.isEnabledFor(level):
        logger.log(level, "%s %s", name, fields(**values))
