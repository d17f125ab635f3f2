"""Wireshark's VRRP dissector (tshark) reads our adverts and finds their checksums good."""

from __future__ import annotations

import ipaddress
import shutil
import struct
import subprocess

import pytest

from director.vrrp.packet import AUTH_PASS, Advert, encode, internet_checksum, pass_auth_data

pytestmark = pytest.mark.skipif(shutil.which("tshark") is None,
                                reason="tshark is not installed (scripts/setup --test "
                                       "installs it)")

LINKTYPE_RAW = 101      # packets start at the IP header


def ipv4_packet(src: str, dst: str, payload: bytes) -> bytes:
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0xC0, 20 + len(payload), 1, 0, 255, 112, 0,
                         ipaddress.IPv4Address(src).packed, ipaddress.IPv4Address(dst).packed)
    return header[:10] + struct.pack("!H", internet_checksum(header)) + header[12:] + payload


def ipv6_packet(src: str, dst: str, payload: bytes) -> bytes:
    return struct.pack("!IHBB16s16s", 6 << 28, len(payload), 112, 255,
                       ipaddress.IPv6Address(src).packed,
                       ipaddress.IPv6Address(dst).packed) + payload


def pcap(packets: list[bytes]) -> bytes:
    out = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, LINKTYPE_RAW)
    for index, packet in enumerate(packets):
        out += struct.pack("<IIII", 1_764_000_000 + index, 0, len(packet), len(packet)) + packet
    return out


CASES = [
    ("v2", lambda: ipv4_packet("192.0.2.1", "224.0.0.18", encode(
        Advert(2, 51, 150, 1.0, ("192.0.2.100",), 4, AUTH_PASS, pass_auth_data("secret12"))))),
    ("v3-ipv4", lambda: ipv4_packet("192.0.2.1", "224.0.0.18", encode(
        Advert(3, 52, 200, 0.1, ("192.0.2.100", "192.0.2.101"), 4), "192.0.2.1",
        "224.0.0.18"))),
    ("v3-unicast", lambda: ipv4_packet("192.0.2.1", "192.0.2.2", encode(
        Advert(3, 53, 100, 1.0, ("192.0.2.100",), 4), "192.0.2.1", "192.0.2.2"))),
    ("v3-ipv6", lambda: ipv6_packet("fe80::1", "ff02::12", encode(
        Advert(3, 54, 120, 1.0, ("2001:db8::100",), 6), "fe80::1", "ff02::12"))),
]


def test_tshark_dissects_our_adverts_with_good_checksums(tmp_path):
    capture = tmp_path / "ours.pcap"
    capture.write_bytes(pcap([make() for _, make in CASES]))
    done = subprocess.run(["tshark", "-r", str(capture), "-o", "vrrp.v3_checksum_as_v2:FALSE",
                           "-T", "fields", "-E", "separator=,", "-e", "vrrp.version",
                           "-e", "vrrp.virt_rtr_id", "-e", "vrrp.prio",
                           "-e", "vrrp.checksum.status"],
                          capture_output=True, text=True, timeout=60)
    if done.returncode != 0 and "vrrp.v3_checksum_as_v2" in done.stderr:
        done = subprocess.run(["tshark", "-r", str(capture), "-T", "fields", "-E",
                               "separator=,", "-e", "vrrp.version", "-e", "vrrp.virt_rtr_id",
                               "-e", "vrrp.prio", "-e", "vrrp.checksum.status"],
                              capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    rows = [line.split(",") for line in done.stdout.splitlines()]
    # checksum.status 1 is Wireshark's "Good"
    assert rows == [["2", "51", "150", "1"], ["3", "52", "200", "1"], ["3", "53", "100", "1"],
                    ["3", "54", "120", "1"]], done.stdout + done.stderr


def test_tshark_flags_a_corrupted_checksum(tmp_path):
    packet = bytearray(CASES[0][1]())
    packet[-1] ^= 0xFF                              # last byte of the password
    capture = tmp_path / "bad.pcap"
    capture.write_bytes(pcap([bytes(packet)]))
    done = subprocess.run(["tshark", "-r", str(capture), "-T", "fields", "-e",
                           "vrrp.checksum.status"], capture_output=True, text=True, timeout=60)
    assert done.stdout.split() == ["0"]              # "Bad"


def test_v3_checksum_as_v2_is_what_wireshark_calls_so(tmp_path):
    """v3_checksum_as_v2: Wireshark's own option for it (v3_checksum_as_in_v2) reads the checksum as good,
    and without it as bad (a v3 checksum over the message alone)."""
    message = encode(Advert(3, 52, 200, 1.0, ("192.0.2.100",), 4), "192.0.2.1", "224.0.0.18",
                     as_v2=True)
    capture = tmp_path / "as_v2.pcap"
    capture.write_bytes(pcap([ipv4_packet("192.0.2.1", "224.0.0.18", message)]))
    statuses = []
    for setting in ("TRUE", "FALSE"):
        done = subprocess.run(["tshark", "-r", str(capture), "-o",
                               f"vrrp.v3_checksum_as_in_v2:{setting}", "-T", "fields", "-e",
                               "vrrp.checksum.status"], capture_output=True, text=True,
                              timeout=60)
        if done.returncode != 0 and "v3_checksum_as_in_v2" in done.stderr:
            pytest.skip("this tshark has no vrrp.v3_checksum_as_in_v2 option")
        statuses.append(done.stdout.split())
    assert statuses == [["1"], ["0"]], statuses
