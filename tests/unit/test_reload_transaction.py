"""The reload transaction of daemon.Director with recording stand-ins for its subsystems
(the real ones are exercised in tests/functional/test_reload_*): a failure while preparing
changes nothing; a failure while applying is rolled back, every subsystem back on the running
configuration, which is what stays committed; both are counted as failures."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from director.config import load_config
from director.daemon import Director

ONE = """vrrp_instance VI_1 {
    interface lo
    virtual_router_id 51
    priority 100
    virtual_ipaddress {
        192.0.2.1/24
    }
}
virtual_server 192.0.2.10 80 {
    delay_loop 1
    real_server 10.0.0.1 80 {
        TCP_CHECK {
            connect_timeout 1
        }
    }
}
"""
TWO = ONE.replace("priority 100", "priority 110").replace("10.0.0.1 80", "10.0.0.2 80")


class Recorder:
    def __init__(self, fail_on: str = "", times: int = 1):
        self.calls: list[tuple] = []
        self.fail_on, self.times = fail_on, times

    def _maybe_fail(self, name: str) -> None:
        if self.fail_on == name and self.times > 0:
            self.times -= 1
            raise OSError(f"{name} failed on purpose")

    # checks
    real_servers: list = []             # the overrides walk them after an apply

    def apply(self, plan, config):
        self.calls.append(("apply", config.vrrp_instances[0].priority, plan))
        self._maybe_fail("apply")

    # lb
    def reload(self, config):
        self.calls.append(("reload", config.vrrp_instances[0].priority))

    # vrrp
    def prepare(self, plan, config):
        self.calls.append(("prepare", config.vrrp_instances[0].priority))
        self._maybe_fail("prepare")
        return ("prepared", config.vrrp_instances[0].priority)


class VrrpRecorder(Recorder):
    def apply(self, prepared):
        self.calls.append(("apply", prepared[1]))
        self._maybe_fail("apply")


@pytest.fixture
def director(tmp_path):
    path = tmp_path / "keepalived.conf"
    path.write_text(ONE)
    config = load_config(str(path), config_id="t", interface_exists=None).config
    options = SimpleNamespace(use_file=str(path), vrrp=False, check=False, pid=None,
                              state_dir=str(tmp_path / "state"))
    daemon = Director(config, options, "t")
    daemon.checks, daemon.lb, daemon.vrrp = Recorder(), Recorder(), VrrpRecorder()
    path.write_text(TWO)
    return daemon


def test_a_failure_while_preparing_changes_nothing(director):
    director.vrrp.fail_on = "prepare"
    old = director.config
    director.handle_reload()
    assert director.reload_status["result"] == "failure"
    assert "preparing the new configuration" in director.reload_status["errors"][0]
    assert director.checks.calls == [] and director.lb.calls == []
    assert director.config is old and director.reloads == {"success": 0, "failure": 1}


def test_a_failure_while_applying_is_rolled_back_to_the_running_configuration(director):
    director.vrrp.fail_on = "apply"
    old = director.config
    director.handle_reload()
    status = director.reload_status
    assert status["result"] == "failure" and "rolled back" in status["errors"][0], status
    # forward to 110 (the new file), then back to 100 (the running one), in every subsystem
    assert [(c[0], c[1]) for c in director.checks.calls] == [("apply", 110), ("apply", 100)]
    forward, back = director.checks.calls[0][2], director.checks.calls[1][2]
    assert forward.added == back.removed and forward.removed == back.added
    assert director.lb.calls == [("reload", 110), ("reload", 100)]
    assert director.vrrp.calls == [("prepare", 110), ("apply", 110), ("prepare", 100),
                                   ("apply", 100)]
    assert director.config is old and director.reloads == {"success": 0, "failure": 1}


def test_a_rollback_that_fails_too_says_to_restart(director):
    director.vrrp.fail_on, director.vrrp.times = "apply", 2
    director.handle_reload()
    assert "restart the daemon" in director.reload_status["errors"][0]


def test_success_commits_the_new_configuration_last(director):
    director.handle_reload()
    assert director.reload_status["result"] == "success", director.reload_status
    assert director.config.vrrp_instances[0].priority == 110
    assert director.reload_status["note"] == \
        "real servers: 1 added, 1 removed; VRRP instances: 1 changed"


@pytest.mark.parametrize("busy", [False, True])
def test_a_reload_freezes_no_garbage(director, monkeypatch, busy):
    """A reload freezes the new model (gc.freeze) and with it every object alive then,
    garbage included: a cycle frozen is never collected. The web face leaves cycles with
    every request (werkzeug's route matcher, exceptions' tracebacks): the soak bench
    (bench/soak.py) found them piling up, 26,000 objects after 50 reloads in a minute.
    What died before the reload must be gone, not frozen; also when the process was
    ``busy`` (many objects made since the collector's last pass): the soak under load found
    them frozen (+30,000 objects, +21 MB in 20 minutes) when that count decided the pass."""
    import gc
    import weakref

    from director import daemon
    if busy:
        monkeypatch.setattr(daemon, "FREEZE_COLLECT_MAX", 0, raising=False)  # the rule before

    class Cycle:
        pass

    garbage = Cycle()
    garbage.me = garbage
    gone = weakref.ref(garbage)
    del garbage
    enabled = gc.isenabled()
    gc.disable()                       # as if the collector had not come round yet
    try:
        director.handle_reload()
        assert director.reload_status["result"] == "success", director.reload_status
        assert gone() is None
    finally:
        if enabled:
            gc.enable()
