"""One asyncio event loop on a daemon thread, for the backends whose clients are asyncio-only
(nats-py, aetcd) behind the synchronous storage protocols.

``run(coro, timeout)`` submits a coroutine from any thread and waits for its result; a
timeout or a dropped connection surfaces as ``IoFailed`` (the protocols' medium error).
The loop itself never blocks: callers wait on their own threads.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading

from vecdb.errors import IoFailed, VecdbError


class LoopThread:
    def __init__(self, name: str):
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self._thread.start()

    def run(self, coro, timeout: float | None = 30.0, what: str = "request"):
        if not self._thread.is_alive():
            coro.close()
            raise IoFailed(f"{what}: the client's event loop is stopped")
        fut = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return fut.result(timeout)
        except concurrent.futures.TimeoutError:
            fut.cancel()
            raise IoFailed(f"{what}: no answer within {timeout} s") from None
        except VecdbError:
            raise
        except (TimeoutError, OSError, ConnectionError) as e:
            raise IoFailed(f"{what}: {e}") from e

    def spawn(self, coro) -> None:
        """Run ``coro`` on the loop without waiting for it (its errors are its own to handle)."""
        if not self._thread.is_alive():
            coro.close()
            return
        try:
            asyncio.run_coroutine_threadsafe(coro, self.loop)
        except RuntimeError:  # the loop closed meanwhile
            coro.close()

    def stop(self) -> None:
        if self._thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(5)
        if not self._thread.is_alive() and not self.loop.is_closed():
            self.loop.close()
