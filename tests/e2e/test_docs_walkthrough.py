"""A newcomer's walk through README.md and docs/*.md: the repository files they name exist (a test
module renamed left docs/cluster.md and docs/sparse.md pointing at files that were gone), the README's
quick start prints what its comments say, and docs/import.md's ``utility.do_bulk_insert`` example runs
on the quick start's collection (its NumPy example named a ``vec.npy`` the collection has no field for)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import start_standalone, wait_until

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# Named in the docs but not files of this repository: an object store key, a cache made at run time,
# Milvus's own design document.
NOT_REPO_FILES = {"vecdb/imports/rows.json", "bench/.cache", "docs/design_docs/20251114-snapshot_design.md"}


def _block(doc: Path, first_line: str) -> str:
    """The fenced ```python block of ``doc`` whose first line is ``first_line``."""
    for block in re.findall(r"```python\n(.*?)```", doc.read_text(), re.S):
        if block.startswith(first_line):
            return block
    raise AssertionError(f"no python block starting {first_line!r} in {doc.name}")


def test_every_repository_file_the_docs_name_exists():
    tests = {p.name for p in (ROOT / "tests").rglob("*.py")}
    missing = []
    for doc in DOCS:
        text = doc.read_text()
        for link in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
            if not link.startswith("http") and not (doc.parent / link).exists():
                missing.append(f"{doc.name}: link {link}")
        for path in re.findall(r"`((?:vecdb|tests|bench|deploy|docs|proto)/[A-Za-z0-9_./-]+)`", text):
            path = path.rstrip(".")
            if "*" not in path and path not in NOT_REPO_FILES and not (ROOT / path).exists():
                missing.append(f"{doc.name}: {path}")
        missing += [f"{doc.name}: {name}" for name in re.findall(r"\b(test_\w+\.py)\b", text) if name not in tests]
    assert missing == []


@pytest.fixture
def server(tmp_path):
    node = start_standalone(tmp_path / "data")
    try:
        yield node, tmp_path / "data"
    finally:
        node.stop()


def test_the_readme_quick_start_prints_what_it_says(server):
    node, _ = server
    code = _block(ROOT / "README.md", "from pymilvus import MilvusClient").replace(
        "127.0.0.1:19530", f"127.0.0.1:{node.settings.proxy.port}")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True).stdout
    hits, count = out.splitlines()[:2]
    assert [int(i) for i in re.findall(r"'id': (\d+)", hits)] == [3, 6, 9]  # "ids 3, 6, 9", best first
    assert "'count(*)': 5" in count


def test_the_import_example_runs_on_the_quick_start_collection(server):
    from pymilvus import MilvusClient, connections, utility

    node, data_dir = server
    uri = f"http://127.0.0.1:{node.settings.proxy.port}"
    MilvusClient(uri).create_collection("docs", dimension=4)  # the README's quick start collection
    imports = data_dir / "objects" / "imports"
    (imports / "1").mkdir(parents=True)
    rows = [{"id": i, "vector": [i, 0.5, 0.1, 0.0], "tag": f"t{i % 3}"} for i in range(100)]
    (imports / "rows.json").write_text(json.dumps({"rows": rows}))
    np.save(imports / "1" / "id.npy", np.arange(100, 110, dtype=np.int64))
    np.save(imports / "1" / "vector.npy", np.ones((10, 4), dtype=np.float32))

    code = _block(ROOT / "docs" / "import.md", "from pymilvus import connections, utility")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pymilvus 3.0 flags the ORM-style utility functions
        try:
            exec(compile(code.replace("127.0.0.1:19530", uri.removeprefix("http://")), "docs/import.md", "exec"), {})

            def states():
                return sorted((t.state_name, t.row_count, t.failed_reason)
                              for t in utility.list_bulk_insert_tasks(collection_name="docs"))
            wait_until(lambda: all(s[0] in ("Completed", "Failed") for s in states()), 60, "imports not done")
            assert states() == [("Completed", 10, ""), ("Completed", 100, "")]  # the JSON rows, the NumPy columns
        finally:
            connections.disconnect("default")
    count = MilvusClient(uri).query("docs", filter="", output_fields=["count(*)"], consistency_level="Strong")
    assert count[0]["count(*)"] == 110
