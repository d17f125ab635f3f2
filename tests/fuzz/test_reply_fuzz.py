"""The checkers' reply parsers under mutated replies (tests/fuzz/replies.py): HTTP status
lines, headers, chunked bodies, Content-Lengths missing, negative or thousands of digits long,
bytes that are not ASCII (the class of keepalived's CVE-2018-19115); SMTP lines; DNS headers
with counts that lie and compression loops (the DNS check reads the header only, as keepalived
does, so no name is ever followed); UDP replies against patterns. Each is a pass or a failure
with a reason, never an exception. A fixed seed, and a fresh one printed for FUZZ_SEED.

Reading from the socket is bounded apart from parsing: HTTP at 64 KiB of headers and 16 MiB in
all, an SMTP line at 64 KiB (smtp.next_line below; tests/functional/test_check_reply_limits.py
against real endless servers).
"""

from __future__ import annotations

import os
import random

from director.check import smtp
from tests.fuzz import replies

FIXED_SEED = 20261130


def test_fixed_seed():
    counts = replies.run(FIXED_SEED, 20_000)
    assert all(counts.get(key) for key in ("http pass", "http fail", "smtp code", "smtp none",
                                           "dns answer", "dns skipped", "udp pass",
                                           "udp fail")), counts


def test_random_seed():
    seed = int(os.environ.get("FUZZ_SEED") or random.SystemRandom().randrange(2 ** 32))
    print(f"FUZZ_SEED={seed}")
    replies.run(seed, 5_000)            # a failure names the seed and the input as hex


def test_http_replies_that_cannot_be_read_say_so():
    url = replies.URLS[0]
    for raw, reason in [(b"", "empty reply"), (b"\xff\xfe\x00HTTP/1.1 200", "not HTTP"),
                        (b"HTTP/1.1 2000 OK\r\n\r\n", "not HTTP"),
                        (b"HTTP/1.1 200 OK\r\nX: y", "no CRLF CRLF"),
                        (b"HTTP/1.1 200 OK\r\n" + b"a" * 100_000, "no CRLF CRLF")]:
        text = replies.http_reply(url, raw)
        assert text.startswith("not an HTTP reply") and reason in text, (raw[:40], text)


def test_smtp_lines_as_keepalived_reads_them():
    assert smtp.next_line(b"", b"220 ready\r\n250 extra") == (b"220 ready\r", b"")
    assert smtp.next_line(b"220 rea", b"dy\n") == (b"220 ready", b"")
    assert smtp.next_line(b"", b"220 partial") == (None, b"220 partial")
    assert smtp.next_line(b"x" * 500, b"y" * 11) == (None, b"")      # a full buffer: dropped


def test_an_endless_smtp_line_is_bounded():
    """Fed chunk by chunk as the checker reads it, an endless line never holds more than
    keepalived's 511-byte buffer; the checker stops reading after MAX_LINE_WAIT bytes."""
    buffer, rng = b"", random.Random(1)
    for _ in range(2_000):
        chunk = rng.randbytes(rng.randint(1, smtp.SMTP_BUFF_MAX - 1 - len(buffer))) \
            .replace(b"\n", b" ")
        line, buffer = smtp.next_line(buffer, chunk)
        assert line is None and len(buffer) < smtp.SMTP_BUFF_MAX


def test_replies_alike_but_for_their_date_are_judged_alike():
    """http.reply_key (what the HTTP check's remembered verdict is keyed on) leaves out a
    Date header's value: every pair of mutated replies it calls alike must get one verdict
    from judge(), wherever the Date line lands (in the headers, the body, cut short)."""
    from director.check import http

    rng = random.Random(FIXED_SEED)
    dates = [b"Tue, 01 Dec 2026 17:00:00 GMT", b"Wed, 31 Jan 1990 23:59:59 GMT",
             b"Mon, 99 Xyz 0000 00:00:00 GMT", b"Sun, 01 Dec 2026 17:00:0 GMT"]
    alike = 0
    for _ in range(3_000):
        raw = replies.http_mutate(rng)
        at = rng.randrange(len(raw) + 1)
        name = rng.choice((b"\r\nDate: ", b"\r\ndate: ", b"\r\nDATE: "))
        first, second = (raw[:at] + name + date + b"\r\n" + raw[at:]
                         for date in rng.sample(dates, 2))
        if http.reply_key(first) != http.reply_key(second):
            continue
        alike += 1
        for url in replies.URLS:
            assert http.judge(url, first) == http.judge(url, second), (first, second)
    assert alike > 50, alike
