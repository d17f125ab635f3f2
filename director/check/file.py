"""FILE_CHECK: a number written in a file (a top-level ``track_file``) decides whether the
real server is up and how much its weight changes.

keepalived's rules (keepalived/trackers/track_file.c, keepalived/check/check_file.c):

* the file is read (its first 127 bytes) and parsed like C's ``strtol(buf, NULL, 0)``:
  leading white space, an optional sign, then decimal, ``0x`` hexadecimal or ``0`` octal
  digits; whatever follows is ignored; no digits at all reads as 0. A file that is missing,
  unreadable or empty reads as 0. A number outside -2^31 .. 2^31 is ignored: the previous
  value is kept (initially 0).
* the weight is the FILE_CHECK's ``weight N [reverse|noreverse]``, else the track_file's
  (``weight N [reverse]``, default 1); reverse makes the multiplier -1.
* weight 0: the server is down while the value is non-zero (reversed: while it is 0).
* otherwise ``value * weight * multiplier``, clamped to 32 bits, is added to the real
  server's weight; it is down only if that reaches -2^31 (IPVS_WEIGHT_FAULT). A smaller
  negative product just lowers the weight (the effective weight is clamped at 0).
* FILE_CHECK has no timeouts, retries nor alpha in keepalived: the state follows the file
  at once (keepalived watches it with inotify; director reads it on every attempt).

The result: ``ok`` as above; ``detail["weight_delta"]`` the number to add to the real
server's weight and ``detail["value"]`` the value read. ``CheckResult.weight`` is the
absolute weight (``base_weight + delta``, at least 0) when the caller passes the real
server's configured weight as ``base_weight``, else None.

Where director differs: a FILE_CHECK naming a track_file that is not defined (or has no
``file``) is dropped by keepalived with a configuration error; here each attempt fails
saying so. ``init_file`` (writing the initial value) is the configuration loader's business,
not this checker's. keepalived's start-up pass for weight 0 ignores ``reverse`` (a quirk
of init_service_rs); here the same rule applies at start-up and afterwards.
"""

from __future__ import annotations

import os
import time
from typing import Any, Mapping

from .checker import CheckResult, Target

INT32_MIN = -(1 << 31)
INT32_MAX = (1 << 31) - 1
WEIGHT_FAULT = INT32_MIN       # keepalived's IPVS_WEIGHT_FAULT
READ_SIZE = 127                # keepalived reads into a 128-byte buffer
C_SPACE = b" \t\n\v\f\r"


def strtol(data: bytes) -> int:
    """C's ``strtol(data, NULL, 0)`` on a NUL-terminated buffer, without the overflow rule
    (Python ints do not overflow: the caller checks the range)."""
    text = data.split(b"\0", 1)[0].lstrip(C_SPACE)
    sign = 1
    if text[:1] in (b"+", b"-"):
        sign = -1 if text[:1] == b"-" else 1
        text = text[1:]
    if text[:2].lower() == b"0x" and text[2:3] and text[2:3] in b"0123456789abcdefABCDEF":
        base, text, digits = 16, text[2:], b"0123456789abcdefABCDEF"
    elif text[:1] == b"0":
        base, digits = 8, b"01234567"
    else:
        base, digits = 10, b"0123456789"
    end = 0
    while end < len(text) and text[end:end + 1] in digits:
        end += 1
    return sign * int(text[:end], base) if end else 0


def parse_value(data: bytes) -> int | None:
    """The file's value, or None if keepalived would ignore it (out of range)."""
    if not data:
        return 0
    value = strtol(data[:READ_SIZE])
    if value < INT32_MIN or value > INT32_MAX + 1:
        return None
    return value


def read_value(path: str) -> tuple[int | None, str | None]:
    """(value or None if out of range, why the file could not be read or None); a file that
    cannot be opened or read counts as 0, as in keepalived."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        return 0, exc.strerror or str(exc)
    try:
        data = os.read(fd, READ_SIZE)
    except OSError as exc:
        return 0, exc.strerror or str(exc)
    finally:
        os.close(fd)
    return parse_value(data), None


def parse_weight(text: str | None) -> tuple[int, bool] | None:
    """FILE_CHECK's ``weight N [reverse|noreverse]``; None if absent or invalid (keepalived
    then uses the track_file's weight and reverse)."""
    words = (text or "").split()
    if not 1 <= len(words) <= 2:
        return None
    try:
        weight = int(words[0], 10)
    except ValueError:
        return None
    if not -INT32_MAX <= weight <= INT32_MAX:
        return None
    if len(words) == 2 and words[1] not in ("reverse", "noreverse"):
        return None
    return weight, len(words) == 2 and words[1] == "reverse"


def judge(value: int, weight: int, reverse: bool) -> tuple[bool, int]:
    """(up, weight delta) for a file value: keepalived's update_track_file_status and
    process_update_checker_track_file_status."""
    if weight == 0:
        return (value != 0) == reverse, 0
    product = value * weight * (-1 if reverse else 1)
    product = max(INT32_MIN, min(INT32_MAX, product))
    if product == WEIGHT_FAULT:
        return False, 0
    return True, product


class FileCheck:
    kind = "FILE_CHECK"

    def __init__(self, config: Any, target: Target,
                 track_files: Mapping[str, Any] | None = None,
                 base_weight: int | None = None) -> None:
        self.config = config
        self.target = target
        self.base_weight = base_weight
        self.name = getattr(config, "track_file", None)
        self.track_file = (track_files or {}).get(self.name) if self.name else None
        own = parse_weight(getattr(config, "weight", None))
        if own is None and self.track_file is not None:
            weight, reverse = getattr(self.track_file, "weight", None) or (1, False)
            own = (int(weight), bool(reverse))
        self.weight, self.reverse = own or (1, False)
        self.value = 0             # the last valid value read (keepalived's last_status)

    @property
    def path(self) -> str | None:
        return getattr(self.track_file, "file", None) if self.track_file is not None else None

    def check(self) -> CheckResult:
        started = time.monotonic()
        if self.track_file is None or not self.path:
            what = (f"track_file {self.name} is not defined" if self.track_file is None
                    else f"track_file {self.name} has no 'file'")
            return CheckResult(False, time.monotonic() - started,
                               what if self.name else "FILE_CHECK names no track_file")
        value, unreadable = read_value(self.path)
        detail: dict[str, Any] = {"file": self.path}
        if unreadable:
            detail["unreadable"] = unreadable
        if value is None:
            detail["ignored"] = "number out of range"
        else:
            self.value = value
        up, delta = judge(self.value, self.weight, self.reverse)
        detail.update(value=self.value, weight_delta=delta)
        weight = None if self.base_weight is None else max(0, self.base_weight + delta)
        error = None if up else (
            f"{self.path} holds {self.value} (weight {self.weight}"
            f"{' reverse' if self.reverse else ''})")
        return CheckResult(up, time.monotonic() - started, error,
                           weight=weight if up else None, detail=detail)
