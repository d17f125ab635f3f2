"""VRRP advertisements: a pure codec for VRRPv2 (RFC 3768) and VRRPv3 (RFC 5798), IPv4 and
IPv6, the version a parameter of one class, and the receive checks.

    VRRPv2                                   VRRPv3
    0      4      8          16         24   0      4      8          16          24
    |ver=2 |type=1| VRID     | priority | count |ver=3 |type=1| VRID | priority  | count
    | auth type   | adv int  | checksum         | rsvd | max adver int (cs) | checksum
    | IPv4 addresses ...                        | IPv4 or IPv6 addresses ...
    | authentication data (8 bytes)             |

v2's checksum covers the VRRP message alone; v3's adds the IP pseudo-header (RFC 5798 5.2.8).
v3's reserved bits are ignored on reception (RFC 5798 5.2.6), as keepalived does.
The receive checks run in one fixed order and each failure is a counted reason (keepalived's
SIGUSR2 statistics are the model), so the dashboard can say why a peer is ignored.
"""

from __future__ import annotations

import hmac
import ipaddress
import struct
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .proto import MULTICAST, PROTOCOL, TTL  # noqa: F401 (the codec's names too)

if TYPE_CHECKING:
    from .ah import Wrapped

TYPE_ADVERTISEMENT = 1
AUTH_NONE, AUTH_PASS, AUTH_AH = 0, 1, 2
AUTH_DATA_LEN = 8
HEADER_LEN = 8
MAX_V3_INTERVAL_CS = 0xFFF

# Drop reasons, in the order the checks run (and the counters' label values).
LENGTH, TTL_REASON, VERSION, AUTH_INVALID_TYPE, AUTH_TYPE_MISMATCH, AUTH_FAILURE, TYPE, \
    INTERVAL, CHECKSUM, VRID = ("length", "ttl", "version", "auth_invalid_type",
                                "auth_type_mismatch", "auth_failure", "type", "interval",
                                "checksum", "vrid")
# After the vrid: keepalived's check_unicast_src and (2.3.4+) owner_ignore_adverts.
UNICAST_SRC, OWNER_IGNORE = "unicast_src", "owner_ignore"
# A correct AH advert whose sequence number is not above the last one (a replay, or a peer
# restarted from 0 while ours went on): counted by the receiver, which holds the counter.
AH_REPLAY = "ah_replay"
# Accepted, but counted and logged (address_list is a drop for an advert with no address);
# old_checksum: a v3 unicast advert checksummed as keepalived < 2.2.0 did (old_unicast_checksum).
ADDRESS_LIST, INTERVAL_ADOPTED, OLD_CHECKSUM = "address_list", "interval_adopted", "old_checksum"


class Malformed(ValueError):
    """A packet that cannot even be read; ``reason`` is its drop reason."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


@dataclass(frozen=True)
class Advert:
    """A VRRP advertisement's content, whatever its version (RFC 3768 / 5798)."""

    version: int
    vrid: int
    priority: int
    advert_int: float                 # seconds (v2 whole seconds, v3 in steps of 10 ms)
    addresses: tuple[str, ...]
    family: int = 4
    auth_type: int = AUTH_NONE        # v2 only
    auth_data: bytes = b""            # v2 only: what the wire carries (8 bytes)
    type: int = TYPE_ADVERTISEMENT
    checksum: int = 0                 # as received; encode() computes its own


def internet_checksum(data: bytes) -> int:
    """RFC 1071: one's complement of the one's complement sum of 16-bit words."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def pseudo_header(family: int, src: str, dst: str, length: int) -> bytes:
    if family == 4:
        return ipaddress.IPv4Address(src).packed + ipaddress.IPv4Address(dst).packed + \
            struct.pack("!BBH", 0, PROTOCOL, length)
    return ipaddress.IPv6Address(src).packed + ipaddress.IPv6Address(dst).packed + \
        struct.pack("!I3xB", length, PROTOCOL)


def _sum_input(message: bytes, version: int, family: int, src: str | None,
               dst: str | None, as_v2: bool = False) -> bytes:
    if version == 2 or (as_v2 and family == 4):
        return message
    if src is None or dst is None:
        raise ValueError("a VRRPv3 checksum needs the source and destination addresses")
    return pseudo_header(family, src, dst, len(message)) + message


def pass_auth_data(password: str) -> bytes:
    """The 8 bytes a PASS password occupies: only its first 8 characters count."""
    return password.encode()[:AUTH_DATA_LEN].ljust(AUTH_DATA_LEN, b"\0")


def encode(advert: Advert, src: str | None = None, dst: str | None = None,
           as_v2: bool = False) -> bytes:
    """The VRRP message with a correct checksum (v3 needs ``src`` and ``dst``, the
    pseudo-header's: old_unicast_checksum passes the multicast group as ``dst``).
    ``as_v2``: a v3 IPv4 checksum over the message alone (v3_checksum_as_v2)."""
    family = advert.family
    size = 4 if family == 4 else 16
    if not 0 <= len(advert.addresses) <= 255:
        raise ValueError("an advert carries at most 255 addresses")
    packed = b"".join(ipaddress.ip_address(a).packed for a in advert.addresses)
    if any(len(ipaddress.ip_address(a).packed) != size for a in advert.addresses):
        raise ValueError(f"every address of an IPv{family} advert must be IPv{family}")
    first = (advert.version << 4) | advert.type
    if advert.version == 2:
        if family != 4:
            raise ValueError("VRRPv2 has no IPv6")
        interval = max(1, min(255, round(advert.advert_int)))
        header = struct.pack("!BBBBBBH", first, advert.vrid, advert.priority,
                             len(advert.addresses), advert.auth_type, interval, 0)
        auth = advert.auth_data.ljust(AUTH_DATA_LEN, b"\0")[:AUTH_DATA_LEN]
        message = header + packed + auth
    elif advert.version == 3:
        centiseconds = max(1, min(MAX_V3_INTERVAL_CS, round(advert.advert_int * 100)))
        header = struct.pack("!BBBBHH", first, advert.vrid, advert.priority,
                             len(advert.addresses), centiseconds, 0)
        message = header + packed
    else:
        raise ValueError(f"VRRP version {advert.version} does not exist")
    checksum = internet_checksum(_sum_input(message, advert.version, family, src, dst, as_v2))
    return message[:6] + struct.pack("!H", checksum) + message[8:]


def decode(message: bytes, family: int) -> Advert:
    """Read a VRRP message; raises Malformed for what cannot be read at all."""
    if len(message) < HEADER_LEN:
        raise Malformed(LENGTH, f"{len(message)} bytes is shorter than a VRRP header")
    first, vrid, priority, count = message[0], message[1], message[2], message[3]
    version, kind = first >> 4, first & 0x0F
    if version not in (2, 3):
        raise Malformed(VERSION, f"version {version}")
    if version == 2 and family == 6:
        raise Malformed(VERSION, "VRRPv2 over IPv6")
    size = 4 if family == 4 else 16
    needed = HEADER_LEN + count * size + (AUTH_DATA_LEN if version == 2 else 0)
    if len(message) < needed:
        raise Malformed(LENGTH, f"{len(message)} bytes for {count} addresses (needs {needed})")
    if len(message) > needed:
        # keepalived drops these too (packet_len_err); nothing legitimate follows the last
        # field, and the checksum would cover bytes no field accounts for.
        raise Malformed(LENGTH, f"{len(message) - needed} bytes after the {needed} of "
                                f"{count} addresses")
    addresses = tuple(str(ipaddress.ip_address(message[HEADER_LEN + i * size:
                                                      HEADER_LEN + (i + 1) * size]))
                      for i in range(count))
    checksum = struct.unpack_from("!H", message, 6)[0]
    if version == 2:
        auth_type, interval = message[4], float(message[5])
        start = HEADER_LEN + count * size
        auth_data = bytes(message[start:start + AUTH_DATA_LEN])
    else:
        auth_type, auth_data = AUTH_NONE, b""
        interval = (struct.unpack_from("!H", message, 4)[0] & MAX_V3_INTERVAL_CS) / 100
    return Advert(version, vrid, priority, interval, addresses, family, auth_type, auth_data,
                  kind, checksum)


@dataclass(frozen=True)
class Expectation:
    """What an instance expects of its peers' adverts."""

    version: int
    advert_int: float
    addresses: frozenset[str]
    auth_type: int = AUTH_NONE
    auth_data: bytes = b""            # pass_auth_data(password) for PASS, the AH key for AH
    check_ttl: bool = True            # multicast: TTL must be 255 (RFC 3768 7.1)
    min_ttl: int | None = None        # unicast peers' optional bounds (keepalived)
    max_ttl: int | None = None
    # check_unicast_src: the peers an advert may come from, each (address, min TTL, max TTL)
    unicast_peers: tuple[tuple[str, int, int], ...] | None = None
    skip_checksum: bool = False       # v3_checksum_as_v2 (IPv4): keepalived verifies none
    old_checksum_group: str | None = None   # v3 unicast: accept this pseudo-header dst too
    owner_ignore: bool = False        # an address owner with vrrp_owner_ignore_adverts
    unicast: bool = False             # AH: the TTL is left out of the ICV for unicast peers


@dataclass(frozen=True)
class Received:
    advert: Advert
    notes: tuple[str, ...] = ()       # accepted, but counted: address_list, interval_adopted


@dataclass(frozen=True)
class Dropped:
    reason: str
    detail: str
    vrid: int | None = None


@dataclass
class ReceiveStats:
    """Per-reason counters of what a receiver saw (keepalived's SIGUSR2 figures)."""

    received: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    noted: dict[str, int] = field(default_factory=dict)

    def count(self, outcome: "Received | Dropped") -> None:
        self.received += 1
        if isinstance(outcome, Dropped):
            self.dropped[outcome.reason] = self.dropped.get(outcome.reason, 0) + 1
        else:
            for note in outcome.notes:
                self.noted[note] = self.noted.get(note, 0) + 1


def check_received(message: bytes, family: int, src: str, dst: str, ttl: int,
                   expectations: dict[int, Expectation],
                   ah: Wrapped | None = None) -> Received | Dropped:
    """Every receive check, in this order: length, TTL, version, authentication (v2), type,
    advert interval, checksum, vrid, owner_ignore, unicast source (and that peer's TTL
    bounds), no address; then a differing address list is noted and accepted.
    ``expectations`` maps our vrids to what each instance expects; ``ah`` is the AH header
    the message came in (IP protocol 51: ah.check_received), None for plain VRRP."""
    try:
        advert = decode(message, family)
    except Malformed as exc:
        vrid = message[1] if len(message) > 1 else None
        return Dropped(exc.reason, str(exc), vrid)
    vrid = advert.vrid
    expect = expectations.get(vrid)
    if expect is not None:
        if expect.check_ttl and ttl != TTL:
            return Dropped(TTL_REASON, f"TTL {ttl}, multicast adverts must have 255", vrid)
        if (expect.min_ttl is not None and ttl < expect.min_ttl) or \
                (expect.max_ttl is not None and ttl > expect.max_ttl):
            return Dropped(TTL_REASON, f"TTL {ttl} outside the peer's bounds", vrid)
        if advert.version != expect.version:
            return Dropped(VERSION, f"version {advert.version}, we run {expect.version}", vrid)
        if advert.version == 2:
            dropped = _check_auth(advert, expect, ah)
            if dropped is not None:
                return dropped
    if advert.type != TYPE_ADVERTISEMENT:
        return Dropped(TYPE, f"type {advert.type} is not an advertisement", vrid)
    if advert.advert_int <= 0:
        # Adopted (v3), it would make a backup's master-down interval its skew alone: it
        # would take over after every advert of its master. v3 has no authentication.
        return Dropped(INTERVAL, "advert interval 0", vrid)
    notes: list[str] = []
    if expect is not None and abs(advert.advert_int - expect.advert_int) > 1e-9:
        if advert.version == 2:
            return Dropped(INTERVAL, f"advert interval {advert.advert_int:g} s, we use "
                                     f"{expect.advert_int:g} s", vrid)
        notes.append(INTERVAL_ADOPTED)   # v3: the backup follows the master's interval
    dropped = _check_checksum(message, advert, family, src, dst, expect, notes)
    if dropped is not None:
        return dropped
    if expect is None:
        return Dropped(VRID, f"no instance of ours has vrid {vrid}", vrid)
    if expect.owner_ignore:
        return Dropped(OWNER_IGNORE, "we own the addresses (vrrp_owner_ignore_adverts)", vrid)
    if expect.unicast_peers is not None:
        peer = next((p for p in expect.unicast_peers if p[0] == src), None)
        if peer is None:
            return Dropped(UNICAST_SRC, f"{src} is not a unicast peer", vrid)
        if not peer[1] <= ttl <= peer[2]:
            return Dropped(TTL_REASON, f"TTL {ttl} not in {peer[1]}-{peer[2]} for {src}", vrid)
    if not advert.addresses and expect.addresses:
        # RFC 5798 5.2.5: at least one address; keepalived drops a count unlike its own.
        return Dropped(ADDRESS_LIST, "an advert with no address", vrid)
    if frozenset(advert.addresses) != expect.addresses:
        notes.append(ADDRESS_LIST)
    return Received(advert, tuple(notes))


def _check_checksum(message: bytes, advert: Advert, family: int, src: str, dst: str,
                    expect: Expectation | None, notes: list[str]) -> Dropped | None:
    if expect is not None and expect.skip_checksum and advert.version == 3 and family == 4:
        return None
    try:
        summed = _sum_input(message, advert.version, family, src, dst)
    except ValueError as exc:
        return Dropped(CHECKSUM, str(exc), advert.vrid)
    if internet_checksum(summed) == 0:
        return None
    group = expect.old_checksum_group if expect is not None else None
    if group and advert.version == 3 and family == 4 and dst != group and \
            internet_checksum(_sum_input(message, 3, 4, src, group)) == 0:
        notes.append(OLD_CHECKSUM)
        return None
    return Dropped(CHECKSUM, f"bad checksum 0x{advert.checksum:04x}", advert.vrid)


def _check_auth(advert: Advert, expect: Expectation,
                ah: Wrapped | None) -> Dropped | None:
    vrid = advert.vrid
    if (ah is not None) != (expect.auth_type == AUTH_AH):     # keepalived's first check
        return Dropped(AUTH_TYPE_MISMATCH, "an AH header, we use none" if ah is not None
                       else "no AH header, we use AH", vrid)
    if advert.auth_type not in (AUTH_NONE, AUTH_PASS, AUTH_AH):
        return Dropped(AUTH_INVALID_TYPE, f"unknown authentication type {advert.auth_type}", vrid)
    if advert.auth_type != expect.auth_type:
        return Dropped(AUTH_TYPE_MISMATCH, f"authentication type {advert.auth_type}, we use "
                                           f"{expect.auth_type}", vrid)
    if advert.auth_type == AUTH_PASS and \
            not hmac.compare_digest(advert.auth_data, expect.auth_data):
        return Dropped(AUTH_FAILURE, "wrong password", vrid)
    if ah is not None:
        wrong = ah.verify(expect.auth_data, expect.unicast)
        if wrong is not None:
            return Dropped(AUTH_FAILURE, wrong, vrid)
    return None
