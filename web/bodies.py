"""Large response bodies (/metrics, /api/v1/state) written without holding the loop:
/api/v1/state as JSON streamed one batch of virtual servers at a time, both gzipped when the
client accepts it (Prometheus sends ``Accept-Encoding: gzip``).

Why here: at 10,000 real servers /api/v1/state is 4 MB of JSON and /metrics 29 MB of text.
Encoded in one piece the JSON held the loop for its whole encoding; streamed, the loop runs
between batches (hub.Slicer) and the first bytes leave before the last are encoded. gzip
is level 1: on this text it is several times smaller for a fraction of level 6's CPU, and
its header carries no time (mtime 0), so the same body gives the same bytes.
"""

from __future__ import annotations

import zlib
from typing import Any, Callable, Iterable, Iterator

from director import hub

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


def state_chunks(head: dict[str, Any], servers: Iterable[Any], tail: dict[str, Any],
                 dumps: Callable[[Any], str]) -> Iterator[bytes]:
    """The JSON of ``{**head, "virtual_servers": [...], **tail}`` and a newline (byte for
    byte what Flask's jsonify sends of that dict), each virtual server encoded as its turn comes: never the
    whole 4 MB document as dicts at once."""
    slicer = hub.Slicer(0.005)
    opening = dumps(head)
    pending = [opening[:-1] + ("," if head else "") + '"virtual_servers":[']
    size, first = len(pending[0]), True
    for server in servers:
        text = dumps(server.as_json())
        pending.append(text if first else "," + text)
        size += len(text) + 1
        first = False
        if size >= BATCH:
            yield "".join(pending).encode()
            pending, size = [], 0
            slicer()
    closing = dumps(tail)
    pending.append("]" + ("," + closing[1:] if tail else "}") + "\n")
    yield "".join(pending).encode()
