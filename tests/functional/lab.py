"""The network-namespace lab of the functional tests: the demo's (director/demo/netlab.py),
plus what only tests need: pytest's skips and Debian's keepalived as a peer."""

from __future__ import annotations

import signal
import subprocess

import pytest

from director.demo.netlab import (KILL_GRACE, Host, Lab, Switch, keepalived_binary,  # noqa: F401
                                  netns_unavailable, wait_for)

needs_netns = pytest.mark.skipif(netns_unavailable() is not None,
                                 reason=f"network namespaces unavailable: {netns_unavailable()}")


def start_keepalived(host, config_text, name="keepalived") -> subprocess.Popen:
    """Start Debian's keepalived in host's namespace, VRRP only, in the foreground, logging to
    the console (captured in lab.tmp, see lab.log_of), never to syslog; its config and every
    pid file are in lab.tmp, nothing under /etc/keepalived or /run. Skips if not installed.
    The lab's close kills it (SIGKILL): on TERM keepalived takes a second to stop, and every
    namespace it touched is deleted anyway; a test of its clean stop sends TERM itself."""
    binary = keepalived_binary()
    if binary is None:
        pytest.skip("keepalived is not installed (apt-get install keepalived)")
    tmp = host.lab.tmp
    stem = f"{host.name}-{name}"
    conf = tmp / f"{stem}.conf"
    conf.write_text(config_text)
    proc = host.popen([binary, "--vrrp", "--dont-fork", "--log-console", "--log-detail",
                       "--no-syslog", "--dont-respawn", "--use-file", conf,
                       "--pid", tmp / f"{stem}.pid", "--vrrp_pid", tmp / f"{stem}-vrrp.pid",
                       "--checkers_pid", tmp / f"{stem}-checkers.pid",
                       "--bfd_pid", tmp / f"{stem}-bfd.pid"],
                      log_path=tmp / f"{stem}.log")
    proc.close_signal = signal.SIGKILL
    return proc
