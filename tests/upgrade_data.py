"""Upgrade-in-place fixtures: a standalone data directory written by an older vecdb tree, tarred, and
unpacked again for this one (``tests/e2e/test_upgrade_*.py``)."""

from __future__ import annotations

import io
import os
import shutil
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path

from tests.conftest import VecdbProcess, free_port, start_vecdb


def start_auth_standalone(data: Path, port: int, env: dict | None = None) -> VecdbProcess:
    """A standalone server with authorization on, over the data directory ``data``."""
    return start_vecdb("standalone", "--port", str(port), "--http-port", "0", "--auth", data_dir=data, env=env)


def unpack(tarball: Path, dest: Path) -> Path:
    """A fixture's data directory unpacked at ``dest``."""
    with tarfile.open(tarball) as tar:
        tar.extractall(dest, filter="data")
    return dest


def make_fixture(old_tree: str, out: str, build: Callable[[str], None]) -> None:
    """Run the tree at ``old_tree`` as an authorizing standalone server, ``build(uri)`` against it, stop it
    cleanly and tar its data directory (logs and crash records left out) to ``out``."""
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)  # the child's ``-m vecdb`` looks in its working directory before PYTHONPATH
        data, port = Path(tmp) / "data", free_port()
        proc = start_auth_standalone(data, port, env={"PYTHONPATH": old_tree})
        try:
            build(f"http://127.0.0.1:{port}")
        finally:
            assert proc.stop() == 0
        for junk in [*data.glob("*.log"), data / "crashes"]:
            shutil.rmtree(junk) if junk.is_dir() else junk.unlink()
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz") as tar:
            tar.add(data, arcname=".")
        Path(out).write_bytes(buf.getvalue())
