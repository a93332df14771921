"""Sample a server with py-spy under load and summarise where its time goes.

``record`` runs ``py-spy record --format raw`` (collapsed stacks, one
``frame;frame;... count`` line per distinct stack) against a PID for a fixed
time; ``summarize`` turns that into the top frames by self samples (the frame
on top of the stack: where the CPU was) and by inclusive samples (anywhere
on the stack), each as ``function (file:line)``. Idle threads are not sampled
(py-spy's default), so the percentages are of busy samples. Native FAISS time
shows on the Python line that called it.

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


def record(pid: int, seconds: float, out_path: str, rate: int = 200) -> subprocess.Popen:
    """Start py-spy on ``pid`` for ``seconds``; returns the process (wait() on it)."""
    exe = py_spy_path()
    if exe is None:
        raise RuntimeError("py-spy is not installed (pip install py-spy)")
    return subprocess.Popen([exe, "record", "--pid", str(pid), "--duration", str(max(1, int(seconds))),
                             "--rate", str(rate), "--format", "raw", "--output", out_path],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


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


def summarize(collapsed_path: str, top: int = 20) -> dict:
    """Top frames by self and inclusive samples from a py-spy raw recording."""
    self_c: Counter = Counter()
    incl_c: Counter = Counter()
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
            if not frames:
                continue
            total += n
            self_c[frames[-1]] += n
            for fr in set(frames):
                incl_c[fr] += n

    def rows(c: Counter):
        return [{"frame": fr, "samples": n, "pct": 100.0 * n / total} for fr, n in c.most_common(top)]

    return {"samples": total, "self": rows(self_c), "inclusive": rows(incl_c)}


def format_summary(summary: dict) -> str:
    out = [f"busy samples: {summary['samples']}", "", "top self (where the CPU is):"]
    out += [f"  {r['pct']:5.1f}%  {r['frame']}" for r in summary["self"]]
    out += ["", "top inclusive (on the stack):"]
    out += [f"  {r['pct']:5.1f}%  {r['frame']}" for r in summary["inclusive"]]
    return "\n".join(out)


if __name__ == "__main__":
    print(format_summary(summarize(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 25)))
