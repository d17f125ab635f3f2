"""A small generic netlink client for IPVS: one socket, one request at a time, every reply
matched by its sequence number. pyroute2's message classes encode and decode; the socket and
the request/reply loop are ours.

Why not pyroute2's ``IPVS`` socket: in 0.9 every call builds an asyncio event loop and a
transport over the socket, binds (a generic netlink family look-up) and tears both down;
the teardown's ``connection_lost`` puts an ECONNRESET into the socket's message queue,
where the next call's family look-up can read it. Under gevent the order of those
callbacks varies, so some call fails with ``NetlinkError(104, 'Connection reset by peer')``
at random, and its per-thread state is per-greenlet (threading.local is patched). That
killed the load balancer's loop (reproduced in the qemu guest:
tests/functional/test_lb_ipvs_daemon_qemu.py). Here a call is a send and a few receives
on a plain socket (cooperative under gevent), serialised by a lock; a timeout or a broken
socket raises GenlError and the next call opens a new socket.
"""

from __future__ import annotations

import errno
import socket
import struct
import threading
from typing import Any

from pyroute2.netlink import CTRL_CMD_GETFAMILY, GENL_ID_CTRL, ctrlmsg, nla
from pyroute2.netlink.generic import ipvs as pyroute2_ipvs

from .. import netlink
from ..netlink import HEADER, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST, iter_attrs  # noqa: F401

NETLINK_GENERIC = 16
TIMEOUT = 5.0                              # seconds a reply may take before the socket is new
GENL_HEADER_SIZE = 4                       # cmd, version, reserved


class GenlError(OSError):
    """A request failed: the kernel's error (errno set, as OSError does) or the socket's."""


class IpvsMessage(pyroute2_ipvs.ipvsmsg):
    """pyroute2's IPVS message with the sync daemon's attributes decoded (pyroute2 keeps
    them as hex). Numbers from the kernel's uapi ip_vs.h."""

    nla_map = (
        ("IPVS_CMD_ATTR_UNSPEC", "none"),
        ("IPVS_CMD_ATTR_SERVICE", "service"),
        ("IPVS_CMD_ATTR_DEST", "dest"),
        ("IPVS_CMD_ATTR_DAEMON", "daemon"),
        ("IPVS_CMD_ATTR_TIMEOUT_TCP", "uint32"),
        ("IPVS_CMD_ATTR_TIMEOUT_TCP_FIN", "uint32"),
        ("IPVS_CMD_ATTR_TIMEOUT_UDP", "uint32"),
    )

    class daemon(nla):
        prefix = "IPVS_DAEMON_ATTR_"
        nla_map = (
            ("IPVS_DAEMON_ATTR_UNSPEC", "none"),
            ("IPVS_DAEMON_ATTR_STATE", "uint32"),
            ("IPVS_DAEMON_ATTR_MCAST_IFN", "asciiz"),
            ("IPVS_DAEMON_ATTR_SYNC_ID", "uint32"),
            ("IPVS_DAEMON_ATTR_SYNC_MAXLEN", "uint16"),
            ("IPVS_DAEMON_ATTR_MCAST_GROUP", "ip4addr"),
            ("IPVS_DAEMON_ATTR_MCAST_GROUP6", "ip6addr"),
            ("IPVS_DAEMON_ATTR_MCAST_PORT", "uint16"),
            ("IPVS_DAEMON_ATTR_MCAST_TTL", "uint8"),
        )


class GenlSocket:
    """Requests to one generic netlink family. Thread- and greenlet-safe (one lock)."""

    def __init__(self, family: str = pyroute2_ipvs.GENL_NAME,
                 message_class: type = IpvsMessage, version: int = pyroute2_ipvs.GENL_VERSION,
                 timeout: float = TIMEOUT,
                 receive_buffer: tuple[int, bool] | None = None) -> None:
        self.family = family
        self.receive_buffer = receive_buffer     # lvs_netlink_cmd_rcv_bufs (bytes, force)
        self.message_class = message_class
        self.version = version
        self.timeout = timeout
        self._socket: socket.socket | None = None
        self._family_id: int | None = None
        self._sequence = 0
        self._lock = threading.Lock()
        self.reopened = 0                        # sockets replaced after an error

    def close(self) -> None:
        with self._lock:
            self._drop()

    def _drop(self) -> None:
        if self._socket is not None:
            self._socket.close()
        self._socket = None
        self._family_id = None

    def _open(self) -> None:
        self._socket = netlink.open_socket(NETLINK_GENERIC, self.receive_buffer, self.timeout)
        message = ctrlmsg()
        message["cmd"] = CTRL_CMD_GETFAMILY
        message["version"] = 1
        message["attrs"] = [("CTRL_ATTR_FAMILY_NAME", self.family)]
        try:
            (reply,) = self._exchange(message, GENL_ID_CTRL, NLM_F_REQUEST | NLM_F_ACK, ctrlmsg)
        except GenlError as exc:
            if exc.errno == errno.ENOENT:
                raise GenlError(errno.ENOENT, f"the kernel has no {self.family} generic "
                                              f"netlink family (modprobe ip_vs?)") from None
            raise
        self._family_id = reply.get_attr("CTRL_ATTR_FAMILY_ID")

    def request(self, command: int, attrs: list, dump: bool = False,
                raw: bool = False) -> list[Any]:
        """Sends one command with ``attrs``; returns the decoded replies (a dump's messages,
        or none for an acknowledged change), or with ``raw`` each reply's attributes as
        bytes (after the netlink and generic netlink headers) for a caller that walks them
        itself (iter_attrs). Raises GenlError."""
        with self._lock:
            try:
                if self._family_id is None:           # not open, or its look-up failed
                    self._drop()
                    self._open()
                message = self.message_class()
                message["cmd"] = command
                message["version"] = self.version
                message["attrs"] = attrs
                flags = NLM_F_REQUEST | (NLM_F_DUMP if dump else NLM_F_ACK)
                return self._exchange(message, self._family_id, flags,
                                      None if raw else self.message_class)
            except GenlError as exc:
                if exc.errno in (errno.ETIMEDOUT, errno.EBADMSG):
                    self._reopen()
                raise
            except (OSError, ValueError, struct.error) as exc:   # the socket, not the kernel
                self._reopen()
                raise GenlError(getattr(exc, "errno", None) or errno.EIO,
                                f"netlink {self.family}: {exc}") from exc

    def _reopen(self) -> None:
        self._drop()
        self.reopened += 1

    def _exchange(self, message: Any, family_id: int | None, flags: int,
                  reply_class: type | None) -> list[Any]:
        assert self._socket is not None and family_id is not None
        self._sequence = self._sequence % 0x7FFFFFFF + 1
        sequence = self._sequence
        message["header"]["type"] = family_id
        message["header"]["flags"] = flags
        message["header"]["sequence_number"] = sequence
        message["header"]["pid"] = 0
        message.encode()
        self._socket.send(message.data)
        replies = []
        for chunk in netlink.receive_replies(self._socket, sequence, self.family, GenlError):
            if reply_class is None:
                replies.append(chunk[HEADER.size + GENL_HEADER_SIZE:])
                continue
            reply = reply_class(chunk)
            reply.decode()
            replies.append(reply)
        return replies
