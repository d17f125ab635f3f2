"""The reload transaction, a mixin of the daemon (director/daemon.py's Director).

A reload is one transaction: the file parsed fresh on the loop in slices, one plan old ->
new (reconcile.plan), what can fail prepared, then applied by every subsystem, and
``self.config`` committed last. A failure before the apply changes nothing; one during it
is rolled back to the running configuration. Every outcome is counted and becomes an event.
What a reload changes is decided in reconcile.py alone; this module only carries it out.
"""

from __future__ import annotations

import gc
import logging
import time
from typing import TYPE_CHECKING, Any

from . import hub, reloadfiles
from .config import Unreadable, load_config
from .log import event
from .looplag import threshold_for

if TYPE_CHECKING:
    from . import reconcile

log = logging.getLogger("director")

MAX_LOGGED_DIAGNOSTICS = 50     # a file of garbage must not become half a million log lines
FREEZE_COLLECT_SERVERS = 5000   # real servers in a new model: past this a pass over it before
                                # the freeze would hold the loop too long (see _reload)


def real_server_count(config: Any) -> int:
    return sum(len(virtual.real_servers) for virtual in config.virtual_servers)


def release_slowly(parts: list, chunk: int = 100) -> None:
    """Drop the replaced model a few virtual servers at a time: freeing a million objects at
    once is one C call that holds the loop (a tenth of a second at 10,000 real servers)."""
    while parts:
        del parts[-chunk:]
        hub.breathe()



class Reloading:
    """handle_reload and its steps; the attributes it uses are the Director's."""

    def handle_reload(self) -> bool:
        try:
            return self._reload()
        except Exception as exc:          # a bug of ours: counted, said, and the daemon goes on
            hub.count_crash("reload")
            log.exception("reload.crashed error=%r", exc)
            return self._reloaded("failure", [f"internal error while reloading: {exc!r}"])

    def _reload(self) -> bool:
        """One transaction: parse fresh (on the loop, in slices), plan old -> new once
        (reconcile.plan), prepare what can fail, apply, commit ``self.config`` last. A
        failure before the apply changes nothing; one during it is rolled back to the old
        configuration. Every outcome is counted and becomes an event."""
        self._coalesce("reload")
        # The freeze below takes every object alive, garbage too, and a cycle frozen is never
        # collected; the web face leaves cycles with every request (werkzeug's route matcher,
        # exceptions' tracebacks). What died before this reload goes now, where that is cheap:
        # the running model is frozen, but the checkers' state built after its freeze is not
        # (a pass over 12,000 real servers' held the adverts 180 ms: bench/reload_lateness.py).
        if real_server_count(self.config) <= FREEZE_COLLECT_SERVERS:
            gc.collect()
        # The collector's passes are not sliced: over the million objects a large file
        # parses into, they stalled the loop (and the adverts) for a second. It rests while
        # the file is parsed, and a new model is frozen (kept out of its passes, as at
        # start: see run()) before it is applied; its objects hold no cycles, so one that is
        # refused later is freed all the same.
        gc.disable()
        started = time.monotonic()
        try:
            result, plan = self._parse_and_plan(self.config)
            if plan is not None and not plan.unchanged:
                # The web face served requests between the parse's slices: their cycles go
                # in one more pass, over the new model mostly, where that is cheap (1 ms at
                # 2,000 real servers; 80 ms at 100,000 lines held the adverts back,
                # bench/reload_lateness.py): a large file freezes the few made meanwhile.
                if real_server_count(result.config) <= FREEZE_COLLECT_SERVERS:
                    gc.collect()
                gc.freeze()
        except Unreadable as exc:                 # the file went away, a directory, a FIFO
            event(log, "reload.failed", logging.ERROR, error=str(exc),
                  note="keeping the running configuration")
            return self._reloaded("failure", [str(exc)])
        finally:
            gc.enable()
        for diagnostic in result.diagnostics[:MAX_LOGGED_DIAGNOSTICS]:
            event(log, "config.diagnostic", logging.WARNING, diagnostic=str(diagnostic))
        if plan is None:
            event(log, "reload.failed", logging.ERROR, errors=len(result.errors),
                  note="keeping the running configuration")
            return self._reloaded("failure", [str(d) for d in result.errors])
        if plan.unchanged:
            event(log, "reload.unchanged")
            self._quick_start_plan(result.sources)      # the files may differ, if not the model
            self._fifo_states(plan)
            return self._reloaded("success", [], "unchanged")
        try:
            prepared = self._prepare(plan)
        except Exception as exc:      # e.g. a new instance's interface cannot be opened
            event(log, "reload.refused", logging.ERROR, error=repr(exc),
                  note="nothing was changed; fix the file and reload")
            return self._reloaded("failure", [f"preparing the new configuration: {exc}"])
        ready = time.monotonic()                  # parsed, planned and prepared
        try:
            self._apply(plan, prepared)
        except Exception as exc:
            log.exception("reload.apply_failed error=%r", exc)
            return self._reloaded("failure", [f"applying the new configuration: {exc}; "
                                              + self._roll_back(plan)])
        self.config = plan.new
        self._quick_start_plan(result.sources)
        reloadfiles.save(plan.old, plan.new, self.config_id)      # config_save_dir
        if self.web is not None:
            self.web.limit = self._web_limit(plan.new)
        hub.spawn(release_slowly, list(plan.old.virtual_servers), name="release old model")
        self._fifo_states(plan)
        note = plan.describe()
        event(log, "reload.applied", note=note, parse_seconds=round(ready - started, 3),
              apply_seconds=round(time.monotonic() - ready, 3))
        return self._reloaded("success", [], note)

    def _parse_and_plan(self, running: Any) -> tuple[Any, reconcile.ReloadPlan | None]:
        """The pure part of a reload, in slices with the loop running between them (a
        100,000-line file is most of a second of work)."""
        from . import reconcile                   # not on the way to the first advert
        pause = hub.Slicer()
        with reloadfiles.reading(running, self.options.state_dir):      # reload_file
            result = load_config(self.options.use_file, self.config_id, pause=pause)
        reloadfiles.write_check_log(running, result.diagnostics, result.ok)
        return result, reconcile.plan(running, result.config, pause) if result.ok else None

    def _coalesce(self, command: str) -> None:
        """Signals that queued up behind this one are one reload: the file is read once."""
        merged = 0
        while not self.commands.empty() and self.commands.peek_nowait() == command:
            self.commands.get_nowait()
            merged += 1
        if merged:
            event(log, "reload.coalesced", signals=merged)

    def _prepare(self, plan: reconcile.ReloadPlan) -> Any:
        """What can fail, before anything changes (VRRP sockets and instances)."""
        if self.bgp is None and plan.new.bgp is not None:
            from .bgp.service import engine_problem
            problem = engine_problem(plan.new)
            if problem:
                raise RuntimeError(problem)
        if self.vrrp is not None and not plan.instances.unchanged:
            return self.vrrp.prepare(plan.instances, plan.new)
        return None

    def _apply(self, plan: reconcile.ReloadPlan, prepared: Any) -> None:
        """Each subsystem applies its part of the one plan."""
        if not self.options.vrrp:
            if self.checks is None:
                if plan.new.virtual_servers:      # the first virtual servers of this run
                    self._start_pools(plan.new)
            elif not plan.servers.unchanged or plan.load_balancer:
                self.checks.apply(plan.servers, plan.new)
                self.overrides.apply(self.checks)   # the servers a reload brought back
                self.lb.reload(plan.new)
            self._apply_bgp(plan)
        if self.mailer is not None and plan.mail:
            self.mailer.configure(plan.new)
        if self.notifier is not None:
            self.notifier.configure(plan.new.global_defs.script_user,
                                    plan.new.global_defs.enable_script_security,
                                    plan.new.global_defs.set_supplementary_groups)
            self.notifier.fifos.configure(plan.new.global_defs, self._fifo_kinds())
        self.own.configure(plan.new, self.loop_lag)
        self.override_peers.configure(plan.new.override_peers, plan.new.override_peers_ca)
        if prepared is not None:
            self.vrrp.apply(prepared)

    def _apply_bgp(self, plan: reconcile.ReloadPlan) -> None:
        """The bgp block came (the announcer starts), went (everything is withdrawn, the
        engine stops) or stayed (its part of the plan)."""
        if self.bgp is None:
            if plan.new.bgp is not None and self.lb is not None:
                self._start_bgp(plan.new)
        elif plan.new.bgp is None:
            self.bgp.withdraw_for_stop()
            self.bgp.stop()
            self.lb.listeners.remove(self.bgp.changed.set)
            self.bgp = None
        else:
            self.bgp.reload(plan.new, plan.bgp)

    def _fifo_kinds(self) -> tuple[str, ...]:
        """The notify FIFO lines this daemon writes: -P has no load balancer, -C no VRRP."""
        from .notify_fifo import LVS, VRRP
        return (VRRP,) if self.options.vrrp else (LVS,) if self.options.check else (VRRP, LVS)

    def _fifo_states(self, plan: reconcile.ReloadPlan) -> None:
        """fifo_write_vrrp_states_on_reload: what the reload did not restart says its state."""
        if self.vrrp is not None and plan.new.global_defs.fifo_write_vrrp_states_on_reload:
            restarted = tuple(name for name in plan.instances.starting
                              if name not in self.vrrp.role_kept)   # those said theirs
            self.vrrp.notices.write_states(self.vrrp.sync_groups, self.vrrp.instances,
                                           restarted, plan.instances.sync_groups)

    def _roll_back(self, plan: reconcile.ReloadPlan) -> str:
        """After a failed apply: every subsystem back on the running configuration (a
        plan from what was being applied to it). Returns what to tell the operator."""
        from . import reconcile
        back = reconcile.plan(plan.new, plan.old)
        try:
            self._apply(back, self._prepare(back))
        except Exception as exc:
            log.exception("reload.rollback_failed error=%r", exc)
            return f"rolling back failed too ({exc}): restart the daemon"
        event(log, "reload.rolled_back", note="the running configuration is back")
        return "rolled back to the running configuration"

    def _reloaded(self, result: str, errors: list[str], note: str = "") -> bool:
        now = time.time()
        self.reloads[result] += 1
        if result == "success":
            self.last_reload_success = now
            # runtime weights last until a reload (director/overrides.py), on every peer
            if self.overrides.clear_weights(self.checks) and self.lb is not None:
                self.lb.changed.set()
            self.loop_lag.threshold = threshold_for(self.config)
        self.reload_status = {"result": result, "at": now, "errors": errors[:20], "note": note}
        self.events.add("reload", result=result, errors=len(errors), note=note)
        return True
