"""The dashboard's BGP panel in headless Chromium (issue 15): a director announcing a virtual
server to BIRD 2 shows the session up and the prefix announced because it is healthy; when
the only real server's listener dies, the panel shows the prefix withdrawn with its cause
("quorum lost on ...") and the event arrives, without the page reloading. A director without
a bgp block shows no BGP panel at all.

Times are printed (-s), never asserted."""

from __future__ import annotations

import json
import os
import shutil
import sys
import time

import pytest

from tests.functional import test_bgp_daemon as bgp_lab
from tests.functional.browser import Browser
from tests.functional.lab import wait_for
from tests.functional.test_dashboard_browser import ROOT, UI_TIMEOUT, text

pytestmark = [pytest.mark.netns, pytest.mark.slow, pytest.mark.timeout(180)]

CHECK_BOUND = 1 + 1          # delay_loop 1 + connect_timeout 1 (retry 0) in bgp_lab.config
PEER = f'[data-bgp-peer="{bgp_lab.ROUTER}"]'
PREFIX = f'[data-bgp-prefix="{bgp_lab.PREFIX}"]'


NO_BGP_CONFIG = f"""virtual_server {bgp_lab.VS} 80 {{
    delay_loop 1
    lb_algo rr
    lb_kind NAT
    protocol TCP
    real_server {bgp_lab.SERVER} 80 {{
        TCP_CHECK {{
            connect_timeout 1
        }}
    }}
}}
"""


def needs_the_bgp_lab(test):
    """BIRD 2, nftables and ExaBGP: the BGP daemon test's skip conditions and reasons."""
    for mark in bgp_lab.pytestmark:
        if mark.name == "skipif":
            test = mark(test)
    return test


def page_text(browser) -> str:
    return browser.eval("return document.body.innerText")


def keep_screenshot(browser, tmp_path, name: str) -> None:
    shot = tmp_path / name
    browser.screenshot(shot)
    assert shot.stat().st_size > 10_000
    keep = os.environ.get("DIRECTOR_ARTIFACTS")
    if keep:
        shutil.copy(shot, keep)


@needs_the_bgp_lab
def test_the_bgp_panel_follows_a_withdrawal_live(lab, tmp_path):
    router, director, server, bird, listener, daemon, folder = bgp_lab.lay_out(lab)
    browser = Browser.in_host(director)
    try:
        browser.get(f"http://{bgp_lab.WEB}/")
        browser.eval("window.__notReloaded = true; return true;")
        wait_for(lambda: text(browser, f"{PEER} .bgp-session-state") == "up", UI_TIMEOUT,
                 message=lambda: page_text(browser))
        wait_for(lambda: text(browser, f"{PREFIX} .bgp-prefix-state") == "announced",
                 UI_TIMEOUT, message=lambda: page_text(browser))
        assert text(browser, f"{PREFIX} .bgp-cause") == "healthy"
        assert browser.eval("return document.getElementById('bgp-section').hidden") is False
        assert text(browser, ".bgp-engine-state") == "running"
        assert text(browser, ".bgp-restarts") == "0"
        session = browser.eval(f"return [...document.querySelectorAll('{PEER} td')]"
                               ".map((td) => td.textContent)")
        assert session[:3] == [bgp_lab.ROUTER, "the lab's router", "up"], session
        assert session[4:] == ["0", ""], session                   # no flap, no error
        prefix = browser.eval(f"return [...document.querySelectorAll('{PREFIX} td')]"
                              ".map((td) => td.textContent)")
        assert prefix[:5] == [bgp_lab.PREFIX, "announced", "50", "65001:100", "healthy"], prefix
        assert prefix[6] == bgp_lab.ROUTER, prefix
        assert text(browser, "#bgp-changes li span") == f"{bgp_lab.PREFIX} announce: healthy"

        # the only real server dies: quorum lost, withdrawn; the page follows by itself
        listener.kill()
        listener.wait(5)
        killed = time.monotonic()
        cause = f"quorum lost on {bgp_lab.VS}:80/TCP"
        wait_for(lambda: text(browser, f"{PREFIX} .bgp-prefix-state") == "withdrawn",
                 CHECK_BOUND + UI_TIMEOUT, message=lambda: page_text(browser))
        shown = time.monotonic()
        wait_for(lambda: not bird.nexthops(), 5, message=lambda: lab.log_of(daemon))
        print(f"real server killed -> 'withdrawn' on the page: {shown - killed:.3f} s "
              f"(the check's own bound is {CHECK_BOUND} s)")
        assert text(browser, f"{PREFIX} .bgp-cause") == cause
        assert text(browser, "#bgp-changes li span") == f"{bgp_lab.PREFIX} withdraw: {cause}"
        wait_for(lambda: f"BGP withdraw {bgp_lab.PREFIX}: {cause}" in
                 text(browser, "#events"), UI_TIMEOUT, message=lambda: text(browser, "#events"))
        assert text(browser, f"{PEER} .bgp-session-state") == "up"   # only the route went
        assert browser.eval("return window.__notReloaded === true")
        assert "undefined" not in text(browser, "#bgp-section")
        assert "null" not in text(browser, "#bgp-section")
        keep_screenshot(browser, tmp_path, "dashboard-bgp.png")
    finally:
        browser.quit()


def test_no_bgp_block_no_bgp_panel(lab):
    switch = lab.switch("net")
    director = lab.host("director", links=[(switch, "eth0", [f"{bgp_lab.DIRECTOR}/24"])])
    config = lab.tmp / "keepalived.conf"
    config.write_text(NO_BGP_CONFIG)
    daemon = director.popen([sys.executable, "-m", "director", "-l", "-C", "-f", config,
                             "--backend", "none", "--state-dir", lab.tmp / "state",
                             "--web", bgp_lab.WEB], env={"PYTHONPATH": str(ROOT)})
    port = bgp_lab.WEB.rsplit(":", 1)[1]
    wait_for(lambda: director.run(["ss", "-Hltn", f"sport = :{port}"]).stdout.strip(), 10,
             message=lambda: lab.log_of(daemon))
    assert json.loads(bgp_lab.api(director, "/api/v1/state"))["bgp"] is None
    browser = Browser.in_host(director)
    try:
        browser.get(f"http://{bgp_lab.WEB}/")
        # the pools are drawn after the BGP panel (redraw): once they show, it was decided
        wait_for(lambda: text(browser, f'[data-vs="{bgp_lab.VS}:80/TCP"] .vs-name'),
                 UI_TIMEOUT, message=lambda: page_text(browser))
        assert browser.eval("return document.getElementById('bgp-section').hidden") is True
        assert browser.eval("return document.querySelectorAll('[data-bgp-prefix], "
                            "[data-bgp-peer], [data-bgp-engine]').length") == 0
        assert "BGP" not in page_text(browser)
    finally:
        browser.quit()
