"""The pure rules of MISC_CHECK (exit code -> result, users), FILE_CHECK (file value ->
up/down and weight, keepalived's strtol) and PING_CHECK (echo packets), and FileCheck
reading files in tmp_path."""

from __future__ import annotations

import os
import pwd
import socket
import struct
from types import SimpleNamespace

import pytest

from director.check.checker import Target
from director.check.file import (INT32_MAX, INT32_MIN, FileCheck, judge, parse_value,
                                 parse_weight, read_value, strtol)
from director.check.misc import exit_result, run_as
from director.check.ping import checksum, echo_request, parse_echo_reply

TARGET = Target("192.0.2.10", None, 1.0)

# -- MISC_CHECK ---------------------------------------------------------------------------------


@pytest.mark.parametrize("code, dynamic, ok, weight, error", [
    (0, False, True, None, None),
    (1, False, False, None, "exit 1"),
    (2, False, False, None, "exit 2"),
    (255, False, False, None, "exit 255"),
    (0, True, True, None, None),          # the configured weight
    (1, True, False, None, "exit 1"),     # 1 always fails
    (2, True, True, 0, None),
    (7, True, True, 5, None),
    (255, True, True, 253, None),
    (-15, False, False, None, "killed by signal 15"),
    (-9, True, False, None, "killed by signal 9"),
])
def test_exit_result(code, dynamic, ok, weight, error):
    result = exit_result(code, dynamic, 0.25)
    assert (result.ok, result.weight, result.error, result.duration) == (ok, weight, error, 0.25)
    assert result.detail == {"exit": code}


def test_run_as_nobody_has_its_own_group_and_no_supplementary_groups():
    if os.geteuid() != 0:
        pytest.skip("the keywords differ when not root")
    nobody = pwd.getpwnam("nobody")
    assert run_as(None) == {} and run_as("") == {}
    assert run_as("nobody") == {"user": nobody.pw_uid, "group": nobody.pw_gid,
                                "extra_groups": []}
    assert run_as("nobody root") == {"user": nobody.pw_uid, "group": 0, "extra_groups": []}
    assert run_as("nobody :")["extra_groups"] == os.getgrouplist("nobody", nobody.pw_gid)
    assert run_as("nobody :root")["group"] == 0


def test_run_as_unknown_names():
    with pytest.raises(KeyError, match="script user 'no-such-user-x' does not exist"):
        run_as("no-such-user-x")
    with pytest.raises(KeyError, match="script group 'no-such-group-x' does not exist"):
        run_as("root no-such-group-x")
    with pytest.raises(ValueError):
        run_as("root root extra")

# -- FILE_CHECK ---------------------------------------------------------------------------------


@pytest.mark.parametrize("text, value", [
    (b"42", 42), (b"  \t42\n", 42), (b"+7", 7), (b"-3", -3), (b"12abc", 12),
    (b"0x1F", 31), (b"0X1f", 31), (b"010", 8), (b"08", 0), (b"0x", 0), (b"0xg", 0),
    (b"abc", 0), (b"", 0), (b"- 5", 0), (b"\n", 0), (b"5\x009", 5), (b"-0x10", -16),
])
def test_strtol(text, value):
    assert strtol(text) == value


def test_parse_value_range():
    assert parse_value(b"") == 0
    assert parse_value(str(INT32_MIN).encode()) == INT32_MIN
    assert parse_value(str(INT32_MAX + 1).encode()) == INT32_MAX + 1      # allowed
    assert parse_value(str(INT32_MAX + 2).encode()) is None               # ignored
    assert parse_value(str(INT32_MIN - 1).encode()) is None
    assert parse_value(b"9" * 40) is None
    assert parse_value(b" " * 127 + b"5") == 0          # only 127 bytes are read


@pytest.mark.parametrize("text, parsed", [
    ("5", (5, False)), ("-5 reverse", (-5, True)), ("0 noreverse", (0, False)),
    (str(INT32_MAX), (INT32_MAX, False)), (str(-INT32_MAX), (-INT32_MAX, False)),
    (None, None), ("", None), ("x", None), ("5 sideways", None), ("1 2 3", None),
    (str(INT32_MAX + 1), None), (str(INT32_MIN), None),
])
def test_parse_weight(text, parsed):
    assert parse_weight(text) == parsed


@pytest.mark.parametrize("value, weight, reverse, up, delta", [
    # weight 0: non-zero means down; reversed, zero means down
    (0, 0, False, True, 0), (1, 0, False, False, 0), (-4, 0, False, False, 0),
    (0, 0, True, False, 0), (9, 0, True, True, 0),
    # otherwise value * weight (negated by reverse) is added to the weight
    (0, 1, False, True, 0), (0, 1, True, True, 0),
    (10, 1, False, True, 10), (10, 3, False, True, 30), (10, 3, True, True, -30),
    (-100, 1, False, True, -100),                 # lowers the weight, still up
    (-100, -2, False, True, 200),
    # down only when the product reaches -2^31 (clamped)
    (INT32_MIN, 1, False, False, 0), (INT32_MAX + 1, 1, True, False, 0),
    (INT32_MAX + 1, -1, False, False, 0), (-(1 << 30), 4, False, False, 0),
    (INT32_MIN + 1, 1, False, True, INT32_MIN + 1),
    (1 << 30, 4, False, True, INT32_MAX),
])
def test_judge(value, weight, reverse, up, delta):
    assert judge(value, weight, reverse) == (up, delta)


def track_file(name, path, weight=(1, False)):
    return SimpleNamespace(name=name, file=str(path) if path else None, weight=weight,
                           init_file=None)


def file_check(weight=None, name="tf", files=(), **kw):
    config = SimpleNamespace(kind="FILE_CHECK", track_file=name, weight=weight)
    return FileCheck(config, TARGET, track_files={f.name: f for f in files}, **kw)


def test_file_check_reads_the_file_every_attempt(tmp_path):
    path = tmp_path / "state"
    check = file_check(files=[track_file("tf", path, (2, False))])
    result = check.check()                       # missing: 0
    assert result.ok and result.detail["weight_delta"] == 0 and result.weight is None
    assert "unreadable" in result.detail
    path.write_text("5\n")
    result = check.check()
    assert result.ok and result.detail == {"file": str(path), "value": 5, "weight_delta": 10}
    path.write_text(str(INT32_MAX + 5))          # out of range: the last value stays
    result = check.check()
    assert result.ok and result.detail["value"] == 5 and "ignored" in result.detail
    path.write_text(str(INT32_MIN))
    result = check.check()
    assert not result.ok and result.error == f"{path} holds {INT32_MIN} (weight 2)"
    path.write_text("")
    assert check.check().ok


def test_file_check_weight_overrides_the_track_file(tmp_path):
    path = tmp_path / "state"
    path.write_text("3")
    files = [track_file("tf", path, (2, True))]
    assert file_check(files=files).check().detail["weight_delta"] == -6      # inherited
    assert file_check("0", files=files).check().ok is False
    assert file_check("0 reverse", files=files).check().ok is True
    assert file_check("4", files=files).check().detail["weight_delta"] == 12  # no reverse
    assert file_check("bad", files=files).check().detail["weight_delta"] == -6
    result = file_check("4", files=files, base_weight=10).check()
    assert (result.ok, result.weight) == (True, 22)
    path.write_text("-20")
    assert file_check("1", files=files, base_weight=10).check().weight == 0   # clamped


def test_file_check_without_its_track_file():
    result = file_check(name="nope").check()
    assert (result.ok, result.error) == (False, "track_file nope is not defined")
    result = file_check(files=[track_file("tf", None)]).check()
    assert (result.ok, result.error) == (False, "track_file tf has no 'file'")


def test_read_value_of_a_fifo_without_writer_is_zero(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    assert read_value(str(fifo)) == (0, None)    # non-blocking open and read: no wait

# -- PING_CHECK ---------------------------------------------------------------------------------


def test_checksum_of_an_echo_request_verifies():
    packet = echo_request(socket.AF_INET, 0x1234, 7, b"hello")
    assert checksum(packet) == 0
    assert packet[:1] == b"\x08" and struct.unpack("!HH", packet[4:8]) == (0x1234, 7)
    assert checksum(b"\x00\x01\xf2") == checksum(b"\x00\x01\xf2\x00")


def test_echo_request_v6_leaves_the_checksum_to_the_kernel():
    packet = echo_request(socket.AF_INET6, 1, 2, b"x")
    assert packet == bytes([128, 0, 0, 0, 0, 1, 0, 2]) + b"x"


def test_parse_echo_reply():
    reply = struct.pack("!BBHHH", 0, 0, 0, 5, 6) + b"data"
    assert parse_echo_reply(socket.AF_INET, reply) == (5, 6, b"data")
    ip_header = bytes([0x45]) + bytes(19)
    assert parse_echo_reply(socket.AF_INET, ip_header + reply, ip_header=True) == (5, 6, b"data")
    assert parse_echo_reply(socket.AF_INET, reply[:7]) is None
    request = struct.pack("!BBHHH", 8, 0, 0, 5, 6)
    assert parse_echo_reply(socket.AF_INET, request) is None
    assert parse_echo_reply(socket.AF_INET6, reply) is None
    reply6 = struct.pack("!BBHHH", 129, 0, 0, 5, 6)
    assert parse_echo_reply(socket.AF_INET6, reply6) == (5, 6, b"")
    unreachable = struct.pack("!BBHHH", 3, 1, 0, 0, 0) + ip_header
    assert parse_echo_reply(socket.AF_INET, unreachable) is None
