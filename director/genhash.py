"""genhash: compute the digest of a web page the way keepalived's HTTP_GET checker does.

Reimplements keepalived's genhash (``keepalived --genhash``; keepalived/check/check_genhash.c,
check_http.c, check_ssl.c, lib/html.c; the older standalone genhash/ tree for -H).
The digest printed here must equal the one keepalived computes, so that ``digest``
values operators generated with keepalived stay valid with director and vice versa.
What keepalived hashes (and so do we):

* the raw bytes after the first CRLF CRLF of the reply (lib/html.c extract_html); a
  reply with LF-only line endings has no such separator and keepalived gives no digest;
* Transfer-Encoding is ignored: a chunked body is hashed as received, chunk-size lines
  and the final "0" chunk included (check_http.c http_process_response never de-chunks);
* if the headers contain "Content-Length:" (case-sensitive substring, parsed with
  strtoul, line must end right after the number) at most that many body bytes are hashed;
* the reply is read until the server closes the connection, whatever Content-Length says;
* the status code is not checked by genhash (a 404 page gets a digest too).

The pure part (request building, reply parsing, digest, hex dump) is separate from the
socket I/O in fetch() so it can be unit tested.
"""
from __future__ import annotations

import argparse
import hashlib
import ipaddress
import re
import socket
import ssl
import sys
import time
from dataclasses import dataclass, field

USER_AGENT = "KeepAliveClient"  # what keepalived's checker and --genhash send
DEFAULT_TIMEOUT = 5.0  # the standalone genhash default (HTTP_CNX_TIMEOUT)
# keepalived -P values -> (HTTP version, send "Connection: close")
PROTOCOLS = {"1.0": ("1.0", False), "1.0c": ("1.0", True), "1.0C": ("1.0", True),
             "1.1": ("1.1", True)}
# Labels of the old standalone genhash ("MD5SUM = ..."), which had -H md5|sha1.
HASHES = {"md5": "MD5SUM", "sha1": "SHA1SUM"}
HEADER_END = b"\r\n\r\n"
ULONG_MAX = 2 ** 64 - 1
_STATUS_RE = re.compile(rb"HTTP/\d\.\d +(\d{3})(?:[ \r\n]|$)")
# strtoul(): optional leading whitespace (\n and \r included), optional sign, digits.
_STRTOUL_RE = re.compile(rb"[ \t\n\v\f\r]*([+-]?)(\d+)")
_DELIM = "-----------------------[{}]-----------------------"


class GenhashError(Exception):
    """An error to report as one line on stderr."""


@dataclass
class Response:
    status_line: bytes
    status_code: int
    headers: list[tuple[bytes, bytes]]
    header_block: bytes  # status line + headers + the CRLF CRLF, as received
    body: bytes  # what gets hashed: raw bytes after the headers, capped at Content-Length
    content_length: int | None
    received_body_len: int = field(default=0)  # body bytes actually received (uncapped)


def build_request(url: str, server: str, port: int, vhost: str | None = None,
                  protocol: str = "1.0") -> bytes:
    """The GET request keepalived sends (check_http.c request_template)."""
    version, close = PROTOCOLS[protocol]
    if vhost:
        host = vhost  # keepalived sends the virtualhost without a port
    else:
        addr = ipaddress.ip_address(server.split("%", 1)[0])
        host = f"[{addr}]:{port}" if addr.version == 6 else f"{addr}:{port}"
    lines = [f"GET {url} HTTP/{version}", f"User-Agent: {USER_AGENT}"]
    if close:
        lines.append("Connection: close")
    lines.append(f"Host: {host}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def extract_content_length(header_block: bytes) -> int | None:
    """Content-Length the way keepalived reads it (lib/html.c), None if it would not cap.

    Quirks kept on purpose, they decide which bytes are hashed: the name is matched
    case-sensitively anywhere (so "content-length:" is ignored), the value is parsed by
    strtoul and is only accepted if the line ends right after it.
    """
    pos = header_block.find(b"Content-Length:")
    if pos < 0:
        return None
    rest = header_block[pos + len(b"Content-Length:"):]
    m = _STRTOUL_RE.match(rest)
    if not m:  # strtoul read nothing: keepalived gets 0 if the line ends at the colon
        return 0 if rest[:1] in (b"\r", b"\n", b"") else None
    if rest[m.end():m.end() + 1] not in (b"\r", b"\n", b""):
        return None
    digits = m.group(2).lstrip(b"0") or b"0"
    # strtoul saturates at ULONG_MAX; int() would refuse more than 4,300 digits (ValueError).
    value = ULONG_MAX if len(digits) > 20 else min(int(digits), ULONG_MAX)
    if m.group(1) == b"-" and value:
        return None  # strtoul wraps a negative number to a huge one: no cap
    return value


def parse_response(raw: bytes) -> Response:
    """Split a complete raw reply; raise GenhashError if it is empty or not HTTP."""
    if not raw:
        raise GenhashError("empty reply: server closed the connection without sending data")
    first_line = raw.split(b"\n", 1)[0]
    m = _STATUS_RE.match(first_line)
    if not m:
        raise GenhashError(f"reply is not HTTP: {first_line[:60]!r}")
    end = raw.find(HEADER_END)
    if end < 0:
        hint = " (LF-only line endings; keepalived requires CRLF)" if b"\n\n" in raw else ""
        raise GenhashError(f"incomplete HTTP reply: no CRLF CRLF after the headers{hint}")
    end += len(HEADER_END)
    header_block, rest = raw[:end], raw[end:]
    lines = header_block[:-len(HEADER_END)].split(b"\r\n")
    headers = [(n.strip(), v.strip()) for n, _, v in (ln.partition(b":") for ln in lines[1:])]
    clen = extract_content_length(header_block)
    body = rest if clen is None else rest[:clen]
    return Response(lines[0], int(m.group(1)), headers, header_block, body, clen, len(rest))


def compute_digest(body: bytes, algorithm: str = "md5") -> str:
    return hashlib.new(algorithm, body).hexdigest()


def hexdump(data: bytes) -> str:
    """keepalived's dump_buffer() layout: decimal offset, 16 bytes, ' -' after 8, ascii."""
    rows = []
    for off in range(0, len(data), 16):
        chunk = data[off:off + 16]
        cells = [f" {b:02x}" for b in chunk] + ["   "] * (16 - len(chunk))
        text = "".join(chr(b) if 0x20 <= b <= 0x7e else "." for b in chunk).ljust(16)
        rows.append(f"{off & 0xffff:04d} {''.join(cells[:8])} -{''.join(cells[8:])}   {text}\n")
    return "".join(rows)


def fetch(server: str, port: int, request: bytes, *, use_ssl: bool = False,
          sni: str | None = None, timeout: float = DEFAULT_TIMEOUT,
          fwmark: int | None = None) -> bytes:
    """Send the request and return the raw reply, read until the server closes.

    Like keepalived we do not stop at Content-Length: a server that keeps the connection
    open times out here as it fails keepalived's check. ``timeout`` applies to connect,
    TLS handshake and each read, as keepalived's connect_timeout does.
    """
    where = f"[{server}]:{port}" if ":" in server else f"{server}:{port}"
    family, _, _, _, sockaddr = socket.getaddrinfo(
        server, port, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICHOST)[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        if fwmark is not None:
            try:
                sock.setsockopt(socket.SOL_SOCKET, getattr(socket, "SO_MARK", 36), fwmark)
            except OSError as exc:
                raise GenhashError(f"cannot set fwmark {fwmark}: {exc.strerror or exc}") from None
        try:
            sock.connect(sockaddr)
        except ConnectionRefusedError:
            raise GenhashError(f"connection refused by {where}") from None
        except TimeoutError:
            raise GenhashError(f"timeout connecting to {where} after {timeout:g}s") from None
        except OSError as exc:
            raise GenhashError(f"cannot connect to {where}: {exc.strerror or exc}") from None
        if use_ssl:
            # keepalived does not verify the certificate; SNI lets vhost-based TLS servers
            # pick the right certificate (Python sends no SNI for an IP address).
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            try:
                sock = ctx.wrap_socket(sock, server_hostname=sni or server.split("%", 1)[0])
            except TimeoutError:
                raise GenhashError(f"timeout during TLS handshake with {where}") from None
            except (ssl.SSLError, OSError) as exc:
                reason = getattr(exc, "reason", None) or exc.strerror or exc
                raise GenhashError(f"TLS handshake with {where} failed: {reason}") from None
        buf = bytearray()
        try:
            sock.sendall(request)
            while chunk := sock.recv(65536):
                buf += chunk
                if len(buf) >= 5 and not buf.startswith(b"HTTP/"):
                    break  # not HTTP (e.g. an SMTP banner): no point waiting for EOF
        except TimeoutError:
            raise GenhashError(f"timeout reading reply from {where} after {timeout:g}s "
                               f"({len(buf)} bytes received, connection not closed)") from None
        except OSError as exc:
            raise GenhashError(f"read error from {where}: {exc.strerror or exc}") from None
        return bytes(buf)
    finally:
        sock.close()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="genhash", description="Print the digest of a web page as keepalived's "
        "HTTP_GET/SSL_GET checker computes it (body after the headers, capped at "
        "Content-Length). The last line of output is the bare hex digest.")
    p.add_argument("-s", "--server", required=True, help="server IP address (IPv4 or IPv6)")
    p.add_argument("-p", "--port", required=True, help="server TCP port")
    p.add_argument("-u", "--url", required=True, help="path to GET, e.g. /index.html")
    p.add_argument("-S", "--use-ssl", action="store_true",
                   help="use TLS (certificate not verified)")
    p.add_argument("-I", "--use-sni", action="store_true",
                   help="accepted for keepalived compatibility; SNI is always sent with -V")
    p.add_argument("-V", "--use-virtualhost", metavar="NAME", help="Host header and TLS SNI")
    p.add_argument("-P", "--protocol", default="1.0", metavar="1.0|1.0C|1.1",
                   help="1.0 (default), 1.0C = 1.0 with 'Connection: close', "
                        "1.1 (always with 'Connection: close')")
    p.add_argument("-t", "--timeout", default=str(DEFAULT_TIMEOUT), metavar="SECONDS",
                   help=f"connect/read timeout (default {DEFAULT_TIMEOUT:g})")
    p.add_argument("-H", "--hash", default="md5", metavar="md5|sha1",
                   help="digest algorithm (default md5; keepalived's checker only uses md5)")
    p.add_argument("-m", "--fwmark", metavar="MARK", help="set this firewall mark on the socket")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="show the request, reply headers and body dump")
    return p


def _run(args: argparse.Namespace) -> int:
    try:
        ipaddress.ip_address(args.server.split("%", 1)[0])
    except ValueError:
        raise GenhashError(f"server should be an IP, not {args.server}") from None
    if not args.port.isdecimal() or not 0 < int(args.port) < 65536:
        raise GenhashError(f"invalid port number '{args.port}'")
    if args.protocol not in PROTOCOLS:
        raise GenhashError(f"invalid HTTP protocol version '{args.protocol}'")
    try:
        timeout = float(args.timeout)
    except ValueError:
        timeout = 0.0
    if not 0 < timeout < float("inf"):
        raise GenhashError(f"invalid timeout '{args.timeout}'")
    algorithm = args.hash.lower()
    if algorithm not in HASHES:
        raise GenhashError(f"unknown hash algorithm: {args.hash} (use md5 or sha1)")
    if args.fwmark is not None and not args.fwmark.isdecimal():
        raise GenhashError(f"invalid fwmark '{args.fwmark}'")
    port, vhost = int(args.port), args.use_virtualhost
    request = build_request(args.url, args.server, port, vhost, args.protocol)
    out = sys.stdout
    if args.verbose:
        out.write(_DELIM.format("       HTTP Request       ") + "\n")
        out.write(request.decode("latin-1").replace("\r\n", "\n"))
    started = time.monotonic()
    raw = fetch(args.server, port, request, use_ssl=args.use_ssl, sni=vhost, timeout=timeout,
                fwmark=None if args.fwmark is None else int(args.fwmark))
    elapsed_us = int((time.monotonic() - started) * 1e6)
    resp = parse_response(raw)
    digest = compute_digest(resp.body, algorithm)
    if args.verbose:
        out.write(_DELIM.format("    HTTP Header Buffer    ") + "\n" + hexdump(resp.header_block))
        out.write(_DELIM.format(" HTTP Header Ascii Buffer ") + "\n")
        out.write(resp.header_block.decode("latin-1").replace("\r\n", "\n"))
        out.write(_DELIM.format("        HTML Buffer        ") + "\n" + hexdump(resp.body))
        out.write("\n" + _DELIM.format("    HTML hash resulting    ") + "\n")
        out.write(hexdump(bytes.fromhex(digest)))
        out.write(_DELIM.format(" HTML hash final resulting ") + "\n")
        out.write(f"{HASHES[algorithm]} = {digest}\n")
        out.write(f"Global response time for [{args.url}] = {elapsed_us} usecs\n")
    if resp.content_length is not None and resp.content_length != resp.received_body_len:
        print(f"genhash: warning: Content-Length ({resp.content_length}) does not match "
              f"received body bytes ({resp.received_body_len})", file=sys.stderr)
    if not 200 <= resp.status_code <= 299:
        print(f"genhash: warning: HTTP status {resp.status_code} (HTTP_GET expects 2xx "
              "unless status_code is configured)", file=sys.stderr)
    out.write(digest + "\n")  # contract: the bare hex digest is the last line of stdout
    out.flush()
    return 0


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # argparse exits on -h and usage errors; we return instead
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    try:
        return _run(args)
    except GenhashError as exc:
        print(f"genhash: {exc}", file=sys.stderr)
        return 1


def run() -> None:
    """Console-script entry point (``genhash``)."""
    sys.exit(main())


if __name__ == "__main__":
    run()
