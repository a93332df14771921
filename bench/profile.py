"""Sample a server with py-spy under load and summarise where its time goes.

``record`` runs ``py-spy record --format raw`` (collapsed stacks, one
``frame;frame;... count`` line per distinct stack) against a PID for a fixed
time; ``summarize`` turns that into the top frames by self samples (the frame
on top of the stack) and by inclusive samples (anywhere on the stack), each as
``function (file:line)``. py-spy's idle detection misses waits that block in
C with the GIL released (a thread pool's ``queue.get``, gRPC's completion-queue
poll, ``Condition.wait``, a blocking gRPC call waiting for its reply), so
``summarize`` drops stacks whose top frame is one of those (``IDLE_LEAVES``, a
heuristic) and reports the rest as busy samples.
Native FAISS time shows on the Python line that called it. (``gil=True``, py-spy's
GIL-holder view, caught only ~15% of samples on Python 3.11 here.)

    python -m bench.profile collapsed.txt     # summarise a saved recording
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from collections import Counter


def py_spy_path() -> str | None:
    cand = os.path.join(sysconfig.get_path("scripts"), "py-spy")
    return cand if os.path.exists(cand) else shutil.which("py-spy")


# (function, file suffix) of top frames that are really blocked waits.
IDLE_LEAVES = (
    ("Condition.wait", "threading.py"), ("Event.wait", "threading.py"),
    ("Thread.join", "threading.py"), ("_wait_for_tstate_lock", "threading.py"),
    ("_worker", "concurrent/futures/thread.py"),   # work_queue.get(block=True)
    ("_serve", "grpc/_server.py"),                 # completion_queue.poll()
    ("select", "selectors.py"), ("poll", "selectors.py"),
)


def record(pid: int, seconds: float, out_path: str, rate: int = 200, gil: bool = False) -> subprocess.Popen:
    """Start py-spy on ``pid`` for ``seconds``; returns the process (wait() on it)."""
    exe = py_spy_path()
    if exe is None:
        raise RuntimeError("py-spy is not installed (pip install py-spy)")
    cmd = [exe, "record", "--pid", str(pid), "--duration", str(max(1, int(seconds))),
           "--rate", str(rate), "--format", "raw", "--output", out_path]
    if gil:
        cmd.append("--gil")
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


# Where our own code lives (paths as shortened by _short).
PROJECT_PREFIXES = ("vecdb/", "bench/")

# Frames on every thread's stack: left out of the inclusive ranking.
_PLUMBING = ("Thread._bootstrap", "Thread.run ", "_run_module_as_main", "_run_code")


def _grpc_reply_wait() -> str | None:
    """'file:line' of grpc's blocking unary call where it waits for the reply (``call.next_event()``
    in ``_UnaryUnaryMultiCallable._blocking``, GIL released): a client thread waiting for its server
    there is idle, not busy (the line moves between grpc versions, so it is looked up)."""
    try:
        import inspect

        from grpc import _channel
        lines, first = inspect.getsourcelines(_channel._UnaryUnaryMultiCallable._blocking)
    except (ImportError, AttributeError, OSError, TypeError):
        return None
    for i, line in enumerate(lines):
        if "call.next_event()" in line:
            return f"grpc/_channel.py:{first + i}"
    return None


_REPLY_WAIT = _grpc_reply_wait()


def _is_idle(frame: str) -> bool:
    name, _, loc = frame.partition(" (")
    loc = loc.rstrip(")")
    if _REPLY_WAIT is not None and name.endswith("._blocking") and loc.endswith(_REPLY_WAIT):
        return True
    path = loc.rsplit(":", 1)[0]
    # py-spy names methods Class.method ("EpollSelector.select"), functions by their name
    return any((name == fn or name.endswith("." + fn)) and path.endswith(suffix) for fn, suffix in IDLE_LEAVES)


def _short(frame: str) -> str:
    """'fn (/long/path/pkg/mod.py:12)' -> 'fn (pkg/mod.py:12)'."""
    if "(" not in frame:
        return frame
    name, _, loc = frame.partition(" (")
    loc = loc.rstrip(")")
    for marker in ("/site-packages/", "/work/main/", "/lib/python3."):
        if marker in loc:
            loc = loc.split(marker, 1)[1]
            if marker == "/lib/python3.":
                loc = "stdlib/" + loc.split("/", 1)[-1]
            break
    return f"{name} ({loc})"


def summarize(collapsed_path: str, top: int = 20, drop_idle: bool = True,
              project: tuple = PROJECT_PREFIXES) -> dict:
    """Top frames by self and inclusive samples from a py-spy raw recording;
    ``drop_idle`` leaves out stacks whose top frame is in ``IDLE_LEAVES``.
    ``project`` ranks the deepest frame of our own code (file paths starting
    with one of those prefixes) on each busy stack: the line of ours that was
    running, or that called the library code that was."""
    self_c: Counter = Counter()
    incl_c: Counter = Counter()
    proj_c: Counter = Counter()
    total = 0
    with open(collapsed_path) as f:
        for line in f:
            stack, _, n = line.rstrip("\n").rpartition(" ")
            if not stack or not n.isdigit():
                continue
            n = int(n)
            frames = [_short(x) for x in stack.split(";")]
            # py-spy puts the thread ("process 1:\"python\"" / "thread (0x..)") first.
            frames = [x for x in frames if not x.startswith(("process ", "thread "))]
            if not frames or (drop_idle and _is_idle(frames[-1])):
                continue
            total += n
            self_c[frames[-1]] += n
            for fr in set(frames):
                if not fr.startswith(_PLUMBING):
                    incl_c[fr] += n
            ours = [fr for fr in frames if fr.partition(" (")[2].startswith(project)]
            proj_c[ours[-1] if ours else "(outside project code)"] += n

    def rows(c: Counter):
        return [{"frame": fr, "samples": n, "pct": 100.0 * n / total} for fr, n in c.most_common(top)]

    return {"samples": total, "self": rows(self_c), "inclusive": rows(incl_c), "project": rows(proj_c)}


def format_summary(summary: dict) -> str:
    out = [f"busy samples: {summary['samples']}", "", "top self (where the CPU is):"]
    out += [f"  {r['pct']:5.1f}%  {r['frame']}" for r in summary["self"]]
    out += ["", "top inclusive (on the stack):"]
    out += [f"  {r['pct']:5.1f}%  {r['frame']}" for r in summary["inclusive"]]
    if summary.get("project"):
        out += ["", "deepest project frame (our line running, or calling the library that was):"]
        out += [f"  {r['pct']:5.1f}%  {r['frame']}" for r in summary["project"]]
    return "\n".join(out)


if __name__ == "__main__":
    print(format_summary(summarize(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 25)))
