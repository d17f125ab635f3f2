"""The BGP announcer in the daemon: it watches what decides a prefix (the virtual servers'
health after each converge of the load balancer, the VRRP roles, the maintenance files),
asks announcer.desired() what each prefix should be, and hands the result to the engine
driver (exabgp.py), which sends only the difference.

On TERM it runs first (the daemon's stop sequence): every route withdrawn and acknowledged,
then ``shutdown_delay`` for the router to move the flows to the other directors, and only then
do the pools go. A crash of director takes the engine down with it (the driver's parent-death
signal), and the router drops the session; a crash of the whole box is the peer's hold time.
"""

from __future__ import annotations

import logging
import os
import time
from collections import deque
from typing import Any, Callable, Mapping

from .. import hub
from ..log import event
from . import announcer
from .announcer import Decision, Health
from .engine import BgpEngine
from .view import BgpView, ChangeView, PrefixView, SessionView

log = logging.getLogger("director.bgp")

MAINTENANCE_POLL = 0.5      # seconds between two looks at the maintenance files
WITHDRAW_TIMEOUT = 3.0      # seconds TERM waits for the engine to acknowledge the withdrawals
CHANGES_KEPT = 50


def desired_routes(decisions: Mapping[str, Decision]) -> dict:
    """The engine's view: peer -> prefix -> Route, for the prefixes announced."""
    routes: dict[str, dict] = {}
    for prefix, decision in decisions.items():
        if decision.route is not None:
            for peer in decision.peers:
                routes.setdefault(peer, {})[prefix] = decision.route
    return routes


def engine_for(config: Any, state_dir: str) -> BgpEngine:
    """The engine the bgp block names (ExaBGP, the only one so far), its files in
    STATE_DIR/bgp."""
    from .exabgp import ExaBgpEngine
    return ExaBgpEngine(os.path.join(state_dir, "bgp"), command=config.bgp.exabgp_command)


def engine_problem(config: Any) -> str | None:
    """Why a configuration's bgp block cannot run here (checked before a reload changes
    anything, and at start), or None."""
    from .exabgp import exabgp_installed
    if config.bgp is None or config.bgp.exabgp_command is not None or exabgp_installed():
        return None
    return "the bgp block needs ExaBGP: it is not installed in director's Python " \
        "(scripts/setup installs the pinned version; or set exabgp_command)"


class BgpService:
    STARTING = 10.0             # seconds the engine may take to come up before /healthz says so

    def __init__(self, config: Any, engine: BgpEngine,
                 health: Callable[[], Mapping[str, tuple[bool, int]]],
                 roles: Callable[[], Mapping[str, str]],
                 on_event: Callable[..., Any] = lambda kind, **fields: None) -> None:
        self.config = config
        self.engine = engine
        self.health = health                # LoadBalancer.health
        self.roles = roles                  # VRRP instance -> role
        self.on_event = on_event            # events for people (the event stream, mail)
        self.decisions: dict[str, Decision] = {}
        self.since: dict[str, float] = {}   # prefix -> epoch seconds of its last change
        self.changes: deque[ChangeView] = deque(maxlen=CHANGES_KEPT)
        self.changed = hub.Event()
        self.greenlet: hub.Greenlet | None = None
        self.stopping = False
        self.started = time.monotonic()

    def start(self) -> None:
        self.engine.start(announcer.peers_of(self.config))
        self._recompute()
        self.greenlet = hub.supervise(self._run, name="bgp announcer")

    def reload(self, config: Any, plan: Any) -> None:
        """A new configuration (plan: reconcile.BgpPlan): the engine restarts only when its
        peers changed; the prefixes are decided again at once (a virtual server's quorum or
        members may have changed too)."""
        self.config = config
        if plan.engine or plan.peers_added or plan.peers_changed or plan.peers_removed:
            self.engine.configure(announcer.peers_of(config))
        self.changed.set()

    def _run(self) -> None:
        while True:
            self.changed.wait(MAINTENANCE_POLL)
            self.changed.clear()
            self._recompute()

    def _maintenance(self) -> set[str]:
        files = {server.bgp_announce.maintenance_file for server in self.config.virtual_servers
                 if server.bgp_announce is not None and server.bgp_announce.maintenance_file}
        return {path for path in files if os.path.exists(path)}

    def _recompute(self) -> None:
        if self.stopping:
            return
        health = {name: Health(up, live) for name, (up, live) in self.health().items()}
        decided = announcer.desired(self.config, health, self.roles(), self._maintenance())
        self._record(decided)
        self.engine.set_routes(desired_routes(decided))

    def _record(self, decided: dict[str, Decision]) -> None:
        """Logs, counts and keeps each prefix whose fate or cause changed."""
        now = time.time()
        for prefix, decision in decided.items():
            before = self.decisions.get(prefix)
            if before is not None and before.route == decision.route and \
                    before.cause == decision.cause:
                continue
            action = "announce" if decision.announced else "withdraw"
            self.since[prefix] = now
            if before is None and not decision.announced:
                # never announced: nothing to withdraw, but the cause is worth a line
                event(log, "bgp.not_announced", prefix=prefix, cause=decision.cause)
            else:
                event(log, f"bgp.{action}", prefix=prefix, cause=decision.cause,
                      med=None if decision.route is None else decision.route.med)
            self.changes.append(ChangeView(now, prefix, action, decision.cause))
            self.on_event("bgp", prefix=prefix, action=action, cause=decision.cause)
        for prefix in set(self.decisions) - set(decided):         # a reload removed it
            self.since.pop(prefix, None)
            self.changes.append(ChangeView(now, prefix, "withdraw", "removed by a reload"))
            event(log, "bgp.withdraw", prefix=prefix, cause="removed by a reload")
        self.decisions = decided

    def withdraw_for_stop(self) -> None:
        """TERM, before anything else stops: every route withdrawn (acknowledged by the
        engine), then shutdown_delay for the router to move the flows."""
        self.stopping = True
        if self.greenlet is not None:
            hub.killall([self.greenlet], block=True)
        self._record(announcer.shutdown(self.decisions))
        acknowledged = self.engine.withdraw_all(WITHDRAW_TIMEOUT)
        delay = self.config.bgp.shutdown_delay if self.config.bgp is not None else 0
        event(log, "bgp.stopping", acknowledged=acknowledged, shutdown_delay=delay)
        if delay:
            hub.sleep(delay)

    def stop(self) -> None:
        self.stopping = True
        if self.greenlet is not None:
            hub.killall([self.greenlet], block=True)
        self.engine.stop()

    def not_running(self) -> list[str]:
        if self.stopping or self.engine.running() or \
                time.monotonic() - self.started < self.STARTING:
            return []
        return ["bgp engine (not running)"]

    def view(self) -> BgpView:
        offset = time.time() - time.monotonic()
        descriptions = {peer.address: peer.description
                        for peer in (self.config.bgp.peers if self.config.bgp else ())}
        counters = self.engine.counters()
        prefixes = tuple(PrefixView(prefix, d.announced, d.route, d.cause,
                                    self.since.get(prefix, 0.0), d.peers)
                         for prefix, d in sorted(self.decisions.items()))
        sessions = tuple(SessionView.of(session, descriptions.get(peer), offset)
                         for peer, session in sorted(self.engine.sessions().items()))
        return BgpView(engine=self.config.bgp.engine if self.config.bgp else "exabgp",
                       running=self.engine.running(), sessions=sessions, prefixes=prefixes,
                       changes=tuple(self.changes),
                       counters={k: v for k, v in vars(counters).items()
                                 if isinstance(v, int)},
                       last_error=counters.last_error)
