"""PING_CHECK (alias ICMP_CHECK): one ICMP or ICMPv6 echo request per attempt; the server is
healthy if the matching echo reply comes back within ``connect_timeout``.

keepalived's rules (keepalived/check/check_ping.c): one echo request per attempt with a
128-byte payload and a sequence number that grows by one per attempt; the reply must be an
echo reply with that sequence number, within ``connect_timeout``; ``connect_ip``,
``bindto`` and ``bind_if`` apply. keepalived uses an unprivileged ICMP datagram socket
(``SOCK_DGRAM``, ``IPPROTO_ICMP``/``IPPROTO_ICMPV6``: the kernel chooses the echo
identifier, delivers only replies carrying it and computes the checksums) and widens
``net.ipv4.ping_group_range`` to allow it.

director does not touch sysctls: it tries the datagram socket and, where
``ping_group_range`` forbids it (the kernel default "1 0", in every new network namespace),
falls back to a raw socket (root or CAP_NET_RAW), choosing the identifier itself. A reply
matches on its source address, identifier, sequence number and payload (which carries a
random token); anything else that arrives is ignored until the deadline (keepalived fails
the attempt on the first packet that is not its reply). ``fwmark`` sets SO_MARK, which
keepalived's PING_CHECK ignores.
"""

from __future__ import annotations

import ipaddress
import itertools
import os
import random
import socket
import struct
import time
from typing import Any

from .checker import CheckResult, Target
from .sockets import prepare

ICMP_ECHO_REQUEST, ICMP_ECHO_REPLY = 8, 0
ICMP6_ECHO_REQUEST, ICMP6_ECHO_REPLY = 128, 129
PAYLOAD_SIZE = 128               # keepalived's ICMP_BUFSIZE
TOKEN_SIZE = 16
RECV_SIZE = 65535


def checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071)."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def echo_request(family: int, ident: int, seq: int, payload: bytes) -> bytes:
    """An echo request; ICMPv4 checksummed (the kernel does ICMPv6's, and ignores ours on
    datagram sockets)."""
    kind = ICMP_ECHO_REQUEST if family == socket.AF_INET else ICMP6_ECHO_REQUEST
    packet = struct.pack("!BBHHH", kind, 0, 0, ident & 0xFFFF, seq & 0xFFFF) + payload
    if family == socket.AF_INET:
        packet = packet[:2] + struct.pack("!H", checksum(packet)) + packet[4:]
    return packet


def parse_echo_reply(family: int, data: bytes, ip_header: bool = False
                     ) -> tuple[int, int, bytes] | None:
    """(identifier, sequence, payload) of an echo reply, or None for anything else;
    ``ip_header``: the data starts with an IPv4 header (raw IPv4 sockets)."""
    if ip_header:
        if len(data) < 20 or data[0] >> 4 != 4:
            return None
        data = data[(data[0] & 0x0F) * 4:]
    if len(data) < 8:
        return None
    kind, code, _, ident, seq = struct.unpack("!BBHHH", data[:8])
    wanted = ICMP_ECHO_REPLY if family == socket.AF_INET else ICMP6_ECHO_REPLY
    if kind != wanted or code != 0:
        return None
    return ident, seq, data[8:]


def open_icmp_socket(family: int, kinds: tuple[str, ...] = ("dgram", "raw")
                     ) -> tuple[socket.socket, bool]:
    """(socket, is_raw): the first of ``kinds`` the kernel allows."""
    proto = socket.IPPROTO_ICMP if family == socket.AF_INET else socket.IPPROTO_ICMPV6
    errors = []
    for kind in kinds:
        sock_type = socket.SOCK_RAW if kind == "raw" else socket.SOCK_DGRAM
        try:
            return socket.socket(family, sock_type, proto), kind == "raw"
        except OSError as exc:
            errors.append(f"{kind}: {exc.strerror or exc}")
    raise OSError(f"cannot open an ICMP socket ({'; '.join(errors)})")


class PingCheck:
    kind = "PING_CHECK"
    socket_kinds: tuple[str, ...] = ("dgram", "raw")

    def __init__(self, config: Any, target: Target) -> None:
        self.config = config
        self.target = target
        self._sequence = itertools.count(random.randrange(1 << 16))
        self._ident = random.randrange(1 << 16)          # raw sockets only

    def _sockaddr(self) -> tuple[int, tuple]:
        host = self.target.host
        info = socket.getaddrinfo(host, None, 0, socket.SOCK_RAW, 0, socket.AI_NUMERICHOST)
        family, _, _, _, sockaddr = info[0]
        if (family == socket.AF_INET6 and not sockaddr[3] and self.target.bind_if
                and ipaddress.ip_address(sockaddr[0].split("%")[0]).is_link_local):
            sockaddr = (sockaddr[0], 0, 0, socket.if_nametoindex(self.target.bind_if))
        return family, sockaddr

    def check(self) -> CheckResult:
        started = time.monotonic()
        deadline = started + self.target.connect_timeout

        def failed(error: str) -> CheckResult:
            return CheckResult(False, time.monotonic() - started, error)

        try:
            family, sockaddr = self._sockaddr()
        except (OSError, ValueError) as exc:
            return failed(f"bad address {self.target.host}: {exc}")
        try:
            sock, raw = open_icmp_socket(family, self.socket_kinds)
        except OSError as exc:
            return failed(str(exc))
        seq = next(self._sequence) & 0xFFFF
        payload = os.urandom(TOKEN_SIZE) + bytes(range(PAYLOAD_SIZE - TOKEN_SIZE))
        source = ipaddress.ip_address(sockaddr[0].split("%")[0])
        with sock:
            try:
                prepare(sock, self.target, family, with_port=False)
            except OSError as exc:
                return failed(f"cannot bind: {exc.strerror or exc}")
            try:
                sock.sendto(echo_request(family, self._ident, seq, payload), sockaddr)
                # the kernel picks a datagram socket's identifier: its "port"
                ident = self._ident if raw else sock.getsockname()[1]
            except OSError as exc:
                return failed(f"cannot send: {exc.strerror or exc}")
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    return failed(f"no reply within {self.target.connect_timeout:g} s")
                sock.settimeout(left)
                try:
                    data, peer = sock.recvfrom(RECV_SIZE)
                except TimeoutError:
                    continue
                except OSError as exc:
                    return failed(f"receive: {exc.strerror or exc}")
                reply = parse_echo_reply(family, data, raw and family == socket.AF_INET)
                if (reply is not None and reply == (ident, seq, payload)
                        and ipaddress.ip_address(peer[0].split("%")[0]) == source):
                    return CheckResult(True, time.monotonic() - started)
