"""track_file for VRRP instances: the number in a file (read as keepalived reads it,
check/file.py's ``read_value``) becomes a tracked status; tracking.contribution turns it into
priority or FAULT.

keepalived watches the files with inotify; director reads each one every ``PERIOD`` seconds
(a few hundred bytes: cheaper than it sounds, and nothing to lose when a directory is
replaced). A missing or unreadable file reads 0; a number out of the 32-bit range is ignored
(the last value stands), as in keepalived. ``init_file`` writes its value at start when the
file does not exist (with ``overwrite``, also over a regular file; never on a reload).
"""

from __future__ import annotations

import logging
import os
import stat
from typing import Any, Callable, Iterable

from .. import hub
from ..log import event as log_event

log = logging.getLogger("director.vrrp.file")

PERIOD = 0.2


def init_file(path: str, value: int, overwrite: bool, reload: bool) -> str | None:
    """keepalived's track_file_end_handler: the error to log, or None."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        mode = None
    except OSError as exc:
        return str(exc)
    if mode is not None:
        if not overwrite or reload:
            return None
        if not stat.S_ISREG(mode):
            return "not a regular file"
    try:
        with open(path, "w") as handle:
            handle.write(f"{value}\n")
    except OSError as exc:
        return exc.strerror or str(exc)
    return None


class FileWatcher:
    """The track_files that instances track; ``callback(name, value)`` on each change."""

    def __init__(self, period: float = PERIOD) -> None:
        self.period = period
        self.paths: dict[str, str] = {}
        self.values: dict[str, int] = {}
        self.subscribers: dict[str, list[Callable[[str, int], None]]] = {}
        self.greenlet: hub.Greenlet | None = None

    def configure(self, files: Iterable[Any], reload: bool = False) -> None:
        files = [f for f in files if f.file]
        for item in files:
            if item.init_file is not None:
                error = init_file(item.file, *item.init_file, reload=reload)
                if error:
                    log_event(log, "vrrp.track_file_init_failed", logging.WARNING,
                              file=item.name, path=item.file, error=error)
        self.paths = {item.name: item.file for item in files}
        self.values = {name: value for name, value in self.values.items()
                       if name in self.paths}
        self.subscribers = {name: subs for name, subs in self.subscribers.items()
                            if name in self.paths}
        for name in self.paths:
            self._read(name)

    def subscribe(self, name: str, callback: Callable[[str, int], None]) -> None:
        self.subscribers.setdefault(name, []).append(callback)
        callback(name, self.values.get(name, 0))

    def unsubscribe(self, callback: Callable[[str, int], None]) -> None:
        for subs in self.subscribers.values():
            while callback in subs:
                subs.remove(callback)

    def start(self) -> None:
        if self.greenlet is None:
            self.greenlet = hub.supervise(self.run, name="vrrp track files")

    def run(self) -> None:
        while True:
            hub.sleep(self.period)
            for name in list(self.paths):
                self._read(name)

    def _read(self, name: str) -> None:
        from ..check.file import read_value     # with the first tracked file, not at start-up
        value, _ = read_value(self.paths[name])
        if value is None:                    # out of range: keepalived ignores it
            return
        if self.values.get(name) == value:
            return
        self.values[name] = value
        log_event(log, "vrrp.track_file", file=name, path=self.paths[name], value=value)
        for callback in list(self.subscribers.get(name, ())):
            callback(name, value)

    def stop(self) -> None:
        if self.greenlet is not None:
            self.greenlet.kill(block=False)
            self.greenlet = None
