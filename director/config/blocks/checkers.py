"""Health-checker blocks inside real_server: each kind's keywords on top of the common ones.

Every checker model has ``kind`` (the block keyword: TCP_CHECK, HTTP_GET, ...), so the
checker registry of director.check can find the implementation for a parsed block.
"""

from __future__ import annotations

import re

from ..schema import (UINT_MAX, Block, Choice, Custom, Flag, Int, Invalid, Kw, Seconds,
                      SecretText, Text, Word, one_value)
from ..values import Script, digest, parse_port, status_codes
from .common import NOT_YET, IP_ADDRESS, constant_header, no_header, required


def _port(args, ctx):
    return parse_port(one_value(args, "a port number"), 1)


PORT = Custom(_port, "port 1-65535")

CONNECTION = (
    Kw("connect_ip", IP_ADDRESS, doc="Check this address instead of the real server's."),
    Kw("connect_port", PORT, doc="Check this port instead of the real server's."),
    Kw("bindto", IP_ADDRESS, aliases=("bind_to",), doc="Source address of the check."),
    Kw("bind_port", PORT),
    Kw("bind_if", Word("an interface")),
)


def common(kind: str) -> tuple[Kw, ...]:
    """The keywords every network checker takes. keepalived 2 reads the old nb_get_retry in
    HTTP_GET and SSL_GET only (check_http.c); anywhere else it is an unknown keyword that
    keepalived drops, so here it is accepted and ignored, saying so."""
    if kind in ("HTTP_GET", "SSL_GET"):
        nb_get_retry = Kw("nb_get_retry", Int(0, UINT_MAX), field="retry",
                          deprecated="nb_get_retry is deprecated: use 'retry'")
    else:
        nb_get_retry = Kw("nb_get_retry", Int(0, UINT_MAX),
                          ignored=f"nb_get_retry is ignored in {kind}: keepalived 2 reads it "
                                  f"only in HTTP_GET and SSL_GET (use 'retry')")
    return CONNECTION + (
        Kw("connect_timeout", Seconds(0.000001, 4294.967295), doc="Default: 5 s."),
        Kw("retry", Int(0, UINT_MAX),
           doc="Failed attempts in a row before the server is marked down."),
        nb_get_retry,
        Kw("delay_before_retry", Seconds(0, 86400),
           doc="Pause between the attempts of one check."),
        Kw("delay_loop", Seconds(0.001, 86400), doc="Overrides the virtual server's delay_loop."),
        Kw("warmup", Seconds(0, 86400), doc="Random delay, up to this, before the first check."),
        Kw("alpha", Flag(), doc="Start the server down until its first good check."),
        Kw("rise", Int(1, 1000), doc="director's addition (HAProxy's rise): good checks in a "
                                     "row before a down server is up again. Default 1, as "
                                     "keepalived."),
        Kw("fwmark", Int(0, 0xFFFFFFFF), doc="Mark on the checker's packets (SO_MARK)."),
        Kw("log_all_failures", Flag(), unsupported=NOT_YET),
    )

# -- HTTP_GET / SSL_GET ----------------------------------------------------------------------


def _regex(args, ctx):
    pattern = " ".join(str(a) for a in args)
    if not pattern:
        raise Invalid("expects a regular expression")
    try:
        re.compile(pattern)
    except re.error as exc:
        raise Invalid(f"'{pattern}' is not a valid regular expression: {exc}") from None
    return pattern


def _url_finish(values, ctx):
    required(values, ctx, "url", "path")


URL = Block(
    "url", "Url",
    header=no_header, finish=_url_finish,
    keywords=(
        Kw("path", Text("a URL path")),
        Kw("digest", Custom(digest, "32 hex digits"), doc="MD5 of the body, as genhash prints."),
        Kw("status_code", Custom(status_codes, "CODE or LOW-HIGH, ..."),
           doc="Accepted status codes. Default: 200-299."),
        Kw("virtualhost", Word("a host name")),
        Kw("regex", Custom(_regex, "a regular expression")),
        Kw("regex_no_match", Flag()),
        Kw("regex_options", Text("PCRE options")),
        Kw("regex_stack", Text("START MAX"), unsupported=NOT_YET),
        Kw("tls_compliant", Flag(), unsupported=NOT_YET),
        Kw("regex_min_offset", Int(0, 1 << 30)),
        Kw("regex_max_offset", Int(0, 1 << 30)),
    ),
)


def _http_finish(values, ctx):
    if not values["url"]:
        ctx.error(f"{values['kind']} needs at least one 'url {{ path ... }}' block")


def _http_checker(kind: str, model_name: str) -> Block:
    return Block(
        kind, model_name,
        header=constant_header(kind=kind), header_fields=(("kind", kind),),
        finish=_http_finish,
        keywords=common(kind) + (
            Kw("url", URL, repeat="append"),
            Kw("virtualhost", Word("a host name")),
            Kw("http_protocol", Choice(("1.0", "1.0C", "1.1"), case="keep"),
               default="1.0", doc="1.0C adds Connection: close; 1.1 sends Host."),
            Kw("enable_sni", Flag()),
            Kw("fast_recovery", Flag(), unsupported=NOT_YET),
            Kw("tls_compliant", Flag()),
        ),
    )


HTTP_GET = _http_checker("HTTP_GET", "HttpGetCheck")
SSL_GET = _http_checker("SSL_GET", "SslGetCheck")

# -- the others -----------------------------------------------------------------------------


def _misc_finish(values, ctx):
    required(values, ctx, "MISC_CHECK", "misc_path")


MISC_CHECK = Block(
    "MISC_CHECK", "MiscCheck",
    header=constant_header(kind="MISC_CHECK"), header_fields=(("kind", "MISC_CHECK"),),
    finish=_misc_finish,
    keywords=common("MISC_CHECK") + (
        Kw("misc_path", Script(with_user=False)),
        Kw("misc_timeout", Seconds(0, 4294), doc="Default: delay_loop."),
        Kw("misc_dynamic", Flag(), doc="Exit code 2-255 sets the weight to code - 2."),
        Kw("user", Text("USER [GROUP]")),
    ),
)

SMTP_HOST = Block(
    "host", "SmtpHost",
    header=no_header,
    keywords=CONNECTION,
)

SMTP_CHECK = Block(
    "SMTP_CHECK", "SmtpCheck",
    header=constant_header(kind="SMTP_CHECK"), header_fields=(("kind", "SMTP_CHECK"),),
    keywords=common("SMTP_CHECK") + (
        Kw("helo_name", Text("a host name")),
        Kw("host", SMTP_HOST, repeat="append", field="hosts",
           deprecated="SMTP_CHECK 'host' blocks are deprecated in keepalived 2: write one "
                      "SMTP_CHECK per address; director checks every host block"),
    ),
)

def _domain(args, ctx):
    name = one_value(args, "a domain name")
    if ".." in name or len(name) > 253:
        raise Invalid(f"'{name}' is not a domain name (empty label or too long)")
    return name


DNS_CHECK = Block(
    "DNS_CHECK", "DnsCheck",
    header=constant_header(kind="DNS_CHECK"), header_fields=(("kind", "DNS_CHECK"),),
    keywords=common("DNS_CHECK") + (
        Kw("type", Choice(("A", "NS", "CNAME", "SOA", "MX", "TXT", "AAAA", "RRSIG", "DNSKEY")),
           default="SOA"),
        Kw("name", Custom(_domain, "a domain name"), default="",
           doc="Default: the root (empty name)."),
    ),
)


def _hex(args, ctx, wildcards: bool = False):
    """Hex bytes, spaces allowed between them; ``require_reply`` also takes X as a nibble
    that matches anything."""
    text = "".join(str(a) for a in args)
    allowed = r"[0-9a-fA-FxX]*" if wildcards else r"[0-9a-fA-F]*"
    if not text or len(text) % 2 or not re.fullmatch(allowed, text):
        raise Invalid(f"expects an even number of hex digits, got '{' '.join(args)}'")
    return text.lower()


UDP_CHECK = Block(
    "UDP_CHECK", "UdpCheck",
    header=constant_header(kind="UDP_CHECK"), header_fields=(("kind", "UDP_CHECK"),),
    keywords=common("UDP_CHECK") + (
        Kw("payload", Custom(_hex, "hex bytes")),
        Kw("require_reply", Custom(lambda args, ctx: _hex(args, ctx, True) if args else True,
                                   "[hex bytes, X matches any nibble]")),
        Kw("min_reply_length", Int(0, 65535)),
        Kw("max_reply_length", Int(0, 65535)),
    ),
)

TCP_CHECK = Block(
    "TCP_CHECK", "TcpCheck",
    header=constant_header(kind="TCP_CHECK"), header_fields=(("kind", "TCP_CHECK"),),
    keywords=common("TCP_CHECK"),
)

PING_CHECK = Block(
    "PING_CHECK", "PingCheck",
    header=constant_header(kind="PING_CHECK"), header_fields=(("kind", "PING_CHECK"),),
    keywords=common("PING_CHECK"),
)

FILE_CHECK = Block(
    "FILE_CHECK", "FileCheck",
    header=constant_header(kind="FILE_CHECK"), header_fields=(("kind", "FILE_CHECK"),),
    keywords=(
        Kw("track_file", Word("a track_file name")),
        Kw("weight", Text("N [reverse]")),
    ),
)

BFD_CHECK = Block(
    "BFD_CHECK", "BfdCheck",
    header=constant_header(kind="BFD_CHECK"), header_fields=(("kind", "BFD_CHECK"),),
    keywords=(
        Kw("name", Word("a bfd_instance name")),
        Kw("weight", Text("N [reverse]")),
        Kw("alpha", Flag()),
    ),
)

BFD_UNSUPPORTED = "BFD is not implemented by director"

CHECKERS = (TCP_CHECK, HTTP_GET, SSL_GET, MISC_CHECK, SMTP_CHECK, DNS_CHECK, UDP_CHECK,
            PING_CHECK, FILE_CHECK, BFD_CHECK)


def checker_keywords() -> tuple[Kw, ...]:
    """The checker blocks as real_server keywords; all collect into ``checkers``."""
    return tuple(
        Kw(block.name, block, field="checkers", repeat="append",
           unsupported=BFD_UNSUPPORTED if block is BFD_CHECK else "",
           aliases=("ICMP_CHECK",) if block is PING_CHECK else ())
        for block in CHECKERS)


SSL = Block(
    "SSL", "SslDefs",
    header=no_header,
    keywords=(
        Kw("password", SecretText()),
        Kw("ca", Text("a CA file")),
        Kw("certificate", Text("a certificate file")),
        Kw("key", Text("a key file")),
    ),
)
