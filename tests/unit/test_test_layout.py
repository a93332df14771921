"""The suite's own layout: test modules are collected by basename (tests/ holds no packages), so two
modules of one name in different folders stop the whole run ("import file mismatch")."""

from __future__ import annotations

from collections import Counter
from pathlib import Path


def test_every_test_module_has_a_basename_of_its_own():
    root = Path(__file__).resolve().parents[1]
    names = Counter(p.name for p in root.rglob("test_*.py"))
    assert not [n for n, c in names.items() if c > 1], "rename one of each: " + ", ".join(
        str(p.relative_to(root)) for p in sorted(root.rglob("test_*.py")) if names[p.name] > 1)
