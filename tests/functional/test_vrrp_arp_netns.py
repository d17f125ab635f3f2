"""director.vrrp.arp on a real link: two network namespaces joined by a veth pair.

A holds the VIPs and runs Announcer.announce() (as a subprocess under ``ip netns exec``, so
/sys/class/net and /proc/sys/net are A's); B has STALE neighbour entries for the VIPs that
point to a fake MAC and must be repointed to A's MAC by the GARP / unsolicited NA. A capture
on B checks the frames themselves, and the kernel's own ICMPv6 checksum is compared with ours.

Self-contained on purpose (no shared lab fixture). Only 192.0.2.0/24 and 2001:db8::/64 are
used, only inside the namespaces; the veth pair is created inside A and never appears on the
host. Every wait is bounded by a deadline.
"""

from __future__ import annotations

import errno
import ipaddress
import json
import os
import secrets
import select
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from director.vrrp.arp import unsolicited_na, unsolicited_na_frame
from tests.functional.lab import netns_unavailable

pytestmark = [pytest.mark.netns, pytest.mark.slow, pytest.mark.timeout(120)]

REPO = Path(__file__).resolve().parents[2]
VENV_PYTHON = REPO / ".venv" / "bin" / "python"
PYTHON = str(VENV_PYTHON) if os.path.exists(VENV_PYTHON) else sys.executable
DEADLINE = 10.0      # seconds any single wait may take
POLL = 0.05          # interval between looks while waiting for a deadline
VIP4, VIP6 = "192.0.2.100", "2001:db8::100"
FAKE_MAC = "02:00:00:00:00:01"
IF_A, IF_B = "arpa0", "arpb0"    # exist only inside the namespaces


@pytest.fixture(scope="module")
def netns_ok():
    reason = netns_unavailable()
    if reason:
        pytest.skip(f"network namespaces unavailable: {reason}")


@pytest.fixture
def need_ipv6():
    if not os.path.isdir("/proc/sys/net/ipv6"):
        pytest.skip("IPv6 is disabled in this kernel (no /proc/sys/net/ipv6)")


def wait_for(what: str, check, deadline: float = DEADLINE):
    """Poll ``check()`` until it returns something truthy; fail after ``deadline`` seconds."""
    end = time.monotonic() + deadline
    last = None
    while True:
        last = check()
        if last:
            return last
        if time.monotonic() >= end:
            pytest.fail(f"timed out after {deadline}s waiting for {what} (last: {last!r})")
        time.sleep(POLL)


# Runs in namespace A: a list of steps, ["announce", ifname, [addresses]] or
# ["run", [argv]]; prints one JSON result per step (count, or errno + message).
STEPS = r"""
import json, subprocess, sys
from director.vrrp.arp import Announcer
out = []
with Announcer() as announcer:
    for step in json.loads(sys.argv[1]):
        if step[0] == "run":
            subprocess.run(step[1], check=True, timeout=10)
            out.append(None)
            continue
        try:
            out.append(announcer.announce(step[1], step[2]))
        except OSError as exc:
            out.append({"errno": exc.errno, "message": str(exc)})
print(json.dumps(out))
"""

# Runs in namespace B: packet capture on one interface until every needle
# [ethertype, offset, hex] matched a frame, or the deadline; prints the frames seen of the
# needles' ethertypes (hex) as JSON. "READY" first, once the socket is bound.
CAPTURE = r"""
import json, select, socket, sys, time
ifname, deadline, needles = sys.argv[1], float(sys.argv[2]), json.loads(sys.argv[3])
needles = [(t, o, bytes.fromhex(h)) for t, o, h in needles]
types = {t for t, _, _ in needles}
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))   # ETH_P_ALL
s.bind((ifname, 3))
print("READY", flush=True)
end = time.monotonic() + deadline
frames, missing = [], set(range(len(needles)))
while missing:
    left = end - time.monotonic()
    if left <= 0 or not select.select([s], [], [], left)[0]:
        break
    frame, addr = s.recvfrom(65535)
    if addr[2] == socket.PACKET_OUTGOING or len(frame) < 14:
        continue
    ethertype = int.from_bytes(frame[12:14], "big")
    if ethertype not in types:
        continue
    frames.append(frame.hex())
    for i in list(missing):
        t, o, h = needles[i]
        if t == ethertype and frame[o:o + len(h)] == h:
            missing.discard(i)
print(json.dumps(frames), flush=True)
"""

# Runs in namespace A: our NA body (checksum zeroed) sent by the kernel through a raw ICMPv6
# socket, which computes the checksum itself; B compares it with ours.
KERNEL_NA = r"""
import socket, sys
from director.vrrp.arp import unsolicited_na
ifname, mac, vip = sys.argv[1:4]
index = socket.if_nametoindex(ifname)
body = unsolicited_na(mac, vip)
body = body[:2] + b"\0\0" + body[4:]
s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, index)
s.bind((vip, 0, 0, 0))
s.sendto(body, ("ff02::1", 0, 0, index))
"""


class NetnsPair:
    """Namespaces A and B, veth IF_A (in A) <-> IF_B (in B), both up."""

    def __init__(self) -> None:
        suffix = f"{os.getpid()}-{secrets.token_hex(3)}"
        self.a, self.b = f"arpA-{suffix}", f"arpB-{suffix}"
        self.procs: list[subprocess.Popen] = []
        self.created: list[str] = []

    # -- plumbing --------------------------------------------------------------------
    def ip(self, ns: str, *args: str) -> str:
        done = subprocess.run(["ip", "-n", ns, *args], capture_output=True, text=True,
                              check=False, timeout=DEADLINE)
        if done.returncode != 0:
            raise AssertionError(f"ip -n {ns} {' '.join(args)}: {done.stderr.strip()}")
        return done.stdout

    def ip_json(self, ns: str, *args: str):
        return json.loads(self.ip(ns, "-j", *args) or "[]")

    def _argv(self, ns: str, code: str, *args: str) -> list[str]:
        return ["ip", "netns", "exec", ns, PYTHON, "-c", code, *args]

    def _env(self) -> dict[str, str]:
        return {**os.environ, "PYTHONPATH": str(REPO), "PYTHONDONTWRITEBYTECODE": "1"}

    def python(self, ns: str, code: str, *args: str) -> str:
        done = subprocess.run(self._argv(ns, code, *args), capture_output=True, text=True,
                              check=False, timeout=DEADLINE * 2, env=self._env())
        if done.returncode != 0:
            raise AssertionError(f"python in {ns} failed:\n{done.stderr}")
        return done.stdout

    def steps(self, steps: list) -> list:
        return json.loads(self.python(self.a, STEPS, json.dumps(steps)))

    def announce(self, addresses: list[str]) -> int:
        return self.steps([["announce", IF_A, addresses]])[0]

    # -- lifecycle -------------------------------------------------------------------
    def setup(self) -> None:
        for ns in (self.a, self.b):
            done = subprocess.run(["ip", "netns", "add", ns], capture_output=True, text=True,
                                  check=False, timeout=DEADLINE)
            if done.returncode != 0:
                raise AssertionError(f"ip netns add {ns}: {done.stderr.strip()}")
            self.created.append(ns)
        self.ip(self.a, "link", "add", IF_A, "type", "veth", "peer", "name", IF_B,
                "netns", self.b)
        for ns, ifname, ip4, ip6 in ((self.a, IF_A, "192.0.2.1/24", "2001:db8::1/64"),
                                     (self.b, IF_B, "192.0.2.2/24", "2001:db8::2/64")):
            self.ip(ns, "link", "set", "lo", "up")
            self.ip(ns, "addr", "add", ip4, "dev", ifname)
            if os.path.isdir("/proc/sys/net/ipv6"):
                self.ip(ns, "-6", "addr", "add", ip6, "dev", ifname, "nodad")
            self.ip(ns, "link", "set", ifname, "up")
        # Until the link watcher has run, a device's qdisc is noop and frames vanish.
        wait_for("both veth ends operationally up", lambda: all(
            self.ip_json(ns, "link", "show", "dev", ifname)[0].get("operstate") == "UP"
            and self.ip_json(ns, "link", "show", "dev", ifname)[0].get("qdisc") != "noop"
            for ns, ifname in ((self.a, IF_A), (self.b, IF_B))))
        self.mac_a = self.ip_json(self.a, "link", "show", "dev", IF_A)[0]["address"]

    def teardown(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            try:
                proc.wait(timeout=DEADLINE)
            except subprocess.TimeoutExpired:
                pass
            for stream in (proc.stdout, proc.stderr):
                if stream:
                    stream.close()
        for ns in reversed(self.created):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False,
                           timeout=DEADLINE)

    # -- helpers for the tests -------------------------------------------------------
    def neighbour(self, ip: str) -> dict | None:
        family = "-6" if ":" in ip else "-4"
        entries = self.ip_json(self.b, family, "neigh", "show", ip, "dev", IF_B)
        return entries[0] if entries else None

    def make_stale(self, ip: str) -> None:
        family = "-6" if ":" in ip else "-4"
        self.ip(self.b, family, "neigh", "replace", ip, "lladdr", FAKE_MAC, "dev", IF_B,
                "nud", "stale")
        entry = self.neighbour(ip)
        assert entry and entry.get("lladdr") == FAKE_MAC and "STALE" in entry.get("state", [])

    def start_capture(self, needles: list) -> subprocess.Popen:
        proc = subprocess.Popen(self._argv(self.b, CAPTURE, IF_B, str(DEADLINE),
                                           json.dumps(needles)),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=self._env())
        self.procs.append(proc)
        ready, _, _ = select.select([proc.stdout], [], [], DEADLINE)
        line = proc.stdout.readline() if ready else ""
        if line.strip() != "READY":
            proc.kill()
            pytest.fail(f"capture in B did not start: {line!r} {proc.stderr.read()}")
        return proc

    def captured(self, proc: subprocess.Popen) -> list[bytes]:
        out, err = proc.communicate(timeout=DEADLINE * 2)
        assert proc.returncode == 0, err
        return [bytes.fromhex(h) for h in json.loads(out)]


@pytest.fixture
def net(netns_ok):
    """Our own namespace pair (deliberately not the shared `lab` fixture of conftest)."""
    net = NetnsPair()
    try:
        net.setup()
        yield net
    finally:
        net.teardown()
        left = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True,
                              check=False, timeout=DEADLINE).stdout
        assert net.a not in left and net.b not in left, f"namespaces left behind: {left}"


def test_garp_repoints_stale_neighbour(net):
    net.ip(net.a, "addr", "add", f"{VIP4}/24", "dev", IF_A)
    net.make_stale(VIP4)   # after the address exists: nothing the kernel sent counts
    assert net.announce([VIP4]) == 1
    entry = wait_for(f"B's entry for {VIP4} to become {net.mac_a}",
                     lambda: (e := net.neighbour(VIP4)) and e.get("lladdr") == net.mac_a and e)
    assert entry["dst"] == VIP4


def test_unsolicited_na_repoints_stale_neighbour(net, need_ipv6):
    net.ip(net.a, "-6", "addr", "add", f"{VIP6}/64", "dev", IF_A, "nodad")
    net.make_stale(VIP6)
    assert net.announce([VIP6]) == 1
    entry = wait_for(f"B's entry for {VIP6} to become {net.mac_a}",
                     lambda: (e := net.neighbour(VIP6)) and e.get("lladdr") == net.mac_a and e)
    assert ipaddress.ip_address(entry["dst"]) == ipaddress.ip_address(VIP6)


def test_one_round_for_both_families_repoints_both(net, need_ipv6):
    net.ip(net.a, "addr", "add", f"{VIP4}/24", "dev", IF_A)
    net.ip(net.a, "-6", "addr", "add", f"{VIP6}/64", "dev", IF_A, "nodad")
    net.make_stale(VIP4)
    net.make_stale(VIP6)
    assert net.announce([f"{VIP4}/24", f"{VIP6}/64"]) == 2
    for vip in (VIP4, VIP6):
        wait_for(f"B's entry for {vip} to become {net.mac_a}",
                 lambda vip=vip: (e := net.neighbour(vip)) and e.get("lladdr") == net.mac_a)


def test_frames_on_the_wire(net, need_ipv6):
    net.ip(net.a, "addr", "add", f"{VIP4}/24", "dev", IF_A)
    net.ip(net.a, "-6", "addr", "add", f"{VIP6}/64", "dev", IF_A, "nodad")
    vip4 = ipaddress.IPv4Address(VIP4).packed
    vip6 = ipaddress.IPv6Address(VIP6).packed
    capture = net.start_capture([[0x0806, 28, vip4.hex()], [0x86DD, 62, vip6.hex()]])
    assert net.announce([VIP4, VIP6]) == 2
    frames = net.captured(capture)
    mac_a = bytes.fromhex(net.mac_a.replace(":", ""))

    garps = [f for f in frames if f[12:14] == b"\x08\x06" and f[28:32] == vip4]
    assert garps, f"no ARP with sender {VIP4} seen on B: {[f.hex() for f in frames]}"
    garp = garps[0]
    assert garp[0:6] == b"\xff" * 6 and garp[6:12] == mac_a
    assert struct.unpack("!H", garp[20:22])[0] == 1          # opcode: request
    assert garp[22:28] == mac_a                              # sender MAC
    assert garp[28:32] == vip4 and garp[38:42] == vip4       # sender IP = target IP = VIP
    assert garp[32:38] == b"\xff" * 6                        # target MAC: broadcast

    nas = [f for f in frames
           if f[12:14] == b"\x86\xdd" and f[54:55] == b"\x88" and f[62:78] == vip6]
    assert nas, f"no NA for {VIP6} seen on B: {[f.hex() for f in frames]}"
    na = nas[0]
    assert na[21] == 255                                     # hop limit
    assert na[22:38] == vip6                                 # source = VIP
    assert na[38:54] == ipaddress.IPv6Address("ff02::1").packed
    assert na[:86] == unsolicited_na_frame(net.mac_a, VIP6)  # whole frame, router clear


def test_kernel_computes_the_same_na_checksum(net, need_ipv6):
    net.ip(net.a, "-6", "addr", "add", f"{VIP6}/64", "dev", IF_A, "nodad")
    vip6 = ipaddress.IPv6Address(VIP6).packed
    capture = net.start_capture([[0x86DD, 62, vip6.hex()]])
    net.python(net.a, KERNEL_NA, IF_A, net.mac_a, VIP6)
    frames = [f for f in net.captured(capture) if f[54:55] == b"\x88" and f[62:78] == vip6]
    assert frames, "the kernel-sent NA was not seen on B"
    assert frames[0][22:38] == vip6                          # the kernel used the VIP too
    assert frames[0][54:86] == unsolicited_na(net.mac_a, VIP6)  # incl. the checksum


def test_router_flag_follows_forwarding(net, need_ipv6):
    net.ip(net.a, "-6", "addr", "add", f"{VIP6}/64", "dev", IF_A, "nodad")
    vip6 = ipaddress.IPv6Address(VIP6).packed
    capture = net.start_capture([[0x86DD, 62, vip6.hex()]])
    forwarding = f"/proc/sys/net/ipv6/conf/{IF_A}/forwarding"
    assert net.steps([["run", ["sh", "-c", f"echo 1 > {forwarding}"]],
                      ["announce", IF_A, [VIP6]]]) == [None, 1]
    frames = [f for f in net.captured(capture) if f[54:55] == b"\x88" and f[62:78] == vip6]
    assert frames and frames[0][58] == 0xA0                   # Router + Override
    assert frames[0][54:86] == unsolicited_na(net.mac_a, VIP6, router=True)


def test_errors_name_the_interface_and_socket_survives(net):
    results = net.steps([
        ["announce", IF_A, [VIP4]],
        ["run", ["ip", "link", "set", IF_A, "down"]],
        ["announce", IF_A, [VIP4]],
        ["run", ["ip", "link", "set", IF_A, "up"]],
        ["announce", IF_A, [VIP4, "192.0.2.101"]],
        ["run", ["ip", "link", "set", IF_A, "arp", "off"]],
        ["announce", IF_A, [VIP4]],
        ["run", ["ip", "link", "set", IF_A, "arp", "on"]],
        ["announce", "nosuch0", [VIP4]],
        ["run", ["ip", "link", "del", IF_A]],
        ["announce", IF_A, [VIP4]],
    ])
    assert results[0] == 1
    assert results[2]["errno"] == errno.ENETDOWN and IF_A in results[2]["message"]
    assert results[4] == 2                                   # reopened after the failure
    assert results[6] == 0                                   # NOARP: keepalived sends nothing
    assert results[8]["errno"] == errno.ENODEV and "nosuch0" in results[8]["message"]
    assert results[10]["errno"] == errno.ENODEV and IF_A in results[10]["message"]
