"""The pid file: written atomically, refused while another live director holds it, removed
on exit only if it is still ours."""

from __future__ import annotations

import os


class PidFileBusy(Exception):
    pass


def _alive_director(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return b"director" in handle.read()
    except OSError:
        return True


def acquire(path: str) -> None:
    try:
        with open(path) as handle:
            pid = int(handle.read().strip() or 0)
    except (OSError, ValueError):
        pid = 0
    if pid and pid != os.getpid() and _alive_director(pid):
        raise PidFileBusy(f"{path}: director is already running as pid {pid}")
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    temporary = f"{path}.{os.getpid()}.tmp"
    with open(temporary, "w") as handle:
        handle.write(f"{os.getpid()}\n")
    os.replace(temporary, path)


def release(path: str) -> None:
    try:
        with open(path) as handle:
            if int(handle.read().strip() or 0) != os.getpid():
                return
        os.unlink(path)
    except (OSError, ValueError):
        pass
