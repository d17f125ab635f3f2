"""The daemon's State (director/state.py) put together from what each service returns of
itself: the VRRP service its VrrpView, the load balancer its virtual servers (with the
checks' view of each real server) and its LoadBalancerView, the check service its start
lateness. Nothing here reads a service's insides.

Taken on demand (a request, a scrape, a signal), never kept up to date in the hot path; the
walk over the real servers yields to the loop every ``yield_every`` of them, so that taking
one never delays a VRRP advert.
"""

from __future__ import annotations

import time
from typing import Any

from . import hub
from .state import (ReloadView, State, VirtualServerView, configured_virtual_servers,
                    frozen)

YIELD_EVERY = 1000


def virtual_servers(director: Any, yield_every: int = YIELD_EVERY
                    ) -> tuple[VirtualServerView, ...]:
    """Live where the daemon runs them (with their checkers' counters); as configured where
    it does not (-P)."""
    if director.lb is not None:
        return director.lb.virtual_servers(yield_every)
    return configured_virtual_servers(director.config)


def take(director: Any, yield_every: int = YIELD_EVERY, with_jobs: bool = False) -> State:
    """The live state of a running Director (daemon.py). ``with_jobs`` (the metrics ask for
    each checker's counters): the live views carry them always, one set of views shared by
    every reader (director/check/service.py CheckService.views)."""
    balancer = None if director.lb is None else director.lb.view()
    status = director.reload_status
    return State(
        router_id=director.router_id(), pid=director.pid, started=director.started_wall,
        config=director.options.use_file,
        backend=None if balancer is None else balancer.backend, load_balancer=balancer,
        not_running=tuple(director.not_running()),
        reload=ReloadView(status.get("result"), status.get("at"),
                          tuple(status.get("errors", ())), status.get("note", "")),
        vrrp=director.vrrp_snapshot(),
        virtual_servers=virtual_servers(director, yield_every),
        at=time.time(), reloads=frozen(director.reloads),
        last_reload_success=director.last_reload_success,
        notifications=frozen(director.notifications()),
        lateness_p99=None if director.checks is None else director.checks.lateness_p99(),
        crashes=frozen(hub.crashes),
        check_reply_errors=frozen({} if director.checks is None else
                                  director.checks.reply_errors()),
        main_loop=director.loop_lag.view(), web=director.web_view(),
        notify_fifos=director.notifier.fifos.views() if director.notifier else (),
        process=director.process_view(),
        bgp=None if director.bgp is None else director.bgp.view(),
        overrides=director.override_peers.view(director.overrides.store))

