"""The dashboard in a real browser: headless Chromium in a namespace lab opens the page of a
director that is VRRP MASTER and checks two real HTTP servers. Without the page ever
reloading, it shows the role and the pool, then a real server going down, then the role
turning BACKUP when a keepalived peer with a higher priority takes over. A name from the
configuration carrying markup is shown as text and runs nothing. A screenshot is saved."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest

from tests.functional.browser import Browser
from tests.functional.lab import start_keepalived, wait_for

pytestmark = [pytest.mark.netns, pytest.mark.slow, pytest.mark.timeout(180)]

ROOT = Path(__file__).resolve().parents[2]
VIP = "192.0.2.100"
SERVERS = {"rs1": "192.0.2.11", "rs2": "192.0.2.12"}
HOSTILE = "<img/src=x/onerror=window.pwned=1>"
WEB = "127.0.0.1:8080"
UI_TIMEOUT = 10        # the page follows the stream; a state fetch is debounced 250 ms

DIRECTOR_CONFIG = f"""global_defs {{
    router_id LB_BROWSER
}}
vrrp_instance VI_1 {{
    interface eth0
    virtual_router_id 51
    priority 150
    advert_int 1
    virtual_ipaddress {{
        {VIP}/24
    }}
}}
vrrp_instance {HOSTILE} {{
    interface eth0
    virtual_router_id 61
    priority 100
    advert_int 1
    virtual_ipaddress {{
        192.0.2.201/24
    }}
}}
virtual_server {VIP} 80 {{
    delay_loop 1
    lb_algo rr
    lb_kind NAT
    protocol TCP
""" + "".join(f"""    real_server {address} 80 {{
        TCP_CHECK {{
            connect_timeout 1
            retry 1
            delay_before_retry 0.5
        }}
    }}
""" for address in SERVERS.values()) + "}\n"

PEER_CONFIG = f"""vrrp_instance VI_1 {{
    state BACKUP
    interface eth0
    virtual_router_id 51
    priority 200
    advert_int 1
    virtual_ipaddress {{
        {VIP}/24
    }}
}}
"""


def text(browser, selector: str) -> str | None:
    return browser.eval(f"const e = document.querySelector({json.dumps(selector)}); "
                        "return e ? e.textContent : null;")


def test_dashboard_follows_checks_and_failover_live(lab, tmp_path):
    switch = lab.switch()
    lb1 = lab.host("lb1", links=[(switch, "eth0", ["192.0.2.1/24"])])
    lb2 = lab.host("lb2", links=[(switch, "eth0", ["192.0.2.2/24"])])
    servers = {}
    for name, address in SERVERS.items():
        host = lab.host(name, links=[(switch, "eth0", [f"{address}/24"])])
        servers[name] = host.popen([sys.executable, "-m", "http.server", "80", "--bind",
                                    address, "--directory", str(lab.tmp)])
    config = lab.tmp / "director.conf"
    config.write_text(DIRECTOR_CONFIG)
    daemon = lb1.popen([sys.executable, "-m", "director", "-l", "-f", config, "--backend",
                        "none", "--web", WEB, "--state-dir", lab.tmp / "state"],
                       env={"PYTHONPATH": str(ROOT)})
    wait_for(lambda: lb1.has_address("eth0", VIP), 10, message=lambda: lab.log_of(daemon))

    browser = Browser.in_host(lb1)
    try:
        first_paint = browser.get(f"http://{WEB}/")
        print(f"first contentful paint: {first_paint}")
        browser.eval("window.__notReloaded = true; return true;")
        wait_for(lambda: text(browser, '[data-instance="VI_1"] .role') == "MASTER",
                 UI_TIMEOUT, message=lambda: browser.eval("return document.body.innerText"))
        pool = f'[data-vs="{VIP}:80/TCP"]'
        wait_for(lambda: text(browser, f"{pool} .pool-count") == "2/2 up", UI_TIMEOUT,
                 message=lambda: browser.eval("return document.body.innerText"))
        for address in SERVERS.values():
            assert text(browser, f'{pool} [data-rs="{address}:80"] .rs-state') == "UP"

        # a real server stops: the page shows it down
        servers["rs2"].kill()
        wait_for(lambda: text(browser, f'{pool} [data-rs="192.0.2.12:80"] .rs-state') == "DOWN",
                 1 + 1 * (1 + 0.5) + UI_TIMEOUT,
                 message=lambda: browser.eval("return document.body.innerText"))
        assert text(browser, f"{pool} .pool-count") == "1/2 up"
        assert "192.0.2.12:80 in" in browser.eval(
            "return document.getElementById('events').textContent")

        # a peer with a higher priority takes over: the page shows the new role
        peer = start_keepalived(lb2, PEER_CONFIG)
        wait_for(lambda: lb2.has_address("eth0", VIP), 10, message=lambda: lab.log_of(peer))
        wait_for(lambda: text(browser, '[data-instance="VI_1"] .role') == "BACKUP",
                 UI_TIMEOUT, message=lambda: browser.eval("return document.body.innerText"))
        assert text(browser, '[data-instance="VI_1"] .master') == "192.0.2.2"

        # never reloaded; the hostile name is text, and ran nothing
        assert browser.eval("return window.__notReloaded === true")
        assert browser.eval(f"return document.querySelector('[data-instance={json.dumps(HOSTILE)}]')"
                            ".querySelector('b').textContent") == HOSTILE
        assert browser.eval("return document.querySelectorAll('#instances img').length") == 0
        assert browser.eval("return window.pwned === undefined")
        assert text(browser, "#live") == "live"
        assert "null" not in text(browser, "#summary") and "undefined" not in text(
            browser, "main")
        shot = tmp_path / "dashboard.png"
        browser.screenshot(shot)
        assert shot.stat().st_size > 10_000
        keep = os.environ.get("DIRECTOR_ARTIFACTS")
        if keep:
            Path(keep).mkdir(parents=True, exist_ok=True)
            shutil.copy(shot, Path(keep) / "dashboard.png")
        print(f"screenshot: {shot}")
    finally:
        browser.quit()


SYNC_GROUP_CONFIG = """global_defs {
    router_id LB_SYNC
}
vrrp_sync_group VG1 {
    group {
        VI_1
        VI_2
    }
}
""" + "".join(f"""vrrp_instance {name} {{
    interface eth0
    virtual_router_id {vrid}
    priority 150
    advert_int 1
    virtual_ipaddress {{
        {vip}/24
    }}
}}
""" for name, vrid, vip in (("VI_1", 51, VIP), ("VI_2", 52, "192.0.2.101"),
                            ("VI_ALONE", 53, "192.0.2.102")))


def sync_group_of(browser, instance: str) -> str | None:
    """What the instance's card shows under "sync group", None if it shows none."""
    return browser.eval(
        f"const card = document.querySelector('[data-instance={json.dumps(instance)}]');"
        "if (!card) return 'no card';"
        "const dt = [...card.querySelectorAll('dt')].find((d) => d.textContent === 'sync group');"
        "return dt ? dt.nextElementSibling.textContent : null;")


def test_dashboard_shows_each_instances_sync_group(lab):
    """The live state names each instance's sync group (the contract has it, dashboard.js
    draws it): VI_1 and VI_2 say VG1, an instance in no group says nothing."""
    switch = lab.switch()
    lb1 = lab.host("lb1", links=[(switch, "eth0", ["192.0.2.1/24"])])
    config = lab.tmp / "director.conf"
    config.write_text(SYNC_GROUP_CONFIG)
    daemon = lb1.popen([sys.executable, "-m", "director", "-P", "-l", "-f", config, "--web",
                        WEB, "--state-dir", lab.tmp / "state"], env={"PYTHONPATH": str(ROOT)})
    wait_for(lambda: lb1.has_address("eth0", VIP), 10, message=lambda: lab.log_of(daemon))
    browser = Browser.in_host(lb1)
    try:
        browser.get(f"http://{WEB}/")
        wait_for(lambda: text(browser, '[data-sync-group="VG1"] .badge') == "MASTER",
                 UI_TIMEOUT, message=lambda: browser.eval("return document.body.innerText"))
        wait_for(lambda: sync_group_of(browser, "VI_1") == "VG1", UI_TIMEOUT,
                 message=lambda: browser.eval("return document.body.innerText"))
        assert sync_group_of(browser, "VI_2") == "VG1"
        assert sync_group_of(browser, "VI_ALONE") is None
    finally:
        browser.quit()


def test_the_reload_button_shows_the_preview_then_applies_it(lab, tmp_path):
    """The admin clicks reload: the page first shows what the reload would change (the
    daemon's dry run: a real server removed, a weight and a priority changed), nothing is
    applied until "apply reload" is clicked; then the reload is done and the page follows.
    A file that does not parse shows its diagnostics and offers no "apply"."""
    switch = lab.switch()
    lb1 = lab.host("lb1", links=[(switch, "eth0", ["192.0.2.1/24"])])
    servers = {name: lab.host(name, links=[(switch, "eth0", [f"{address}/24"])]).popen(
        [sys.executable, "-m", "http.server", "80", "--bind", address, "--directory",
         str(lab.tmp)]) for name, address in SERVERS.items()}
    assert servers
    config = lab.tmp / "director.conf"
    first = DIRECTOR_CONFIG.replace(f"vrrp_instance {HOSTILE}", "vrrp_instance VI_2")
    config.write_text(first)
    (lab.tmp / "token").write_text("preview-token\n")
    daemon = lb1.popen([sys.executable, "-m", "director", "-l", "-f", config, "--backend",
                        "none", "--web", WEB, "--state-dir", lab.tmp / "state",
                        "--admin-token-file", lab.tmp / "token"], env={"PYTHONPATH": str(ROOT)})
    # VRRP's role does not matter here: the web face serving is enough
    wait_for(lambda: "web.listening" in lab.log_of(daemon), 30,
             message=lambda: lab.log_of(daemon))
    browser = Browser.in_host(lb1)
    pool = f'[data-vs="{VIP}:80/TCP"]'
    try:
        browser.get(f"http://{WEB}/")
        wait_for(lambda: text(browser, f"{pool} .pool-count") == "2/2 up", UI_TIMEOUT,
                 message=lambda: browser.eval("return document.body.innerText"))
        # a file that does not parse: the preview says the reload would be refused, and why
        config.write_text(first.replace("priority 150", "priority 300", 1))
        browser.eval("document.getElementById('admin-token').value = 'preview-token';"
                     "document.getElementById('reload').click(); return true;")
        wait_for(lambda: "refused" in (text(browser, "#reload-preview .preview-summary") or ""),
                 UI_TIMEOUT, message=lambda: browser.eval("return document.body.innerText"))
        assert f"{config}:" in text(browser, "#reload-preview")      # FILE:LINE
        assert browser.eval("return document.getElementById('reload-confirm')") is None
        browser.eval("document.getElementById('reload-cancel').click(); return true;")
        assert browser.eval("return document.getElementById('reload-preview').hidden")

        start = first.index("    real_server 192.0.2.12 80 {")
        end = first.index("        }\n    }\n", start) + len("        }\n    }\n")
        config.write_text((first[:start] + first[end:])
                          .replace("priority 150", "priority 140", 1)
                          .replace("real_server 192.0.2.11 80 {",
                                   "real_server 192.0.2.11 80 {\n        weight 2"))
        browser.eval("document.getElementById('admin-token').value = 'preview-token';"
                     "document.getElementById('reload').click(); return true;")
        wait_for(lambda: browser.eval(
            "const p = document.getElementById('reload-preview');"
            "return p && !p.hidden && p.querySelector('#reload-confirm') !== null"), UI_TIMEOUT,
            message=lambda: browser.eval("return document.body.innerText"))
        shown = text(browser, "#reload-preview")
        print(f"preview as shown: {shown}")
        assert f"- {VIP}:80/TCP / 192.0.2.12:80" in shown
        assert f"~ {VIP}:80/TCP / 192.0.2.11:80: weight: 1 -> 2" in shown
        assert "~ VI_1: priority: 150 -> 140" in shown
        assert f"- TCP {VIP}:80 -> 192.0.2.12:80" in shown          # the kernel's part
        assert browser.eval("return document.querySelectorAll('#reload-preview li').length") >= 4
        browser.screenshot(tmp_path / "reload-preview.png")
        print(f"screenshot: {tmp_path / 'reload-preview.png'}")
        # shown, not applied
        assert text(browser, f"{pool} .pool-count") == "2/2 up"
        assert "reload.applied" not in lab.log_of(daemon)

        browser.eval("document.getElementById('reload-confirm').click(); return true;")
        wait_for(lambda: text(browser, f"{pool} .pool-count") == "1/1 up", UI_TIMEOUT,
                 message=lambda: browser.eval("return document.body.innerText"))
        assert text(browser, "#admin-result") == "done"
        assert browser.eval("return document.getElementById('reload-preview').hidden")
        assert "reload.applied" in lab.log_of(daemon)
    finally:
        browser.quit()
