"""enable_script_security: a script that runs as root must not be one a non-root user could
change or replace, since that user would then run code as root.

keepalived 2.2.7's rules (keepalived/core/notify.c, and its behaviour measured here):

* a script is *privileged* when it runs as uid 0 or gid 0, or is set-uid root (or set-gid
  root) and executable that way; only privileged scripts are checked.
* the file and every directory on its path, as written and as resolved through symbolic
  links, must be owned by root; a directory without the sticky bit (``/tmp`` has it) and the
  file must not be writable by "other", nor by a group other than root. A symbolic link's own
  mode does not matter (nobody can change a link's target; only replace it in its directory,
  which is checked).
* a bare command name is looked up in PATH first.
* the default script user is ``script_user``, else the user ``keepalived_script`` if it
  exists, else the daemon's own user (root). With ``enable_script_security`` and neither,
  keepalived refuses every script that names no user of its own ("Unable to set default user
  keepalived_script"), rather than choosing root silently.
* with ``enable_script_security`` an unsafe script is not run; without it, the daemon warns.

Where director differs: keepalived checks once, when it reads the configuration; director
checks again before each run with the option on (a few lstat calls), so a directory made
writable after start-up still stops the script. A refused check or track script counts as
failing, as a script that cannot be run does here (keepalived removes it, which leaves the
server up or the instance untracked).
"""

from __future__ import annotations

import grp
import os
import pwd
import shlex
import shutil
import stat
from dataclasses import dataclass

from .files import writable_by_others

KEEPALIVED_SCRIPT_USER = "keepalived_script"


def identity(user: str | None, group: str | None, supplementary: bool = False) -> dict:
    """subprocess arguments to run as ``user`` (and ``group``): keepalived's rule is the
    user's primary group and no supplementary groups, unless set_supplementary_groups.
    Raises KeyError for an unknown user."""
    if user is None:
        return {"group": group} if group is not None else {}
    entry = pwd.getpwnam(user)
    extra = os.getgrouplist(user, entry.pw_gid) if supplementary else []
    return {"user": entry.pw_uid, "group": group or entry.pw_gid, "extra_groups": extra}


def split_user(text: str | None) -> tuple[str | None, str | None]:
    """``"USER [GROUP]"`` (script_user, a script's user) -> (user, group)."""
    user, _, group = (text or "").partition(" ")
    return user or None, group.strip() or None


@dataclass(frozen=True)
class Entry:
    """One name on a script's path as lstat(2) sees it."""

    path: str
    uid: int
    gid: int
    mode: int


def unsafe(entries: list[Entry]) -> str | None:
    """Why a non-root user could change what runs (the first entry at fault), or None."""
    for entry in entries:
        if entry.uid != 0:
            return f"{entry.path} is owned by uid {entry.uid}, not root"
        if stat.S_ISLNK(entry.mode):
            continue
        if stat.S_ISDIR(entry.mode) and entry.mode & stat.S_ISVTX:
            continue                   # sticky: others may add names, not replace root's
        writable = writable_by_others(entry.gid, entry.mode)
        if writable:
            return f"{entry.path} {writable}"
    return None


def privileged(run_uid: int, run_gid: int, file_uid: int, file_gid: int, mode: int) -> bool:
    """Does the script run with root's powers: as uid/gid 0, or set-uid/set-gid root?"""
    return (run_uid == 0 or run_gid == 0
            or (file_uid == 0 and mode & stat.S_ISUID != 0 and mode & stat.S_IXUSR != 0)
            or (file_gid == 0 and mode & stat.S_ISGID != 0 and mode & stat.S_IXGRP != 0))


# -- the edge: users, PATH and the file system ------------------------------------------------

def default_user(script_user: str | None) -> str | None:
    """The user scripts run as when they name none: script_user, else keepalived_script if
    that user exists, else None (the daemon's own user)."""
    if script_user:
        return script_user
    try:
        pwd.getpwnam(KEEPALIVED_SCRIPT_USER)
    except KeyError:
        return None
    return KEEPALIVED_SCRIPT_USER


def _ids(user_spec: str | None) -> tuple[int, int]:
    """uid and gid a script runs as (``USER [GROUP]``; a leading ':' on GROUP as keepalived).
    Raises KeyError for an unknown user or group."""
    words = (user_spec or "").split()
    if not words:
        return os.geteuid(), os.getegid()
    entry = pwd.getpwnam(words[0])
    group = words[1].lstrip(":") if len(words) > 1 else ""
    if group:
        return entry.pw_uid, grp.getgrnam(group).gr_gid
    return entry.pw_uid, entry.pw_gid


def _entries(path: str) -> list[Entry]:
    """lstat of '/', each directory on the way and the name itself."""
    names, current = ["/"], "/"
    for part in path.strip("/").split("/"):
        if part:
            current = os.path.join(current, part)
            names.append(current)
    entries = []
    for name in names:
        info = os.lstat(name)
        entries.append(Entry(name, info.st_uid, info.st_gid, info.st_mode))
    return entries


def problem(line: str, user_spec: str | None) -> str | None:
    """Why the script ``line`` run as ``user_spec`` is unsafe, or None: safe, not run with
    root's powers, or not found (running it fails on its own then, saying why)."""
    try:
        words = shlex.split(line)
    except ValueError:
        return None
    if not words:
        return None
    program = words[0] if "/" in words[0] else shutil.which(words[0])
    if program is None:
        return None
    program = os.path.abspath(program)
    try:
        run_uid, run_gid = _ids(user_spec)
        info = os.stat(program)
        if not privileged(run_uid, run_gid, info.st_uid, info.st_gid, info.st_mode):
            return None
        entries = _entries(program)
        real = os.path.realpath(program)
        if real != program:
            entries += _entries(real)
    except (KeyError, OSError):
        return None
    return unsafe(entries)


def refusal(line: str, user_spec: str | None, security: bool) -> str | None:
    """Why the script must not run under ``enable_script_security`` (None: run it).
    ``user_spec`` is the user it runs as, after default_user()."""
    if not security:
        return None
    if not user_spec:
        return (f"no script_user and no user {KEEPALIVED_SCRIPT_USER} to run it as "
                "(keepalived refuses to default to root here: set script_user)")
    reason = problem(line, user_spec)
    return f"unsafe: {reason}" if reason else None
