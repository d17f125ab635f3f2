"""Gratuitous ARP (IPv4) and unsolicited Neighbour Advertisements (IPv6) for a VRRP MASTER's
virtual addresses, so that neighbours repoint their caches at once after a failover
(RFC 5798 6.4.3 / 8.1; RFC 5227 3, RFC 4861 7.2.6).

What goes on the wire is what keepalived sends (keepalived/vrrp/vrrp_arp.c and vrrp_ndisc.c):

* GARP: an ARP *request* (opcode 1) in a broadcast Ethernet frame, sender = our MAC + VIP,
  target IP = VIP, target MAC = the interface's broadcast address (ff:ff:ff:ff:ff:ff on
  Ethernet, keepalived's ``hw_addr_bcast``), not 00:00:00:00:00:00.
* NA: IPv6 from the VIP itself to ff02::1 (Ethernet 33:33:00:00:00:01), hop limit 255, ICMPv6
  type 136 with Override set, Solicited clear, Router set exactly when
  net.ipv6.conf.IF.forwarding is on (keepalived re-reads it at most every 5 seconds), and a
  Target Link-Layer Address option (type 2, length 1) carrying our MAC.

Both go out of one AF_PACKET SOCK_RAW socket per interface, as keepalived does. For IPv6
that means this module builds the IPv6 header and computes the ICMPv6 checksum itself (over
the pseudo-header VIP -> ff02::1) instead of using a raw ICMPv6 socket: the source is then
the VIP, as keepalived's, whatever the kernel's source selection would pick; a VIP still
doing DAD (tentative) does not get in the way; and one socket serves both families.

When to send (garp_master_delay, _repeat, _refresh, per-interface intervals) is the caller's
business; Announcer.announce() sends one round. Like keepalived, nothing is sent on an
interface flagged NOARP. Only Ethernet-type interfaces (ARPHRD_ETHER: physical, veth, bridge,
bond, macvlan, VLAN) are supported; InfiniBand is not.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
import struct
import time
from typing import Self

from director.vrrp.packet import internet_checksum

ETH_P_ARP = 0x0806
ETH_P_IP = 0x0800
ETH_P_IPV6 = 0x86DD
ARPHRD_ETHER = 1
ARPOP_REQUEST = 1
IFF_NOARP = 0x80
IPPROTO_ICMPV6 = 58
ND_NEIGHBOR_ADVERT = 136
ND_OPT_TARGET_LINKADDR = 2
ND_NA_FLAG_ROUTER = 0x80000000
ND_NA_FLAG_SOLICITED = 0x40000000
ND_NA_FLAG_OVERRIDE = 0x20000000
HOP_LIMIT = 255
ALL_NODES = "ff02::1"
BROADCAST_MAC = b"\xff" * 6
ALL_NODES_MAC = b"\x33\x33\x00\x00\x00\x01"  # RFC 2464 7: 33:33 + low 32 bits of ff02::1
ETHER_HDR_LEN = 14
IPV6_HDR_LEN = 40
NA_LEN = 32  # 4 ICMPv6 header + 4 flags + 16 target + 8 option
ROUTER_RECHECK = 5.0  # seconds between re-reads of the forwarding sysctl (keepalived's 5 s)

SYS_NET = "/sys/class/net"
PROC_IPV6_CONF = "/proc/sys/net/ipv6/conf"


def mac_bytes(mac: str) -> bytes:
    """``"02:00:5e:00:01:07"`` (also ``-`` separated) as 6 bytes; ValueError otherwise."""
    parts = mac.strip().replace("-", ":").split(":")
    if len(parts) != 6 or not all(1 <= len(p) <= 2 for p in parts):
        raise ValueError(f"not an Ethernet MAC address: {mac!r}")
    try:
        return bytes(int(p, 16) for p in parts)
    except ValueError:
        raise ValueError(f"not an Ethernet MAC address: {mac!r}") from None


def _ipv4(ip: str) -> ipaddress.IPv4Address:
    address = ipaddress.ip_address(ip)
    if address.version != 4:
        raise ValueError(f"not an IPv4 address: {ip!r}")
    return address


def _ipv6(ip6: str) -> ipaddress.IPv6Address:
    address = ipaddress.ip_address(ip6)
    if address.version != 6:
        raise ValueError(f"not an IPv6 address: {ip6!r}")
    if address.is_multicast:
        raise ValueError(f"a neighbour advertisement cannot target multicast {ip6!r}")
    return address


def gratuitous_arp_frame(mac: str, ip: str) -> bytes:
    """The 42-byte Ethernet frame of a gratuitous ARP for ``ip`` from ``mac``.

    Like keepalived (vrrp_arp.c, send_gratuitous_arp_immediate): an ARP *request*
    (ARPOP_REQUEST = 1), not a reply, with the target hardware address set to the link's
    broadcast address ff:ff:ff:ff:ff:ff (keepalived copies ``hw_addr_bcast``), not zeros;
    sender and target protocol address are both the VIP. The frame is not padded to 60
    bytes; the NIC does that, as for keepalived's frame.
    """
    src = mac_bytes(mac)
    vip = _ipv4(ip).packed
    ether = BROADCAST_MAC + src + struct.pack("!H", ETH_P_ARP)
    arp = struct.pack("!HHBBH", ARPHRD_ETHER, ETH_P_IP, 6, 4, ARPOP_REQUEST)
    return ether + arp + src + vip + BROADCAST_MAC + vip


def icmp6_checksum(src: str, dst: str, message: bytes) -> int:
    """RFC 4443 2.3: the checksum over the IPv6 pseudo-header (RFC 8200 8.1) and message."""
    pseudo = (ipaddress.IPv6Address(src).packed + ipaddress.IPv6Address(dst).packed
              + struct.pack("!I3xB", len(message), IPPROTO_ICMPV6))
    return internet_checksum(pseudo + message)


def unsolicited_na(mac: str, ip6: str, router: bool = False) -> bytes:
    """The 32-byte ICMPv6 Neighbour Advertisement that announces ``ip6`` at ``mac``.

    Flags as keepalived (vrrp_ndisc.c): Override set, Solicited clear (it goes to ff02::1),
    Router only when ``router`` (keepalived: net.ipv6.conf.IF.forwarding is on). One
    Target Link-Layer Address option (type 2, length 1 = 8 bytes) with ``mac``.

    The checksum is filled in for the packet this module sends: source ``ip6`` (the VIP,
    as keepalived), destination ff02::1. Sent through a raw ICMPv6 socket instead, the
    kernel recomputes it for whatever source it uses, so the body serves either way.
    """
    target = _ipv6(ip6)
    flags = ND_NA_FLAG_OVERRIDE | (ND_NA_FLAG_ROUTER if router else 0)
    option = struct.pack("!BB", ND_OPT_TARGET_LINKADDR, 1) + mac_bytes(mac)
    body = struct.pack("!BBHI", ND_NEIGHBOR_ADVERT, 0, 0, flags) + target.packed + option
    checksum = icmp6_checksum(str(target), ALL_NODES, body)
    return body[:2] + struct.pack("!H", checksum) + body[4:]


def unsolicited_na_frame(mac: str, ip6: str, router: bool = False) -> bytes:
    """The 86-byte Ethernet frame: 33:33:00:00:00:01 <- mac, IPv6 VIP -> ff02::1, hop
    limit 255, next header ICMPv6, then :func:`unsolicited_na`."""
    body = unsolicited_na(mac, ip6, router)
    ether = ALL_NODES_MAC + mac_bytes(mac) + struct.pack("!H", ETH_P_IPV6)
    ip6_header = struct.pack("!IHBB", 6 << 28, len(body), IPPROTO_ICMPV6, HOP_LIMIT) \
        + _ipv6(ip6).packed + ipaddress.IPv6Address(ALL_NODES).packed
    return ether + ip6_header + body


def _read_sys(ifname: str, attribute: str) -> str:
    try:
        with open(f"{SYS_NET}/{ifname}/{attribute}", encoding="ascii") as f:
            return f.read().strip()
    except FileNotFoundError:
        raise OSError(errno.ENODEV, f"{ifname}: no such interface") from None
    except OSError as exc:
        raise OSError(exc.errno, f"{ifname}: reading {attribute}: {exc.strerror}") from None


class Announcer:
    """Sends rounds of GARPs / unsolicited NAs; keeps one packet socket per interface.

    The constructor touches nothing; sockets are opened on first use of an interface and
    kept (a garp_master_refresh every few seconds then costs one sendto per address).
    Not thread-safe; the daemon uses it from one greenlet (or behind its own lock).
    """

    def __init__(self) -> None:
        self._sockets: dict[str, tuple[int, socket.socket]] = {}   # ifname -> (ifindex, sock)
        self._router: dict[str, tuple[float, bool]] = {}           # ifname -> (checked, flag)

    def announce(self, ifname: str, addresses: list[str]) -> int:
        """Send one GARP per IPv4 and one unsolicited NA per IPv6 address on ``ifname``.

        Addresses may carry a prefix length (``"192.0.2.100/24"``), which is ignored.
        Returns the number of frames sent: 0 when ``addresses`` is empty or the interface
        is NOARP (keepalived sends nothing there either). A bad address raises ValueError
        before anything is sent. A missing interface, one that is down (ENETDOWN), not
        Ethernet, or any send failure raises OSError whose message names the interface;
        frames sent before a failed one stay sent.
        """
        ifindex, frames = self.frames(ifname, addresses)
        if not frames:
            return 0
        sock = self._socket(ifname, ifindex)
        sent = 0
        for what, address, proto, frame in frames:
            try:
                sock.sendto(frame, (ifname, proto))
            except OSError as exc:
                self._drop(ifname)
                raise OSError(exc.errno,
                              f"{ifname}: sending {what} for {address}: "
                              f"{exc.strerror or exc}") from None
            sent += 1
        return sent

    def frames(self, ifname: str, addresses: list[str]) -> tuple[int, list[tuple]]:
        """(ifindex, [(what, address, ethertype, frame)]): what ``announce`` sends now, with
        the same errors, nothing sent (the quick start keeps them for its next exec)."""
        parsed = [ipaddress.ip_interface(a).ip for a in addresses]
        for address in parsed:
            if address.version == 6:
                _ipv6(str(address))
        if not parsed:
            return 0, []
        try:
            ifindex = socket.if_nametoindex(ifname)
        except OSError:
            self._drop(ifname)
            raise OSError(errno.ENODEV, f"{ifname}: no such interface") from None
        if int(_read_sys(ifname, "flags"), 16) & IFF_NOARP:
            return ifindex, []
        hwtype = _read_sys(ifname, "type")
        if hwtype != str(ARPHRD_ETHER):
            raise OSError(errno.EOPNOTSUPP,
                          f"{ifname}: link type {hwtype} is not Ethernet; no GARP/NA sent")
        mac = _read_sys(ifname, "address")
        router = self._is_router(ifname) if any(a.version == 6 for a in parsed) else False
        return ifindex, [
            ("gratuitous ARP", str(address), ETH_P_ARP, gratuitous_arp_frame(mac, str(address)))
            if address.version == 4 else
            ("unsolicited NA", str(address), ETH_P_IPV6,
             unsolicited_na_frame(mac, str(address), router))
            for address in parsed]

    def close(self) -> None:
        """Close every socket; the Announcer stays usable (it reopens on demand)."""
        for ifname in list(self._sockets):
            self._drop(ifname)
        self._router.clear()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _socket(self, ifname: str, ifindex: int) -> socket.socket:
        cached = self._sockets.get(ifname)
        if cached is not None:
            if cached[0] == ifindex:
                return cached[1]
            self._drop(ifname)  # the name now belongs to another (recreated) interface
        # Protocol 0: the socket is never hooked into receive, so it queues nothing; each
        # sendto names the ethertype, which the kernel sets as the frame's skb->protocol.
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        try:
            sock.setblocking(False)  # like keepalived's SOCK_NONBLOCK: a full queue is an error
            sock.bind((ifname, 0))
        except OSError as exc:
            sock.close()
            raise OSError(exc.errno,
                          f"{ifname}: opening packet socket: {exc.strerror or exc}") from None
        self._sockets[ifname] = (ifindex, sock)
        return sock

    def _drop(self, ifname: str) -> None:
        cached = self._sockets.pop(ifname, None)
        if cached is not None:
            cached[1].close()

    def _is_router(self, ifname: str) -> bool:
        now = time.monotonic()
        cached = self._router.get(ifname)
        if cached is not None and now - cached[0] < ROUTER_RECHECK:
            return cached[1]
        try:
            with open(f"{PROC_IPV6_CONF}/{ifname}/forwarding", encoding="ascii") as f:
                router = f.read().strip() not in ("", "0")
        except OSError:  # IPv6 disabled on the interface or host
            router = False
        self._router[ifname] = (now, router)
        return router
