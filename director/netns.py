"""net_namespace: the daemon enters a named network namespace (/run/netns/NAME, as
``ip netns add`` makes it) before it opens anything, as ``ip netns exec`` would put it
there: the namespace, then a mount namespace of its own where /sys is the namespace's
(the interfaces' MAC addresses are read there, and the root namespace's /sys would show
other interfaces)."""

from __future__ import annotations

import ctypes
import ctypes.util
import os

NETNS_RUN_DIR = "/run/netns"
CLONE_NEWNS = 0x00020000
CLONE_NEWNET = 0x40000000
MS_REC, MS_SLAVE = 0x4000, 0x80000
MNT_DETACH = 2


class NamespaceError(OSError):
    pass


def _call(result: int, what: str) -> None:
    if result != 0:
        number = ctypes.get_errno()
        raise NamespaceError(number, f"{what}: {os.strerror(number)}")


def enter(name: str) -> None:
    """Move this process into network namespace ``name``; raises NamespaceError (the daemon
    does not start) when it does not exist or cannot be entered."""
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    path = os.path.join(NETNS_RUN_DIR, name)
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise NamespaceError(exc.errno, f"net_namespace {name}: {path}: {exc.strerror} "
                                        "(ip netns add NAME makes it)") from None
    try:
        _call(libc.setns(descriptor, CLONE_NEWNET), f"net_namespace {name}: setns")
    finally:
        os.close(descriptor)
    # /sys shows the network namespace of whoever mounted it: mount the namespace's own in a
    # mount namespace of ours (nothing leaks to the host's mounts: they become our slaves).
    _call(libc.unshare(CLONE_NEWNS), "unshare(CLONE_NEWNS)")
    _call(libc.mount(b"none", b"/", None, MS_REC | MS_SLAVE, None), "mount --make-rslave /")
    _call(libc.umount2(b"/sys", MNT_DETACH), "umount /sys")
    _call(libc.mount(name.encode(), b"/sys", b"sysfs", 0, None), "mount sysfs")


def current_inode() -> int:
    """The inode of this process's network namespace (equal for the same namespace)."""
    return os.stat("/proc/self/ns/net").st_ino
