"""Interface addresses over rtnetlink (RTM_NEWADDR, RTM_DELADDR, RTM_GETADDR): what VRRP needs
on its start-up path (its advert source, the VIPs), on a plain socket of its own.

pyroute2 stays for routes, rules and links (director/vrrp/addresses.py loads it on first
use): importing it costs about a third of a second of CPU, which the address owner's exec ->
VIP and a restarted director's exec -> first advert must not wait for (issue 17). The
messages are those pyroute2's ``IPRoute.addr`` sends
(tests/functional/test_vrrp_addresses_netns.py reads the result back with ``ip -j addr``):
IPv4 with IFA_LOCAL and IFA_ADDRESS, flags in IFA_FLAGS. Its imports are the standard
library's lightest: the quick start (quickstart.py) runs it before anything else."""

from __future__ import annotations

import errno
import socket
import struct
import threading
from collections import namedtuple

from .. import netlink
from ..netlink import NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REQUEST

NETLINK_ROUTE = 0
RTM_NEWADDR, RTM_DELADDR, RTM_GETADDR = 20, 21, 22
IFADDRMSG = struct.Struct("=BBBBI")       # family, prefixlen, flags, scope, index
IFA_ADDRESS, IFA_LOCAL, IFA_LABEL, IFA_BROADCAST, IFA_FLAGS = 1, 2, 3, 4, 8
TIMEOUT = 5.0                              # the kernel answers at once; a bound all the same
FAMILIES = {4: socket.AF_INET, 6: socket.AF_INET6}


class Address(namedtuple("Address", "family prefixlen index address local")):
    """One address of a dump, as ``ip -o addr`` shows it: family 4 or 6; address is
    IFA_ADDRESS (the peer's for a point-to-point address), local IFA_LOCAL (ours: IPv4
    always, IPv6 with a peer). Not typing's NamedTuple: its import is a tenth of the quick
    start's path (quickstart.py)."""
    __slots__ = ()

    @property
    def own(self) -> str:
        """The interface's own address (not a point-to-point peer's)."""
        return self.local or self.address


def address_body(index: int, address: str, prefixlen: int, *, local: str | None = None,
                 label: str | None = None, scope: int = 0, broadcast: str | None = None,
                 flags: int = 0) -> bytes:
    """An ifaddrmsg and its attributes. ``local``: the own address of a peer (point-to-point)
    address; IPv4 without one gets IFA_LOCAL = ``address``, as ip(8) and pyroute2 send it."""
    version = 6 if ":" in address else 4
    family = FAMILIES[version]
    pack = lambda text: socket.inet_pton(family, text)             # noqa: E731
    attrs = netlink.attribute(IFA_ADDRESS, pack(address))
    if local is None and version == 4:
        local = address
    if local is not None:
        attrs += netlink.attribute(IFA_LOCAL, pack(local))
    if label:
        attrs += netlink.attribute(IFA_LABEL, label.encode() + b"\0")
    if broadcast:
        attrs += netlink.attribute(IFA_BROADCAST, pack(broadcast))
    if flags:
        attrs += netlink.attribute(IFA_FLAGS, struct.pack("=I", flags))
    return IFADDRMSG.pack(family, prefixlen, 0, scope, index) + attrs


def parse_address(chunk: bytes) -> Address | None:
    """A RTM_NEWADDR message of a dump (header included) -> Address; None for a family this
    client does not speak or a message too short."""
    start = netlink.HEADER.size
    if len(chunk) < start + IFADDRMSG.size:
        return None
    family, prefixlen, _flags, _scope, index = IFADDRMSG.unpack_from(chunk, start)
    version = {socket.AF_INET: 4, socket.AF_INET6: 6}.get(family)
    if version is None:
        return None
    found: dict[int, str] = {}
    size = 4 if version == 4 else 16
    for kind, payload in netlink.iter_attrs(chunk[start + IFADDRMSG.size:]):
        if kind in (IFA_ADDRESS, IFA_LOCAL) and len(payload) == size:
            found[kind] = socket.inet_ntop(family, payload)
    if IFA_ADDRESS not in found and IFA_LOCAL not in found:
        return None
    return Address(version, prefixlen, index, found.get(IFA_ADDRESS) or found[IFA_LOCAL],
                   found.get(IFA_LOCAL))


class RtnlAddresses:
    """One rtnetlink socket, one request at a time (a lock), opened on first use and again
    after a timeout or a broken socket. Errors are OSError with the kernel's errno."""

    def __init__(self, receive_buffer: tuple[int, bool] | None = None,
                 timeout: float = TIMEOUT) -> None:
        self.receive_buffer = receive_buffer      # vrrp_netlink_cmd_rcv_bufs (bytes, force)
        self.timeout = timeout
        self._socket: socket.socket | None = None
        self._sequence = 0
        self._lock = threading.Lock()

    def open(self) -> None:
        with self._lock:
            if self._socket is None:
                self._open()

    def _open(self) -> None:
        self._socket = netlink.open_socket(NETLINK_ROUTE, self.receive_buffer, self.timeout)

    def close(self) -> None:
        with self._lock:
            if self._socket is not None:
                self._socket.close()
                self._socket = None

    def _request(self, kind: int, flags: int, body: bytes) -> list[bytes]:
        with self._lock:
            if self._socket is None:
                self._open()
            self._sequence = self._sequence % 0x7FFFFFFF + 1
            try:
                self._socket.send(netlink.message(kind, NLM_F_REQUEST | flags,
                                                  self._sequence, body))
                return netlink.receive_replies(self._socket, self._sequence, "route")
            except OSError as exc:
                if not _kernel_said(exc):          # the socket's trouble: a new one next time
                    self._socket.close()
                    self._socket = None
                raise

    def add(self, index: int, address: str, prefixlen: int, **options) -> None:
        """Raises OSError(EEXIST) when the address is there."""
        self._request(RTM_NEWADDR, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
                      address_body(index, address, prefixlen, **options))

    def delete(self, index: int, address: str, prefixlen: int,
               local: str | None = None) -> None:
        """Raises OSError(EADDRNOTAVAIL) when the address is not there."""
        self._request(RTM_DELADDR, NLM_F_ACK,
                      address_body(index, address, prefixlen, local=local))

    def dump(self, family: int) -> list[Address]:
        """Every address of the family (4 or 6) on every interface of this namespace."""
        body = IFADDRMSG.pack(FAMILIES[family], 0, 0, 0, 0)
        return [found for found in map(parse_address, self._request(RTM_GETADDR, NLM_F_DUMP,
                                                                      body))
                if found is not None]


def _kernel_said(exc: OSError) -> bool:
    """An error the kernel answered with (the socket is fine), not a timeout or garbage."""
    return exc.errno not in (errno.ETIMEDOUT, errno.EBADMSG, errno.EBADF, None)
