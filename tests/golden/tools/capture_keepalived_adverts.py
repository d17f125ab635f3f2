"""Capture golden VRRP advertisements from the real keepalived, for the codec's tests.

    sudo .venv/bin/python tests/golden/tools/capture_keepalived_adverts.py [--out tests/golden/vrrp]
        [--cases v2_pass,v3_ipv6] [--keepalived /usr/sbin/keepalived] [--list] [-v]

Needs root (network namespaces, AF_PACKET) and keepalived (VRRP only: the host's IPVS is not
needed). Nothing on the host is touched: for each case the tool

  1. creates two network namespaces with unique names, ``dcap-<pid>-<n>k`` (keepalived) and
     ``dcap-<pid>-<n>c`` (capture), and a veth pair created directly inside them
     (``vrrp0`` in k, ``cap0`` in c, fixed MACs 02:00:00:00:0d:01 / 02:00:00:00:0d:02 so the
     captures are reproducible); IPv6 DAD is off in both namespaces (sysctl accept_dad=0 and
     ``nodad``) so the link-local address keepalived needs is usable at once;
     addresses only inside the namespaces: 192.0.2.1/24 + 2001:db8::1/64 (k),
     192.0.2.2/24 + 2001:db8::2/64 (c);
  2. starts a capture subprocess in c (this same file, ``--capture-helper``, run through
     ``ip netns exec``): an AF_PACKET raw socket on cap0 that prints every frame as a JSON line
     with its kernel receive timestamp (SO_TIMESTAMPNS); bounded by a frame count and a deadline;
  3. writes a keepalived.conf into a temporary directory and starts
     ``ip netns exec <k> keepalived -P -n -l -D -G -f ... -p/-r/-c/-b <tmp pid files>``;
  4. reads frames until the case has what it needs (2 adverts; for v2_pass also 8 s more for
     the gratuitous ARPs; for v3_ipv6 also 8 s for the unsolicited neighbour advertisements;
     for v2_prio0 it sends SIGTERM after 2 adverts and waits for the priority-0 advert), each
     case bounded by a deadline computed from its advert_int;
  5. always tears down in ``finally`` (also on errors, Ctrl-C, SIGTERM): SIGTERM then SIGKILL to
     the processes it started and to any process left in its namespaces (by pid, from
     ``ip netns pids``), then ``ip netns del``.

Then it decodes every VRRP packet with the small hand-written parser below, verifies the
checksum (RFC 3768 for v2: over the VRRP message only; RFC 5798 for v3: with the IPv4/IPv6
pseudo-header) and writes ``<out>/<case>.json`` (see ``case_document``), plus
``garp_v2_pass.json`` (the ARP frames, L2 included, with times relative to the first advert)
and ``una_v3_ipv6.json`` (the ICMPv6 neighbour advertisements). It prints a summary: TTLs,
MACs, checksum verdicts, ARP/NA counts and timing. Exit status 0 when every case was captured
and every checksum is valid, 1 otherwise.

Cases: v2_pass, v2_pass_long, v2_noauth, v3_ipv4, v3_ipv6, v2_prio0, unicast_v2 and the extras
unicast_v3 (``--list``). One run takes about 100 s (each case waits out keepalived's master-down
timer, 3 * advert_int + skew, before the first advert). Re-running rewrites the JSON files; with
the fixed MACs and addresses the packets come out byte for byte the same, except that the IPv6
flow label is chosen by the kernel (net.ipv6.auto_flowlabels), not by keepalived, and the IPv4
identification counts keepalived's packets since it started.

If the tool is killed with SIGKILL, its namespaces stay behind:
``ip netns list | grep '^dcap-'`` and ``ip netns del <name>`` (after ``ip netns pids <name>``).
"""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import json
import os
import re
import selectors
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

# the golden files this tool writes, beside it: tests/golden/tools -> tests/golden/vrrp
DEFAULT_OUT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "vrrp")

K_IF, C_IF = "vrrp0", "cap0"
K_MAC, C_MAC = "02:00:00:00:0d:01", "02:00:00:00:0d:02"
K_V4, C_V4 = "192.0.2.1", "192.0.2.2"
K_V6, C_V6 = "2001:db8::1", "2001:db8::2"

ETH_P_ALL = 0x0003
ETH_P_IP, ETH_P_ARP, ETH_P_IPV6 = 0x0800, 0x0806, 0x86DD
IPPROTO_VRRP = 112
IPPROTO_AH = 51
SO_TIMESTAMPNS = 35          # == SCM_TIMESTAMPNS (asm-generic/socket.h)
PACKET_OUTGOING = 4          # linux/if_packet.h: sll_pkttype of frames sent from this host
PKTTYPES = {0: "host", 1: "broadcast", 2: "multicast", 3: "otherhost", 4: "outgoing"}

MAX_FRAMES = 3000            # capture helper: at most this many frames per case
COMMAND_TIMEOUT = 15         # seconds for any ip/sysctl command


# --------------------------------------------------------------------------------------------
# Capture helper (runs inside the capture namespace)
# --------------------------------------------------------------------------------------------

def capture_helper(ifname: str, seconds: float, max_frames: int) -> int:
    """Print one JSON line per frame seen on ``ifname`` until a deadline or ``max_frames``."""
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    sock.bind((ifname, 0))
    sock.settimeout(0.2)
    print(json.dumps({"ready": True}), flush=True)
    end = time.monotonic() + seconds
    count = 0
    while count < max_frames and time.monotonic() < end:
        try:
            data, ancillary, flags, address = sock.recvmsg(65535, socket.CMSG_SPACE(16))
        except TimeoutError:
            continue
        if address[0] != ifname:     # frames queued between socket() and bind()
            continue
        stamp = None
        for level, kind, payload in ancillary:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(payload) >= 16:
                sec, nsec = struct.unpack("qq", payload[:16])
                stamp = sec + nsec / 1e9
        print(json.dumps({"t": stamp if stamp is not None else time.time(),
                          "pkttype": address[2], "frame": data.hex(),
                          "truncated": bool(flags & socket.MSG_TRUNC)}), flush=True)
        count += 1
    return 0


# --------------------------------------------------------------------------------------------
# Hand-written decoders (deliberately plain: fixed offsets from the RFCs, no cleverness)
# --------------------------------------------------------------------------------------------

def mac(raw: bytes) -> str:
    return ":".join(f"{b:02x}" for b in raw)


def ones_complement_sum16(data: bytes) -> int:
    """RFC 1071 sum of 16-bit big-endian words, odd length padded with a zero byte."""
    if len(data) % 2:
        data += b"\x00"
    total = 0
    for i in range(0, len(data), 2):
        total += (data[i] << 8) | data[i + 1]
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def checksum_ok(data: bytes) -> bool:
    """A message that carries its own Internet checksum sums to 0xFFFF."""
    return ones_complement_sum16(data) == 0xFFFF


def internet_checksum(data: bytes) -> int:
    return (~ones_complement_sum16(data)) & 0xFFFF


def parse_ethernet(frame: bytes) -> dict:
    """Destination MAC (0:6), source MAC (6:12), EtherType (12:14); one 802.1Q tag skipped."""
    ethertype = struct.unpack("!H", frame[12:14])[0]
    offset = 14
    if ethertype == 0x8100:
        ethertype = struct.unpack("!H", frame[16:18])[0]
        offset = 18
    return {"dst": mac(frame[0:6]), "src": mac(frame[6:12]), "ethertype": ethertype,
            "payload": frame[offset:]}


def parse_ipv4(packet: bytes) -> dict:
    """RFC 791 header: version/IHL, TOS, total length, id, flags/fragment, TTL, protocol,
    header checksum, source, destination; options up to IHL*4."""
    version, ihl = packet[0] >> 4, packet[0] & 0x0F
    total_length = struct.unpack("!H", packet[2:4])[0]
    flags_fragment = struct.unpack("!H", packet[6:8])[0]
    return {
        "version": version,
        "ihl": ihl,
        "tos": packet[1],
        "total_length": total_length,
        "identification": struct.unpack("!H", packet[4:6])[0],
        "dont_fragment": bool(flags_fragment & 0x4000),
        "more_fragments": bool(flags_fragment & 0x2000),
        "fragment_offset": flags_fragment & 0x1FFF,
        "ttl": packet[8],
        "protocol": packet[9],
        "header_checksum": struct.unpack("!H", packet[10:12])[0],
        "header_checksum_valid": checksum_ok(packet[0:ihl * 4]),
        "src": str(ipaddress.IPv4Address(packet[12:16])),
        "dst": str(ipaddress.IPv4Address(packet[16:20])),
        "options_hex": packet[20:ihl * 4].hex(),
        "packet": packet[:total_length],
        "payload": packet[ihl * 4:total_length],
    }


def parse_ipv6(packet: bytes) -> dict:
    """RFC 8200 fixed header: version, traffic class, flow label, payload length, next header,
    hop limit, source (8:24), destination (24:40). Extension headers are not walked here."""
    first = struct.unpack("!I", packet[0:4])[0]
    payload_length = struct.unpack("!H", packet[4:6])[0]
    return {
        "version": first >> 28,
        "traffic_class": (first >> 20) & 0xFF,
        "flow_label": first & 0xFFFFF,
        "payload_length": payload_length,
        "next_header": packet[6],
        "hop_limit": packet[7],
        "src": str(ipaddress.IPv6Address(packet[8:24])),
        "dst": str(ipaddress.IPv6Address(packet[24:40])),
        "packet": packet[:40 + payload_length],
        "payload": packet[40:40 + payload_length],
    }


def parse_ah(data: bytes) -> dict:
    """RFC 2402 2: next header, payload length (32-bit words - 2), reserved, SPI, sequence
    number, then the ICV (12 bytes for HMAC-MD5-96: keepalived's fixed 24-byte header)."""
    next_header, length, reserved, spi, sequence = struct.unpack("!BBHII", data[:12])
    return {"next_header": next_header, "payload_len": length, "reserved": reserved,
            "spi_hex": f"{spi:08x}", "spi_as_address": str(ipaddress.IPv4Address(spi)),
            "sequence": sequence, "icv_hex": data[12:24].hex()}


def parse_vrrp(message: bytes, family: int) -> dict:
    """VRRP v2 (RFC 3768 section 5.1) or v3 (RFC 5798 section 5.1).

    byte 0: version (high nibble), type (low nibble); byte 1: VRID; byte 2: priority;
    byte 3: count of addresses;
    v2: byte 4 auth type, byte 5 advertisement interval (s), bytes 6-7 checksum,
        then count IPv4 addresses, then 8 bytes of authentication data;
    v3: bytes 4-5 = 4 reserved bits + 12-bit max advert interval (centiseconds),
        bytes 6-7 checksum, then count IPv4 or IPv6 addresses (by the IP family).
    """
    version, kind = message[0] >> 4, message[0] & 0x0F
    fields = {"version": version, "type": kind, "vrid": message[1], "priority": message[2],
              "count": message[3]}
    if version == 2:
        fields["auth_type"] = message[4]
        fields["advert_int"] = message[5]
    else:
        word = struct.unpack("!H", message[4:6])[0]
        fields["reserved"] = word >> 12
        fields["max_advert_int_centiseconds"] = word & 0x0FFF
    fields["checksum"] = struct.unpack("!H", message[6:8])[0]
    size = 4 if family == 4 else 16
    addresses = []
    offset = 8
    for _ in range(message[3]):
        raw = message[offset:offset + size]
        addresses.append(str(ipaddress.IPv4Address(raw) if size == 4
                             else ipaddress.IPv6Address(raw)))
        offset += size
    fields["addresses"] = addresses
    if version == 2:
        auth = message[offset:offset + 8]
        fields["auth_data_hex"] = auth.hex()
        fields["auth_data_ascii"] = auth.rstrip(b"\x00").decode("ascii", "replace")
        offset += 8
    fields["vrrp_length"] = len(message)
    fields["expected_length"] = offset
    fields["trailing_bytes_hex"] = message[offset:].hex()
    return fields


def vrrp_checksum(message: bytes, version: int, family: int, src: str, dst: str) -> dict:
    """Verify the checksum: v2 over the VRRP message only (RFC 3768 5.2.8); v3 over the
    pseudo-header + VRRP message (RFC 5798 5.2.8: RFC 768-style IPv4 pseudo-header, RFC 8200
    8.1 IPv6 pseudo-header), next header / protocol 112."""
    if version == 2:
        covered = message
        method = "RFC 3768: over the VRRP message only"
    elif family == 4:
        pseudo = (ipaddress.IPv4Address(src).packed + ipaddress.IPv4Address(dst).packed
                  + struct.pack("!BBH", 0, IPPROTO_VRRP, len(message)))
        covered = pseudo + message
        method = "RFC 5798: IPv4 pseudo-header (src, dst, 0, 112, length) + VRRP message"
    else:
        pseudo = (ipaddress.IPv6Address(src).packed + ipaddress.IPv6Address(dst).packed
                  + struct.pack("!I", len(message)) + b"\x00\x00\x00" + bytes([IPPROTO_VRRP]))
        covered = pseudo + message
        method = "RFC 5798: IPv6 pseudo-header (src, dst, length, 0, 112) + VRRP message"
    zeroed = message[:6] + b"\x00\x00" + message[8:]
    recomputed = internet_checksum(covered[:len(covered) - len(message)] + zeroed)
    return {"valid": checksum_ok(covered), "method": method, "recomputed": recomputed}


def parse_arp(payload: bytes) -> dict:
    """RFC 826 for Ethernet/IPv4: htype, ptype, hlen, plen, op, sha, spa, tha, tpa."""
    htype, ptype, hlen, plen, op = struct.unpack("!HHBBH", payload[0:8])
    return {"htype": htype, "ptype": ptype, "hlen": hlen, "plen": plen, "op": op,
            "op_name": {1: "request", 2: "reply"}.get(op, str(op)),
            "sender_mac": mac(payload[8:14]),
            "sender_ip": str(ipaddress.IPv4Address(payload[14:18])),
            "target_mac": mac(payload[18:24]),
            "target_ip": str(ipaddress.IPv4Address(payload[24:28]))}


def parse_icmpv6_after_headers(ip6: dict) -> tuple[int | None, bytes]:
    """Walk hop-by-hop / destination-options headers (both: next, length in 8-octet units
    beyond the first 8) to the upper-layer protocol; returns (protocol, its bytes)."""
    protocol, data = ip6["next_header"], ip6["payload"]
    for _ in range(8):
        if protocol not in (0, 60):
            return protocol, data
        if len(data) < 2:
            return None, b""
        protocol, length = data[0], (data[1] + 1) * 8
        data = data[length:]
    return None, b""


def parse_icmpv6(data: bytes) -> dict:
    kind, code = data[0], data[1]
    info = {"type": kind, "code": code, "checksum": struct.unpack("!H", data[2:4])[0]}
    names = {133: "router_solicitation", 134: "router_advertisement",
             135: "neighbor_solicitation", 136: "neighbor_advertisement",
             143: "mldv2_report", 131: "mld_report", 132: "mld_done"}
    info["name"] = names.get(kind, f"type_{kind}")
    if kind in (135, 136):
        flags = data[4]
        info["target"] = str(ipaddress.IPv6Address(data[8:24]))
        if kind == 136:
            info["router_flag"] = bool(flags & 0x80)
            info["solicited_flag"] = bool(flags & 0x40)
            info["override_flag"] = bool(flags & 0x20)
        options, offset = [], 24
        for _ in range(16):
            if offset + 2 > len(data) or data[offset + 1] == 0:
                break
            opt_type, opt_len = data[offset], data[offset + 1] * 8
            body = data[offset + 2:offset + opt_len]
            options.append({"type": opt_type, "hex": body.hex(),
                            **({"link_layer_address": mac(body[:6])}
                               if opt_type in (1, 2) else {})})
            offset += opt_len
        info["options"] = options
    return info


def classify(frame: bytes) -> dict:
    """What a frame is: vrrp / arp / icmpv6 / other, with the decoded layers."""
    eth = parse_ethernet(frame)
    out = {"eth": eth, "kind": "other"}
    if eth["ethertype"] == ETH_P_IP:
        ip4 = parse_ipv4(eth["payload"])
        out["ip"] = ip4
        if ip4["protocol"] == IPPROTO_AH and len(ip4["payload"]) >= 24 \
                and ip4["payload"][0] == IPPROTO_VRRP:
            out["kind"] = "vrrp"
            out["ah"] = parse_ah(ip4["payload"])
            ip4["payload"] = ip4["payload"][24:]
        elif ip4["protocol"] == IPPROTO_VRRP and not ip4["more_fragments"] \
                and ip4["fragment_offset"] == 0:
            out["kind"] = "vrrp"
        elif ip4["protocol"] == 2:
            out["kind"] = "igmp"
        elif ip4["protocol"] == 1:
            out["kind"] = "icmp"
    elif eth["ethertype"] == ETH_P_IPV6:
        ip6 = parse_ipv6(eth["payload"])
        out["ip"] = ip6
        if ip6["next_header"] == IPPROTO_VRRP:
            out["kind"] = "vrrp"
        else:
            protocol, data = parse_icmpv6_after_headers(ip6)
            if protocol == 58 and len(data) >= 4:
                out["kind"] = "icmpv6"
                out["icmpv6"] = parse_icmpv6(data)
    elif eth["ethertype"] == ETH_P_ARP:
        out["kind"] = "arp"
        out["arp"] = parse_arp(eth["payload"])
    return out


def describe(frame_info: dict) -> str:
    kind = frame_info["kind"]
    if kind == "arp":
        a = frame_info["arp"]
        garp = " (gratuitous)" if a["sender_ip"] == a["target_ip"] else ""
        return f"arp {a['op_name']} {a['sender_ip']}->{a['target_ip']}{garp}"
    if kind == "icmpv6":
        i = frame_info["icmpv6"]
        return f"icmpv6 {i['name']}" + (f" {i['target']}" if "target" in i else "")
    if kind == "vrrp":
        return "vrrp"
    return f"{kind} ethertype 0x{frame_info['eth']['ethertype']:04x}"


# --------------------------------------------------------------------------------------------
# Cases
# --------------------------------------------------------------------------------------------

@dataclasses.dataclass
class Case:
    name: str
    description: str
    family: int
    advert_int: float
    instance: str            # the body of vrrp_instance
    adverts: int = 2         # adverts to keep
    window: float = 0.0      # after the first advert, keep capturing this long (GARP / NA)
    sigterm: bool = False    # SIGTERM keepalived after `adverts` adverts, wait for priority 0
    extra: bool = False      # added after the first seven cases (JSON: extra_case)

    def config(self) -> str:
        body = "\n".join("    " + line if line else ""
                         for line in self.instance.strip().splitlines())
        return ("# generated by tests/golden/tools/capture_keepalived_adverts.py "
                f"(case {self.name})\n"
                "global_defs {\n"
                f"    router_id dcap_{self.name}\n"
                "}\n\n"
                f"vrrp_instance VI_{self.name} {{\n"
                f"    interface {K_IF}\n"
                f"{body}\n"
                "}\n")

    def deadline(self) -> float:
        # master down interval (3 * advert_int + skew <= 1 s) + the adverts + window + margin
        grace = 6.0 if self.sigterm else 0.0
        return 3 * self.advert_int + 1 + self.adverts * self.advert_int + self.window + 5 + grace


V2_PASS = """
state BACKUP
virtual_router_id 51
priority 150
advert_int 1
authentication {
    auth_type PASS
    auth_pass secret12
}
virtual_ipaddress {
    192.0.2.100/24
}
"""

CASES = [
    Case("v2_pass", "VRRPv2 IPv4 multicast, vrid 51, priority 150, advert_int 1, auth PASS "
         "'secret12'; default garp settings (ARP captured for 8 s after the first advert)",
         4, 1, V2_PASS, window=8.0),
    Case("v2_pass_long", "as v2_pass but auth_pass 'toolongpassword' (15 chars): what is sent",
         4, 1, V2_PASS.replace("secret12", "toolongpassword")),
    Case("v2_noauth", "VRRPv2 IPv4 multicast, vrid 52, priority 100, advert_int 2, no auth, "
         "three VIPs", 4, 2, """
state BACKUP
virtual_router_id 52
priority 100
advert_int 2
virtual_ipaddress {
    192.0.2.110/24
    192.0.2.111/24
    192.0.2.112/24
}
"""),
    Case("v3_ipv4", "VRRPv3 IPv4 multicast, vrid 53, priority 200, advert_int 0.5 (50 cs), "
         "two VIPs", 4, 0.5, """
state BACKUP
version 3
virtual_router_id 53
priority 200
advert_int 0.5
virtual_ipaddress {
    192.0.2.120/24
    192.0.2.121/24
}
"""),
    Case("v3_ipv6", "VRRPv3 IPv6 multicast (link-local source), vrid 54, priority 120, "
         "advert_int 1, VIPs 2001:db8::100 and 2001:db8::101 (NA captured for 8 s)", 6, 1, """
state BACKUP
version 3
virtual_router_id 54
priority 120
advert_int 1
virtual_ipaddress {
    2001:db8::100/64
    2001:db8::101/64
}
""", window=8.0),
    Case("v2_prio0", "the v2_pass configuration; SIGTERM to keepalived while MASTER after 2 "
         "adverts: the priority-0 advert(s) it sends on the way out", 4, 1,
         V2_PASS, adverts=2, sigterm=True),
    Case("unicast_v2", "VRRPv2 IPv4 unicast: unicast_src_ip 192.0.2.1, unicast_peer "
         "192.0.2.2 (the capture namespace), vrid 55, priority 100, advert_int 1, no auth",
         4, 1, f"""
state BACKUP
virtual_router_id 55
priority 100
advert_int 1
unicast_src_ip {K_V4}
unicast_peer {{
    {C_V4}
}}
virtual_ipaddress {{
    192.0.2.130/24
}}
"""),
    Case("v2_ah", "VRRPv2 IPv4 multicast, vrid 57, priority 150, advert_int 1, auth_type AH "
         "'secret12': IP protocol 51, the AH header (SPI, sequence number, HMAC-MD5-96 ICV) "
         "before the VRRP message; three adverts for the growing sequence number", 4, 1,
         V2_PASS.replace("PASS", "AH").replace("virtual_router_id 51", "virtual_router_id 57"),
         adverts=3, extra=True),
    Case("unicast_v2_ah", "as v2_ah but unicast to 192.0.2.2 (vrid 58): the TTL is zeroed "
         "in the ICV only for a unicast instance", 4, 1, f"""
state BACKUP
virtual_router_id 58
priority 100
advert_int 1
authentication {{
    auth_type AH
    auth_pass secret12
}}
unicast_src_ip {K_V4}
unicast_peer {{
    {C_V4}
}}
virtual_ipaddress {{
    192.0.2.150/24
}}
""", extra=True),
    Case("unicast_v3", "VRRPv3 IPv4 unicast (extra): which destination the v3 pseudo-header "
         "checksum uses for unicast; vrid 56, priority 100, advert_int 1", 4, 1, f"""
state BACKUP
version 3
virtual_router_id 56
priority 100
advert_int 1
unicast_src_ip {K_V4}
unicast_peer {{
    {C_V4}
}}
virtual_ipaddress {{
    192.0.2.140/24
}}
""", extra=True),
]


# --------------------------------------------------------------------------------------------
# Namespaces, processes, teardown
# --------------------------------------------------------------------------------------------

class CaptureError(RuntimeError):
    pass


def run(command: list[str], check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(command, check=False, capture_output=True, text=True,
                          timeout=COMMAND_TIMEOUT, stdin=subprocess.DEVNULL)
    if check and done.returncode:
        raise CaptureError(f"{' '.join(command)}: exit {done.returncode}: "
                           f"{done.stderr.strip() or done.stdout.strip()}")
    return done


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop_pids(pids: list[int], grace: float = 3.0) -> None:
    """SIGTERM, wait up to `grace` seconds, SIGKILL what is left (only these pids)."""
    pids = [p for p in pids if p > 1 and pid_alive(p)]
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    end = time.monotonic() + grace
    while time.monotonic() < end and any(pid_alive(p) for p in pids):
        time.sleep(0.05)
    for pid in pids:
        if pid_alive(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


class Lab:
    """Two namespaces joined by a veth pair; everything undone by close()."""

    def __init__(self, index: int, verbose: bool):
        self.k = f"dcap-{os.getpid()}-{index}k"
        self.c = f"dcap-{os.getpid()}-{index}c"
        self.verbose = verbose
        self.created: list[str] = []
        self.processes: list[subprocess.Popen] = []
        self.link_local: dict[str, str] = {}

    def log(self, text: str) -> None:
        if self.verbose:
            print(f"    [{self.k[:-1]}] {text}", file=sys.stderr)

    def setup(self) -> None:
        for ns in (self.k, self.c):
            run(["ip", "netns", "add", ns])
            self.created.append(ns)
            run(["ip", "netns", "exec", ns, "sysctl", "-qw",
                 "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0"])
            run(["ip", "-n", ns, "link", "set", "lo", "up"])
        # created inside k, peer put straight into c: the host namespace never sees either end
        run(["ip", "-n", self.k, "link", "add", K_IF, "address", K_MAC, "type", "veth",
             "peer", "name", C_IF, "address", C_MAC, "netns", self.c])
        for ns, ifname, v4, v6 in ((self.k, K_IF, K_V4, K_V6), (self.c, C_IF, C_V4, C_V6)):
            run(["ip", "-n", ns, "addr", "add", f"{v4}/24", "dev", ifname])
            run(["ip", "-n", ns, "-6", "addr", "add", f"{v6}/64", "dev", ifname, "nodad"])
            run(["ip", "-n", ns, "link", "set", ifname, "up"])
        self.link_local = {ns: self.wait_link_local(ns, ifname)
                           for ns, ifname in ((self.k, K_IF), (self.c, C_IF))}

    def wait_link_local(self, ns: str, ifname: str) -> str:
        end = time.monotonic() + 10
        for _ in range(200):
            out = run(["ip", "-n", ns, "-6", "-o", "addr", "show", "dev", ifname,
                       "scope", "link"]).stdout
            if out.strip() and "tentative" not in out:
                address = out.split()[3].split("/")[0]
                self.log(f"{ns} {ifname} link-local {address} ready")
                return address
            if time.monotonic() > end:
                break
            time.sleep(0.05)
        raise CaptureError(f"{ns}: no usable link-local address on {ifname} within 10 s: {out!r}")

    def popen(self, ns: str, command: list[str], **kwargs) -> subprocess.Popen:
        # own session: a Ctrl-C at the terminal reaches only this tool, which then tears down
        proc = subprocess.Popen(["ip", "netns", "exec", ns, *command], start_new_session=True,
                                stdin=subprocess.DEVNULL, **kwargs)
        self.processes.append(proc)
        return proc

    def close(self) -> None:
        for proc in reversed(self.processes):
            if proc.poll() is None:
                stop_pids([proc.pid])
            try:
                proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                pass
            for stream in (proc.stdout, proc.stderr):
                if stream:
                    stream.close()
        for ns in reversed(self.created):
            try:
                left = run(["ip", "netns", "pids", ns], check=False).stdout.split()
                if left:
                    self.log(f"stopping leftover pids in {ns}: {left}")
                    stop_pids([int(p) for p in left if p.isdigit()])
                run(["ip", "netns", "del", ns], check=False)
            except (OSError, subprocess.SubprocessError, CaptureError) as error:
                print(f"warning: teardown of {ns}: {error}", file=sys.stderr)
        self.created.clear()


class LineReader:
    """Bounded, non-blocking reading of the capture helper's JSON lines."""

    def __init__(self, proc: subprocess.Popen):
        self.proc = proc
        self.fd = proc.stdout.fileno()
        os.set_blocking(self.fd, False)
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.fd, selectors.EVENT_READ)
        self.buffer = b""
        self.eof = False

    def lines(self, timeout: float) -> list[dict]:
        if not self.eof and self.selector.select(max(0.0, timeout)):
            try:
                chunk = os.read(self.fd, 1 << 16)
            except BlockingIOError:
                chunk = None
            if chunk == b"":
                self.eof = True
            elif chunk:
                self.buffer += chunk
        out = []
        while b"\n" in self.buffer:
            line, self.buffer = self.buffer.split(b"\n", 1)
            if line.strip():
                out.append(json.loads(line))
        return out


# --------------------------------------------------------------------------------------------
# One case
# --------------------------------------------------------------------------------------------

def keepalived_version(binary: str) -> str:
    done = subprocess.run([binary, "--version"], check=False, capture_output=True, text=True,
                          timeout=10)
    text = (done.stdout + done.stderr).strip().splitlines()
    return text[0] if text else "unknown"


def capture_case(case: Case, index: int, binary: str, verbose: bool) -> dict:
    lab = Lab(index, verbose)
    tmp = tempfile.mkdtemp(prefix=f"dcap-{case.name}-")
    result: dict = {"case": case, "frames": [], "events": {}, "log": ""}
    klog_path = os.path.join(tmp, "keepalived.log")
    try:
        lab.setup()
        result["link_local_k"] = lab.link_local[lab.k]
        result["link_local_c"] = lab.link_local[lab.c]

        deadline_s = case.deadline()
        helper = lab.popen(lab.c, [sys.executable, "-u", os.path.abspath(__file__),
                                   "--capture-helper", C_IF, str(deadline_s + 5),
                                   str(MAX_FRAMES)],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        reader = LineReader(helper)
        ready_end = time.monotonic() + 10
        ready = False
        while not ready and time.monotonic() < ready_end:
            for item in reader.lines(0.2):
                ready = ready or item.get("ready", False)
            if helper.poll() is not None and not ready:
                raise CaptureError("capture helper exited: " + helper.stderr.read().decode())
        if not ready:
            raise CaptureError("capture helper not ready within 10 s")

        conf = os.path.join(tmp, "keepalived.conf")
        with open(conf, "w") as handle:
            handle.write(case.config())
        command = [binary, "-P", "-n", "-l", "-D", "-G", "-f", conf,
                   "-p", os.path.join(tmp, "keepalived.pid"),
                   "-r", os.path.join(tmp, "vrrp.pid"),
                   "-c", os.path.join(tmp, "checkers.pid"),
                   "-b", os.path.join(tmp, "bfd.pid")]
        result["command"] = command
        with open(klog_path, "wb") as klog:
            started_wall = time.time()
            keepalived = lab.popen(lab.k, command, stdout=klog, stderr=subprocess.STDOUT)
        lab.log(f"keepalived pid {keepalived.pid}, deadline {deadline_s:.1f} s")

        end = time.monotonic() + deadline_s
        adverts: list[dict] = []
        prio0: list[dict] = []
        sigterm_wall = None
        stop_after = None        # monotonic time at which we have enough
        for _ in range(100000):  # bounded; the deadline ends it far sooner
            now = time.monotonic()
            if now >= end or (stop_after is not None and now >= stop_after):
                break
            for item in reader.lines(min(0.2, end - now)):
                if "frame" not in item:
                    continue
                frame = bytes.fromhex(item["frame"])
                info = classify(frame)
                record = {"t": item["t"], "pkttype": item["pkttype"], "frame": frame,
                          "info": info, "truncated": item.get("truncated", False)}
                result["frames"].append(record)
                if item["pkttype"] == PACKET_OUTGOING or info["kind"] != "vrrp":
                    lab.log(f"frame {PKTTYPES.get(item['pkttype'])} {describe(info)}")
                    continue
                vrrp = info["ip"]["payload"]
                if len(vrrp) >= 3 and vrrp[2] == 0:
                    prio0.append(record)
                    lab.log("advert priority 0")
                else:
                    adverts.append(record)
                    lab.log(f"advert #{len(adverts)}")
            if keepalived.poll() is not None and sigterm_wall is None:
                raise CaptureError(f"keepalived exited early with {keepalived.returncode}")
            now = time.monotonic()
            if case.sigterm:
                if sigterm_wall is None and len(adverts) >= case.adverts:
                    sigterm_wall = time.time()
                    os.kill(keepalived.pid, signal.SIGTERM)
                    lab.log("SIGTERM sent to keepalived")
                    end = min(end, now + 6)
                if prio0 and stop_after is None:
                    stop_after = now + 1.5    # see whether more than one is sent
                if sigterm_wall is not None and keepalived.poll() is not None \
                        and stop_after is None:
                    stop_after = now + 0.5
            elif len(adverts) >= case.adverts and stop_after is None:
                if case.window:
                    stop_after = now + max(0.0, adverts[0]["t"] + case.window - time.time())
                else:
                    stop_after = now
        result["adverts"] = adverts
        result["prio0"] = prio0
        result["started_wall"] = started_wall
        result["sigterm_wall"] = sigterm_wall
        if len(adverts) < case.adverts:
            raise CaptureError(f"only {len(adverts)} adverts within {deadline_s:.1f} s")
        if case.sigterm and not prio0:
            raise CaptureError("no priority-0 advert after SIGTERM")
        if case.sigterm:
            keepalived.wait(timeout=5)
            result["keepalived_exit"] = keepalived.returncode
        return result
    except CaptureError as error:
        try:
            with open(klog_path, errors="replace") as handle:
                tail = handle.read().splitlines()[-15:]
        except OSError:
            tail = []
        raise CaptureError("\n".join([str(error), "   keepalived log (last lines):",
                                      *("     " + line for line in tail)])) from None
    finally:
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            lab.close()
        finally:
            signal.signal(signal.SIGINT, previous)
            try:
                with open(klog_path, errors="replace") as handle:
                    result["log"] = handle.read()
            except OSError:
                pass
            for name in sorted(os.listdir(tmp)):
                os.unlink(os.path.join(tmp, name))
            os.rmdir(tmp)


# --------------------------------------------------------------------------------------------
# Documents
# --------------------------------------------------------------------------------------------

def packet_document(record: dict, first_t: float) -> dict:
    info = record["info"]
    ip = info["ip"]
    family = ip["version"]
    message = ip["payload"]
    fields = parse_vrrp(message, family)
    check = vrrp_checksum(message, fields["version"], family, ip["src"], ip["dst"])
    doc = {
        "time_since_first_advert_s": round(record["t"] - first_t, 6),
        "eth_src": info["eth"]["src"],
        "eth_dst": info["eth"]["dst"],
        "packet_type": PKTTYPES.get(record["pkttype"], record["pkttype"]),
        "ip_packet_hex": ip["packet"].hex(),
        "family": family,
        "src": ip["src"],
        "dst": ip["dst"],
        "ttl_or_hop_limit": ip["ttl"] if family == 4 else ip["hop_limit"],
    }
    if family == 4:
        doc["ip_header"] = {k: ip[k] for k in (
            "ihl", "tos", "total_length", "identification", "dont_fragment", "more_fragments",
            "fragment_offset", "protocol", "header_checksum", "header_checksum_valid",
            "options_hex")}
    else:
        doc["ip_header"] = {k: ip[k] for k in (
            "traffic_class", "flow_label", "payload_length", "next_header")}
    if "ah" in info:
        doc["ah"] = info["ah"]
    doc["vrrp_hex"] = message.hex()
    doc["fields"] = fields
    doc["checksum_valid"] = check["valid"]
    doc["checksum_method"] = check["method"]
    doc["checksum_recomputed"] = check["recomputed"]
    return doc


def case_document(result: dict, version: str) -> dict:
    case: Case = result["case"]
    first_t = result["adverts"][0]["t"]
    kept = result["prio0"] if case.sigterm else result["adverts"][:case.adverts]
    packets = [packet_document(r, first_t) for r in kept]
    from_k = [r for r in result["frames"] if r["pkttype"] != PACKET_OUTGOING]
    summary: dict[str, int] = {}
    for r in from_k:
        label = describe(r["info"])
        summary[label] = summary.get(label, 0) + 1
    doc = {
        "case": case.name,
        "description": case.description,
        "extra_case": case.extra,
        "keepalived_version": version,
        "keepalived_command": "keepalived " + " ".join(
            os.path.basename(a) if os.path.isabs(a) else a for a in result["command"][1:]),
        "keepalived_config": case.config(),
        "captured_with": "tests/golden/tools/capture_keepalived_adverts.py",
        "interface": {"name": K_IF, "mac": K_MAC, "ipv4": K_V4, "ipv6": K_V6,
                      "ipv6_link_local": result["link_local_k"]},
        "peer_interface": {"name": C_IF, "mac": C_MAC, "ipv4": C_V4, "ipv6": C_V6,
                           "ipv6_link_local": result["link_local_c"]},
        "seconds_from_start_to_first_advert": round(first_t - result["started_wall"], 3),
        "advert_times_s": [round(r["t"] - first_t, 6) for r in result["adverts"]],
    }
    if case.sigterm:
        doc["seconds_from_sigterm_to_priority0"] = [
            round(r["t"] - result["sigterm_wall"], 6) for r in result["prio0"]]
        doc["priority0_count"] = len(result["prio0"])
        doc["keepalived_exit_status"] = result.get("keepalived_exit")
        doc["note"] = ("packets are the priority-0 adverts seen after SIGTERM; "
                       "advert_times_s lists the normal adverts before it")
    doc["keepalived_config_messages"] = config_messages(result["log"])
    doc["frames_from_keepalived_namespace"] = summary
    doc["packets"] = packets
    doc["checksum_valid"] = all(p["checksum_valid"] for p in packets)
    return doc


def config_messages(log: str) -> list[str]:
    """keepalived's own remarks on the configuration (e.g. 'Truncating auth_pass ...'),
    without the timestamp and with the temporary path reduced to keepalived.conf."""
    out = []
    for line in log.splitlines():
        text = re.sub(r"^\w{3} \w{3} +\d+ [\d:]+ \d{4}: ", "", line)
        text = re.sub(r"/\S*/keepalived\.conf", "keepalived.conf", text)
        if re.search(r"Line \d+\)|WARNING|NOTICE|[Ee]rror", text):
            out.append(text)
    return out


def garp_document(result: dict, version: str) -> dict:
    first_t = result["adverts"][0]["t"]
    arps = [r for r in result["frames"]
            if r["info"]["kind"] == "arp" and r["pkttype"] != PACKET_OUTGOING]
    entries = []
    for r in arps:
        a = r["info"]["arp"]
        entries.append({
            "time_since_first_advert_s": round(r["t"] - first_t, 6),
            "frame_hex": r["frame"].hex(),
            "frame_length": len(r["frame"]),
            "eth_dst": r["info"]["eth"]["dst"],
            "eth_src": r["info"]["eth"]["src"],
            "gratuitous": a["sender_ip"] == a["target_ip"],
            **a,
        })
    case: Case = result["case"]
    return {
        "case": "garp_" + case.name,
        "description": "ARP frames (L2 included) sent by keepalived's namespace from start "
                       f"until {case.window:g} s after the first advert, default garp settings",
        "keepalived_version": version,
        "keepalived_config": case.config(),
        "capture_window_s_after_first_advert": case.window,
        "advert_times_s": [round(r["t"] - first_t, 6) for r in result["adverts"]],
        "gratuitous_arp_count": sum(e["gratuitous"] for e in entries),
        "arp_frames": entries,
    }


def na_document(result: dict, version: str) -> dict:
    first_t = result["adverts"][0]["t"]
    entries = []
    for r in result["frames"]:
        info = r["info"]
        if r["pkttype"] == PACKET_OUTGOING or info["kind"] != "icmpv6":
            continue
        entries.append({
            "time_since_first_advert_s": round(r["t"] - first_t, 6),
            "frame_hex": r["frame"].hex(),
            "eth_dst": info["eth"]["dst"],
            "eth_src": info["eth"]["src"],
            "ip_src": info["ip"]["src"],
            "ip_dst": info["ip"]["dst"],
            "hop_limit": info["ip"]["hop_limit"],
            "icmpv6": info["icmpv6"],
        })
    case: Case = result["case"]
    return {
        "case": "una_" + case.name,
        "description": "ICMPv6 frames (L2 included) sent by keepalived's namespace from start "
                       f"until {case.window:g} s after the first advert: unsolicited neighbour "
                       "advertisements for the VIPs, plus MLD/RS noise from the kernel",
        "keepalived_version": version,
        "keepalived_config": case.config(),
        "capture_window_s_after_first_advert": case.window,
        "advert_times_s": [round(r["t"] - first_t, 6) for r in result["adverts"]],
        "neighbor_advertisement_count": sum(
            e["icmpv6"]["type"] == 136 for e in entries),
        "icmpv6_frames": entries,
    }


def write_json(path: str, doc: dict) -> None:
    with open(path, "w") as handle:
        json.dump(doc, handle, indent=2)
        handle.write("\n")


def summarize(doc: dict) -> str:
    lines = [(f"{doc['case']}: {len(doc['packets'])} packet(s), "
              f"first advert {doc['seconds_from_start_to_first_advert']} s after start")]
    for p in doc["packets"]:
        f = p["fields"]
        interval = (f"advert_int {f['advert_int']}" if f["version"] == 2
                    else f"max_advert_int {f['max_advert_int_centiseconds']} cs")
        auth = f" auth_type {f['auth_type']} auth {f['auth_data_hex']}" if f["version"] == 2 else ""
        lines.append(f"    v{f['version']} vrid {f['vrid']} prio {f['priority']} "
                     f"{interval}{auth} {p['src']} -> {p['dst']} ttl/hl "
                     f"{p['ttl_or_hop_limit']} mac {p['eth_src']} -> {p['eth_dst']} "
                     f"checksum 0x{f['checksum']:04x} valid={p['checksum_valid']}")
    lines.append(f"    other frames from keepalived ns: {doc['frames_from_keepalived_namespace']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--capture-helper"]:
        return capture_helper(argv[1], float(argv[2]), int(argv[3]))
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=DEFAULT_OUT)
    parser.add_argument("--cases", default="", help="comma-separated subset (default: all)")
    parser.add_argument("--keepalived", default="/usr/sbin/keepalived")
    parser.add_argument("--list", action="store_true", help="list the cases and exit")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    if args.list:
        for case in CASES:
            print(f"{case.name:14} {case.description}")
        return 0
    wanted = [c for c in args.cases.split(",") if c]
    unknown = set(wanted) - {c.name for c in CASES}
    if unknown:
        parser.error(f"unknown case(s): {', '.join(sorted(unknown))}")
    if os.geteuid() != 0:
        print("needs root (network namespaces, AF_PACKET)", file=sys.stderr)
        return 2
    if not os.access(args.keepalived, os.X_OK):
        print(f"{args.keepalived}: not executable", file=sys.stderr)
        return 2

    # SIGTERM to this tool unwinds like Ctrl-C, so every `finally` runs
    def on_term(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")
    signal.signal(signal.SIGTERM, on_term)
    # also when started with SIGINT ignored (a background job of a non-interactive shell)
    signal.signal(signal.SIGINT, signal.default_int_handler)

    version = keepalived_version(args.keepalived)
    os.makedirs(args.out, exist_ok=True)
    failures, bad_checksums = [], []
    for index, case in enumerate(CASES):
        if wanted and case.name not in wanted:
            continue
        print(f"== {case.name} (deadline {case.deadline():.1f} s)", flush=True)
        try:
            result = capture_case(case, index, args.keepalived, args.verbose)
        except CaptureError as error:
            failures.append(case.name)
            print(f"   FAILED: {error}", file=sys.stderr)
            continue
        if args.verbose:
            print(result["log"], file=sys.stderr)
        doc = case_document(result, version)
        write_json(os.path.join(args.out, f"{case.name}.json"), doc)
        print(summarize(doc), flush=True)
        bad_checksums += [f"{case.name}[{i}]" for i, p in enumerate(doc["packets"])
                          if not p["checksum_valid"]]
        if case.name == "v2_pass":
            garp = garp_document(result, version)
            write_json(os.path.join(args.out, "garp_v2_pass.json"), garp)
            times = [e["time_since_first_advert_s"] for e in garp["arp_frames"]
                     if e["gratuitous"]]
            print(f"    ARP: {garp['gratuitous_arp_count']} gratuitous at {times}"
                  " s relative to the first advert")
        if case.name == "v3_ipv6":
            una = na_document(result, version)
            write_json(os.path.join(args.out, "una_v3_ipv6.json"), una)
            times = [e["time_since_first_advert_s"] for e in una["icmpv6_frames"]
                     if e["icmpv6"]["type"] == 136]
            print(f"    ICMPv6: {una['neighbor_advertisement_count']} neighbour advertisements "
                  f"at {times} s relative to the first advert")
    if failures:
        print(f"failed cases: {', '.join(failures)}", file=sys.stderr)
    if bad_checksums:
        print(f"INVALID checksums: {', '.join(bad_checksums)}", file=sys.stderr)
    return 1 if failures or bad_checksums else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt as interrupt:
        print(f"interrupted ({interrupt or 'SIGINT'}); namespaces and processes torn down",
              file=sys.stderr)
        sys.exit(130)
