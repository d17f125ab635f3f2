"""Prometheus metrics over snapshots (see collector.py)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from .collector import DirectorCollector

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def registry_for(take_snapshot, version: str = "") -> CollectorRegistry:
    """A registry of its own (not the global one: tests run several daemons' apps)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DirectorCollector(take_snapshot, version))
    return registry


def render(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)
