"""The Prometheus metrics of the contract, built at scrape time from one snapshot.

Nothing in the hot path touches a metric object: the checks count into plain lists on their
jobs (scheduler.DURATION_BUCKETS), VRRP into its counters, and this collector turns one
snapshot into metric families when Prometheus asks. With ten thousand real servers that is
one walk of the state per scrape instead of millions of metric updates a minute.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator

from prometheus_client.core import (CounterMetricFamily, GaugeMetricFamily,
                                    HistogramMetricFamily, Metric)
from prometheus_client.registry import Collector

from director.check.scheduler import DURATION_BUCKETS

VRRP_STATES = {"INIT": 0, "BACKUP": 1, "MASTER": 2, "FAULT": 3, "STOP": 4}
BUCKET_LABELS = [repr(float(bound)) for bound in DURATION_BUCKETS] + ["+Inf"]


class DirectorCollector(Collector):
    def __init__(self, take_snapshot: Callable[..., Any], version: str = "") -> None:
        self.take_snapshot = take_snapshot
        self.version = version

    def collect(self) -> Iterator[Metric]:
        snapshot = self.take_snapshot(with_jobs=True)
        state = snapshot.state
        yield from self._daemon(snapshot)
        yield from self._vrrp(state["vrrp"])
        yield from self._checks(snapshot.jobs)
        yield from self._pools(state["virtual_servers"])

    def _daemon(self, snapshot: Any) -> Iterator[Metric]:
        info = GaugeMetricFamily("director_build_info", "director's version.",
                                 labels=["version", "backend"])
        info.add_metric([self.version, snapshot.state.get("backend") or "none"], 1)
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
            value=snapshot.last_reload_success or snapshot.state.get("started") or 0)
        last = snapshot.state.get("reload", {}).get("result")
        yield GaugeMetricFamily("director_config_last_reload_successful",
                                "0 when the most recent reload failed.",
                                value=0 if last == "failure" else 1)
        notifications = CounterMetricFamily("director_notifications_total",
                                            "Notifications sent, by kind and result.",
                                            labels=["kind", "result"])
        for (kind, result), count in sorted(snapshot.notifications.items()):
            notifications.add_metric([kind, result], count)
        yield notifications
        if snapshot.lateness_p99 is not None:
            yield GaugeMetricFamily(
                "director_check_start_lateness_seconds",
                "99th percentile of how late recent checks started past their due time.",
                value=snapshot.lateness_p99)

    def _vrrp(self, vrrp: dict) -> Iterator[Metric]:
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
        dropped = CounterMetricFamily("director_vrrp_packets_dropped_total",
                                      "Packets dropped by the receive checks, by reason.",
                                      labels=["instance", "interface", "reason"])
        for instance in vrrp["instances"]:
            name, counters = instance["name"], instance["counters"]
            role.add_metric([name, str(instance["vrid"]), instance["interface"]],
                            VRRP_STATES.get(instance["state"], 0))
            priority.add_metric([name], instance["effective_priority"])
            for pair, count in sorted(counters["transitions"].items()):
                old, new = pair.split("->")
                transitions.add_metric([name, old, new], count)
            became.add_metric([name], counters["became_master"])
            sent.add_metric([name], counters["adverts_sent"])
            received.add_metric([name], counters["adverts_received"])
            for reason, count in sorted(counters["dropped"].items()):
                dropped.add_metric([name, instance["interface"], reason], count)
        for key, count in sorted(vrrp.get("dropped_by_interface", {}).items()):
            interface, _, reason = key.partition("/")
            dropped.add_metric(["", interface, reason], count)
        yield from (role, priority, transitions, became, sent, received, dropped)

    def _checks(self, jobs: tuple) -> Iterator[Metric]:
        duration = HistogramMetricFamily(
            "director_check_duration_seconds", "How long checks took, pass or fail.",
            labels=["virtual_server", "real_server", "checker"])
        checks = CounterMetricFamily("director_checks_total", "Check attempts by result.",
                                     labels=["virtual_server", "real_server", "checker",
                                             "result"])
        for job in jobs:
            labels = [job.virtual_server, job.real_server, job.checker]
            running, buckets = 0, []
            for bound, count in zip(BUCKET_LABELS, job.buckets):
                running += count
                buckets.append((bound, running))
            duration.add_metric(labels, buckets, job.duration_sum)
            checks.add_metric(labels + ["success"], job.ok)
            checks.add_metric(labels + ["failure"], job.failed)
        yield duration
        yield checks

    def _pools(self, servers: list[dict]) -> Iterator[Metric]:
        up = GaugeMetricFamily("director_real_server_up", "1 while its checkers say up.",
                               labels=["virtual_server", "real_server"])
        weight = GaugeMetricFamily("director_real_server_weight",
                                   "Its weight in the kernel now (0 when not there).",
                                   labels=["virtual_server", "real_server"])
        configured = GaugeMetricFamily("director_real_server_configured_weight",
                                       "Its weight in the configuration.",
                                       labels=["virtual_server", "real_server"])
        drained = GaugeMetricFamily("director_real_server_drained",
                                    "1 while an operator has drained it.",
                                    labels=["virtual_server", "real_server"])
        expiry = GaugeMetricFamily("director_real_server_certificate_expiry_timestamp_seconds",
                                   "When the certificate its SSL_GET check saw expires.",
                                   labels=["virtual_server", "real_server"])
        quorum = GaugeMetricFamily("director_virtual_server_quorum_up",
                                   "1 while the live weight reaches the quorum.",
                                   labels=["virtual_server"])
        sorry = GaugeMetricFamily("director_virtual_server_sorry_server_active",
                                  "1 while the sorry server serves.", labels=["virtual_server"])
        kernel = {}
        for scope, labels in (("virtual_server", ["virtual_server"]),
                              ("real_server", ["virtual_server", "real_server"])):
            kernel[scope] = (
                CounterMetricFamily(f"director_{scope}_connections_total",
                                    "Connections the kernel scheduled (IPVS).", labels=labels),
                CounterMetricFamily(f"director_{scope}_packets_total",
                                    "Packets the kernel forwarded (IPVS).",
                                    labels=labels + ["direction"]),
                CounterMetricFamily(f"director_{scope}_bytes_total",
                                    "Bytes the kernel forwarded (IPVS).",
                                    labels=labels + ["direction"]))
        for server in servers:
            name = server["name"]
            quorum.add_metric([name], 1 if server["quorum_ok"] else 0)
            sorry.add_metric([name], 1 if server["sorry_server_active"] else 0)
            _traffic(kernel["virtual_server"], [name], server.get("counters"))
            for real in server["real_servers"]:
                labels = [name, real["name"]]
                if real["up"] is not None:
                    up.add_metric(labels, 1 if real["up"] else 0)
                weight.add_metric(labels, real["weight"] or 0)
                configured.add_metric(labels, real["configured_weight"])
                drained.add_metric(labels, 1 if real["drained"] else 0)
                last = real["last_check"]
                if last is not None and "cert_not_after" in last:
                    expiry.add_metric(labels, last["cert_not_after"])
                _traffic(kernel["real_server"], labels, real.get("counters"))
        yield from (up, weight, configured, drained, expiry, quorum, sorry)
        for families in kernel.values():
            yield from families


def _traffic(families: tuple, labels: list[str], counters: dict | None) -> None:
    if counters is None:
        return
    connections, packets, octets = families
    connections.add_metric(labels, counters["connections"])
    packets.add_metric(labels + ["in"], counters["packets_in"])
    packets.add_metric(labels + ["out"], counters["packets_out"])
    octets.add_metric(labels + ["in"], counters["bytes_in"])
    octets.add_metric(labels + ["out"], counters["bytes_out"])
