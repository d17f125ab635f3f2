"""MISC_CHECK: run a script; its exit code is the server's health (and, with misc_dynamic,
its weight).

keepalived's rules (keepalived/check/check_misc.c, keepalived/core/notify.c):

* exit 0 is success; any other exit code is a failure, except that with ``misc_dynamic``
  an exit code from 2 to 255 is a success that sets the real server's weight to
  ``code - 2`` (0 to 253). Exit 1 is always a failure. Exit 0 under ``misc_dynamic``
  puts the configured weight back, and so does a failure: here ``CheckResult.weight`` is
  None in both cases, meaning "the real server's configured weight".
* the script runs in a process group of its own; at ``misc_timeout`` (default: the
  virtual server's ``delay_loop``) the whole group gets SIGTERM, then SIGKILL if the script
  is still alive (keepalived waits 2 s; here ``kill_grace``, 0.5 s by default so that the
  attempt ends inside the scheduler's hard deadline); a script that died of that SIGTERM
  has its group SIGKILLed too, so no child survives. A timeout is a failure.
* a script killed by any other signal is a failure.
* the script runs as the checker's ``user`` (``USER [GROUP]``), else the global
  ``script_user``, with the user's primary group unless a group is named and no
  supplementary groups unless the group is written ``:GROUP`` (or just ``:``);
  IFS, LD_PRELOAD and LD_LIBRARY_PATH are removed from its environment; stdin, stdout and
  stderr are /dev/null.

Where director differs, on purpose: keepalived drops a MISC_CHECK whose script is missing or
not executable when it loads the configuration (and a script that fails to exec later
exits 0, a success); here every attempt runs the script, and one that cannot be run is a
failed attempt saying why ("cannot run: ..."); a script refused by
``enable_script_security`` (director/scriptsec.py) is a failed attempt too ("refused: ...").
The user is the block's ``user``, else ``script_user``, else ``keepalived_script`` if it
exists, else the daemon's own user. The default timeout is
``delay_loop`` when the caller passes it, else ``target.connect_timeout``. The command line
is split shell-style (shlex) and run without a shell.
"""

from __future__ import annotations

import grp
import os
import pwd
import shlex
import signal
import subprocess
import time
from typing import Any

from ..scriptsec import default_user, refusal
from .checker import CheckResult, Target

DYNAMIC_OFFSET = 2           # misc_dynamic: weight = exit code - 2
KILL_GRACE = 0.5             # SIGTERM -> SIGKILL (keepalived: 2 s)
REAP_TIMEOUT = 5.0           # after SIGKILL, how long to wait for the script to be reaped
SCRUBBED_ENV = ("IFS", "LD_PRELOAD", "LD_LIBRARY_PATH")


def exit_result(code: int, dynamic: bool, duration: float = 0.0) -> CheckResult:
    """The result of a script that ended with ``code`` (Popen.returncode: negative for a
    signal)."""
    detail = {"exit": code}
    if code == 0:
        return CheckResult(True, duration, detail=detail)
    if code < 0:
        return CheckResult(False, duration, f"killed by signal {-code}", detail=detail)
    if dynamic and DYNAMIC_OFFSET <= code <= 255:
        return CheckResult(True, duration, weight=code - DYNAMIC_OFFSET, detail=detail)
    return CheckResult(False, duration, f"exit {code}", detail=detail)


def run_as(spec: str | None) -> dict[str, Any]:
    """Popen keywords (user, group, extra_groups) for ``USER [GROUP]``, keepalived-style: the
    user's primary group unless GROUP is given, supplementary groups cleared unless GROUP is
    ``:NAME`` or ``:``. Raises KeyError for an unknown user or group."""
    words = (spec or "").split()
    if not words:
        return {}
    if len(words) > 2:
        raise ValueError(f"expects USER [GROUP], got '{spec}'")
    name, group = words[0], words[1] if len(words) > 1 else None
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise KeyError(f"script user '{name}' does not exist") from None
    gid = entry.pw_gid
    supplementary = False
    if group is not None and group.startswith(":"):
        supplementary, group = True, group[1:] or None
    if group is not None:
        try:
            gid = grp.getgrnam(group).gr_gid
        except KeyError:
            raise KeyError(f"script group '{group}' does not exist") from None
    extra = os.getgrouplist(name, entry.pw_gid) if supplementary else []
    if os.geteuid() != 0:
        if (entry.pw_uid, gid) == (os.geteuid(), os.getegid()) and not supplementary:
            return {}                # already that user: nothing to change (nor could we)
        return {"user": entry.pw_uid, "group": gid}
    return {"user": entry.pw_uid, "group": gid, "extra_groups": extra}


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


class MiscCheck:
    kind = "MISC_CHECK"

    def __init__(self, config: Any, target: Target, script_user: str | None = None,
                 delay_loop: float | None = None, kill_grace: float = KILL_GRACE,
                 script_security: bool = False) -> None:
        self.config = config
        self.target = target
        self.script_user = getattr(config, "user", None) or default_user(script_user)
        self.script_security = script_security
        self.kill_grace = kill_grace
        # misc_timeout 0 is keepalived's "not set" too
        self.timeout = (getattr(config, "misc_timeout", None) or delay_loop
                        or target.connect_timeout)
        self.dynamic = bool(getattr(config, "misc_dynamic", False))

    @property
    def hard_deadline(self) -> float:
        """The longest an attempt can take: the timeout, the grace, a little reaping."""
        return self.timeout + self.kill_grace + 0.5

    def check(self) -> CheckResult:
        started = time.monotonic()

        def failed(error: str) -> CheckResult:
            return CheckResult(False, time.monotonic() - started, error)

        command = self.config.misc_path
        try:
            argv = shlex.split(command.line)
        except ValueError as exc:
            return failed(f"cannot run: cannot split the command: {exc}")
        if not argv:
            return failed("cannot run: empty command")
        refused = refusal(command.line, self.script_user, self.script_security)
        if refused:
            return failed(f"refused: {refused}")
        try:
            ids = run_as(self.script_user)
        except (KeyError, ValueError) as exc:
            return failed(f"cannot run: {exc.args[0]}")
        env = {k: v for k, v in os.environ.items() if k not in SCRUBBED_ENV}
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL, close_fds=True,
                                    start_new_session=True, env=env, **ids)
        except (OSError, ValueError, subprocess.SubprocessError) as exc:
            return failed(f"cannot run: {exc}")
        try:
            try:
                code = proc.wait(self.timeout)
            except subprocess.TimeoutExpired:
                self._stop(proc)
                return CheckResult(False, time.monotonic() - started,
                                   f"timed out after {self.timeout:g} s",
                                   detail={"exit": proc.returncode})
        finally:
            if proc.returncode is None:          # interrupted (killed by the scheduler)
                _signal_group(proc.pid, signal.SIGKILL)
                try:
                    proc.wait(REAP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    pass
        return exit_result(code, self.dynamic, time.monotonic() - started)

    def _stop(self, proc: subprocess.Popen) -> None:
        """SIGTERM the script's group, SIGKILL it after the grace; the group is signalled
        while its leader is unreaped, or after, while members keep the group id alive."""
        _signal_group(proc.pid, signal.SIGTERM)
        try:
            proc.wait(self.kill_grace)
        except subprocess.TimeoutExpired:
            pass
        _signal_group(proc.pid, signal.SIGKILL)  # the leader, or children that outlived it
        try:
            proc.wait(REAP_TIMEOUT)
        except subprocess.TimeoutExpired:
            pass
