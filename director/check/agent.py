"""AGENT_CHECK (a director extension): HAProxy's agent-check. The checker connects to a small
agent beside the real server (connect_ip / connect_port), optionally sends ``agent_send``, and
reads one line that sets the server's weight, administrative state and operational state.

HAProxy's rules (doc/configuration.txt "agent-check", src/tcpcheck.c
tcpcheck_agent_expect_reply, src/server.c server_parse_weight_change_request):

* The reply is the bytes before the first CR or LF. A reply with no line end before the
  connection closes (or a NUL byte before it) is ignored ("incomplete line"): nothing changes.
* The line is words separated by spaces, tabs or commas, case-insensitive, in any order; a
  ``#`` starts a free-text description (shown, never interpreted). When several words of one
  category appear, the last one wins. The categories:
  - operational: ``up``; ``down``, ``fail``, ``stopped`` (all three mark the server down);
  - administrative: ``ready`` (cancels drain and maint), ``drain``, ``maint``;
  - weight: ``75%`` (a word starting with a digit and holding a '%') or ``weight:75%``,
    relative to the configured weight, or ``weight:N``, an absolute weight;
  - ``maxconn:N``.
  A word that is none of those is an error the agent reports; the others still apply.
  A weight or maxconn value that does not parse is ignored, with its reason.
* What the agent does not say does not change: the state is sticky across replies (an agent
  that only reports a weight never touches up/down, and only the agent undoes its ``drain``).
* Failing to reach the agent is not a failure: connectivity is the other checkers' business.
  The server keeps what the agent said last (the connection error is shown, and counted).

How director maps them (docs/KEYWORDS.md, AGENT_CHECK):

* ``down`` / ``fail`` / ``stopped``: a failed check, so the real server goes down as when any
  checker fails (notify_down, the pool rules, inhibit_on_failure); ``up`` is a passed check.
  The agent's ``up`` cannot bring up a server another checker finds down (a real server is up
  only while all its checkers are, keepalived's rule, which is HAProxy's here too). The
  kind's default retry is 0, so ``down`` acts at the first reply, as in HAProxy; rise applies.
* the weight: the real server's weight in the pool (the path misc_dynamic and FILE_CHECK
  use). Relative weights are of the configured weight (HAProxy: "as configured when HAProxy
  starts"; here, of the configuration in force), rounded down as HAProxy does (50 % of the
  default weight 1 is 0). HAProxy's range is 0-256 (percentages capped at 25600 %); here a
  weight is IPVS's, up to 2^31 - 1. With a MISC_CHECK misc_dynamic or a FILE_CHECK on the
  same real server, the first of its checkers that asks a weight sets it.
* ``drain``: weight 0, the server stays in its pool so established connections go on (the
  dashboard's drain; independent of it: an operator's drain is kept when the agent says
  ``ready``). ``maint``: out of the pool (no new connections at all), not counted in the
  quorum's live weight; it is not a failure (no notify_down). ``ready`` clears both.
* ``maxconn:N``: the destination's upper connection threshold (IPVS's uthreshold; 0: none).
  nftables has no such threshold and ignores it.
"""

from __future__ import annotations

import logging
import socket
import time
from dataclasses import dataclass, field, replace
from typing import Any

from ..log import event
from .checker import CheckResult, Target
from .sockets import open_socket

log = logging.getLogger("director.check")

MAX_LINE = 1024              # bytes read waiting for the line end, at most
MAX_WEIGHT = (1 << 31) - 1   # the configuration's (and IPVS's) largest weight
MAX_PERCENT = 25600          # HAProxy's cap on a relative weight
SEPARATORS = " \t,"
HEALTH_WORDS = ("up", "down", "fail", "stopped")
ADMIN_WORDS = ("ready", "drain", "maint")
SHOWN = 120                  # characters of a reply kept for the API and the log


@dataclass(frozen=True, slots=True)
class Weight:
    """A weight the agent asked for: ``value`` percent of the configured weight when
    ``relative``, else an absolute weight."""

    value: int
    relative: bool

    def of(self, configured: int) -> int:
        if not self.relative:
            return self.value
        return min(MAX_WEIGHT, configured * min(self.value, MAX_PERCENT) // 100)

    def __str__(self) -> str:
        return f"{self.value}%" if self.relative else str(self.value)


@dataclass(frozen=True, slots=True)
class AgentReply:
    """One line from the agent, parsed: each category the agent named (None: not named)."""

    health: str | None = None          # up, down, fail, stopped
    admin: str | None = None           # ready, drain, maint
    weight: Weight | None = None
    maxconn: int | None = None
    description: str = ""
    unknown: tuple[str, ...] = ()      # words that are none of the above
    invalid: tuple[str, ...] = ()      # weight / maxconn values that did not parse, with why


class Unreadable(ValueError):
    """No line could be read from the reply; ``reason`` is the counted label."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


def _strtol(text: str) -> tuple[int | None, str]:
    """C's strtol(text, &end, 10): (the number or None without digits, what follows)."""
    rest = text.lstrip(" \t\n\v\f\r")
    sign = ""
    if rest[:1] in ("+", "-"):
        sign, rest = rest[:1], rest[1:]
    end = 0
    while end < len(rest) and rest[end] in "0123456789":
        end += 1
    if not end:
        return None, text
    return int(sign + rest[:end]), rest[end:]


def parse_weight(text: str) -> Weight:
    """HAProxy's server_parse_weight_change_request: ``N%`` relative (capped), ``N`` absolute
    in 0..MAX_WEIGHT. Raises ValueError saying why."""
    if not text:
        raise ValueError("empty weight")
    number, rest = _strtol(text)
    if number is None:
        raise ValueError("weight without digits")
    if rest == "%":
        if number < 0:
            raise ValueError("relative weight must be positive")
        return Weight(min(number, MAX_PERCENT), True)
    if number < 0 or number > MAX_WEIGHT:
        raise ValueError(f"absolute weight must be between 0 and {MAX_WEIGHT}")
    if rest:
        raise ValueError("trailing garbage in weight")
    return Weight(number, False)


def parse_maxconn(text: str) -> int:
    number, rest = _strtol(text)
    if number is None:
        raise ValueError("maxconn without digits")
    if rest:
        raise ValueError("trailing garbage in maxconn")
    if number < 0 or number > 1 << 31:
        raise ValueError("maxconn out of range")
    return number


def take_line(data: bytes) -> str | None:
    """The line of a reply read so far: the bytes before the first CR or LF, as text; None
    while it has no line end yet. Raises Unreadable for a NUL before the line end (HAProxy
    stops there too and ignores the reply)."""
    for index, byte in enumerate(data):
        if byte in (0x0A, 0x0D):
            return data[:index].decode("latin-1")
        if byte == 0:
            raise Unreadable("NUL byte in the reply", "nul")
    return None


def parse_line(line: str) -> AgentReply:
    """The words of one line (without its line end), as tcpcheck_agent_expect_reply reads
    them. Never raises: what it cannot read is listed in ``unknown`` / ``invalid``."""
    health = admin = None
    weight: Weight | None = None
    maxconn: int | None = None
    unknown: list[str] = []
    invalid: list[str] = []
    description = ""
    position, length = 0, len(line)
    while position < length:
        char = line[position]
        if char in SEPARATORS:
            position += 1
            continue
        if char == "#":
            description = line[position + 1:].lstrip(" \t")
            break
        end = position + 1
        while end < length and line[end] not in SEPARATORS:
            end += 1
        word, lowered = line[position:end], line[position:end].lower()
        position = end
        if lowered in HEALTH_WORDS:
            health = lowered
        elif lowered in ADMIN_WORDS:
            admin = lowered
        elif word[:1].isdecimal() and "%" in word or lowered.startswith("weight:"):
            value = word[7:] if lowered.startswith("weight:") else word
            try:
                weight = parse_weight(value)
            except ValueError as exc:
                invalid.append(f"{word[:40]}: {exc}")
        elif lowered.startswith("maxconn:"):
            try:
                maxconn = parse_maxconn(word[8:])
            except ValueError as exc:
                invalid.append(f"{word[:40]}: {exc}")
        else:
            unknown.append(word[:40])
    return AgentReply(health, admin, weight, maxconn, description[:SHOWN], tuple(unknown),
                      tuple(invalid))


def parse_reply(data: bytes) -> tuple[str, AgentReply]:
    """A whole reply (what was read until the line end or the connection closed): its line
    and what it says. Raises Unreadable when it holds no complete line."""
    line = take_line(data[:MAX_LINE + 1])
    if line is None:
        if len(data) > MAX_LINE:
            raise Unreadable(f"no line end in {MAX_LINE} bytes", "too_long")
        raise Unreadable("incomplete line (no CR or LF before the end)", "incomplete")
    return line, parse_line(line)


@dataclass(frozen=True, slots=True)
class AgentState:
    """What the agent has said so far, each category as last said (sticky), and its effect.
    Equality is the effect alone: a change of it wakes the load balancer."""

    health: str = "up"
    admin: str = "ready"
    weight: Weight | None = None       # None: the configured weight
    maxconn: int | None = None         # None: the configured uthreshold
    # what is shown, not acted on
    reply: str = field(default="", compare=False)          # the last line read
    description: str = field(default="", compare=False)
    error: str = field(default="", compare=False)          # the last attempt's problem, if any
    replies: int = field(default=0, compare=False)         # lines read since start
    ignored: int = field(default=0, compare=False)         # attempts that changed nothing

    @property
    def up(self) -> bool:
        return self.health == "up"

    def apply(self, reply: AgentReply, line: str) -> AgentState:
        """HAProxy's order: what the reply names replaces what was; the rest stays."""
        problems = [f"unknown word '{word}'" for word in reply.unknown] + list(reply.invalid)
        return replace(
            self,
            health=reply.health or self.health,
            admin=reply.admin or self.admin,
            weight=reply.weight if reply.weight is not None else self.weight,
            maxconn=reply.maxconn if reply.maxconn is not None else self.maxconn,
            reply=line[:SHOWN], description=reply.description,
            error="; ".join(problems)[:SHOWN], replies=self.replies + 1)

    def failed(self, error: str) -> AgentState:
        return replace(self, error=error[:SHOWN], ignored=self.ignored + 1)

    def effect(self, configured_weight: int) -> str:
        """In a few words, for the log and the dashboard: ``up 50% (5) drain``."""
        words = [self.health]
        if self.weight is not None:
            words.append(f"{self.weight} ({self.weight.of(configured_weight)})"
                         if self.weight.relative else f"weight {self.weight}")
        if self.admin != "ready":
            words.append(self.admin)
        if self.maxconn is not None:
            words.append(f"maxconn {self.maxconn}")
        return " ".join(words)

    def as_json(self, configured_weight: int) -> dict[str, Any]:
        return {"health": self.health, "admin": self.admin,
                "weight": None if self.weight is None else self.weight.of(configured_weight),
                "weight_asked": None if self.weight is None else str(self.weight),
                "maxconn": self.maxconn, "reply": self.reply,
                "description": self.description, "error": self.error or None,
                "effect": self.effect(configured_weight)}


def agent_send(value: str) -> bytes:
    """``agent_send``'s text as the bytes sent: \\n, \\r, \\t and \\\\ are the escapes
    (HAProxy sends its string verbatim; a configuration string here has no other way to
    end a line)."""
    out, index = [], 0
    while index < len(value):
        char = value[index]
        if char == "\\" and index + 1 < len(value):
            escaped = {"n": "\n", "r": "\r", "t": "\t", "\\": "\\"}.get(value[index + 1])
            if escaped is not None:
                out.append(escaped)
                index += 2
                continue
        out.append(char)
        index += 1
    return "".join(out).encode("utf-8")


class AgentCheck:
    kind = "AGENT_CHECK"

    def __init__(self, config: Any, target: Target, base_weight: int = 1) -> None:
        self.config = config
        self.target = target
        self.base_weight = base_weight
        text = getattr(config, "agent_send", None)
        self.send = agent_send(text) if text else b""
        self.state = AgentState()

    @property
    def hard_deadline(self) -> float:
        """The connect and the reply each get the whole connect_timeout."""
        return 2 * self.target.connect_timeout + 1.0

    def inherit(self, before: Any) -> None:
        """A reload that changed this real server: what its agent said is kept (only the
        agent undoes its drain or down)."""
        state = getattr(before, "state", None)
        if isinstance(state, AgentState):
            self.state = state

    def check(self) -> CheckResult:
        started = time.monotonic()
        reply_error = None
        try:
            line, reply = parse_reply(self.converse())
        except Unreadable as exc:
            self.state = self.state.failed(f"reply ignored: {exc}")
            reply_error = exc.reason
        except OSError as exc:
            self.state = self.state.failed(str(exc))
        else:
            before = self.state
            self.state = before.apply(reply, line)
            if reply.unknown or reply.invalid:
                reply_error = "unknown_word" if reply.unknown else "bad_value"
            if self.state != before:
                event(log, "check.agent", virtual_server=self.target.virtual_server,
                      real_server=self.target.real_server, reply=self.state.reply,
                      effect=self.state.effect(self.base_weight))
        return self.result(time.monotonic() - started, reply_error)

    def result(self, duration: float, reply_error: str | None = None) -> CheckResult:
        state = self.state
        weight = None if state.weight is None else state.weight.of(self.base_weight)
        error = None if state.up else (
            f"agent says {state.health}" + (f": {state.description}" if state.description
                                             else ""))
        return CheckResult(state.up, duration, error, weight=weight, agent=state,
                           reply_error=reply_error)

    def converse(self) -> bytes:
        """Connect, send agent_send, read until a line end, MAX_LINE bytes or the close.
        Raises OSError (with a message for the dashboard) when the agent cannot be reached
        or does not answer in time."""
        target = self.target
        timeout = target.connect_timeout
        if not target.port:
            raise OSError("no port to check (set connect_port)")
        try:
            sock = open_socket(target, socket.SOCK_STREAM)
        except OSError as exc:
            raise OSError(f"socket: {exc.strerror or exc}") from None
        with sock:
            sock.settimeout(timeout)
            try:
                sock.connect((target.host, target.port))
                if self.send:
                    sock.sendall(self.send)
            except TimeoutError:
                raise OSError(f"agent: timeout after {timeout:g} s connecting") from None
            except OSError as exc:
                raise OSError(f"agent: {exc.strerror or exc}") from None
            data = b""
            deadline = time.monotonic() + timeout
            while len(data) <= MAX_LINE:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise OSError(f"agent: no reply line within {timeout:g} s")
                sock.settimeout(left)
                try:
                    chunk = sock.recv(MAX_LINE + 1 - len(data))
                except TimeoutError:
                    raise OSError(f"agent: no reply line within {timeout:g} s") from None
                except OSError as exc:
                    raise OSError(f"agent: {exc.strerror or exc} reading the reply") from None
                if not chunk:
                    break
                data += chunk
                if b"\n" in chunk or b"\r" in chunk or b"\0" in chunk:
                    break
            return data
