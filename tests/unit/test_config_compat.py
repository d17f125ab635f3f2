"""Real configurations read as keepalived 2.2.7 reads them (checked against its ``-t``), or
with a warning where director deliberately differs."""

from __future__ import annotations

import pytest

from director.config import load_config

VRRP = """
global_defs {{
    router_id LB1
    {global_defs}
}}
vrrp_instance VI_1 {{
    state MASTER
    interface eth0
    virtual_router_id 51
    priority 100
    {instance}
    virtual_ipaddress {{
        {vip}
    }}
}}
"""

POOL = """
virtual_server {vs} 80 {{
    protocol TCP
    lb_algo rr
    lb_kind NAT
    {pool}
    real_server {rs} 80 {{
        TCP_CHECK {{
            {check}
        }}
    }}
}}
"""


def load(tmp_path, text: str):
    path = tmp_path / "keepalived.conf"
    path.write_text(text)
    return load_config(str(path), config_id="t", interface_exists=None)


def vrrp(tmp_path, instance="", global_defs="", vip="192.168.0.100/24"):
    return load(tmp_path, VRRP.format(instance=instance, global_defs=global_defs, vip=vip))


def pool(tmp_path, vs="10.1.1.1", rs="10.1.1.2", pool="", check="connect_timeout 3"):
    return load(tmp_path, POOL.format(vs=vs, rs=rs, pool=pool, check=check))


def messages(result) -> list[str]:
    return [f"{d.severity}: {d.message}" for d in result.diagnostics]


# -- addresses written with a /prefix: keepalived's inet_stosockaddr drops it ----------------

def test_vrrp_source_and_peer_addresses_drop_their_prefix(tmp_path):
    result = vrrp(tmp_path, "unicast_src_ip 192.168.0.91/24\n"
                            "mcast_src_ip 192.168.0.92/24\n"
                            "unicast_peer {\n 192.168.0.93/24\n 192.168.0.94/32 min_ttl 1\n}")
    assert messages(result) == []
    instance = result.config.vrrp_instances[0]
    assert instance.unicast_src_ip == "192.168.0.91"
    assert instance.mcast_src_ip == "192.168.0.92"
    assert [p.address for p in instance.unicast_peer] == ["192.168.0.93", "192.168.0.94"]
    assert instance.unicast_peer[1].min_ttl == 1


def test_ipv6_source_drops_its_prefix(tmp_path):
    result = vrrp(tmp_path, "unicast_src_ip fd00::5/64\nunicast_peer {\n fd00::6/64\n}",
                  vip="fd00::100/64")
    assert messages(result) == []
    instance = result.config.vrrp_instances[0]
    assert (instance.unicast_src_ip, instance.unicast_peer[0].address) == ("fd00::5", "fd00::6")


def test_global_multicast_groups_and_sync_daemon_group_drop_their_prefix(tmp_path):
    result = vrrp(tmp_path, global_defs="vrrp_mcast_group4 224.0.0.19/24\n"
                                        "vrrp_mcast_group6 ff02::13/64\n"
                                        "lvs_sync_daemon eth0 VI_1 group 224.0.0.81/24")
    assert messages(result) == []
    defs = result.config.global_defs
    assert (defs.vrrp_mcast_group4, defs.vrrp_mcast_group6) == ("224.0.0.19", "ff02::13")
    assert defs.lvs_sync_daemon.group == "224.0.0.81"


def test_pool_addresses_drop_their_prefix(tmp_path):
    result = pool(tmp_path, vs="10.1.1.1/24", rs="10.1.1.2/24",
                  pool="sorry_server 10.1.1.9/24 8080",
                  check="connect_ip 10.1.1.3/24\nbindto 10.1.1.4/24")
    assert messages(result) == []
    virtual = result.config.virtual_servers[0]
    real = virtual.real_servers[0]
    assert (virtual.address, real.address, virtual.sorry_server) == \
        ("10.1.1.1", "10.1.1.2", ("10.1.1.9", 8080))
    assert (real.checkers[0].connect_ip, real.checkers[0].bindto) == ("10.1.1.3", "10.1.1.4")


def test_what_is_not_a_prefix_length_is_dropped_with_a_warning(tmp_path):
    result = vrrp(tmp_path, "unicast_src_ip 192.168.0.91/abc\nmcast_src_ip 192.168.0.92/33\n"
                            "unicast_peer {\n 192.168.0.93\n}")
    assert result.ok
    assert result.config.vrrp_instances[0].unicast_src_ip == "192.168.0.91"
    assert result.config.vrrp_instances[0].mcast_src_ip == "192.168.0.92"
    assert messages(result) == [
        "warning: '192.168.0.91/abc': '/abc' is not a prefix length; director reads "
        "192.168.0.91, as keepalived does",
        "warning: '192.168.0.92/33': '/33' is not a prefix length; director reads "
        "192.168.0.92, as keepalived does"]


def test_a_range_where_one_address_is_expected_is_dropped_with_a_warning(tmp_path):
    result = pool(tmp_path, rs="10.1.1.2-5")
    assert result.ok
    assert result.config.virtual_servers[0].real_servers[0].address == "10.1.1.2"
    assert messages(result) == [
        "warning: '10.1.1.2-5': one address is expected, not a range; director reads "
        "10.1.1.2, as keepalived does"]


def test_a_bad_address_before_the_prefix_is_still_an_error(tmp_path):
    result = vrrp(tmp_path, "unicast_src_ip 192.168.0.300/24")
    assert messages(result) == [
        "error: unicast_src_ip: expects an IP address, got '192.168.0.300/24'"]


@pytest.mark.parametrize("route", ["10.9.0.0/16 via 192.0.2.1/24", "10.9.0.0/16 src 192.0.2.2/24"])
def test_route_gateways_and_sources_take_no_prefix_as_in_keepalived(tmp_path, route):
    result = vrrp(tmp_path, f"virtual_routes {{\n {route}\n}}")
    assert not result.ok     # keepalived: "invalid route via/src address"


@pytest.mark.parametrize("server", ['""', "10.1.1.5/24", "mail..example.com", "-mail.example"])
def test_smtp_server_must_be_an_address_or_a_host_name(tmp_path, server):
    result = vrrp(tmp_path, global_defs=f"smtp_server {server}")
    assert [d.severity for d in result.diagnostics] == ["error"]
    assert "expects an IP address or a host name" in result.diagnostics[0].message


@pytest.mark.parametrize("server", ["10.1.1.5", "mail-1.example.com", "mail.example.com."])
def test_smtp_server_takes_addresses_and_host_names(tmp_path, server):
    result = vrrp(tmp_path, global_defs=f"smtp_server {server} 25")
    assert messages(result) == []
    assert result.config.global_defs.smtp_server == (server, 25)


# -- lines keepalived 2.2.7 flags ----------------------------------------------------------------

def test_lvs_id_is_taken_as_router_id_with_a_warning(tmp_path):
    result = load(tmp_path, "global_defs {\n    lvs_id LVS_EXAMPLE_01\n}\n"
                            "virtual_server 10.1.1.1 80 {\n protocol TCP\n"
                            " real_server 10.1.1.2 80 {\n }\n}\n")
    assert result.config.global_defs.router_id == "LVS_EXAMPLE_01"
    assert messages(result) == [
        "warning: lvs_id is not a keepalived 2.2.7 keyword (keepalived ignores it and names "
        "the router after the host): director takes it as router_id; write router_id"]


@pytest.mark.parametrize("keyword", ["vrrp_garp_interval", "vrrp_gna_interval"])
@pytest.mark.parametrize("value", ["0", "-1", "4295", "0.0000001"])
def test_garp_and_gna_intervals_out_of_keepalived_range_are_errors(tmp_path, keyword, value):
    result = vrrp(tmp_path, global_defs=f"{keyword} {value}")
    assert [str(d.message) for d in result.errors] == [
        f"{keyword}: must be a number of seconds from 0.000001 to 4294.967295, got {value}"]


@pytest.mark.parametrize("value, seconds", [("0.000001", 0.000001), ("1.5", 1.5),
                                            ("4294.967295", 4294.967295)])
def test_garp_interval_takes_keepalived_range(tmp_path, value, seconds):
    result = vrrp(tmp_path, global_defs=f"vrrp_garp_interval {value}",
                  instance=f"garp_interval {value}")
    assert messages(result) == []
    assert result.config.global_defs.vrrp_garp_interval == seconds
    assert result.config.vrrp_instances[0].garp_interval == seconds
