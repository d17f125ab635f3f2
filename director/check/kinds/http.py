"""HTTP_GET and SSL_GET: GET every url, judged by status, digest and regex
(director/check/http.py)."""

from __future__ import annotations

import functools
import re
from typing import TYPE_CHECKING

from .kind import Kind

if TYPE_CHECKING:
    from ...config.blocks.checkers import Vocabulary
    from ...config.schema import Block, Kw


def _implementation() -> type:
    from ..http import HttpCheck   # here, not above: -t reads the keywords without the checker
    return HttpCheck


@functools.cache               # one url block for both kinds: one model, one section of docs
def _url(c: type[Vocabulary]) -> Block:
    def regex(args, ctx):
        pattern = " ".join(str(a) for a in args)
        if not pattern:
            raise c.Invalid("expects a regular expression")
        try:
            re.compile(pattern)
        except re.error as exc:
            raise c.Invalid(f"'{pattern}' is not a valid regular expression: {exc}") from None
        return pattern

    def regex_stack(args, ctx):
        """keepalived logs a bad pair and ignores it (no configuration error): so does
        director, with a warning."""
        if len(args) == 2 and all(str(a).isdecimal() for a in args) and \
                int(args[0]) <= int(args[1]):
            return (int(args[0]), int(args[1]))
        ctx.warn(f"regex_stack expects START MAX with START <= MAX, got '{' '.join(args)}': "
                 "ignored, as keepalived ignores it")
        return None

    def finish(values, ctx):
        c.required(values, ctx, "url", "path")

    return c.Block(
        "url", "Url",
        header=c.no_header, finish=finish,
        keywords=(
            c.Kw("path", c.Text("a URL path")),
            c.Kw("digest", c.Custom(c.digest, "32 hex digits", pure=True),
                 doc="MD5 of the body, as genhash prints."),
            c.Kw("status_code", c.Custom(c.status_codes, "CODE or LOW-HIGH, ..."),
                 doc="Accepted status codes. Default: 200-299."),
            c.Kw("virtualhost", c.Word("a host name")),
            c.Kw("regex", c.Custom(regex, "a regular expression")),
            c.Kw("regex_no_match", c.Flag()),
            c.Kw("regex_options", c.Text("PCRE options")),
            c.Kw("regex_stack", c.Custom(regex_stack, "START MAX"),
                 doc="The PCRE2 JIT stack keepalived gives long regex matches. Read and "
                     "checked, and needs nothing more: director's regex engine (Python's re) "
                     "has no JIT stack to size."),
            c.Kw("tls_compliant", c.Flag(), doc=TLS_COMPLIANT + " For this url only."),
            c.Kw("regex_min_offset", c.Int(0, 1 << 30)),
            c.Kw("regex_max_offset", c.Int(0, 1 << 30)),
        ),
    )


def _keywords(c: type[Vocabulary]) -> tuple[Kw, ...]:
    return (
        c.Kw("url", _url(c), repeat="append"),
        c.Kw("virtualhost", c.Word("a host name")),
        c.Kw("http_protocol", c.Choice(("1.0", "1.0C", "1.1"), case="keep"),
             default="1.0", doc="1.0C adds Connection: close; 1.1 sends Host."),
        c.Kw("enable_sni", c.Flag()),
        c.Kw("fast_recovery", c.Flag(),
             doc="keepalived checks one url per delay_loop, and fast_recovery removes that "
                 "delay while a server is down, so it is up once all urls pass. director "
                 "checks every url in each check, so a recovering server is up after one "
                 "good check either way; with rise N, fast_recovery runs the N good checks "
                 "back to back instead of delay_loop apart."),
        c.Kw("tls_compliant", c.Flag(), doc=TLS_COMPLIANT),
    )


TLS_COMPLIANT = ("SSL_GET: end each connection with a TLS close_notify alert, as the TLS "
                 "specification asks, instead of closing quietly (keepalived 2.2.8 and later; "
                 "2.2.7 does not have it and always closes quietly).")


def _needs_a_url(values, ctx):
    if not values["url"]:
        ctx.error(f"{values['kind']} needs at least one 'url {{ path ... }}' block")


def _ssl_inputs(config, real, settings) -> dict:
    """The top-level SSL block: its client certificate, for servers that ask for one."""
    return {"ssl_defs": config.ssl}


# keepalived's check_http.c: 3 s between retries, and the old nb_get_retry still read.
KINDS = (
    Kind("HTTP_GET", "HttpGetCheck", _implementation, _keywords, finish=_needs_a_url,
         nb_get_retry=True, delay_before_retry=3.0),
    Kind("SSL_GET", "SslGetCheck", _implementation, _keywords, finish=_needs_a_url,
         nb_get_retry=True, delay_before_retry=3.0, inputs=_ssl_inputs),
)
