"""VRRP adverts captured from the moment the process starts, so that a BACKUP's master down
timer can count from then rather than from the end of start-up.

A restarted director with the higher priority waits, as BACKUP, one master down interval
(RFC 5798 6.4.2: a lower priority master's adverts are discarded) before it takes its VIPs
back. keepalived starts that wait about 10 ms after exec; director, a Python program, only
once the interpreter, gevent, the configuration and the VRRP modules are loaded (a few
hundred milliseconds): the whole of it came on top of keepalived's time (issue 17). Listening
is what the wait is for, so ``python -m director`` opens raw VRRP sockets first thing (before
gevent and the configuration), joined to 224.0.0.18 / ff02::12 on every interface; when VRRP
starts, each instance these sockets covered starts its timer from that moment, and the
adverts they queued meanwhile are read, in order, as if heard then (``replay``). An instance
they did not cover (another namespace, a VMAC, a custom multicast group, AH, an interface
that came later, a socket bound to a source address that the packet was not sent to) starts
its timer when VRRP starts, as before.

Side effect: for that half second the host is a member of the VRRP group on all its
interfaces (an IGMP/MLD report on each, as keepalived sends for its own)."""

from __future__ import annotations

import os
import socket
import struct
import time
from collections import namedtuple

from .proto import MULTICAST as GROUPS, PROTOCOL

RECEIVE_BUFFER = 1 << 20            # half a second of adverts from many peers, with room
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)
IN_PKTINFO = struct.Struct("=i4s4s")        # ifindex, local address, destination


# One packet as the instance sockets would have read it, with when it arrived: family (4 or
# 6), ifindex, message (the VRRP message; IPv4: the IP header taken off), source,
# destination, ttl, at (time.time() of its arrival: the kernel's timestamp). A namedtuple,
# not typing's NamedTuple: typing's import is a tenth of this path's (quickstart.py).
Heard = namedtuple("Heard", "family ifindex message source destination ttl at")


class EarlyCapture:
    def __init__(self) -> None:
        self.sockets: dict[int, socket.socket] = {}
        self.joined: dict[int, set[str]] = {4: set(), 6: set()}
        self.since: float | None = None          # time.monotonic() when listening began
        self.namespace: int | None = None

    def open(self) -> "EarlyCapture":
        """Best effort: without CAP_NET_RAW, or on any error, nothing is captured."""
        self.since = time.monotonic()
        try:
            self.namespace = os.stat("/proc/self/ns/net").st_ino
            interfaces = [(index, name) for index, name in socket.if_nameindex()
                          if name != "lo"]
        except OSError:
            return self
        for family in (4, 6):
            try:
                sock = self._socket(family)
            except OSError:
                continue
            self.sockets[family] = sock
            for index, name in interfaces:
                try:
                    self._join(sock, family, index)
                except OSError:             # no address of the family, a full group list
                    continue
                self.joined[family].add(name)
        return self

    @staticmethod
    def _socket(family: int) -> socket.socket:
        sock = socket.socket(socket.AF_INET if family == 4 else socket.AF_INET6,
                             socket.SOCK_RAW, PROTOCOL)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
            sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            if family == 4:
                sock.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
            else:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVPKTINFO, 1)
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVHOPLIMIT, 1)
        except OSError:
            sock.close()
            raise
        return sock

    @staticmethod
    def _join(sock: socket.socket, family: int, index: int) -> None:
        if family == 4:
            mreqn = struct.pack("4s4si", socket.inet_aton(GROUPS[4]),
                                socket.inet_aton("0.0.0.0"), index)
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreqn)
        else:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP,
                            socket.inet_pton(socket.AF_INET6, GROUPS[6]) +
                            struct.pack("@I", index))

    def usable(self) -> bool:
        """Listening, and still in the namespace it listened in (net_namespace moves the
        daemon before VRRP starts: what was heard here is another network's)."""
        if not self.sockets:
            return False
        try:
            return os.stat("/proc/self/ns/net").st_ino == self.namespace
        except OSError:
            return False

    def covers(self, ifname: str | None, family: int, group: str | None) -> bool:
        """Whether an instance on this interface would have heard what these sockets did:
        its default multicast group joined on it here, or unicast (heard anywhere)."""
        if family not in self.sockets:
            return False
        if group is None:
            return True
        return ifname in self.joined[family] and group == GROUPS[family]

    def drain(self) -> list[Heard]:
        """Everything queued, in arrival order; then the sockets close."""
        heard: list[Heard] = []
        for family, sock in self.sockets.items():
            while True:
                try:
                    data, ancillary, _flags, address = sock.recvmsg(
                        65535, 1024, socket.MSG_DONTWAIT)
                except OSError:                 # nothing more queued (or a broken socket:
                    break                       # what was read stands)
                packet = parse(family, data, ancillary, address)
                if packet is not None:
                    heard.append(packet)
        self.close()
        return sorted(heard, key=lambda packet: packet.at)

    def close(self) -> None:
        for sock in self.sockets.values():
            sock.close()
        self.sockets = {}


def parse(family: int, data: bytes, ancillary: list, address: tuple) -> Heard | None:
    """A packet from recvmsg -> Heard; None when it is too short or lacks its interface."""
    at, ifindex, destination, hop_limit = None, None, "", 0
    for level, kind, value in ancillary:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(value) >= 16:
            seconds, nanoseconds = struct.unpack("@qq", value[:16])
            at = seconds + nanoseconds / 1e9
        elif family == 4 and level == socket.IPPROTO_IP and kind == IP_PKTINFO:
            ifindex = IN_PKTINFO.unpack_from(value)[0]
        elif family == 6 and level == socket.IPPROTO_IPV6 and kind == socket.IPV6_PKTINFO:
            destination = socket.inet_ntop(socket.AF_INET6, value[:16])
            ifindex = struct.unpack_from("@I", value, 16)[0]
        elif family == 6 and level == socket.IPPROTO_IPV6 and kind == socket.IPV6_HOPLIMIT:
            hop_limit = struct.unpack("@i", value[:4])[0]
    if ifindex is None:
        return None
    at = time.time() if at is None else at
    if family == 4:
        from .transport import split_ipv4
        if len(data) < 20:
            return None
        message, source, destination, ttl = split_ipv4(data)
        return Heard(4, ifindex, message, source, destination, ttl, at)
    return Heard(6, ifindex, data, address[0].split("%")[0], destination, hop_limit, at)


def replay(capture: EarlyCapture, sockets: dict, instances: list, dispatch, now: float) -> None:
    """VRRP's start-up (VrrpService.start): the instances ``capture`` covered count their
    master down timer from its start, and hear, in order, what it queued before their own
    sockets opened; the others start as before. ``sockets``: the service's, by key
    (interface, family, source, protocol, group, vrf); ``dispatch(key, message, source,
    destination, ttl)``: the receivers' check of a packet, -> (instance, advert) or None."""
    import logging                      # not at the top: this module loads before gevent's
                                        # patching, logging's locks after it
    from ..log import event
    if not capture.usable():
        capture.close()
        return
    covered = [key for key in sockets if key[3] == PROTOCOL and key[5] is None and
               capture.covers(key[0], key[1], key[4])]
    starting = [instance for instance in instances if not instance.started and
                instance.vmac is None and instance.socket_keys[0] in covered]
    for instance in starting:
        instance.listening_since = capture.since
    names = dict(socket.if_nameindex())
    for packet in capture.drain():
        key = next((key for key in covered if _read_by(key, sockets[key], packet, names)), None)
        found = None if key is None else dispatch(key, packet.message, packet.source,
                                                  packet.destination, packet.ttl)
        if found is not None and found[0] in starting:
            found[0].heard_early.append(found[1])
    for instance in starting:
        event(logging.getLogger("director.vrrp"), "vrrp.listening_since_exec",
              instance=instance.name,
              seconds=round(now - capture.since, 3), adverts=len(instance.heard_early))


def _read_by(key: tuple, sock, packet: Heard, names: dict[int, str]) -> bool:
    """Whether the socket ``key`` would have read ``packet``, had it been open: same family
    and interface (an unbound one reads every interface's), addressed to its source when it
    is bound to one, and from before it opened (what came later, it read itself)."""
    return key[1] == packet.family and \
        (key[0] is None or names.get(packet.ifindex) == key[0]) and \
        (key[2] is None or packet.destination in (key[2], key[4])) and \
        packet.at < sock.opened_at


CAPTURE = EarlyCapture()    # opened by ``python -m director`` (__main__), read by VrrpService
