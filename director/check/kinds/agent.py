"""AGENT_CHECK, a director extension: HAProxy's agent-check. An agent beside the real server
answers a line (``75%``, ``drain``, ``down``...) that sets its weight and state
(director/check/agent.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .kind import Kind

if TYPE_CHECKING:
    from ...config.blocks.checkers import Vocabulary
    from ...config.schema import Kw

MAX_SEND = 1024


def _implementation() -> type:
    from ..agent import AgentCheck  # here, not above: -t reads the keywords without the checker
    return AgentCheck


def _keywords(c: type[Vocabulary]) -> tuple[Kw, ...]:
    def send(args, ctx):
        text = " ".join(str(a) for a in args)
        if not text:
            raise c.Invalid("expects a string")
        if len(text) > MAX_SEND:
            raise c.Invalid(f"is longer than {MAX_SEND} characters")
        return text

    return (
        c.Kw("agent_send", c.Custom(send, "STRING"),
             doc="Sent to the agent once connected (HAProxy's agent-send); \\n, \\r, \\t "
                 "and \\\\ are escapes, so end a line with \\n if the agent waits for one."),
    )


def _inputs(config, real, settings) -> dict:
    """A relative weight (``50%``) is of the real server's configured weight."""
    return {"base_weight": real.weight}


DOC = (
    "HAProxy's agent-check. Each check connects to connect_ip:connect_port (required: "
    "HAProxy's agent-port), sends agent_send if set, and reads one line ended by CR or LF "
    "(at most 1024 bytes) of words separated by spaces, tabs or commas, in any order, the "
    "last of a kind winning, `#` starting a description: `75%` or `weight:75%` (of the "
    "configured weight), `weight:N` (absolute), `drain` (weight 0, connections kept), "
    "`maint` (out of the pool, not a failure), `ready` (ends drain and maint), `down` / "
    "`fail` / `stopped` (a failed check: the real server goes down), `up` (a passed check), "
    "`maxconn:N` (the upper connection threshold; IPVS only). What a reply does not say "
    "stays as last said. The agent's `up` never brings up a server another checker finds "
    "down. An agent that cannot be reached, or a reply without a line end, changes nothing "
    "(HAProxy's rule; counted in director_check_reply_errors_total when a reply cannot be "
    "read). Unknown words are counted and ignored. Default retry 0: `down` acts at once. "
    "/api/v1/state shows the agent's last reply and effect (`agent`).")

# HAProxy's agent: a "down" acts at once (retry 0); connect_port is its agent-port, which
# HAProxy requires too (the real server's own port is the service, not an agent).
KINDS = (Kind("AGENT_CHECK", "AgentCheck", _implementation, _keywords,
              required=("connect_port",), retry=0, inputs=_inputs, extension=True, doc=DOC),)
