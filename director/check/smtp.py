"""SMTP_CHECK: connect, read a 220 greeting, say HELO, want 250, say QUIT, read one line.

keepalived's rules (check_smtp.c), which a migrated configuration expects:

- Every wait (connect, each read, each write) gets the whole connect_timeout again.
- A reply line is what comes before the first newline; bytes after it in the same read are
  dropped. Its code passes only if the line starts with exactly three digits followed by a
  space or nothing (strtoul and a check of the next character), so a multi-line greeting
  ("220-...") fails, and so does a bare "250\\r". A line over 511 bytes without a newline is
  thrown away and reading goes on; here only up to MAX_LINE_WAIT bytes in all, where
  keepalived would read an endless line for ever (each read re-arms its timer).
- The greeting must be 220, the HELO reply 250. After QUIT any line will do (221 or not);
  only a timeout or the connection closing before a newline fails.
- helo_name defaults to "smtpchecker.keepalived.org".
- The deprecated ``host`` sub-blocks: keepalived 2 turns each into a checker of its own on the
  same real server (smtp_check_end_handler), and the checker's own address is kept only if
  the SMTP_CHECK block set a connection option (connect_ip, connect_port, bindto, bind_port,
  bind_if, fwmark, connect_timeout) or has no host blocks. One attempt here checks all of
  those endpoints in turn and passes if all do: the real server goes down when any
  of keepalived's separate checkers fails, and retries apply to the attempt as a whole.
  A host block's address and port default to the real server's, as in keepalived.
  (keepalived's own parser today sends a host block's connect_* keywords to the enclosing
  checker, as its handlers write to current_checker; we follow the documented intent.)
"""

from __future__ import annotations

import dataclasses
import socket
import time
from typing import Any

from .checker import CheckResult, Target
from .sockets import open_socket

DEFAULT_HELO = "smtpchecker.keepalived.org"     # check_smtp.h SMTP_DEFAULT_HELO
SMTP_BUFF_MAX = 512                             # check_smtp.h; a line is at most 511 bytes
MAX_LINE_WAIT = 64 << 10                        # bytes read waiting for one line, at most
CONNECTION_OPTIONS = ("connect_ip", "connect_port", "bindto", "bind_port", "bind_if", "fwmark",
                      "connect_timeout")


class Failed(Exception):
    """One step of the conversation failed; the text is the check's error, ``reply_error``
    the label it is counted under when the server's reply could not be read."""

    def __init__(self, message: str, reply_error: str | None = None) -> None:
        super().__init__(message)
        self.reply_error = reply_error


def reply_code(line: bytes) -> int | None:
    """keepalived's smtp_get_status: three digits then a space or the end, else None."""
    if len(line) < 3 or not line[:3].isdigit() or line[3:4] not in (b"", b" "):
        return None
    return int(line[:3])


def next_line(buffer: bytes, chunk: bytes) -> tuple[bytes | None, bytes]:
    """keepalived's reading of a reply line, one received chunk at a time: (the line, if
    this chunk ended it, else None; what to keep for the next chunk). What follows the
    newline in the same read is dropped; a full buffer without one is thrown away."""
    buffer += chunk
    end = buffer.find(b"\n")
    if end >= 0:
        return buffer[:end], b""
    return None, (b"" if len(buffer) >= SMTP_BUFF_MAX - 1 else buffer)


def shown(line: bytes) -> str:
    text = line.decode("utf-8", "replace").strip()
    return text if len(text) <= 80 else text[:77] + "..."


def endpoints(config: Any, target: Target) -> list[Target]:
    """The targets one attempt checks: the checker's own, then one per ``host`` block."""
    hosts = list(getattr(config, "hosts", None) or ())
    own = not hosts or any(getattr(config, name, None) not in (None, False)
                           for name in CONNECTION_OPTIONS)
    result = [target] if own else []
    # The real server's address, as far as the Target shows it (it holds the checker's
    # connect_ip/connect_port when set; then those stand in for the real server's).
    for host in hosts:
        result.append(dataclasses.replace(
            target,
            host=getattr(host, "connect_ip", None) or target.host,
            port=getattr(host, "connect_port", None) or target.port,
            bind_ip=getattr(host, "bindto", None),
            bind_port=getattr(host, "bind_port", None),
            bind_if=getattr(host, "bind_if", None),
            fwmark=None))
    return result


class SmtpCheck:
    kind = "SMTP_CHECK"

    def __init__(self, config: Any, target: Target) -> None:
        self.target = target
        self.helo_name = getattr(config, "helo_name", None) or DEFAULT_HELO
        self.targets = endpoints(config, target)

    @property
    def hard_deadline(self) -> float:
        """keepalived gives each of the six waits of a conversation the whole
        connect_timeout, for every endpoint; the scheduler must not cut that short."""
        return sum(6 * t.connect_timeout for t in self.targets) + 1.0

    def check(self) -> CheckResult:
        started = time.monotonic()
        several = len(self.targets) > 1
        for target in self.targets:
            try:
                self.converse(target)
            except Failed as exc:
                where = f"{target.host}:{target.port}: " if several else ""
                return CheckResult(False, time.monotonic() - started, where + str(exc),
                                   reply_error=exc.reply_error)
        return CheckResult(True, time.monotonic() - started)

    def converse(self, target: Target) -> None:
        timeout = target.connect_timeout
        if not target.port:
            raise Failed("no port to check (set connect_port)")
        try:
            sock = open_socket(target, socket.SOCK_STREAM)
        except OSError as exc:
            raise Failed(f"socket: {exc.strerror or exc}") from None
        with sock:
            sock.settimeout(timeout)      # per wait, as keepalived re-arms its timer each time
            try:
                sock.connect((target.host, target.port))
            except TimeoutError:
                raise Failed(f"timeout after {timeout:g} s connecting") from None
            except OSError as exc:
                raise Failed(f"connect: {exc.strerror or exc}") from None
            banner = self._line(sock, timeout, "the banner")
            if reply_code(banner) != 220:
                raise Failed(f"banner {shown(banner)}{_hint(banner)}", _unreadable(banner))
            self._send(sock, timeout, f"HELO {self.helo_name}\r\n", "HELO")
            helo = self._line(sock, timeout, "the HELO reply")
            if reply_code(helo) != 250:
                raise Failed(f"HELO answered {shown(helo)}{_hint(helo)}", _unreadable(helo))
            self._send(sock, timeout, "QUIT\r\n", "QUIT")
            self._line(sock, timeout, "the QUIT reply")     # any line: keepalived reads it only

    @staticmethod
    def _line(sock: socket.socket, timeout: float, what: str) -> bytes:
        buffer, received = b"", 0
        while True:
            try:
                chunk = sock.recv(SMTP_BUFF_MAX - 1 - len(buffer))
            except TimeoutError:
                raise Failed(f"timeout after {timeout:g} s waiting for {what}") from None
            except OSError as exc:
                raise Failed(f"{exc.strerror or exc} waiting for {what}") from None
            if not chunk:
                raise Failed(f"connection closed waiting for {what}")
            line, buffer = next_line(buffer, chunk)
            if line is not None:
                return line
            received += len(chunk)
            if received > MAX_LINE_WAIT:
                raise Failed(f"no end of line in {MAX_LINE_WAIT >> 10} KiB waiting for {what}",
                             "too_long")

    @staticmethod
    def _send(sock: socket.socket, timeout: float, line: str, what: str) -> None:
        try:
            sock.sendall(line.encode())
        except TimeoutError:
            raise Failed(f"timeout after {timeout:g} s sending {what}") from None
        except OSError as exc:
            raise Failed(f"sending {what}: {exc.strerror or exc}") from None


def _unreadable(line: bytes) -> str | None:
    """The reply_error of a line whose code keepalived's rule cannot read."""
    return "bad_code" if reply_code(line) is None else None


def _hint(line: bytes) -> str:
    """Why a line that looks right still fails keepalived's rule."""
    if len(line) > 3 and line[:3].isdigit() and line[3:4] == b"-":
        return " (a multi-line reply: keepalived reads the first line only and fails it)"
    if len(line) > 3 and line[:3].isdigit() and line[3:4] != b" ":
        return " (keepalived wants a space or nothing after the code)"
    return ""
