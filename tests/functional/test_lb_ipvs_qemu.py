"""IpvsBackend against a real IPVS: a Debian kernel booted once under qemu (tests/qemu/guest.py)
runs tests/qemu/ipvs_cases.py (tests/qemu/jobs.py: job "short"), which batches every case and
prints JSON; the tests below assert on it. Skipped where qemu or the kernel package is
unavailable."""

from __future__ import annotations

import json

import pytest

# One boot, shared with use_ipvlan's: job "short" of tests/qemu/jobs.py, run in the background
pytestmark = [pytest.mark.qemu, pytest.mark.slow, pytest.mark.qemu_job("short")]


@pytest.fixture(scope="module")
def guest_run(qemu_jobs) -> dict:
    result = qemu_jobs.result("short")
    if result.rc != 0:
        pytest.fail(f"guest run failed (rc={result.rc}, {result.seconds:.1f} s)\n"
                    f"stdout:\n{result.stdout[-3000:]}\nstderr:\n{result.stderr[-3000:]}\n"
                    f"console:\n{result.console[-3000:]}")
    data = json.loads(result.stdout.strip().splitlines()[-1])
    data["guest_seconds"] = result.seconds
    print(f"guest run: {result.seconds:.1f} s, script {data['seconds_in_script']} s")
    return data


def test_apply_from_empty_kernel_reads_back_the_desired_state(guest_run):
    assert guest_run["initial_errors"] == []
    assert guest_run["initial_read"] == guest_run["desired"]
    assert guest_run["initial_equal"]
    table = guest_run["ipvsadm_initial"]
    for line in ("TCP  192.0.2.10:80 wrr persistent 60",
                 "-> 10.0.0.1:80                  Masq    2",
                 "-> 10.0.0.3:80                  Masq    1",
                 "FWM  7 rr ops",
                 "-> 10.0.1.1:0                   Route   1",
                 "-> 10.0.1.2:0                   Tunnel  3",
                 "TCP  [2001:db8::10]:443 sh (sh-port) persistent 30 mask 64",
                 "-> [2001:db8::2]:443            Route   2"):
        assert line in table, table


def test_weight_and_scheduler_change_in_place(guest_run):
    assert guest_run["edit_ops_are_edits"], guest_run["edit_ops"]
    assert guest_run["edit_errors"] == []
    assert guest_run["edit_equal"]
    # the service's connection counter survives: it was not deleted and re-added
    assert guest_run["conns_before_edit"] >= 1
    assert guest_run["conns_after_edit"] == guest_run["conns_before_edit"]
    table = guest_run["ipvsadm_edited"]
    assert "TCP  192.0.2.10:80 wlc persistent 60" in table
    assert "-> 10.0.0.2:80                  Masq    5" in table


def test_foreign_service_untouched(guest_run):
    assert guest_run["foreign_before"] == 1
    assert guest_run["foreign_untouched"] and guest_run["foreign_untouched_end"]
    assert "TCP  203.0.113.5:443 rr" in guest_run["ipvsadm_final"]


def test_restart_adopts_kernel_state(guest_run):
    assert guest_run["restart_ops"] == []


def test_entries_deleted_behind_our_back_are_put_back(guest_run):
    assert guest_run["repair_ops"] == ["AddDestination", "AddService", "AddDestination",
                                       "AddDestination"]
    assert guest_run["repair_errors"] == []
    assert guest_run["repair_equal"] and guest_run["repair_then_empty"]


def test_errors_are_per_operation(guest_run):
    assert len(guest_run["partial_errors"]) == 1
    assert "AddService TCP 192.0.2.10:80" in guest_run["partial_errors"][0]
    assert "File exists" in guest_run["partial_errors"][0]
    assert guest_run["partial_rest_applied"]


def test_counters_are_read_with_the_services(guest_run):
    assert guest_run["counters_service"]["connections"] >= 1     # connect_to_vip()'s
    assert guest_run["counters_destinations"] == guest_run["counters_service"]["connections"]


def test_sync_applies_changes_and_puts_back_edits_when_verifying(guest_run):
    assert guest_run["sync_adopt_errors"] == [] and guest_run["sync_adopted"]
    # without verifying, the sync trusts what it programmed: the edit stays ...
    assert guest_run["sync_unverified_errors"] == [] and guest_run["sync_unverified_kept_edit"]
    # ... until the next verify (each delay_loop) puts it back
    assert guest_run["sync_verified_errors"] == [] and guest_run["sync_verified_put_back"]
    assert guest_run["sync_change_errors"] == [] and guest_run["sync_change_applied"]
    assert guest_run["sync_foreign_kept"]


def test_flush_all_removes_every_service_foreign_ones_too(guest_run):
    # lvs_flush at start, lvs_flush_on_stop without VS: keepalived flushes the whole table
    assert guest_run["flush_errors"] == []
    assert "TCP" not in guest_run["flush_left"] and "FWM" not in guest_run["flush_left"]


def test_lvs_timeouts_are_set_and_read_back_by_ipvsadm(guest_run):
    """lvs_timeouts over IPVS_CMD_SET_CONFIG, as `ipvsadm -L --timeout` shows them; a second
    call with only tcpfin keeps tcp and udp (keepalived: "not setting a value leaves it
    unchanged")."""
    assert "Timeout (tcp tcpfin udp): 901 31 301" in guest_run["timeouts_set"], \
        guest_run["timeouts_set"]
    assert "Timeout (tcp tcpfin udp): 901 45 301" in guest_run["timeouts_partial"]
    assert guest_run["timeouts_read"] == {"tcp": 901, "tcpfin": 45, "udp": 301}


def test_flows_shared_over_bgp_are_taken_up_mid_stream(guest_run):
    """sloppy_tcp / sloppy_sctp, which a bgp_announce turns on (tests/unit/test_lb_mid_flow.py
    has the rule): the kernel's sysctls are what IpvsSync writes."""
    assert guest_run["sloppy_before"] == ["0", "0"]
    assert guest_run["mid_flow_changed"] == ["sloppy_tcp", "sloppy_sctp"]
    assert guest_run["sloppy_after"] == ["1", "1"]
