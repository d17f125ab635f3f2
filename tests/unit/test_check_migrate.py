"""Checker state across a reload (keepalived's migrate_checkers), through the real
CheckService and reconcile.plan: a kept server keeps everything; a changed checker of the
same kind keeps its health and counts (retry and rise progress too); a new kind starts where
the server was; a state that changes all the same is an event with its notify."""

from __future__ import annotations

from director import reconcile
from director.check.hysteresis import Health
from director.check.service import CheckService
from director.clock import FakeClock
from director.config import load_config
from director.notify_fifo import NotifyFifos

NAME = ("192.0.2.1:80/TCP", "10.0.0.1:80")


def config_of(tmp_path, checkers: str, extra: str = ""):
    path = tmp_path / "k.conf"
    path.write_text(f"""virtual_server 192.0.2.1 80 {{
    delay_loop 1
    protocol TCP
    real_server 10.0.0.1 80 {{
{extra}{checkers}
    }}
}}
""")
    result = load_config(str(path), config_id="t", interface_exists=None)
    assert result.ok, [str(d) for d in result.diagnostics]
    return result.config


TCP = "        TCP_CHECK {\n            connect_timeout 1\n        }\n"
TCP_SLOW = "        TCP_CHECK {\n            connect_timeout 2\n        }\n"
MISC = "        MISC_CHECK {\n            misc_path /bin/true\n        }\n"


class Notes:
    def __init__(self):
        self.calls = []
        self.fifos = NotifyFifos()           # none configured: the lines go nowhere

    def notify(self, command, extra=(), why=""):
        self.calls.append((command.line, why))


def running(config, notes=None):
    checks = CheckService(config, FakeClock(), notes or Notes(), workers=0)
    checks.start()                     # jobs built; nothing runs without a yield
    events = []
    checks.listeners.append(lambda state: events.append((state.name, state.up)))
    return checks, events


def reload(checks, new):
    checks.apply(reconcile.plan(checks.config, new).servers, new)
    return checks.find(*NAME)


def test_a_down_server_whose_checker_changed_stays_down_and_keeps_its_counts(tmp_path):
    checks, events = running(config_of(tmp_path, TCP))
    state = checks.find(*NAME)
    (job,) = state.jobs
    job.health, job.ok, job.failed = Health(up=False, successes=1), 5, 7
    state.up = False
    after = reload(checks, config_of(tmp_path, TCP_SLOW))
    assert after is not state                                 # new checker ...
    assert after.up is False and after.jobs[0].health == Health(up=False, successes=1)
    assert (after.jobs[0].ok, after.jobs[0].failed) == (5, 7)   # ... same story
    assert after.jobs[0].settings.connect_timeout == 2
    assert events == []


def test_retry_progress_of_an_up_server_is_carried(tmp_path):
    checks, _ = running(config_of(tmp_path, TCP))
    state = checks.find(*NAME)
    state.jobs[0].health = Health(up=True, failures=1)       # one failed attempt, retrying
    after = reload(checks, config_of(tmp_path, TCP_SLOW))
    assert after.up is True and after.jobs[0].health == Health(up=True, failures=1)


def test_a_new_kind_starts_where_the_server_was(tmp_path):
    checks, events = running(config_of(tmp_path, TCP))
    state = checks.find(*NAME)
    state.jobs[0].health = Health(up=False)
    state.up = False
    after = reload(checks, config_of(tmp_path, MISC))
    assert after.up is False and after.jobs[0].health.up is False
    assert events == []


def test_removing_the_failing_checker_is_a_change_with_its_event_and_notify(tmp_path):
    notes = Notes()
    notify = '        notify_up "/bin/echo up"\n'
    checks, events = running(config_of(tmp_path, TCP + MISC, notify), notes)
    state = checks.find(*NAME)
    tcp, misc = state.jobs
    tcp.health = Health(up=False)                             # TCP fails, MISC passes
    state.up = False
    after = reload(checks, config_of(tmp_path, MISC, notify))
    assert after.up is True
    assert events == [(NAME, True)]
    assert notes.calls == [("/bin/echo up", "real server 10.0.0.1:80 up")]


def test_a_kept_server_keeps_its_very_jobs_and_a_drain(tmp_path):
    checks, _ = running(config_of(tmp_path, TCP))
    state = checks.find(*NAME)
    state.drained = True
    job = state.jobs[0]
    weight = config_of(tmp_path, TCP, "        weight 5\n")
    assert reload(checks, weight) is state and state.jobs[0] is job
    assert state.real_server.weight == 5 and state.drained
    changed = reload(checks, config_of(tmp_path, TCP_SLOW, "        weight 5\n"))
    assert changed is not state and changed.drained


def test_a_changed_or_removed_servers_job_is_freed_without_the_collector(tmp_path):
    """A reload freezes what lives then (gc.freeze: kept out of the collector's passes), and
    a frozen cycle is never collected: a job in a cycle with its own callback (job.done =
    partial(_finished, job)) stayed for ever once its server changed or left, with its
    checker, settings and counters (bench/soak.py: 1,200 objects a reload at 2,000 servers).
    Reference counting alone must free it: no job may be left in a cycle."""
    import gc

    from director.check.scheduler import Job

    def config(first: str, second: bool):
        path = tmp_path / "k.conf"        # loopback: the checks really run
        path.write_text("virtual_server 192.0.2.1 80 {\n    delay_loop 1\n"
                        f"    real_server 127.0.0.1 1 {{\n{first}    }}\n" +
                        ("    real_server 127.0.0.1 2 {\n" + TCP + "    }\n" if second else "")
                        + "}\n")
        return load_config(str(path), config_id="t", interface_exists=None).config

    clock = FakeClock()
    checks = CheckService(config(TCP, True), clock, Notes(), workers=0)
    checks.start()
    gc.collect()                       # what earlier tests left
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)     # what a collection finds stays in gc.garbage
    try:
        new = config(TCP_SLOW, False)  # the first server changed, the second removed
        checks.apply(reconcile.plan(checks.config, new).servers, new)
        clock.advance(3.0)             # their deadlines leave the scheduler's heap
        gc.collect()
        # this test's jobs only: another test's stopped scheduler may still hold its own (a
        # killed greenlet keeps them until the loop runs it once more)
        assert [o.key for o in gc.garbage
                if isinstance(o, Job) and o.key[1].startswith("127.0.0.1")] == []
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
        checks.stop()


AGENT = ("        AGENT_CHECK {{\n            connect_port 5555\n            connect_timeout {}\n"
         "        }}\n")


def test_what_an_agent_said_outlives_a_change_of_its_checker(tmp_path):
    """Only the agent undoes its drain or maint (HAProxy): a reload that changes the real
    server's AGENT_CHECK keeps what the agent said until the agent says otherwise."""
    from director.check.agent import parse_line
    checks, _ = running(config_of(tmp_path, AGENT.format(1)))
    state = checks.find(*NAME)
    [job] = state.jobs
    job.checker.state = job.checker.state.apply(parse_line("maint 50%"), "maint 50%")
    job.last = job.checker.result(0.0)
    assert state.has_agent and state.agent().admin == "maint"
    after = reload(checks, config_of(tmp_path, AGENT.format(2)))
    [new_job] = after.jobs
    assert new_job is not job and new_job.checker.state.admin == "maint"
    assert after.agent().admin == "maint" and after.dynamic_weight() == 0   # 50% of 1
