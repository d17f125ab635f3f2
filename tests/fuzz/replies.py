"""The checkers' reply parsers as fuzz targets: what a checked server sends, judged by the
pure functions the checkers use (HTTP: http.judge over genhash.parse_response; SMTP:
smtp.reply_code and the error text; DNS: dns.reply_rcode; UDP: udp.reply_problem).

Each target returns what the checker would conclude and raises on anything else; the
invariant is that a reply, however malformed, is a pass or a failure with a reason, never an
exception (the scheduler would call that "checker crashed") and never an unbounded cost.
"""

from __future__ import annotations

import random

from director.check import dns, http, smtp, udp
from director.config.blocks.checkers import BLOCKS
from director.config.schema import model_for
from director.genhash import compute_digest

from .mutate import havoc

OK_BODY = b"<html><body>alive</body></html>\n"
HTTP_SEEDS = [
    b"HTTP/1.0 200 OK\r\nContent-Type: text/html\r\nContent-Length: 32\r\n\r\n" + OK_BODY,
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n20\r\n" + OK_BODY + b"\r\n0\r\n\r\n",
    b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 5\r\n\r\n",
    b"HTTP/1.1 301 Moved\r\nLocation: /x\r\nContent-Length: -1\r\n\r\nbody",
    b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n" + OK_BODY,
    b"HTTP/1.1 200 \xff\xfe\xc3\x28\r\nX: \x00\x80\r\n\r\n\xff",
    b"HTTP/1.0 200 OK\n\nLF only",
    b"SSH-2.0-OpenSSH_9.2\r\n",
]
# The url blocks a configuration can hold, as the parsed model gives them to judge().
Url = model_for(BLOCKS["HTTP_GET"].lookup("url").value)
URLS = [
    Url(path="/"),
    Url(path="/", status_code=((200, 200), (301, 302)), digest=compute_digest(OK_BODY)),
    Url(path="/", regex="al[a-z]+e", regex_options="caseless multiline", regex_min_offset=2,
        regex_max_offset=64),
    Url(path="/", status_code=((100, 599),), regex="error", regex_no_match=True),
]


def http_reply(url, raw: bytes) -> str | None:
    reason = http.judge(url, raw)
    assert reason is None or (isinstance(reason, str) and reason), repr(reason)
    return reason


def http_mutate(rng: random.Random) -> bytes:
    raw = havoc(rng, rng.choice(HTTP_SEEDS), HTTP_SEEDS, max_len=1 << 16)
    if rng.random() < 0.05:     # a long number: Content-Length, status, chunk size
        raw = raw.replace(b"32", b"9" * rng.choice((19, 20, 400, 5000, 20000)), 1)
    return raw


SMTP_SEEDS = [b"220 mail.example.org ESMTP", b"250 mail.example.org", b"220-multi line",
              b"250\r", b"421 4.3.2 shutting down", b"\xff\xfe 220", b"2200 x", b""]


def smtp_line(line: bytes) -> int | None:
    code = smtp.reply_code(line)
    assert code is None or 0 <= code <= 999
    text = smtp.shown(line) + smtp._hint(line)
    assert isinstance(text, str) and len(text) <= 200
    return code


DNS_QUERY = dns.build_query("example.org", "A", ident=0x1234)
DNS_SEEDS = [
    DNS_QUERY[:2] + b"\x81\x80" + DNS_QUERY[4:],                     # NOERROR, no answer
    DNS_QUERY[:2] + b"\x81\x83" + DNS_QUERY[4:],                      # NXDOMAIN
    # an answer whose name is a compression pointer to itself, counts that lie
    DNS_QUERY[:2] + b"\x81\x80\x00\x01\xff\xff\xff\xff\x00\x00" + DNS_QUERY[12:] +
    b"\xc0\x1d\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x04\x7f\x00\x00\x01",
    b"\x12\x34\x81", b"",
]


def dns_reply(reply: bytes) -> int | None:
    rcode = dns.reply_rcode(reply, 0x1234)
    assert rcode is None or 0 <= rcode <= 15
    if rcode is not None:
        assert dns.rcode_name(rcode)
        assert dns.HEADER.unpack_from(reply)[3] >= 0
    return rcode


UDP_PATTERNS = [udp.parse_pattern(text) for text in ("00", "cafe xx 01", "xx" * 40)]
UDP_SEEDS = [b"\x00", b"\xca\xfe\x00\x01", b"", bytes(255), bytes(300)]


def udp_reply(reply: bytes, pattern, minimum: int, maximum: int) -> str | None:
    problem = udp.reply_problem(reply, *pattern, minimum, maximum)
    assert problem is None or (isinstance(problem, str) and problem)
    return problem


def run(seed: int, count: int) -> dict[str, int]:
    """``count`` inputs to each parser; outcome counts. Raises with the seed and the input."""
    rng = random.Random(seed)
    counts: dict[str, int] = {}

    def note(key: str) -> None:
        counts[key] = counts.get(key, 0) + 1

    for _ in range(count):
        data = b""
        try:
            url = rng.choice(URLS)
            data = http_mutate(rng)
            note("http " + ("pass" if http_reply(url, data) is None else "fail"))
            data = havoc(rng, rng.choice(SMTP_SEEDS), SMTP_SEEDS, max_len=600)
            note("smtp " + ("code" if smtp_line(data) is not None else "none"))
            data = havoc(rng, rng.choice(DNS_SEEDS), DNS_SEEDS, max_len=768)
            note("dns " + ("answer" if dns_reply(data) is not None else "skipped"))
            data = havoc(rng, rng.choice(UDP_SEEDS), UDP_SEEDS, max_len=65535)
            minimum = rng.choice((0, 0, 1, 4))
            maximum = rng.choice((udp.DEFAULT_MAX_REPLY, 8, 65535))
            note("udp " + ("pass" if udp_reply(data, rng.choice(UDP_PATTERNS), minimum,
                                               maximum) is None else "fail"))
        except Exception as exc:
            raise AssertionError(f"seed {seed}: {exc!r} on input {data[:4096].hex()}"
                                 f"{'...' if len(data) > 4096 else ''} "
                                 f"({len(data)} bytes)") from exc
    return counts
