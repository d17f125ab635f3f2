"""The reload preview against a running daemon (nftables, three real HTTP servers, VRRP):
``POST /api/v1/reload?dry_run=1`` on a changed file says what would change and changes
nothing (the nftables table, the live state, the reload counters and the file are as
before); the real reload then applies exactly that: the destinations previewed as removed
and re-weighted are so in the kernel, and a preview of the same file afterwards finds
nothing left to do."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import pytest

from tests.functional.lab import wait_for
from tests.functional.test_lb_daemon_nftables import (READY_TIMEOUT, SERVERS, TOKEN, VIP, api,
                                                      lay_out, reals)

pytestmark = [pytest.mark.netns, pytest.mark.slow, pytest.mark.timeout(120)]

RS1, RS2, RS3 = SERVERS["rs1"], SERVERS["rs2"], SERVERS["rs3"]


def table(director) -> str:
    """The table without its counters (they move with any packet)."""
    return director.run(["nft", "-s", "list", "table", "inet", "director"], check=False).stdout


def without(text: str, address: str) -> str:
    """The configuration without the real_server block of ``address``."""
    start = text.index(f"    real_server {address} 80 {{")
    end = text.index("        }\n    }", start) + len("        }\n    }")
    return text[:start] + text[end:]


def changed(text: str) -> str:
    text = without(text, RS2).replace("priority 150", "priority 140", 1)
    return text.replace(f"real_server {RS3} 80 {{", f"real_server {RS3} 80 {{\n        weight 3")


def test_a_dry_run_changes_nothing_and_the_reload_applies_what_it_said(lab):
    token_file = Path(lab.tmp) / "token"
    token_file.write_text(TOKEN)
    client, hosts, servers, daemon = lay_out(lab, lb_algo="wrr", daemon_args=(
        "--web", "127.0.0.1:8080", "--admin-token-file", str(token_file)))
    director = hosts["director"]
    wait_for(lambda: len(reals(director)) == 3 and
             all(r["up"] and r["weight"] == 1 for r in reals(director).values()),
             READY_TIMEOUT, message=lambda: lab.log_of(daemon))
    path = Path(lab.tmp) / "director" / "keepalived.conf"
    path.write_text(changed(path.read_text()))
    digest, mtime = hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns
    kernel_before, state_before = table(director), api(director, "GET", "/api/v1/state")

    preview = api(director, "POST", "/api/v1/reload?dry_run=1")
    print(f"preview: {preview['summary']}")

    assert preview["would_apply"] and preview["errors"] == []
    (instance,) = preview["vrrp_instances"]["changed"]
    assert instance["name"] == "VI_1" and instance["settings"] == ["priority: 150 -> 140"]
    assert instance["transition"].startswith("MASTER")     # restarts, or keeps its role
    assert preview["real_servers"]["removed"] == [
        {"virtual_server": f"{VIP}:80/TCP", "real_server": f"{RS2}:80"}]
    assert [r["settings"] for r in preview["real_servers"]["changed"]] == [["weight: 1 -> 3"]]
    kernel = preview["kernel"]
    assert kernel["backend"] == "nftables"
    assert kernel["destinations"] == {
        "add": [], "remove": [f"TCP {VIP}:80 -> {RS2}:80"],
        "update": [f"TCP {VIP}:80 -> {RS3}:80: weight: 1 -> 3"]}
    assert kernel["services"] == {"add": [], "remove": [], "update": []}

    # nothing changed: the kernel, the live state, the counters, the file
    state_after = api(director, "GET", "/api/v1/state")
    assert table(director) == kernel_before
    for part in ("virtual_servers", "reload", "reloads"):
        if part in state_before:
            assert _stable(state_after[part]) == _stable(state_before[part]), part
    assert [(i["name"], i["state"], i["priority"]) for i in state_after["vrrp"]["instances"]] \
        == [(i["name"], i["state"], i["priority"]) for i in state_before["vrrp"]["instances"]]
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest
    assert path.stat().st_mtime_ns == mtime
    assert "reload.applied" not in lab.log_of(daemon)

    # the reload applies what was previewed
    answer = api(director, "POST", "/api/v1/reload")
    assert answer["result"] == "success", answer
    wait_for(lambda: set(reals(director)) == {RS1, RS3} and
             reals(director)[RS3]["weight"] == 3, 5, message=lambda: lab.log_of(daemon))
    assert reals(director)[RS1]["weight"] == 1
    assert f"{RS2}" not in table(director)
    again = api(director, "POST", "/api/v1/reload?dry_run=1")
    assert again["unchanged"] and again["kernel"]["operations"] == 0, again
    wait_for(lambda: director.has_address("eth0", VIP), 10, message=lambda: lab.log_of(daemon))


def _stable(value):
    """The state without what moves by itself (times, counters, latencies)."""
    moving = {"last_check", "checks", "counters", "at", "lateness", "seconds", "history",
              "active_connections", "inactive_connections"}
    if isinstance(value, dict):
        return {key: _stable(item) for key, item in value.items() if key not in moving}
    if isinstance(value, list):
        return [_stable(item) for item in value]
    return value


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-s"]))
