"""dynamic_interfaces: instances whose interface does not exist yet start when it appears.

Without the keyword (keepalived 2.2.7's default) an instance on a missing interface is a
start-up or reload failure, as before. With it (keepalived's IF_CREATE_IF_DYNAMIC: "will use
if created"), the instance is left out of the start or the reload, logged once
(``vrrp.interface_wait``), and started as a reload would start it as soon as its interface
is ready (it exists and, unless the instance names its source address, has an address of the
instance's family to send adverts from): one supervised greenlet looks twice a second for as
long as any instance waits.
"""

from __future__ import annotations

import logging
import os
from typing import Callable

from .. import hub
from ..log import event

log = logging.getLogger("director.vrrp.dynamic")

PERIOD = 0.5


def interface_present(ifname: str) -> bool:
    return os.path.exists(f"/sys/class/net/{ifname}")


class InterfaceWaiter:
    """``start_late(names)`` is called with the instances whose interfaces are ready
    (``ready(name)``)."""

    def __init__(self, start_late: Callable[[tuple[str, ...]], None],
                 ready: Callable[[str], bool] = interface_present,
                 period: float = PERIOD) -> None:
        self.start_late = start_late
        self.ready = ready              # called with the instance's name
        self.period = period
        self.waiting: dict[str, str] = {}        # instance -> its interface
        self.greenlet: hub.Greenlet | None = None

    def wait(self, instance: str, ifname: str) -> None:
        if self.waiting.get(instance) != ifname:
            event(log, "vrrp.interface_wait", instance=instance, interface=ifname)
        self.waiting[instance] = ifname
        if self.greenlet is None or self.greenlet.dead:
            self.greenlet = hub.supervise(self._run, name="vrrp dynamic interfaces")

    def keep_only(self, names: set[str]) -> None:
        """After a reload: instances gone from the configuration wait no more."""
        for name in [name for name in self.waiting if name not in names]:
            del self.waiting[name]

    def due(self) -> tuple[str, ...]:
        """The waiting instances whose interface is there now (they wait no more)."""
        ready = tuple(name for name in self.waiting if self.ready(name))
        for name in ready:
            event(log, "vrrp.interface_appeared", instance=name, interface=self.waiting.pop(name))
        return ready

    def _run(self) -> None:
        while self.waiting:
            ready = self.due()
            if ready:
                self.start_late(ready)
            hub.sleep(self.period)
        self.greenlet = None

    def stop(self) -> None:
        self.waiting.clear()
        if self.greenlet is not None:
            self.greenlet.kill(block=False)
            self.greenlet = None
