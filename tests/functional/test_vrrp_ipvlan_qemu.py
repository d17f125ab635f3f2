"""use_ipvlan in a Debian kernel under qemu (tests/qemu/ipvlan_case.sh, in the boot the IPVS
backend's cases use: job "short" of tests/qemu/jobs.py): this host's kernel has no ipvlan.
The daemon makes the L2 ipvlan in private mode with its address, puts the VIP on it as MASTER,
and removes it on stop. Skipped where qemu or the kernel package is unavailable."""

from __future__ import annotations

import json

import pytest

pytestmark = [pytest.mark.qemu, pytest.mark.slow, pytest.mark.qemu_job("short")]


def test_use_ipvlan_makes_uses_and_removes_the_interface(qemu_jobs):
    result = qemu_jobs.result("short")       # one boot, shared with the IPVS cases
    files = dict(result.files)
    log = files.get("daemon.log", "")
    print(f"guest run: {result.seconds:.1f} s")
    assert "daemon_rc" in files, (files.get("ipvlan.out", "")[-2000:], log[-4000:],
                                  result.console[-2000:])
    link = json.loads(files["link.json"])[0]
    info = link["linkinfo"]
    assert info["info_kind"] == "ipvlan", (info, log[-3000:])
    assert info["info_data"]["mode"] == "l2" and "private" in json.dumps(info["info_data"]), info
    addresses = {f"{a['local']}/{a['prefixlen']}"
                 for a in json.loads(files["addr.json"])[0]["addr_info"]}
    assert {"192.0.2.51/24", "192.0.2.100/24"} <= addresses, (addresses, log[-3000:])
    assert "vrrp.vmac_up interface=ipvl51 kind=ipvlan" in log
    assert files["daemon_rc"].strip() == "0", log[-3000:]
    assert "does not exist" in files["after_stop"], files["after_stop"]
