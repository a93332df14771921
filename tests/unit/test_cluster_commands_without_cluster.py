"""``vecdb cluster status|restart|down`` on a --data-dir where no cluster ever ran: one line saying so and
exit status 1 (``restart`` raised FileNotFoundError making its lock file there, a traceback)."""

from __future__ import annotations

import pytest

from vecdb import localcluster
from vecdb.cli import main


@pytest.mark.parametrize("command", ["status", "down", "restart"])
def test_a_missing_data_dir_is_said_in_one_line(tmp_path, capsys, command):
    data_dir = tmp_path / "cluster-data"
    argv = ["cluster", command, "--data-dir", str(data_dir)] + (["proxy1"] if command == "restart" else [])
    assert main(argv) == 1
    out = capsys.readouterr()
    assert f"{data_dir}" in out.out and "no cluster" in out.out, out
    assert "Traceback" not in out.err
    assert not data_dir.exists()  # nothing made there


def test_restart_with_the_directory_but_no_state_file(tmp_path):
    lines: list[str] = []
    assert localcluster.restart(str(tmp_path), ["proxy1"], out=lines.append) == 1
    assert lines == [f"no cluster running from {tmp_path} (no {localcluster.STATE_FILE})"]
