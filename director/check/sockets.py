"""Socket set-up every network checker shares: keepalived's socket_bind_connect applies the
checker's fwmark, bind_if and source address (bindto, bind_port) before connecting."""

from __future__ import annotations

import socket
from typing import Any

from .checker import Target

SO_MARK = getattr(socket, "SO_MARK", 36)
SO_BINDTODEVICE = getattr(socket, "SO_BINDTODEVICE", 25)


def family_of(host: str) -> int:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def prepare(sock: Any, target: Target, family: int, with_port: bool = True) -> None:
    """Apply the target's fwmark, bind_if and source address to ``sock`` (a socket, or the
    C-level object TCP_CHECK uses). ICMP has no port: PING_CHECK passes with_port=False."""
    if target.fwmark:
        sock.setsockopt(socket.SOL_SOCKET, SO_MARK, target.fwmark)
    if target.bind_if:
        sock.setsockopt(socket.SOL_SOCKET, SO_BINDTODEVICE, target.bind_if.encode())
    port = target.bind_port if with_port else None
    if target.bind_ip or port:
        if port:            # a fixed source port is reused check after check
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        any_address = "::" if family == socket.AF_INET6 else "0.0.0.0"
        sock.bind((target.bind_ip or any_address, port or 0))


def open_socket(target: Target, kind: int) -> socket.socket:
    """A socket of ``kind`` for the target's family, prepared; closed again on failure."""
    family = family_of(target.host)
    sock = socket.socket(family, kind)
    try:
        prepare(sock, target, family)
    except OSError:
        sock.close()
        raise
    return sock
