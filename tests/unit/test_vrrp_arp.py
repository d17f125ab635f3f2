"""GARP / unsolicited NA builders, byte by byte, against what keepalived puts on the wire
(keepalived/vrrp/vrrp_arp.c and vrrp_ndisc.c), plus the Announcer's socket-free parts."""

from __future__ import annotations

import ipaddress
import socket
import struct
from typing import ClassVar

import pytest

from director.vrrp import arp
from director.vrrp.arp import (
    Announcer,
    gratuitous_arp_frame,
    icmp6_checksum,
    mac_bytes,
    unsolicited_na,
    unsolicited_na_frame,
)

MAC = "02:00:5e:00:01:07"
MAC_B = bytes.fromhex("02005e000107")
VIP4 = "192.0.2.100"
VIP6 = "2001:db8::100"


def ones_complement_sum(data: bytes) -> int:
    """Independent of the module: a plain RFC 1071 sum, folded."""
    if len(data) % 2:
        data += b"\0"
    total = 0
    for i in range(0, len(data), 2):
        total += (data[i] << 8) | data[i + 1]
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return total


# --- gratuitous ARP --------------------------------------------------------------------

def test_garp_frame_layout_byte_by_byte():
    frame = gratuitous_arp_frame(MAC, VIP4)
    assert len(frame) == 42
    assert frame[0:6] == b"\xff\xff\xff\xff\xff\xff"      # Ethernet destination: broadcast
    assert frame[6:12] == MAC_B                            # Ethernet source: our MAC
    assert frame[12:14] == b"\x08\x06"                     # ethertype ARP
    assert frame[14:16] == b"\x00\x01"                     # hardware type Ethernet
    assert frame[16:18] == b"\x08\x00"                     # protocol type IPv4
    assert frame[18] == 6 and frame[19] == 4               # hardware / protocol lengths
    assert frame[20:22] == b"\x00\x01"                     # opcode 1 = REQUEST (keepalived)
    assert frame[22:28] == MAC_B                           # sender MAC
    assert frame[28:32] == bytes([192, 0, 2, 100])         # sender IP = VIP
    assert frame[32:38] == b"\xff\xff\xff\xff\xff\xff"     # target MAC: broadcast (keepalived)
    assert frame[38:42] == bytes([192, 0, 2, 100])         # target IP = VIP


def test_garp_frame_as_a_whole():
    assert gratuitous_arp_frame("02:00:5E:00:01:07", "198.51.100.7").hex() == (
        "ffffffffffff" "02005e000107" "0806"
        "0001" "0800" "06" "04" "0001"
        "02005e000107" "c6336407" "ffffffffffff" "c6336407")


@pytest.mark.parametrize("mac", ["02:00:5e:00:01", "02:00:5e:00:01:07:08", "zz:00:5e:00:01:07",
                                 "", "0200.5e00.0107", "02:00:5e:00:01:107"])
def test_bad_mac_is_refused(mac):
    with pytest.raises(ValueError):
        gratuitous_arp_frame(mac, VIP4)


@pytest.mark.parametrize("ip", [VIP6, "192.0.2.300", "not-an-ip"])
def test_garp_needs_ipv4(ip):
    with pytest.raises(ValueError):
        gratuitous_arp_frame(MAC, ip)


def test_mac_bytes_accepts_sysfs_and_dash_forms():
    assert mac_bytes("02:00:5e:00:01:07\n") == MAC_B
    assert mac_bytes("02-00-5E-00-01-07") == MAC_B
    assert mac_bytes("2:0:5e:0:1:7") == MAC_B


# --- unsolicited neighbour advertisement -----------------------------------------------

def test_na_fields_byte_by_byte():
    na = unsolicited_na(MAC, VIP6)
    assert len(na) == 32
    assert na[0] == 136                                    # type: Neighbor Advertisement
    assert na[1] == 0                                      # code
    flags = struct.unpack("!I", na[4:8])[0]
    assert flags & 0x20000000                              # Override set
    assert not flags & 0x40000000                          # Solicited clear (to ff02::1)
    assert not flags & 0x80000000                          # Router clear by default
    assert flags & 0x1FFFFFFF == 0                         # reserved bits zero
    assert na[4:8] == b"\x20\x00\x00\x00"
    assert na[8:24] == ipaddress.IPv6Address(VIP6).packed  # target = VIP
    assert na[24] == 2                                     # option: target link-layer addr
    assert na[25] == 1                                     # length in units of 8 bytes
    assert na[26:32] == MAC_B                              # our MAC


def test_na_router_flag_when_forwarding():
    na = unsolicited_na(MAC, VIP6, router=True)
    assert na[4:8] == b"\xa0\x00\x00\x00"                  # Router + Override, not Solicited
    assert unsolicited_na(MAC, VIP6)[8:] == na[8:]


@pytest.mark.parametrize("router", [False, True])
@pytest.mark.parametrize("vip", [VIP6, "2001:db8::1:ffff", "fe80::5efe:c000:264"])
def test_na_checksum_covers_pseudo_header_vip_to_all_nodes(vip, router):
    na = unsolicited_na(MAC, vip, router)
    pseudo = (ipaddress.IPv6Address(vip).packed + ipaddress.IPv6Address("ff02::1").packed
              + struct.pack("!I", len(na)) + b"\0\0\0" + bytes([58]))
    assert ones_complement_sum(pseudo + na) == 0xFFFF      # verifies to all ones
    zeroed = na[:2] + b"\0\0" + na[4:]
    assert struct.unpack("!H", na[2:4])[0] == icmp6_checksum(vip, "ff02::1", zeroed)


def test_na_as_a_whole():
    # Pinned (checksum verified by the independent sum above and, in the functional test,
    # by the kernel's own ICMPv6 checksum for the same message).
    assert unsolicited_na(MAC, VIP6).hex() == (
        "88" "00" "9826" "20000000"
        "20010db8000000000000000000000100"
        "02" "01" "02005e000107")
    assert unsolicited_na(MAC, VIP6, router=True).hex()[:16] == "88001826a0000000"


@pytest.mark.parametrize("ip6", [VIP4, "ff02::1", "2001:db8::zz"])
def test_na_refuses_non_unicast_ipv6(ip6):
    with pytest.raises(ValueError):
        unsolicited_na(MAC, ip6)


def test_na_frame_layout():
    frame = unsolicited_na_frame(MAC, VIP6)
    assert len(frame) == 14 + 40 + 32
    assert frame[0:6] == bytes.fromhex("333300000001")     # RFC 2464 mapping of ff02::1
    assert frame[6:12] == MAC_B
    assert frame[12:14] == b"\x86\xdd"
    ip6 = frame[14:54]
    assert ip6[0] >> 4 == 6 and ip6[0:4] == b"\x60\x00\x00\x00"  # version 6, TC/flow 0
    assert struct.unpack("!H", ip6[4:6])[0] == 32          # payload length
    assert ip6[6] == 58                                    # next header ICMPv6
    assert ip6[7] == 255                                   # hop limit 255 (RFC 4861 7.1.2)
    assert ip6[8:24] == ipaddress.IPv6Address(VIP6).packed  # source = VIP (keepalived)
    assert ip6[24:40] == ipaddress.IPv6Address("ff02::1").packed
    assert frame[54:] == unsolicited_na(MAC, VIP6)


# --- Announcer without the network -----------------------------------------------------

class NoSockets:
    def __init__(self, *args, **kwargs):
        raise AssertionError("a socket was opened")


def test_constructor_and_close_touch_no_socket(monkeypatch):
    monkeypatch.setattr(socket, "socket", NoSockets)
    announcer = Announcer()
    assert announcer.announce("whatever0", []) == 0          # nothing to send: no socket
    announcer.close()
    with Announcer():
        pass


def test_missing_interface_is_an_oserror_naming_it(monkeypatch):
    monkeypatch.setattr(socket, "socket", NoSockets)
    with Announcer() as announcer, pytest.raises(OSError) as info:
        announcer.announce("nosuchif7", [VIP4])
    assert "nosuchif7" in str(info.value)


def test_bad_address_is_a_valueerror_before_any_io(monkeypatch):
    monkeypatch.setattr(socket, "socket", NoSockets)
    monkeypatch.setattr(socket, "if_nametoindex", NoSockets)
    with Announcer() as announcer:
        for bad in (["192.0.2.1", "nonsense"], ["ff02::1"]):
            with pytest.raises(ValueError):
                announcer.announce("eth0", bad)


class FakeSocket:
    instances: ClassVar[list[FakeSocket]] = []

    def __init__(self, family, kind, proto):
        assert (family, kind, proto) == (socket.AF_PACKET, socket.SOCK_RAW, 0)
        self.sent, self.bound, self.closed = [], None, False
        FakeSocket.instances.append(self)

    def setblocking(self, flag):
        assert flag is False

    def bind(self, address):
        self.bound = address

    def sendto(self, frame, address):
        if isinstance(self.fail, OSError):
            raise self.fail
        self.sent.append((frame, address))

    def close(self):
        self.closed = True

    fail = None


@pytest.fixture
def fake_link(monkeypatch, tmp_path):
    """A pretend eth7 (ifindex from a dict, sysfs under tmp_path, fake sockets)."""
    FakeSocket.instances = []
    FakeSocket.fail = None
    index = {"eth7": 7}

    def nametoindex(name):
        if name not in index:
            raise OSError(19, "No such device")
        return index[name]

    sysfs = tmp_path / "sys"
    proc = tmp_path / "proc"
    (sysfs / "eth7").mkdir(parents=True)
    (proc / "eth7").mkdir(parents=True)
    (sysfs / "eth7" / "address").write_text(MAC + "\n")
    (sysfs / "eth7" / "type").write_text("1\n")
    (sysfs / "eth7" / "flags").write_text("0x1003\n")
    (proc / "eth7" / "forwarding").write_text("0\n")
    monkeypatch.setattr(arp, "SYS_NET", str(sysfs))
    monkeypatch.setattr(arp, "PROC_IPV6_CONF", str(proc))
    monkeypatch.setattr(socket, "socket", FakeSocket)
    monkeypatch.setattr(socket, "if_nametoindex", nametoindex)
    return index, sysfs / "eth7", proc / "eth7"


def test_announce_sends_one_frame_per_address_on_one_kept_socket(fake_link):
    with Announcer() as announcer:
        assert announcer.announce("eth7", [VIP4, "192.0.2.101/24", VIP6]) == 3
        assert announcer.announce("eth7", [VIP4]) == 1
        assert len(FakeSocket.instances) == 1
        sock = FakeSocket.instances[0]
        assert sock.bound == ("eth7", 0)
        frames = sock.sent
        assert frames[0] == (gratuitous_arp_frame(MAC, VIP4), ("eth7", 0x0806))
        assert frames[1] == (gratuitous_arp_frame(MAC, "192.0.2.101"), ("eth7", 0x0806))
        assert frames[2] == (unsolicited_na_frame(MAC, VIP6), ("eth7", 0x86DD))
        assert frames[3] == frames[0]
    assert sock.closed


def test_router_flag_follows_forwarding_sysctl(fake_link, monkeypatch):
    _, _, proc = fake_link
    proc.joinpath("forwarding").write_text("1\n")
    with Announcer() as announcer:
        announcer.announce("eth7", [VIP6])
        proc.joinpath("forwarding").write_text("0\n")
        announcer.announce("eth7", [VIP6])          # cached for 5 s, like keepalived
        now = arp.time.monotonic()
        monkeypatch.setattr(arp.time, "monotonic", lambda: now + 6)
        announcer.announce("eth7", [VIP6])
    sent = [frame for frame, _ in FakeSocket.instances[0].sent]
    assert sent == [unsolicited_na_frame(MAC, VIP6, True)] * 2 + \
        [unsolicited_na_frame(MAC, VIP6, False)]


def test_noarp_interface_gets_nothing(fake_link):
    _, sysfs, _ = fake_link
    sysfs.joinpath("flags").write_text("0x1083\n")
    with Announcer() as announcer:
        assert announcer.announce("eth7", [VIP4, VIP6]) == 0
    assert FakeSocket.instances == []


def test_non_ethernet_is_refused(fake_link):
    _, sysfs, _ = fake_link
    sysfs.joinpath("type").write_text("65534\n")   # ARPHRD_NONE (tun)
    with Announcer() as announcer, pytest.raises(OSError) as info:
        announcer.announce("eth7", [VIP4])
    assert "eth7" in str(info.value)


def test_send_error_names_interface_and_drops_socket(fake_link):
    with Announcer() as announcer:
        assert announcer.announce("eth7", [VIP4]) == 1
        FakeSocket.fail = OSError(100, "Network is down")
        with pytest.raises(OSError) as info:
            announcer.announce("eth7", [VIP4])
        assert info.value.errno == 100
        assert "eth7" in str(info.value) and VIP4 in str(info.value)
        assert FakeSocket.instances[0].closed
        FakeSocket.fail = None
        assert announcer.announce("eth7", [VIP4]) == 1     # reopened
        assert len(FakeSocket.instances) == 2


def test_recreated_interface_gets_a_new_socket(fake_link):
    index, _, _ = fake_link
    with Announcer() as announcer:
        announcer.announce("eth7", [VIP4])
        index["eth7"] = 12                                 # deleted and created again
        announcer.announce("eth7", [VIP4])
        assert [s.closed for s in FakeSocket.instances] == [True, False]
        del index["eth7"]
        with pytest.raises(OSError, match="eth7"):
            announcer.announce("eth7", [VIP4])
        assert FakeSocket.instances[1].closed
