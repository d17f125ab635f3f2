"""DNS_CHECK: one query over UDP; the server is healthy if it answers with RCODE NOERROR.

keepalived's rules (check_dns.c), which a migrated configuration expects:

- The query has a random id, RD set, one question ``name``/``type`` class IN; the default is
  SOA for the root (an empty name, or "."). A trailing dot is allowed.
- Within connect_timeout of sending (one deadline for the whole exchange, not per read),
  a datagram of at least a header's 12 bytes, with our id and QR set, must arrive. Shorter
  ones, other ids and queries are skipped and the wait goes on.
- That reply passes if its RCODE is NOERROR. Nothing else is looked at: an empty answer
  section (NODATA) passes, so "does this name resolve" is not what keepalived checks.
- A read error (ICMP port unreachable: ECONNREFUSED on the connected socket) fails at once.
"""

from __future__ import annotations

import logging
import secrets
import socket
import struct
import time
from typing import Any

from ..log import event
from .checker import CheckResult, Target
from .sockets import open_socket

log = logging.getLogger("director.check.dns")

TYPES = {"A": 1, "NS": 2, "CNAME": 5, "SOA": 6, "MX": 15, "TXT": 16, "AAAA": 28,
         "RRSIG": 46, "DNSKEY": 48}
RCODES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED",
          6: "YXDOMAIN", 7: "YXRRSET", 8: "NXRRSET", 9: "NOTAUTH", 10: "NOTZONE"}
HEADER = struct.Struct("!HHHHHH")       # id, flags, qdcount, ancount, nscount, arcount
FLAG_QR = 0x8000
FLAG_RD = 0x0100
CLASS_IN = 1
DNS_BUFFER_SIZE = 768                   # keepalived's; only the header is read anyway


def encode_name(name: str) -> bytes:
    """``www.example.org`` -> wire labels; "" and "." are the root."""
    if name in ("", "."):
        return b"\0"
    wire = bytearray()
    for label in name.removesuffix(".").split("."):
        raw = label.encode()
        if not raw:
            raise ValueError(f"'{name}' has an empty label")
        if len(raw) > 63:
            raise ValueError(f"label '{label}' is longer than 63 bytes")
        wire += bytes([len(raw)]) + raw
    return bytes(wire + b"\0")


def build_query(name: str, qtype: str | int, ident: int | None = None) -> bytes:
    """The query keepalived sends: ``ident`` (random when None), RD, one question IN."""
    code = qtype if isinstance(qtype, int) else TYPES[qtype.upper()]
    if ident is None:
        ident = secrets.randbits(16)
    return HEADER.pack(ident, FLAG_RD, 1, 0, 0, 0) + encode_name(name) + \
        struct.pack("!HH", code, CLASS_IN)


def parse_header(message: bytes) -> tuple[int, int, int, int, int, int] | None:
    """(id, flags, qdcount, ancount, nscount, arcount), or None if shorter than a header."""
    if len(message) < HEADER.size:
        return None
    return HEADER.unpack_from(message)


def reply_rcode(reply: bytes, ident: int) -> int | None:
    """The RCODE of the reply to query ``ident``, or None for a datagram keepalived skips
    (too short, another id, not a response)."""
    header = parse_header(reply)
    if header is None or header[0] != ident or not header[1] & FLAG_QR:
        return None
    return header[1] & 0xF


def rcode_name(rcode: int) -> str:
    return RCODES.get(rcode, f"RCODE {rcode}")


class DnsCheck:
    kind = "DNS_CHECK"

    def __init__(self, config: Any, target: Target) -> None:
        self.target = target
        self.qtype = (getattr(config, "type", None) or "SOA").upper()
        self.name = getattr(config, "name", None) or ""

    def question(self) -> str:
        return f"{self.qtype} {self.name or '.'}"

    def check(self) -> CheckResult:
        started = time.monotonic()
        target = self.target
        timeout = target.connect_timeout
        deadline = started + timeout

        def result(error: str | None = None, reply_error: str | None = None,
                   **detail) -> CheckResult:
            return CheckResult(error is None, time.monotonic() - started, error, detail=detail,
                               reply_error=reply_error)

        if not target.port:
            return result("no port to check (set connect_port)")
        try:
            query = build_query(self.name, self.qtype)
        except (ValueError, KeyError) as exc:
            return result(f"cannot build the query: {exc}")
        ident = HEADER.unpack_from(query)[0]
        try:
            sock = open_socket(target, socket.SOCK_DGRAM)
        except OSError as exc:
            return result(f"socket: {exc.strerror or exc}")
        with sock:
            try:
                sock.settimeout(timeout)
                # connected, so the kernel drops datagrams from other sources for us
                sock.connect((target.host, target.port))
                sent = sock.send(query)
            except TimeoutError:
                return result(f"timeout after {timeout:g} s sending {self.question()}")
            except OSError as exc:
                return result(f"send: {exc.strerror or exc}")
            if sent != len(query):
                return result(f"sent {sent} of {len(query)} bytes")
            malformed = 0           # too short or not a response: named if no answer comes
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return result(f"timeout after {timeout:g} s waiting for the answer to "
                                  f"{self.question()}"
                                  + (f" ({malformed} malformed replies)" if malformed else ""),
                                  "malformed" if malformed else None)
                sock.settimeout(remaining)
                try:
                    reply = sock.recv(DNS_BUFFER_SIZE)
                except TimeoutError:
                    continue                    # the deadline test above reports it
                except OSError as exc:
                    return result(f"read: {exc.strerror or exc}")
                rcode = reply_rcode(reply, ident)
                if rcode is None:
                    header = parse_header(reply)
                    malformed += header is None or not header[1] & FLAG_QR
                    event(log, "dns.skipped", logging.DEBUG, real_server=target.real_server,
                          length=len(reply))
                    continue
                answers = HEADER.unpack_from(reply)[3]
                if rcode != 0:
                    return result(f"rcode {rcode_name(rcode)} for {self.question()}",
                                  rcode=rcode_name(rcode), answers=answers)
                return result(rcode="NOERROR", answers=answers)
