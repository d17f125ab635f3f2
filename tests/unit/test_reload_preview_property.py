"""Property: the reload preview of A -> B is what the reload then applies. For random pairs
of valid configurations (test_reload_property's generator, plus alpha checkers), with the
checks of A in random states (up, down, drained, a misc_dynamic weight), the preview's
kernel operations are exactly those the backend is asked for by the first converge after
the reload (a recording backend: the real CheckService, migration, LoadBalancer and
planner run), and its lists of instances and real servers are the plan's the reload
applies (reconcile.plan, the one decision)."""

from __future__ import annotations

import random
import re
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from director import reconcile
from director.check.checker import CheckResult
from director.lb.backends import ObserveOnly
from director.lb.foresee import kernel_operations
from director.lb.model import Destination, DestinationKey, Pool, Service, ServiceKey
from director.lb.plan import plan as plan_operations
from director.lb.service import LoadBalancer
from director.notify import Notifier
from director.reload_preview import describe, kernel_section, reloads_pools
from tests.unit.test_reload_property import checks_on, parse, random_config, set_up

FOREIGN = ServiceKey("TCP", "198.51.100.1", 443)      # someone else's: never touched


class RecordingBackend(ObserveOnly):
    """Holds what it was given (as IPVS does) and records the operations each sync asks."""

    name = "recording"

    def __init__(self) -> None:
        super().__init__()
        foreign = DestinationKey("198.51.100.2", 443)
        self.kernel = {FOREIGN: Pool(Service(FOREIGN), {foreign: Destination(foreign)})}
        self.asked: list[list] = []

    def sync(self, desired, owned, verify=True):
        self.asked.append(plan_operations(desired, self.kernel, owned))
        self.kernel = {key: Pool(pool.service, dict(pool.destinations))
                       for key, pool in desired.items()} | {
            key: pool for key, pool in self.kernel.items()
            if key not in desired and key not in owned}
        return []


def with_alpha(text: str, rng: random.Random) -> str:
    """Some checkers start their server down (alpha): an added server then starts out."""
    return re.sub("connect_timeout 1", lambda match: match.group(0) + (
        "\n            alpha" if rng.random() < 0.3 else ""), text)


def live_states(checks, rng: random.Random) -> None:
    for state in checks.real_servers:
        set_up(state, rng.random() < 0.6)
        state.drained = rng.random() < 0.15
        misc = [job for job in state.jobs if job.key[2] == "MISC_CHECK"]
        if misc and rng.random() < 0.5:
            misc[0].last = CheckResult(True, 0.01, weight=rng.choice((0, 5, 9)))


def scenario(seed: int, directory: Path):
    rng = random.Random(seed)
    old = parse(directory, with_alpha(random_config(rng), rng), "a.conf")
    new = parse(directory, with_alpha(random_config(rng), rng), "b.conf")
    plan = reconcile.plan(old, new)
    running = checks_on(old)
    live_states(running, rng)
    lb = LoadBalancer(old, running, "none", Notifier())
    lb.backend = RecordingBackend()
    for name in lb.keys:
        lb.quorum[name] = rng.random() < 0.8
    lb._converge(verify=False)
    return plan, running, lb


@settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.integers(min_value=0, max_value=2**32 - 1))
def test_the_preview_is_what_the_reload_then_applies(seed):
    with tempfile.TemporaryDirectory() as directory:
        plan, running, lb = scenario(seed, Path(directory))
    try:
        foreseen, current, desired = kernel_operations(plan.new, plan.servers, running, lb,
                                                       is_local=lambda address: True)
        kernel_before = dict(lb.backend.kernel)
        jobs_before = {state.name: [id(job) for job in state.jobs]
                       for state in running.real_servers}
        if reloads_pools(plan, running):                  # as Director._apply decides
            running.apply(plan.servers, plan.new)         # the reload's two steps
            lb.reload(plan.new)
            lb.backend.asked.clear()
            lb._converge(verify=False)
            assert lb.backend.asked == [foreseen], (seed, plan.describe())
            assert lb.desired == desired
        else:                   # the pools are left alone: A's converged state is B's
            foreseen = []
            assert lb.desired == desired
        preview = describe(plan, None, kernel_section(foreseen, current, "recording"))
        # the checkers said to restart are those whose jobs the reload replaced
        jobs_after = {state.name: [id(job) for job in state.jobs]
                      for state in running.real_servers}
        replaced = {f"{name[0]} / {name[1]}" for name, jobs in jobs_after.items()
                    if name in jobs_before and jobs and jobs != jobs_before[name]}
        with_jobs = {f"{name[0]} / {name[1]}" for name, jobs in jobs_after.items() if jobs}
        assert replaced == set(preview["checkers"]["restart"]) & with_jobs
        assert {f"{name[0]} / {name[1]}" for name in jobs_after
                if name not in jobs_before} == set(preview["checkers"]["start"])
        if not plan.unchanged:
            assert preview["summary"].startswith(plan.describe())  # the reload's own note
        assert lb.backend.kernel[FOREIGN] == kernel_before[FOREIGN]
        assert preview["kernel"]["operations"] == len(foreseen)
        sections = preview["kernel"]["services"], preview["kernel"]["destinations"]
        assert sum(len(items) for section in sections for items in section.values()) == \
            len(foreseen)
        # the lists are the plan's, which the reload applies
        assert [i["name"] for i in preview["vrrp_instances"]["changed"]] == \
            list(plan.instances.changed)
        assert [i["name"] for i in preview["vrrp_instances"]["added"]] == \
            list(plan.instances.added)
        assert [i["name"] for i in preview["vrrp_instances"]["removed"]] == \
            list(plan.instances.removed)
        assert [(s["virtual_server"], s["real_server"].split(":")[0])
                for s in preview["real_servers"]["added"]] == \
            [(key[0], key[1]) for key in plan.servers.added]
        assert len(preview["checkers"]["restart"]) == len(plan.servers.changed)
        assert preview["unchanged"] == plan.unchanged
        if plan.unchanged:
            assert preview["summary"] == "nothing would change" and not foreseen
    finally:
        running.stop()
