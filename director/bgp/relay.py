"""``python -m director.bgp.relay SOCKET``: ExaBGP's API process, a pipe between ExaBGP and
director. ExaBGP starts it and talks to it on stdin/stdout; it connects to the Unix socket
director listens on and copies lines both ways, unchanged. So director learns when an
ExaBGP (re)started (a connection arrives: time to send every route again) and when it went
away (the connection closes), without being ExaBGP's parent's child.

It ends when either side does. When director goes (the socket closes), it also sends SIGTERM
to ExaBGP, its parent: an engine that nobody steers must not keep announcing a dead
director's routes (director's parent-death signal on ExaBGP does the same; this covers an
ExaBGP that lost it). No gevent, no director imports: it starts in tens of milliseconds.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import selectors
import signal
import socket
import sys

PR_SET_PDEATHSIG = 1
CHUNK = 65536


def die_with_parent() -> None:
    """SIGTERM when ExaBGP dies, even by SIGKILL (its stdin would tell too, but later)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except OSError:
        pass


def relay(path: str) -> int:
    parent = os.getppid()
    die_with_parent()
    if os.getppid() != parent:                   # ExaBGP died before the line above
        return 1
    director = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        director.connect(path)
    except OSError as exc:
        print(f"relay: cannot connect to director at {path}: {exc}", file=sys.stderr)
        return 1
    stdin, stdout = sys.stdin.fileno(), sys.stdout.fileno()
    selector = selectors.DefaultSelector()
    selector.register(stdin, selectors.EVENT_READ, "exabgp")
    selector.register(director, selectors.EVENT_READ, "director")
    while True:
        for key, _ in selector.select():
            if key.data == "exabgp":
                data = os.read(stdin, CHUNK)
                if not data:
                    return 0                     # ExaBGP closed our stdin: it is stopping
                director.sendall(data)
            else:
                try:
                    data = director.recv(CHUNK)
                except OSError:
                    data = b""
                if not data:                     # director went away
                    if os.getppid() == parent:
                        os.kill(parent, signal.SIGTERM)
                    return 0
                _write_all(stdout, data)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m director.bgp.relay SOCKET", file=sys.stderr)
        return 2
    try:
        return relay(argv[1])
    except (BrokenPipeError, ConnectionError):
        return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
