"""The daemon: owns the subsystems, turns signals into commands for the main greenlet.

Signal handlers only enqueue; the main greenlet dispatches ``handle_<command>`` (gunicorn's
arbiter). No side effects before ``run()``.
"""

from __future__ import annotations

import gc
import json
import logging
import os
from typing import Any

from . import hub, pidfile
from .clock import Clock, MonotonicClock
from .config import load_config
from .log import event
from .notify import Notifier

log = logging.getLogger("director")

YIELD_EVERY = 500       # lines of a state file written between two turns of the loop


class Director:
    def __init__(self, config: Any, options: Any, config_id: str,
                 clock: Clock | None = None) -> None:
        self.config = config
        self.options = options
        self.config_id = config_id
        self.clock = clock or MonotonicClock()
        self.commands: hub.Queue = hub.Queue()
        self.vrrp = None
        self.checks = None
        self.lb = None
        self.notifier: Notifier | None = None
        self.exit_code = 0

    def run(self) -> int:
        if self.options.pid:
            pidfile.acquire(self.options.pid)
        try:
            # Handlers first: a signal during start-up is queued, not fatal (USR1's default
            # action would end the process).
            for name, signum in hub.SIGNALS.items():
                command = {"TERM": "stop", "INT": "stop", "HUP": "reload", "USR1": "dump",
                           "USR2": "stats"}[name]
                hub.on_signal(signum, lambda command=command: self.commands.put(command))
            self._start()
            # Everything built so far lives as long as the daemon: keep the collector from
            # walking it again and again (measured: a sixth of the checker's CPU at scale).
            gc.freeze()
            event(log, "director.started", pid=os.getpid(), config=self.options.use_file,
                  vrrp_instances=len(self.vrrp.instances) if self.vrrp else 0)
            while True:
                command = self.commands.get()
                if getattr(self, f"handle_{command}")() is False:
                    break
        finally:
            if self.options.pid:
                pidfile.release(self.options.pid)
        return self.exit_code

    def _start(self) -> None:
        self.notifier = notifier = Notifier(self.config.global_defs.script_user)
        if not self.options.check:
            from .vrrp.arp import Announcer
            from .vrrp.service import VrrpService
            self.vrrp = VrrpService(self.config, self.clock, Announcer(), notifier)
            self.vrrp.start()
        if not self.options.vrrp and self.config.virtual_servers:
            from .check.service import CheckService
            from .lb.service import LoadBalancer, ipvs_available
            self.checks = CheckService(self.config, self.clock, notifier)
            self.checks.start()
            backend = self.options.backend
            if backend is None:
                backend = "ipvs" if ipvs_available() else "none"
                if backend == "none":
                    event(log, "lb.observe_only", logging.WARNING,
                          note="this kernel has no IP_VS: virtual servers are checked but not "
                               "programmed (use --backend nftables to program nftables)")
            self.lb = LoadBalancer(self.config, self.checks, backend, notifier)
            self.lb.start()

    def handle_stop(self) -> bool:
        event(log, "director.stopping")
        if self.lb is not None:
            self.lb.stop()
        if self.checks is not None:
            self.checks.stop()
        if self.vrrp is not None:
            self.vrrp.stop()
        if self.notifier is not None:
            self.notifier.wait(timeout=1.0)       # quorum_down / notify_down of omega
        event(log, "director.stopped")
        return False

    def handle_reload(self) -> bool:
        result = load_config(self.options.use_file, config_id=self.config_id)
        for diagnostic in result.diagnostics:
            event(log, "config.diagnostic", logging.WARNING, diagnostic=str(diagnostic))
        if not result.ok:
            event(log, "reload.failed", logging.ERROR, errors=len(result.errors),
                  note="keeping the running configuration")
            return True
        if result.config == self.config:
            event(log, "reload.unchanged")
        else:
            event(log, "reload.deferred", logging.WARNING,
                  note="the new configuration is valid; applying a changed configuration "
                       "without a restart arrives with issue 7")
        return True

    def vrrp_snapshot(self) -> dict:
        return self.vrrp.snapshot() if self.vrrp else {"instances": [], "sync_groups": []}

    def _write_state_file(self, name: str, lines) -> None:
        """Write ``lines`` (an iterable of text) to a state file atomically, yielding to the
        loop every YIELD_EVERY lines: a dump of ten thousand servers must not hold back an
        advert (measured: 190 ms in one piece, longer than a 100 ms VRRPv3 backup waits)."""
        directory = self.options.state_dir
        try:
            os.makedirs(directory, exist_ok=True)
            path = os.path.join(directory, name)
            temporary = f"{path}.tmp"
            with open(temporary, "w") as handle:
                for number, line in enumerate(lines, 1):
                    handle.write(line)
                    if number % YIELD_EVERY == 0:
                        hub.sleep(0)
            os.replace(temporary, path)
            event(log, "director.wrote", file=path)
        except OSError as exc:
            event(log, "director.write_error", logging.ERROR, file=name, error=exc)

    def _dump_lines(self):
        """The state as JSON, one real server a line (C encoder: no indent), so that it can
        be written piece by piece and still read by people and by json.load."""
        router_id = self.config.global_defs.router_id or self.config_id
        yield "{" + json.dumps("router_id") + ": " + json.dumps(router_id) + ",\n"
        yield ' "vrrp": ' + json.dumps(self.vrrp_snapshot()) + ",\n"
        servers = self.checks.snapshot(yield_every=YIELD_EVERY) if self.checks else []
        yield ' "virtual_servers": ['
        for index, server in enumerate(servers):
            reals = server.pop("real_servers")
            head = json.dumps(server)[:-1]
            yield ("," if index else "") + "\n  " + head + ', "real_servers": ['
            yield ",".join("\n   " + json.dumps(real) for real in reals) + "]}"
        yield "\n ]}\n"

    def handle_dump(self) -> bool:
        self._write_state_file("director.data", self._dump_lines())
        return True

    def handle_stats(self) -> bool:
        vrrp = self.vrrp_snapshot()
        stats = {i["name"]: i["counters"] for i in vrrp["instances"]}
        stats["dropped_by_interface"] = vrrp.get("dropped_by_interface", {})
        self._write_state_file("director.stats", [json.dumps(stats, indent=2), "\n"])
        return True
