"""The netlink wire, byte level: the message header, attributes, and the loop that reads one
request's replies. Used by generic netlink (director/lb/genl.py, IPVS) and by the address
client of rtnetlink (director/vrrp/rtnl.py).

Without pyroute2 on purpose: importing any part of it runs its package ``__init__``, which
loads all of it (asyncio, sqlite3, unittest.mock, ...): about a third of a second of CPU,
which VRRP's start-up path (exec -> first advert, VIPs) must not wait for (issue 17)."""

from __future__ import annotations

import errno
import os
import socket
import struct

HEADER = struct.Struct("=IHHII")           # length, type, flags, sequence, port id
NLA_HEADER = struct.Struct("=HH")          # length, type
NLA_TYPE_MASK = 0x3FFF                     # without NLA_F_NESTED / NLA_F_NET_BYTEORDER

NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_REQUEST, NLM_F_ACK = 0x1, 0x4
NLM_F_REPLACE, NLM_F_EXCL, NLM_F_CREATE = 0x100, 0x200, 0x400
NLM_F_DUMP = 0x300
RECEIVE_BUFFER = 4 * 1024 * 1024           # a dump of thousands of entries in one go


def open_socket(protocol: int, receive_buffer: tuple[int, bool] | None,
                timeout: float) -> socket.socket:
    """A bound netlink socket of ``protocol`` with room for big dumps, ``receive_buffer``
    (the *_netlink_cmd_rcv_bufs keywords: bytes, force) applied, replies waited for at most
    ``timeout``."""
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, protocol)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
        if receive_buffer is not None:
            from .process import set_receive_buffer
            set_receive_buffer(sock, receive_buffer)
        sock.bind((0, 0))
        sock.settimeout(timeout)
    except OSError:
        sock.close()
        raise
    return sock


def attribute(kind: int, payload: bytes) -> bytes:
    """One netlink attribute, padded to four bytes."""
    length = NLA_HEADER.size + len(payload)
    return NLA_HEADER.pack(length, kind) + payload + b"\0" * (-length % 4)


def iter_attrs(data: bytes):
    """(type, payload) of each netlink attribute in ``data``."""
    offset = 0
    while offset + NLA_HEADER.size <= len(data):
        length, kind = NLA_HEADER.unpack_from(data, offset)
        if length < NLA_HEADER.size:
            return
        yield kind & NLA_TYPE_MASK, data[offset + NLA_HEADER.size:offset + length]
        offset += (length + 3) & ~3


def message(kind: int, flags: int, sequence: int, body: bytes) -> bytes:
    return HEADER.pack(HEADER.size + len(body), kind, flags, sequence, 0) + body


def receive_replies(sock: socket.socket, sequence: int, what: str,
                    error: type[OSError] = OSError) -> list[bytes]:
    """The replies to request ``sequence`` (whole messages, header included) until its
    acknowledgement, error or end of dump; replies to an abandoned earlier request are
    skipped. Raises ``error``: the kernel's errno, ETIMEDOUT (the socket's timeout) or
    EBADMSG (a malformed message)."""
    replies: list[bytes] = []
    while True:
        try:
            data = sock.recv(RECEIVE_BUFFER)
        except socket.timeout:
            raise error(errno.ETIMEDOUT, f"netlink {what}: no reply in time") from None
        offset = 0
        while offset + HEADER.size <= len(data):
            length, kind, _flags, seq, _port = HEADER.unpack_from(data, offset)
            if length < HEADER.size or offset + length > len(data):
                raise error(errno.EBADMSG, f"netlink {what}: bad message length")
            chunk = data[offset:offset + length]
            offset += (length + 3) & ~3
            if seq != sequence:                # a late reply to an abandoned request
                continue
            if kind in (NLMSG_ERROR, NLMSG_DONE):
                # an acknowledgement (error 0), the kernel's error, the end of a dump
                # (which carries an error if it failed part way)
                code = struct.unpack_from("=i", chunk, HEADER.size)[0] \
                    if length >= HEADER.size + 4 else 0
                if code < 0:
                    raise error(-code, os.strerror(-code))
                return replies
            replies.append(chunk)
