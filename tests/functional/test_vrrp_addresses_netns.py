"""VIPs through director/vrrp/rtnl.py (our rtnetlink client, not pyroute2) in a namespace, read
back with ``ip -j addr``: every option a virtual_ipaddress line can carry, IPv4 and IPv6, an
add of what is there and a removal of what is gone, a missing interface, and the dump that
``present`` and the adverts' source address use."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.netns, pytest.mark.timeout(60)]

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = r"""
import json, sys
from director.config.values import VirtualAddress as V
from director.vrrp.addresses import Addresses

# 203.0.113.0/24 alone: the kernel refuses a secondary whose scope is not its primary's
vips = [V("203.0.113.100/24", label="eth0:vip", scope="host"),
        V("192.0.2.101/32", brd="+"),
        V("192.0.2.102/24", brd="192.0.2.200", flags=("noprefixroute",)),
        V("192.0.2.103/32", peer="198.51.100.9/32"),
        V("2001:db8::100/64", flags=("home",)),
        V("fe80::1:100/64")]
a = Addresses().open()
out = {"before": [a.present(v, "eth0") for v in vips],      # the adverts' source: before VIPs
       "source4": a.primary_address("eth0", 4), "source6": a.primary_address("eth0", 6)}
for v in vips:
    a.add(v, "eth0")
    a.add(v, "eth0")                     # there already: fine
out["present"] = [a.present(v, "eth0") for v in vips]
print(json.dumps(out), flush=True)
sys.stdin.readline()                     # the test reads the kernel's view meanwhile
for v in vips:
    a.remove(v, "eth0")
    a.remove(v, "eth0")                  # gone already: fine
out = {"after": [a.present(v, "eth0") for v in vips]}
try:
    a.add(V("192.0.2.104/32", dev="nosuch0"), "eth0")
except OSError as exc:
    out["missing"] = [exc.errno, str(exc)]
a.close()
print(json.dumps(out), flush=True)
"""


def test_vips_through_our_rtnetlink_client_as_ip_shows_them(lab):
    host = lab.host("a", links=[(lab.switch("s"), "eth0", ["10.0.0.1/24"])])
    proc = subprocess.Popen(["ip", "netns", "exec", host.ns, sys.executable, "-c", SCRIPT],
                            cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        first = json.loads(proc.stdout.readline() or "{}")
        assert first, proc.stderr.read()
        assert first["before"] == [False] * 6
        assert first["present"] == [True] * 6
        assert first["source4"] == "10.0.0.1"
        assert first["source6"].startswith("fe80::")      # the link-local, not a VIP
        shown = {(a["local"], a["prefixlen"]): a for link in json.loads(host.run(
            ["ip", "-j", "addr", "show", "dev", "eth0"]).stdout) for a in link["addr_info"]}
        vip = shown[("203.0.113.100", 24)]
        assert vip["scope"] == "host" and vip["label"] == "eth0:vip"
        assert shown[("192.0.2.101", 32)]["broadcast"] == "192.0.2.101"
        third = shown[("192.0.2.102", 24)]
        assert third["broadcast"] == "192.0.2.200" and third.get("noprefixroute") is True
        assert shown[("192.0.2.103", 32)]["address"] == "198.51.100.9"     # the peer
        six = shown[("2001:db8::100", 64)]
        assert six.get("home") is True and "tentative" not in six      # nodad: no DAD wait
        assert ("fe80::1:100", 64) in shown
        # the /24 without noprefixroute has its prefix route; the one with it adds none
        assert host.run(["ip", "-o", "route", "show", "203.0.113.0/24"]).stdout
        assert not host.run(["ip", "-o", "route", "show", "192.0.2.0/24"]).stdout
        out, err = proc.communicate("\n", timeout=20)
        second = json.loads(out.strip().splitlines()[-1])
        assert second["after"] == [False] * 6, err
        assert second["missing"][0] == 19 and "nosuch0" in second["missing"][1]  # ENODEV
        left = host.run(["ip", "-o", "addr", "show", "dev", "eth0"]).stdout
        assert "192.0.2." not in left and "203.0.113." not in left
        assert "2001:db8::100" not in left
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
