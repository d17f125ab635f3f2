"""Slow start (issue 16) through the daemon on nftables: a real server that recovers ramps
its weight in the kernel from low to its full weight over slow_start seconds; at start-up,
and for the servers that never failed, the weights are full at once. The kernel's weights
are read from the service chain's wrr map (each destination holds weight/gcd slots): the
ramping server's weight is its slots over a steady server's, times the steady one's weight.

Run with -s to see the samples (time since the server listened again, weight)."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from director.lb.model import ServiceKey
from director.lb.nftables_script import chain_name
from tests.functional.lab import wait_for
from tests.functional.test_lb_daemon_nftables import (BEFORE_RETRY, DELAY_LOOP, RETRY,
                                                      TIMEOUT, lay_out, listening, serve)
from tests.functional.test_lb_nftables_netns import READY_TIMEOUT, SERVERS, VIP

pytestmark = [pytest.mark.netns, pytest.mark.slow, pytest.mark.timeout(120)]

WEIGHT = 100
SLOW_START = 6.0
SAMPLE_EVERY = 0.1


def kernel_weights(director) -> dict[str, int]:
    """Each destination's weight in the kernel now, scaled so that rs1 (never ramping) has
    WEIGHT; {} while the service chain is not there."""
    chain = chain_name(ServiceKey("TCP", VIP, 80))
    listing = director.run(["nft", "list", "chain", "inet", "director", chain],
                           check=False).stdout
    slots: dict[str, int] = {}
    for address in re.findall(r"\d+ : (\d+\.\d+\.\d+\.\d+) \. 80", listing):
        slots[address] = slots.get(address, 0) + 1
    steady = slots.get(SERVERS["rs1"])
    if not steady:
        return {}
    return {address: round(count * WEIGHT / steady) for address, count in slots.items()}


def test_a_recovered_server_ramps_its_kernel_weight_over_slow_start(lab):
    client, hosts, servers, daemon = lay_out(
        lab, f"\n    weight {WEIGHT}\n    slow_start {SLOW_START:g}", lb_algo="wrr")
    director, rs2 = hosts["director"], SERVERS["rs2"]
    # start-up is no recovery: every server at its full weight from the first converge
    assert wait_for(lambda: kernel_weights(director) == {a: WEIGHT for a in SERVERS.values()},
                    READY_TIMEOUT, message=lambda: kernel_weights(director))
    assert "lb.slow_start" not in lab.log_of(daemon)

    servers["rs2"].kill()
    servers["rs2"].wait(5)
    wait_for(lambda: rs2 not in kernel_weights(director),
             DELAY_LOOP + RETRY * (TIMEOUT + BEFORE_RETRY) + 2,
             message=lambda: lab.log_of(daemon))

    servers["rs2"] = serve(hosts["rs2"], "rs2", rs2, Path(lab.tmp) / "rs2")
    wait_for(lambda: listening(hosts["rs2"]), READY_TIMEOUT,
             message=lambda: f"rs2 did not start again: {lab.log_of(servers['rs2'])}")
    started = time.monotonic()
    samples: list[tuple[float, int]] = []
    # the check finds it within a delay_loop (and a retry), then the ramp runs SLOW_START
    deadline = started + DELAY_LOOP + RETRY * (TIMEOUT + BEFORE_RETRY) + 2 * SLOW_START + 5
    tick = started
    while time.monotonic() < deadline:
        weight = kernel_weights(director).get(rs2, 0)
        samples.append((time.monotonic() - started, weight))
        if weight == WEIGHT and len([w for _, w in samples if w == WEIGHT]) >= 5:
            break                           # at full weight, and it stays there
        tick += SAMPLE_EVERY
        time.sleep(max(0.0, tick - time.monotonic()))   # the sampling period, not a wait
    print("\nslow start samples (s since rs2 listened again, kernel weight):")
    print(" ".join(f"{at:.2f}:{weight}" for at, weight in samples))

    weights = [weight for _, weight in samples]
    assert weights[-1] == WEIGHT, samples
    assert weights == sorted(weights), f"not monotonic: {samples}"
    rising = [(at, weight) for at, weight in samples if 0 < weight]
    first, full = rising[0], next(s for s in rising if s[1] == WEIGHT)
    assert first[1] <= WEIGHT // 10, f"it came back at {first[1]}, not low: {samples}"
    steps = sorted({weight for _, weight in rising})
    assert len(steps) >= 10, f"{len(steps)} steps: {samples}"
    ramp = full[0] - first[0]
    print(f"ramp: {ramp:.2f} s for slow_start {SLOW_START:g} ({len(steps)} weights seen, "
          f"first {first[1]} at {first[0]:.2f} s)")
    # the claim: the configured time, within 10 %
    assert abs(ramp - SLOW_START) <= 0.1 * SLOW_START, samples
    assert f"lb.slow_start virtual_server={VIP}:80/TCP real_server={rs2}:80" in \
        lab.log_of(daemon)
    # the other servers never left their full weight
    assert kernel_weights(director) == {a: WEIGHT for a in SERVERS.values()}


def test_a_restore_from_a_drain_ramps_and_shows_in_the_api_and_the_dashboard(lab):
    """The operator's drain, then restore: the server comes back ramping (its weight in
    the kernel climbs, /api/v1/state has its ramp, the dashboard says "ramping N %"), and
    ends at its full weight with no ramp left."""
    from tests.functional.test_lb_daemon_nftables import TOKEN, api, dashboard, reals, ui_text
    token_file = Path(lab.tmp) / "token"
    token_file.write_text(TOKEN)
    seconds = 12
    client, hosts, servers, daemon = lay_out(
        lab, f"\n    weight {WEIGHT}\n    slow_start {seconds}", lb_algo="wrr",
        daemon_args=("--web", "127.0.0.1:8080", "--admin-token-file", str(token_file)))
    director, rs2 = hosts["director"], SERVERS["rs2"]
    wait_for(lambda: kernel_weights(director) == {a: WEIGHT for a in SERVERS.values()},
             READY_TIMEOUT, message=lambda: lab.log_of(daemon))
    names = {"virtual_server": f"{VIP}:80/TCP", "real_server": f"{rs2}:80"}
    assert api(director, "POST", "/api/v1/real-servers/drain", names)["drained"] is True
    wait_for(lambda: rs2 not in kernel_weights(director), 5,
             message=lambda: kernel_weights(director))
    assert reals(director)[rs2]["ramp"] is None                 # a drain is no ramp
    assert api(director, "POST", "/api/v1/real-servers/restore", names)["drained"] is False
    restored = time.monotonic()
    ramping = wait_for(lambda: reals(director)[rs2]["ramp"] is not None and
                       reals(director)[rs2], 5, message=lambda: reals(director)[rs2])
    ramp = ramping["ramp"]
    print(f"\nramp in the API {time.monotonic() - restored:.2f} s after the restore: {ramp}, "
          f"desired_weight {ramping['desired_weight']}")
    assert ramp["seconds"] == seconds and 0 <= ramp["fraction"] < 1
    assert ramp["until"] - ramp["since"] == pytest.approx(seconds)
    assert 1 <= ramping["desired_weight"] < WEIGHT
    assert 0 < kernel_weights(director).get(rs2, 0) < WEIGHT
    browser = dashboard(director)
    if browser is not None:
        try:
            row = f'[data-rs="{rs2}:80"]'
            marker = wait_for(lambda: (ui_text(browser, f"{row} .ramp") or "").strip(), 10,
                              message=lambda: browser.eval("return document.body.innerText"))
            print(f"dashboard: {marker!r}")
            assert re.fullmatch(r"ramping \d+ %", marker), marker
        finally:
            browser.quit()
    full = wait_for(lambda: reals(director)[rs2]["ramp"] is None and reals(director)[rs2],
                    seconds + 5, message=lambda: reals(director)[rs2])
    assert full["desired_weight"] == WEIGHT
    wait_for(lambda: kernel_weights(director) == {a: WEIGHT for a in SERVERS.values()}, 5,
             message=lambda: kernel_weights(director))
    assert f"lb.slow_start virtual_server={VIP}:80/TCP real_server={rs2}:80" in \
        lab.log_of(daemon)
