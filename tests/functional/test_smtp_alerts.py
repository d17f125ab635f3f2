"""SMTP alerts to a real SMTP server (aiosmtpd) in the director's namespace: a mail for the
VRRP transition to MASTER and one for a real server going down, with keepalived's subjects
and every recipient; with the SMTP server gone, checks and VRRP go on and the failed
deliveries are counted."""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path

import pytest

from tests.functional.lab import wait_for

pytestmark = [pytest.mark.netns, pytest.mark.slow, pytest.mark.timeout(120)]

ROOT = Path(__file__).resolve().parents[2]
VIP = "192.0.2.100"
REAL = "192.0.2.11"
RECIPIENTS = ["ops@example.org", "noc@example.org"]

# argv: HOST PORT FILE; each mail received is one JSON line in FILE
SMTP_SERVER = """
import json, sys, time
from aiosmtpd.controller import Controller
from email import message_from_bytes

class Handler:
    async def handle_DATA(self, server, session, envelope):
        message = message_from_bytes(envelope.content)
        with open(sys.argv[3], "a") as out:
            out.write(json.dumps({"from": envelope.mail_from, "to": envelope.rcpt_tos,
                                  "subject": message["Subject"],
                                  "body": message.get_payload()}) + "\\n")
        return "250 OK"

controller = Controller(Handler(), hostname=sys.argv[1], port=int(sys.argv[2]))
controller.start()
while True:
    time.sleep(1)
"""

CONFIG = f"""global_defs {{
    router_id LB_MAIL
    notification_email {{
        {RECIPIENTS[0]}
        {RECIPIENTS[1]}
    }}
    notification_email_from director@example.org
    smtp_server 127.0.0.1 2525
    smtp_connect_timeout 2
}}
vrrp_instance VI_1 {{
    interface eth0
    virtual_router_id 51
    priority 150
    advert_int 1
    smtp_alert
    virtual_ipaddress {{
        {VIP}/24
    }}
}}
virtual_server {VIP} 80 {{
    delay_loop 1
    protocol TCP
    smtp_alert
    real_server {REAL} 80 {{
        TCP_CHECK {{
            connect_timeout 1
            retry 1
            delay_before_retry 0.5
        }}
    }}
}}
"""


def mails(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_mails_for_a_failover_and_a_dead_server_then_an_smtp_outage(lab):
    switch = lab.switch()
    lb = lab.host("lb", links=[(switch, "eth0", ["192.0.2.1/24"])])
    rs = lab.host("rs", links=[(switch, "eth0", [f"{REAL}/24"])])
    web = rs.popen([sys.executable, "-m", "http.server", "80", "--bind", REAL,
                    "--directory", str(lab.tmp)])
    inbox = lab.tmp / "inbox.jsonl"
    smtp = lb.popen([sys.executable, "-c", SMTP_SERVER, "127.0.0.1", "2525", inbox])
    wait_for(lambda: "2525" in lb.run(["ss", "-Hltn"]).stdout, 10,
             message=lambda: lab.log_of(smtp))
    folder = lab.tmp / "director"
    folder.mkdir()
    (folder / "keepalived.conf").write_text(CONFIG)
    daemon = lb.popen([sys.executable, "-m", "director", "-l", "-f", folder / "keepalived.conf",
                       "--backend", "none", "--web", "off", "--state-dir", folder / "state"],
                      env={"PYTHONPATH": str(ROOT)})

    def subjects():
        return [mail["subject"] for mail in mails(inbox)]

    master = "[LB_MAIL] VRRP Instance VI_1 - Entering MASTER state"
    wait_for(lambda: master in subjects(), 10, message=lambda: lab.log_of(daemon))
    mail = next(mail for mail in mails(inbox) if mail["subject"] == master)
    assert sorted(mail["to"]) == sorted(RECIPIENTS)
    assert mail["from"] == "director@example.org"
    assert "now owning VRRP VIPs" in mail["body"]

    web.kill()
    down = f"[LB_MAIL] Realserver [{REAL}]:tcp:80 - DOWN"
    wait_for(lambda: down in subjects(), 1 + 1 * (1 + 0.5) + 5,
             message=lambda: f"{subjects()}\n{lab.log_of(daemon)}")

    # the SMTP server goes away: the server comes back up, checks and VRRP do not notice
    smtp.kill()
    smtp.wait(5)
    received = len(mails(inbox))
    web = rs.popen([sys.executable, "-m", "http.server", "80", "--bind", REAL,
                    "--directory", str(lab.tmp)])

    def dump() -> dict:
        path = folder / "state" / "director.data"
        path.unlink(missing_ok=True)
        daemon.send_signal(signal.SIGUSR1)
        wait_for(path.exists, 5, message=lambda: lab.log_of(daemon))
        return json.loads(path.read_text())

    wait_for(lambda: dump()["virtual_servers"][0]["real_servers"][0]["up"], 10,
             message=lambda: lab.log_of(daemon))
    wait_for(lambda: dump()["notifications"].get("smtp retried", 0) >= 1, 10,
             message=lambda: lab.log_of(daemon))
    state = dump()
    assert state["vrrp"]["instances"][0]["state"] == "MASTER" and lb.has_address("eth0", VIP)
    assert state["notifications"]["smtp sent"] >= 2
    assert len(mails(inbox)) == received
    assert "mail.send_failed" in lab.log_of(daemon)
