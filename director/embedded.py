"""The daemon inside another WSGI server's process (wsgi.py): parsed like the command line,
run in a greenlet, without signal handlers (they belong to the server)."""

from __future__ import annotations

import sys

from . import hub, log
from .cli import parser
from .config import default_config_id, load_config
from .daemon import Director, read_admin_token

START_TIMEOUT = 30.0


def start_director(argv: list[str]) -> tuple[Director, str | None]:
    """Starts the daemon described by ``argv`` (director's flags; --web is ignored) and
    returns it once running, with its admin token. Exits, as the command line does, on a
    configuration with errors."""
    args = parser().parse_args(argv)
    args.web = "off"
    config_id = args.config_id or default_config_id()
    result = load_config(args.use_file, config_id=config_id)
    for diagnostic in result.diagnostics:
        print(diagnostic, file=sys.stderr)
    if not result.ok:
        sys.exit(f"director: {args.use_file}: {len(result.errors)} error(s)")
    log.setup(detail=args.log_detail, console=log.console_wanted(args.log_console),
              facility=args.log_facility)
    try:
        token = read_admin_token(args.admin_token_file)
    except OSError as exc:
        sys.exit(f"director: {exc}")
    director = Director(result.config, args, config_id)
    greenlet = hub.spawn(director.run, False, name="director")
    director.ready.wait(START_TIMEOUT)
    if greenlet.dead or not director.ready.is_set():
        sys.exit("director: the daemon did not start (see the log)")
    return director, token
