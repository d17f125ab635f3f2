"""/proc/net/ip_vs as the verify of each delay_loop reads it: the text below is what a
Debian 6.1 kernel printed in the qemu guest for the services ipvsadm made there (the
ipvsadm -Ln listing of the same moment is in the comments)."""

from __future__ import annotations

import dataclasses

from director.lb.ipvs import expectation, parse_proc, read_proc_view
from director.lb.model import Destination, DestinationKey, Pool, Service, ServiceKey

# TCP  192.0.2.10:80 wrr persistent 60         -> 10.0.0.1:80 Masq 2 / 10.0.0.2:80 Route 0
# UDP  192.0.2.10:53 lc persistent 300 mask 255.255.255.0
# TCP  [2001:db8::10]:443 sh (sh-port) persistent 30 mask 64   -> [2001:db8::1]:443 Masq 1
# FWM  7 rr ops                                 -> 10.0.1.1:0 Tunnel 3
PROC = """IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port Scheduler Flags
  -> RemoteAddress:Port Forward Weight ActiveConn InActConn
UDP  C000020A:0035 lc  persistent 75000 FFFFFF00
TCP  [2001:0db8:0000:0000:0000:0000:0000:0010]:01BB sh persistent 7500 40000000
  -> [2001:0db8:0000:0000:0000:0000:0000:0001]:01BB      Masq    1      0          0         
TCP  C000020A:0050 wrr  persistent 15000 FFFFFFFF
  -> 0A000002:0050      Route   0      0          0         
  -> 0A000001:0050      Masq    2      0          0         
FWM  00000007 rr ops 
  -> 0A000101:0000      Tunnel  3      0          0         
"""  # noqa: W291 (the kernel's trailing blanks)

VIP = ServiceKey("TCP", "192.0.2.10", 80)
VIP6 = ServiceKey("TCP", "2001:db8::10", 443, family=6)
FWM = ServiceKey("TCP", fwmark=7)


def proc_matches(state, text) -> bool:
    return read_proc_view(expectation(state), text).matches


def dest(address, port, weight, method="NAT"):
    return Destination(DestinationKey(address, port), weight, method, 100, 10)


PROGRAMMED = {
    VIP: Pool(Service(VIP, "wrr", 60), {d.key: d for d in (
        dest("10.0.0.1", 80, 2), dest("10.0.0.2", 8080, 0, "DR"))}),
    VIP6: Pool(Service(VIP6, "sh", 30, "64", ("sh-port",)), {d.key: d for d in (
        dest("2001:db8::1", 443, 1),)}),
    FWM: Pool(Service(FWM, "rr", flags=("ops",)), {d.key: d for d in (
        dest("10.0.1.1", None, 3, "TUN"),)}),
}


def test_the_kernels_listing_parses():
    shown = parse_proc(PROC)
    assert shown[("TCP", "192.0.2.10", 80)].destinations == {
        ("10.0.0.1", 80): ("NAT", 2), ("10.0.0.2", 80): ("DR", 0)}
    assert shown[("UDP", "192.0.2.10", 53)].persistence_jiffies == 75000
    assert shown[("TCP", "2001:db8::10", 443)].scheduler == "sh"
    assert shown[("FWM", 7)].one_packet and shown[("FWM", 7)].persistence_jiffies is None


def test_what_we_programmed_matches_and_each_edit_is_seen():
    assert proc_matches(PROGRAMMED, PROC)
    edits = {
        "weight": PROC.replace("Masq    2", "Masq    5"),
        "a destination deleted": PROC.replace(
            "  -> 0A000001:0050      Masq    2      0          0         \n", ""),
        "a service deleted": PROC.replace("FWM  00000007 rr ops \n", "").replace(
            "  -> 0A000101:0000      Tunnel  3      0          0         \n", ""),
        "the scheduler": PROC.replace("C000020A:0050 wrr", "C000020A:0050 wlc"),
        "persistence off": PROC.replace("wrr  persistent 15000 FFFFFFFF", "wrr "),
        "the method": PROC.replace("Tunnel  3", "Route   3"),
        "one-packet off": PROC.replace("rr ops", "rr"),
    }
    for what, text in edits.items():
        assert not proc_matches(PROGRAMMED, text), what


def test_a_different_persistence_timeout_is_seen():
    longer = dict(PROGRAMMED)
    longer[VIP] = dataclasses.replace(PROGRAMMED[VIP], service=Service(VIP, "wrr", 61))
    assert not proc_matches(longer, PROC)


def test_the_connections_of_each_destination_are_read_with_the_verify():
    busy = PROC.replace("0A000001:0050      Masq    2      0          0",
                        "0A000001:0050      Masq    2      7          12").replace(
        "0A000002:0050      Route   0      0          0",
        "0A000002:0050      Route   0      3          1")
    view = read_proc_view(expectation(PROGRAMMED), busy)
    assert view.matches
    assert view.connections_of(VIP, DestinationKey("10.0.0.1", 80)) == (7, 12)
    # a DR destination is listed with the service's port: still found under its own key
    assert view.connections_of(VIP, DestinationKey("10.0.0.2", 8080)) == (3, 1)
    assert view.connections_of(FWM, DestinationKey("10.0.1.1", None)) == (0, 0)
    assert view.connections_of(VIP, DestinationKey("10.9.9.9", 80)) is None   # not ours
    gone = "\n".join(line for line in busy.splitlines() if "0A000001:0050" not in line)
    view = read_proc_view(expectation(PROGRAMMED), gone)
    assert not view.matches and view.connections_of(VIP, DestinationKey("10.0.0.1", 80)) is None


def test_service_counters_walked_by_hand_match_pyroute2s_decoding():
    """The service dump of each delay_loop is walked without pyroute2's decoder: messages
    encoded by pyroute2 (as the kernel lays them out) give the same keys and counters."""
    from director.lb.genl import HEADER, IpvsMessage
    from director.lb.ipvs import IpvsBackend, counters_from, service_counters

    def message(service_attrs):
        stats = [("IPVS_STATS_ATTR_CONNS", 7), ("IPVS_STATS_ATTR_INPKTS", 70),
                 ("IPVS_STATS_ATTR_OUTPKTS", 60), ("IPVS_STATS_ATTR_INBYTES", 7000),
                 ("IPVS_STATS_ATTR_OUTBYTES", 2 ** 40)]
        msg = IpvsMessage()
        msg["cmd"], msg["version"] = 4, 1
        msg["attrs"] = [("IPVS_CMD_ATTR_SERVICE", {"attrs": service_attrs + [
            ("IPVS_SVC_ATTR_SCHED_NAME", "wrr"),
            ("IPVS_SVC_ATTR_STATS64", {"attrs": stats})]})]
        msg.encode()
        decoded = IpvsMessage(msg.data)
        decoded.decode()
        attrs = dict(decoded.get_attr("IPVS_CMD_ATTR_SERVICE")["attrs"])
        return bytes(msg.data[HEADER.size + 4:]), attrs

    for service_attrs in (
            [("IPVS_SVC_ATTR_AF", 2), ("IPVS_SVC_ATTR_PROTOCOL", 6),
             ("IPVS_SVC_ATTR_ADDR", "192.0.2.10"), ("IPVS_SVC_ATTR_PORT", 80)],
            [("IPVS_SVC_ATTR_AF", 10), ("IPVS_SVC_ATTR_PROTOCOL", 17),
             ("IPVS_SVC_ATTR_ADDR", "2001:db8::10"), ("IPVS_SVC_ATTR_PORT", 53)],
            [("IPVS_SVC_ATTR_AF", 2), ("IPVS_SVC_ATTR_FWMARK", 7)]):
        payload, attrs = message(service_attrs)
        key, counters = service_counters(payload)
        assert key == IpvsBackend._service_from(attrs).key
        assert counters == counters_from(attrs)
        assert counters.connections == 7 and counters.bytes_out == 2 ** 40
