"""What director asks of a BGP engine driver, whichever engine runs underneath (ExaBGP:
exabgp.py; BIRD through birdc or GoBGP could be next). The driver owns the engine process and
the talk with it; director only says which peers and which routes, as values (model.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from .model import Peer, Route, Session

# {peer address: {prefix: Route}}: every route director wants each peer to have
DesiredRoutes = dict[str, dict[str, Route]]


@dataclass(frozen=True)
class EngineCounters:
    """Since the driver was made (a reload keeps them)."""

    restarts: int = 0            # the engine died (or stopped talking) and was started again
    reloads: int = 0             # restarted because the peers changed
    commands: int = 0            # commands sent to the engine
    command_errors: int = 0      # commands the engine refused
    session_drops: int = 0       # a peer's session left "up"
    dropped_lines: int = 0       # lines from the engine that made no sense (never a crash)
    errors: int = 0              # everything else: failed starts, routes that cannot be said
    last_error: str | None = None


class BgpEngine(Protocol):
    def start(self, peers: tuple[Peer, ...]) -> None:
        """Start the engine with these peers and no routes; returns at once (the engine
        comes up in the background). ValueError for a peer it cannot be given."""

    def configure(self, peers: tuple[Peer, ...]) -> None:
        """A reload: the engine restarts only if the peers changed, then gets its routes back.
        ValueError (and nothing changed) for a peer it cannot be given."""

    def set_routes(self, desired: DesiredRoutes) -> None:
        """The whole desired state (idempotent): the driver sends only the difference from
        what the engine has, and everything again after the engine restarted."""

    def sessions(self) -> dict[str, Session]:
        """Every configured peer's session as the engine last reported it."""

    def withdraw_all(self, timeout: float) -> bool:
        """For TERM, before anything else stops: every route withdrawn and the engine's
        acknowledgement of each received; False if that took longer than ``timeout``."""

    def stop(self) -> None:
        """The engine stopped (its sessions close) and the driver's greenlets ended."""

    def counters(self) -> EngineCounters: ...

    def running(self) -> bool:
        """For /healthz: the engine runs and the driver is talking to it."""
