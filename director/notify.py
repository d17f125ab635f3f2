"""Notification scripts (notify_master, notify, quorum_up, notify_up, ...): each runs in a
greenlet of its own, without a shell, as ``script_user``, killed at its timeout, so that a
failing or hanging script never stalls the engine that asked for it. The notify FIFOs'
lines go through the same object (``fifos``: director/notify_fifo.py)."""

from __future__ import annotations

import logging
import os
import shlex
import signal
import subprocess
from typing import Any

from . import hub
from .log import event
from .notify_fifo import NotifyFifos
from .scriptsec import default_user, identity, refusal, split_user  # noqa: F401 (tracking)

log = logging.getLogger("director.notify")

DEFAULT_TIMEOUT = 10.0


class Notifier:
    def __init__(self, script_user: str | None = None,
                 timeout: float = DEFAULT_TIMEOUT, script_security: bool = False,
                 supplementary_groups: bool = False) -> None:
        self.configure(script_user, script_security, supplementary_groups)
        self.timeout = timeout
        self.results: dict[str, int] = {}        # ok, failed, timeout, error, refused -> n
        self.running: set[hub.Greenlet] = set()
        self.listeners: list = []                 # called with (why, result) after each run
        self.fifos = NotifyFifos()                # the notify FIFOs' lines go through here

    def configure(self, script_user: str | None, script_security: bool = False,
                  supplementary_groups: bool = False) -> None:
        """global_defs script_user, enable_script_security and set_supplementary_groups (at
        start and on each reload), for the scripts run from now on."""
        self.user, self.group = split_user(default_user(script_user))
        self.security = script_security
        self.supplementary_groups = supplementary_groups

    def notify(self, command: Any, extra: tuple[str, ...] = (), why: str = "",
               timeout: float | None = None) -> hub.Greenlet:
        """Start ``command`` (a config Command) with ``extra`` arguments; returns at once.
        The greenlet's value is the result (ok, failed, timeout, error, refused)."""
        greenlet = hub.spawn(self._run, command, extra, why, timeout or self.timeout,
                             name=f"notify {why}")
        self.running.add(greenlet)
        greenlet.link(self.running.discard)
        return greenlet

    def run_and_wait(self, command: Any, why: str, timeout: float) -> str:
        """startup_script / shutdown_script: run once and wait for it (killed at
        ``timeout``); returns the result."""
        event(log, "notify.start", why=why, command=command.line, timeout=timeout)
        return self.notify(command, why=why, timeout=timeout).get()

    def _run(self, command: Any, extra: tuple[str, ...], why: str, timeout: float) -> str:
        try:
            argv = shlex.split(command.line) + list(extra)
        except ValueError as exc:
            return self._count("error", why, command, f"cannot split the command: {exc}")
        if not argv:
            return self._count("error", why, command, "empty command")
        user = command.user or self.user
        group = command.group or (self.group if not command.user else None)
        refused = refusal(command.line, f"{user} {group or ''}".strip() if user else None,
                          self.security)
        if refused:
            return self._count("refused", why, command, refused)
        try:
            as_user = identity(user, group, self.supplementary_groups)
        except KeyError:
            return self._count("error", why, command, f"no user {user}")
        try:
            # A session of its own: at the timeout the whole group is killed, so that a
            # child the script left (a 'sleep' of a hung shell script) does not hold its
            # pipe, and this greenlet, open.
            child = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, close_fds=True,
                                     start_new_session=True, **as_user)
        except (OSError, KeyError, ValueError) as exc:    # no such file, unknown user, ...
            return self._count("error", why, command, str(exc))
        with child:
            try:
                _, errors = child.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(child.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                child.communicate()
                return self._count("timeout", why, command, f"killed after {timeout:g} s")
        if child.returncode != 0:
            detail = errors.decode(errors="replace").strip()[-200:]
            return self._count("failed", why, command, f"exit {child.returncode} {detail}")
        return self._count("ok", why, command, "")

    def _count(self, result: str, why: str, command: Any, detail: str) -> str:
        self.results[result] = self.results.get(result, 0) + 1
        level = logging.INFO if result == "ok" else logging.WARNING
        event(log, "notify.done", level, why=why, command=command.line, result=result,
              detail=detail)
        for listener in list(self.listeners):
            listener(why, result)
        return result

    def wait(self, timeout: float) -> None:
        """At shutdown: give running scripts (notify_stop) a bounded chance to finish."""
        hub.joinall(list(self.running), timeout=timeout)
