"""Files the daemon writes as root (state, dumps, the pid file): created by us, never
through a link someone planted at their name."""

from __future__ import annotations

import os
import stat
from io import TextIOWrapper as TextIO    # not typing's: the quick start reads this module


def open_private(path: str, mode: str = "w", permissions: int = 0o644) -> TextIO:
    """A file of ours for writing, created 0644 (``permissions``) by us: never through a
    symbolic link planted at its name (keepalived's CVE-2018-19044 class), never an existing
    file of someone else's (O_EXCL after removing a stale one of ours). ``mode``: "w" or
    "wb"."""
    try:
        os.unlink(path)               # a temporary file a crash left, or a planted link
    except FileNotFoundError:
        pass
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW |
                         os.O_CLOEXEC, permissions)
    return os.fdopen(descriptor, mode)


def directory_problem(uid: int, gid: int, mode: int, our_uid: int) -> str | None:
    """Why a directory is no place for files root writes and later reads (state, dumps, the
    pid file), or None. Another user who can add or rename names there could plant a file we
    would read back (a drained list, a pid) or keep ours from being written; the sticky bit
    (/tmp) stops renames of our files, not names planted before we write ours."""
    if uid not in (0, our_uid):
        return f"is owned by uid {uid}"
    return writable_by_others(gid, mode)


def writable_by_others(gid: int, mode: int) -> str | None:
    """Why a user other than root may write to a file or directory of this group and mode
    (every user, or a group other than root's), or None: the state directory's rule here
    and enable_script_security's (director/scriptsec.py)."""
    if mode & stat.S_IWOTH:
        return f"is writable by every user (mode {stat.S_IMODE(mode):04o})"
    if mode & stat.S_IWGRP and gid != 0:
        return f"is writable by group {gid} (mode {stat.S_IMODE(mode):04o})"
    return None


class UnsafeDirectory(Exception):
    pass


def own_directory(path: str) -> None:
    """Create ``path`` 0755 if missing; raise UnsafeDirectory when another user could change
    what is in it. A directory that cannot be created is left to the writes that need it
    (they fail and say so, and the daemon runs on): that is a broken disk, not an attack."""
    try:
        os.makedirs(path, mode=0o755, exist_ok=True)
        info = os.stat(path)
    except OSError:
        return
    problem = directory_problem(info.st_uid, info.st_gid, info.st_mode, os.geteuid())
    if problem:
        raise UnsafeDirectory(f"{path} {problem}: another user could plant or replace the "
                              "files the daemon writes there as root and reads back; "
                              "chmod o-w,g-w it or choose another directory")
