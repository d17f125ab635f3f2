"""The early capture's pure parts (director/vrrp/early.py): a packet and its ancillary data as
recvmsg returns them -> what the instance sockets would have read; which instances it covers."""

import socket
import struct

from director.vrrp.early import GROUPS, IN_PKTINFO, IP_PKTINFO, SO_TIMESTAMPNS, EarlyCapture, parse

VRRP = bytes([0x31, 51, 200, 1, 0, 100, 0, 0]) + socket.inet_aton("192.0.2.100")


def ipv4(payload: bytes, source="192.0.2.2", destination="224.0.0.18", ttl=255) -> bytes:
    return struct.pack("!BBHHHBBH4s4s", 0x45, 0xC0, 20 + len(payload), 0, 0, ttl, 112, 0,
                       socket.inet_aton(source), socket.inet_aton(destination)) + payload


def test_an_ipv4_advert_with_its_interface_and_kernel_time():
    ancillary = [(socket.SOL_SOCKET, SO_TIMESTAMPNS, struct.pack("@qq", 1700000000, 5 * 10**8)),
                 (socket.IPPROTO_IP, IP_PKTINFO,
                  IN_PKTINFO.pack(7, socket.inet_aton("192.0.2.1"), socket.inet_aton(GROUPS[4])))]
    heard = parse(4, ipv4(VRRP), ancillary, ("192.0.2.2", 0))
    assert heard.family == 4 and heard.ifindex == 7 and heard.message == VRRP
    assert (heard.source, heard.destination, heard.ttl) == ("192.0.2.2", "224.0.0.18", 255)
    assert heard.at == 1700000000.5


def test_an_ipv6_advert_takes_destination_interface_and_hop_limit_from_ancillary_data():
    ancillary = [(socket.IPPROTO_IPV6, socket.IPV6_PKTINFO,
                  socket.inet_pton(socket.AF_INET6, GROUPS[6]) + struct.pack("@I", 3)),
                 (socket.IPPROTO_IPV6, socket.IPV6_HOPLIMIT, struct.pack("@i", 255))]
    heard = parse(6, VRRP, ancillary, ("fe80::2%eth0", 0, 0, 3))
    assert (heard.ifindex, heard.source, heard.destination, heard.ttl) == \
        (3, "fe80::2", "ff02::12", 255)


def test_what_cannot_be_placed_is_left_out():
    assert parse(4, ipv4(VRRP), [], ("192.0.2.2", 0)) is None        # no interface
    ancillary = [(socket.IPPROTO_IP, IP_PKTINFO, IN_PKTINFO.pack(7, bytes(4), bytes(4)))]
    assert parse(4, b"\x45\x00", ancillary, ("192.0.2.2", 0)) is None  # too short


def test_it_covers_unicast_anywhere_and_the_default_group_where_it_joined():
    capture = EarlyCapture()
    capture.sockets = {4: object()}
    capture.joined[4] = {"eth0"}
    assert capture.covers("eth0", 4, GROUPS[4]) and capture.covers("eth1", 4, None)
    assert not capture.covers("eth1", 4, GROUPS[4])          # not joined there
    assert not capture.covers("eth0", 4, "224.0.0.99")       # mcast_dst_ip of its own
    assert not capture.covers("eth0", 6, GROUPS[6])          # no IPv6 socket
    assert not EarlyCapture().usable()                       # never opened


def test_a_packet_is_replayed_on_the_socket_that_would_have_read_it():
    from types import SimpleNamespace

    from director.vrrp.early import Heard, _read_by
    names = {2: "eth0", 3: "eth1"}
    sock = SimpleNamespace(opened_at=100.0)
    packet = Heard(4, 2, VRRP, "192.0.2.2", "224.0.0.18", 255, 99.5)
    multicast = ("eth0", 4, None, 112, "224.0.0.18", None)
    assert _read_by(multicast, sock, packet, names)
    assert not _read_by(("eth1",) + multicast[1:], sock, packet, names)      # other interface
    assert not _read_by(multicast, SimpleNamespace(opened_at=99.0), packet, names)   # it read it
    assert not _read_by(("eth0", 6) + multicast[2:], sock, packet, names)    # other family
    unicast = ("eth0", 4, "192.0.2.1", 112, None, None)                     # bound to a source
    assert not _read_by(unicast, sock, packet, names)
    assert _read_by(unicast, sock, packet._replace(destination="192.0.2.1"), names)
    anywhere = (None, 4, None, 112, None, None)                             # no interface
    assert _read_by(anywhere, sock, packet._replace(ifindex=3), names)
