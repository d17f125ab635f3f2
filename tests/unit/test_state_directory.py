"""The directories root writes state, dumps and the pid file in: its own, or refused."""

from __future__ import annotations

import os
import stat

import pytest

from director.files import UnsafeDirectory, directory_problem, own_directory

DIR = stat.S_IFDIR


@pytest.mark.parametrize("uid, gid, mode, reason", [
    (0, 0, 0o755, None),
    (0, 0, 0o700, None),
    (0, 0, 0o775, None),                                  # group root
    (0, 50, 0o775, "is writable by group 50 (mode 0775)"),
    (0, 0, 0o777, "is writable by every user (mode 0777)"),
    (0, 0, 0o1777, "is writable by every user (mode 1777)"),  # sticky (/tmp) is not enough
    (1000, 1000, 0o755, "is owned by uid 1000"),
])
def test_directory_problem(uid, gid, mode, reason):
    assert directory_problem(uid, gid, DIR | mode, our_uid=0) == reason


def test_a_daemon_run_by_a_user_may_use_that_users_directory():
    assert directory_problem(1000, 1000, DIR | 0o755, our_uid=1000) is None


def test_a_missing_directory_is_created_closed_to_others(tmp_path):
    folder = tmp_path / "state" / "director"
    own_directory(str(folder))
    mode = stat.S_IMODE(folder.stat().st_mode)
    assert mode & 0o022 == 0 and mode & 0o700 == 0o700


def test_a_world_writable_directory_is_refused_with_the_fix(tmp_path):
    folder = tmp_path / "open"
    folder.mkdir()
    folder.chmod(0o1777)
    with pytest.raises(UnsafeDirectory, match=r"open is writable by every user \(mode 1777\).*"
                                              r"chmod o-w"):
        own_directory(str(folder))


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")
def test_a_directory_of_another_user_is_refused(tmp_path):
    folder = tmp_path / "theirs"
    folder.mkdir()
    os.chown(folder, 65534, 65534)
    with pytest.raises(UnsafeDirectory, match="owned by uid 65534"):
        own_directory(str(folder))
