"""``director ctl`` and ``directorctl``: the terminal operator's way into a running daemon,
over its control socket (director/control.py speaks the other end; director/ctlproto.py is
the protocol).

    director ctl [--state-dir DIR | --socket PATH] [--json] COMMAND ...

Plain sockets, no gevent: the client blocks, as a command line may.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import socket
import sys
from typing import Any, Callable

from . import DEFAULT_STATE_DIR
from .ctlproto import (EXIT_OK, EXIT_REFUSED, EXIT_UNREACHABLE, UNAVAILABLE,
                       SOCKET_NAME, ProtocolError, decode_reply, encode)
from .ctlrender import event_line, result_text, status_text

TIMEOUT = 40.0          # seconds to wait for a reply: the daemon's own limit is 30 (daemon.py)
COMMANDS = ("status", "events", "drain", "restore", "weight", "reload", "diff", "dump",
            "completion")

EPILOG = """exit codes:
  0  done
  1  the daemon refused (an unknown or ambiguous server, a bad argument, a failed reload,
     a diff whose file a reload would refuse)
  2  usage (this command line is wrong)
  3  the daemon cannot be reached (no socket, permission denied, not answering)

servers are named as the API names them: ADDR:PORT (/TCP, /UDP or /SCTP where two
share it), [V6ADDR]:PORT, fwmark N, group NAME; a real server ADDR:PORT, or ADDR alone
where one has it. e.g.
  director ctl --state-dir /var/lib/director weight 192.168.1.11:80 10.20.40.10:80 7
"""


class Unreachable(Exception):
    """The daemon cannot be reached: the text says why, with the path."""


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="director ctl", epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Talk to the running director daemon over its control socket "
                    "(root's: 0600).")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--state-dir", metavar="DIR", default=DEFAULT_STATE_DIR,
                       help=f"the daemon's --state-dir (default {DEFAULT_STATE_DIR}); the "
                            f"socket is DIR/{SOCKET_NAME}")
    where.add_argument("--socket", metavar="PATH",
                       help="the daemon's --control-socket, where it is not in the state dir")
    p.add_argument("--json", action="store_true",
                   help="print the daemon's replies as JSON, one a line (for scripts)")
    p.add_argument("--timeout", metavar="SECONDS", type=float, default=TIMEOUT,
                   help=f"wait this long for a reply (default {TIMEOUT:g})")
    commands = p.add_subparsers(dest="command", metavar="COMMAND", required=True)
    commands.add_parser("status", help="VRRP roles and pools, as ipvsadm -Ln's tables")
    events = commands.add_parser("events", help="recent events; --follow streams them")
    events.add_argument("-f", "--follow", action="store_true",
                        help="then every new one until ^C")
    events.add_argument("--since", metavar="ID", type=int, help="only events after ID")
    events.add_argument("-n", "--limit", metavar="N", type=int,
                        help="at most the last N (default 100)")
    for name, what in (("drain", "weight 0 until restored (survives a restart)"),
                       ("restore", "undo a drain")):
        command = commands.add_parser(name, help=f"{what}: VS RS")
        command.add_argument("virtual_server", metavar="VS")
        command.add_argument("real_server", metavar="RS")
    weight = commands.add_parser("weight", help="a runtime weight, until the next reload: "
                                                "VS RS N")
    weight.add_argument("virtual_server", metavar="VS")
    weight.add_argument("real_server", metavar="RS")
    weight.add_argument("weight", metavar="N", type=int)
    commands.add_parser("reload", help="read the configuration again (as SIGHUP)")
    diff = commands.add_parser("diff", help="what a reload would change, changing nothing")
    diff.add_argument("path", metavar="FILE", nargs="?",
                      help="a configuration file to compare with (default: the daemon's)")
    commands.add_parser("dump", help="the state as SIGUSR1 writes it (JSON)")
    completion = commands.add_parser("completion", help="print a shell completion script: "
                                                        "eval \"$(director ctl completion "
                                                        "bash)\"")
    completion.add_argument("shell", choices=("bash",))
    return p


def socket_path(args: argparse.Namespace) -> str:
    return args.socket or os.path.join(args.state_dir, SOCKET_NAME)


class Client:
    """One connection to the control socket; ``request`` sends a line and reads one."""

    def __init__(self, path: str, timeout: float = TIMEOUT) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        try:
            self.sock.connect(path)
        except FileNotFoundError:
            self.close()
            raise Unreachable(f"no control socket at {path}: is the daemon running, with "
                              "this --state-dir (or --control-socket)?") from None
        except PermissionError:
            self.close()
            raise Unreachable(f"permission denied on {path}: the control socket is root's "
                              "(run as root, or ask for --control-socket-group)") from None
        except ConnectionRefusedError:
            self.close()
            raise Unreachable(f"nobody answers on {path}: the daemon is not running "
                              "(a crashed daemon's socket)") from None
        except OSError as exc:
            self.close()
            raise Unreachable(f"cannot connect to {path}: {exc.strerror or exc}") from None
        self.reader = self.sock.makefile("rb")

    def request(self, command: str, **arguments: Any) -> dict:
        try:
            self.sock.sendall(encode({"command": command, **arguments}))
        except OSError as exc:
            raise Unreachable(f"{self.path}: the daemon closed the connection ({exc})") \
                from None
        return self.read()

    def read(self, timeout: float | None = None) -> dict:
        if timeout is not None:
            self.sock.settimeout(timeout)
        try:
            line = self.reader.readline()
        except TimeoutError:
            raise Unreachable(f"{self.path}: no reply in time") from None
        except OSError as exc:
            raise Unreachable(f"{self.path}: {exc}") from None
        if not line:
            raise Unreachable(f"{self.path}: the daemon closed the connection")
        return decode_reply(line)

    def close(self) -> None:
        if hasattr(self, "reader"):
            self.reader.close()
        self.sock.close()


def _print(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def _failed(reply: dict) -> int:
    print(f"director ctl: {reply.get('error', 'the daemon refused')}", file=sys.stderr)
    return EXIT_UNREACHABLE if reply.get("kind") == UNAVAILABLE else EXIT_REFUSED


def run_command(args: argparse.Namespace, client: Client) -> int:
    command = args.command
    arguments: dict[str, Any] = {}
    if command in ("drain", "restore", "weight"):
        arguments = {"virtual_server": args.virtual_server, "real_server": args.real_server}
        if command == "weight":
            arguments["weight"] = args.weight
    elif command == "events":
        arguments = {"since": args.since, "limit": args.limit, "follow": args.follow}
    elif command == "diff":
        arguments = {"path": os.path.abspath(args.path) if args.path else None}
    reply = client.request(command, **arguments)
    if args.json:
        _print(json.dumps(reply) + "\n")
    if not reply.get("ok"):
        return _failed(reply)
    result = reply.get("result")
    if not args.json:
        _print(status_text(result) if command == "status" else result_text(command, result))
    if command == "events" and args.follow:
        return follow(args, client)
    if command == "reload" and isinstance(result, dict) and result.get("result") == "failure":
        return EXIT_REFUSED
    if command == "diff" and isinstance(result, dict) and result.get("would_apply") is False:
        return EXIT_REFUSED                 # `ctl diff && ctl reload` stops here
    return EXIT_OK


def follow(args: argparse.Namespace, client: Client) -> int:
    """Each event as it comes, until ^C (exit 0) or the daemon ends the stream."""
    try:
        while True:
            message = client.read(timeout=None if args.timeout <= 0 else
                                  max(args.timeout, 30.0))
            if message.get("keepalive"):
                continue
            if "event" in message:
                _print(json.dumps(message["event"]) + "\n" if args.json
                       else event_line(message["event"]) + "\n")
                continue
            if args.json:
                _print(json.dumps(message) + "\n")
            return _failed(message) if not message.get("ok") else EXIT_OK
    except KeyboardInterrupt:
        return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["__complete"]:          # the completion script's helper (hidden)
        return print_completions(argv[1:])
    try:
        args = parser().parse_args(argv)
    except SystemExit as exc:               # argparse: 2 for usage, 0 for --help
        return int(exc.code or 0)
    if args.command == "completion":
        _print(BASH_COMPLETION)
        return EXIT_OK
    try:
        client = Client(socket_path(args), args.timeout)
    except Unreachable as exc:
        print(f"director ctl: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    try:
        return run_command(args, client)
    except Unreachable as exc:
        print(f"director ctl: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    except ProtocolError as exc:
        print(f"director ctl: {socket_path(args)} does not speak director's protocol: {exc}",
              file=sys.stderr)
        return EXIT_UNREACHABLE
    finally:
        client.close()


def run() -> None:
    """The ``directorctl`` console script: a closed pipe (| head) is not an error."""
    try:
        code = main()
        sys.stdout.flush()
    except BrokenPipeError:
        code = EXIT_OK
    except KeyboardInterrupt:
        code = EXIT_OK
    sys.exit(code)


# === shell completion ===========================================================================

BASH_COMPLETION = r"""# bash completion: eval "$(director ctl completion bash)"
_director_ctl() {
    local IFS=$'\n' program=${COMP_WORDS[0]} ctl=()
    [[ ${program##*/} == directorctl* ]] || ctl=(ctl)
    COMPREPLY=($("$program" "${ctl[@]}" __complete "${COMP_LINE:0:COMP_POINT}" \
                 "$COMP_WORDBREAKS" 2>/dev/null))
}
complete -o default -F _director_ctl directorctl director
"""

OPTIONS_WITH_VALUE = ("--state-dir", "--socket", "--timeout")


def completions(line: str, names: Callable[[list[str]], dict[str, list[str]]],
                wordbreaks: str = ":=") -> list[str]:
    """What completes the last word of ``line`` (a command line up to the cursor): a
    command, then for drain/restore/weight a virtual server and a real server (``names``,
    given the global options typed so far, asks the daemon). Names come shell-quoted and,
    as bash splits the word at ``wordbreaks`` (':'), without the part before the last one."""
    try:
        words = shlex.split(line)
    except ValueError:                       # an open quote: complete what is in it
        words = shlex.split(line + '"') if '"' in line else shlex.split(line + "'")
    if line and not line[-1].isspace() and words:
        current = words.pop()
    else:
        current = ""
    program = os.path.basename(words[0]) if words else ""
    words = words[1:]
    if program.startswith("directorctl"):
        pass
    elif words[:1] == ["ctl"]:
        words = words[1:]
    elif not words:                          # `director ` itself
        return [word for word in ("ctl", "genhash", "demo") if word.startswith(current)]
    else:
        return []                            # `director -f ...`: the shell's files
    options: list[str] = []
    positional: list[str] = []
    skip = False
    for index, word in enumerate(words):
        if skip:
            skip = False
            continue
        if word in OPTIONS_WITH_VALUE:
            options += words[index:index + 2]
            skip = True
        elif word.startswith("-"):
            options.append(word)
        else:
            positional.append(word)
    if skip:                                 # the value of --state-dir etc.: the shell's
        return []
    if not positional:
        candidates = list(COMMANDS) if not current.startswith("-") else \
            ["--state-dir", "--socket", "--json", "--timeout"]
    elif positional[0] in ("drain", "restore", "weight") and len(positional) <= 2:
        try:
            known = names(options)
        except (Unreachable, ProtocolError, OSError):
            return []
        candidates = list(known) if len(positional) == 1 else known.get(
            _virtual_named(positional[1], known), [])
    elif positional[0] == "completion" and len(positional) == 1:
        candidates = ["bash"]
    else:
        return []
    matching = [name for name in candidates if name.startswith(current)]
    cut = max((current.rfind(c) for c in wordbreaks if c in current), default=-1)
    return [shlex.quote(name)[cut + 1:] if " " in name else name[cut + 1:]
            for name in matching]


def _virtual_named(text: str, known: dict[str, list[str]]) -> str:
    from .ctlproto import UnknownName, resolve
    try:
        return resolve(text, known, "virtual server")
    except UnknownName:
        return ""


def _names_from_daemon(options: list[str]) -> dict[str, list[str]]:
    args = parser().parse_args([*options, "status"])
    client = Client(socket_path(args), timeout=3.0)
    try:
        reply = client.request("names")
    finally:
        client.close()
    return reply.get("result") or {} if reply.get("ok") else {}


def print_completions(argv: list[str]) -> int:
    line = argv[0] if argv else ""
    wordbreaks = argv[1] if len(argv) > 1 else ":="
    try:
        found = completions(line, _names_from_daemon, wordbreaks)
    except SystemExit:                       # options argparse refuses: nothing to offer
        found = []
    _print("".join(f"{name}\n" for name in found))
    return EXIT_OK


if __name__ == "__main__":            # python -m director.ctl: directorctl without pip install
    run()
