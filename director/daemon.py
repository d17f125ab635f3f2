"""The daemon: owns the subsystems, turns signals into commands for the main greenlet.

Signal handlers only enqueue; the main greenlet dispatches ``handle_<command>`` (gunicorn's
arbiter). No side effects before ``run()``.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import resource
import time
from typing import TYPE_CHECKING, Any

from . import control, dumps, hub, pidfile, process, reloadfiles
from .clock import Clock, MonotonicClock
from .commands import Commands
from .events import EventLog
from .files import UnsafeDirectory, own_directory
from .log import event
from .looplag import MainLoopLag, threshold_for
from .mail import Mailer
from .notify import Notifier
from .override_peers import PeerSync
from .overrides import Overrides
from .reloading import Reloading

if TYPE_CHECKING:
    from .state import ProcessView, State, VrrpView, WebView

log = logging.getLogger("director")

HEARTBEAT = 1.0         # the main loop proves it turns this often ...
HEARTBEAT_LIMIT = 5.0   # ... and /healthz fails when it has not for this long


def read_admin_token(path: str | None) -> str | None:
    """The token in ``path`` (--admin-token-file), None without one; OSError (the daemon
    refuses to start) when it cannot be read or is empty."""
    if not path:
        return None
    with open(path) as handle:
        token = handle.read().strip()
    if not token:
        raise OSError(f"{path}: the admin token file is empty")
    return token


def import_pool_modules() -> None:
    """The checkers' and the load balancer's modules (pyroute2 with the IPVS backend), loaded
    before VRRP starts: importing them after would hold the instances' first adverts back
    (a third of a second here, many seconds under emulation)."""
    from .check import service  # noqa: F401
    from .lb import backends, ipvs, service as lb_service  # noqa: F401


class StartupError(Exception):
    """The daemon cannot start as asked (its web address is taken, ...): said in one line,
    before anything (VIPs, kernel entries) has been touched."""


class Director(Reloading, Commands):
    def __init__(self, config: Any, options: Any, config_id: str,
                 clock: Clock | None = None, sources: Any = None) -> None:
        self.config = config
        self.sources = sources          # the files it was read from (LoadResult.sources)
        self.options = options
        self.config_id = config_id
        self.clock = clock or MonotonicClock()
        self.commands: hub.Queue = hub.Queue()
        self.vrrp = None
        self.checks = None
        self.lb = None
        self.bgp = None                     # the BGP announcer, with a bgp block
        self.notifier: Notifier | None = None
        self.mailer: Mailer | None = None
        self.events = EventLog()
        self.admin_token: str | None = None
        # the operator's overrides and their exchange with the peer directors
        self.overrides = Overrides(options.state_dir, self.router_id(),
                                   self._write_state_file)
        self.override_peers = PeerSync(self.router_id(), None, self.overrides.store.as_lists,
                                       self._merge_from_peer)
        self.ready = hub.Event()                 # set once every subsystem has started
        self.web = None
        self.control: control.ControlServer | None = None     # director ctl's socket
        self.pid = os.getpid()
        self.started_wall: float | None = None
        self.heartbeat = 0.0
        self.reloads = {"success": 0, "failure": 0}
        self.last_reload_success: float | None = None
        self.reload_status: dict[str, Any] = {"result": None, "at": None, "errors": []}
        self.exit_code = 0
        self.stopped = False
        self.own = process.OwnProcess()
        self.reload_timer = reloadfiles.ReloadTimer(
            lambda: (self.config.global_defs.reload_time_file,
                     self.config.global_defs.reload_repeat),
            lambda: self.commands.put("reload"))
        self.loop_lag = MainLoopLag(on_late=lambda **fields: self.events.add("main_loop.late",
                                                                             **fields))

    def run(self, signals: bool = True) -> int:
        """Runs until stopped. ``signals=False`` when embedded in a WSGI server (wsgi.py),
        whose signals are its own."""
        try:
            self.own.enter_namespace(self.config)   # before any socket: they belong to one
        except OSError as exc:
            raise StartupError(str(exc)) from None
        self.own.configure(self.config, self.loop_lag)  # the umask before any file is made
        if not self.options.pid:
            self.options.pid = process.pid_dir_file(self.config)     # use_pid_dir
        self._own_directories()
        if self.options.pid:
            pidfile.acquire(self.options.pid)
        try:
            # Handlers first: a signal during start-up is queued, not fatal (USR1's default
            # action would end the process).
            for name, signum in hub.SIGNALS.items() if signals else ():
                command = {"TERM": "stop", "INT": "stop", "HUP": "reload", "USR1": "dump",
                           "USR2": "stats"}[name]
                hub.on_signal(signum, lambda command=command: self.commands.put(command))
            if signals:
                hub.on_signal(dumps.SIGJSON, lambda: self.commands.put("json"))
            before, now = process.raise_fd_limit()
            if now != before:
                event(log, "director.fd_limit", soft_was=before, soft=now)
            self._start()
            self.started_wall = time.time()
            self.ready.set()
            hub.supervise(self._beat, name="heartbeat")
            self.reload_timer.start()
            self.loop_lag.threshold = threshold_for(self.config)
            self.loop_lag.start()
            # Everything built so far lives as long as the daemon: keep the collector from
            # walking it again and again (measured: a sixth of the checker's CPU at scale).
            gc.freeze()
            event(log, "director.started", pid=os.getpid(), config=self.options.use_file,
                  vrrp_instances=len(self.vrrp.instances) if self.vrrp else 0)
            while True:
                command = self.commands.get()
                if isinstance(command, tuple):          # from the web API: answer it
                    self._answer(*command)
                    continue
                try:
                    if getattr(self, f"handle_{command}")() is False:
                        break
                except Exception as exc:     # a handler's bug must not end the daemon
                    hub.count_crash("main loop")
                    log.exception("director.command_failed command=%s error=%r", command, exc)
        finally:
            # Every way out (a start-up that failed half-way, an exception nobody expected)
            # leaves as a stop does: priority 0, VIPs removed, pools as configured.
            if not self.stopped and (self.vrrp or self.checks or self.lb):
                self._stop_sequence()
            self.loop_lag.stop()
            if self.control is not None:
                self.control.stop()
            if self.web is not None:
                self.web.stop(timeout=1)
            if self.options.pid:
                pidfile.release(self.options.pid)
        return self.exit_code

    def _own_directories(self) -> None:
        """The state directory and the pid file's: created if missing, refused (before
        anything is touched) when another user could change what root writes there."""
        folders = [self.options.state_dir]
        if self.options.pid:
            folders.append(os.path.dirname(os.path.abspath(self.options.pid)))
        for folder in folders:
            try:
                own_directory(folder)
            except UnsafeDirectory as exc:
                raise StartupError(str(exc)) from None

    def _beat(self) -> None:
        while True:
            self.heartbeat = time.monotonic()
            hub.sleep(HEARTBEAT)

    def not_running(self) -> list[str]:
        """/healthz: what is not running as it should: the main loop when it has not turned
        for HEARTBEAT_LIMIT, a stalled check scheduler, a long-lived greenlet that crashed
        and waits for its restart."""
        problems = []
        if time.monotonic() - self.heartbeat > HEARTBEAT_LIMIT:
            problems.append("main loop (stalled)")
        if self.checks is not None and self.checks.scheduler.stalled(HEARTBEAT_LIMIT):
            problems.append("check scheduler (stalled)")
        if self.bgp is not None:
            problems += self.bgp.not_running()
        return problems + [f"{name} (crashed, restarting)" for name in hub.not_running()]

    def healthy(self) -> bool:
        return not self.not_running()

    def _start(self) -> None:
        # The web address first: if it is taken the daemon stops before it holds a VIP. Its
        # app (Flask, a quarter of a second of imports) is served once VRRP runs.
        web = self._bind_web() if self.options.web != "off" else None
        self._read_admin_token()
        # Before VRRP, as ever: once it runs, a quarter second of CPU in this greenlet (Flask's
        # imports) would hold a fresh MASTER's adverts back.
        if web is not None:
            self._serve_web(*web)
        self._start_overrides()
        pools = not self.options.vrrp and self.config.virtual_servers
        if pools:
            import_pool_modules()
        try:
            self.control = control.serve(self, self.options)
        except control.ControlError as exc:
            raise StartupError(str(exc)) from None
        self.mailer = Mailer(self.config, self.router_id())
        self.events.listeners.append(self.mailer.on_event)
        self.mailer.start()
        defs = self.config.global_defs
        self.notifier = notifier = Notifier(
            defs.script_user, script_security=defs.enable_script_security,
            supplementary_groups=defs.set_supplementary_groups)
        notifier.listeners.append(lambda why, result: self.events.add(
            "notify", via="script", why=why, result=result))
        if defs.startup_script is not None:    # before VRRP and the checkers (keepalived)
            notifier.run_and_wait(defs.startup_script, "startup_script",
                                  defs.startup_script_timeout)
        notifier.fifos.configure(self.config.global_defs, self._fifo_kinds())
        if not self.options.check:
            from .vrrp.arp import Announcer
            from .vrrp.firewall import FirewallError
            from .vrrp.service import VrrpService
            self.vrrp = VrrpService(self.config, self.clock, Announcer(), notifier)
            self.vrrp.on_new_instance.append(          # bgp_announce's vrrp_instance
                lambda instance: instance.listeners.append(
                    lambda instance, transition: self.bgp and self.bgp.changed.set()))
            self.vrrp.on_new_instance.append(
                lambda instance: instance.listeners.append(
                    lambda instance, transition: self.events.add(
                        "vrrp.transition", instance=instance.name,
                        from_state=transition.old, to_state=transition.new,
                        reason=transition.reason, priority=instance.state.priority)))
            self.vrrp.on_new_sync_group.append(
                lambda group: group.listeners.append(lambda group, state: self.events.add(
                    "vrrp.sync_group", sync_group=group.name, state=state)))
            try:
                self.vrrp.start()
            except FirewallError as exc:
                raise StartupError(f"accept mode off needs nftables: {exc}") from None
            self._quick_start_plan(self.sources)
            self.sources = None             # the files' bytes: the plan's writer has them
        else:
            from .vrrp.early import CAPTURE
            CAPTURE.close()                     # -C: no instance will read what it heard
        if pools:
            self._start_pools(self.config)
            if self.config.bgp is not None:
                self._start_bgp(self.config)
        elif self.config.bgp is not None:
            event(log, "bgp.not_started", logging.WARNING,
                  note="the bgp block announces virtual servers: "
                       + ("-P runs none" if self.options.vrrp else "the file has none"))

    def _quick_start_plan(self, sources: Any) -> None:
        """The address owners' plan for the next exec of this command line
        (director/vrrp/quickstart.py), written after VRRP's first turn."""
        from .vrrp import quickstart
        if self.vrrp is None or quickstart.QUICK.argv is None:
            return                          # embedded, or a test's daemon: no exec to plan
        config = self.config

        def write() -> None:
            if self.config is not config:
                return                      # a later reload writes its own
            quick = quickstart.QUICK
            if quick.taken or quick.errors:
                event(log, "vrrp.quick_start", instances=",".join(sorted(quick.taken)),
                      seconds=round(quick.took or 0, 4), errors="; ".join(quick.errors))
                quick.errors = []
            try:
                names = quickstart.write(self.options.state_dir, quick.argv, sources,
                                         self.vrrp, config, self.options,
                                         self.options.pid)
            except Exception as exc:    # noqa: BLE001 (a plan is only ever a speed-up)
                event(log, "vrrp.quick_start_plan_error", logging.WARNING, error=repr(exc))
                return
            event(log, "vrrp.quick_start_plan", instances=",".join(names) or "none")
        hub.spawn(write, name="quick start plan")

    def _read_admin_token(self) -> None:
        if self.admin_token is None:
            try:
                self.admin_token = read_admin_token(self.options.admin_token_file)
            except OSError as exc:
                raise StartupError(f"--admin-token-file: {exc}") from None

    def _start_overrides(self) -> None:
        """Read before the first converge: nothing an operator decided is revived or lost
        by a restart; then the peers' exchange (push on change, anti-entropy pull)."""
        self.overrides.load()
        self.override_peers.entries = self.overrides.store.as_lists
        self.override_peers.token = self.admin_token
        self.overrides.listeners.append(self.override_peers.push)
        self.override_peers.configure(self.config.override_peers,
                                      self.config.override_peers_ca)

    def _start_bgp(self, config: Any) -> None:
        """The announcer, after the pools (it reads their health after each converge)."""
        from .bgp.service import BgpService, engine_for, engine_problem
        problem = engine_problem(config)
        if problem:
            raise StartupError(problem)
        self.bgp = BgpService(config, engine_for(config, self.options.state_dir),
                              self.lb.health, self.vrrp_roles, on_event=self.events.add)
        self.lb.listeners.append(self.bgp.changed.set)
        try:
            self.bgp.start()
        except ValueError as exc:            # a peer the engine cannot be given
            raise StartupError(f"bgp: {exc}") from None

    def vrrp_roles(self) -> dict[str, str]:
        return {} if self.vrrp is None else {
            instance.name: instance.state.role for instance in self.vrrp.instances
            if instance.state is not None}

    def _start_pools(self, config: Any) -> None:
        """The checkers and the load balancer, at start-up or with the first virtual server
        a reload brings."""
        from .check.service import CheckService
        from .lb.backends import ipvs_available
        from .lb.service import LoadBalancer
        self.checks = CheckService(config, self.clock, self.notifier)
        self.checks.start()
        self.overrides.apply(self.checks)       # before the first converge
        self.checks.listeners.append(lambda state: self.events.add(
            "real_server", virtual_server=state.name[0], real_server=state.name[1],
            state="up" if state.up else "down",
            error="" if state.up else state.last_error()))
        self.checks.checker_listeners.append(lambda state, job: self.events.add(
            "checker", virtual_server=state.name[0], real_server=state.name[1],
            checker=job.key[2], state="up" if job.health.up else "down",
            server_state="up" if state.up else "down",
            error="" if job.health.up or job.last is None else job.last.error or ""))
        backend = self.options.backend
        if backend is None:
            backend = "ipvs" if ipvs_available() else "none"
            if backend == "none":
                event(log, "lb.observe_only", logging.WARNING,
                      note="this kernel has no IP_VS: virtual servers are checked but not "
                           "programmed (use --backend nftables to program nftables)")
        self.lb = LoadBalancer(config, self.checks, backend, self.notifier,
                               drain_timeout=self.options.drain_timeout,
                               on_event=self.events.add)
        self.lb.start()

    def _bind_web(self) -> tuple[Any, str, str, Any]:
        """The web face's address, bound, with what it needs checked (director/webserver.py):
        refused before anything starts when an admin token would cross a network in clear
        text, or TLS is asked for with a file that is wrong. -> (listener, host, port, TLS
        context or None) for ``_serve_web``. The web modules load here: a daemon without a
        web face (--web off, a -P beside a -C) does not load gevent's WSGI server and
        http.client's email parser on its way to the first advert."""
        from . import webserver
        options = self.options
        host, _, port = options.web.rpartition(":")
        host = host.strip("[]") or "127.0.0.1"
        if not port.isdecimal():
            raise StartupError(f"--web {options.web}: expected HOST:PORT or off")
        if bool(options.web_tls_cert) != bool(options.web_tls_key):
            raise StartupError("--web-tls-cert and --web-tls-key go together")
        try:
            self.admin_token = read_admin_token(options.admin_token_file)
            refusal = webserver.clear_text_refusal(host, self.admin_token is not None,
                                                   bool(options.web_tls_cert),
                                                   options.web_insecure)
            if refusal:
                raise StartupError(refusal)
            tls = None
            if options.web_tls_cert:
                try:
                    tls = webserver.tls_context(options.web_tls_cert, options.web_tls_key)
                except ValueError as exc:           # it names the file that is wrong
                    raise StartupError(f"--web-tls-cert/--web-tls-key: {exc}") from None
            return webserver.listen(host, int(port)), host, port, tls
        except OSError as exc:
            raise StartupError(f"cannot serve the web face on {options.web}: {exc}") \
                from None

    def _serve_web(self, listener: Any, host: str, port: str, tls: Any) -> None:
        """The dashboard, API and /metrics app on the socket ``_bind_web`` bound: clients
        that came meanwhile waited in its backlog."""
        from web import create_app

        from . import webserver
        token = self.admin_token
        limit = self._web_limit(self.config)
        app = create_app(self, admin_token=token, max_streams=webserver.stream_limit(limit))
        self.web = webserver.serve(app, listener, limit, tls)
        self.web.streams = app.config["STREAMS"]
        fields = dict(address=f"{host}:{port}", admin=token is not None, tls=tls is not None,
                      connections=limit, streams=webserver.stream_limit(limit))
        if token is None and not webserver.is_loopback(host):
            fields["note"] = "read-only: no --admin-token-file (admin off)"
        event(log, "web.listening", logging.WARNING if "note" in fields else logging.INFO,
              **fields)

    def _web_limit(self, config: Any) -> int:
        """Web connections allowed: the descriptor limit minus the reserve ``config`` needs
        (webserver.fd_reserve); said in the log when it changes."""
        from . import webserver
        nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        reserve = webserver.fd_reserve(config)
        limit = webserver.connection_limit(nofile, reserve)
        if self.web is None or self.web.limit != limit:
            event(log, "web.connection_limit",
                  logging.WARNING if nofile - reserve < limit else logging.INFO,
                  connections=limit, fd_limit=nofile, fd_reserve=reserve)
        return limit

    def web_view(self) -> WebView | None:
        if self.web is None:
            return None
        return self.web.view(streams_dropped=self.events.dropped_subscribers)

    def handle_stop(self) -> bool:
        self._stop_sequence()
        return False

    def _stop_sequence(self) -> None:
        self.stopped = True
        event(log, "director.stopping")
        # keepalived's order: the FIFO scripts get TERM, then the last lines (STOP), then
        # the FIFOs close (a reader sees end of file)
        terminated = self.notifier.fifos.terminate_scripts() if self.notifier else []
        if self.bgp is not None:   # first: the routers move the flows before the pools go
            self.bgp.withdraw_for_stop()
            self.bgp.stop()
        if self.lb is not None:
            self.lb.stop()
        if self.checks is not None:
            self.checks.stop()
        if self.vrrp is not None:
            self.vrrp.stop()
        if self.notifier is not None:
            # quorum_down / notify_down of omega, notify_stop: child_wait_time is how long
            # keepalived's parent waits for its children's
            wait = process.top_level(self.config, "child_wait_time")
            self.notifier.wait(timeout=1.0 if wait is None else wait)
            self.notifier.fifos.close(terminated)
            defs = self.config.global_defs
            if defs.shutdown_script is not None:
                self.notifier.run_and_wait(defs.shutdown_script, "shutdown_script",
                                           defs.shutdown_script_timeout)
        if self.mailer is not None:
            self.mailer.stop()
        self.override_peers.stop()
        event(log, "director.stopped")

    def history(self, virtual_name: str) -> dict[str, list] | None:
        """/api/v1/history: the recent (seconds, ok) of each real server of a virtual server,
        None when there is no such virtual server; {} when nothing is checked (-P)."""
        if self.checks is None:
            return {}
        return self.checks.history(virtual_name)

    def router_id(self) -> str:
        return self.config.global_defs.router_id or self.config_id

    def vrrp_snapshot(self) -> VrrpView:
        from .state import VrrpView       # not on the way to the first advert
        return self.vrrp.snapshot() if self.vrrp else VrrpView()

    def notifications(self) -> dict[tuple[str, str], int]:
        """(kind, result) -> count: notify scripts and mails."""
        counts = {("script", result): n
                  for result, n in (self.notifier.results if self.notifier else {}).items()}
        counts.update({("smtp", result): n
                       for result, n in (self.mailer.results if self.mailer else {}).items()})
        return counts

    def snapshot(self, with_jobs: bool = False) -> State:
        """The live state (what the web face, the metrics and the dumps read)."""
        from .snapshot import take        # the views are not on the way to the first advert
        return take(self, with_jobs=with_jobs)

    def _write_state_file(self, name: str, lines) -> bool:
        return dumps.write_state_file(self.options.state_dir, name, lines)

    def handle_dump(self) -> bool:
        from .snapshot import take
        self._write_state_file(self._dump_path("state"),
                               dumps.state_lines(take(self, dumps.YIELD_EVERY)))
        return True

    def _dump_path(self, kind: str) -> str:
        return dumps.path(self.config, kind, self.options.state_dir)

    def process_view(self) -> ProcessView | None:
        return self.own.view(self.reload_timer.due)

    def handle_json(self) -> bool:
        """keepalived's SIGJSON: the VRRP instances as JSON (json_version's shape)."""
        data = dumps.vrrp_json(self.vrrp_snapshot().as_json(),
                               self.config.global_defs.json_version)
        self._write_state_file(self._dump_path("json"), [json.dumps(data, indent=2), "\n"])
        return True

    def handle_stats(self) -> bool:
        vrrp = self.vrrp_snapshot().as_json()
        stats = {i["name"]: i["counters"] for i in vrrp["instances"]}
        stats["dropped_by_interface"] = vrrp["dropped_by_interface"]
        self._write_state_file(self._dump_path("stats"), [json.dumps(stats, indent=2), "\n"])
        return True
