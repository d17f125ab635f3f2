"""Prometheus metrics over the daemon's State (see collector.py)."""

from __future__ import annotations

from typing import Callable

from prometheus_client import CollectorRegistry, generate_latest

from director.state import State

from .collector import LabelCache, SnapshotCollector, per_server_text

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Exposition:
    """``render()``: the text exposition of one fresh State (``take_snapshot``: the
    daemon's ``snapshot``)."""

    def __init__(self, take_snapshot: Callable[..., State], version: str = "") -> None:
        self.take_snapshot = take_snapshot
        self.version = version
        self.labels = LabelCache()

    def render(self) -> bytes:
        snapshot = self.take_snapshot(with_jobs=True)
        # A registry of its own per scrape (not the global one: several apps in one process
        # in the tests, and the collector holds this scrape's snapshot).
        registry = CollectorRegistry(auto_describe=False)
        registry.register(SnapshotCollector(snapshot, self.version))
        return generate_latest(registry) + per_server_text(snapshot, self.labels).encode()
