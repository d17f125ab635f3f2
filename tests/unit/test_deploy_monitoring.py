"""The shipped Prometheus alert rules and Grafana dashboard: the rules pass promtool's check
and its unit test (each alert fires on the series that should fire it), and every metric
either names is one the collector really exports."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from director.bgp.model import Route
from director.bgp.view import BgpView, PrefixView, SessionView
from tests.unit.test_web_api import FakeDirector
from web import create_app

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
RULES = DEPLOY / "prometheus" / "director-alerts.yml"
RULES_TEST = DEPLOY / "prometheus" / "director-alerts.test.yml"
DASHBOARD = DEPLOY / "grafana" / "director-dashboard.json"
ALERTS = {"DirectorVrrpMasterLost", "DirectorVrrpSplitBrain", "DirectorPoolBelowQuorum",
          "DirectorCheckerStalled", "DirectorReloadFailed", "DirectorCertificateExpiring",
          "DirectorMainLoopLagging", "DirectorBgpVipNotAnnounced", "DirectorBgpSessionDown",
          "DirectorBgpEngineNotRunning"}

promtool = pytest.mark.skipif(shutil.which("promtool") is None,
                              reason="promtool missing (apt-get install prometheus)")


class AnnouncingDirector(FakeDirector):
    """The contract's director with a bgp block: one peer, one prefix announced."""

    def snapshot(self, with_jobs=False):
        route = Route("192.0.2.10/32", med=50)
        bgp = BgpView("exabgp", True, (SessionView("10.0.0.1", None, "up", 0.0, 0, 0, None),),
                      (PrefixView("192.0.2.10/32", True, route, "healthy", 0.0, ("10.0.0.1",)),),
                      (), {"restarts": 0}, None)
        return replace(super().snapshot(with_jobs), bgp=bgp)


def exported_names() -> set[str]:
    text = create_app(AnnouncingDirector()).test_client().get("/metrics").get_data(as_text=True)
    return {line.split("{")[0].split(" ")[0] for line in text.splitlines()
            if line and not line.startswith("#")}


def metric_names(expression: str) -> set[str]:
    return set(re.findall(r"\bdirector_[a-z0-9_]+", expression))


@promtool
def test_rules_pass_promtool_check():
    done = subprocess.run(["promtool", "check", "rules", str(RULES)], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(ALERTS)} rules found" in done.stdout


@promtool
def test_every_alert_fires_in_promtools_unit_test():
    tested = set(re.findall(r"alertname: (\w+)", RULES_TEST.read_text()))
    assert tested == ALERTS
    done = subprocess.run(["promtool", "test", "rules", RULES_TEST.name], cwd=RULES.parent,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_rules_and_dashboard_use_only_exported_metrics():
    exported = exported_names()
    rules = metric_names(RULES.read_text())
    dashboard = json.loads(DASHBOARD.read_text())
    queries = {target["expr"] for panel in dashboard["panels"] for target in panel["targets"]}
    used = rules | set().union(*(metric_names(query) for query in queries))
    assert used and used <= exported, sorted(used - exported)
    assert len({panel["id"] for panel in dashboard["panels"]}) == len(dashboard["panels"])
