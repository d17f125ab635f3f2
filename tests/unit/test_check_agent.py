"""AGENT_CHECK's reply parser (HAProxy's tcpcheck_agent_expect_reply and its weight and
maxconn rules), the sticky state it builds, what the checker returns, and how the pool
rules read it: drain keeps the server at weight 0, maint takes it out, maxconn is its
uthreshold."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from director.check.agent import (MAX_LINE, MAX_PERCENT, MAX_WEIGHT, AgentCheck, AgentReply,
                                  AgentState, Unreadable, Weight, agent_send, parse_line,
                                  parse_maxconn, parse_reply, parse_weight)
from director.check.checker import CheckResult, CheckSettings, Target
from director.check.scheduler import Scheduler
from director.clock import FakeClock
from director.lb.pool import Live, live_weight, pool
from director.lb.model import ServiceKey

# -- the line -----------------------------------------------------------------------------------

LINES = [
    # (line, health, admin, weight, maxconn, description)
    ("75%", None, None, Weight(75, True), None, ""),
    ("up", "up", None, None, None, ""),
    ("UP", "up", None, None, None, ""),
    ("Drain", None, "drain", None, None, ""),
    ("maint", None, "maint", None, None, ""),
    ("ready 100%", None, "ready", Weight(100, True), None, ""),
    ("down #disk full", "down", None, None, None, "disk full"),
    ("fail # bad answer ", "fail", None, None, None, "bad answer "),
    ("up,#why", "up", None, None, None, "why"),
    ("stopped", "stopped", None, None, None, ""),
    ("up,50%,drain", "up", "drain", Weight(50, True), None, ""),
    ("up\t50%  maint", "up", "maint", Weight(50, True), None, ""),
    ("weight:30", None, None, Weight(30, False), None, ""),
    ("WEIGHT:30%", None, None, Weight(30, True), None, ""),
    ("maxconn:30", None, None, None, 30, ""),
    ("MAXCONN:0 up", "up", None, None, 0, ""),
    # the last of a kind wins
    ("up down", "down", None, None, None, ""),
    ("drain ready", None, "ready", None, None, ""),
    ("10% 20%", None, None, Weight(20, True), None, ""),
    # a description only after '#'; words after it are not read
    ("# up drain", None, None, None, None, "up drain"),
    ("", None, None, None, None, ""),
    ("   ,, \t", None, None, None, None, ""),
    ("99999%", None, None, Weight(MAX_PERCENT, True), None, ""),
    ("0%", None, None, Weight(0, True), None, ""),
]


@pytest.mark.parametrize("line,health,admin,weight,maxconn,description", LINES)
def test_a_line_is_read_as_haproxy_reads_it(line, health, admin, weight, maxconn, description):
    reply = parse_line(line)
    assert (reply.health, reply.admin, reply.weight, reply.maxconn, reply.description) == \
        (health, admin, weight, maxconn, description)
    assert reply.unknown == reply.invalid == ()


@pytest.mark.parametrize("line,unknown,invalid", [
    ("hello", ("hello",), ()),
    ("down#disk full", ("down#disk", "full"), ()),   # '#' starts a description only as a word
    ("up banana 50%", ("banana",), ()),
    ("5x%", (), ("5x%: trailing garbage in weight",)),
    ("weight:", (), ("weight:: empty weight",)),
    ("weight:abc", (), ("weight:abc: weight without digits",)),
    ("weight:-5%", (), ("weight:-5%: relative weight must be positive",)),
    (f"weight:{MAX_WEIGHT + 1}", (), (f"weight:{MAX_WEIGHT + 1}: absolute weight must be "
                                     f"between 0 and {MAX_WEIGHT}",)),
    ("maxconn:x", (), ("maxconn:x: maxconn without digits",)),
    ("maxconn:5z", (), ("maxconn:5z: trailing garbage in maxconn",)),
    ("%50", ("%50",), ()),                  # a weight word starts with a digit
    ("x" * 100, ("x" * 40,), ()),           # shown cut short
])
def test_what_is_not_understood_is_listed_and_the_rest_applies(line, unknown, invalid):
    reply = parse_line(line)
    assert (reply.unknown, reply.invalid) == (unknown, invalid)
    if line.startswith("up "):
        assert reply.health == "up" and reply.weight == Weight(50, True)


def test_weights_and_maxconn_follow_haproxys_strtol():
    assert parse_weight(" 7%") == Weight(7, True)          # strtol skips leading blanks
    assert parse_weight("+8") == Weight(8, False)
    with pytest.raises(ValueError):
        parse_weight("7%%")
    assert parse_maxconn("12") == 12
    with pytest.raises(ValueError):
        parse_maxconn("")
    assert Weight(50, True).of(10) == 5 and Weight(50, True).of(1) == 0
    assert Weight(7, False).of(100) == 7
    assert Weight(MAX_PERCENT, True).of(MAX_WEIGHT) == MAX_WEIGHT      # capped, no overflow


@pytest.mark.parametrize("data,line", [
    (b"50%\n", "50%"), (b"50%\r\n", "50%"), (b"drain\rjunk", "drain"),
    (b"up\nmaint\n", "up"),                 # only the first line counts
    (b"\xff\xfeup\n", "\xff\xfeup"),        # bytes are not UTF-8's business
])
def test_a_reply_is_its_first_line(data, line):
    assert parse_reply(data)[0] == line


@pytest.mark.parametrize("data,reason", [
    (b"", "incomplete"), (b"50%", "incomplete"), (b"up\0\n", "nul"),
    (b"x" * (MAX_LINE + 1), "too_long"), (b"x" * (MAX_LINE * 4), "too_long"),
])
def test_a_reply_without_a_line_is_ignored_with_a_reason(data, reason):
    with pytest.raises(Unreadable) as caught:
        parse_reply(data)
    assert caught.value.reason == reason


# -- the sticky state ---------------------------------------------------------------------------

def test_what_a_reply_does_not_say_stays():
    state = AgentState()
    assert (state.health, state.admin, state.weight) == ("up", "ready", None)
    state = state.apply(parse_line("50%"), "50%")
    state = state.apply(parse_line("drain"), "drain")
    assert (state.health, state.admin, state.weight) == ("up", "drain", Weight(50, True))
    state = state.apply(parse_line("down #oops"), "down #oops")
    assert (state.health, state.admin, state.description) == ("down", "drain", "oops")
    state = state.apply(parse_line("up ready"), "up ready")
    assert (state.health, state.admin, state.weight) == ("up", "ready", Weight(50, True))
    assert state.replies == 4 and state.reply == "up ready"


def test_equality_is_the_effect_only():
    one = AgentState().apply(parse_line("50%"), "50%")
    two = AgentState().apply(parse_line("50% # other words"), "50% # other words")
    assert one == two
    assert one.failed("agent: Connection refused") == one
    assert one != one.apply(parse_line("drain"), "drain")


def test_the_effect_in_words_and_json():
    state = AgentState().apply(parse_line("up 50% drain maxconn:9 bogus"), "…")
    assert state.effect(10) == "up 50% (5) drain maxconn 9"
    shown = state.as_json(10)
    assert shown["weight"] == 5 and shown["weight_asked"] == "50%"
    assert shown["admin"] == "drain" and shown["maxconn"] == 9
    assert shown["error"] == "unknown word 'bogus'"


def test_agent_send_escapes():
    assert agent_send(r"backend web\n") == b"backend web\n"
    assert agent_send(r"a\tb\\n\r\q") == b"a\tb\\n\r\\q"


# -- the checker, its I/O replaced ---------------------------------------------------------------

class Scripted(AgentCheck):
    """The real checker with its conversation replaced by what it is told to read."""

    def __init__(self, replies, base_weight=10):
        super().__init__(SimpleNamespace(agent_send=None), Target("192.0.2.1", 5555, 1.0),
                         base_weight=base_weight)
        self.replies = list(replies)

    def converse(self):
        reply = self.replies.pop(0)
        if isinstance(reply, Exception):
            raise reply
        return reply


def test_results_carry_the_weight_the_health_and_the_agent():
    checker = Scripted([b"50%\n", b"drain\n", OSError("agent: Connection refused"),
                        b"down # maintenance window\n", b"garbage\n", b"junk without end",
                        b"up ready 200%\n"])
    first = checker.check()
    assert first.ok and first.weight == 5 and first.agent.admin == "ready"
    assert first.reply_error is None
    second = checker.check()
    assert second.ok and second.weight == 5 and second.agent.admin == "drain"
    unreachable = checker.check()             # nothing changes: HAProxy ignores it
    assert unreachable.ok and unreachable.agent == second.agent
    assert unreachable.agent.error == "agent: Connection refused"
    assert unreachable.reply_error is None
    down = checker.check()
    assert not down.ok and down.error == "agent says down: maintenance window"
    garbage = checker.check()                 # counted; the state stays down
    assert not garbage.ok and garbage.reply_error == "unknown_word"
    incomplete = checker.check()
    assert not incomplete.ok and incomplete.reply_error == "incomplete"
    assert incomplete.agent.ignored == 2
    back = checker.check()
    assert back.ok and back.weight == 20 and back.agent.admin == "ready"


def test_a_reload_keeps_what_the_agent_said():
    before = Scripted([b"maint 30%\n"])
    before.check()
    after = Scripted([OSError("agent: timeout")])
    after.inherit(before)
    result = after.check()
    assert result.agent.admin == "maint" and result.weight == 3


# -- the scheduler wakes the load balancer on an effect ------------------------------------------

def test_an_effect_change_is_heard_though_up_down_does_not_change():
    clock = FakeClock(start=1000.0)
    scheduler = Scheduler(clock, workers=2)
    settings = CheckSettings(delay_loop=0.125, connect_timeout=0.25, retry=0,
                             delay_before_retry=0.0625, warmup=0.0, alpha=False)
    checker = Scripted([b"100%\n", b"100%\n", b"50%\n", b"50%\n", b"drain\n", b"drain\n",
                        b"drain\n", b"drain\n"])
    job = scheduler.add(("vs", "rs", "AGENT_CHECK"), checker, settings)
    heard, changes = [], []
    scheduler.effect_listeners.append(lambda job, result: heard.append(
        (result.weight, result.agent.admin)))
    scheduler.listeners.append(lambda job, result: changes.append(job.health.up))
    scheduler.start()
    try:
        clock.advance(0.75)              # attempts at 0 .. 0.75: seven replies
    finally:
        scheduler.stop()
    assert heard == [(10, "ready"), (5, "ready"), (5, "drain")]
    assert changes == [] and job.health.up


def test_plain_results_are_no_effect():
    clock = FakeClock(start=1000.0)
    scheduler = Scheduler(clock, workers=2)
    settings = CheckSettings(0.125, 0.25, 0, 0.0625, 0.0, False)

    class Plain:
        def check(self):
            return CheckResult(True, 0.0)

    scheduler.add(("vs", "rs", "X"), Plain(), settings)
    heard = []
    scheduler.effect_listeners.append(lambda job, result: heard.append(result))
    scheduler.start()
    try:
        clock.advance(0.5)
    finally:
        scheduler.stop()
    assert heard == []


# -- the pool rules ------------------------------------------------------------------------------

def _virtual(*reals, **extra):
    values = dict(lb_kind="NAT", sorry_server=None, inhibit_on_failure=False, lb_algo="wrr",
                  persistence_timeout=None, persistence_granularity=None, ops=False,
                  flag_1=False, flag_2=False, flag_3=False, sh_port=False, sh_fallback=False,
                  mh_port=False, mh_fallback=False, real_servers=reals)
    values.update(extra)
    return SimpleNamespace(**values)


def _real(address, weight=10, **extra):
    values = dict(address=address, port=80, weight=weight, inhibit_on_failure=False,
                  lvs_method=None, uthreshold=None, lthreshold=None)
    values.update(extra)
    return SimpleNamespace(**values)


KEY = ServiceKey("TCP", "192.0.2.10", 80, family=4)


def test_drain_is_weight_zero_in_the_pool_maint_is_out_of_it():
    reals = (_real("10.0.0.1"), _real("10.0.0.2"), _real("10.0.0.3", uthreshold=50),
             _real("10.0.0.4", inhibit_on_failure=True))
    lives = {"10.0.0.1": Live(weight=5, agent_admin="drain"),
             "10.0.0.2": Live(weight=5, agent_admin="maint"),
             "10.0.0.3": Live(weight=5, agent_maxconn=30),
             "10.0.0.4": Live(agent_admin="maint")}
    virtual = _virtual(*reals)
    found = pool(virtual, KEY, lambda real: lives[real.address], True).destinations
    shown = {key.address: (dest.weight, dest.upper_threshold) for key, dest in found.items()}
    # drained: in the pool at 0; maint: out, even with inhibit_on_failure; maxconn: uthreshold
    assert shown == {"10.0.0.1": (0, 0), "10.0.0.3": (5, 30)}
    assert live_weight(virtual, lambda real: lives[real.address]) == 5


def test_without_an_agent_nothing_changes():
    real = _real("10.0.0.1", uthreshold=50)
    found = pool(_virtual(real), KEY, lambda real: Live(), True).destinations
    assert [(d.weight, d.upper_threshold) for d in found.values()] == [(10, 50)]


def test_reply_types_are_frozen():
    with pytest.raises(AttributeError):
        AgentReply().health = "up"       # type: ignore[misc]
