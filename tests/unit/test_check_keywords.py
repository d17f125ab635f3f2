"""Checker keywords' pure parts: fast_recovery in the hysteresis, log_all_failures and
fast_recovery resolved into the settings, no_checker_emails in the mail composer."""

from __future__ import annotations

from types import SimpleNamespace as NS

from director.check.base import CheckSettings, resolve_settings
from director.check.hysteresis import Health, judge
from tests.unit.test_mail import mailer

RISE = CheckSettings(delay_loop=6, connect_timeout=3, retry=1, delay_before_retry=2, warmup=6,
                     alpha=False, rise=3)


def test_fast_recovery_runs_the_rise_checks_at_once():
    fast = CheckSettings(**{**RISE.__dict__, "fast_recovery": True})
    steps = [judge(fast, Health(up=False), True), judge(fast, Health(False, successes=1), True),
             judge(fast, Health(False, successes=2), True)]
    assert [(v.health.up, v.next_in) for v in steps] == [(False, 0.0), (False, 0.0), (True, 6)]
    assert judge(RISE, Health(up=False), True).next_in == 6        # without it: delay_loop
    assert judge(fast, Health(up=False), False).next_in == 6       # a failure is not hurried
    assert judge(fast, Health(up=True), False).next_in == 2        # retries as ever


def test_settings_take_the_checker_or_the_global_flag():
    checker = NS(kind="HTTP_GET", log_all_failures=False, fast_recovery=True)
    server = NS()
    assert resolve_settings(server, server, checker).fast_recovery
    assert not resolve_settings(server, server, checker).log_all_failures
    assert resolve_settings(server, server, checker, log_all_failures=True).log_all_failures
    loud = NS(kind="TCP_CHECK", log_all_failures=True)
    settings = resolve_settings(server, server, loud)
    assert settings.log_all_failures and not settings.fast_recovery


CHECKER = {"virtual_server": "192.0.2.100:80/TCP", "real_server": "10.0.0.1:80",
           "checker": "TCP_CHECK", "state": "down", "server_state": "down",
           "error": "connect: Connection refused"}


def test_a_checker_that_changes_alone_mails_unless_no_checker_emails(tmp_path):
    mail = mailer(tmp_path).compose("checker", CHECKER)
    assert mail.subject == "[LB_MAIL] Realserver [10.0.0.1]:tcp:80 - DOWN"
    assert mail.body == "=> CHECK failed (connect: Connection refused) on service (TCP_CHECK) <="
    up = mailer(tmp_path).compose("checker", {**CHECKER, "state": "up"})
    assert up.body == "=> CHECK succeed on service (TCP_CHECK) <=" and "DOWN" in up.subject
    assert mailer(tmp_path, "no_checker_emails").compose("checker", CHECKER) is None
    # the server's own up/down still mails with no_checker_emails
    assert mailer(tmp_path, "no_checker_emails").compose(
        "real_server", {**CHECKER, "state": "down"}) is not None
    # and, as ever, only for servers with smtp_alert (or the global one)
    assert mailer(tmp_path).compose("checker", {**CHECKER, "virtual_server":
                                                "192.0.2.100:443/TCP",
                                                "real_server": "10.0.0.1:443"}) is None
