"""Command line: keepalived's flags where keepalived has them (see CONTRACT.md).

    director -f keepalived.conf -t          validate; exit 0 valid, 1 errors, 2 unreadable
    director -f keepalived.conf -d          human dump, secrets masked
    director -f keepalived.conf --dump-json the model as JSON
    director genhash -s IP -p PORT -u PATH  keepalived's genhash
    director demo                           the demo (see README)
    director ctl [--state-dir DIR] COMMAND  talk to the running daemon (director/ctl.py)
"""

from __future__ import annotations

import argparse
import os
import sys

from . import DEFAULT_STATE_DIR, __version__
from .config import Unreadable, default_config_id, load_config

DEFAULT_CONFIG = "/etc/keepalived/keepalived.conf"

EXIT_OK, EXIT_ERRORS, EXIT_UNREADABLE = 0, 1, 2


def _columns() -> int:
    """shutil.get_terminal_size().columns, without importing shutil (and the zlib, bz2 and
    lzma it brings: 4 ms of -t, issue 17): $COLUMNS, else the terminal's width, else 80."""
    try:
        columns = int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        columns = 0
    if columns > 0:
        return columns
    try:
        return os.get_terminal_size(sys.__stdout__.fileno()).columns or 80
    except (AttributeError, ValueError, OSError):
        return 80


class _HelpFormatter(argparse.HelpFormatter):
    """argparse's own, given the width it would find itself (argparse makes one for each
    add_argument, and imports shutil for the width)."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, width=_columns() - 2)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="director", formatter_class=_HelpFormatter,
        description="Load-balancer director: VRRP failover, health checks, IPVS; reads "
                    "keepalived.conf. Subcommands: 'director genhash ...', 'director demo', "
                    "'director ctl ...' (director ctl --help).")
    p.add_argument("-f", "--use-file", metavar="FILE", default=DEFAULT_CONFIG,
                   help=f"configuration file (default {DEFAULT_CONFIG})")
    p.add_argument("-t", "--config-test", action="store_true",
                   help="check the configuration, print diagnostics to stderr and exit "
                        "(0 valid, 1 errors, 2 unreadable)")
    p.add_argument("-d", "--dump-conf", action="store_true",
                   help="print the parsed configuration (secrets masked) and exit")
    p.add_argument("--dump-json", action="store_true",
                   help="print the parsed configuration as JSON and exit")
    p.add_argument("-P", "--vrrp", action="store_true", help="run only the VRRP subsystem")
    p.add_argument("-C", "--check", action="store_true",
                   help="run only the health checkers and the load-balancer backend")
    p.add_argument("-n", "--dont-fork", action="store_true",
                   help="accepted for keepalived compatibility; director never forks")
    p.add_argument("-l", "--log-console", action="store_true", help="log to stderr")
    p.add_argument("-D", "--log-detail", action="store_true", help="more detail in the log")
    p.add_argument("-S", "--log-facility", metavar="N", choices=[str(n) for n in range(8)],
                   help="log to syslog as facility LOCAL<N> (0-7); without -l and where "
                        "stderr is not collected (terminal, supervisord, journald) director "
                        "logs to syslog as DAEMON")
    p.add_argument("-p", "--pid", metavar="FILE", help="pid file")
    p.add_argument("-i", "--config-id", metavar="ID",
                   help="the id that @ID lines match (default: short host name)")
    p.add_argument("--web", metavar="HOST:PORT|off", default="127.0.0.1:8080",
                   help="dashboard, JSON API and /metrics address (default 127.0.0.1:8080)")
    p.add_argument("--admin-token-file", metavar="FILE",
                   help="enables the dashboard's admin actions (drain, restore, reload) for "
                        "requests that present the token this file holds; without it the "
                        "web API is read-only")
    p.add_argument("--web-tls-cert", metavar="FILE",
                   help="serve the web face over HTTPS with this PEM certificate (chain)")
    p.add_argument("--web-tls-key", metavar="FILE",
                   help="the PEM private key of --web-tls-cert")
    p.add_argument("--web-insecure", action="store_true",
                   help="allow --admin-token-file on a non-loopback --web address without "
                        "TLS (the token then crosses the network in clear text: a lab only)")
    p.add_argument("--backend", choices=("ipvs", "nftables", "none"),
                   help="how virtual servers reach the kernel (default: ipvs if available)")
    p.add_argument("--drain-timeout", metavar="SECONDS", type=float, default=300.0,
                   help="a drained real server's drain is complete when it has no active "
                        "connection left, or after this long (default 300)")
    p.add_argument("--state-dir", metavar="DIR", default=DEFAULT_STATE_DIR,
                   help="where state that survives a restart is kept")
    p.add_argument("--control-socket", metavar="PATH|off",
                   help="the Unix socket 'director ctl' talks to, root's, mode 0600 "
                        "(default STATE_DIR/control.sock; 'off': none)")
    p.add_argument("--control-socket-group", metavar="GROUP",
                   help="let this group use the control socket too (mode 0660)")
    p.add_argument("-v", "--version", action="version", version=f"director {__version__}")
    return p


def main(argv: list[str] | None = None, keep: list | None = None) -> int:
    """The exit code. ``keep``: a list to put the loaded result in when the command ends
    with the check or a dump (run() then leaves without freeing it)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] == "genhash":
        from .genhash import main as genhash_main
        return genhash_main(argv[1:])
    if argv and argv[0] == "ctl":
        from .ctl import main as ctl_main
        return ctl_main(argv[1:])
    if argv and argv[0] == "demo":
        from .demo import main as demo_main
        return demo_main(argv[1:])
    args = parser().parse_args(argv)
    config_id = args.config_id or default_config_id()
    # -t and the dumps end the process: run() leaves without freeing what was loaded
    leaving = keep is not None and (args.config_test or args.dump_json or args.dump_conf)
    try:
        result = load_config(args.use_file, config_id=config_id,
                             keep=keep if leaving else None)
    except Unreadable as exc:
        print(f"director: cannot read configuration {exc}", file=sys.stderr)
        return EXIT_UNREADABLE
    if keep is not None and (leaving or not result.ok):
        keep.append(result)
    for diagnostic in result.diagnostics:
        print(diagnostic, file=sys.stderr)
    if not result.ok:
        print(f"director: {args.use_file}: {len(result.errors)} error(s), "
              f"{len(result.warnings)} warning(s)", file=sys.stderr)
        return EXIT_ERRORS
    if args.config_test:
        return EXIT_OK
    if args.dump_json:
        import json
        from .config.render import config_json   # with the views: not for a daemon's start
        json.dump(config_json(result.config, config_id), sys.stdout, indent=2)
        sys.stdout.write("\n")
        return EXIT_OK
    if args.dump_conf:
        from .config.render import dump_text
        sys.stdout.write(dump_text(result.config, config_id))
        return EXIT_OK
    return run_daemon(result.config, args, config_id, result.sources)


def run_daemon(config, args, config_id: str, sources=None) -> int:
    from .patching import patch_all
    patch_all()                  # done already, unless __main__ took a "-t" value for -t
    from . import log
    from .daemon import Director, StartupError
    from .pidfile import PidFileBusy
    log.setup(detail=args.log_detail, console=log.console_wanted(args.log_console),
              facility=args.log_facility)
    try:
        return Director(config, args, config_id, sources=sources).run()
    except (PidFileBusy, StartupError) as exc:
        print(f"director: {exc}", file=sys.stderr)
        return EXIT_ERRORS


def run() -> None:
    """Console-script entry point: a closed pipe (director -d | head) is not an error."""
    kept: list = []
    try:
        code = main(keep=kept)
        sys.stdout.flush()
    except BrokenPipeError:
        code = EXIT_OK
    if kept:
        _leave(code)
    sys.exit(code)


def _leave(code: int) -> None:
    """The end of ``-t`` and the dumps: the verdict is printed, the process has nothing left
    to do. Leaving through os._exit skips the interpreter's teardown, which frees one by one
    the model, the tree and the modules (26,000 models and 100,000 statements for 10,000
    real servers: 20-30 ms of ``-t``'s CPU, issue 17). Nothing on these paths registers an
    atexit handler or starts a thread; what is buffered is written first."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (BrokenPipeError, ValueError):   # a closed pipe is not an error (see run)
            pass
    os._exit(code)
