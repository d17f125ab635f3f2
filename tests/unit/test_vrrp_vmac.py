"""The VMAC / ipvlan plans (director/vrrp/vmac.py) and their keywords: keepalived 2.2.7's names,
MACs, where VIPs go, what garp_extra_if refreshes, and what -t says."""

from __future__ import annotations

from director.config import load_config
from director.reconcile import plan_instances
from director.vrrp.vmac import extra_garp_interfaces, plan, virtual_mac
from director.vrrp.vmac_links import eui64_link_local


def load(tmp_path, text: str, name: str = "keepalived.conf"):
    path = tmp_path / name
    path.write_text(text)
    return load_config(str(path), config_id="t", interface_exists=None)


def instance(name: str, vrid: int, vip: str, extra: str = "") -> str:
    return (f"vrrp_instance {name} {{\n interface eth0\n virtual_router_id {vrid}\n"
            f" priority 100\n{extra} virtual_ipaddress {{\n  {vip}\n }}\n}}\n")


def test_default_names_macs_and_the_ipv6_second_choice(tmp_path):
    result = load(tmp_path, instance("V4", 51, "192.0.2.100/24", " use_vmac\n") +
                  instance("V6", 51, "2001:db8::100/64", " use_vmac\n") +
                  instance("W4", 52, "192.0.2.101/24", " use_vmac\n") +
                  instance("PLAIN", 53, "192.0.2.102/24"))
    assert result.ok, result.diagnostics
    links = plan(result.config)
    assert set(links) == {"V4", "V6", "W4"}
    assert (links["V4"].primary.name, links["V4"].primary.mac) == ("vrrp.51", "00:00:5e:00:01:33")
    assert (links["V6"].primary.name, links["V6"].primary.mac) == ("vrrp6.51",
                                                                   "00:00:5e:00:02:33")
    assert links["V6"].primary.link_local and not links["V4"].primary.link_local
    assert links["W4"].primary.name == "vrrp.52"
    assert links["V4"].advert_interface == "vrrp.51"


def test_names_given_first_prefixes_and_truncation(tmp_path):
    text = ("global_defs {\n vmac_prefix averyveryverylongprefix\n}\n" +
            instance("A", 7, "192.0.2.1/24", " use_vmac\n") +
            instance("B", 8, "192.0.2.2/24", " use_vmac averyveryvery.7\n"))
    result = load(tmp_path, text)
    assert result.ok, result.diagnostics
    links = plan(result.config)
    # B named the truncated default of A first: A takes the next one, cut to 15 characters
    assert links["B"].primary.name == "averyveryvery.7"
    assert links["A"].primary.name == "averyveryver1.7"


def test_a_name_given_twice_falls_back_to_a_default_with_a_warning(tmp_path):
    result = load(tmp_path, instance("A", 1, "192.0.2.1/24", " use_vmac lb0\n") +
                  instance("B", 2, "192.0.2.2/24", " use_vmac lb0\n"))
    links = plan(result.config)
    assert (links["A"].primary.name, links["B"].primary.name) == ("lb0", "vrrp.2")
    assert any("lb0 is already another instance's VMAC" in d.message
               for d in result.diagnostics)


def test_use_vmac_addr_places_each_vip_and_extra_garp_skips_the_advert_interface(tmp_path):
    extra = (" use_vmac\n use_vmac_addr\n garp_extra_if 5\n"
             " virtual_ipaddress_excluded {\n  10.1.1.1/24 dev eth1\n  2001:db8::1/64\n }\n")
    result = load(tmp_path, "global_defs {\n vmac_addr_prefix va\n}\n" +
                  instance("A", 9, "192.0.2.9/24", extra))
    assert result.ok, result.diagnostics
    config = result.config.vrrp_instances[0]
    links = plan(result.config)["A"]
    assert [(link.name, link.base, link.family, link.mac) for link in links.extra] == [
        ("va.9", "eth1", 4, "00:00:5e:00:01:09"), ("va6.9", "eth0", 6, "00:00:5e:00:02:09")]
    placed = [links.place(vip, "eth0").dev
              for vip in config.virtual_ipaddress + config.virtual_ipaddress_excluded]
    assert placed == ["vrrp.9", "va.9", "va6.9"]
    vips = tuple(links.place(vip, "eth0")
                 for vip in config.virtual_ipaddress + config.virtual_ipaddress_excluded)
    names = {link.name for link in links.all}
    assert extra_garp_interfaces(vips, "vrrp.9", "vrrp.9", names, False) == \
        {"va.9": "10.1.1.1", "va6.9": "2001:db8::1"}


def test_extra_garp_with_all_adds_plain_interfaces():
    from director.config.values import VirtualAddress
    vips = (VirtualAddress("192.0.2.1/24"), VirtualAddress("10.0.0.1/24", dev="eth1"))
    assert extra_garp_interfaces(vips, "eth0", "eth0", set(), False) == {}
    assert extra_garp_interfaces(vips, "eth0", "eth0", set(), True) == {"eth1": "10.0.0.1"}


def test_own_mac_with_the_vrid_and_ipvlan(tmp_path):
    result = load(tmp_path, instance("A", 10, "192.0.2.10/24", " use_vmac 02:00:00:00:aa:\n") +
                  instance("B", 11, "192.0.2.11/24",
                           " use_ipvlan ipv11 192.0.2.211/24 vepa\n"))
    assert result.ok, result.diagnostics
    links = plan(result.config)
    assert links["A"].primary.mac == "02:00:00:00:aa:0a"
    ipvlan = links["B"].primary
    assert (ipvlan.kind, ipvlan.name, ipvlan.mode, ipvlan.mac) == ("ipvlan", "ipv11", "vepa", None)
    assert links["B"].source == "192.0.2.211"
    assert virtual_mac(6, 255) == "00:00:5e:00:02:ff"


def test_bad_values_and_keepalived_corrections_are_diagnosed(tmp_path):
    bad = [(" use_vmac 01:00:5e:00:00:01\n", "multicast"),
           (" use_vmac 00:00:5e:00:01:05\n", "RFC 5798"),
           (" use_vmac name-that-is-far-too-long\n", "longer than 15"),
           (" use_ipvlan a b\n", "expects [NAME]"),
           (" garp_extra_if soon\n", "SECONDS"),
           (" use_vmac\n use_ipvlan\n", "use_vmac and use_ipvlan together")]
    for extra, message in bad:
        result = load(tmp_path, instance("A", 1, "192.0.2.1/24", extra))
        assert not result.ok and any(message in d.message for d in result.diagnostics), \
            (extra, [str(d) for d in result.diagnostics])
    result = load(tmp_path, instance("A", 1, "192.0.2.1/24", " vmac_xmit_base\n"))
    assert result.ok and not result.config.vrrp_instances[0].vmac_xmit_base
    assert any("only valid with use_vmac" in d.message for d in result.diagnostics)
    unicast = " use_vmac\n unicast_peer {\n  192.0.2.2\n }\n"
    result = load(tmp_path, instance("A", 1, "192.0.2.1/24", unicast))
    assert result.ok and result.config.vrrp_instances[0].vmac_xmit_base


def test_a_new_vmac_prefix_restarts_the_instances_that_use_it(tmp_path):
    body = instance("A", 1, "192.0.2.1/24", " use_vmac\n") + instance("B", 2, "192.0.2.2/24")
    old = load(tmp_path, body, "old.conf").config
    new = load(tmp_path, "global_defs {\n vmac_prefix lb\n}\n" + body, "new.conf").config
    changes = plan_instances(old, new)
    assert changes.changed == ("A",) and changes.kept == ("B",)


def test_eui64_link_local():
    assert eui64_link_local("00:00:5e:00:01:33") == "fe80::200:5eff:fe00:133"


def test_sysctls_set_for_an_ipv4_vmac_and_put_back_after_the_last(tmp_path):
    """keepalived's rp_filter dance: all.rp_filter cleared, each interface raised to its old
    value (the effective filter unchanged), the VMAC's 0; the base's ARP settings saved and
    restored with all.rp_filter once no IPv4 VMAC is left."""
    from director.vrrp.vmac import Link
    from director.vrrp.vmac_links import VmacLinks
    conf = tmp_path / "net" / "ipv4" / "conf"
    values = {"all": {"rp_filter": 2}, "eth0": {"rp_filter": 0, "arp_ignore": 0,
                                                "arp_filter": 0, "arp_announce": 0},
              "eth1": {"rp_filter": 1}, "vrrp.51": {}}
    for ifname, keys in values.items():
        (conf / ifname).mkdir(parents=True)
        for key, value in keys.items():
            (conf / ifname / key).write_text(f"{value}\n")
    read = lambda ifname, key: int((conf / ifname / key).read_text())
    links = VmacLinks(addresses=None, proc_sys=str(tmp_path))
    link = Link("vrrp.51", "eth0", "macvlan", 4, mac="00:00:5e:00:01:33")
    links._ipv4_sysctls(link)
    links.owned[link.name] = link
    assert (read("all", "rp_filter"), read("eth0", "rp_filter"), read("eth1", "rp_filter")) \
        == (0, 2, 2)
    assert [read("vrrp.51", k) for k in ("arp_ignore", "accept_local", "rp_filter",
                                         "promote_secondaries")] == [1, 1, 0, 1]
    assert [read("eth0", k) for k in ("arp_ignore", "arp_filter", "arp_announce")] == [1, 1, 2]
    del links.owned[link.name]
    links._release_sysctls()
    assert read("all", "rp_filter") == 2
    assert [read("eth0", k) for k in ("arp_ignore", "arp_filter", "arp_announce")] == [0, 0, 0]


def test_the_guard_does_not_put_back_a_vmac_a_reload_replaced():
    """The guard saw vrrp.51 gone between a reload's delete and create (new MAC) and asked
    for the old one again: it put the old MAC back and the new instance's socket sat on a
    deleted interface (test_vrrp_vmac's reload case failed that way). A restore is only for
    the link we still own as planned; nothing is touched otherwise."""
    from types import SimpleNamespace

    from director import hub
    from director.vrrp.vmac import Link
    from director.vrrp.vmac_links import VmacLinks
    links = VmacLinks(addresses=SimpleNamespace(lock=hub.Lock(), ipr=None))
    old = Link("vrrp.51", "eth0", "macvlan", 4, mac="00:00:5e:00:01:33")
    links.owned[old.name] = Link("vrrp.51", "eth0", "macvlan", 4, mac="02:00:00:00:00:33")
    assert links.ensure(old, restore=True) is False      # ipr None: any I/O would raise
