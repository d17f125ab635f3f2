"""The operator overrides follow the cluster: each director exchanges its override entries
(director/overrides.py) with the peer directors the file names (``override_peers``, a
director extension), so that a drain done on the MASTER's dashboard is already in its
BACKUP's kernel when the BACKUP takes over, and a director that was down learns on its
return what was decided meanwhile (Seesaw's sync of overrides does the same).

One exchange is a POST of all our entries to the peer's ``/api/v1/overrides/sync``; the
peer merges them and answers with all of its own, which we merge: push and pull at once.
One greenlet (supervised) does it for every peer on every local change (push) and every
SYNC_INTERVAL seconds (anti-entropy: the catch-up after a peer was down or cut off); a peer
that fails is tried again after a pause that doubles up to BACKOFF_MAX, its failures
counted and its last error kept (the API and the metrics show both).

Authentication: both bodies carry ``X-Director-Signature: sha256=HMAC(admin token, body)``,
the admin token (--admin-token-file) being the cluster's shared secret. A message that is
not signed so, does not parse, or is too large is dropped and counted by reason; the
connection itself may be HTTPS (verified against override_peers_ca, else the system's
CAs). A replayed message changes nothing: an entry never replaces a newer one.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import ssl
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from . import hub
from .log import event
from .overrides import BadEntry, Entry, parse_entries

log = logging.getLogger("director")

PATH = "/api/v1/overrides/sync"
SIGNATURE_HEADER = "X-Director-Signature"
SYNC_INTERVAL = 10.0        # seconds between two anti-entropy exchanges with a healthy peer
TIMEOUT = 5.0               # seconds an exchange may take
BACKOFF_FIRST = 1.0
BACKOFF_MAX = 60.0
MAX_MESSAGE = 8 * 1024 * 1024      # bytes of a peer's message (100,000 entries fit)
DROP_REASONS = ("unauthenticated", "malformed", "too_large", "bad_entry")


def sign(token: str, body: bytes) -> str:
    return "sha256=" + hmac.new(token.encode(), body, hashlib.sha256).hexdigest()


def verify(token: str, body: bytes, presented: str | None) -> bool:
    return bool(presented) and hmac.compare_digest(sign(token, body).encode(),
                                                   presented.encode())


def message(origin: str, entries: list[list]) -> bytes:
    return json.dumps({"origin": origin, "entries": entries},
                      separators=(",", ":")).encode()


def parse_message(body: bytes) -> tuple[str, list[Entry], int]:
    """(the sender's origin, its entries, how many entries were bad); BadEntry when the
    message as a whole is not one."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        raise BadEntry("not JSON") from None
    if not isinstance(data, dict) or not isinstance(data.get("origin"), str):
        raise BadEntry('expected {"origin": NAME, "entries": [...]}')
    entries, bad = parse_entries(data.get("entries"))
    return data["origin"][:200], entries, bad


@dataclass(frozen=True, slots=True)
class PeerView:
    url: str
    last_sync: float | None         # epoch seconds of the last exchange that worked
    last_error: str | None          # of the last one that failed, None once one works
    failures: int                   # exchanges that failed, since the start
    syncs: int

    def as_json(self) -> dict[str, Any]:
        return {"url": self.url, "last_sync": self.last_sync, "last_error": self.last_error,
                "failures": self.failures, "syncs": self.syncs}


@dataclass(frozen=True, slots=True)
class OverridesView:
    """/api/v1/state's ``overrides``: the store's size and the peers' exchanges."""

    entries: int
    active: int
    peers: tuple[PeerView, ...] = ()
    dropped: Mapping[str, int] = field(default_factory=dict)    # reason -> peer messages

    def as_json(self) -> dict[str, Any]:
        return {"entries": self.entries, "active": self.active,
                "peers": [peer.as_json() for peer in self.peers],
                "dropped": dict(self.dropped)}


@dataclass
class Peer:
    """A director that overrides are exchanged with, and how the last exchange went."""

    url: str
    last_sync: float | None = None
    last_error: str | None = None
    failures: int = 0
    syncs: int = 0
    due: float = 0.0                # monotonic: the next exchange
    backoff: float = BACKOFF_FIRST

    def view(self) -> PeerView:
        return PeerView(self.url, self.last_sync, self.last_error, self.failures, self.syncs)


class PeerSync:
    """``entries()`` returns ours (as lists), ``merge(entries, bad, peer)`` takes a peer's
    on the daemon's main greenlet."""

    def __init__(self, origin: str, token: str | None, entries: Callable[[], list[list]],
                 merge: Callable[[list[Entry], int, str], Any]) -> None:
        self.origin = origin
        self.token = token
        self.entries = entries
        self.merge = merge
        self.peers: dict[str, Peer] = {}
        self.dropped = {reason: 0 for reason in DROP_REASONS}
        self.wake = hub.Event()
        self.greenlet: Any = None
        self.tls: ssl.SSLContext | None = None      # None: the system's CAs
        self.tls_error: str | None = None           # override_peers_ca could not be read

    def configure(self, urls: tuple[str, ...], ca: str | None = None) -> None:
        """The peers of the file (at start and on each reload): kept ones keep their
        counters."""
        self.peers = {url: self.peers.get(url) or Peer(url) for url in urls}
        self.tls, self.tls_error = None, None
        if ca is not None:
            try:
                self.tls = ssl.create_default_context(cafile=ca)
            except (OSError, ssl.SSLError) as exc:
                self.tls_error = f"override_peers_ca {ca}: {exc}"
                event(log, "overrides.peers_ca_unreadable", logging.ERROR, file=ca, error=exc)
        if urls and self.token is None:
            event(log, "overrides.peers_off", logging.WARNING,
                  note="override_peers needs --admin-token-file (the shared secret)")
        elif urls and self.greenlet is None:
            self.greenlet = hub.supervise(self._run, name="override peers")
        self.wake.set()

    def stop(self) -> None:
        if self.greenlet is not None:
            self.greenlet.kill(block=False)
            self.greenlet = None

    def push(self, _entries: Any = None) -> None:
        """A local change (or one learned): tell the peers now."""
        self.wake.set()

    def dropped_entries(self, bad: int) -> None:
        self.dropped["bad_entry"] += bad

    # -- outgoing ---------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            now = time.monotonic()
            wait = min((peer.due for peer in self.peers.values()), default=now + SYNC_INTERVAL)
            self.wake.wait(timeout=max(0.0, wait - now))
            pushing = self.wake.is_set()
            self.wake.clear()
            now = time.monotonic()
            for peer in list(self.peers.values()):
                # a push goes to every peer that is not in its backoff after failures
                if now >= peer.due or (pushing and peer.last_error is None):
                    self._exchange(peer)

    def _exchange(self, peer: Peer) -> None:
        import urllib.error          # with the first exchange: not on the way to the first
        import urllib.request        # advert (http.client, the email package)
        body = message(self.origin, self.entries())
        request = urllib.request.Request(
            peer.url + PATH, data=body, method="POST",
            headers={"Content-Type": "application/json",
                     SIGNATURE_HEADER: sign(self.token, body)})
        try:
            if self.tls_error is not None and peer.url.startswith("https:"):
                raise ValueError(self.tls_error)
            with urllib.request.urlopen(request, timeout=TIMEOUT, context=self.tls) as response:
                reply = response.read(MAX_MESSAGE + 1)
                signature = response.headers.get(SIGNATURE_HEADER)
            if len(reply) > MAX_MESSAGE:
                self.dropped["too_large"] += 1
                raise ValueError(f"its reply is larger than {MAX_MESSAGE} bytes")
            if not verify(self.token, reply, signature):
                self.dropped["unauthenticated"] += 1
                raise ValueError("its reply is not signed with our admin token")
            try:
                origin, entries, bad = parse_message(reply)
            except BadEntry as exc:
                self.dropped["malformed"] += 1
                raise ValueError(f"its reply: {exc}") from None
            self.merge(entries, bad, peer.url)
        except urllib.error.HTTPError as exc:
            self._failed(peer, f"HTTP {exc.code}: {exc.read(300).decode(errors='replace')}")
        except (OSError, ValueError, hub.Timeout) as exc:
            self._failed(peer, str(exc) or repr(exc))
        else:
            if peer.last_error is not None:
                event(log, "overrides.peer_back", peer=peer.url, origin=origin)
            peer.last_sync, peer.last_error = time.time(), None
            peer.syncs += 1
            peer.backoff = BACKOFF_FIRST
            peer.due = time.monotonic() + SYNC_INTERVAL

    def _failed(self, peer: Peer, error: str) -> None:
        error = error[:300]
        if peer.last_error != error:
            event(log, "overrides.peer_failed", logging.WARNING, peer=peer.url, error=error,
                  retry_in=peer.backoff)
        peer.failures += 1
        peer.last_error = error
        peer.due = time.monotonic() + peer.backoff
        peer.backoff = min(peer.backoff * 2, BACKOFF_MAX)

    # -- incoming (web/admin.py, on the request's greenlet) ---------------------------------

    def receive(self, body: bytes, signature: str | None, peer: str,
                command: Callable[..., Any]) -> tuple[int, bytes, dict[str, str]]:
        """A peer's message: (HTTP status, body, headers). Forged, malformed or too large:
        dropped and counted, before the main greenlet sees it."""
        if self.token is None:
            return 403, b'{"error":"no admin token: override sync is off"}', {}
        if len(body) > MAX_MESSAGE:
            self.dropped["too_large"] += 1
            return 413, b'{"error":"too large"}', {}
        if not verify(self.token, body, signature):
            self._drop("unauthenticated", peer)
            return 401, b'{"error":"not signed with the admin token"}', {}
        try:
            origin, entries, bad = parse_message(body)
        except BadEntry as exc:
            self._drop("malformed", peer, exc)
            return 400, json.dumps({"error": str(exc)}).encode(), {}
        reply = command("override_sync", entries=entries, bad=bad, peer=f"{origin}@{peer}")
        out = message(self.origin, reply["entries"])
        return 200, out, {"Content-Type": "application/json",
                          SIGNATURE_HEADER: sign(self.token, out)}

    def _drop(self, reason: str, peer: str, error: Any = "") -> None:
        """Counted always; logged the 1st, 2nd, 4th, 8th... time: a flood of forged
        messages must not become a flood of log lines."""
        self.dropped[reason] += 1
        count = self.dropped[reason]
        if count & (count - 1) == 0:
            event(log, "overrides.peer_dropped", logging.WARNING, peer=peer, reason=reason,
                  error=error, dropped=count)

    def view(self, store: Any) -> OverridesView:
        return OverridesView(len(store.entries),
                             sum(1 for entry in store.entries.values() if entry.active),
                             tuple(peer.view() for peer in self.peers.values()),
                             dict(self.dropped))
