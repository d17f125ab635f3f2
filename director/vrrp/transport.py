"""Raw IP sockets for VRRP (protocol 112): one per (interface, family), shared by the
instances on that interface, which the receiver tells apart by vrid.

IPv4: the kernel builds the IP header; TTL 255 for multicast and unicast (RFC 3768 7.1);
224.0.0.18 joined on the interface; a received packet comes with its IP header, from which
the TTL and the destination are read. IPv6: the kernel fills and verifies the checksum
(IPV6_CHECKSUM at offset 6, RFC 5798 5.2.8); hop limit and destination come as ancillary
data. Multicast loop is off: an instance never hears itself.
"""

from __future__ import annotations

import socket
import struct
import time

from .proto import MULTICAST, PROTOCOL, TTL

SO_BINDTODEVICE = getattr(socket, "SO_BINDTODEVICE", 25)
IPV6_CHECKSUM = getattr(socket, "IPV6_CHECKSUM", 7)
RECEIVE_BUFFER = 65535
TOS_INTERNETWORK_CONTROL = 0xC0   # what keepalived marks adverts with (DSCP CS6)


class VrrpSocket:
    """``open()`` does the I/O; constructing one touches nothing.

    A unicast instance without an interface (``ifname`` None) has a socket bound to no
    interface, the routing table choosing where adverts go, or, with ``vrf`` (keepalived's
    vrrp_instance vrf), bound to that VRF device so that its table does; no multicast."""

    def __init__(self, ifname: str | None, family: int, source: str | None = None,
                 protocol: int = PROTOCOL, group: str | None = None,
                 vrf: str | None = None) -> None:
        self.ifname = ifname
        self.family = family
        self.source = source
        self.protocol = protocol              # PROTOCOL, or ah.PROTOCOL (IPv4 only)
        self.group = group or MULTICAST[family]      # joined: mcast_dst_ip or the global
        self.vrf = vrf
        self.sock: socket.socket | None = None
        self.ifindex = 0
        self.opened_at = 0.0            # time.time(): what came before, it did not read

    def open(self) -> "VrrpSocket":
        self.opened_at = time.time()
        self.ifindex = socket.if_nametoindex(self.ifname) if self.ifname else 0
        v4 = self.family == 4
        sock = socket.socket(socket.AF_INET if v4 else socket.AF_INET6, socket.SOCK_RAW,
                             self.protocol)
        try:
            (self._setup_v4 if v4 else self._setup_v6)(sock)
        except OSError:
            sock.close()
            raise
        self.sock = sock
        return self

    def _bind_device(self, sock: socket.socket) -> None:
        device = self.ifname or self.vrf
        if device:
            sock.setsockopt(socket.SOL_SOCKET, SO_BINDTODEVICE, device.encode())

    def _setup_v4(self, sock: socket.socket) -> None:
        self._bind_device(sock)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, TTL)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, TTL)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 0)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, TOS_INTERNETWORK_CONTROL)
        if self.ifname:
            local = socket.inet_aton(self.source or "0.0.0.0")
            mreqn = struct.pack("4s4si", socket.inet_aton(self.group), local, self.ifindex)
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, mreqn)
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreqn)
        if self.protocol != PROTOCOL:
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_HDRINCL, 1)
        if self.source:
            sock.bind((self.source, 0))

    def _setup_v6(self, sock: socket.socket) -> None:
        self._bind_device(sock)
        sock.setsockopt(socket.IPPROTO_IPV6, IPV6_CHECKSUM, 6)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, TTL)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, TTL)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_LOOP, 0)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_TCLASS, TOS_INTERNETWORK_CONTROL)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVHOPLIMIT, 1)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVPKTINFO, 1)
        if self.ifname:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, self.ifindex)
            group = socket.inet_pton(socket.AF_INET6, self.group) + \
                struct.pack("@I", self.ifindex)
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, group)
        if self.source:
            sock.bind((self.source, 0, 0, self.ifindex))

    def send(self, message: bytes, destination: str, ttl: int | None = None,
             source: str | None = None) -> None:
        """``ttl``: this packet's TTL / hop limit (unicast_ttl), else the socket's 255.
        ``source`` (IPv6): the address the advert must come from when the socket is not
        bound to one: the interface's own link-local (RFC 5798 5.1.2.1). Left to the
        kernel, a link-local VIP once up could be picked (the VRRPv3 checksum then covers
        an address the peers do not know, and strict mode's own table drops it)."""
        ancillary = [] if ttl is None else [
            (socket.IPPROTO_IP, socket.IP_TTL, struct.pack("@i", ttl)) if self.family == 4
            else (socket.IPPROTO_IPV6, socket.IPV6_HOPLIMIT, struct.pack("@i", ttl))]
        if self.family == 4:
            self.sock.sendmsg([message], ancillary, 0, (destination, 0))
        else:
            if source and not self.source:
                ancillary.append((socket.IPPROTO_IPV6, socket.IPV6_PKTINFO,
                                  socket.inet_pton(socket.AF_INET6, source) +
                                  struct.pack("@I", self.ifindex)))
            scope = self.ifindex if _scoped(destination) else 0
            self.sock.sendmsg([message], ancillary, 0, (destination, 0, 0, scope))

    def set_receive_buffer(self, size: int) -> None:
        """SO_RCVBUF (vrrp_rx_bufs_policy, kernel_rx_buf_size); 0 leaves it as it is."""
        if size and self.sock is not None:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)

    def receive(self) -> tuple[bytes, str, str, int]:
        """Blocks (cooperatively under gevent) for the next packet:
        (VRRP message, source, destination, TTL or hop limit); on an AH socket the whole IPv4
        packet in place of the message."""
        if self.family == 4:
            packet, _ = self.sock.recvfrom(RECEIVE_BUFFER)
            if self.protocol != PROTOCOL:
                return (packet,) + split_ipv4(packet)[1:]
            return split_ipv4(packet)
        data, ancillary, _flags, address = self.sock.recvmsg(
            RECEIVE_BUFFER, socket.CMSG_SPACE(20) + socket.CMSG_SPACE(4))
        destination, hop_limit = "", 0
        for level, kind, value in ancillary:
            if level == socket.IPPROTO_IPV6 and kind == socket.IPV6_PKTINFO:
                destination = socket.inet_ntop(socket.AF_INET6, value[:16])
            elif level == socket.IPPROTO_IPV6 and kind == socket.IPV6_HOPLIMIT:
                hop_limit = struct.unpack("@i", value[:4])[0]
        source = address[0].split("%")[0]
        return data, source, destination, hop_limit

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


def _scoped(address: str) -> bool:
    """A link-local (fe80::/10) or multicast (ff00::/8) IPv6 address, which needs the
    interface as its scope (without ipaddress: this module is on the start-up path)."""
    head = int(socket.inet_pton(socket.AF_INET6, address)[:2].hex(), 16)
    return head >> 8 == 0xFF or head & 0xFFC0 == 0xFE80


def split_ipv4(packet: bytes) -> tuple[bytes, str, str, int]:
    """An IPv4 packet as a raw socket returns it -> (payload, source, destination, TTL).
    A packet too short for its own header yields an empty payload (counted as 'length')."""
    if len(packet) < 20:
        return b"", "0.0.0.0", "0.0.0.0", 0
    header = (packet[0] & 0x0F) * 4
    total = struct.unpack_from("!H", packet, 2)[0]
    source = socket.inet_ntoa(packet[12:16])
    destination = socket.inet_ntoa(packet[16:20])
    return packet[header:max(header, min(total, len(packet)))], source, destination, packet[8]


IGMP_LINK_LOCAL_REPORTS = "/proc/sys/net/ipv4/igmp_link_local_mcast_reports"


class LocalIgmp:
    """disable_local_igmp: no IGMP reports for link-local groups (224.0.0.18) while we run;
    the value found is put back on stop (keepalived's set/reset_disable_local_igmp)."""

    def __init__(self, path: str = IGMP_LINK_LOCAL_REPORTS) -> None:
        self.path = path
        self.saved: str | None = None

    def disable(self) -> None:
        with open(self.path, "r+", encoding="ascii") as handle:
            value = handle.read().strip()
            if value != "0":
                handle.seek(0)
                handle.write("0")
                self.saved = value

    def restore(self) -> None:
        if self.saved is not None:
            with open(self.path, "w", encoding="ascii") as handle:
                handle.write(self.saved)
            self.saved = None
