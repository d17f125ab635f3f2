"""SMTP alerts as keepalived sends them: a mail on each VRRP instance and sync group
transition and each real server going up or down, and on a virtual server's quorum change,
for the objects with ``smtp_alert`` (or the global ``smtp_alert``, ``smtp_alert_vrrp``,
``smtp_alert_checker``), to ``notification_email`` from ``notification_email_from`` through
``smtp_server``.

Mails are composed from events (director/events.py) as they happen, queued (bounded: the
oldest is dropped and counted when an SMTP server stays away for long), and sent by one
greenlet; a failed delivery is retried with a growing pause (1 s to 60 s) and given up after
MAX_ATTEMPTS, counted. Nothing else ever waits for mail: an unreachable SMTP server costs
one greenlet's time.
"""

from __future__ import annotations

import logging
import socket
from collections import deque
from dataclasses import dataclass
from typing import Any

from . import hub
from .config.blocks.virtual_server import real_server_name, virtual_server_name
from .log import event

log = logging.getLogger("director.mail")

QUEUE = 1000                # mails waiting; beyond, the oldest is dropped (counted)
MAX_ATTEMPTS = 5            # deliveries of one mail before it is given up (counted)
BACKOFF = (1.0, 5.0, 15.0, 30.0, 60.0)   # pause after the 1st, 2nd, ... failure
DEFAULT_PORT = 25

VRRP_BODIES = {"MASTER": "VRRP Instance is now owning VRRP VIPs",
               "BACKUP": "VRRP Instance is nolonger owning VRRP VIPs",
               "FAULT": "VRRP Instance is in FAULT state",
               "STOP": "VRRP Instance stopped"}


@dataclass(frozen=True)
class Mail:
    subject: str
    body: str


def _service(address: str | None, port: int | None, protocol: str) -> str:
    """keepalived's FMT_RS / FMT_VS: [ADDRESS]:proto:PORT."""
    return f"[{address}]:{protocol.lower()}:{port}"


class Mailer:
    def __init__(self, config: Any, router_id: str) -> None:
        self.router_id = router_id
        self.queue: deque[Mail] = deque()
        self.wake = hub.Event()
        self.results: dict[str, int] = {}       # sent, retried, failed, dropped -> count
        self.greenlet: hub.Greenlet | None = None
        self.configure(config)

    def configure(self, config: Any) -> None:
        """(Re)reads who alerts and where mail goes: at start and on reload."""
        defs = config.global_defs
        self.defs = defs
        self.instances = {i.name: i for i in config.vrrp_instances}
        self.groups = {g.name: g for g in config.vrrp_sync_groups}
        self.reals: dict[tuple[str, str], tuple[Any, Any]] = {}
        self.virtuals: dict[str, Any] = {}
        for virtual in config.virtual_servers:
            name = virtual_server_name(virtual)
            self.virtuals[name] = virtual
            for real in virtual.real_servers:
                self.reals[(name, real_server_name(real))] = (virtual, real)

    @property
    def enabled(self) -> bool:
        return bool(self.defs.notification_email) and self.defs.smtp_server is not None

    def start(self) -> None:
        self.greenlet = hub.supervise(self._run, name="smtp alerts")

    def stop(self) -> None:
        if self.greenlet is not None:
            self.greenlet.kill(block=False)

    # composing

    def on_event(self, item: Any) -> None:
        """An events.Event: queue the mail it calls for, if any. Never blocks, never raises
        into the publisher."""
        if not self.enabled:
            return
        try:
            mail = self.compose(item.kind, item.fields)
        except (KeyError, AttributeError, TypeError) as exc:
            event(log, "mail.compose_error", logging.ERROR, kind=item.kind, error=repr(exc))
            return
        if mail is not None:
            self.enqueue(mail)

    def compose(self, kind: str, fields: dict) -> Mail | None:
        defs, prefix = self.defs, f"[{self.router_id}]"
        vrrp_default = defs.smtp_alert or defs.smtp_alert_vrrp
        checker_default = defs.smtp_alert or defs.smtp_alert_checker
        if kind == "vrrp.transition":
            instance = self.instances.get(fields["instance"])
            state = fields["to_state"]
            if instance is None or not (instance.smtp_alert or vrrp_default) or \
                    state not in VRRP_BODIES or (state == "FAULT" and defs.no_email_faults):
                return None
            return Mail(f"{prefix} VRRP Instance {instance.name} - Entering {state} state",
                        f"=> {VRRP_BODIES[state]} <=")
        if kind == "vrrp.sync_group":
            group = self.groups.get(fields["sync_group"])
            state = fields["state"]
            if group is None or not (group.smtp_alert or vrrp_default) or \
                    (state == "FAULT" and defs.no_email_faults):
                return None
            return Mail(f"{prefix} VRRP Group {group.name} - Entering {state} state",
                        f"=> All VRRP group instances are now in {state} state <=")
        if kind == "real_server":
            found = self.reals.get((fields["virtual_server"], fields["real_server"]))
            if found is None:
                return None
            virtual, real = found
            if not (real.smtp_alert or virtual.smtp_alert or checker_default):
                return None
            up = fields["state"] == "up"
            what = "succeed" if up else f"failed ({fields.get('error') or 'no answer'})"
            service = _service(real.address, real.port, virtual.protocol or "TCP")
            return Mail(f"{prefix} Realserver {service} - {'UP' if up else 'DOWN'}",
                        f"=> CHECK {what} on service <=")
        if kind == "checker":      # one checker of several changed, the server did not
            found = self.reals.get((fields["virtual_server"], fields["real_server"]))
            if found is None or defs.no_checker_emails:
                return None
            virtual, real = found
            if not (real.smtp_alert or virtual.smtp_alert or checker_default):
                return None
            up = fields["state"] == "up"
            what = "succeed" if up else f"failed ({fields.get('error') or 'no answer'})"
            service = _service(real.address, real.port, virtual.protocol or "TCP")
            return Mail(f"{prefix} Realserver {service} - "
                        f"{'UP' if fields['server_state'] == 'up' else 'DOWN'}",
                        f"=> CHECK {what} on service ({fields['checker']}) <=")
        if kind == "quorum":
            virtual = self.virtuals.get(fields["virtual_server"])
            if virtual is None or not (virtual.smtp_alert or checker_default):
                return None
            up = fields["state"] == "up"
            service = fields["virtual_server"]
            return Mail(f"{prefix} Virtualserver {service} - {'UP' if up else 'DOWN'}",
                        f"=> VS {service} - quorum {'up' if up else 'down'} "
                        f"(live weight {fields.get('live_weight')}) <=")
        return None

    def enqueue(self, mail: Mail) -> None:
        if len(self.queue) >= QUEUE:
            self.queue.popleft()
            self._count("dropped")
        self.queue.append(mail)
        self.wake.set()

    # sending

    def _run(self) -> None:
        attempts = 0            # of the mail at the head of the queue
        streak = 0              # failures in a row, whatever the mail: sets the pause
        while True:
            if not self.queue:
                self.wake.clear()
                self.wake.wait()
                continue
            mail = self.queue[0]
            try:
                self.send(mail)
            except OSError as exc:           # smtplib.SMTPException is one
                attempts += 1
                streak += 1
                given_up = attempts >= MAX_ATTEMPTS
                self._count("failed" if given_up else "retried")
                event(log, "mail.send_failed", logging.WARNING, subject=mail.subject,
                      attempt=attempts, error=exc, given_up=given_up)
                if given_up:
                    self._drop_head(mail)
                    attempts = 0
                hub.sleep(BACKOFF[min(streak, len(BACKOFF)) - 1])
                continue
            attempts = streak = 0
            self._drop_head(mail)
            self._count("sent")
            event(log, "mail.sent", subject=mail.subject)

    def _drop_head(self, mail: Mail) -> None:
        if self.queue and self.queue[0] is mail:
            self.queue.popleft()

    def send(self, mail: Mail) -> None:
        # smtplib and the email package load with the first mail, not on the way to the
        # first advert
        import smtplib
        from email.message import EmailMessage
        from email.utils import formatdate, make_msgid
        defs = self.defs
        host, port = defs.smtp_server
        sender = defs.notification_email_from or f"director@{socket.gethostname()}"
        message = EmailMessage()
        message["From"] = sender
        message["To"] = ", ".join(defs.notification_email)
        message["Subject"] = mail.subject
        message["Date"] = formatdate(localtime=True)
        message["Message-ID"] = make_msgid(domain=defs.smtp_helo_name or None)
        message["X-Mailer"] = "director"
        message.set_content(mail.body + "\n")
        with smtplib.SMTP(host, port or DEFAULT_PORT, timeout=defs.smtp_connect_timeout,
                          local_hostname=defs.smtp_helo_name or None) as smtp:
            smtp.send_message(message, from_addr=sender,
                              to_addrs=list(defs.notification_email))

    def _count(self, result: str) -> None:
        self.results[result] = self.results.get(result, 0) + 1
