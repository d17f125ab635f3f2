"""The ExaBGP driver (engine.BgpEngine): ExaBGP runs as a supervised child of director and
is steered through its process API.

    director ── Unix socket (state_dir/exabgp.sock) ── relay ── stdin/stdout ── ExaBGP ── router

director writes ExaBGP's configuration (state_dir/exabgp.conf, mode 0600: it may hold an MD5
password; exabgp_text.py) and starts ``python -m exabgp server`` in the foreground, as root,
its log read line by line into director's log (``bgp.exabgp line=...``), with the parent-death
signal set: a director killed by SIGKILL takes ExaBGP with it, so the router sees the TCP
session close instead of keeping a dead director's routes until the hold time. ExaBGP starts
the relay (relay.py) as its API process; the relay connects to director's socket, which tells
director that this ExaBGP is ready and holds no route yet: every desired route is sent.

One greenlet supervises: start, wait for the relay, read what ExaBGP says (acknowledgements,
session changes), and when ExaBGP exits or the relay's connection ends, kill what is left,
mark every session down and start again after a pause that doubles (RESTART_PAUSES). A second
greenlet sends: it wakes when the desired routes change or a new ExaBGP connected, and sends
the difference between what is desired and what ExaBGP holds (exabgp_text.plan). Each command
waits for its acknowledgement in order (api ack): "error" takes an announcement back, so the
next set_routes tries it again.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections import deque
from dataclasses import replace
from pathlib import Path

from .. import hub
from ..log import event
from . import exabgp_text as text
from .engine import DesiredRoutes, EngineCounters
from .model import Peer, Route, Session

log = logging.getLogger("director.bgp")

START_TIMEOUT = 20.0         # seconds from ExaBGP's start to its relay's connection
STOP_GRACE = 3.0             # seconds between SIGTERM and SIGKILL
RESTART_PAUSES = (0.1, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)   # after the 1st, 2nd, ... death in a row
STEADY = 60.0                # seconds of running after which a death is a first one again
MAX_LINE = 1 << 20           # a longer line from ExaBGP is dropped, not buffered for ever
PR_SET_PDEATHSIG = 1
UNIX_PATH_MAX = 107          # sun_path less its terminating NUL
ROOT = Path(__file__).resolve().parents[2]      # the directory holding the director package


def restart_pause(streak: int) -> float:
    """The pause before starting ExaBGP again after ``streak`` deaths in a row (0: first)."""
    return RESTART_PAUSES[min(streak, len(RESTART_PAUSES) - 1)]


def exabgp_installed() -> bool:
    return importlib.util.find_spec("exabgp") is not None


class ExaBgpEngine:
    """See the module's docstring. Nothing happens before start() (no files, no processes)."""

    def __init__(self, state_dir: str | Path, python: str = sys.executable,
                 log_level: str = "INFO", command: str | None = None) -> None:
        self.state_dir = Path(state_dir)
        self.python = python                 # runs ExaBGP (python -m exabgp) and the relay
        self.command = command               # exabgp_command: an ExaBGP 5 executable instead
        self.log_level = log_level
        self.config_path = self.state_dir / "exabgp.conf"
        self.socket_path = self.state_dir / "exabgp.sock"
        self.peers: tuple[Peer, ...] = ()
        self.desired: DesiredRoutes = {}
        self.announced: DesiredRoutes = {}   # what this ExaBGP holds, as sent
        self.pending: deque[text.Change] = deque()   # sent, waiting for the acknowledgement
        self.refused: set[tuple[str, Route]] = set()    # routes that cannot be said, logged once
        self._sessions: dict[str, Session] = {}
        self._counts = {name: 0 for name in ("restarts", "reloads", "commands", "command_errors",
                                             "session_drops", "dropped_lines", "errors")}
        self.last_error: str | None = None
        self.process: subprocess.Popen | None = None
        self.link: socket.socket | None = None
        self.listener: socket.socket | None = None
        self.started_at = time.monotonic()
        self.wake = hub.Event()              # the sender has something to do
        self.settled = hub.Event()           # every command sent was acknowledged
        self.stopped = hub.Event()
        self.kick = hub.Event()              # end the pause before the next start now
        self.withdrawn = False               # withdraw_all was called: no route goes out again
        self.reloading = False
        self.closing = False                 # director itself is closing the sessions
        self.greenlets: list[hub.Greenlet] = []
        self._libc = None

    # -- the Protocol --------------------------------------------------------------------------

    def start(self, peers: tuple[Peer, ...]) -> None:
        text.check_peers(peers)
        if self.command is None and not exabgp_installed() and self.python == sys.executable:
            raise RuntimeError("ExaBGP is not installed in director's Python "
                               "(scripts/setup installs the pinned version)")
        if len(os.fsencode(self.socket_path)) > UNIX_PATH_MAX:
            raise ValueError(f"the state directory's path is too long for a Unix socket "
                             f"({self.socket_path}: at most {UNIX_PATH_MAX} bytes)")
        self.peers = tuple(peers)
        self.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        import ctypes.util           # loaded when BGP is used, not on every start-up
        self._libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        self.listener = self._listen()
        self.started_at = time.monotonic()
        # long-lived: a bug in either is logged, counted and survived (restarted), and
        # /healthz names it meanwhile
        self.greenlets = [hub.supervise(self._supervise, name="bgp exabgp"),
                          hub.supervise(self._send_loop, name="bgp exabgp sender")]

    def configure(self, peers: tuple[Peer, ...]) -> None:
        text.check_peers(peers)
        if tuple(peers) == self.peers:
            return
        event(log, "bgp.engine_reload", peers=",".join(p.address for p in peers) or "none",
              note="peers changed: ExaBGP restarts, then gets its routes back")
        self.peers = tuple(peers)
        self._counts["reloads"] += 1
        process = self.process
        if process is not None and process.poll() is None:
            self.reloading = self.closing = True
            self._terminate(process)
        else:                                # between two starts: the next one, now
            self.kick.set()

    def set_routes(self, desired: DesiredRoutes) -> None:
        if self.withdrawn:
            return
        self.desired = {peer: self._sayable(peer, routes) for peer, routes in desired.items()}
        self.wake.set()

    def sessions(self) -> dict[str, Session]:
        return {peer.address: self._sessions.get(peer.address) or
                Session(peer.address, "down", self.started_at)
                for peer in self.peers}

    def withdraw_all(self, timeout: float) -> bool:
        self.withdrawn = True
        self.desired = {}
        self.wake.set()
        deadline = time.monotonic() + timeout
        while self.link is not None and (self.pending or any(self.announced.values())):
            left = deadline - time.monotonic()
            if left <= 0:
                event(log, "bgp.withdraw_all", logging.WARNING, result="timeout",
                      waiting=len(self.pending))
                return False
            self.settled.clear()
            self.wake.set()
            self.settled.wait(min(left, 0.5))
        event(log, "bgp.withdraw_all", result="acknowledged")
        return True

    def stop(self) -> None:
        self.stopped.set()
        self.closing = True
        self.wake.set()
        self.kick.set()
        if self.process is not None:
            self._terminate(self.process)
        hub.joinall(self.greenlets, timeout=STOP_GRACE * 2)
        hub.killall([g for g in self.greenlets if not g.dead], block=False)
        for sock in (self.link, self.listener):
            if sock is not None:
                sock.close()
        self.link = self.listener = None
        try:
            self.socket_path.unlink()
        except FileNotFoundError:
            pass

    def counters(self) -> EngineCounters:
        return EngineCounters(**self._counts, last_error=self.last_error)

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None and self.link is not None

    # -- routes --------------------------------------------------------------------------------

    def _sayable(self, peer: str, routes: dict[str, Route]) -> dict[str, Route]:
        """The routes that can be put into a command; the others are counted and logged once."""
        kept = {}
        for prefix, route in routes.items():
            problem = text.route_problem(route)
            if problem is None and prefix != route.prefix:
                problem = f"filed under {prefix!r} but its prefix is {route.prefix!r}"
            if problem is None:
                kept[prefix] = route
            elif (peer, route) not in self.refused:
                self.refused.add((peer, route))
                self._error(f"route not sent to {peer}: {problem}")
        return kept

    def _send_loop(self) -> None:
        while not self.stopped.is_set():
            self.wake.wait()
            self.wake.clear()
            link = self.link
            if link is None or self.stopped.is_set():
                continue
            changes = text.plan(self.desired, self.announced, {p.address for p in self.peers})
            if not changes:
                if not self.pending:
                    self.settled.set()
                continue
            for change in changes:
                routes = self.announced.setdefault(change.peer, {})
                if change.announce:
                    routes[change.route.prefix] = change.route
                else:
                    routes.pop(change.route.prefix, None)
                self.pending.append(change)
            self._counts["commands"] += len(changes)
            try:
                link.sendall("".join(c.command() + "\n" for c in changes).encode())
            except OSError as exc:          # the supervisor sees the link close and restarts
                event(log, "bgp.send_failed", logging.WARNING, error=exc, commands=len(changes))

    def _acknowledged(self, ok: bool) -> None:
        if not self.pending:
            self._drop("an acknowledgement for no command", "done" if ok else "error")
            return
        change = self.pending.popleft()
        if not ok:
            self._counts["command_errors"] += 1
            self.last_error = f"ExaBGP refused: {change.command()}"
            event(log, "bgp.command_error", logging.WARNING, command=change.command())
            routes = self.announced.get(change.peer, {})
            if change.announce and routes.get(change.route.prefix) == change.route:
                del routes[change.route.prefix]
        if not self.pending:
            self.settled.set()

    # -- sessions ------------------------------------------------------------------------------

    def _session_changed(self, peer: str, state: str, reason: str = "") -> None:
        if peer not in {p.address for p in self.peers}:
            return
        old = self._sessions.get(peer) or Session(peer, "down", self.started_at)
        if state == old.state and not reason:
            return
        dropped = old.state == "up" and state != "up" and not self.closing
        failed = old.state == "connecting" and state == "down" and not self.closing
        new = replace(old, state=state, since=time.monotonic() if state != old.state else old.since,
                      flaps=old.flaps + dropped, failed_connects=old.failed_connects + failed,
                      last_error=reason or old.last_error if state == "down" else old.last_error)
        self._sessions[peer] = new
        if dropped:
            self._counts["session_drops"] += 1
        if state == old.state:
            return
        # a peer that never answers fails every few seconds: its 1st, 10th, 100th... failure
        # is logged, each attempt only at debug level
        level = logging.WARNING if dropped else logging.INFO
        if state == "connecting" or (failed and str(new.failed_connects).strip("0") != "1"):
            level = logging.DEBUG
        event(log, "bgp.session", level, peer=peer, state=state, was=old.state,
              reason=reason or "-", flaps=new.flaps, failed_connects=new.failed_connects)

    def _all_down(self, reason: str) -> None:
        for peer in self.peers:
            self._session_changed(peer.address, "down", reason)

    def _heard(self, line: str) -> None:
        message = text.parse_line(line)
        if isinstance(message, text.Ack):
            self._acknowledged(message.ok)
        elif isinstance(message, text.PeerState):
            state = {"connected": "connecting"}.get(message.state, message.state)
            if state not in ("up", "down", "connecting"):
                self._drop(f"unknown session state {message.state!r}", line)
            else:
                self._session_changed(message.peer, state, message.reason)
        elif isinstance(message, text.PeerFsm):
            # a connection being tried; "up" and "down" come as neighbor-changes
            if message.state in ("connect", "opensent", "openconfirm"):
                self._session_changed(message.peer, "connecting")
            elif message.state in ("idle", "active"):
                old = self._sessions.get(message.peer)
                if old is not None and old.state == "connecting":
                    self._session_changed(message.peer, "down", "connection failed")
        elif isinstance(message, text.Malformed):
            self._drop(message.why, message.line)

    # -- the process ---------------------------------------------------------------------------

    def _listen(self) -> socket.socket:
        try:
            self.socket_path.unlink()
        except FileNotFoundError:
            pass
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            listener.bind(str(self.socket_path))
            os.chmod(self.socket_path, 0o600)
            listener.listen(4)
        except OSError:
            listener.close()
            raise
        return listener

    def _write_config(self) -> None:
        body = text.config_text(self.peers, [self.python, "-m", "director.bgp.relay",
                                             str(self.socket_path)])
        temporary = self.config_path.with_name(self.config_path.name + ".new")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            os.fchmod(out.fileno(), 0o600)
            out.write(body)
        os.replace(temporary, self.config_path)

    def _child_setup(self, parent: int) -> None:
        """In the child, before ExaBGP runs: SIGTERM when director dies (even by SIGKILL:
        ExaBGP then closes its sessions with a NOTIFICATION). A director that died between
        the fork and here would never send it: then do not start at all."""
        self._libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:
            os._exit(1)

    def _spawn_exabgp(self) -> subprocess.Popen:
        self._write_config()
        environment = {**os.environ, **text.environment(self.log_level),
                       "PYTHONPATH": os.pathsep.join(
                           [str(ROOT)] + [p for p in [os.environ.get("PYTHONPATH")] if p])}
        parent = os.getpid()
        # its own session: a Ctrl-C on director's terminal must not stop it before
        # withdraw_all has run; director stops it itself
        return subprocess.Popen(
            [*([self.command] if self.command else [self.python, "-m", "exabgp"]),
             "server", str(self.config_path)],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            cwd=self.state_dir, env=environment, start_new_session=True,
            preexec_fn=lambda: self._child_setup(parent))

    def _terminate(self, process: subprocess.Popen) -> None:
        if process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(STOP_GRACE)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(process.pid, signal.SIGKILL)   # with its relay
            except ProcessLookupError:
                pass
            process.wait(STOP_GRACE)

    def _supervise(self) -> None:
        streak = 0
        while not self.stopped.is_set():
            began = time.monotonic()
            reason = self._run_once()
            self._all_down(reason)
            if self.stopped.is_set():
                return
            if self.reloading:
                self.reloading = self.closing = False
                streak = 0
                continue
            if time.monotonic() - began > STEADY:
                streak = 0
            pause = restart_pause(streak)
            streak += 1
            self._counts["restarts"] += 1
            self.last_error = reason
            event(log, "bgp.engine_restart", logging.WARNING, reason=reason,
                  restart_in=f"{pause:g}s", restarts=self._counts["restarts"])
            self.kick.clear()
            self.kick.wait(pause)

    def _run_once(self) -> str:
        """One ExaBGP from start to death; returns why it ended."""
        try:
            process = self._spawn_exabgp()
        except (OSError, ValueError, subprocess.SubprocessError) as exc:
            self._error(f"cannot start ExaBGP: {exc}")
            return f"start failed: {exc}"
        self.process = process
        reader = hub.spawn(self._read_log, process, name="bgp exabgp log")
        event(log, "bgp.engine_start", pid=process.pid, config=self.config_path,
              peers=",".join(p.address for p in self.peers) or "none")
        try:
            link = self._accept(process)
            if link is None:
                return self._why_ended(process, "its relay never connected")
            self.link, self.announced = link, {}
            self.pending.clear()
            self.wake.set()                  # a new ExaBGP holds nothing: send every route
            self._read_link(link)
            return self._why_ended(process, "its relay's connection closed")
        finally:
            self.link = None
            self.pending.clear()
            self.settled.set()
            self._terminate(process)
            hub.joinall([reader], timeout=STOP_GRACE)
            if self.process is process:
                self.process = None

    def _why_ended(self, process: subprocess.Popen, otherwise: str) -> str:
        try:
            code = process.wait(0.5)         # the relay's socket closes as ExaBGP dies
        except subprocess.TimeoutExpired:
            return otherwise
        return f"ExaBGP exited ({code})" if code >= 0 else \
            f"ExaBGP killed by {signal.Signals(-code).name}"

    def _accept(self, process: subprocess.Popen) -> socket.socket | None:
        deadline = time.monotonic() + START_TIMEOUT
        self.listener.settimeout(0.2)
        for _ in range(int(START_TIMEOUT / 0.2) + 2):
            if process.poll() is not None or self.stopped.is_set() or \
                    time.monotonic() > deadline:
                return None
            try:
                link, _ = self.listener.accept()
            except socket.timeout:
                continue
            link.settimeout(None)
            return link
        return None

    def _read_link(self, link: socket.socket) -> None:
        buffer = b""
        while True:
            try:
                data = link.recv(65536)
            except OSError:
                return
            if not data:
                return
            buffer += data
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                if line.strip():
                    self._heard(line.decode(errors="replace"))
            if len(buffer) > MAX_LINE:
                self._drop("a line longer than 1 MiB", buffer[:200].decode(errors="replace"))
                buffer = b""

    def _read_log(self, process: subprocess.Popen) -> None:
        for raw in iter(lambda: process.stdout.readline(8192), b""):
            line = raw.decode(errors="replace").rstrip()
            if line:
                event(log, "bgp.exabgp", line=line)
        process.stdout.close()

    # -- counting --------------------------------------------------------------------------

    def _drop(self, why: str, line: str) -> None:
        self._counts["dropped_lines"] += 1
        event(log, "bgp.dropped_line", logging.WARNING, why=why, line=line[:200])

    def _error(self, message: str) -> None:
        self._counts["errors"] += 1
        self.last_error = message
        event(log, "bgp.error", logging.ERROR, error=message)
