"""The daemon's commands: what the web admin API (web/admin.py), ``director ctl``'s socket
(control.py) and the peer directors' override exchange ask of it. Each arrives on its
caller's greenlet, is queued, and runs as ``do_<name>`` on the main greenlet, like a signal,
so that no command races a reload or another command. Director (daemon.py) takes these
methods as a base class; they use its subsystems (checks, lb, overrides, events)."""

from __future__ import annotations

from typing import Any

from . import hub
from .errors import CommandError

COMMAND_TIMEOUT = 30.0  # a caller waits this long for the main greenlet's answer


class Commands:
    def command(self, name: str, **arguments: Any) -> Any:
        """Called from a web request's (or a ctl client's) greenlet: queue the command, wait
        for its result.
        Raises CommandError (bad arguments) or hub.Timeout."""
        result = hub.AsyncResult()
        self.commands.put((name, arguments, result))
        return result.get(timeout=COMMAND_TIMEOUT)

    def _answer(self, name: str, arguments: dict, result: Any) -> None:
        try:
            result.set(getattr(self, f"do_{name}")(**arguments))
        except Exception as exc:
            result.set_exception(exc)

    def do_reload(self, actor: str = "") -> dict:
        self.handle_reload()
        self.events.add("admin", action="reload", actor=actor)
        return dict(self.reload_status)

    def do_preview(self, path: str | None = None, actor: str = "") -> dict:
        """What a reload would change (``path``: another file than the configured one, for
        ``director ctl diff FILE``; never from HTTP), changing nothing: reload_preview."""
        from .reload_preview import preview
        return preview(self, path or self.options.use_file, actor)

    # operator overrides (director/overrides.py): the replies keep do_drain's shape

    def do_drain(self, virtual_server: str, real_server: str, drained: bool = True,
                 actor: str = "") -> dict:
        return self._override(virtual_server, real_server, "drain", bool(drained), actor,
                              "drain" if drained else "restore")

    def do_restore(self, virtual_server: str, real_server: str, actor: str = "") -> dict:
        return self.do_drain(virtual_server, real_server, False, actor)

    def do_weight(self, virtual_server: str, real_server: str, weight: int | None,
                  actor: str = "") -> dict:
        """A runtime weight until the next reload; None or -1 puts the file's back."""
        if isinstance(weight, str) and weight.strip().lstrip("-").isdecimal():   # a command line
            weight = int(weight)
        if weight is not None and (isinstance(weight, bool) or not isinstance(weight, int)):
            raise CommandError("weight: an integer, or -1/null to clear")
        value = None if weight is None or weight == -1 else weight
        return self._override(virtual_server, real_server, "weight", value, actor, "weight")

    def do_maintenance(self, virtual_server: str, real_server: str, on: bool,
                       actor: str = "") -> dict:
        return self._override(virtual_server, real_server, "maintenance", bool(on), actor,
                              "maintenance" if on else "maintenance_off")

    def _override(self, virtual: str, real: str, kind: str, value: Any, actor: str,
                  action: str) -> dict:
        answer, changed = self.overrides.command(self.checks, virtual, real, kind, value,
                                                 actor, action)
        if changed and self.lb is not None:
            self.lb.changed.set()
        self.events.add("admin", action=action, virtual_server=virtual, real_server=real,
                        actor=actor, **({} if kind == "drain" else {"value": value}))
        return answer

    def do_override_sync(self, entries: list, bad: int, peer: str, reply: bool = True,
                         actor: str = "") -> dict:
        """A peer's entries (their signature checked): merged; ours returned."""
        self.override_peers.dropped_entries(bad)
        taken, changed = self.overrides.merge(self.checks, entries, peer)
        if changed and self.lb is not None:
            self.lb.changed.set()
        if taken:
            self.events.add("overrides_learned", peer=peer, entries=len(taken))
        return {"taken": len(taken),
                "entries": self.overrides.store.as_lists() if reply else []}

    def _merge_from_peer(self, entries: list, bad: int, peer: str) -> None:
        """The override peers' greenlet: a peer's reply, merged on the main greenlet."""
        self.command("override_sync", entries=entries, bad=bad, peer=peer, reply=False)

    def peer_message(self, body: bytes, signature: str | None,
                     peer: str) -> tuple[int, bytes, dict[str, str]]:
        """POST /api/v1/overrides/sync (web/admin.py): checked on the request's greenlet."""
        return self.override_peers.receive(body, signature, peer, self.command)
