"""What mail each event calls for, as keepalived words it, and the bounded queue. Delivery
to a real SMTP server is in tests/functional/test_smtp_alerts.py."""

from __future__ import annotations

import pytest

from director.config import load_config
from director.events import EventLog
from director.mail import QUEUE, Mail, Mailer

CONFIG = """
global_defs {
    router_id LB_MAIL
    notification_email {
        ops@example.org
        noc@example.org
    }
    notification_email_from director@example.org
    smtp_server 127.0.0.1 2525
    %s
}
vrrp_sync_group VG1 {
    group {
        VI_1
    }
    smtp_alert
}
vrrp_instance VI_1 {
    interface lo
    virtual_router_id 51
    priority 150
    smtp_alert
    virtual_ipaddress {
        192.0.2.100/32
    }
}
vrrp_instance VI_QUIET {
    interface lo
    virtual_router_id 52
    priority 100
    virtual_ipaddress {
        192.0.2.101/32
    }
}
virtual_server 192.0.2.100 80 {
    protocol TCP
    smtp_alert
    real_server 10.0.0.1 80 {
        TCP_CHECK {
        }
    }
}
virtual_server 192.0.2.100 443 {
    protocol TCP
    real_server 10.0.0.1 443 {
        TCP_CHECK {
        }
    }
}
"""


def mailer(tmp_path, extra=""):
    path = tmp_path / "keepalived.conf"
    path.write_text(CONFIG % extra)
    result = load_config(str(path), config_id="t", interface_exists=None)
    assert result.ok, [str(d) for d in result.errors]
    return Mailer(result.config, "LB_MAIL")


def test_subjects_as_keepalived_words_them(tmp_path):
    m = mailer(tmp_path)
    assert m.compose("vrrp.transition", {"instance": "VI_1", "to_state": "MASTER"}) == Mail(
        "[LB_MAIL] VRRP Instance VI_1 - Entering MASTER state",
        "=> VRRP Instance is now owning VRRP VIPs <=")
    assert m.compose("vrrp.sync_group", {"sync_group": "VG1", "state": "BACKUP"}).subject == \
        "[LB_MAIL] VRRP Group VG1 - Entering BACKUP state"
    down = m.compose("real_server", {"virtual_server": "192.0.2.100:80/TCP",
                                     "real_server": "10.0.0.1:80", "state": "down",
                                     "error": "connect: Connection refused"})
    assert down.subject == "[LB_MAIL] Realserver [10.0.0.1]:tcp:80 - DOWN"
    assert "Connection refused" in down.body
    assert m.compose("quorum", {"virtual_server": "192.0.2.100:80/TCP", "state": "down",
                                "live_weight": 0}).subject == \
        "[LB_MAIL] Virtualserver 192.0.2.100:80/TCP - DOWN"


def test_only_objects_with_smtp_alert_unless_it_is_global(tmp_path):
    m = mailer(tmp_path)
    assert m.compose("vrrp.transition", {"instance": "VI_QUIET", "to_state": "MASTER"}) is None
    assert m.compose("real_server", {"virtual_server": "192.0.2.100:443/TCP",
                                     "real_server": "10.0.0.1:443", "state": "down"}) is None
    loud = mailer(tmp_path, "smtp_alert")
    assert loud.compose("vrrp.transition", {"instance": "VI_QUIET", "to_state": "MASTER"})
    assert loud.compose("real_server", {"virtual_server": "192.0.2.100:443/TCP",
                                        "real_server": "10.0.0.1:443", "state": "up"})
    vrrp_only = mailer(tmp_path, "smtp_alert_vrrp\n    no_email_faults")
    assert vrrp_only.compose("vrrp.transition", {"instance": "VI_QUIET", "to_state": "BACKUP"})
    assert vrrp_only.compose("vrrp.transition", {"instance": "VI_1", "to_state": "FAULT"}) is None
    assert vrrp_only.compose("real_server", {"virtual_server": "192.0.2.100:443/TCP",
                                             "real_server": "10.0.0.1:443",
                                             "state": "up"}) is None


def test_events_become_queued_mails_and_the_queue_is_bounded(tmp_path):
    m = mailer(tmp_path)
    events = EventLog()
    events.listeners.append(m.on_event)
    events.add("vrrp.transition", instance="VI_1", from_state="BACKUP", to_state="MASTER",
               reason="master_down")
    events.add("reload", result="success")                    # no mail for that
    assert [mail.subject for mail in m.queue] == [
        "[LB_MAIL] VRRP Instance VI_1 - Entering MASTER state"]
    for number in range(QUEUE + 5):
        m.enqueue(Mail(f"s{number}", "b"))
    assert len(m.queue) == QUEUE and m.results["dropped"] == 6
    assert m.queue[-1].subject == f"s{QUEUE + 4}"


@pytest.mark.parametrize("missing", ["notification_email", "smtp_server"])
def test_no_mail_without_recipients_or_server(tmp_path, missing):
    path = tmp_path / "keepalived.conf"
    text = CONFIG % ""
    if missing == "notification_email":
        text = text.replace("    notification_email {\n        ops@example.org\n"
                            "        noc@example.org\n    }\n", "")
    else:
        text = text.replace("    smtp_server 127.0.0.1 2525\n", "")
    path.write_text(text)
    m = Mailer(load_config(str(path), config_id="t", interface_exists=None).config, "x")
    events = EventLog()
    events.listeners.append(m.on_event)
    events.add("vrrp.transition", instance="VI_1", from_state="BACKUP", to_state="MASTER",
               reason="x")
    assert not m.queue
