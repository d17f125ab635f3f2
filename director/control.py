"""The control socket: ``director ctl``'s way into the running daemon (director/ctl.py).

A Unix stream socket, by default STATE_DIR/control.sock, mode 0600 and root's: the file's
permissions are the guard (a user who cannot open it cannot act), where the web face needs
its admin token. One JSON request a line, one JSON reply a line (director/ctlproto.py); a
line that is not a request gets an error reply and the connection goes on.

Commands go the daemon's one way (Director.command -> do_<name> on the main greenlet, as
the web admin's do); the state is the snapshot /api/v1/state serves; events come from the
event log the dashboard's stream reads. The actor an action is recorded with is the peer's
uid, from the kernel (SO_PEERCRED): ``ctl:uid=0``.

The socket file is claimed at start: a stale one (a crashed daemon's: nobody answers on it)
is replaced; one a live daemon answers on is left alone. Stop removes it (only if it is
still ours).
"""

from __future__ import annotations

import errno
import grp
import logging
import os
import socket
import stat
import struct
from typing import Any

from . import ctlproto, dumps, hub
from .ctlproto import (BAD_REQUEST, REFUSED, UNAVAILABLE, ProtocolError, UnknownName,
                       encode, reply_error, reply_ok, resolve)
from .errors import CommandError
from .log import event
from .names import real_server_name, virtual_server_name

log = logging.getLogger("director")

MAX_CLIENTS = 32          # connections at once (each a greenlet; a follow lasts)
REQUEST_TIMEOUT = 60.0    # seconds a connection may stay silent before it is closed
SEND_TIMEOUT = 10.0       # seconds a reply may wait for a client that does not read
KEEPALIVE = 5.0           # seconds between keep-alive lines on a quiet events stream
EVENTS_DEFAULT = 100      # events one `events` returns without a limit
EVENTS_MAX = 1000
DISCARD_MAX = 1 << 20    # bytes of a too-long request read past to find the next one
DISCARD_TIMEOUT = 2.0     # seconds to wait for the rest of it
PROBE_TIMEOUT = 1.0       # seconds to see whether a daemon answers on an existing socket


class ControlError(Exception):
    """The socket cannot be served as asked: one line, for the operator."""


def default_path(state_dir: str) -> str:
    return os.path.join(state_dir, ctlproto.SOCKET_NAME)


def group_id(group: str) -> int:
    """A group name or number; KeyError for neither."""
    return int(group) if group.isdecimal() else grp.getgrnam(group).gr_gid


def peer_uid(connection: socket.socket) -> int | None:
    try:
        _pid, uid, _gid = struct.unpack("3i", connection.getsockopt(
            socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))
    except OSError:
        return None
    return uid


def claim(path: str) -> None:
    """Make room for our socket at ``path``: nothing there, or a socket nobody answers on
    (removed). ControlError when a daemon answers there, or the name is not a socket."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(info.st_mode):
        raise ControlError(f"{path} exists and is not a socket: not replacing it")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(PROBE_TIMEOUT)
    try:
        probe.connect(path)
    except ConnectionRefusedError:          # a crashed daemon's: replace it
        os.unlink(path)
        event(log, "control.stale_socket", path=path, note="replaced")
        return
    except OSError as exc:
        if exc.errno in (errno.ENOENT,):    # gone meanwhile
            return
        raise ControlError(f"{path}: cannot tell whether a daemon serves it: {exc}") from None
    finally:
        probe.close()
    raise ControlError(f"{path}: a running daemon answers on it (the same --state-dir or "
                       "--control-socket as another daemon's)")


class ControlServer:
    def __init__(self, director: Any, path: str, group: str | None = None) -> None:
        self.director = director
        self.path = path
        self.group = group
        self.listener: socket.socket | None = None
        self.inode: int | None = None
        self.acceptor: Any = None
        self.clients: set = set()
        self.refused = 0                    # connections over MAX_CLIENTS
        self.bad_requests = 0

    def start(self) -> None:
        """Bind, own and listen; ControlError (nothing left behind) when it cannot."""
        gid = None
        if self.group is not None:
            try:
                gid = group_id(self.group)
            except KeyError:
                raise ControlError(f"--control-socket-group {self.group}: no such group") \
                    from None
        claim(self.path)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        # bind() creates the file with the umask's mode: none for others from the start, so
        # that nobody connects between the bind and the chmod
        mask = os.umask(0o177)
        try:
            listener.bind(self.path)
            self.inode = os.stat(self.path).st_ino
            if gid is not None:
                os.chown(self.path, -1, gid)
            os.chmod(self.path, 0o660 if gid is not None else 0o600)
            listener.listen(16)
        except OSError as exc:
            listener.close()
            self._remove()
            raise ControlError(f"cannot serve the control socket {self.path}: {exc}") \
                from None
        finally:
            os.umask(mask)
        self.listener = listener
        self.acceptor = hub.supervise(self._accept, name="control socket")
        event(log, "control.listening", path=self.path,
              mode="0660" if gid is not None else "0600", group=self.group or "root")

    def stop(self) -> None:
        if self.acceptor is not None:
            self.acceptor.kill(block=False)
            self.acceptor = None
        for client in list(self.clients):
            client.kill(block=False)
        if self.listener is not None:
            self.listener.close()
            self.listener = None
            self._remove()
            event(log, "control.stopped", path=self.path)

    def _remove(self) -> None:
        """Unlink the socket file if it is still the one we bound (not a newer daemon's)."""
        try:
            if self.inode is not None and os.lstat(self.path).st_ino == self.inode:
                os.unlink(self.path)
        except OSError:
            pass
        self.inode = None

    def _accept(self) -> None:
        while True:
            connection, _ = self.listener.accept()
            if len(self.clients) >= MAX_CLIENTS:
                self.refused += 1
                self._send_quietly(connection, reply_error(
                    f"{MAX_CLIENTS} control clients are connected already; try again",
                    UNAVAILABLE))
                connection.close()
                continue
            client = hub.spawn(self._serve, connection, name="control client")
            self.clients.add(client)
            client.link(self.clients.discard)

    @staticmethod
    def _send_quietly(connection: socket.socket, message: dict) -> None:
        try:
            connection.settimeout(SEND_TIMEOUT)
            connection.sendall(encode(message))
        except OSError:
            pass

    def _serve(self, connection: socket.socket) -> None:
        """One client: requests until it closes, goes silent, or sends a line too long to
        find the next one in."""
        uid = peer_uid(connection)
        actor = f"ctl:uid={'?' if uid is None else uid}"
        reader = connection.makefile("rb")
        try:
            while True:
                connection.settimeout(REQUEST_TIMEOUT)
                line = reader.readline(ctlproto.MAX_REQUEST + 1)
                if not line:
                    return
                if len(line) > ctlproto.MAX_REQUEST and not line.endswith(b"\n"):
                    self.bad_requests += 1
                    self._send(connection, reply_error(
                        f"a request is at most {ctlproto.MAX_REQUEST} bytes", BAD_REQUEST))
                    if not self._skip_line(connection, reader):
                        return
                    continue
                try:
                    command, arguments = ctlproto.decode_request(line.strip())
                except ProtocolError as exc:
                    self.bad_requests += 1
                    event(log, "control.bad_request", logging.WARNING, actor=actor,
                          error=str(exc)[:200])
                    self._send(connection, reply_error(str(exc), BAD_REQUEST))
                    continue
                if command == "events" and arguments["follow"]:
                    self._follow(connection, arguments)
                    return
                self._send(connection, self.handle(command, arguments, actor))
        except (OSError, TimeoutError):       # the client went away, or stopped reading
            return
        finally:
            reader.close()
            connection.close()

    @staticmethod
    def _skip_line(connection: socket.socket, reader: Any) -> bool:
        """Read past the rest of a line too long to be a request, so that the next one can
        be read (True); False when it does not end within DISCARD_MAX bytes or in time.
        Closing with its rest unread would reset the connection before the client read our
        reply (a Unix socket's peer gets ECONNRESET)."""
        connection.settimeout(DISCARD_TIMEOUT)
        left = DISCARD_MAX
        while left > 0:
            piece = reader.readline(min(left, 65536))
            if not piece:
                return False
            if piece.endswith(b"\n"):
                return True
            left -= len(piece)
        return False

    def _send(self, connection: socket.socket, message: dict) -> None:
        connection.settimeout(SEND_TIMEOUT)
        connection.sendall(encode(message))

    def handle(self, command: str, arguments: dict, actor: str) -> dict:
        """One decoded request -> its reply; never raises."""
        try:
            return reply_ok(getattr(self, f"_do_{command}")(actor=actor, **arguments))
        except (CommandError, UnknownName) as exc:
            return reply_error(str(exc), REFUSED)
        except hub.Timeout:
            return reply_error("the daemon did not answer in time", UNAVAILABLE)
        except Exception as exc:          # a bug of ours: said, counted, the daemon goes on
            hub.count_crash("control command")
            log.exception("control.command_failed command=%s error=%r", command, exc)
            return reply_error(f"internal error: {exc!r}", "internal")

    def _command(self, name: str, **arguments: Any) -> Any:
        """A daemon command (do_<name>, on the main greenlet)."""
        if not callable(getattr(self.director, f"do_{name}", None)):
            raise CommandError(f"this daemon has no {name!r} command")
        return self.director.command(name, **arguments)

    def _resolve(self, virtual_server: str, real_server: str) -> tuple[str, str]:
        """The API's names of the servers an operator named (ctlproto.resolve)."""
        virtuals = {virtual_server_name(virtual): virtual
                    for virtual in self.director.config.virtual_servers}
        virtual = resolve(virtual_server, virtuals, "virtual server")
        real = resolve(real_server,
                       [real_server_name(real) for real in virtuals[virtual].real_servers],
                       "real server", within=f" in {virtual}", any_port=True)
        return virtual, real

    # -- the commands: keyword arguments as ctlproto.COMMANDS has them, and the actor ---------

    def _do_status(self, actor: str) -> dict:
        return self.director.snapshot().as_json()

    def _do_names(self, actor: str) -> dict:
        """{virtual server: [real servers]}: for the shell's completion."""
        return {virtual_server_name(virtual): [real_server_name(real)
                                               for real in virtual.real_servers]
                for virtual in self.director.config.virtual_servers}

    def _do_events(self, actor: str, since: int | None, limit: int | None,
                   follow: bool | None) -> list:
        limit = EVENTS_DEFAULT if limit is None else max(1, min(limit, EVENTS_MAX))
        return [item.as_json() for item in self.director.events.since(since or 0, limit)]

    def _do_drain(self, actor: str, virtual_server: str, real_server: str) -> dict:
        virtual, real = self._resolve(virtual_server, real_server)
        return self._command("drain", virtual_server=virtual, real_server=real, drained=True,
                             actor=actor)

    def _do_restore(self, actor: str, virtual_server: str, real_server: str) -> dict:
        virtual, real = self._resolve(virtual_server, real_server)
        return self._command("drain", virtual_server=virtual, real_server=real, drained=False,
                             actor=actor)

    def _do_weight(self, actor: str, virtual_server: str, real_server: str,
                   weight: int) -> dict:
        virtual, real = self._resolve(virtual_server, real_server)
        return self._command("weight", virtual_server=virtual, real_server=real,
                             weight=weight, actor=actor)

    def _do_reload(self, actor: str) -> dict:
        return self._command("reload", actor=actor)

    def _do_diff(self, actor: str, path: str | None) -> Any:
        return self._command("preview", path=path)

    def _do_dump(self, actor: str) -> str:
        """What USR1 writes to the state dump (director/dumps.py), as text."""
        from .snapshot import take
        return "".join(dumps.state_lines(take(self.director, dumps.YIELD_EVERY)))

    def _follow(self, connection: socket.socket, arguments: dict) -> None:
        """``events --follow``: the events after ``since`` (the last ``limit`` by default),
        then each new one as it comes, until the client goes or falls too far behind."""
        events = self.director.events
        subscription = events.subscribe()
        try:
            limit = EVENTS_DEFAULT if arguments["limit"] is None else \
                max(0, min(arguments["limit"], EVENTS_MAX))
            missed = events.since(arguments["since"] or 0, limit) if limit else []
            self._send(connection, reply_ok([item.as_json() for item in missed]))
            while not subscription.dropped:
                item = subscription.get(KEEPALIVE)
                self._send(connection, {"keepalive": True} if item is None
                           else {"event": item.as_json()})
            self._send(connection, reply_error(
                "this client fell too far behind the events and was dropped: reconnect "
                "with --since", UNAVAILABLE))
        finally:
            subscription.close()


def serve(director: Any, options: Any) -> ControlServer | None:
    """The daemon's control socket, as its options ask (--control-socket, its group), or
    None. The default path's socket is a convenience: where it cannot be had (another
    daemon answers there, a path too long for a socket), the daemon runs without it and
    says so. A path the operator named is a requirement: ControlError."""
    asked = getattr(options, "control_socket", None)
    if asked == "off":
        return None
    server = ControlServer(director, asked or default_path(options.state_dir),
                           getattr(options, "control_socket_group", None))
    try:
        server.start()
    except ControlError as exc:
        if asked or getattr(options, "control_socket_group", None):
            raise
        event(log, "control.not_started", logging.WARNING, error=str(exc),
              note="running without a control socket (director ctl)")
        return None
    return server
