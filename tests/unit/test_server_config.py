"""The proxy's handler thread count: explicit when configured, else derived from the cores."""

from __future__ import annotations

import os

from vecdb.config import Settings
from vecdb.proxy.server import handler_threads


def test_handler_threads_default_scales_with_cores_and_explicit_value_wins(monkeypatch):
    assert Settings().proxy.workers == 0  # auto
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    assert handler_threads(0) == 4
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)))
    assert handler_threads(0) == 32
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0})
    assert handler_threads(0) == 4
    assert handler_threads(3) == 3
