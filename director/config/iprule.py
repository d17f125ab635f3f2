"""virtual_rules / static_rules lines: ip-rule(8) as keepalived 2.2.7 reads it (vrrp_iprule.c).

Every option keepalived accepts is parsed into a typed field, so that the rule can be added
and removed over netlink exactly (director/vrrp/rules.py). Where keepalived reports a
configuration error and drops the rule, director drops it with a FILE:LINE warning that says
why; where keepalived changes it and goes on, so does director, saying so.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field, replace

from .diagnostics import Location
from .schema import Context, Invalid

RTPROT_KEEPALIVED = 18          # the routing protocol keepalived (and director) tags its rules with
RULE_START_PRIORITY = 16384     # keepalived numbers rules without a preference down from here
ACTIONS = ("table", "goto", "nop", "blackhole", "unreachable", "prohibit")
_TABLE_FILES = ("/etc/iproute2/rt_tables", "/usr/share/iproute2/rt_tables")
_BUILTIN_TABLES = {"default": 253, "main": 254, "local": 255}
_DSFIELDS = {"default": 0}
_IP_PROTOCOLS = {"icmp": 1, "igmp": 2, "tcp": 6, "udp": 17, "gre": 47, "esp": 50, "ah": 51,
                 "ipv6-icmp": 58, "icmpv6": 58, "sctp": 132, "udplite": 136}


@dataclass(frozen=True, slots=True)
class Rule:
    """One virtual_rules / static_rules line: an ip-rule(8) selector and its action."""

    family: int = 4
    action: str = "table"           # one of ACTIONS
    table: int | None = None
    goto: int | None = None
    priority: int | None = None     # set for every rule by assign_priorities
    src: str | None = None          # from PREFIX
    dst: str | None = None          # to PREFIX
    invert: bool = False            # not
    tos: int | None = None
    fwmark: int | None = None
    fwmask: int | None = None
    realms: int | None = None
    suppress_prefixlength: int | None = None
    suppress_ifgroup: int | None = None
    iif: str | None = None
    oif: str | None = None
    tunnel_id: int | None = None
    uidrange: tuple[int, int] | None = None
    l3mdev: bool = False
    protocol: int | None = None     # RTPROT_KEEPALIVED unless no_track
    ipproto: int | None = None
    sport: tuple[int, int] | None = None
    dport: tuple[int, int] | None = None
    no_track: bool = False
    track_group: str | None = None
    location: Location | None = field(default=None, compare=False, repr=False)


def table_id(word: str) -> int:
    """A routing table by number or by name (the built-in names, then iproute2's rt_tables
    files, as keepalived's find_rttables_table)."""
    if word.isdecimal():
        return int(word)
    if word in _BUILTIN_TABLES:
        return _BUILTIN_TABLES[word]
    for path in _TABLE_FILES:
        try:
            with open(path, encoding="utf-8", errors="replace") as lines:
                for line in lines:
                    parts = line.split("#", 1)[0].split()
                    if len(parts) >= 2 and parts[1] == word and parts[0].isdecimal():
                        return int(parts[0])
        except OSError:
            continue
    raise Invalid(f"routing table '{word}' not found (a number, or a name in "
                  f"{_TABLE_FILES[0]})")


def _unsigned(word: str, what: str, limit: int, base: int = 10) -> int:
    try:
        value = int(word, base)
    except ValueError:
        value = -1
    if not 0 <= value <= limit:
        raise Invalid(f"invalid {what} '{word}' (0 to {limit})")
    return value


def _port_range(word: str, what: str) -> tuple[int, int]:
    low, _, high = word.partition("-")
    start = _unsigned(low, what, 65535)
    end = _unsigned(high, what, 65535) if high else start
    return start, end


def _prefix(word: str, what: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    try:
        return ipaddress.ip_network(word, strict=False)
    except ValueError:
        raise Invalid(f"invalid rule {what} address '{word}'") from None


def rule(words: list[str], ctx: Context) -> Rule | None:
    """keepalived reports a rule it cannot read and goes on without it (its own sample
    keepalived.conf.vrrp.rules has one); so does director, with a warning at FILE:LINE."""
    try:
        return parse_rule(words, ctx)
    except Invalid as exc:
        ctx.warn(f"{exc}: this rule is ignored, as keepalived ignores it")
        return None


def parse_rule(words: list[str], ctx: Context) -> Rule:
    fields: dict = {}
    family: int | None = None
    action: str | None = None
    table_option = False
    index = 0

    def value() -> str:
        if index + 1 >= len(words):
            raise Invalid(f"'{words[index]}' needs a value")
        return words[index + 1]

    def set_family(version: int, what: str) -> None:
        nonlocal family
        if family is not None and family != version:
            raise Invalid(f"rule specification has mixed IPv4 and IPv6 ({what})")
        family = version

    def set_action(name: str) -> None:
        nonlocal action
        if action is not None:
            raise Invalid("a rule takes only one of table/goto/nop/blackhole/prohibit/"
                          "unreachable/l3mdev")
        action = name

    while index < len(words):
        word = words[index]
        step = 2
        if word in ("inet", "inet6"):
            set_family(6 if word == "inet6" else 4, word)
            step = 1
        elif word in ("from", "to"):
            network = _prefix(value(), word)
            set_family(network.version, f"{word} {value()}")
            fields["src" if word == "from" else "dst"] = str(network)
        elif word in ("table", "lookup"):
            number = table_id(value())
            if number == 0:
                raise Invalid("table 0 is not valid for a rule")
            set_action("table")
            fields["table"] = number
        elif word == "not":
            fields["invert"] = True
            step = 1
        elif word in ("preference", "order", "priority"):
            fields["priority"] = _unsigned(value(), "rule preference", 0xFFFFFFFF)
        elif word in ("tos", "dsfield"):
            text = value()
            fields["tos"] = _DSFIELDS[text] if text in _DSFIELDS else \
                _unsigned(text, "tos", 255, 16)
        elif word == "fwmark":
            mark, slash, mask = value().partition("/")
            fields["fwmark"] = _unsigned(mark, "rule fwmark", 0xFFFFFFFF, 0)
            if slash:
                fields["fwmask"] = _unsigned(mask, "rule fwmark mask", 0xFFFFFFFF, 0)
        elif word == "realms":
            source, slash, destination = value().partition("/")
            fields["realms"] = (_unsigned(source, "realm", 0xFFFF) << 16 |
                                _unsigned(destination, "realm", 0xFFFF)) if slash else \
                _unsigned(source, "realm", 0xFFFF)
            set_family(4, "realms is only valid for IPv4")
            table_option = True
        elif word in ("suppress_prefixlength", "sup_pl"):
            fields["suppress_prefixlength"] = _unsigned(value(), "suppress_prefixlength",
                                                        0x7FFFFFFF)
            table_option = True
        elif word in ("suppress_ifgroup", "sup_group"):
            fields["suppress_ifgroup"] = _unsigned(value(), "suppress_ifgroup", 0xFFFFFFFF)
            table_option = True
        elif word in ("dev", "iif", "oif"):
            fields["oif" if word == "oif" else "iif"] = value()
        elif word == "tunnel-id":
            fields["tunnel_id"] = _unsigned(value(), "tunnel-id", (1 << 64) - 1)
        elif word == "uidrange":
            low, dash, high = value().partition("-")
            if not dash:
                raise Invalid(f"invalid uidrange '{value()}' (START-END)")
            fields["uidrange"] = (_unsigned(low, "uid", 0xFFFFFFFF),
                                  _unsigned(high, "uid", 0xFFFFFFFF))
        elif word == "l3mdev":
            set_action("table")
            fields["l3mdev"] = True
            step = 1
        elif word == "protocol":
            fields["protocol"] = _unsigned(value(), "protocol", 255)
        elif word == "ipproto":
            text = value()
            fields["ipproto"] = _IP_PROTOCOLS[text] if text in _IP_PROTOCOLS else \
                _unsigned(text, "ipproto", 255)
        elif word in ("sport", "dport"):
            fields[word] = _port_range(value(), f"{word} range")
        elif word == "no_track":
            fields["no_track"] = True
            step = 1
        elif word == "track_group":
            fields["track_group"] = value()
        else:
            if word == "type":
                index += 1
                word = words[index] if index < len(words) else ""
            if word == "goto":
                set_action("goto")
                fields["goto"] = _unsigned(value(), "goto target", 0xFFFFFFFF)
            elif word in ("nop", "blackhole", "unreachable", "prohibit"):
                set_action(word)
                step = 1
            else:
                raise Invalid(f"unknown rule option '{word}'")
        index += step

    if action is None:
        raise Invalid("no action for the rule (table, goto, nop, blackhole, prohibit, "
                      "unreachable or l3mdev)")
    if action == "goto":
        if "priority" not in fields:
            raise Invalid(f"goto target {fields['goto']} needs a preference")
        if fields["priority"] >= fields["goto"]:
            raise Invalid(f"preference {fields['priority']} >= goto target {fields['goto']}")
    if action != "table" and table_option:
        raise Invalid("suppress_prefixlength / suppress_ifgroup / realms need a table action")
    if fields.get("l3mdev") and "table" in fields:
        raise Invalid("table cannot be given for an l3mdev rule")
    if not fields.get("no_track") and fields.get("protocol", RTPROT_KEEPALIVED) != \
            RTPROT_KEEPALIVED:
        ctx.warn(f"a tracked rule has protocol {RTPROT_KEEPALIVED} (keepalived): protocol "
                 f"{fields['protocol']} is replaced, as keepalived does (add no_track to keep it)")
    if not fields.get("no_track"):
        fields["protocol"] = RTPROT_KEEPALIVED
    if fields.get("track_group") and not fields.get("iif"):
        ctx.warn("a rule's track_group needs dev/iif: it is dropped, as keepalived does")
        fields.pop("track_group")
    if "priority" not in fields:
        ctx.warn("rule has no preference: director numbers it down from "
                 f"{RULE_START_PRIORITY}, as keepalived does; this is probably not what you want")
    return Rule(family=family or 4, action=action, location=ctx.location, **fields)


def assign_priorities(rule_lists: list[tuple]) -> list[tuple]:
    """Rules written without a preference get keepalived's: per family, 16384 down, in the
    order given (static_rules, then each vrrp_instance's virtual_rules)."""
    following = {4: RULE_START_PRIORITY, 6: RULE_START_PRIORITY}
    numbered = []
    for rules in rule_lists:
        done = []
        for item in rules:
            if item.priority is None:
                item = replace(item, priority=following[item.family])
                following[item.family] -= 1
            done.append(item)
        numbered.append(tuple(done))
    return numbered
