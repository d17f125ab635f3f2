"""IPsec AH around VRRPv2 adverts, as keepalived 2.2.7 sends and checks it (RFC 2402's header,
RFC 2085's HMAC-MD5-96; no security association, no kernel IPsec: both ends build and check it
themselves). A pure codec, and the sequence counter's rules.

    IPv4 header (protocol 51) | AH (24 bytes) | VRRPv2 message (auth type 2, auth data zero)

    AH: next header 112 | payload length 4 | reserved 0 | SPI = the sender's IPv4 address |
        sequence number | ICV: the first 12 bytes of HMAC-MD5(key, what follows)

The ICV covers the IP header with its mutable fields zeroed (TOS, flags + fragment offset,
header checksum, and the TTL for a unicast instance only: keepalived keeps a multicast advert's
TTL 255 in the hash), the AH header with a zero ICV, and the VRRP message. The key is the
password as VRRPv2 carries it: its first 8 bytes, zero-padded. The identification field is in
the hash, so the sender fills it (never 0: the kernel would replace a 0).

AH exists for VRRPv2 over IPv4 only: keepalived refuses it with VRRPv3 ("does not support
authentication") and with IPv6, and sends such an instance's adverts unauthenticated.
"""

from __future__ import annotations

import hashlib
import hmac
import socket
import struct
from dataclasses import dataclass

from .packet import LENGTH, Dropped, Expectation, Received, internet_checksum
from .packet import PROTOCOL as VRRP_PROTOCOL
from .packet import check_received as check_plain

PROTOCOL = 51                  # IPPROTO_AH
HEADER_LEN = 24                # next header .. ICV (keepalived's ipsec_ah_t)
ICV_LEN = 12                   # HMAC-MD5-96 (RFC 2403)
PAYLOAD_LEN = 4                # the AH length field: 32-bit words minus 2 (RFC 2402 2.2)
IP_HEADER_LEN = 20
TOS_INTERNETWORK_CONTROL = 0xC0
SEQUENCE_LIMIT = 0xFFFFFFFD    # keepalived stops counting past this ("cycled")


def applies(version: int, family: int) -> bool:
    """Whether an instance's authentication (AH or PASS) is used: VRRPv2 over IPv4 only
    (-t warns otherwise, as keepalived does)."""
    return version == 2 and family == 4


@dataclass(frozen=True)
class Wrapped:
    """An AH-wrapped VRRP packet as received: what the ICV is checked against."""

    ip_header: bytes           # with options, as received
    spi: int
    sequence: int
    icv: bytes
    message: bytes             # the VRRP message after the AH header

    def verify(self, key: bytes, unicast: bool) -> str | None:
        """None when the ICV and the SPI are right, else why not (keepalived's two auth
        failures: the ICV first, so that nothing in a forged packet is believed)."""
        ah = struct.pack("!BBHII", VRRP_PROTOCOL, PAYLOAD_LEN, 0, self.spi, self.sequence)
        if not hmac.compare_digest(icv(self.ip_header, ah, self.message, key, unicast),
                                   self.icv):
            return "wrong AH ICV (another password, or a field changed on the way)"
        if struct.pack("!I", self.spi) != self.ip_header[12:16]:
            return f"AH SPI 0x{self.spi:08x} is not the source address"
        return None


def icv(ip_header: bytes, ah_header: bytes, message: bytes, key: bytes, unicast: bool) -> bytes:
    """HMAC-MD5-96 over the IP header (mutable fields zeroed), the AH header (ICV zeroed) and
    the VRRP message."""
    header = bytearray(ip_header)
    header[1] = 0                          # TOS
    header[6:8] = b"\0\0"                  # flags, fragment offset
    header[10:12] = b"\0\0"                # header checksum
    if unicast:
        header[8] = 0                      # TTL: routers on the way decrement it
    zeroed = ah_header[:12] + bytes(ICV_LEN)
    return hmac.new(key, bytes(header) + zeroed + message, hashlib.md5).digest()[:ICV_LEN]


def wrap(message: bytes, src: str, dst: str, *, sequence: int, ident: int, key: bytes,
         ttl: int = 255, unicast: bool = False) -> bytes:
    """The whole IPv4 packet (IP header + AH + VRRP message) to send with IP_HDRINCL, as
    keepalived builds it: TOS 0xc0, no DF, the given identification and TTL."""
    source = socket.inet_aton(src)
    total = IP_HEADER_LEN + HEADER_LEN + len(message)
    header = struct.pack("!BBHHHBBH4s4s", 0x45, TOS_INTERNETWORK_CONTROL, total, ident, 0, ttl,
                         PROTOCOL, 0, source, socket.inet_aton(dst))
    ah = struct.pack("!BBH4sI", VRRP_PROTOCOL, PAYLOAD_LEN, 0, source, sequence) + bytes(ICV_LEN)
    digest = icv(header, ah, message, key, unicast)
    header = header[:10] + struct.pack("!H", internet_checksum(header)) + header[12:]
    return header + ah[:12] + digest + message


class NotVrrp(ValueError):
    """An AH packet that does not carry VRRP (other IPsec traffic): not ours to count."""


def unwrap(packet: bytes) -> Wrapped:
    """Split an IPv4 packet of protocol 51 as a raw socket returns it. Raises ValueError when
    it is too short for its headers, NotVrrp when the AH protects another protocol."""
    if len(packet) < IP_HEADER_LEN:
        raise ValueError(f"{len(packet)} bytes is shorter than an IPv4 header")
    ihl = (packet[0] & 0x0F) * 4
    total = min(struct.unpack_from("!H", packet, 2)[0], len(packet))
    if ihl < IP_HEADER_LEN or total < ihl + HEADER_LEN:
        raise ValueError(f"{total} bytes is shorter than the IPv4 and AH headers")
    next_header, _length, _reserved, spi, sequence = struct.unpack_from("!BBHII", packet, ihl)
    if next_header != VRRP_PROTOCOL:
        raise NotVrrp(f"AH for protocol {next_header}")
    start = ihl + HEADER_LEN
    return Wrapped(bytes(packet[:ihl]), spi, sequence, bytes(packet[start - ICV_LEN:start]),
                   bytes(packet[start:total]))


def check_received(packet: bytes, src: str, dst: str, ttl: int,
                   expectations: dict[int, Expectation]
                   ) -> tuple[Received | Dropped | None, Wrapped | None]:
    """packet.check_received for what an AH socket returns, the whole IPv4 packet:
    (outcome, its AH header). The outcome is None for AH around another protocol (IPsec
    traffic that is not VRRP: not ours to count). The sequence number is the receiver's to
    check: it holds the instance's counter."""
    try:
        wrapped = unwrap(packet)
    except NotVrrp:
        return None, None
    except ValueError as exc:
        return Dropped(LENGTH, str(exc), None), None
    return check_plain(wrapped.message, 4, src, dst, ttl, expectations, ah=wrapped), wrapped


class Sequence:
    """keepalived's one AH counter per instance, for what it sends and what it accepts: an
    advert is accepted only with a sequence number above the counter, which then takes it;
    each advert sent carries the counter plus one. So a BACKUP that takes over goes on from
    its master's last number, and the peers accept it. It starts at 0 with the process (a
    restarted peer is heard again once its numbers pass ours, or when it becomes BACKUP and
    follows ours) and survives a reload. Past 0xFFFFFFFD it stops ("cycled": 136 years at
    one advert a second) until the instance next becomes MASTER, which restarts it at 0."""

    def __init__(self) -> None:
        self.number = 0
        self.cycled = False

    def next(self) -> int:
        if self.number > SEQUENCE_LIMIT:
            self.cycled = True
        else:
            self.number += 1
        return self.number

    def accept(self, number: int) -> bool:
        if number <= self.number:
            return False
        self.number = number
        self.cycled = False
        return True

    def becoming_master(self) -> None:
        if self.cycled:
            self.number, self.cycled = 0, False
