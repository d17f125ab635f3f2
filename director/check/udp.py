"""UDP_CHECK: send one datagram to the real server and judge by what comes back.

keepalived's rules (check_udp.c, core/layer4.c), which a migrated configuration expects:

- Without ``payload`` keepalived does not send an empty datagram but 32 filler bytes,
  "keepalived check - keepalived ch"; we send the same, so servers that drop empty
  datagrams behave as they did.
- The socket asks for ICMP errors (IP_RECVERR). An ICMP destination unreachable (port, host,
  net, prohibited...) fails the check; any other queued error does not.
- Without ``require_reply``: silence until connect_timeout is success. Only an ICMP
  unreachable marks the server down.
- With ``require_reply`` alone: any datagram, of any length, is success; silence is failure.
- With ``require_reply HEX``: the reply must also be min_reply_length..max_reply_length long
  (keepalived's defaults 0 and 255), and its first min(len(reply), len(pattern)) bytes must
  match, an X nibble matching anything. A reply shorter than the pattern that matches as far
  as it goes passes, as in keepalived (set min_reply_length to forbid that).

"""

from __future__ import annotations

import logging
import socket
import struct
import time
from typing import Any

from ..log import event
from .checker import CheckResult, Target
from .sockets import open_socket

log = logging.getLogger("director.check.udp")

# layer4.c set_buf(): what keepalived sends when no payload is configured.
FILLER = (b"keepalived check - " * 2)[:32]
DEFAULT_MAX_REPLY = 255             # check_udp.c: max_reply_len = UINT8_MAX
RECV_SIZE = 65535

# Linux values; Python < 3.12 does not export them.
IP_RECVERR = getattr(socket, "IP_RECVERR", 11)
IPV6_RECVERR = getattr(socket, "IPV6_RECVERR", 25)
MSG_ERRQUEUE = getattr(socket, "MSG_ERRQUEUE", 0x2000)
SOL_IP = 0
SOL_IPV6 = 41
EXTENDED_ERR = struct.Struct("=IBBBBII")     # struct sock_extended_err
ORIGIN_ICMP, ORIGIN_ICMP6 = 2, 3
ICMP_DEST_UNREACH, ICMPV6_DEST_UNREACH = 3, 1
UNREACH_CODES = {0: "network", 1: "host", 2: "protocol", 3: "port", 9: "network prohibited",
                 10: "host prohibited", 13: "administratively prohibited"}
UNREACH6_CODES = {0: "no route", 1: "administratively prohibited", 3: "address", 4: "port"}


def parse_pattern(text: str) -> tuple[bytes, bytes]:
    """``require_reply`` hex -> (data, wildcard mask); a mask bit set means "any value",
    an X nibble sets four. Spaces between bytes are allowed, as in keepalived."""
    digits = "".join(text.split())
    if not digits or len(digits) % 2:
        raise ValueError(f"expects an even number of hex digits, got '{text}'")
    data, mask = bytearray(), bytearray()
    for i in range(0, len(digits), 2):
        value = wildcard = 0
        for nibble in digits[i:i + 2]:
            value <<= 4
            wildcard <<= 4
            if nibble in "xX":
                wildcard |= 0xF
            else:
                value |= int(nibble, 16)
        data.append(value)
        mask.append(wildcard)
    return bytes(data), bytes(mask)


def reply_problem(reply: bytes, data: bytes, mask: bytes, min_length: int = 0,
                  max_length: int = DEFAULT_MAX_REPLY) -> str | None:
    """Why ``reply`` fails the pattern, or None when it passes (check_udp_reply)."""
    if not min_length <= len(reply) <= max_length:
        return f"reply of {len(reply)} bytes, outside {min_length}..{max_length}"
    for i in range(min(len(reply), len(data))):
        if (reply[i] ^ data[i]) & ~mask[i] & 0xFF:
            return f"reply byte {i} is {reply[i]:02x}, expected {_shown(data[i], mask[i])}"
    return None


def _shown(value: int, wildcard: int) -> str:
    return "".join("x" if wildcard >> shift & 0xF else f"{value >> shift & 0xF:x}"
                   for shift in (4, 0))


def icmp_unreachable(sock: socket.socket) -> str | None:
    """The error queue after a failed recv(): "port unreachable" and the like for an ICMP
    destination unreachable, None for anything else (layer4.c udp_socket_error, which
    counts other errors, or an empty queue, as success)."""
    sock.setblocking(False)         # an empty queue must not wait
    try:
        _, ancillary, _, _ = sock.recvmsg(64, 1024, MSG_ERRQUEUE)
    except OSError:
        return None
    for level, kind, payload in ancillary:
        if len(payload) < EXTENDED_ERR.size:
            continue
        _, origin, icmp_type, code, _, _, _ = EXTENDED_ERR.unpack_from(payload)
        if (level, kind, origin, icmp_type) == (SOL_IP, IP_RECVERR, ORIGIN_ICMP,
                                                ICMP_DEST_UNREACH):
            return f"ICMP {UNREACH_CODES.get(code, f'code {code}')} unreachable"
        if (level, kind, origin, icmp_type) == (SOL_IPV6, IPV6_RECVERR, ORIGIN_ICMP6,
                                                ICMPV6_DEST_UNREACH):
            return f"ICMPv6 {UNREACH6_CODES.get(code, f'code {code}')} unreachable"
    return None


class UdpCheck:
    kind = "UDP_CHECK"

    def __init__(self, config: Any, target: Target) -> None:
        self.target = target
        payload = getattr(config, "payload", None)
        self.payload = bytes.fromhex(payload) if payload else FILLER
        require = getattr(config, "require_reply", None)
        self.require_reply = bool(require)
        self.pattern = parse_pattern(require) if isinstance(require, str) else None
        minimum = getattr(config, "min_reply_length", None)
        maximum = getattr(config, "max_reply_length", None)
        self.min_length = 0 if minimum is None else minimum
        self.max_length = DEFAULT_MAX_REPLY if maximum is None else maximum

    def check(self) -> CheckResult:
        started = time.monotonic()

        def result(error: str | None = None, **detail) -> CheckResult:
            return CheckResult(error is None, time.monotonic() - started, error, detail=detail)

        target = self.target
        if not target.port:
            return result("no port to check (set connect_port)")
        timeout = target.connect_timeout
        try:
            sock = open_socket(target, socket.SOCK_DGRAM)
        except OSError as exc:
            return result(f"socket: {exc.strerror or exc}")
        with sock:
            try:
                if sock.family == socket.AF_INET6:
                    sock.setsockopt(SOL_IPV6, IPV6_RECVERR, 1)
                else:
                    sock.setsockopt(SOL_IP, IP_RECVERR, 1)
                sock.settimeout(timeout)
                sock.connect((target.host, target.port))
                sent = sock.send(self.payload)
            except TimeoutError:
                return result(f"timeout after {timeout:g} s sending")
            except OSError as exc:
                return result(f"send: {exc.strerror or exc}")
            if sent != len(self.payload):
                return result(f"sent {sent} of {len(self.payload)} bytes")
            try:
                reply = sock.recv(RECV_SIZE)
            except TimeoutError:
                if self.require_reply:
                    return result(f"no reply within {timeout:g} s")
                return result(reply=False)        # silence is success without require_reply
            except OSError as exc:
                unreachable = icmp_unreachable(sock)
                if unreachable:
                    return result(unreachable)
                # keepalived counts an error that is not an ICMP unreachable as success
                event(log, "udp.error_ignored", logging.DEBUG, real_server=target.real_server,
                      error=exc.strerror or str(exc))
                return result(reply=False, ignored_error=exc.strerror or str(exc))
        if self.pattern is not None:
            problem = reply_problem(reply, *self.pattern, self.min_length, self.max_length)
            if problem:
                return result(problem, reply_length=len(reply))
        return result(reply=True, reply_length=len(reply))
