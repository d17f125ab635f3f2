"""The pid file and the lock behind it: one director per pid file.

The lock is an abstract Unix socket named after the pid file's path, held open for the
daemon's life: unlike the file it cannot be deleted (a second daemon started after someone
removed the pid file would make two VRRP speakers on one box), and the kernel releases it
when the process ends, however it ends. A second daemon connecting to it learns the holder's
pid (SO_PEERCRED). Abstract sockets belong to a network namespace; the file check below
still covers a holder in another namespace while its file exists.

The file itself is written atomically and removed on exit only if it is still ours.
"""

from __future__ import annotations

import hashlib
import os
import socket
import struct

from .files import open_private


class PidFileBusy(Exception):
    pass


_held: dict[str, socket.socket] = {}        # path -> the lock, held until release()


def lock_name(path: str) -> bytes:
    """The abstract socket held for the pid file ``path`` (the quick start probes it too)."""
    digest = hashlib.sha256(os.path.realpath(path).encode()).hexdigest()[:32]
    return b"\0director-pid-" + digest.encode()


def _holder(name: bytes) -> int:
    """The pid holding the lock ``name`` (0 when it cannot be told)."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(name)
        credentials = probe.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                       struct.calcsize("3i"))
        return struct.unpack("3i", credentials)[0]
    except OSError:
        return 0
    finally:
        probe.close()


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
    name = lock_name(path)
    lock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        lock.bind(name)
        lock.listen(1)
    except OSError:
        lock.close()
        holder = _holder(name)
        raise PidFileBusy(f"{path}: director is already running"
                          f"{f' as pid {holder}' if holder else ''}") from None
    try:
        with open(path) as handle:
            pid = int(handle.read().strip() or 0)
    except (OSError, ValueError):
        pid = 0
    if pid and pid != os.getpid() and _alive_director(pid):
        lock.close()
        raise PidFileBusy(f"{path}: director is already running as pid {pid}")
    try:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        temporary = f"{path}.{os.getpid()}.tmp"
        with open_private(temporary) as handle:
            handle.write(f"{os.getpid()}\n")
        os.replace(temporary, path)
    except OSError:
        lock.close()
        raise
    _held[path] = lock


def release(path: str) -> None:
    lock = _held.pop(path, None)
    if lock is not None:
        lock.close()
    try:
        with open(path) as handle:
            if int(handle.read().strip() or 0) != os.getpid():
                return
        os.unlink(path)
    except (OSError, ValueError):
        pass
