"""Files the daemon writes as root (state, dumps, the pid file): created by us, never
through a link someone planted at their name."""

from __future__ import annotations

import os
from typing import TextIO


def open_private(path: str) -> TextIO:
    """A file of ours for writing, created 0644 by us: never through a symbolic link planted
    at its name (keepalived's CVE-2018-19044 class), never an existing file of someone else's
    (O_EXCL after removing a stale one of ours)."""
    try:
        os.unlink(path)               # a temporary file a crash left, or a planted link
    except FileNotFoundError:
        pass
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW |
                         os.O_CLOEXEC, 0o644)
    return os.fdopen(descriptor, "w")
