"""vecdb.signals: SIGINT/SIGTERM run their callbacks in a thread of their own, never inside a signal
handler. A handler that sets an Event (what every vecdb process did) can interrupt the main thread
inside that Event's own lock and wait for it for ever: a burst of SIGTERMs at a process whose main
thread waits on the Event hung 3 such processes in 10 here. Each process below gets 300 SIGTERMs
while its main thread takes the Event's lock in a loop, and must stop."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap

CHILD = textwrap.dedent("""
    import threading, time
    from vecdb import signals

    where = []
    signals.on_stop_signal(lambda: where.append(threading.current_thread().name))
    stopped = signals.stop_event()
    print("ready", flush=True)
    while not stopped.wait(0.0001):  # in and out of the Event's lock all the time
        pass
    t0 = time.monotonic()
    while time.monotonic() - t0 < 0.5:  # a stop that takes a while, more signals coming
        stopped.set()
        stopped.wait(0.0001)
    print("stopped in", sorted(set(where)), flush=True)
""")


def test_a_burst_of_sigterm_stops_the_process_and_never_runs_code_in_a_handler():
    for _ in range(5):
        p = subprocess.Popen([sys.executable, "-c", CHILD], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True)
        try:
            assert p.stdout is not None and p.stdout.readline().strip() == "ready"
            for _ in range(300):
                p.send_signal(signal.SIGTERM)
            out, _ = p.communicate(timeout=30)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
        assert p.returncode == 0, out
        assert out.strip() == "stopped in ['stop-signals']", out


def test_sigint_is_a_stop_signal_too():
    p = subprocess.Popen([sys.executable, "-c", CHILD], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert p.stdout is not None and p.stdout.readline().strip() == "ready"
        p.send_signal(signal.SIGINT)  # no KeyboardInterrupt: the default handler is replaced
        out, _ = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 0 and out.strip() == "stopped in ['stop-signals']", out
