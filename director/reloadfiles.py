"""The files around a reload: reload_time_file (a reload at a set time), reload_file (there
while the files are read), reload_check_config's LOG_FILE (what the check said) and
config_save_dir (the configuration before and after). Parsing the time is pure; the
watcher is one supervised greenlet that posts "reload" like SIGHUP does."""

from __future__ import annotations

import logging
import os
import re
import time
from contextlib import contextmanager
from typing import Any, Callable, Iterator

from . import hub
from .files import open_private
from .log import event

log = logging.getLogger("director")

POLL = 1.0                      # seconds between two looks at reload_time_file
DAY = 86400
_TIME = re.compile(r"(?:(\d{2}|\d{4})-(\d{2})-(\d{2}) )?(\d{2}):(\d{2}):(\d{2})(Z?)\Z")


def reload_time(text: str, now: float) -> float | None:
    """When a reload_time_file's first line asks for a reload, as a Unix time: HH:MM:SS
    (the next such time, today or tomorrow), YY-MM-DD HH:MM:SS or YYYY-MM-DD HH:MM:SS, each
    with an optional Z for UTC (else local time), exactly so (keepalived's formats). None
    for a line that is none of them, a date that does not exist or a time already past."""
    match = _TIME.match(text.split("\n", 1)[0])
    if not match:
        return None
    year, month, day, hour, minute, second, utc = match.groups()
    clock = (int(hour), int(minute), int(second))
    if clock[0] > 23 or clock[1] > 59 or clock[2] > 59:
        return None
    if utc:
        from calendar import timegm as convert   # here: with datetime, 5 ms of a start
    else:
        convert = time.mktime
    if year is None:
        today = time.gmtime(now) if utc else time.localtime(now)
        when = convert((today.tm_year, today.tm_mon, today.tm_mday, *clock, 0, 0, -1))
        return when if when > now else when + DAY
    full_year = int(year) + (2000 if len(year) == 2 else 0)
    try:
        time.strptime(f"{full_year}-{month}-{day}", "%Y-%m-%d")      # a real date
    except ValueError:
        return None
    when = convert((full_year, int(month), int(day), *clock, 0, 0, -1))
    return when if when > now else None


class ReloadTimer:
    """Watches reload_time_file (polled each POLL: created, changed or removed, the reload
    is scheduled, moved or cancelled) and calls ``reload`` at the time it holds; removes
    the file then unless reload_repeat. ``settings()`` gives (path or None, repeat) from the
    running configuration, so that a reload that changes them is followed."""

    def __init__(self, settings: Callable[[], tuple[str | None, bool]],
                 reload: Callable[[], None], clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.reload = reload
        self.clock = clock
        self.seen: tuple | None = None           # (path, inode, mtime, size) last read
        self.text = ""
        self.due: float | None = None

    def start(self) -> hub.Greenlet:
        return hub.supervise(self._run, name="reload_time_file")

    def _run(self) -> None:
        while True:
            self.tick()
            hub.sleep(POLL)

    def tick(self) -> None:
        path, repeat = self.settings()
        if not path:
            self.seen, self.due = None, None
            return
        now = self.clock()
        try:
            info = os.stat(path)
            key = (path, info.st_ino, info.st_mtime_ns, info.st_size)
            if key != self.seen:
                with open(path, errors="replace") as handle:
                    self.text = handle.read(256)
                self.seen = key
                self.due = reload_time(self.text, now)
                event(log, "reload.scheduled" if self.due else "reload.not_scheduled",
                      logging.INFO if self.due else logging.WARNING, file=path,
                      at=self.text.split("\n", 1)[0][:40],
                      **({"in_seconds": round(self.due - now)} if self.due else
                         {"note": "not HH:MM:SS or [YY]YY-MM-DD HH:MM:SS[Z] in the future"}))
        except FileNotFoundError:
            if self.due is not None:
                event(log, "reload.cancelled", file=path)
            self.seen, self.due = None, None
            return
        except OSError as exc:
            event(log, "reload.time_file_unreadable", logging.WARNING, file=path, error=exc)
            return
        if self.due is None or now < self.due:
            return
        event(log, "reload.timed", file=path, repeat=repeat)
        if repeat:
            self.due = reload_time(self.text, now + 1)     # a time alone: tomorrow's
        else:
            self.due = None
            try:
                os.unlink(path)
            except OSError:
                pass
        self.reload()


def reload_file_path(config: Any, state_dir: str) -> str | None:
    setting = config.global_defs.reload_file
    if setting is None:
        return None
    return setting or os.path.join(state_dir, "keepalived.reload")


@contextmanager
def reading(config: Any, state_dir: str) -> Iterator[None]:
    """reload_file: created (or truncated) while the files are read, removed after."""
    path = reload_file_path(config, state_dir)
    if path:
        try:
            with open(path, "w"):
                pass
        except OSError as exc:
            event(log, "reload.reload_file_error", logging.WARNING, file=path, error=exc)
    try:
        yield
    finally:
        if path:
            try:
                os.unlink(path)
            except OSError:
                pass


def write_check_log(config: Any, diagnostics: list, ok: bool) -> None:
    """reload_check_config LOG_FILE: what checking the new file said, and the outcome."""
    path = config.global_defs.reload_check_config
    if not path:
        return
    try:
        with open_private(path) as handle:
            for diagnostic in diagnostics:
                handle.write(f"{diagnostic}\n")
            handle.write("configuration valid: reloading\n" if ok else
                         "configuration invalid: not reloaded\n")
    except OSError as exc:
        event(log, "reload.check_log_error", logging.WARNING, file=path, error=exc)


def save(old: Any, new: Any, config_id: str, now: float | None = None) -> None:
    """config_save_dir: the running configuration before and after an applied reload, as
    -d prints it (secrets masked)."""
    folder = new.global_defs.config_save_dir or old.global_defs.config_save_dir
    if not folder:
        return
    from .config.render import dump_text
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now or time.time()))
    try:
        os.makedirs(folder, mode=0o700, exist_ok=True)
        for when, config in (("before", old), ("after", new)):
            with open_private(os.path.join(folder, f"{stamp}-{when}.conf")) as handle:
                handle.write(dump_text(config, config_id))
    except OSError as exc:
        event(log, "reload.save_error", logging.WARNING, folder=folder, error=exc)
