"""The demo lab's backend: IPVS where the kernel has it, else nftables, else a one-line
refusal (it used to run with backend none, and the VIP refused every connection)."""

import pytest

from director import demo
from director.lb import backends


def test_ipvs_first(monkeypatch):
    monkeypatch.setattr(backends, "ipvs_available", lambda: True)
    assert demo.lab_backend() == "ipvs"


def test_nftables_without_ipvs(monkeypatch):
    monkeypatch.setattr(backends, "ipvs_available", lambda: False)
    monkeypatch.setattr(demo.shutil, "which", lambda name: f"/usr/sbin/{name}")
    assert demo.lab_backend() == "nftables"


def test_refused_in_one_line_when_neither_can_run(monkeypatch):
    monkeypatch.setattr(backends, "ipvs_available", lambda: False)
    monkeypatch.setattr(demo.shutil, "which", lambda name: None)
    with pytest.raises(SystemExit) as refused:
        demo.lab_backend()
    message = str(refused.value)
    assert "\n" not in message and "apt-get install nftables" in message
