"""DNS_CHECK: one query over UDP, answered with NOERROR (director/check/dns.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .kind import Kind

if TYPE_CHECKING:
    from ...config.blocks.checkers import Vocabulary
    from ...config.schema import Kw


def _implementation() -> type:
    from ..dns import DnsCheck     # here, not above: -t reads the keywords without the checker
    return DnsCheck


def _keywords(c: type[Vocabulary]) -> tuple[Kw, ...]:
    def domain(args, ctx):
        name = c.one_value(args, "a domain name")
        if ".." in name or len(name) > 253:
            raise c.Invalid(f"'{name}' is not a domain name (empty label or too long)")
        return name

    return (
        c.Kw("type", c.Choice(("A", "NS", "CNAME", "SOA", "MX", "TXT", "AAAA", "RRSIG",
                               "DNSKEY")), default="SOA"),
        c.Kw("name", c.Custom(domain, "a domain name"), default="",
             doc="Default: the root (empty name)."),
    )


# keepalived's check_dns.c: three retries, each a delay_loop after the last.
KINDS = (Kind("DNS_CHECK", "DnsCheck", _implementation, _keywords, retry=3,
              delay_before_retry=None),)
