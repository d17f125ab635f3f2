"""Diagnostics: what the loader says about a configuration, each with its file and line.

Printed one per line as ``FILE:LINE: error|warning: MESSAGE`` (the contract of ``-t``).

Bounded: a file of garbage must give a screenful, not a line per word (a HUP with 50 MB of
random words once logged 657,000 lines). Past ``max_errors`` errors the diagnostics are
``stopped``: the lexer, the tree builder and the loader look at that and stop walking, and one
last error says checking stopped there. Warnings past ``max_warnings`` are counted, not kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

ERROR = "error"
WARNING = "warning"
MAX_ERRORS = 200
MAX_WARNINGS = 200


@dataclass(frozen=True, slots=True)
class Location:
    file: str
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


_new, _set_file, _set_line = object.__new__, Location.file.__set__, Location.line.__set__


def location(file: str, line: int) -> Location:
    """``Location(file, line)``, made by storing its two slots directly rather than through
    the frozen ``__init__`` (which calls object.__setattr__ per field): 1.3 us instead of 2.2.
    A large file's loader makes one per block (26,000 for 10,000 real servers, issue 17)."""
    made = _new(Location)
    _set_file(made, file)
    _set_line(made, line)
    return made


@dataclass(frozen=True, slots=True)
class Diagnostic:
    location: Location
    severity: str
    message: str

    def __str__(self) -> str:
        return f"{self.location}: {self.severity}: {self.message}"


def no_pause() -> None:
    pass


class Diagnostics:
    """Collects diagnostics in the order they were found, up to the limits."""

    def __init__(self, max_errors: int = MAX_ERRORS, max_warnings: int = MAX_WARNINGS,
                 pause: Callable[[], None] | None = None) -> None:
        self.items: list[Diagnostic] = []
        # Called by every pass between two pieces of work (a line, a block): a daemon parsing
        # on its loop lets the loop run there (see hub.Slicer); nothing for -t.
        self.pause = pause or no_pause
        self.max_errors = max_errors
        self.max_warnings = max_warnings
        self.stopped = False        # checking should end: too many errors, or a fatal one
        self._errors = 0
        self._warnings = 0
        self._stopped_at: Diagnostic | None = None      # says why, after the kept ones
        self._warnings_dropped = 0
        self._first_dropped_warning: Location | None = None

    def error(self, location: Location, message: str) -> None:
        if self.stopped:
            return
        if self._errors >= self.max_errors:
            self.stopped = True
            self._stopped_at = Diagnostic(location, ERROR, f"too many errors (more than "
                                          f"{self.max_errors}): checking stopped here, the rest "
                                          "of the configuration is not checked")
            return
        self._errors += 1
        self.items.append(Diagnostic(location, ERROR, message))

    def fatal(self, location: Location, message: str) -> None:
        """An error after which nothing else is worth saying (a binary file, a file too
        large): it is kept even past the limit, and checking stops."""
        if self.stopped:
            return
        self._errors += 1
        self.items.append(Diagnostic(location, ERROR, message))
        self.stopped = True

    def warning(self, location: Location, message: str) -> None:
        if self._warnings >= self.max_warnings:
            self._warnings_dropped += 1
            self._first_dropped_warning = self._first_dropped_warning or location
            return
        self._warnings += 1
        self.items.append(Diagnostic(location, WARNING, message))

    def _all(self) -> list[Diagnostic]:
        items = list(self.items)
        if self._warnings_dropped:
            items.append(Diagnostic(self._first_dropped_warning, WARNING, f"too many warnings "
                                    f"({self._warnings_dropped} more not shown)"))
        if self._stopped_at is not None:
            items.append(self._stopped_at)
        return items

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self._all() if d.severity == ERROR]

    @property
    def warnings(self) -> list[Diagnostic]:
        return [d for d in self._all() if d.severity == WARNING]

    def has_errors(self) -> bool:
        return self._errors > 0

    def __iter__(self):
        return iter(self._all())

    def __len__(self) -> int:
        return len(self._all())
