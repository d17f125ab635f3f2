"""The nftables backend's pure part: render() scripts per scheduler, weight 0, fwmark, IPv6,
persistence, unsupported(); and that `nft -c` (check mode, in a throwaway network namespace
so the host's ruleset is never touched) accepts every rendered script."""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess

import pytest

from director.lb.model import Destination, DestinationKey, Pool, Service, ServiceKey
from director.lb.nftables import NftablesBackend, render, unsupported

VIP = ServiceKey("TCP", "203.0.113.100", 80)
VIP6 = ServiceKey("TCP", "2001:db8::100", 443, family=6)


def dest(address, port=80, weight=1, **kw):
    return Destination(DestinationKey(address, port), weight, **kw)


def state(key=VIP, scheduler="rr", dests=(), **service):
    return {key: Pool(Service(key, scheduler, **service), {d.key: d for d in dests})}


def chain(script, name):
    """The lines of one chain in a rendered script."""
    match = re.search(rf"^    chain {name} {{\n(.*?)^    }}", script, re.M | re.S)
    assert match, f"no chain {name} in:\n{script}"
    return [line.strip() for line in match.group(1).splitlines()]


THREE = [dest("10.20.40.10"), dest("10.20.40.11"), dest("10.20.40.12")]

CASES = {
    "empty": {},
    "rr": state(dests=THREE),
    "wrr": state(scheduler="wrr", dests=[dest("10.20.40.10", weight=3),
                                         dest("10.20.40.11", weight=1)]),
    "sh": state(scheduler="sh", dests=THREE[:2]),
    "sh-port": state(scheduler="sh", dests=THREE[:2], flags=("sh-port",)),
    "fwmark": state(ServiceKey("TCP", fwmark=7), "rr",
                    [dest("10.20.40.10", None), dest("10.20.40.11", None)]),
    "fwmark-ports": state(ServiceKey("UDP", fwmark=9), "rr",
                          [dest("10.20.40.10", 53), dest("10.20.40.11", 53)]),
    "weight0": state(dests=[dest("10.20.40.10"), dest("10.20.40.11", weight=0)]),
    "nodest": state(dests=[dest("10.20.40.10", weight=0)]),
    "udp-nodest": state(ServiceKey("UDP", "203.0.113.100", 53), "rr", []),
    "ipv6": state(VIP6, "wrr", [dest("2001:db8::10", 443, 2), dest("2001:db8::11", 443, 1)]),
    "fwmark6": state(ServiceKey("TCP", fwmark=8, family=6), "sh",
                     [dest("2001:db8::10", None), dest("2001:db8::11", None)]),
    "wlc": state(scheduler="wlc", dests=[dest("10.20.40.10", weight=2),
                                         dest("10.20.40.11", weight=4)]),
    "persistent": state(dests=THREE, persistence_timeout=300,
                        persistence_netmask="255.255.255.0"),
    "persistent6": state(VIP6, "rr", [dest("2001:db8::10", 443), dest("2001:db8::11", 443)],
                         persistence_timeout=60, persistence_netmask="64"),
    "big-weights": state(scheduler="wrr", dests=[dest("10.20.40.10", weight=65535),
                                                 dest("10.20.40.11", weight=1)]),
    "all": {**state(dests=THREE), **state(VIP6, "rr", [dest("2001:db8::10", 443)]),
            **state(ServiceKey("TCP", fwmark=7), "sh", [dest("10.20.40.10", None)])},
}


def test_empty_state_is_just_the_table():
    script = render({})
    assert script.splitlines()[1:4] == ["add table inet director", "delete table inet director",
                                        "table inet director {"]
    assert "dnat" not in script and "chain input" not in script
    assert chain(script, "prerouting") == [
        "type nat hook prerouting priority dstnat; policy accept;"]


def test_table_name_is_checked_and_used():
    assert "table inet lb_test {" in render({}, table="lb_test")
    for bad in ("", "x y", "a;b", "1abc", "x\n"):
        with pytest.raises(ValueError):
            render({}, table=bad)
        with pytest.raises(ValueError):
            NftablesBackend(table=bad)


def test_rr_numgen_map_over_the_destinations():
    script = render(CASES["rr"])
    assert chain(script, "prerouting")[1] == (
        'ip daddr 203.0.113.100 tcp dport 80 counter jump svc_0 '
        'comment "TCP 203.0.113.100:80 rr"')
    assert chain(script, "svc_0") == [
        "meta l4proto tcp dnat ip addr . port to numgen inc mod 3 map "
        "{ 0 : 10.20.40.10 . 80, 1 : 10.20.40.11 . 80, 2 : 10.20.40.12 . 80 }"]


def test_rr_ignores_weights():
    script = render(state(dests=[dest("10.20.40.10", weight=5), dest("10.20.40.11", weight=1)]))
    assert "numgen inc mod 2 map" in script


def test_wrr_each_destination_weight_times_interleaved():
    assert chain(render(CASES["wrr"]), "svc_0") == [
        "meta l4proto tcp dnat ip addr . port to numgen inc mod 4 map { 0 : 10.20.40.10 . 80, "
        "1 : 10.20.40.11 . 80, 2 : 10.20.40.10 . 80, 3 : 10.20.40.10 . 80 }"]


def test_wrr_weights_reduced_by_gcd():
    script = render(state(scheduler="wrr", dests=[dest("10.20.40.10", weight=20),
                                                  dest("10.20.40.11", weight=10)]))
    assert "numgen inc mod 3 map { 0 : 10.20.40.10 . 80, 1 : 10.20.40.11 . 80, " \
           "2 : 10.20.40.10 . 80 }" in script


def test_wrr_huge_weights_scaled_and_reported():
    script = render(CASES["big-weights"])
    assert "numgen inc mod 1024 map" in script
    assert any("scaled to 1024 slots" in w for w in unsupported(CASES["big-weights"]))


def test_sh_hashes_the_source():
    assert chain(render(CASES["sh"]), "svc_0") == [
        "meta l4proto tcp dnat ip addr . port to jhash ip saddr mod 2 map "
        "{ 0 : 10.20.40.10 . 80, 1 : 10.20.40.11 . 80 }"]
    assert "jhash ip saddr . tcp sport mod 2" in render(CASES["sh-port"])


def test_fwmark_matches_the_mark_and_keeps_the_port():
    script = render(CASES["fwmark"])
    assert chain(script, "prerouting")[1].startswith(
        "meta mark 0x7 meta nfproto ipv4 counter jump svc_0")
    assert chain(script, "svc_0") == [
        "dnat ip to numgen inc mod 2 map { 0 : 10.20.40.10, 1 : 10.20.40.11 }"]
    assert chain(render(CASES["fwmark-ports"]), "svc_0") == [
        "meta l4proto udp dnat ip addr . port to numgen inc mod 2 map "
        "{ 0 : 10.20.40.10 . 53, 1 : 10.20.40.11 . 53 }"]


def test_destination_without_port_takes_the_service_port():
    script = render(state(dests=[dest("10.20.40.10", None), dest("10.20.40.11", 8080)]))
    assert "{ 0 : 10.20.40.10 . 80, 1 : 10.20.40.11 . 8080 }" in script


def test_weight_zero_gets_no_new_connections():
    script = render(CASES["weight0"])
    assert "10.20.40.11" not in script
    assert chain(script, "svc_0") == ["meta l4proto tcp dnat ip to 10.20.40.10:80"]


def test_no_live_destination_rejects():
    script = render(CASES["nodest"])
    assert "dnat" not in script
    assert chain(script, "input") == [
        "type filter hook input priority filter; policy accept;",
        'ip daddr 203.0.113.100 tcp dport 80 reject with tcp reset '
        'comment "TCP 203.0.113.100:80: no destination"']
    assert "udp dport 53 reject comment" in render(CASES["udp-nodest"])


def test_ipv6():
    script = render(CASES["ipv6"])
    assert "ip6 daddr 2001:db8::100 tcp dport 443 counter jump svc_0" in script
    assert chain(script, "svc_0") == [
        "meta l4proto tcp dnat ip6 addr . port to numgen inc mod 3 map "
        "{ 0 : 2001:db8::10 . 443, 1 : 2001:db8::11 . 443, 2 : 2001:db8::10 . 443 }"]
    single = render(state(VIP6, "rr", [dest("2001:db8::10", 443)]))
    assert "dnat ip6 to [2001:db8::10]:443" in single
    assert "meta mark 0x8 meta nfproto ipv6" in render(CASES["fwmark6"])
    assert "jhash ip6 saddr mod 2" in render(CASES["fwmark6"])


def test_fallback_scheduler_is_wrr_with_a_comment_and_a_warning():
    script = render(CASES["wlc"])
    assert "# wlc is not available with nftables: scheduled as wrr" in script
    assert "numgen inc mod 3 map { 0 : 10.20.40.10 . 80, 1 : 10.20.40.11 . 80, " \
           "2 : 10.20.40.11 . 80 }" in script
    assert unsupported(CASES["wlc"]) == [
        "TCP 203.0.113.100:80: scheduler wlc is not available with nftables; scheduled as wrr"]


def test_fo_sends_everything_to_the_heaviest():
    script = render(state(scheduler="fo", dests=[dest("10.20.40.10", weight=1),
                                                 dest("10.20.40.11", weight=5)]))
    assert chain(script, "svc_0") == ["meta l4proto tcp dnat ip to 10.20.40.11:80"]


def test_dr_tun_thresholds_and_flags_are_unsupported():
    pool = state(dests=[dest("10.20.40.10", method="DR"), dest("10.20.40.11", method="TUN"),
                        dest("10.20.40.12", upper_threshold=100)], flags=("ops",))
    script = render(pool)
    assert "10.20.40.10" not in script and "10.20.40.11" not in script
    warnings = unsupported(pool)
    assert any("10.20.40.10:80 uses DR" in w for w in warnings)
    assert any("10.20.40.11:80 uses TUN" in w for w in warnings)
    assert any("10.20.40.12:80: connection thresholds" in w for w in warnings)
    assert any("flag ops" in w for w in warnings)
    assert unsupported(CASES["rr"]) == [] and unsupported({}) == []


def test_persistence_sets_per_destination():
    script = render(CASES["persistent"])
    assert "set svc_0_d0_clients {\n        type ipv4_addr\n        flags dynamic,timeout\n" \
           "        timeout 300s\n    }" in script
    assert chain(script, "svc_0") == [
        "# a known client goes where it went before",
        "ip saddr & 255.255.255.0 @svc_0_d0_clients goto svc_0_d0",
        "ip saddr & 255.255.255.0 @svc_0_d1_clients goto svc_0_d1",
        "ip saddr & 255.255.255.0 @svc_0_d2_clients goto svc_0_d2",
        "numgen inc mod 3 vmap { 0 : goto svc_0_d0, 1 : goto svc_0_d1, 2 : goto svc_0_d2 }"]
    assert chain(script, "svc_0_d1") == [
        "update @svc_0_d1_clients { ip saddr & 255.255.255.0 }",
        "meta l4proto tcp dnat ip to 10.20.40.11:80"]
    assert any("persistence is approximate" in w for w in unsupported(CASES["persistent"]))
    six = render(CASES["persistent6"])
    assert "update @svc_0_d0_clients { ip6 saddr & ffff:ffff:ffff:ffff:: }" in six
    assert "ip saddr @svc_0_d0_clients" in render(state(dests=THREE, persistence_timeout=5))


def test_services_in_a_stable_order():
    script = render(CASES["all"])
    rules = chain(script, "prerouting")[1:]
    assert [r.split(" counter")[0] for r in rules] == [
        "ip daddr 203.0.113.100 tcp dport 80", "ip6 daddr 2001:db8::100 tcp dport 443",
        "meta mark 0x7 meta nfproto ipv4"]
    assert render(dict(reversed(list(CASES["all"].items())))) == script


# === nft -c: the kernel's own check, in a throwaway namespace ===============================

@pytest.fixture(scope="module")
def check_namespace():
    if shutil.which("nft") is None:
        pytest.skip("nft is not installed (apt-get install nftables)")
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("nft -c needs root and `ip netns` (run in a throwaway namespace)")
    ns = f"dnftc-{os.getpid()}-{secrets.token_hex(3)}"
    added = subprocess.run(["ip", "netns", "add", ns], capture_output=True, text=True,
                           timeout=10, check=False)
    if added.returncode != 0:
        pytest.skip(f"ip netns add failed: {added.stderr.strip()}")
    try:
        yield ns
    finally:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10, check=False)


@pytest.mark.parametrize("case", sorted(CASES))
def test_nft_accepts_the_script(check_namespace, case):
    result = subprocess.run(["ip", "netns", "exec", check_namespace, "nft", "-c", "-f", "-"],
                            input=render(CASES[case]), capture_output=True, text=True,
                            timeout=30, check=False)
    assert result.returncode == 0, f"{result.stderr}\n{render(CASES[case])}"


def test_backend_apply_read_flush_in_a_namespace(check_namespace, tmp_path):
    """The backend for real, in the throwaway namespace (through an `nft` wrapper running
    it there): apply twice (the replacement is idempotent), read the kernel's view back,
    flush twice (idempotent), read nothing."""
    wrapper = tmp_path / "nft"
    wrapper.write_text(f'#!/bin/sh\nexec ip netns exec {check_namespace} nft "$@"\n')
    wrapper.chmod(0o755)
    backend = NftablesBackend(table="dtest", nft=str(wrapper))
    assert backend.read() == ""
    backend.apply(CASES["rr"])
    backend.apply(CASES["wrr"])
    view = backend.read()
    assert "table inet dtest" in view and "numgen inc mod 4" in view
    assert "10.20.40.12" not in view                   # the rr table was replaced, not merged
    backend.flush()
    backend.flush()
    assert backend.read() == ""


def test_backend_raises_oserror_with_nft_stderr(tmp_path):
    fake = tmp_path / "nft"
    fake.write_text("#!/bin/sh\ncat >/dev/null\necho 'Error: syntax error' >&2\nexit 1\n")
    fake.chmod(0o755)
    with pytest.raises(OSError, match="syntax error"):
        NftablesBackend(nft=str(fake)).apply({})
    with pytest.raises(OSError):
        NftablesBackend(nft=str(tmp_path / "missing")).apply({})
