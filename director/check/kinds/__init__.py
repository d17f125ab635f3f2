"""Every health-checker kind, declared in a module of its own here: its block's keywords,
keepalived's defaults for it and how its checker is built (kind.Kind).

The config engine reads the keywords from here (director/config/blocks/checkers.py), base.py
the defaults, the check service builds with ``Kind.build``. Nothing here imports a checker at
import time, so -t parses without loading gevent, ssl or subprocess; each declaration imports
its checker module when the first one is built.

A new kind is its checker module (director/check/<kind>.py), its declaration here and a
line in KINDS below.
"""

from __future__ import annotations

from . import agent, bfd, dns, file, grpc, http, misc, ping, smtp, tcp, udp
from .kind import Kind

# In the order of keepalived's documentation, which docs/KEYWORDS.md follows; director's
# own kinds after keepalived's.
KINDS: dict[str, Kind] = {kind.name: kind
                          for module in (tcp, http, misc, smtp, dns, udp, ping, file, bfd, agent,
                                         grpc)
                          for kind in module.KINDS}


def kind(name: str) -> Kind:
    """The declaration of the kind a parsed block names (its ``kind`` field)."""
    try:
        return KINDS[name]
    except KeyError:
        raise LookupError(f"no checker kind {name}") from None


__all__ = ["KINDS", "Kind", "kind"]
