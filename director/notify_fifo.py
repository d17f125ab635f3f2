"""Notify FIFOs (global_defs notify_fifo, vrrp_notify_fifo, lvs_notify_fifo and their
``_script``): keepalived's one-line notifications written to named pipes, so that a consumer
written for keepalived reads director's unchanged.

keepalived's rules, kept: the FIFO is created when missing (0644, chowned to its USER GROUP)
and removed at close only if we created it; it is opened read-write and non-blocking, so
that there is always a reader (ours) and a line written while the consumer is away waits in
the pipe for it; the ``_script`` is started with the FIFO's path as its last argument, gets
TERM at stop, and is not restarted when it exits. notify_fifo gets every line, vrrp_ the VRRP
ones, lvs_ the load balancer's; a path given twice is one FIFO (its lines written once).

Never stalls the daemon: a write that does not fit (a consumer gone, a pipe full) is a
counted drop. Where keepalived writes into whatever the path names, a path that is not a FIFO
is refused (logged, counted); a FIFO replaced under us (a consumer that recreates it) is
reopened at the next line.
"""

from __future__ import annotations

import grp
import logging
import os
import pwd
import shlex
import signal
import stat
import subprocess
from dataclasses import dataclass
from typing import Any, Iterable

from . import hub
from .log import event
from .scriptsec import default_user, identity, refusal, split_user

log = logging.getLogger("director.notify_fifo")

VRRP, LVS = "vrrp", "lvs"
CHANNELS = (("notify_fifo", (VRRP, LVS)), ("vrrp_notify_fifo", (VRRP,)),
            ("lvs_notify_fifo", (LVS,)))
MODE = 0o644                  # keepalived's S_IRUSR | S_IWUSR | S_IRGRP | S_IROTH
STOP_GRACE = 1.0              # a script TERMed this long ago is killed
WATCH_PERIOD = 0.5            # how often a running script is looked at


# -- the lines (pure) --------------------------------------------------------------------------

def vrrp_line(kind: str, name: str, state: str, priority: int) -> str:
    """``INSTANCE "VI_1" MASTER 100`` (kind INSTANCE or GROUP; a group's priority is 0)."""
    return f'{kind} "{name}" {state} {priority}\n'


def _trio(address: str, protocol: str | None, port: int | None) -> str:
    return f"[{address}]:{(protocol or 'TCP').lower()}:{port or 0}"


def service_label(virtual: Any) -> str:
    """keepalived's FMT_VS: ``[10.0.0.1]:tcp:80``, ``FWM 5``, ``[GROUP]:0``."""
    if virtual.group is not None:
        return f"[{virtual.group}]:{virtual.port or 0}"
    if virtual.fwmark is not None:
        return f"FWM {virtual.fwmark}"
    return _trio(virtual.address, virtual.protocol, virtual.port)


def vs_line(virtual: Any, up: bool) -> str:
    return f"VS {service_label(virtual)} {'UP' if up else 'DOWN'}\n"


def rs_line(virtual: Any, real: Any, up: bool) -> str:
    """``RS [10.0.1.1]:tcp:80 [10.0.0.1]:tcp:80 UP``: the real server with its virtual
    server's protocol, then the virtual server."""
    return (f"RS {_trio(real.address, virtual.protocol, real.port)} {service_label(virtual)} "
            f"{'UP' if up else 'DOWN'}\n")


@dataclass(frozen=True)
class FifoSetting:
    """One FIFO as the configuration asks for it: which lines, its owner, its script."""

    path: str
    kinds: tuple[str, ...]            # VRRP, LVS
    user: str | None
    group: str | None
    script: Any                       # config Command or None
    names: tuple[str, ...]            # the keywords that name it


def settings(global_defs: Any) -> tuple[FifoSetting, ...]:
    """The FIFOs of a configuration, one per path: a path named twice gets the lines of both
    keywords once, and the first script given for it (keepalived ignores the vrrp FIFO equal
    to notify_fifo, and of LVS and VRRP scripts on one FIFO runs the VRRP one; -t says so:
    config/validate.py)."""
    found: dict[str, FifoSetting] = {}
    for keyword, kinds in CHANNELS:
        fifo = getattr(global_defs, keyword, None)
        if fifo is None:
            continue
        script = getattr(global_defs, f"{keyword}_script", None)
        before = found.get(fifo.path)
        if before is None:
            found[fifo.path] = FifoSetting(fifo.path, kinds, fifo.user, fifo.group, script,
                                           (keyword,))
            continue
        found[fifo.path] = FifoSetting(
            fifo.path, tuple(dict.fromkeys(before.kinds + kinds)), before.user, before.group,
            before.script or script, before.names + (keyword,))
    return tuple(found.values())


# -- one FIFO ----------------------------------------------------------------------------------

class Fifo:
    """One named pipe, its writer and its reading script."""

    def __init__(self, setting: FifoSetting, script_user: str | None = None,
                 script_security: bool = False) -> None:
        self.setting = setting
        self.script_user = script_user
        self.script_security = script_security
        self.fd: int | None = None
        self.inode: tuple[int, int] | None = None
        self.created = False
        self.error: str | None = None     # why it is not open
        self.written = 0
        self.dropped: dict[str, int] = {}  # reason -> lines
        self.process: subprocess.Popen | None = None
        self.script_exits = 0

    @property
    def path(self) -> str:
        return self.setting.path

    def open(self) -> None:
        """Create the FIFO if missing and open it; a failure is logged and leaves it closed
        (its lines are counted as dropped), as keepalived goes on without it."""
        path = self.path
        try:
            os.mkfifo(path, MODE)
            self.created = True
            self._chown()
        except FileExistsError:
            pass
        except OSError as exc:
            return self._failed(f"cannot create: {exc.strerror}")
        try:
            fd = os.open(path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOFOLLOW)
        except OSError as exc:
            return self._failed(f"cannot open: {exc.strerror}")
        info = os.fstat(fd)
        if not stat.S_ISFIFO(info.st_mode):
            os.close(fd)
            return self._failed("not a FIFO (director writes notifications only to a FIFO)")
        self.fd, self.inode, self.error = fd, (info.st_dev, info.st_ino), None
        event(log, "notify_fifo.opened", path=path, created=self.created,
              keywords=",".join(self.setting.names))

    def _chown(self) -> None:
        user, group = self.setting.user, self.setting.group
        if user is None:
            return
        try:
            entry = pwd.getpwnam(user)
            os.chown(self.path, entry.pw_uid,
                     grp.getgrnam(group).gr_gid if group else entry.pw_gid)
        except (KeyError, OSError) as exc:
            event(log, "notify_fifo.chown_failed", logging.WARNING, path=self.path,
                  user=user, group=group or "", error=exc)

    def _failed(self, why: str) -> None:
        self.error = why
        event(log, "notify_fifo.unusable", logging.ERROR, path=self.path, error=why,
              note="its lines are dropped")

    def write(self, line: str) -> bool:
        """One line, never blocking: False (counted by reason) when it could not go."""
        if self.fd is None:
            return self._drop("closed")
        if not self._same_pipe():
            self._reopen()
            if self.fd is None:
                return self._drop("closed")
        data = line.encode()
        try:
            # a write of at most PIPE_BUF bytes to a pipe is whole or nothing
            os.write(self.fd, data)
        except BlockingIOError:
            return self._drop("full")
        except OSError as exc:
            event(log, "notify_fifo.write_error", logging.WARNING, path=self.path, error=exc)
            return self._drop("error")
        self.written += 1
        return True

    def _drop(self, reason: str) -> bool:
        first = not self.dropped.get(reason)
        self.dropped[reason] = self.dropped.get(reason, 0) + 1
        if first:                      # one log line per reason, not one per line dropped
            event(log, "notify_fifo.dropped", logging.WARNING, path=self.path, reason=reason,
                  note="counted in /api/v1/state notify_fifos")
        return False

    def _same_pipe(self) -> bool:
        """Whether the path still names the pipe we hold (a consumer may have removed it and
        made a new one, which keepalived never notices)."""
        try:
            info = os.stat(self.path)
        except OSError:
            return False
        return (info.st_dev, info.st_ino) == self.inode

    def _reopen(self) -> None:
        event(log, "notify_fifo.reopening", path=self.path, note="the FIFO was replaced")
        self._close_fd()
        self.created = False
        self.open()

    # -- the reading script ----------------------------------------------------------------

    def start_script(self) -> None:
        command = self.setting.script
        if command is None or self.fd is None:
            return
        # the script's own USER [GROUP], else script_user (Notifier's rule)
        default, default_group = split_user(default_user(self.script_user))
        user = command.user or default
        group = command.group or (default_group if not command.user else None)
        spec = f"{user} {group or ''}".strip() if user else None
        refused = refusal(command.line, spec, self.script_security)
        if refused:
            event(log, "notify_fifo.script_refused", logging.WARNING, path=self.path,
                  command=command.line, reason=refused)
            return
        try:
            argv = shlex.split(command.line) + [self.path]
            self.process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, close_fds=True,
                                            start_new_session=True, **identity(user, group))
        except (OSError, ValueError, KeyError) as exc:
            event(log, "notify_fifo.script_error", logging.WARNING, path=self.path,
                  command=command.line, error=exc)
            return
        event(log, "notify_fifo.script_started", path=self.path, command=command.line,
              pid=self.process.pid)
        hub.spawn(self._watch, self.process, name=f"fifo script {self.path}")

    def _watch(self, process: subprocess.Popen) -> None:
        # polled: a wait would hold the whole loop where subprocess is not gevent's
        while (code := process.poll()) is None:
            hub.sleep(WATCH_PERIOD)
        if process is self.process:           # not one we stopped ourselves
            self.script_exits += 1
            event(log, "notify_fifo.script_exited", logging.WARNING, path=self.path,
                  pid=process.pid, code=code, note="not restarted (as keepalived); a reload "
                                                   "starts it again")

    def terminate_script(self) -> subprocess.Popen | None:
        """TERM to the script's process group (it may have children); returns it to reap."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return None
        try:
            os.killpg(process.pid, signal.SIGTERM)
        except OSError:
            pass
        return process

    def script_running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    # -- closing ---------------------------------------------------------------------------

    def _close_fd(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def close(self) -> None:
        """Unlink first (keepalived: a consumer looping on the path must not reopen it), then
        close: a reader gets end of file once it has read what is in the pipe."""
        if self.created:
            try:
                os.unlink(self.path)
            except OSError:
                pass
            self.created = False
        self._close_fd()

    def view(self):
        from .state import NotifyFifoView, frozen
        return NotifyFifoView(self.path, self.setting.names, self.fd is not None, self.error,
                              self.written, frozen(self.dropped),
                              self.setting.script.line if self.setting.script else None,
                              self.script_running(), self.script_exits)


def reap(processes: Iterable[subprocess.Popen], grace: float = STOP_GRACE) -> None:
    """Wait a little for TERMed scripts, then KILL their groups (bounded)."""
    for process in processes:
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except OSError:
                pass


# -- all of them -------------------------------------------------------------------------------

class NotifyFifos:
    """The configuration's FIFOs: ``vrrp(line)`` and ``lvs(line)`` write to those that take
    the kind. Nothing happens before ``configure``; a daemon without FIFOs holds an empty
    one, and every write is then one dictionary look-up."""

    def __init__(self) -> None:
        self.fifos: dict[str, Fifo] = {}
        self.by_kind: dict[str, tuple[Fifo, ...]] = {VRRP: (), LVS: ()}
        self.global_defs: Any = None

    def configure(self, global_defs: Any, kinds: tuple[str, ...] = (VRRP, LVS)) -> None:
        """At start and on each reload: a FIFO whose setting (path, kinds, owner, script)
        or script security is unchanged stays open with its script; the others close (their
        scripts TERMed) and the new ones open and start their scripts. ``kinds``: the lines
        this daemon writes (-P: VRRP only, -C: LVS only; keepalived's other process does not
        run then, and does not open its FIFO)."""
        wanted = {item.path: item for item in settings(global_defs)
                  if set(item.kinds) & set(kinds)}
        security = (global_defs.script_user, global_defs.enable_script_security)
        before = (self.global_defs.script_user, self.global_defs.enable_script_security) \
            if self.global_defs is not None else None
        self.global_defs = global_defs
        stopping = []
        for path, fifo in list(self.fifos.items()):
            if wanted.get(path) != fifo.setting or security != before:
                stopping.append(fifo.terminate_script())
                fifo.close()
                del self.fifos[path]
        stopping = [process for process in stopping if process is not None]
        if stopping:              # off the main greenlet: a reload does not wait for them
            hub.spawn(reap, stopping, name="fifo scripts reaped")
        for path, setting in wanted.items():
            fifo = self.fifos.get(path)
            if fifo is None:
                fifo = self.fifos[path] = Fifo(setting, *security)
                fifo.open()
                fifo.start_script()
            elif not fifo.script_running():      # it exited: a reload starts it again
                fifo.start_script()
        self.by_kind = {kind: tuple(fifo for fifo in self.fifos.values()
                                    if kind in fifo.setting.kinds) for kind in (VRRP, LVS)}

    def vrrp(self, line: str) -> None:
        for fifo in self.by_kind[VRRP]:
            fifo.write(line)

    def lvs(self, line: str) -> None:
        for fifo in self.by_kind[LVS]:
            fifo.write(line)

    def terminate_scripts(self) -> list[subprocess.Popen]:
        """Stop, first step (keepalived's order): the scripts get TERM, then the last lines
        (STOP) are written, then ``close``."""
        return [process for process in (fifo.terminate_script()
                                        for fifo in self.fifos.values()) if process]

    def close(self, terminated: Iterable[subprocess.Popen] = ()) -> None:
        for fifo in self.fifos.values():
            fifo.close()
        reap(list(terminated) + self.terminate_scripts())
        self.fifos = {}
        self.by_kind = {VRRP: (), LVS: ()}

    def views(self) -> tuple:
        return tuple(fifo.view() for fifo in self.fifos.values())
