"""Large response bodies (/metrics, /api/v1/state) written without holding the loop:
/api/v1/state as JSON streamed one batch of virtual servers at a time, both gzipped when the
client accepts it (Prometheus sends ``Accept-Encoding: gzip``).

Why here: at 10,000 real servers /api/v1/state is 4 MB of JSON and /metrics 29 MB of text.
Encoded in one piece the JSON held the loop for its whole encoding; streamed, the loop runs
between batches (hub.Slicer) and the first bytes leave before the last are encoded. gzip
is level 1: on this text it is several times smaller for a fraction of level 6's CPU, and
its header carries no time (mtime 0), so the same body gives the same bytes.

The JSON of each virtual and real server is kept between requests on its view
(``FragmentCache``): the daemon gives the same view object again while nothing it shows
changed (director/lb/service.py, director/check/service.py), and a view is frozen, so its
encoding cannot go stale. A request encodes only the views that are new and joins the rest.
"""

from __future__ import annotations

import json
import zlib
from typing import Any, Callable, Iterable, Iterator

from director import hub
from director.state import keep_encoded

GZIP_LEVEL = 1
GZIP_MIN = 1024             # bytes: smaller bodies go as they are
SLICE = 1 << 20             # bytes of /metrics compressed between two breaths
BATCH = 64 * 1024           # characters of JSON per streamed chunk


def accepts_gzip(accept_encodings: Any) -> bool:
    """werkzeug's parsed Accept-Encoding: gzip with a quality above 0."""
    return accept_encodings["gzip"] > 0


def gzip_bytes(body: bytes) -> bytes:
    """The whole body gzipped, in slices that let the loop run between them."""
    slicer = hub.Slicer(0.005)
    compressor = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    out = []
    view = memoryview(body)
    for start in range(0, len(body), SLICE):
        out.append(compressor.compress(view[start:start + SLICE]))
        slicer()
    out.append(compressor.flush())
    return b"".join(out)


def gzip_stream(chunks: Iterable[bytes]) -> Iterator[bytes]:
    compressor = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    for chunk in chunks:
        packed = compressor.compress(chunk)
        if packed:
            yield packed
    yield compressor.flush()


class _Unusual(Exception):
    """A value the short encoder leaves to the JSON module (a NaN, a type of its own)."""


_string = json.encoder.encode_basestring_ascii      # what json.dumps uses (ensure_ascii)
_int = int.__repr__
_float = float.__repr__


def _scalar(value: Any) -> str:
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    kind = type(value)
    if kind is int:
        return _int(value)
    if kind is str:
        return _string(value)
    if kind is float and value - value == 0.0:          # finite (json writes NaN, Infinity)
        return _float(value)
    raise _Unusual


def real_server_text(view: Any) -> str | None:
    """``dumps(view.as_json())`` for the usual real server (json.dumps compact, ASCII), in one
    format string: the JSON module spends most of its 35-45 us a real server here building
    its encoder and walking the nested dicts, this about 7 us. None for an unusual one (a
    drain, a ramp, an agent, an override, a value json writes its own way): the caller uses
    the JSON module. tests/unit/test_web_bodies.py holds it to as_json(), key for key."""
    check, counters = view.check, view.counters
    if view.drain is not None or view.ramp is not None:
        return None
    try:
        if check is None:
            checked = ('"up":null,"drained":false,"checker":' + _scalar(view.checker)
                       + ',"last_check":null,"checks":null')
        else:
            if check.agent is not None or check.overrides:
                return None
            last = check.last_check
            if last is None:
                last_text = "null"
            else:
                last_text = (f'{{"ok":{_scalar(last.ok)},"duration_seconds":'
                             f'{_scalar(last.duration_seconds)},"error":{_scalar(last.error)},'
                             f'"at":{_scalar(last.at)}'
                             + ("}" if last.cert_not_after is None else
                                f',"cert_not_after":{_scalar(last.cert_not_after)}}}'))
            checked = (f'"up":{_scalar(check.up)},"drained":{_scalar(check.drained)},'
                       f'"checker":{_scalar(view.checker)},"last_check":{last_text},'
                       f'"checks":{{"ok":{_scalar(check.ok)},"failed":{_scalar(check.failed)}}}')
        traffic = "null" if counters is None else (
            f'{{"connections":{_scalar(counters.connections)},'
            f'"packets_in":{_scalar(counters.packets_in)},'
            f'"packets_out":{_scalar(counters.packets_out)},'
            f'"bytes_in":{_scalar(counters.bytes_in)},"bytes_out":{_scalar(counters.bytes_out)}}}')
        return (f'{{"name":{_scalar(view.name)},"address":{_scalar(view.address)},'
                f'"port":{_scalar(view.port)},"weight":{_scalar(view.weight)},'
                f'"desired_weight":{_scalar(view.desired_weight)},'
                f'"configured_weight":{_scalar(view.configured_weight)},{checked},'
                f'"counters":{traffic},"active_connections":{_scalar(view.active_connections)},'
                f'"inactive_connections":{_scalar(view.inactive_connections)},"drain":null,'
                f'"agent":null,"ramp":null,"maintenance":false,"weight_override":null,'
                f'"overrides":{{}}}}')
    except _Unusual:
        return None


class FragmentCache:
    """How an app encodes virtual and real servers: the JSON of each is kept on its view
    (``json_text``, director/state.py's ENCODED), so a view that comes again gives its bytes
    at once (a frozen view's JSON cannot change) and a new one is encoded once. Nothing is
    held here: a view the daemon has replaced goes with what was made of it."""

    def __init__(self, dumps: Callable[[Any], str], short: bool = True) -> None:
        self.dumps = dumps                      # the app's, compact: the same bytes as before
        # real_server_text for the usual real server, and the bytes kept on the views: only
        # where ``dumps`` is json.dumps compact and ASCII (Flask's default provider, as
        # create_app sets it; every such app writes the same bytes of a view)
        self.short = short

    def walk(self) -> FragmentWalk:
        return FragmentWalk(self)


class FragmentWalk:
    """One request's use of a FragmentCache: counts what it encoded (the tests)."""

    def __init__(self, cache: FragmentCache) -> None:
        self.cache = cache
        self.encoded = 0                        # views encoded by this walk

    def virtual_server(self, view: Any) -> bytes:
        """``dumps(view.as_json())``, byte for byte: its head, then its real servers."""
        text = view.json_text
        short = self.cache.short
        if text is not None and short:
            return text
        dumps = self.cache.dumps
        texts = []
        for real in view.real_servers:
            if short:
                found = real.json_text
                if found is not None:
                    texts.append(found)
                    continue
                found = real_server_text(real)
                found = (found if found is not None else dumps(real.as_json())).encode()
                keep_encoded(real, "json_text", found)
            else:
                found = dumps(real.as_json()).encode()
            texts.append(found)
            self.encoded += 1
        head = dumps(view.head_json()).encode()
        text = b"".join((head[:-1], b',"real_servers":[', b",".join(texts), b"]}"))
        self.encoded += 1
        if short:
            keep_encoded(view, "json_text", text)
        return text


def state_chunks(head: dict[str, Any], servers: Iterable[Any], tail: dict[str, Any],
                 dumps: Callable[[Any], str], walk: FragmentWalk | None = None
                 ) -> Iterator[bytes]:
    """The JSON of ``{**head, "virtual_servers": [...], **tail}`` and a newline (byte for
    byte what Flask's jsonify sends of that dict), each virtual server encoded as its turn
    comes (or found on its view, through ``walk``): never the whole 4 MB document as dicts
    at once."""
    slicer = hub.Slicer(0.005)
    opening = dumps(head)
    pending = [(opening[:-1] + ("," if head else "") + '"virtual_servers":[').encode()]
    size, first = len(pending[0]), True
    for server in servers:
        text = walk.virtual_server(server) if walk is not None \
            else dumps(server.as_json()).encode()
        if not first:
            pending.append(b",")
        pending.append(text)
        size += len(text) + 1
        first = False
        if size >= BATCH:
            yield b"".join(pending)
            pending, size = [], 0
            slicer()
    closing = dumps(tail)
    pending.append(("]" + ("," + closing[1:] if tail else "}") + "\n").encode())
    yield b"".join(pending)
