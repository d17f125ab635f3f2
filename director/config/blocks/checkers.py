"""Health-checker blocks inside real_server, built from the kinds' own declarations
(director/check/kinds/: each declares its keywords, keepalived's defaults for it and its
checker), and the top-level SSL block the SSL_GET checks use.

A kind's block is the keywords every network checker takes (shared_keywords, documented with
that kind's defaults) followed by its own. Every checker model has ``kind`` (the block keyword:
TCP_CHECK, HTTP_GET, ...), by which director.check finds the kind's declaration again.
"""

from __future__ import annotations

from ...check.kinds import KINDS, Kind
from ..schema import (UINT_MAX, Block, Choice, Custom, Flag, Int, Invalid, Kw, Seconds,
                      SecretText, Text, Word, one_value)
from ..values import Script, digest, parse_port, status_codes
from .common import IP_ADDRESS, constant_header, no_header, required


def _port(args, ctx):
    return parse_port(one_value(args, "a port number"), 1)


PORT = Custom(_port, "port 1-65535", pure=True)

CONNECTION = (
    Kw("connect_ip", IP_ADDRESS, doc="Check this address instead of the real server's."),
    Kw("connect_port", PORT, doc="Check this port instead of the real server's."),
    Kw("bindto", IP_ADDRESS, aliases=("bind_to",), doc="Source address of the check."),
    Kw("bind_port", PORT),
    Kw("bind_if", Word("an interface")),
)


class Vocabulary:
    """What a kind declares its own keywords with (``Kind.keywords(c)``, c being this class):
    the keyword-table types and the values checker blocks share. Handed to the declarations
    rather than imported by them: this engine imports them, so they cannot import it."""

    Block, Kw, Invalid = Block, Kw, Invalid
    Choice, Custom, Flag, Int, Seconds, Text, Word = Choice, Custom, Flag, Int, Seconds, Text, Word
    Script, digest, status_codes, one_value = Script, digest, status_codes, one_value
    no_header, required = no_header, required
    CONNECTION, IP_ADDRESS, PORT = CONNECTION, IP_ADDRESS, PORT


# The shared keywords that read the same in every kind, made once.
CONNECT_TIMEOUT = Kw("connect_timeout", Seconds(0.000001, 4294.967295), doc="Default: 5 s.")
TIMING = (
    Kw("delay_loop", Seconds(0.001, 86400), doc="Overrides the virtual server's delay_loop."),
    Kw("warmup", Seconds(0, 86400), doc="Random delay, up to this, before the first check."),
    Kw("alpha", Flag(), doc="Start the server down until its first good check."),
    Kw("rise", Int(1, 1000), doc="director's addition (HAProxy's rise): good checks in a row "
                                 "before a down server is up again. Default 1, as keepalived."),
    Kw("fwmark", Int(0, 0xFFFFFFFF), doc="Mark on the checker's packets (SO_MARK)."),
    Kw("log_all_failures", Flag(),
       doc="Log every failed attempt while the server is up (check.attempt_failed), not "
           "only the one that takes it down. Default: global_defs checker_log_all_failures."),
)


def shared_keywords(kind: Kind) -> tuple[Kw, ...]:
    """The keywords every network checker takes, their docs saying this kind's defaults
    (when neither the real nor the virtual server sets them). keepalived 2 reads the old
    nb_get_retry in HTTP_GET and SSL_GET only (check_http.c); anywhere else it is an unknown
    keyword that keepalived drops, so here it is accepted and ignored, saying so."""
    if kind.nb_get_retry:
        nb_get_retry = Kw("nb_get_retry", Int(0, UINT_MAX), field="retry",
                          deprecated="nb_get_retry is deprecated: use 'retry'")
    else:
        nb_get_retry = Kw("nb_get_retry", Int(0, UINT_MAX),
                          ignored=f"nb_get_retry is ignored in {kind.name}: keepalived 2 reads "
                                  f"it only in HTTP_GET and SSL_GET (use 'retry')")
    before_retry = "the delay_loop" if kind.delay_before_retry is None else \
        f"{kind.delay_before_retry:g} s"
    return _refuse(kind, CONNECTION + (
        CONNECT_TIMEOUT,
        Kw("retry", Int(0, UINT_MAX),
           doc=f"Failed attempts in a row before the server is marked down. Default: the "
               f"real server's, else the virtual server's, else {kind.retry}."),
        nb_get_retry,
        Kw("delay_before_retry", Seconds(0, 86400),
           doc=f"Pause between the attempts of one check. Default: the real server's, "
               f"else the virtual server's, else {before_retry}."),
    ) + TIMING)


def _refuse(kind: Kind, keywords: tuple[Kw, ...]) -> tuple[Kw, ...]:
    """The shared keywords, those the kind cannot honour (Kind.refused) turned into errors
    that say why, at their line: silently checking from another source address or without
    the mark would be worse than refusing."""
    if not kind.refused:
        return keywords

    def refuse(args, ctx):
        raise Invalid(kind.refused_why)

    refused = Custom(refuse, "not accepted")
    return tuple(Kw(kw.name, refused, field=kw.field, aliases=kw.aliases,
                    doc=f"Not accepted here: {kind.refused_why}")
                 if kw.name in kind.refused else kw for kw in keywords)


def _finish(kind: Kind):
    if not kind.required and kind.finish is None:
        return None

    def finish(values, ctx):
        required(values, ctx, kind.name, *kind.required)
        if kind.finish is not None:
            kind.finish(values, ctx)

    return finish


def _block(kind: Kind) -> Block:
    own = kind.keywords(Vocabulary) if kind.keywords is not None else ()
    return Block(
        kind.name, kind.model_name,
        header=constant_header(kind=kind.name), header_fields=(("kind", kind.name),),
        finish=_finish(kind), doc=kind.doc,
        keywords=(shared_keywords(kind) if kind.shared else ()) + own,
    )


# Built once: a block's model and its section of the docs go by the block's identity.
BLOCKS: dict[str, Block] = {name: _block(kind) for name, kind in KINDS.items()}


def checker_block(name: str) -> Block:
    return BLOCKS[name]


def checker_keywords() -> tuple[Kw, ...]:
    """The checker blocks as real_server keywords; all collect into ``checkers``."""
    return tuple(Kw(name, BLOCKS[name], field="checkers", repeat="append",
                    unsupported=kind.unsupported, aliases=kind.aliases,
                    extension=kind.extension, doc=kind.doc)
                 for name, kind in KINDS.items())


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
