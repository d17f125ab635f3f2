"""enable_script_security: the pure verdict (lstat records in, reason out) with keepalived
2.2.7's rules, then the runners that act on it (notify, vrrp_script, MISC_CHECK) and -t."""

from __future__ import annotations

import shutil
import stat
import tempfile
from pathlib import Path
from types import SimpleNamespace

import pytest

from director.check.checker import Target
from director.check.misc import MiscCheck
from director.config import load_config
from director.config.values import Command
from director.notify import Notifier
from director.scriptsec import Entry, privileged, problem, refusal, unsafe
from director.vrrp.tracking import ScriptRunner

DIR, FILE, LINK = stat.S_IFDIR, stat.S_IFREG, stat.S_IFLNK


def entries(*last):
    """'/' and '/etc' as on any host, then the entries under test."""
    return [Entry("/", 0, 0, DIR | 0o755), Entry("/etc", 0, 0, DIR | 0o755), *last]


@pytest.mark.parametrize("last, reason", [
    ((Entry("/etc/s.sh", 0, 0, FILE | 0o755),), None),
    ((Entry("/etc/s.sh", 0, 0, FILE | 0o775),), None),             # group root may write
    ((Entry("/etc/s.sh", 0, 100, FILE | 0o775),), "writable by group 100 (mode 0775)"),
    ((Entry("/etc/s.sh", 0, 0, FILE | 0o757),), "writable by every user (mode 0757)"),
    ((Entry("/etc/s.sh", 1000, 0, FILE | 0o700),), "owned by uid 1000, not root"),
    ((Entry("/etc/d", 0, 0, DIR | 0o777), Entry("/etc/d/s.sh", 0, 0, FILE | 0o755)),
     "/etc/d is writable by every user (mode 0777)"),
    ((Entry("/etc/d", 0, 0, DIR | 0o1777), Entry("/etc/d/s.sh", 0, 0, FILE | 0o755)),
     None),                                                          # sticky, like /tmp
    ((Entry("/etc/d", 1000, 1000, DIR | 0o1777),), "owned by uid 1000"),  # sticky, not root's
    ((Entry("/etc/s.sh", 0, 0, LINK | 0o777),), None),              # a link's mode is moot
    ((Entry("/etc/s.sh", 1000, 0, LINK | 0o777),), "owned by uid 1000"),
])
def test_unsafe(last, reason):
    found = unsafe(entries(*last))
    if reason is None:
        assert found is None
    else:
        assert found is not None and reason in found


@pytest.mark.parametrize("run, owner, mode, expected", [
    ((0, 0), (0, 0), 0o755, True),
    ((65534, 65534), (0, 0), 0o755, False),
    ((65534, 0), (0, 0), 0o755, True),                 # group root is root's powers too
    ((65534, 65534), (0, 0), 0o4755, True),            # set-uid root
    ((65534, 65534), (0, 0), 0o4644, False),           # set-uid but not executable by owner
    ((65534, 65534), (1000, 0), 0o2755, True),         # set-gid root
    ((65534, 65534), (1000, 1000), 0o6755, False),
])
def test_privileged(run, owner, mode, expected):
    assert privileged(*run, *owner, FILE | mode) is expected


@pytest.fixture
def scripts():
    """A world-writable directory holding a script, and a safe script beside it (in a fresh
    directory under /tmp: pytest's tmp_path is private, which hides what is under test)."""
    top = Path(tempfile.mkdtemp(dir="/tmp", prefix="scriptsec-"))
    top.chmod(0o755)
    open_dir = top / "open"
    open_dir.mkdir()
    open_dir.chmod(0o777)
    unsafe_script, safe_script = open_dir / "chk.sh", top / "chk.sh"
    for script in (unsafe_script, safe_script):
        script.write_text("#!/bin/sh\nexit 0\n")
        script.chmod(0o755)
    (top / "link.sh").symlink_to(unsafe_script)
    yield SimpleNamespace(top=top, open_dir=open_dir, unsafe=unsafe_script, safe=safe_script,
                          link=top / "link.sh")
    shutil.rmtree(top)


def test_problem_on_real_files(scripts):
    assert f"{scripts.open_dir} is writable by every user" in problem(f"{scripts.unsafe} x", "root")
    assert f"{scripts.open_dir} is writable" in problem(str(scripts.link), "root")  # its target
    assert problem(str(scripts.safe), "root") is None
    assert problem(str(scripts.unsafe), "nobody") is None        # not run with root's powers
    assert problem("true", "root") is None                       # found in PATH, /usr/bin
    assert problem(str(scripts.top / "missing"), "root") is None  # running it says why


def test_refusal_needs_a_user_to_run_scripts_as():
    assert refusal("/bin/true", None, security=False) is None
    assert "set script_user" in refusal("/bin/true", None, security=True)
    assert refusal("/bin/true", "root", security=True) is None


def test_a_notify_script_root_could_be_tricked_into_is_not_run(scripts):
    out = scripts.top / "ran"
    scripts.unsafe.write_text(f"#!/bin/sh\ntouch {out}\n")
    notifier = Notifier("root", script_security=True)
    assert notifier.notify(Command(str(scripts.unsafe)), (), "test").get(timeout=10) == "refused"
    assert not out.exists()
    assert notifier.results == {"refused": 1}
    notifier.configure("root", script_security=False)          # a reload turning it off
    assert notifier.notify(Command(str(scripts.unsafe)), (), "test").get(timeout=10) == "ok"
    assert out.exists()


def test_a_refused_track_script_counts_as_failing_and_is_logged_once(scripts, caplog):
    script = SimpleNamespace(name="chk", script=Command(str(scripts.unsafe)), user=None,
                             timeout=None, interval=1.0, init_fail=False, rise=1, fall=1)
    runner = ScriptRunner(script, "root", script_security=True)
    assert [runner.run_once() for _ in range(3)] == [False] * 3
    refusals = [r for r in caplog.records if "vrrp.script_refused" in r.getMessage()]
    assert len(refusals) == 1 and str(scripts.open_dir) in refusals[0].getMessage()
    scripts.open_dir.chmod(0o755)                             # fixed: it runs again
    assert runner.run_once() is True
    assert ScriptRunner(script, "root").run_once() is True    # without the option it runs
    scripts.open_dir.chmod(0o777)
    runner.configure("root", script_security=False)          # a reload turning it off
    assert runner.run_once() is True


def test_a_refused_misc_check_is_a_failed_attempt_saying_why(scripts):
    config = SimpleNamespace(misc_path=Command(str(scripts.unsafe)), user=None)
    target = Target("192.0.2.10", None, 1.0)
    result = MiscCheck(config, target, "root", script_security=True).check()
    assert not result.ok and result.error.startswith("refused: unsafe:")
    assert str(scripts.open_dir) in result.error
    assert MiscCheck(config, target, "root").check().ok


def test_config_test_warns_with_file_and_line(scripts, tmp_path):
    def diagnostics(global_defs):
        conf = tmp_path / "k.conf"
        conf.write_text(f"global_defs {{\n{global_defs}\n}}\n"
                        f"vrrp_script chk {{\n  script \"{scripts.unsafe} arg\"\n}}\n"
                        f"vrrp_script fine {{\n  script \"{scripts.safe}\"\n}}\n")
        result = load_config(str(conf), interface_exists=lambda name: True)
        return [str(d) for d in result.diagnostics if "no vrrp_instance" not in str(d)]

    [warning] = diagnostics("  script_user root")
    assert warning.startswith(f"{tmp_path}/k.conf:4: warning: script '{scripts.unsafe} arg' "
                              f"runs as root but {scripts.open_dir} is writable by every user")
    [refused] = diagnostics("  script_user root\n  enable_script_security")
    assert "will not be run (enable_script_security): unsafe:" in refused
    assert diagnostics("  script_user nobody\n  enable_script_security") == []
