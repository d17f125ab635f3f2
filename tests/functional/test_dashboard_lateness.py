"""The dashboard's lateness figures in a real browser: a director alone on its segment
(MASTER) is stopped for 2 s (SIGSTOP) and resumed; the page then shows the main loop's lag
with the cause ("held for ...") and, on the instance's card, a late advert (a red bar and a
maximum of seconds). The screenshot is saved with KEEP_SCREENSHOT=DIR."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import sys
import time
from pathlib import Path

import pytest

from tests.functional.browser import Browser
from tests.functional.lab import wait_for
from tests.functional.test_vrrp_failover import ROOT, VIP, vrrp_config

pytestmark = [pytest.mark.netns, pytest.mark.slow, pytest.mark.timeout(120)]

WEB = "127.0.0.1:8080"
STOP = 2.0          # seconds: over the 1 s threshold, under nothing else that matters here


def page(browser, script: str):
    return browser.eval(script)


def test_the_dashboard_shows_a_held_loop_and_a_late_advert(lab, tmp_path):
    switch = lab.switch()
    host = lab.host("lb1", links=[(switch, "eth0", ["192.0.2.1/24"])])
    config = lab.tmp / "director.conf"
    config.write_text(vrrp_config(150))
    daemon = host.popen([sys.executable, "-m", "director", "-P", "-l", "-f", config, "--web",
                         WEB, "--state-dir", lab.tmp / "state"], env={"PYTHONPATH": str(ROOT)})
    wait_for(lambda: host.has_address("eth0", VIP), 10, message=lambda: lab.log_of(daemon))
    os.kill(daemon.pid, signal.SIGSTOP)
    stopped = time.monotonic()
    try:
        # the stop is the stimulus; the wait only lets its length pass
        wait_for(lambda: time.monotonic() - stopped >= STOP, STOP + 1, interval=0.05)
    finally:
        os.kill(daemon.pid, signal.SIGCONT)
    wait_for(lambda: "held for" in lab.log_of(daemon), 5, message=lambda: lab.log_of(daemon))
    browser = Browser.in_host(host)
    try:
        browser.get(f"http://{WEB}/")
        card = f"document.querySelector('[data-instance={json.dumps('VI_1')}] .advert-lateness')"
        wait_for(lambda: page(browser, f"const e = {card}; return e && e.textContent") or "",
                 10, message=lambda: page(browser, "return document.body.innerText"))
        advert = page(browser, f"return {card}.textContent")
        late_bars = page(browser, f"return {card}.querySelectorAll('rect.late').length")
        loop = page(browser, "const e = document.querySelector('.loop-lag'); "
                             "return e ? e.textContent : null;")
        loop_bars = page(browser, "return document.querySelectorAll('.loop-lag rect').length")
        events = page(browser, "return document.getElementById('events').textContent")
        shot = tmp_path / "dashboard-lateness.png"
        browser.screenshot(shot)
        keep = os.environ.get("KEEP_SCREENSHOT")
        if keep:
            Path(keep).mkdir(parents=True, exist_ok=True)
            shutil.copy(shot, Path(keep) / shot.name)
    finally:
        browser.quit()
    assert re.search(r"max [12]\.\d\d s", advert), advert
    assert late_bars == 1, advert
    assert loop and "held for" in loop and loop_bars >= 2, loop
    assert "main loop" in events and "held for" in events, events
