"""The nftables backend's runner (nftables.py) and NftablesSync: `nft -c` (check mode, in a
throwaway network namespace so that the host's ruleset is never touched) accepts every
script nftables_script.py renders; the backend applies, lists, fingerprints and flushes its
table there; changes() leave the table a full apply makes."""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import subprocess
import time
from types import SimpleNamespace

import pytest

from director import hub
from director.config import load_config
from director.lb.nftables import NftablesBackend, objects_of
from director.lb.nftables_script import Changes, changes, render
from director.lb.backends import NftablesSync
from director.lb.service import LoadBalancer
from director.notify import Notifier
from tests.unit.test_lb_nftables_script import BAD_TABLE_NAMES, CASES, CHANGES


def test_table_name_is_checked():
    for bad in BAD_TABLE_NAMES:
        with pytest.raises(ValueError):
            NftablesBackend(table=bad)


# === nft -c: the kernel's own check, in a throwaway namespace ===============================

@pytest.fixture(scope="module")
def check_namespace():
    if shutil.which("nft") is None:
        pytest.skip("nft is not installed (apt-get install nftables)")
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("nft -c needs root and `ip netns` (run in a throwaway namespace)")
    ns = f"dnftc-{os.getpid()}-{secrets.token_hex(3)}"
    added = subprocess.run(["ip", "netns", "add", ns], capture_output=True, text=True,
                           timeout=10, check=False)
    if added.returncode != 0:
        pytest.skip(f"ip netns add failed: {added.stderr.strip()}")
    try:
        yield ns
    finally:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10, check=False)


@pytest.mark.parametrize("case", sorted(CASES))
def test_nft_accepts_the_script(check_namespace, case):
    result = subprocess.run(["ip", "netns", "exec", check_namespace, "nft", "-c", "-f", "-"],
                            input=render(CASES[case]), capture_output=True, text=True,
                            timeout=30, check=False)
    assert result.returncode == 0, f"{result.stderr}\n{render(CASES[case])}"


def test_backend_apply_read_flush_in_a_namespace(check_namespace, tmp_path):
    """The backend for real, in the throwaway namespace (through an `nft` wrapper running
    it there): apply twice (the replacement is idempotent), read the kernel's view back,
    flush twice (idempotent), read nothing."""
    wrapper = tmp_path / "nft"
    wrapper.write_text(f'#!/bin/sh\nexec ip netns exec {check_namespace} nft "$@"\n')
    wrapper.chmod(0o755)
    backend = NftablesBackend(table="dtest", nft=str(wrapper))
    assert backend.read() == ""
    backend.apply(CASES["rr"])
    backend.apply(CASES["wrr"])
    view = backend.read()
    assert "table inet dtest" in view and "numgen inc mod 4" in view
    assert "10.20.40.12" not in view                   # the rr table was replaced, not merged
    backend.flush()
    backend.flush()
    assert backend.read() == ""


def test_backend_raises_oserror_with_nft_stderr(tmp_path):
    fake = tmp_path / "nft"
    fake.write_text("#!/bin/sh\ncat >/dev/null\necho 'Error: syntax error' >&2\nexit 1\n")
    fake.chmod(0o755)
    with pytest.raises(OSError, match="syntax error"):
        NftablesBackend(nft=str(fake)).apply({})
    with pytest.raises(OSError):
        NftablesBackend(nft=str(tmp_path / "missing")).apply({})


@pytest.mark.parametrize("case", sorted(CHANGES))
def test_changes_give_the_table_a_full_apply_gives(check_namespace, tmp_path, case):
    before, after = CHANGES[case]
    wrapper = tmp_path / "nft"
    wrapper.write_text(f'#!/bin/sh\nexec ip netns exec {check_namespace} nft "$@"\n')
    wrapper.chmod(0o755)
    backend = NftablesBackend(table="dchanges", nft=str(wrapper))
    try:
        backend.apply(after)
        expected = backend.read()
        backend.apply(before)
        listed = backend.fingerprint()
        done = backend.apply_changes(before, after)
        got = backend.read()
        # What NftablesSync keeps: the objects before, less those deleted, plus those written
        # listed again, must be the table as a whole listing shows it.
        kept = {name: text for name, text in listed.items() if name not in done.gone}
        assert kept | backend.fingerprint(done.touched) == backend.fingerprint()
    finally:
        backend.flush()
    # nft lists objects in the order they were added, which differs between the two ways.
    assert objects_of(got) == objects_of(expected), changes(before, after, "dchanges").script
    assert objects_of(expected) or not after


def test_sync_applies_the_whole_table_first_then_changes_falling_back_on_failure():
    class Fake:
        """The table as objects; ``apply_changes`` rewrites chain svc."""

        def __init__(self):
            self.calls, self.fail, self.table = [], False, {}

        def apply(self, desired, links=None):
            self.calls.append("apply")
            self.table = {"chain prerouting": "p", "chain svc": "s0", "chain other": "o"}

        def apply_changes(self, before, after, links_before=None, links_after=None):
            self.calls.append("changes")
            if self.fail:
                raise OSError("nft: No such file or directory")
            self.table["chain svc"] = "s1"
            return Changes("", frozenset({"chain svc"}), frozenset())

        def fingerprint(self, names=None):
            return {n: t for n, t in self.table.items() if names is None or n in names}

    sync = NftablesSync()
    sync.backend = fake = Fake()
    before, after = CHANGES["destination-down"]
    assert sync.sync(before, frozenset()) == [] and fake.calls == ["apply"]
    assert sync.sync(before, frozenset()) == [] and fake.calls == ["apply"]   # unchanged
    assert sync.sync(after, frozenset()) == [] and fake.calls[-1] == "changes"
    assert sync.kernel == after
    assert sync.sync(after, frozenset()) == [] and fake.calls[-1] == "changes"  # verified
    fake.fail = True
    assert sync.sync(before, frozenset()) == [] and fake.calls[-2:] == ["changes", "apply"]
    fake.fail = False
    calls = len(fake.calls)
    fake.table = {}                                          # the table went away:
    assert sync.sync(before, frozenset(), verify=False) == [] and len(fake.calls) == calls
    assert sync.sync(before, frozenset()) == [] and fake.calls[-1] == "apply"  # noticed
    # An edit made before one of our changes, in an object the change does not write, is
    # not taken for ours: the next verify puts the table back.
    fake.table["chain other"] = "edited"
    assert sync.sync(after, frozenset(), verify=False) == [] and fake.calls[-1] == "changes"
    assert sync.sync(after, frozenset()) == [] and fake.calls[-1] == "apply"
    assert fake.table["chain other"] == "o"


# === what nftables does differently reaches the log and the state ===========================

LIMITS_CONFIG = """
virtual_server_group WEB {
    192.0.2.10 80
    192.0.2.11 80
}
virtual_server group WEB {
    delay_loop 60
    lb_algo wlc
    lb_kind NAT
    protocol TCP
    sorry_server 10.0.0.9 80
    sorry_server_lvs_method DR
    real_server 10.0.0.1 80 {
    }
    real_server 10.0.0.2 80 {
        lvs_method DR
    }
}
virtual_server 192.0.2.20 443 {
    delay_loop 60
    lb_algo rr
    lb_kind NAT
    protocol TCP
    real_server 10.0.0.3 443 {
    }
}
"""
LIMITS = [
    "group WEB/TCP: lb_algo wlc runs as wrr on nftables",
    "group WEB/TCP: 10.0.0.2:80: lb_kind DR is dropped on nftables in a virtual server that "
    "has NAT real servers too",
    # the quorum lost, the sorry server (DR) alone is the pool: forwarded by DR, statelessly
    "group WEB/TCP: lb_algo wlc runs as mh for DR on nftables (stateless: every packet of a "
    "flow must hash to the same server)"]
PERSISTENT_20 = "192.0.2.20:443/TCP: persistence_timeout 300 is approximate on nftables: " \
    "a client's entry expires 300 s after its last new connection, and a full apply " \
    "forgets all clients"


def _load(tmp_path, text):
    path = tmp_path / "keepalived.conf"
    path.write_text(text)
    result = load_config(str(path), interface_exists=None)
    assert result.config is not None, result.diagnostics
    return result.config


class Recording(NftablesSync):
    """nftables' notes, but no nft run: the host's ruleset is not ours to change."""

    syncs = 0

    def sync(self, desired, owned, verify=True):
        self.syncs += 1
        return []


def _balancer(config, backend):
    checks = SimpleNamespace(state_of=lambda name, real: None, listeners=[], effect_listeners=[], real_servers=[])
    balancer = LoadBalancer(config, checks, backend, Notifier(None))
    if backend == "nftables":
        balancer.backend = Recording()
    return balancer


def test_status_names_what_nftables_does_differently_per_virtual_server(tmp_path):
    """In the configuration's words, once per virtual server (not per address of its
    group), a sorry server's included, whether the checks have it in the pool now or not."""
    config = _load(tmp_path, LIMITS_CONFIG)
    for backend, expected in (("nftables", LIMITS), ("none", [])):
        balancer = _balancer(config, backend)
        try:
            balancer.start()
            assert balancer.status()["warnings"] == expected
        finally:
            balancer.stop()


def test_each_note_is_logged_once_per_configuration(tmp_path):
    """At start, not again on later converges; a reload logs only what it brought."""
    records: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: records.append(record.getMessage())
    logger = logging.getLogger("director.lb")
    logger.addHandler(handler)
    balancer = _balancer(_load(tmp_path, LIMITS_CONFIG), "nftables")
    backend = balancer.backend

    def converged(after: int) -> bool:
        deadline = time.monotonic() + 10
        while backend.syncs <= after and time.monotonic() < deadline:
            hub.sleep(0.01)
        return backend.syncs > after

    def logged() -> list[str]:
        return [line for line in records if line.startswith("lb.unsupported ")]

    try:
        balancer.start()
        assert logged() == [
            'lb.unsupported backend=nftables virtual_server="group WEB/TCP" '
            'note="lb_algo wlc runs as wrr on nftables"',
            'lb.unsupported backend=nftables virtual_server="group WEB/TCP" '
            'note="10.0.0.2:80: lb_kind DR is dropped on nftables in a virtual server that has '
            'NAT real servers too"',
            'lb.unsupported backend=nftables virtual_server="group WEB/TCP" '
            'note="lb_algo wlc runs as mh for DR on nftables (stateless: every packet of a flow '
            'must hash to the same server)"']
        for _ in range(3):
            syncs = backend.syncs
            balancer.changed.set()
            assert converged(syncs)
        assert len(logged()) == 3
        syncs = backend.syncs
        balancer.reload(_load(tmp_path, LIMITS_CONFIG.replace(
            "    lb_algo rr\n", "    lb_algo rr\n    persistence_timeout 300\n")))
        assert converged(syncs)
        assert len(logged()) == 4 and PERSISTENT_20.split(": ", 1)[1] in logged()[-1]
        assert balancer.status()["warnings"] == [*LIMITS, PERSISTENT_20]
    finally:
        balancer.stop()
        logger.removeHandler(handler)
