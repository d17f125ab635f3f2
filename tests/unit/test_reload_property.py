"""Property: for random pairs of valid configurations A and B, reloading A -> B ends where a
fresh start on B does, with the checkers' states carried: the same pools for the kernel (the
load balancer's desired state, through the real CheckService, migration and LoadBalancer),
the same VRRP instances and sync groups running (the plan applied to what runs).

The configurations are written as keepalived.conf text and parsed, so the identities the
plan uses are those of real files. Seeds are fixed: a failure names its seed."""

from __future__ import annotations

import random

import pytest

from director import reconcile
from director.check.hysteresis import Health
from director.check.service import CheckService
from director.clock import FakeClock
from director.config import load_config
from director.lb.service import LoadBalancer
from director.notify import Notifier

PAIRS = 60


def random_config(rng: random.Random) -> str:
    """A small but varied file: instances, sync groups and virtual servers drawn from fixed
    pools, so that two draws share some names and differ in others."""
    parts = ["global_defs {\n    router_id PROP\n}\n"]
    instances = rng.sample(["VI_1", "VI_2", "VI_3", "VI_4"], rng.randint(0, 4))
    for name in instances:
        number = int(name[3:])
        parts.append(
            f"vrrp_instance {name} {{\n    interface lo\n"
            f"    virtual_router_id {50 + number}\n    priority {rng.choice((100, 150))}\n"
            f"    advert_int {rng.choice((1, 2))}\n"
            f"    virtual_ipaddress {{\n        192.0.2.{number}/24\n    }}\n}}\n")
    if len(instances) >= 2 and rng.random() < 0.6:
        members = rng.sample(instances, 2)
        parts.append(f"vrrp_sync_group {rng.choice(('G1', 'G2'))} {{\n    group {{\n"
                     + "".join(f"        {m}\n" for m in members) + "    }\n}\n")
    for vs in rng.sample(range(1, 5), rng.randint(0, 4)):
        reals = []
        for rs in rng.sample(range(1, 7), rng.randint(1, 5)):
            kind = rng.choice(("TCP_CHECK", "TCP_CHECK", "HTTP_GET", "MISC_CHECK"))
            body = {"TCP_CHECK": f"connect_timeout {rng.choice((1, 2))}",
                    "HTTP_GET": "url {\n                path /\n                "
                                "status_code 200\n            }",
                    "MISC_CHECK": "misc_path /bin/true"}[kind]
            inhibit = "        inhibit_on_failure\n" if rng.random() < 0.2 else ""
            reals.append(f"    real_server 10.0.{vs}.{rs} 80 {{\n"
                         f"        weight {rng.choice((1, 2, 3))}\n{inhibit}"
                         f"        {kind} {{\n            {body}\n        }}\n    }}\n")
        sorry = "    sorry_server 10.9.9.9 80\n" if rng.random() < 0.3 else ""
        parts.append(f"virtual_server 192.0.2.{100 + vs} 80 {{\n"
                     f"    delay_loop {rng.choice((1, 2))}\n"
                     f"    lb_algo {rng.choice(('rr', 'wrr'))}\n    lb_kind NAT\n"
                     f"    protocol TCP\n    quorum {rng.choice((1, 2))}\n{sorry}"
                     + "".join(reals) + "}\n")
    return "".join(parts)


def parse(tmp_path, text: str, name: str):
    path = tmp_path / name
    path.write_text(text)
    result = load_config(str(path), config_id="prop", interface_exists=None)
    assert result.ok, [str(d) for d in result.errors] + [text]
    return result.config


def checks_on(config) -> CheckService:
    checks = CheckService(config, FakeClock(), Notifier(), workers=0)
    checks.start()                       # jobs built; nothing runs without a yield
    return checks


def set_up(state, up: bool) -> None:
    for job in state.jobs:
        job.health = Health(up=up)
    state.up = state.compute_up()


def balancer(config, checks) -> LoadBalancer:
    lb = LoadBalancer(config, checks, "none", Notifier())
    for name in lb.keys:
        lb.quorum[name] = True
    lb._converge(verify=False)           # quorum from the checks' states, desired state
    return lb


@pytest.mark.parametrize("seed", range(PAIRS))
def test_reloading_a_to_b_ends_where_a_fresh_start_on_b_does(tmp_path, seed):
    rng = random.Random(seed)
    old = parse(tmp_path, random_config(rng), "a.conf")
    new = parse(tmp_path, random_config(rng), "b.conf")
    plan = reconcile.plan(old, new)

    # what the checks said while A ran: each server up or down at random
    running = checks_on(old)
    said = {}
    for state in running.real_servers:
        said[(state.name[0], state.real_server.address, state.real_server.port)] = up = \
            rng.random() < 0.6
        set_up(state, up)
    lb = balancer(old, running)
    running.apply(plan.servers, new)
    lb.reload(new)
    lb._converge(verify=False)

    fresh = checks_on(new)
    for state in fresh.real_servers:
        key = (state.name[0], state.real_server.address, state.real_server.port)
        if key in said:                  # carried: the state it had under A
            set_up(state, said[key])
    fresh_lb = balancer(new, fresh)

    assert {s.name: s.up for s in running.real_servers} == \
        {s.name: s.up for s in fresh.real_servers}
    assert [s.name for s in running.real_servers] == [s.name for s in fresh.real_servers]
    assert lb.desired == fresh_lb.desired, plan
    for checks in (running, fresh):
        checks.stop()

    # VRRP: the plan applied to what ran under A is what B runs
    instances = {i.name: i for i in old.vrrp_instances}
    for name in plan.instances.going:
        del instances[name]
    wanted = {i.name: i for i in new.vrrp_instances}
    for name in plan.instances.starting:
        instances[name] = wanted[name]
    assert instances == wanted
    groups = {g.name: g for g in old.vrrp_sync_groups}
    for name in plan.instances.sync_groups:
        groups.pop(name, None)
    groups.update({g.name: g for g in new.vrrp_sync_groups
                   if g.name in plan.instances.sync_groups})
    assert groups == {g.name: g for g in new.vrrp_sync_groups}
    restarted = set(plan.instances.starting)
    for group in new.vrrp_sync_groups:   # a group whose member restarted is rebuilt
        if restarted & set(group.group):
            assert group.name in plan.instances.sync_groups


def test_a_plan_of_a_file_against_itself_changes_nothing(tmp_path):
    for seed in range(20):
        text = random_config(random.Random(seed))
        plan = reconcile.plan(parse(tmp_path, text, "a.conf"), parse(tmp_path, text, "b.conf"))
        assert plan.unchanged and plan.instances.unchanged and plan.servers.unchanged
        assert len(plan.servers.kept) == len(plan.servers.servers)
