"""The control socket's protocol, shared by the daemon's server (director/control.py) and the
``director ctl`` client (director/ctl.py): pure, no I/O.

One request a line, a JSON object: ``{"command": "drain", "virtual_server": "...",
"real_server": "..."}``; one reply a line: ``{"ok": true, "result": ...}`` or ``{"ok": false,
"error": "...", "kind": "..."}``. ``events`` with ``follow`` streams: one event a line (and a
keep-alive ``{"keepalive": true}`` on a quiet stream) until the client goes away.

The names of virtual and real servers are the API's (director/names.py):
``192.168.1.11:80/TCP``, ``[2001:db8::1]:443/TCP``, ``fwmark 5/TCP``, ``group NAME/TCP``;
``10.20.40.10:80`` for a real server. An operator may leave out ``/PROTO`` where one server
has that address and port, and write an IPv6 address in any of its forms.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass
from typing import Any, Iterable

SOCKET_NAME = "control.sock"     # in the state directory, unless --control-socket says where
MAX_REQUEST = 16 * 1024          # bytes of one request line (two names: a few hundred)
MAX_CANDIDATES = 20              # names listed in an error about an unknown or ambiguous one

# what the client's exit code says (director ctl --help, README)
EXIT_OK, EXIT_REFUSED, EXIT_USAGE, EXIT_UNREACHABLE = 0, 1, 2, 3

# reply kinds of a failure: "refused" (the daemon would not: an unknown server, a bad
# argument), "bad_request" (the line is not a request), "unavailable" (the daemon did not
# answer in time, or has no room for another client)
REFUSED, BAD_REQUEST, UNAVAILABLE = "refused", "bad_request", "unavailable"

_SERVER = {"virtual_server": str, "real_server": str}
# command -> {argument: type}; an argument of type (T, None) may be null or absent
COMMANDS: dict[str, dict[str, Any]] = {
    "status": {},
    "names": {},
    "events": {"since": (int, None), "limit": (int, None), "follow": (bool, None)},
    "drain": _SERVER,
    "restore": _SERVER,
    "weight": {**_SERVER, "weight": int},
    "reload": {},
    "diff": {"path": (str, None)},
    "dump": {},
}


class ProtocolError(ValueError):
    """A line that is not a request (the reply says why; the connection goes on)."""


def encode(message: Any) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode() + b"\n"


def reply_ok(result: Any) -> dict:
    return {"ok": True, "result": result}


def reply_error(error: str, kind: str = REFUSED) -> dict:
    return {"ok": False, "error": bounded(error), "kind": kind}


def bounded(text: str, limit: int = 1000) -> str:
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} characters)"


def decode_request(line: bytes) -> tuple[str, dict[str, Any]]:
    """(command, arguments) of one request line, or ProtocolError saying what is wrong."""
    if len(line) > MAX_REQUEST:
        raise ProtocolError(f"a request is at most {MAX_REQUEST} bytes, this one has "
                            f"{len(line)}")
    try:
        request = json.loads(line.decode())
    except UnicodeDecodeError:
        raise ProtocolError("a request is UTF-8 text") from None
    except (ValueError, RecursionError):
        raise ProtocolError('a request is one JSON object a line: {"command": NAME, ...}') \
            from None
    if not isinstance(request, dict) or not isinstance(request.get("command"), str):
        raise ProtocolError('a request is a JSON object with a "command": {"command": '
                            'NAME, ...}')
    command = request.pop("command")
    schema = COMMANDS.get(command)
    if schema is None:
        raise ProtocolError(f"unknown command {command[:50]!r}; commands: "
                            + ", ".join(COMMANDS))
    unknown = sorted(set(request) - set(schema))
    if unknown:
        raise ProtocolError(f"{command}: unknown argument(s) "
                            + ", ".join(repr(name[:50]) for name in unknown[:5]))
    for name, wanted in schema.items():
        optional = isinstance(wanted, tuple)
        kind = wanted[0] if optional else wanted
        value = request.get(name)
        if value is None:
            if not optional:
                raise ProtocolError(f"{command}: {name} is required")
            request[name] = None
        # bool is an int to Python, not to an operator who wrote a weight
        elif not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise ProtocolError(f"{command}: {name} must be {kind.__name__}, got "
                                f"{type(value).__name__}")
    return command, request


def decode_reply(line: bytes) -> dict[str, Any]:
    """A reply line, or ProtocolError (the daemon speaks another language: not ours)."""
    try:
        reply = json.loads(line.decode())
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise ProtocolError(f"not a reply: {line[:80]!r}") from None
    if not isinstance(reply, dict):
        raise ProtocolError(f"not a reply: {line[:80]!r}")
    return reply


# === names ======================================================================================

@dataclass(frozen=True)
class ServerName:
    """A name taken apart: ``host`` is a canonical address, ``fwmark N`` or ``group NAME``;
    ``port`` and ``protocol`` None where the name leaves them out."""

    host: str
    port: int | None
    protocol: str | None

    def matches(self, other: ServerName) -> bool:
        """``other`` (a server's full name) is what this (an operator's) names."""
        return (self.host == other.host and self.port == other.port
                and self.protocol in (None, other.protocol))


def _canonical(address: str) -> str:
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        return address


def parse_name(text: str) -> ServerName:
    """``ADDR[:PORT][/PROTO]``, ``[V6][:PORT][/PROTO]``, ``fwmark N[/PROTO]``, ``group
    NAME[/PROTO]``; ValueError for what is none of those."""
    name = " ".join(text.split())
    if not name:
        raise ValueError("an empty name")
    body, slash, protocol = name.rpartition("/")
    if not slash:
        body, protocol = name, None
    elif not protocol or not protocol.isalpha():
        raise ValueError(f"{text!r}: expected /TCP, /UDP or /SCTP after the slash")
    else:
        protocol = protocol.upper()
    keyword, space, rest = body.partition(" ")
    if space:
        if keyword.lower() == "fwmark" and rest.isdecimal():
            return ServerName(f"fwmark {int(rest)}", None, protocol)
        if keyword.lower() == "group" and rest and " " not in rest:
            return ServerName(f"group {rest}", None, protocol)
        raise ValueError(f"{text!r}: expected ADDRESS:PORT, fwmark N or group NAME")
    if body.startswith("["):
        host, bracket, tail = body[1:].partition("]")
        if not bracket or (tail and not tail.startswith(":")):
            raise ValueError(f"{text!r}: expected [IPV6]:PORT")
        port_text = tail[1:] if tail else None
    elif body.count(":") > 1:                    # a bare IPv6 address: no port
        host, port_text = body, None
    else:
        host, colon, port_text = body.partition(":")
        port_text = port_text if colon else None
    if port_text is not None and not (port_text.isdecimal() and int(port_text) < 65536):
        raise ValueError(f"{text!r}: the port must be a number below 65536")
    if not host:
        raise ValueError(f"{text!r}: no address")
    return ServerName(_canonical(host), None if port_text is None else int(port_text),
                      protocol)


class UnknownName(LookupError):
    """An unknown or ambiguous name; the text lists the candidates."""


def _listing(names: list[str]) -> str:
    shown = ", ".join(names[:MAX_CANDIDATES])
    return shown + (f" (and {len(names) - MAX_CANDIDATES} more)"
                    if len(names) > MAX_CANDIDATES else "")


def resolve(text: str, names: Iterable[str], what: str, within: str = "",
            any_port: bool = False) -> str:
    """The one of ``names`` (full names, as the API has them) that ``text`` names; a name
    that leaves out /PROTO, or a real server's port, matches where one server fits.
    UnknownName listing the candidates otherwise. ``what``: "virtual server", "real server";
    ``within``: where the names are (" in 10.0.0.1:80/TCP"), for the error; ``any_port``:
    a name without a port names the one server at that address (real servers)."""
    names = list(names)
    if text in names:
        return text
    try:
        wanted = parse_name(text)
    except ValueError as exc:
        raise UnknownName(f"{what} {exc}{within}") from None
    found = []
    for name in names:
        try:
            full = parse_name(name)
        except ValueError:
            continue
        if wanted.matches(full) or (any_port and wanted.port is None
                                    and wanted.host == full.host and wanted.protocol is None):
            found.append(name)
    if len(found) == 1:
        return found[0]
    if found:
        raise UnknownName(f"{what} {text[:100]!r} is ambiguous{within}: it names "
                          f"{_listing(found)}")
    raise UnknownName(f"no {what} {text[:100]!r}{within}; "
                     + (f"{what}s: {_listing(names)}" if names else f"there is no {what}"))
