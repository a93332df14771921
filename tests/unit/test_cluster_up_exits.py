"""`vecdb cluster up` says how a role that exited before it was ready ended: its log may hold nothing
(killed from outside, a crash in native code), so the exit status or the signal is the clue."""

import os
import signal
import subprocess
import sys

import pytest

from vecdb import localcluster


def _spawn(tmp_path, code: str) -> localcluster.Proc:
    log = tmp_path / "role.log"
    log.write_bytes(b"--- started\n")
    with open(log, "ab") as f:
        proc = subprocess.Popen([sys.executable, "-c", code], stdout=f, stderr=subprocess.STDOUT)
    proc.returncode = 0  # as _spawn_role leaves it: the command reaps it itself (os.waitpid)
    return localcluster._record("querynode", "querynode1", proc, 1, str(log))


@pytest.mark.parametrize(("code", "said"), [
    ("import os, signal; os.kill(os.getpid(), signal.SIGKILL)", "querynode1 exited (killed by SIGKILL) before"),
    ("import sys; sys.exit(3)", "querynode1 exited (exit status 3) before"),
])
def test_a_role_that_exits_before_ready_is_reported_with_how_it_ended(tmp_path, code, said):
    p = _spawn(tmp_path, code)
    with pytest.raises(localcluster.ClusterError) as err:
        localcluster._wait_ready([p], timeout=30)
    assert said in str(err.value) and "--- started" in str(err.value)


def test_how_it_ended_is_silent_for_a_process_that_is_not_a_child_and_none_while_a_child_runs(tmp_path):
    assert localcluster._how_it_ended(1) == ""  # init: never this process's child
    p = _spawn(tmp_path, "import time; time.sleep(30)")
    try:
        assert localcluster._how_it_ended(p.pid) is None
    finally:
        os.kill(p.pid, signal.SIGTERM)
        os.waitpid(p.pid, 0)


def test_a_child_that_runs_on_is_waited_for_whatever_its_command_line_reads(tmp_path):
    """A loaded machine once had `restart` call a role that went on to start "exited before it was ready"
    (its command line unreadable a moment): a child not reaped is still starting, not gone."""
    p = _spawn(tmp_path, "import time; time.sleep(0.5); print('x ready on 1', flush=True); time.sleep(30)")
    p.command = [*p.command, "--not-what-it-runs"]  # running() reads it as another process now
    try:
        assert not localcluster.running(p)
        localcluster._wait_ready([p], timeout=30)
    finally:
        os.kill(p.pid, signal.SIGTERM)
        os.waitpid(p.pid, 0)


def test_a_crash_in_native_code_leaves_the_stacks_in_the_log():
    """What the server commands turn on (vecdb.cli): a segfault writes the Python stacks to stderr."""
    code = "from vecdb import logs; logs.stacks_on_crash(); import ctypes; ctypes.string_at(0)"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert res.returncode == -signal.SIGSEGV
    assert "Fatal Python error: Segmentation fault" in res.stderr and "<string>" in res.stderr, res.stderr
