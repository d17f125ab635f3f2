"""What the kernel would get from a reload, found without applying it: the reload preview's
load-balancer part (director/reload_preview.py).

It follows what the reload does, step by step, on copies: the checks' states as
CheckService.apply leaves them (kept servers as they are, changed ones migrated with
check.service.carried, added ones as keepalived starts them), the quorum as
LoadBalancer.reload keeps or starts it and as the first converge after it steps it, the
pools as pool.desired_state builds them, and the operations as plan.plan derives them
against what the backend holds. Nothing here changes a subsystem: the property test
(tests/unit/test_reload_preview_property.py) applies the reload after the preview and
checks that the backend was asked for exactly these operations.
"""

from __future__ import annotations

from typing import Any, Callable

from ..check.base import kind, resolve_settings
from ..check.hysteresis import Health, initial_health
from ..check.service import carried
from ..config.blocks.virtual_server import virtual_server_name
from .model import State
from .plan import Operation, plan
from .pool import Live, desired_state, initial_quorum, live_weight, quorum_step

Lives = Callable[[str, Any], Live]


def live_after(checks: Any, servers: Any, config: Any) -> Lives:
    """What the checks would say of each real server of ``config`` right after
    CheckService.apply(``servers``, ``config``): ``servers`` is the reload's ServerPlan.
    ``checks`` None (no checker ran yet): every server starts as at start-up."""
    changed = set(servers.changed)
    log_all = config.global_defs.checker_log_all_failures
    foreseen: dict[tuple[str, str, int], Live] = {}

    def fresh(virtual: Any, real: Any) -> Live:
        healths = [initial_health(resolve_settings(virtual, real, block, log_all))
                   for block in real.checkers if kind(block.kind).runs]
        return Live(up=all(health.up for health in healths))

    def migrated(before: Any, virtual: Any, real: Any) -> Live:
        kinds = [block.kind for block in real.checkers if kind(block.kind).runs]
        jobs = carried(before.jobs, kinds)
        healths = [job.health if job is not None else Health(up=before.up) for job in jobs]
        weight = next((job.last.weight for job in jobs if job is not None and
                       job.last is not None and job.last.weight is not None), None)
        return Live(up=all(health.up for health in healths), weight=weight,
                    drained=before.drained)

    for key, (virtual, real) in servers.servers.items():
        before = None if checks is None else checks.state_of(key[0], real)
        if before is None:
            foreseen[key] = fresh(virtual, real)
        elif key in changed:
            foreseen[key] = migrated(before, virtual, real)
        else:                                   # kept: its jobs and state run on
            foreseen[key] = Live(up=before.up, weight=before.dynamic_weight(),
                                 drained=before.drained)

    def lives(virtual_name: str, real: Any) -> Live:
        return foreseen.get((virtual_name, real.address, real.port), Live())
    return lives


def quorum_after(config: Any, quorum: dict[str, bool], lives: Lives) -> dict[str, bool]:
    """Each virtual server's quorum after LoadBalancer.reload (kept by name, else as at
    start) and the first converge's quorum_step."""
    after = {}
    for virtual in config.virtual_servers:
        name = virtual_server_name(virtual)

        def live(real: Any, name: str = name) -> Live:
            return lives(name, real)
        up = quorum[name] if name in quorum else initial_quorum(virtual, live)
        after[name], _ = quorum_step(virtual, up, live_weight(virtual, live))
    return after


def suspended_after(config: Any, is_local: Callable[[str], bool]) -> frozenset[str]:
    """The ha_suspend virtual servers whose address is not ours now (LoadBalancer's rule)."""
    return frozenset(virtual_server_name(virtual) for virtual in config.virtual_servers
                     if virtual.ha_suspend and virtual.address is not None and
                     not is_local(virtual.address))


def kernel_operations(config: Any, servers: Any, checks: Any, lb: Any,
                      is_local: Callable[[str], bool] | None = None,
                      pause: Callable[[], None] | None = None
                      ) -> tuple[list[Operation], State, State]:
    """(operations, what the backend holds now, what it would hold) for reloading to
    ``config`` with the ServerPlan ``servers``; ``lb`` the running LoadBalancer, or None
    when no virtual server ran yet (the reload then starts the pools); ``pause`` as
    desired_state's (the loop runs between slices of a large file). The backend
    ``none`` holds nothing: its changes are told against the pools it was last given."""
    if is_local is None:
        from .service import address_is_local
        is_local = address_is_local
    lives = live_after(checks, servers, config)
    quorum = quorum_after(config, lb.quorum if lb is not None else {}, lives)
    desired = desired_state(config, lives, quorum, suspended_after(config, is_local),
                            pause=pause)
    if lb is None:
        current: State = {}
        owned: frozenset = frozenset()
    else:
        current = lb.desired if lb.backend.name == "none" else lb.backend.kernel
        owned = lb.owned
    return plan(desired, current, owned | frozenset(desired)), current, desired
