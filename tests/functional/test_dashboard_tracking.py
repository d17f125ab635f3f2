"""The dashboard shows what an instance and a sync group track: headless Chromium in the
director's namespace sees the tracked process with its running count and quorum, the tracked
file with its path and value, and the FAULT when the process is killed."""

from __future__ import annotations

import sys

import pytest

from tests.functional.browser import Browser
from tests.functional.lab import wait_for
from tests.functional.test_dashboard_browser import ROOT, UI_TIMEOUT, VIP, WEB, text
from tests.functional.test_vrrp_track_process import Processes

pytestmark = [pytest.mark.netns, pytest.mark.slow, pytest.mark.timeout(180)]


def config(name: str, path) -> str:
    instance = """vrrp_instance {n} {{
    interface eth0
    virtual_router_id {vrid}
    priority 150
    virtual_ipaddress {{
        {vip}/24
    }}
    track_file {{
        drain weight -1
    }}
}}
"""
    return (f"vrrp_track_process app {{\n    process {name}\n    quorum 1\n}}\n"
            f"track_file drain {{\n    file {path}\n}}\n"
            "vrrp_sync_group VG1 {\n    group {\n        VI_1\n        VI_2\n    }\n"
            "    track_process {\n        app\n    }\n    sync_group_tracking_weight\n}\n" +
            instance.format(n="VI_1", vrid=51, vip=VIP) +
            instance.format(n="VI_2", vrid=52, vip="192.0.2.101"))


def test_dashboard_shows_tracked_processes_and_files(lab):
    switch = lab.switch()
    lb1 = lab.host("lb1", links=[(switch, "eth0", ["192.0.2.1/24"])])
    processes = Processes(lab.tmp)
    try:
        name = processes.name("d")
        tracked = processes.start("d")
        path = lab.tmp / "drain"
        path.write_text("7\n")
        conf = lab.tmp / "director.conf"
        conf.write_text(config(name, path))
        daemon = lb1.popen([sys.executable, "-m", "director", "-P", "-l", "-f", conf, "--web",
                            WEB, "--state-dir", lab.tmp / "state"], env={"PYTHONPATH": str(ROOT)})
        wait_for(lambda: lb1.has_address("eth0", VIP), 10, message=lambda: lab.log_of(daemon))
        browser = Browser.in_host(lb1)
        try:
            browser.get(f"http://{WEB}/")
            process = '[data-instance="VI_1"] [data-tracked="process app"]'
            wait_for(lambda: text(browser, process) == "process app: 1 running (quorum 1) ±0",
                     UI_TIMEOUT, message=lambda: browser.eval("return document.body.innerText"))
            assert text(browser, '[data-instance="VI_1"] [data-tracked="file drain"]') == \
                f"file drain weight -1: {path} = 7 -7"
            assert text(browser, '[data-sync-group="VG1"] [data-tracked="process app"]') == \
                "process app: 1 running (quorum 1) ±0"
            processes.kill(tracked)
            wait_for(lambda: text(browser, process) == "process app: 0 running (quorum 1) FAULT",
                     UI_TIMEOUT, message=lambda: browser.eval("return document.body.innerText"))
            assert text(browser, '[data-instance="VI_2"] .role') == "FAULT"
        finally:
            browser.quit()
    finally:
        processes.close()
