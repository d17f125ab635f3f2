"""Logging: one event per line with fields, ``vrrp.transition instance=VI_1 from=BACKUP ...``."""

from __future__ import annotations

import logging
import logging.handlers
import os
import stat
import sys

FORMAT = "%(asctime)s.%(msecs)03d %(levelname)s %(message)s"
SYSLOG_FORMAT = "director[%(process)d]: %(levelname)s %(message)s"
SYSLOG = "/dev/log"


def console_wanted(asked: bool) -> bool:
    """-l, or where stderr is collected anyway: a terminal, supervisord, systemd's journal."""
    return asked or sys.stderr.isatty() or "SUPERVISOR_ENABLED" in os.environ or \
        "JOURNAL_STREAM" in os.environ


def setup(detail: bool = False, stream=None, console: bool = True,
          facility: str | None = None, syslog_address: str = SYSLOG) -> None:
    """stderr when ``console``; syslog when not, or when a facility is given (-S N:
    LOCAL<N>, else DAEMON). Without a syslog socket it falls back to stderr, and says so."""
    def to_stderr() -> logging.Handler:
        handler = logging.StreamHandler(stream or sys.stderr)
        handler.setFormatter(logging.Formatter(FORMAT, "%Y-%m-%dT%H:%M:%S"))
        return handler

    handlers: list[logging.Handler] = [to_stderr()] if console else []
    problem = None
    if facility is not None or not console:
        code = logging.handlers.SysLogHandler.LOG_DAEMON
        if facility is not None:
            code = logging.handlers.SysLogHandler.LOG_LOCAL0 + int(facility)
        try:
            # SysLogHandler itself would hide a missing socket until the first record.
            if not stat.S_ISSOCK(os.stat(syslog_address).st_mode):
                raise OSError("not a socket")
            handler = logging.handlers.SysLogHandler(syslog_address, facility=code)
            handler.setFormatter(logging.Formatter(SYSLOG_FORMAT))
            handlers.append(handler)
        except OSError as exc:
            problem = f"no syslog at {syslog_address} ({exc}): logging to stderr"
            if not console:
                handlers.append(to_stderr())
    root = logging.getLogger("director")
    root.handlers[:] = handlers
    root.setLevel(logging.DEBUG if detail else logging.INFO)
    root.propagate = False
    if problem:
        root.warning("log.syslog_unavailable %s", problem)


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
