"""Policy rules (virtual_rules, static_rules) as rtnetlink messages: ``fields`` is pure (a
Rule -> the fib_rule_hdr fields and attributes), ``Addresses.add_rule`` / ``remove_rule`` send
them. Adding a rule that is there and removing one that is gone both succeed."""

from __future__ import annotations

import socket

from ..config.iprule import Rule

# fib_rule_hdr actions (linux/fib_rules.h), as pyroute2's fibmsg has them: written out so
# that VRRP's start-up does not import pyroute2 (director/vrrp/rtnl.py says why)
FR_ACT_TO_TBL, FR_ACT_GOTO, FR_ACT_NOP = 1, 2, 3
FR_ACT_BLACKHOLE, FR_ACT_UNREACHABLE, FR_ACT_PROHIBIT = 6, 7, 8

FIB_RULE_INVERT = 0x2
ACTIONS = {"table": FR_ACT_TO_TBL, "goto": FR_ACT_GOTO, "nop": FR_ACT_NOP,
           "blackhole": FR_ACT_BLACKHOLE, "unreachable": FR_ACT_UNREACHABLE,
           "prohibit": FR_ACT_PROHIBIT}


def fields(rule: Rule) -> tuple[dict, list[tuple[str, object]]]:
    """The header fields and the attributes of the rule, as ip-rule(8) would send them."""
    header = {"family": socket.AF_INET6 if rule.family == 6 else socket.AF_INET,
              "dst_len": 0, "src_len": 0, "tos": rule.tos or 0, "table": 0,
              "action": ACTIONS[rule.action],
              "flags": FIB_RULE_INVERT if rule.invert else 0}
    attrs: list[tuple[str, object]] = []
    for name, prefix in (("FRA_SRC", rule.src), ("FRA_DST", rule.dst)):
        if prefix is not None:
            address, _, length = prefix.partition("/")
            header["src_len" if name == "FRA_SRC" else "dst_len"] = int(length)
            attrs.append((name, address))
    if rule.table is not None:
        # the header holds tables below 256; RT_TABLE_COMPAT (252) says "see FRA_TABLE"
        header["table"] = rule.table if rule.table < 256 else 252
        attrs.append(("FRA_TABLE", rule.table))
    optional = (("FRA_PRIORITY", rule.priority), ("FRA_GOTO", rule.goto),
                ("FRA_FWMARK", rule.fwmark), ("FRA_FLOW", rule.realms),
                ("FRA_TUN_ID", rule.tunnel_id), ("FRA_SUPPRESS_IFGROUP", rule.suppress_ifgroup),
                ("FRA_SUPPRESS_PREFIXLEN", rule.suppress_prefixlength),
                ("FRA_IIFNAME", rule.iif), ("FRA_OIFNAME", rule.oif),
                ("FRA_PROTOCOL", rule.protocol), ("FRA_IP_PROTO", rule.ipproto))
    attrs.extend((name, value) for name, value in optional if value is not None)
    if rule.fwmask is not None:
        attrs.append(("FRA_FWMASK", rule.fwmask))
    elif rule.fwmark is not None:
        attrs.append(("FRA_FWMASK", 0xFFFFFFFF))     # ip-rule(8): a mark alone is all bits
    if rule.l3mdev:
        attrs.append(("FRA_L3MDEV", 1))
    for name, pair in (("FRA_UID_RANGE", rule.uidrange), ("FRA_SPORT_RANGE", rule.sport),
                       ("FRA_DPORT_RANGE", rule.dport)):
        if pair is not None:
            attrs.append((name, f"{pair[0]}:{pair[1]}"))
    return header, attrs


def arguments(rule: Rule) -> dict:
    """pyroute2's IPRoute.rule keywords: the header fields, the attributes by their names
    without FRA_ (its request filter maps them back)."""
    header, attrs = fields(rule)
    return {**header, **{name[4:].lower(): value for name, value in attrs}}


def describe(rule: Rule) -> str:
    """The rule in a log line: its selector and action, ip-rule(8)-like."""
    words = [f"pref {rule.priority}"] if rule.priority is not None else []
    words += ["not"] if rule.invert else []
    words += [f"from {rule.src or 'all'}"] + ([f"to {rule.dst}"] if rule.dst else [])
    words += [f"fwmark {rule.fwmark:#x}"] if rule.fwmark is not None else []
    words += [f"iif {rule.iif}"] if rule.iif else []
    words += [f"oif {rule.oif}"] if rule.oif else []
    if rule.action == "table":
        words.append("l3mdev" if rule.l3mdev else f"lookup {rule.table}")
    elif rule.action == "goto":
        words.append(f"goto {rule.goto}")
    else:
        words.append(rule.action)
    return " ".join(words)
