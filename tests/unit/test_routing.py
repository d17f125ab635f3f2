"""Policy rules (parsing as keepalived 2.2.7 and their netlink fields), the static entries'
reload diff and promote_secondaries' reference counting."""

from __future__ import annotations

import socket
from types import SimpleNamespace

import pytest

from director.config.iprule import (RTPROT_KEEPALIVED, Rule, assign_priorities, parse_rule,
                                    rule)
from director.config.schema import Invalid
from director.vrrp import rules
from director.vrrp.dynamic import InterfaceWaiter
from director.vrrp.promote import PromoteSecondaries
from director.vrrp.tracking import debounce
from director.vrrp.static import changes
from tests.unit.test_config_values import Ctx


def parse(text: str, ctx=None) -> Rule:
    return parse_rule(text.split(), ctx or Ctx())


def test_every_option_keepalived_reads():
    parsed = parse("not from 10.1.0.0/16 to 10.2.0.0/16 fwmark 0x10/0xff iif eth0 oif eth1 "
                   "tos 0x10 lookup main priority 200 sport 1-5 dport 80 ipproto tcp "
                   "uidrange 10-20 tunnel-id 7 suppress_prefixlength 0 suppress_ifgroup 3 "
                   "realms 3/4")
    assert parsed == Rule(family=4, action="table", table=254, priority=200, src="10.1.0.0/16",
                          dst="10.2.0.0/16", invert=True, tos=16, fwmark=16, fwmask=255,
                          realms=3 << 16 | 4, suppress_prefixlength=0, suppress_ifgroup=3,
                          iif="eth0", oif="eth1", tunnel_id=7, uidrange=(10, 20),
                          protocol=RTPROT_KEEPALIVED, ipproto=6, sport=(1, 5), dport=(80, 80))
    assert parse("from 2001:db8::/32 table 100 priority 1").family == 6
    assert parse("inet6 goto 100 priority 5").action == "goto"
    assert parse("from 10.0.0.1 type prohibit priority 5").action == "prohibit"
    assert parse("l3mdev priority 5").l3mdev
    kept = parse("from 10.0.0.1 table 5 protocol 4 no_track priority 5")
    assert kept.protocol == 4 and kept.no_track


@pytest.mark.parametrize("text, message", [
    ("from 10.0.0.1 priority 5", "no action for the rule"),
    ("from 10.0.0.1 table 0 priority 5", "table 0 is not valid"),
    ("from 10.0.0.1 table nosuch priority 5", "routing table 'nosuch' not found"),
    ("from 10.0.0.1 to 2001:db8::1 table 5", "mixed IPv4 and IPv6"),
    ("inet6 realms 3 table 5 priority 5", "mixed IPv4 and IPv6"),
    ("from 10.0.0.x table 5", "invalid rule from address '10.0.0.x'"),
    ("table 5 blackhole priority 5", "only one of table/goto"),
    ("goto 100", "needs a preference"),
    ("goto 100 priority 100", "preference 100 >= goto target 100"),
    ("prohibit suppress_prefixlength 0 priority 5", "need a table action"),
    ("fwmark 0x1/zz table 5", "invalid rule fwmark mask"),
    ("sport 70000 table 5", "invalid sport range"),
    ("uidrange 10 table 5", "invalid uidrange"),
    ("table 5 colour blue", "unknown rule option 'colour'"),
    ("table", "'table' needs a value"),
])
def test_what_keepalived_refuses_is_dropped_saying_why(text, message):
    with pytest.raises(Invalid, match=message):
        parse(text)
    ctx = Ctx()
    assert rule(text.split(), ctx) is None
    assert ctx.warnings and "this rule is ignored" in ctx.warnings[0]


def test_warnings_as_keepalived():
    ctx = Ctx()
    assert parse("from 10.0.0.1 table 5 protocol 4", ctx).protocol == RTPROT_KEEPALIVED
    assert parse("from 10.0.0.1 table 5 track_group g priority 1", ctx).track_group is None
    assert len(ctx.warnings) == 3          # protocol replaced, no preference, track_group


def test_priorities_count_down_per_family_in_order():
    four, six = parse("table 5"), parse("inet6 table 5")
    set_ = parse("table 5 priority 7")
    static, virtual = assign_priorities([(four, set_, six), (four, six)])
    assert [r.priority for r in static] == [16384, 7, 16384]
    assert [r.priority for r in virtual] == [16383, 16383]


def test_netlink_fields_as_ip_rule_sends_them():
    header, attrs = rules.fields(parse("not from 10.1.0.0/16 fwmark 0x10 table 1000 "
                                       "priority 9 sport 1-5"))
    assert header == {"family": socket.AF_INET, "dst_len": 0, "src_len": 16, "tos": 0,
                      "table": 252, "action": 1, "flags": rules.FIB_RULE_INVERT}
    assert dict(attrs) == {"FRA_SRC": "10.1.0.0", "FRA_TABLE": 1000, "FRA_PRIORITY": 9,
                           "FRA_FWMARK": 16, "FRA_FWMASK": 0xFFFFFFFF,
                           "FRA_PROTOCOL": RTPROT_KEEPALIVED, "FRA_SPORT_RANGE": "1:5"}
    assert rules.arguments(parse("inet6 blackhole priority 3"))["action"] == 6
    assert rules.describe(parse("from 10.0.0.1 goto 9 priority 3")) == \
        "pref 3 from 10.0.0.1/32 goto 9"


def _config(addresses=(), routes=(), rule_list=(), default_interface=None):
    return SimpleNamespace(static_ipaddress=tuple(addresses), static_routes=tuple(routes),
                           static_rules=tuple(rule_list),
                           global_defs=SimpleNamespace(default_interface=default_interface))


def test_a_reload_changes_only_what_changed():
    a, b, c = parse("table 5 priority 1"), parse("table 5 priority 2"), parse("table 5 priority 3")
    old, new = _config(["x"], ["r"], [a, b]), _config(["x"], ["r"], [a, c])
    assert changes(old, new) == ([("rule", b, "eth0")], [("rule", c, "eth0")])
    assert changes(old, old) == ([], [])
    # start adds in order (addresses, routes, rules); stop removes the other way round
    assert [kind for kind, *_ in changes(None, old)[1]] == ["address", "route", "rule", "rule"]
    assert [kind for kind, *_ in changes(old, None)[0]] == ["rule", "rule", "route", "address"]
    # a new default_interface moves the entries that use it
    moved = _config(["x"], ["r"], [a, b], default_interface="eth1")
    assert len(changes(old, moved)[1]) == 4


def test_promote_secondaries_is_counted_per_interface(tmp_path):
    (tmp_path / "eth0").mkdir()
    (tmp_path / "eth1").mkdir()
    (tmp_path / "eth0" / "promote_secondaries").write_text("0\n")
    (tmp_path / "eth1" / "promote_secondaries").write_text("1\n")
    promote = PromoteSecondaries(tmp_path)
    value = lambda ifname: (tmp_path / ifname / "promote_secondaries").read_text().strip()
    assert promote.acquire("eth0", "VI_1") and promote.acquire("eth0", "VI_2")
    assert value("eth0") == "1"
    promote.release("eth0", "VI_1")
    assert value("eth0") == "1"            # VI_2 still runs
    promote.release("eth0", "VI_2")
    assert value("eth0") == "0"
    assert not promote.acquire("eth1", "VI_3")     # the host's own 1: never reset by us
    assert not promote.acquire("nosuch", "VI_4")   # logged, nothing held


def test_instances_wait_for_their_interface_until_it_is_ready():
    ready: set[str] = set()
    waiter = InterfaceWaiter(lambda names: None, ready=lambda name: name in ready)
    waiter.waiting = {"VI_1": "eth1", "VI_2": "eth2"}     # as wait() leaves them
    assert waiter.due() == ()
    ready.add("VI_2")
    assert waiter.due() == ("VI_2",) and list(waiter.waiting) == ["VI_1"]
    waiter.keep_only({"VI_3"})                            # a reload removed VI_1
    assert waiter.waiting == {}


def test_debounce_reports_a_change_once_it_has_lasted_its_delay():
    delays = (3.0, 0.5)                                    # down, up
    assert debounce(True, True, None, 10.0, delays) == (True, None)
    assert debounce(True, False, None, 10.0, delays) == (True, 10.0)     # waits
    assert debounce(True, False, 10.0, 12.9, delays) == (True, 10.0)
    assert debounce(True, False, 10.0, 13.0, delays) == (False, None)    # lasted 3 s
    assert debounce(True, True, 10.0, 11.0, delays) == (True, None)      # bounced: forgotten
    assert debounce(False, True, None, 20.0, delays) == (False, 20.0)
    assert debounce(False, True, 20.0, 20.5, delays) == (True, None)
    assert debounce(True, False, None, 5.0, (0.0, 0.0)) == (False, None)


@pytest.mark.parametrize("extra, warned", [("", True), ("no_virtual_ipaddress", False)])
def test_no_virtual_ipaddress_says_no_vips_is_meant(tmp_path, extra, warned):
    from director.config import load_config
    path = tmp_path / "keepalived.conf"
    path.write_text("vrrp_instance VI_CLOUD {\n interface eth0\n virtual_router_id 9\n"
                    f" version 3\n {extra}\n}}\n")
    result = load_config(str(path), config_id="t", interface_exists=None)
    assert result.ok
    said = [str(d) for d in result.warnings if "no virtual_ipaddress" in str(d)]
    assert bool(said) == warned
    assert not warned or "refuses a VRRPv3 instance" in said[0]
