"""vecdb.logs.stacks_if_slow: a stop that hangs prints where, a quick one prints nothing."""

import subprocess
import sys

SCRIPT = """
import time
from vecdb import logs
with logs.stacks_if_slow({seconds}):
    time.sleep({sleep})
time.sleep({after})
print("stopped")
"""


def _run(seconds: float, sleep: float, after: float = 0.0) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", SCRIPT.format(seconds=seconds, sleep=sleep, after=after)],
                          capture_output=True, text=True, timeout=60)


def test_a_slow_stop_prints_every_thread_s_stack_and_goes_on():
    done = _run(0.2, 1.0)
    assert done.returncode == 0 and done.stdout.strip() == "stopped"
    assert "Timeout (0:00:00.200000)!" in done.stderr and "line 5 in <module>" in done.stderr  # the sleep


def test_a_quick_stop_prints_nothing_and_the_timer_is_off_after_it():
    done = _run(0.3, 0.0, after=0.6)
    assert done.returncode == 0 and done.stdout.strip() == "stopped" and done.stderr == ""
