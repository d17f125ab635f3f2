"""The views, their JSON and their /metrics lines kept between requests (issue 17) are never
stale: through the real CheckService and LoadBalancer (backend none, a FakeClock), each
change of something a real or virtual server's view shows is in the very next
/api/v1/state and /metrics, byte for byte what an app and services that kept nothing
write of the same live state. And what did not change is not encoded again."""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

import pytest

from director import reconcile
from director.check.checker import CheckResult
from director.check.service import CheckService
from director.clock import FakeClock
from director.config import load_config
from director.lb.model import Counters, DestinationKey, Pool
from director.lb import service as lb_service
from director.lb.service import LoadBalancer
from director.notify import Notifier
from director.overrides import Entry
from tests.unit.test_check_migrate import Notes
from tests.unit.test_web_api import TOKEN, FakeDirector, contract_state
from web import create_app

VS = ("192.0.2.1:80/TCP", "192.0.2.2:80/TCP")


def config_text(weight: int = 1) -> str:
    out = []
    for vs in ("192.0.2.1", "192.0.2.2"):
        out.append(f"virtual_server {vs} 80 {{\n    delay_loop 10\n    lb_algo wrr\n"
                   "    protocol TCP\n    quorum 2\n    sorry_server 10.9.9.9 80\n")
        for n, address in enumerate(("10.0.0.1", "10.0.0.2")):
            out.append(f"    real_server {address} 80 {{\n"
                       f"        weight {weight if n == 0 else 1}\n"
                       "        TCP_CHECK {\n            connect_timeout 1\n        }\n    }\n")
        out.append("}\n")
    return "".join(out)


def config_of(tmp_path, weight: int = 1):
    path = tmp_path / f"k{weight}.conf"
    path.write_text(config_text(weight))
    result = load_config(str(path), config_id="t", interface_exists=None)
    assert result.ok, [str(d) for d in result.diagnostics]
    return result.config


class Live(FakeDirector):
    """The contract's state with the virtual servers of a real load balancer."""

    def __init__(self, lb):
        super().__init__()
        self.lb = lb

    def snapshot(self, with_jobs=False):
        return replace(contract_state(with_jobs),
                       virtual_servers=self.lb.virtual_servers())


@pytest.fixture
def live(tmp_path, monkeypatch):
    # the load balancer's clock stands still: a drain's seconds are the same in both
    monkeypatch.setattr(lb_service, "time", SimpleNamespace(monotonic=lambda: 5000.0,
                                                            time=lambda: 1764000000.0))
    checks = CheckService(config_of(tmp_path), FakeClock(), Notes(), workers=0)
    checks.start()                      # jobs built; nothing runs without a yield
    lb = LoadBalancer(checks.config, checks, "none", Notifier(None))
    lb.start()                          # the first converge
    app = create_app(Live(lb), admin_token=TOKEN)
    yield checks, lb, app.test_client(), app
    lb.stop()
    checks.stop()


def bodies(client):
    state = client.get("/api/v1/state")
    metrics = client.get("/metrics")
    assert state.status_code == metrics.status_code == 200
    return state.get_data(), metrics.get_data()


def kept_nothing(checks, lb):
    """What the same live state gives with every kept view and encoding forgotten."""
    lb._views = {}
    for state in checks.real_servers:
        state.view = None
    app = create_app(Live(lb), admin_token=TOKEN)
    return bodies(app.test_client())


def result(checks, vs, address, ok, duration=0.01, error=None):
    state = checks.find(vs, f"{address}:80")
    (job,) = state.jobs
    checks.scheduler._finished(job, CheckResult(ok, duration, error))   # as a check ends
    return state


def test_every_change_is_in_the_next_state_and_metrics(live, tmp_path):
    checks, lb, client, app = live
    first = bodies(client)
    steps = []

    def step(name):
        seen = bodies(client)
        assert seen == kept_nothing(checks, lb), name
        steps.append(name)
        return seen

    assert step("start") == first
    result(checks, VS[0], "10.0.0.1", True)
    step("a check passed: ok, last_check")
    for _ in range(3):                          # retry 1 by default: a fall on the 2nd
        result(checks, VS[0], "10.0.0.1", False, 0.5, "connect: refused")
    lb._converge_guarded(verify=False)
    after = step("down: up, failed, error, desired weight, quorum, sorry server")
    assert b'"up":false' in after[0] and b'"quorum_ok":false' in after[0]
    state = checks.find(VS[1], "10.0.0.2:80")
    state.drained = True
    lb._converge_guarded(verify=False)
    step("drained: drained, desired weight, drain")
    state.drained = False
    state.weight_override = 5
    state.overrides = (Entry(VS[1], "10.0.0.2:80", "weight", 5, 1, "lb1", "test", 1.0),)
    lb._converge_guarded(verify=False)
    step("an override: overrides, weight_override, desired weight")
    state.overrides = (Entry(VS[1], "10.0.0.2:80", "maintenance", True, 2, "lb1", "t", 2.0),)
    step("maintenance")
    state.weight_override = 9           # the pools change, not what the checks say
    lb._converge_guarded(verify=False)
    after = step("the desired weight alone")
    assert b'"desired_weight":9' in after[0]
    lb.backend.kernel = {key: Pool(pool.service, {
        dest_key: replace(dest, weight=7) for dest_key, dest in pool.destinations.items()})
        for key, pool in lb.desired.items()}
    step("the kernel's weights: weight, in_kernel")
    lb.suspended = frozenset({VS[0]})
    step("suspended")
    (key,) = lb.keys[VS[1]]
    traffic = {(key, DestinationKey("10.0.0.1", 80)): Counters(1, 2, 3, 4, 5),
               (key, None): Counters(1, 2, 3, 4, 5)}
    lb.backend.counters = lambda: traffic
    step("traffic counters appear")
    traffic[(key, DestinationKey("10.0.0.1", 80))] = Counters(2, 4, 6, 8, 10)
    after = step("traffic counters change on every read")
    assert b'"bytes_out":10' in after[0] and b'direction="out"} 10\n' in after[1]
    new = config_of(tmp_path, weight=3)
    checks.apply(reconcile.plan(checks.config, new).servers, new)
    lb.reload(new)
    after = step("a reload: configured weight")
    assert b'"configured_weight":3' in after[0]
    assert len(steps) == 12


def test_what_did_not_change_is_not_encoded_again(live):
    checks, lb, client, app = live
    fragments = app.config["STATE_FRAGMENTS"]
    encoded = []
    walk = fragments.walk

    def counting():
        made = walk()
        encoded.append(made)
        return made

    fragments.walk = counting
    bodies(client)
    assert encoded[-1].encoded == 6             # 2 virtual servers, 4 real servers
    views = lb.virtual_servers()
    bodies(client)
    assert encoded[-1].encoded == 0
    assert lb.virtual_servers() == views and all(
        a is b for a, b in zip(lb.virtual_servers(), views))
    result(checks, VS[1], "10.0.0.2", True)
    bodies(client)
    assert encoded[-1].encoded == 2             # that real server and its virtual server
    after = lb.virtual_servers()
    assert after[0] is views[0] and after[1] is not views[1]
    assert after[1].real_servers[0] is views[1].real_servers[0]


def test_a_replaced_view_is_not_kept_alive(live):
    """What the web face and the metrics made of a view is kept on the view, not in maps of
    their own: once the services have replaced a view, nothing holds it (issue 17: with every
    server changed between two scrapes, the readers' maps kept a second set of views alive
    for the garbage collector to walk). One set of views serves both readers."""
    import gc

    from director.state import CheckView, RealServerView

    checks, lb, client, app = live

    def alive(kind):
        gc.collect()
        return sum(1 for item in gc.get_objects() if type(item) is kind)

    bodies(client)
    # the contract state's own views (FakeDirector) are made per request and die with it
    servers, checked = alive(RealServerView), alive(CheckView)
    assert (servers, checked) == (4, 4)
    for vs in VS:                               # every server changed since the last scrape
        for address in ("10.0.0.1", "10.0.0.2"):
            result(checks, vs, address, True)
    bodies(client)
    assert (alive(RealServerView), alive(CheckView)) == (servers, checked)
    state, metrics = bodies(client)
    assert b'result="success"} 1\n' in metrics and b'"checks":{"ok":1' in state
