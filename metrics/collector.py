"""The Prometheus metrics of the contract, built at scrape time from one State
(director/state.py).

Nothing in the hot path touches a metric object: the checks count into plain lists on their
jobs (state.DURATION_BUCKETS), VRRP into its counters, and a scrape turns one State into
metric families. With ten thousand real servers that is one walk of the state per scrape
instead of millions of metric updates a minute.

Two writers share the work. ``SnapshotCollector`` (prometheus_client) yields the families
with a few samples each: the daemon's and VRRP's. The families with samples per real server
(about 220,000 lines for 10,000 servers, mostly histogram buckets) are written as text by
``per_server_text``: prometheus_client's generic formatting took 1.7 s for them (measured,
bench/web_scale.py), against a 300 ms goal; here each server's label set is escaped once
and cached across scrapes, and each line is one concatenation.
"""

from __future__ import annotations

from itertools import accumulate as _accumulate
from typing import Any, Iterator

from prometheus_client.core import (CounterMetricFamily, GaugeMetricFamily,
                                   HistogramMetricFamily, Metric)
from prometheus_client.registry import Collector

from director.state import (DURATION_BUCKETS, VRRP_STATE_NUMBERS, WEB_REFUSALS, FirewallView,
                            JobStats, LatenessView, LvsSyncView, RealServerView, State,
                            VirtualServerView, VrrpView, keep_encoded)

BUCKET_LABELS = [repr(float(bound)) for bound in DURATION_BUCKETS] + ["+Inf"]


class SnapshotCollector(Collector):
    """The daemon's and VRRP's families, from one State."""

    def __init__(self, snapshot: State, version: str = "") -> None:
        self.snapshot = snapshot
        self.version = version

    def collect(self) -> Iterator[Metric]:
        yield from self._daemon(self.snapshot)
        yield from self._vrrp(self.snapshot.vrrp)
        if self.snapshot.bgp is not None:
            yield from self._bgp(self.snapshot.bgp)
        if self.snapshot.overrides is not None:
            yield from self._overrides(self.snapshot.overrides)

    @staticmethod
    def _overrides(view: Any) -> Iterator[Metric]:
        """The operator's overrides and their exchange with the peer directors
        (director/override_peers.py's OverridesView)."""
        yield GaugeMetricFamily("director_overrides_active",
                                "Operator overrides in force (drain, weight, maintenance).",
                                value=view.active)
        failures = CounterMetricFamily(
            "director_override_peer_sync_failures_total",
            "Override exchanges with a peer director that failed.", labels=["peer"])
        last = GaugeMetricFamily(
            "director_override_peer_last_sync_timestamp_seconds",
            "When the last override exchange with a peer director worked (0: never).",
            labels=["peer"])
        for peer in view.peers:
            failures.add_metric([peer.url], peer.failures)
            last.add_metric([peer.url], peer.last_sync or 0)
        yield failures
        yield last
        dropped = CounterMetricFamily(
            "director_override_peer_messages_dropped_total",
            "Peer override messages dropped, by reason (unauthenticated, malformed, "
            "too_large; bad_entry counts entries).", labels=["reason"])
        for reason, count in view.dropped.items():
            dropped.add_metric([reason], count)
        yield dropped

    @staticmethod
    def _bgp(bgp: Any) -> Iterator[Metric]:
        """The BGP announcer (director/bgp/view.py's BgpView)."""
        up = GaugeMetricFamily("director_bgp_session_up",
                               "1 while the BGP session with the peer is established.",
                               labels=["peer"])
        flaps = CounterMetricFamily("director_bgp_session_flaps_total",
                                    "Times the BGP session with the peer went down.",
                                    labels=["peer"])
        for session in bgp.sessions:
            up.add_metric([session.peer], 1 if session.state == "up" else 0)
            flaps.add_metric([session.peer], session.flaps)
        yield up
        yield flaps
        announced = GaugeMetricFamily(
            "director_bgp_announced",
            "1 while the prefix is announced to the peer (with its healthy or a down/"
            "maintenance MED), 0 while withdrawn.", labels=["prefix", "peer"])
        for prefix in bgp.prefixes:
            for peer in prefix.peers:
                announced.add_metric([prefix.prefix, peer], 1 if prefix.announced else 0)
        yield announced
        yield CounterMetricFamily("director_bgp_engine_restarts_total",
                                  "Times the BGP engine (ExaBGP) died and was started again.",
                                  value=bgp.counters.get("restarts", 0))
        yield GaugeMetricFamily("director_bgp_engine_running",
                                "1 while the BGP engine runs and director talks to it.",
                                value=1 if bgp.running else 0)

    def _daemon(self, snapshot: State) -> Iterator[Metric]:
        info = GaugeMetricFamily("director_build_info", "director's version.",
                                 labels=["version", "backend"])
        info.add_metric([self.version, snapshot.backend or "none"], 1)
        yield info
        yield GaugeMetricFamily("director_healthy",
                                "1 while the main loop and the check scheduler run (/healthz).",
                                value=1 if snapshot.healthy else 0)
        reloads = CounterMetricFamily("director_config_reloads_total",
                                      "Configuration reloads by result.", labels=["result"])
        for result in ("success", "failure"):
            reloads.add_metric([result], snapshot.reloads.get(result, 0))
        yield reloads
        yield GaugeMetricFamily(
            "director_config_last_reload_success_timestamp_seconds",
            "When the configuration was last loaded successfully (start-up counts).",
            value=snapshot.last_reload_success or snapshot.started or 0)
        yield GaugeMetricFamily("director_config_last_reload_successful",
                                "0 when the most recent reload failed.",
                                value=0 if snapshot.reload.result == "failure" else 1)
        notifications = CounterMetricFamily("director_notifications_total",
                                            "Notifications sent, by kind and result.",
                                            labels=["kind", "result"])
        for (kind, result), count in sorted(snapshot.notifications.items()):
            notifications.add_metric([kind, result], count)
        yield notifications
        if snapshot.notify_fifos:
            fifo_lines = CounterMetricFamily(
                "director_notify_fifo_lines_total",
                "Lines for the notify FIFOs: written, or dropped by reason (full: no reader "
                "emptied the pipe; closed: the FIFO could not be opened; error).",
                labels=["fifo", "result"])
            for fifo in snapshot.notify_fifos:
                fifo_lines.add_metric([fifo.path, "written"], fifo.written)
                for reason, count in sorted(fifo.dropped.items()):
                    fifo_lines.add_metric([fifo.path, reason], count)
            yield fifo_lines
        balancer = snapshot.load_balancer
        if balancer is not None:
            errors = CounterMetricFamily("director_lb_errors_total",
                                         "Load-balancer backend errors (netlink, nft), by "
                                         "operation; each is retried.",
                                         labels=["backend", "operation"])
            for operation, count in sorted(balancer.errors.items()):
                errors.add_metric([balancer.backend, operation], count)
            yield errors
        crashes = CounterMetricFamily("director_greenlet_crashes_total",
                                      "Exceptions that ended a long-lived part of the daemon "
                                      "(it is restarted).", labels=["greenlet"])
        for name, count in sorted(snapshot.crashes.items()):
            crashes.add_metric([name], count)
        yield crashes
        unreadable = CounterMetricFamily("director_check_reply_errors_total",
                                         "Checked servers' replies that could not be read "
                                         "(the check fails; an AGENT_CHECK's reply is "
                                         "ignored), by checker and reason.",
                                         labels=["checker", "reason"])
        for (checker, reason), count in sorted(snapshot.check_reply_errors.items()):
            unreadable.add_metric([checker, reason], count)
        yield unreadable
        if snapshot.web is not None:
            refused = CounterMetricFamily(
                "director_web_requests_refused_total",
                "Web requests and connections refused or cut, by reason.", labels=["reason"])
            for reason in WEB_REFUSALS:
                refused.add_metric([reason], snapshot.web.refused.get(reason, 0))
            yield refused
        if snapshot.lateness_p99 is not None:
            yield GaugeMetricFamily(
                "director_check_start_lateness_seconds",
                "99th percentile of how late recent checks started past their due time.",
                value=snapshot.lateness_p99)
        if snapshot.main_loop is not None:
            lag = HistogramMetricFamily(
                "director_main_loop_lag_seconds",
                "How late the main loop ran a timer due every 100 ms (a lag over one advert "
                "interval is logged with its cause).")
            _histogram(lag, [], snapshot.main_loop.lag)
            yield lag
            collecting = CounterMetricFamily(
                "director_gc_pause_seconds",
                "Time the cyclic garbage collector held the main loop, by generation.",
                labels=["generation"])
            collections = CounterMetricFamily(
                "director_gc_collections", "Cyclic garbage collections, by generation.",
                labels=["generation"])
            for generation, (seconds, count) in enumerate(zip(snapshot.main_loop.gc_seconds,
                                                               snapshot.main_loop.gc_collections)):
                collecting.add_metric([str(generation)], seconds)
                collections.add_metric([str(generation)], count)
            yield collecting
            yield collections

    def _vrrp(self, vrrp: VrrpView) -> Iterator[Metric]:
        role = GaugeMetricFamily("director_vrrp_state",
                                 "VRRP state: 0 INIT, 1 BACKUP, 2 MASTER, 3 FAULT, 4 STOP.",
                                 labels=["instance", "vrid", "interface"])
        priority = GaugeMetricFamily("director_vrrp_priority", "Effective priority.",
                                     labels=["instance"])
        transitions = CounterMetricFamily("director_vrrp_transitions_total",
                                          "VRRP state transitions.",
                                          labels=["instance", "from_state", "to_state"])
        became = CounterMetricFamily("director_vrrp_became_master_total",
                                     "Transitions to MASTER.", labels=["instance"])
        sent = CounterMetricFamily("director_vrrp_adverts_sent_total", "Adverts sent.",
                                   labels=["instance"])
        received = CounterMetricFamily("director_vrrp_adverts_received_total",
                                       "Adverts received and accepted.", labels=["instance"])
        # Packets no instance was told of (undecodable, or for a vrid we do not run) have
        # their interface and an empty instance (a label set of its own, which promtool
        # accepts, rather than a second family with other labels).
        dropped = CounterMetricFamily("director_vrrp_packets_dropped_total",
                                      "Packets dropped by the receive checks, by reason.",
                                      labels=["instance", "interface", "reason"])
        lateness = HistogramMetricFamily(
            "director_vrrp_advert_lateness_seconds",
            "How late a MASTER sent each advert past its due time (advert_int after the last).",
            labels=["instance"])
        for instance in vrrp.instances:
            name, counters = instance.name, instance.counters
            if instance.advert_lateness is not None:
                _histogram(lateness, [name], instance.advert_lateness)
            role.add_metric([name, str(instance.vrid), instance.interface],
                            VRRP_STATE_NUMBERS.get(instance.state or "INIT", 0))
            priority.add_metric([name], instance.effective_priority)
            if counters is None:
                continue
            for (old, new), count in sorted(counters.transitions.items()):
                transitions.add_metric([name, old, new], count)
            became.add_metric([name], counters.became_master)
            sent.add_metric([name], counters.adverts_sent)
            received.add_metric([name], counters.adverts_received)
            for reason, count in sorted(counters.dropped.items()):
                dropped.add_metric([name, instance.interface, reason], count)
        for (interface, reason), count in sorted(vrrp.dropped_by_interface.items()):
            dropped.add_metric(["", interface, reason], count)
        yield from (role, priority, transitions, became, sent, received, dropped, lateness)
        yield from self._lvs_sync(vrrp.lvs_sync_daemon)
        yield from self._firewall(vrrp.firewall)

    @staticmethod
    def _firewall(view: FirewallView | None) -> Iterator[Metric]:
        if view is None:
            return
        yield GaugeMetricFamily("director_vrrp_firewall_blocked_addresses",
                                "Addresses whose traffic is dropped now (accept mode off).",
                                value=len(view.blocked))
        yield GaugeMetricFamily("director_vrrp_firewall_in_step",
                                "1 when the nftables tables were last seen to hold what "
                                "accept mode asks for.", value=1 if view.in_step else 0)
        yield CounterMetricFamily("director_vrrp_firewall_errors_total",
                                  "Failed nft runs of the accept-mode tables.",
                                  value=view.errors)

    @staticmethod
    def _lvs_sync(daemon: LvsSyncView | None) -> Iterator[Metric]:
        if daemon is None:
            return
        running = GaugeMetricFamily(
            "director_lvs_sync_daemon_running",
            "1 while the kernel runs the IPVS connection sync daemon of this state.",
            labels=["state", "interface", "syncid"])
        states = {d["state"]: d for d in daemon.running}
        for state in ("master", "backup"):
            found = states.get(state, {})
            running.add_metric([state, found.get("interface", daemon.interface),
                                str(found.get("syncid", ""))], 1 if found else 0)
        yield running
        yield GaugeMetricFamily("director_lvs_sync_daemon_in_step",
                                "1 when the kernel's sync daemons are what the followed VRRP "
                                "instance's state calls for.",
                                value=1 if daemon.in_step else 0)
        yield CounterMetricFamily("director_lvs_sync_daemon_errors_total",
                                  "Failed attempts to read, start or stop the sync daemons.",
                                  value=daemon.errors)


def _histogram(family: HistogramMetricFamily, labels: list[str], view: LatenessView) -> None:
    running, cumulative = 0, []
    for bound, count in zip([repr(float(b)) for b in view.bounds] + ["+Inf"], view.buckets):
        running += count
        cumulative.append((bound, running))
    family.add_metric(labels, cumulative, view.total)


# === the families with samples per real server, as text ========================================

def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float | int) -> str:
    return str(value) if isinstance(value, int) else repr(float(value))


class LabelCache:
    """Escaped label sets by name, and each checker's lines with the counters they were
    written from, kept across scrapes (bounded: reset when it holds more than three times
    what one scrape asked for, e.g. after reloads removed servers)."""

    def __init__(self) -> None:
        self.labels: dict[tuple, str] = {}
        self.buckets: dict[tuple, str] = {}           # histogram_format's, by names
        # Each checker's histogram and totals as written at the last scrape, with the
        # counters they were written from: a checker that has not run since (delay_loop
        # longer than the scrape interval) is written again only if its counters differ.
        self.histograms: dict[tuple, tuple[tuple, float, str]] = {}
        self.totals: dict[tuple, tuple[int, int, str]] = {}
        self.asked = 0

    def of(self, *names: str) -> str:
        self.asked += 1
        found = self.labels.get(names)
        if found is None:
            keys = ("virtual_server", "real_server", "checker")
            found = ",".join(f'{key}="{_escape(name)}"' for key, name in zip(keys, names))
            self.labels[names] = found
        return found

    def histogram_format(self, *names: str) -> str:
        """A checker's histogram lines as one %-format: 14 cumulative bucket counts, the
        count, the sum (as _number writes it). One C call writes them, where a line at a
        time was most of a changed server's lines' cost."""
        found = self.buckets.get(names)
        if found is None:
            labels = self.of(*names).replace("%", "%%")
            found = "".join([f"director_check_duration_seconds_bucket{{{labels},"
                             f'le="{le}"}} %d\n' for le in BUCKET_LABELS])
            found += (f"director_check_duration_seconds_count{{{labels}}} %d\n"
                      f"director_check_duration_seconds_sum{{{labels}}} %s\n")
            self.buckets[names] = found
        return found

    def histogram(self, job: JobStats) -> str:
        names = (job.virtual_server, job.real_server, job.checker)
        self.asked += 1
        found = self.histograms.get(names)
        buckets, duration_sum = job.buckets, job.duration_sum
        if found is not None and found[0] == buckets and found[1] == duration_sum:
            return found[2]
        cumulative = tuple(_accumulate(buckets))
        text = self.histogram_format(*names) % (*cumulative, cumulative[-1],
                                                _number(duration_sum))
        self.histograms[names] = (buckets, duration_sum, text)
        return text

    def checks_total(self, job: JobStats) -> str:
        names = (job.virtual_server, job.real_server, job.checker)
        self.asked += 1
        found = self.totals.get(names)
        if found is not None and found[0] == job.ok and found[1] == job.failed:
            return found[2]
        labels = self.of(*names)
        text = (f'director_checks_total{{{labels},result="success"}} {job.ok}\n'
                f'director_checks_total{{{labels},result="failure"}} {job.failed}\n')
        self.totals[names] = (job.ok, job.failed, text)
        return text

    def end_scrape(self) -> None:
        held = len(self.labels) + len(self.buckets) + len(self.histograms) + len(self.totals)
        if held > 3 * self.asked + 1000:
            self.labels.clear()
            self.buckets.clear()
            self.histograms.clear()
            self.totals.clear()
        self.asked = 0


def _header(out: list[str], name: str, kind: str, text: str) -> None:
    out.append(f"# HELP {name} {text}\n# TYPE {name} {kind}\n")


def _cert_not_after(real: RealServerView) -> float | None:
    last = None if real.check is None else real.check.last_check
    return None if last is None else last.cert_not_after


# (name, type, help, value of a real server's view: None writes no line)
REAL_FAMILIES = (
    ("director_real_server_up", "gauge", "1 while its checkers say up.",
     lambda real: None if real.check is None else int(real.check.up)),
    ("director_real_server_weight", "gauge",
     "Its weight in the kernel now (0 when not there).", lambda real: real.weight or 0),
    ("director_real_server_configured_weight", "gauge", "Its weight in the configuration.",
     lambda real: real.configured_weight),
    ("director_real_server_drained", "gauge", "1 while an operator has drained it.",
     lambda real: int(real.check is not None and real.check.drained)),
    ("director_real_server_slow_start_ratio", "gauge",
     "Where its slow start ramp is, as a fraction of its full weight (only while it ramps).",
     lambda real: None if real.ramp is None else real.ramp.fraction),
    ("director_real_server_certificate_expiry_timestamp_seconds", "gauge",
     "When the certificate its SSL_GET check saw expires.", _cert_not_after),
)
VIRTUAL_FAMILIES = (
    ("director_virtual_server_quorum_up", "gauge",
     "1 while the live weight reaches the quorum.", lambda vs: int(vs.quorum_ok)),
    ("director_virtual_server_sorry_server_active", "gauge",
     "1 while the sorry server serves.", lambda vs: int(vs.sorry_server_active)))
TRAFFIC = (("connections", "Connections the kernel scheduled (IPVS).", (("", "connections"),)),
           ("packets", "Packets the kernel forwarded (IPVS).",
            (("in", "packets_in"), ("out", "packets_out"))),
           ("bytes", "Bytes the kernel forwarded (IPVS).",
            (("in", "bytes_in"), ("out", "bytes_out"))))
CONNECTIONS = (("active", "Established connections to the real server now (IPVS ActiveConn)."),
               ("inactive", "Its other connections now (IPVS InActConn: closing, TIME_WAIT, "
                            "UDP)."))

# The families in the order they are written, each a slot of a virtual server's part: its
# lines of that family (see _server_part). A family marked "if" is written only when some
# server has a line in it (IPVS's counters, connections where the backend can tell).
FAMILIES = (
    (("director_check_duration_seconds", "histogram", "How long checks took, pass or fail."),
     None),
    (("director_checks_total", "counter", "Check attempts by result."), None),
    *[((name, kind, text), None) for name, kind, text, _ in REAL_FAMILIES],
    *[((name, kind, text), None) for name, kind, text, _ in VIRTUAL_FAMILIES],
    *[((f"director_virtual_server_{what}_total", "counter", text), "virtual_traffic")
      for what, text, _ in TRAFFIC],
    *[((f"director_real_server_{what}_total", "counter", text), "real_traffic")
      for what, text, _ in TRAFFIC],
    *[((f"director_real_server_{what}_connections", "gauge", text), "connections")
      for what, text in CONNECTIONS],
)
_REAL = 2                       # the first per-real-server family's slot
_VIRTUAL = _REAL + len(REAL_FAMILIES)   # the first per-virtual-server one
_CONDITIONS = ("virtual_traffic", "real_traffic", "connections")


def per_server_text(snapshot: State, cache: LabelCache) -> str:
    """The families with samples per real server: each virtual server's lines of each
    family, kept on its view (``metric_lines``: the daemon gives the same view object again
    while nothing it shows changed, director/lb/service.py), a real server's on its own
    view, so a scrape writes only the lines of servers that changed."""
    parts = []
    for server in snapshot.virtual_servers:
        found = server.metric_lines
        if found is None:
            found = _server_part(server, cache)
            keep_encoded(server, "metric_lines", found)
        else:
            cache.asked += found[-1]
        parts.append(found)
    present = {condition: any(part[-2][number] for part in parts)
               for number, condition in enumerate(_CONDITIONS)}
    out: list[str] = []
    for slot, (header, condition) in enumerate(FAMILIES):
        if condition is not None and not present[condition]:
            continue
        _header(out, *header)
        for part in parts:
            out.extend(part[slot])
    cache.end_scrape()
    return "".join(out)


def _server_part(server: VirtualServerView, cache: LabelCache) -> tuple:
    """A virtual server's lines by family slot, which conditional families it has lines in,
    and the label lookups they stand for (LabelCache's bound). Strings, booleans and
    numbers only: kept on the view, nothing in it for the garbage collector to follow."""
    asked = cache.asked
    name = server.name
    real_parts = []
    for real in server.real_servers:
        part = real.metric_lines
        if part is None:
            part = _real_part(name, real, cache)
            keep_encoded(real, "metric_lines", part)
        else:
            cache.asked += part[-1]
        real_parts.append(part)
    # by family slot, the lines of each real server (not joined: the scrape joins once)
    columns = list(zip(*real_parts)) if real_parts else [()] * _REAL_PART
    labels = cache.of(server.name)
    counters = server.counters
    return (*columns[:_VIRTUAL],
            *[(f"{name}{{{labels}}} {value_of(server)}\n",)
              for name, _, _, value_of in VIRTUAL_FAMILIES],
            *[(line,) for line in (_traffic_lines(_VIRTUAL_TRAFFIC_NAMES, labels, counters)
                                   if counters else ("",) * len(TRAFFIC))],
            *columns[_VIRTUAL:_VIRTUAL + 5],
            (bool(counters), any(columns[_VIRTUAL]), any(columns[_VIRTUAL + 3])),
            cache.asked - asked)


_REAL_PART = _VIRTUAL + 5 + 1   # a real server's part: its lines up to its families, its
                                # traffic (3) and connections (2), the label lookups
_VIRTUAL_TRAFFIC_NAMES = [(f"director_virtual_server_{what}_total",
                           [f',direction="{d}"' if d else "" for d, _ in fields],
                           [field for _, field in fields]) for what, _, fields in TRAFFIC]


def _real_part(virtual_name: str, real: RealServerView, cache: LabelCache) -> tuple:
    """A real server's lines by family slot (its checkers' histograms and totals, its
    families of REAL_FAMILIES, IPVS's counters, its connections), then the label lookups
    they took. Written out, line by line: ten thousand of them when every checker ran
    since the scrape before (a Prometheus interval longer than delay_loop)."""
    asked = cache.asked
    check, ramp = real.check, real.ramp
    labels = cache.of(virtual_name, real.name)
    if check is None:
        histogram = totals = up = cert = ""
        drained = f"director_real_server_drained{{{labels}}} 0\n"
    else:
        jobs = check.jobs
        if len(jobs) == 1:
            histogram, totals = cache.histogram(jobs[0]), cache.checks_total(jobs[0])
        else:
            histogram = "".join([cache.histogram(job) for job in jobs])
            totals = "".join([cache.checks_total(job) for job in jobs])
        up = f"director_real_server_up{{{labels}}} {1 if check.up else 0}\n"
        drained = f"director_real_server_drained{{{labels}}} {1 if check.drained else 0}\n"
        last = check.last_check
        cert = "" if last is None or last.cert_not_after is None else \
            (f"director_real_server_certificate_expiry_timestamp_seconds{{{labels}}} "
             f"{_number(last.cert_not_after)}\n")
    weight, configured = real.weight or 0, real.configured_weight
    counters, active = real.counters, real.active_connections
    if counters is None:
        connections = packets = sent = ""
    else:
        connections = (f"director_real_server_connections_total{{{labels}}} "
                       f"{counters.connections}\n")
        packets = (f'director_real_server_packets_total{{{labels},direction="in"}} '
                   f'{counters.packets_in}\n'
                   f'director_real_server_packets_total{{{labels},direction="out"}} '
                   f'{counters.packets_out}\n')
        sent = (f'director_real_server_bytes_total{{{labels},direction="in"}} '
                f'{counters.bytes_in}\n'
                f'director_real_server_bytes_total{{{labels},direction="out"}} '
                f'{counters.bytes_out}\n')
    if active is None:
        active_line = inactive_line = ""
    else:
        active_line = f"director_real_server_active_connections{{{labels}}} {active}\n"
        inactive_line = (f"director_real_server_inactive_connections{{{labels}}} "
                         f"{real.inactive_connections}\n")
    return (histogram, totals, up,
            f"director_real_server_weight{{{labels}}} "
            f"{weight if type(weight) is int else _number(weight)}\n",
            f"director_real_server_configured_weight{{{labels}}} "
            f"{configured if type(configured) is int else _number(configured)}\n",
            drained,
            "" if ramp is None else
            f"director_real_server_slow_start_ratio{{{labels}}} {_number(ramp.fraction)}\n",
            cert, connections, packets, sent, active_line, inactive_line,
            cache.asked - asked)


def _traffic_lines(names: list, labels: str, counters: Any) -> list[str]:
    """IPVS's counters of a virtual server, one string per family of TRAFFIC."""
    return ["".join([f"{name}{{{labels}{extra}}} {getattr(counters, field)}\n"
                     for extra, field in zip(extras, fields)])
            for name, extras, fields in names]
