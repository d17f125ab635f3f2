"""The kernel's IPVS connection sync daemons, following a VRRP instance as keepalived does.

While the instance is MASTER the kernel runs the master daemon (it multicasts every
connection's state on the interface); otherwise the backup daemon (it takes those in), so
that the BACKUP director already holds the MASTER's connections when it takes over and
established sessions carry on. The daemons run in the kernel: this module starts and stops
them over IPVS generic netlink (IPVS_CMD_NEW_DAEMON / DEL_DAEMON) and checks every
RECONCILE seconds (IPVS_CMD_GET_DAEMON) that the kernel still runs what the state calls
for, putting back what someone changed behind the daemon's back (``ipvsadm
--stop-daemon``). At stop both are stopped.

``wanted`` and ``plan`` are pure; ``SyncDaemons`` does the I/O in one supervised greenlet.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from .. import hub
from ..config.values import LvsSyncDaemon
from ..log import event

if TYPE_CHECKING:
    from ..state import LvsSyncView

log = logging.getLogger("director.vrrp")

MASTER, BACKUP = "master", "backup"
STATE_NUMBERS = {MASTER: 1, BACKUP: 2}          # IP_VS_STATE_MASTER, IP_VS_STATE_BACKUP
STATE_NAMES = {number: name for name, number in STATE_NUMBERS.items()}
RECONCILE = 5.0                                 # seconds between two looks at the kernel


@dataclass(frozen=True)
class Daemon:
    """One kernel sync daemon, as wanted or as the kernel reports it. None: not given (the
    kernel's default); the kernel reports every field, so only the given ones compare."""

    state: str
    interface: str
    syncid: int
    maxlen: int | None = None
    port: int | None = None
    ttl: int | None = None
    group: str | None = None

    def satisfied_by(self, running: Daemon) -> bool:
        return all(want is None or want == getattr(running, name)
                   for name, want in vars(self).items())

    def as_json(self) -> dict[str, Any]:
        return {name: value for name, value in vars(self).items() if value is not None}


def configured(config: Any) -> LvsSyncDaemon | None:
    """The sync daemon a configuration asks for: global_defs lvs_sync_daemon, else the first
    vrrp_instance with keepalived 1.x's lvs_sync_daemon_interface (as if it had been
    written ``lvs_sync_daemon IFACE INSTANCE``)."""
    if config.global_defs.lvs_sync_daemon is not None:
        return config.global_defs.lvs_sync_daemon
    for instance in config.vrrp_instances:
        if instance.lvs_sync_daemon_interface:
            return LvsSyncDaemon(instance.lvs_sync_daemon_interface, instance.name)
    return None


def wanted(setting: LvsSyncDaemon | None, role: str | None, vrid: int) -> Daemon | None:
    """The daemon for an instance in ``role``: master while MASTER, backup otherwise
    (keepalived starts the backup one at start-up and swaps on each transition); none
    while the instance is stopped."""
    if setting is None or role in (None, "STOP"):
        return None
    return Daemon(MASTER if role == "MASTER" else BACKUP, setting.interface,
                  setting.id if setting.id is not None else vrid,
                  setting.maxlen, setting.port, setting.ttl, setting.group)


def plan(want: Daemon | None, running: list[Daemon]) -> tuple[list[str], list[Daemon]]:
    """(states to stop, daemons to start) to go from ``running`` to ``want``. A daemon that
    differs from the wanted one is stopped and started again (the kernel cannot change
    one in place); one of the other state is stopped."""
    stop, start = [], []
    for daemon in running:                      # satisfied_by compares the state too
        if want is None or not want.satisfied_by(daemon):
            stop.append(daemon.state)
    if want is not None and not any(want.satisfied_by(d) for d in running):
        start.append(want)
    return stop, start


class KernelDaemons:
    """IPVS_CMD_*_DAEMON over the generic netlink client (director/lb/genl.py). It and
    pyroute2's IPVS commands are imported here, when a sync daemon is configured: not on
    VRRP's start-up path."""

    def __init__(self) -> None:
        from pyroute2.netlink.generic import ipvs

        from ..lb.genl import GenlSocket
        self.commands = ipvs
        self.socket = GenlSocket()

    def read(self) -> list[Daemon]:
        running = []
        for message in self.socket.request(self.commands.IPVS_CMD_GET_DAEMON, [], dump=True):
            nested = message.get_attr("IPVS_CMD_ATTR_DAEMON")
            if nested is None:
                continue
            attrs = dict(nested["attrs"])
            state = STATE_NAMES.get(attrs.get("IPVS_DAEMON_ATTR_STATE"))
            if state is None:
                continue
            running.append(Daemon(
                state, attrs.get("IPVS_DAEMON_ATTR_MCAST_IFN", ""),
                attrs.get("IPVS_DAEMON_ATTR_SYNC_ID", 0),
                attrs.get("IPVS_DAEMON_ATTR_SYNC_MAXLEN"),
                attrs.get("IPVS_DAEMON_ATTR_MCAST_PORT"),
                attrs.get("IPVS_DAEMON_ATTR_MCAST_TTL"),
                attrs.get("IPVS_DAEMON_ATTR_MCAST_GROUP6") or
                attrs.get("IPVS_DAEMON_ATTR_MCAST_GROUP")))
        return running

    def start(self, daemon: Daemon) -> None:
        attrs: list = [("IPVS_DAEMON_ATTR_STATE", STATE_NUMBERS[daemon.state]),
                       ("IPVS_DAEMON_ATTR_MCAST_IFN", daemon.interface),
                       ("IPVS_DAEMON_ATTR_SYNC_ID", daemon.syncid)]
        for name, value in (("SYNC_MAXLEN", daemon.maxlen), ("MCAST_PORT", daemon.port),
                            ("MCAST_TTL", daemon.ttl)):
            if value is not None:
                attrs.append((f"IPVS_DAEMON_ATTR_{name}", value))
        if daemon.group is not None:
            family = "MCAST_GROUP6" if ":" in daemon.group else "MCAST_GROUP"
            attrs.append((f"IPVS_DAEMON_ATTR_{family}", daemon.group))
        self.socket.request(self.commands.IPVS_CMD_NEW_DAEMON,
                            [("IPVS_CMD_ATTR_DAEMON", {"attrs": attrs})])

    def stop(self, state: str) -> None:
        self.socket.request(self.commands.IPVS_CMD_DEL_DAEMON, [
            ("IPVS_CMD_ATTR_DAEMON", {"attrs": [("IPVS_DAEMON_ATTR_STATE",
                                                  STATE_NUMBERS[state])]})])

    def close(self) -> None:
        self.socket.close()


class SyncDaemons:
    """Keeps the kernel's sync daemons as the followed instance's role calls for.
    ``role_of()`` answers the instance's role now (None: no such instance running)."""

    def __init__(self, setting: LvsSyncDaemon, role_of: Callable[[], str | None],
                 vrid: int) -> None:
        self.setting = setting
        self.role_of = role_of
        self.vrid = vrid
        self.kernel = KernelDaemons()
        self.running: list[Daemon] = []         # as the kernel last said
        self.errors = 0
        self.last_error: str | None = None
        self.changes = 0                        # daemons started or stopped by us
        self.wake = hub.Event()
        self.greenlet: hub.Greenlet | None = None

    def start(self) -> None:
        self.greenlet = hub.supervise(self._run, name="lvs sync daemon")

    def configure(self, setting: LvsSyncDaemon, role_of: Callable[[], str | None], vrid: int) -> None:
        """A reload: the next reconcile starts, stops or restarts what differs."""
        self.setting, self.role_of, self.vrid = setting, role_of, vrid
        self.wake.set()

    def role_changed(self, *_: Any) -> None:
        self.wake.set()

    def _run(self) -> None:
        while True:
            self.reconcile()
            self.wake.wait(RECONCILE)
            self.wake.clear()

    def want(self) -> Daemon | None:
        return wanted(self.setting, self.role_of(), self.vrid)

    def reconcile(self) -> None:
        want = self.want()
        try:
            self.running = self.kernel.read()
            stop, start = plan(want, self.running)
            for state in stop:
                self.kernel.stop(state)
            for daemon in start:
                self.kernel.start(daemon)
            if stop or start:
                self.changes += len(stop) + len(start)
                self.running = self.kernel.read()
                event(log, "vrrp.lvs_sync_daemon", stopped=",".join(stop) or "none",
                      started=",".join(d.state for d in start) or "none",
                      interface=want.interface if want else "-",
                      syncid=want.syncid if want else "-")
            self.last_error = None
        except OSError as exc:
            self.errors += 1
            if str(exc) != self.last_error:     # once per distinct error, not every 5 s
                event(log, "vrrp.lvs_sync_daemon_error", logging.ERROR, error=exc,
                      note="tried again in a few seconds")
            self.last_error = str(exc)

    def stop(self) -> None:
        """Both daemons stopped (keepalived does the same at exit)."""
        if self.greenlet is not None:
            self.greenlet.kill(block=False)
        try:
            for daemon in self.kernel.read():
                self.kernel.stop(daemon.state)
        except OSError as exc:
            event(log, "vrrp.lvs_sync_daemon_error", logging.ERROR, error=exc, note="at stop")
        self.kernel.close()

    def snapshot(self) -> LvsSyncView:
        # the views load when first asked for: they are not on the way to the first advert
        from ..state import LvsSyncView, frozen
        want = self.want()
        return LvsSyncView(self.setting.interface, self.setting.instance,
                           None if want is None else frozen(want.as_json()),
                           tuple(frozen(daemon.as_json()) for daemon in self.running),
                           plan(want, self.running) == ([], []), self.errors, self.last_error,
                           self.changes)
