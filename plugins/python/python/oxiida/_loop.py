"""Awaiting what a workflow's `async def` functions return. The Rust side
(plugins/python/src/functions.rs) loads this file from its own text, so it
needs no installed package (the command-line plugin has none).

A call of an `async def` function returns a coroutine; the workflow's thread
submits it to an event loop and waits for it there, off that loop: the
caller's own loop under `oxiida.run_async`, or one private loop per workflow
under `oxiida.run` (a `PrivateLoop`, made on the first such call).
"""

import asyncio
import concurrent.futures
import threading
from typing import Any, Coroutine


class PrivateLoop:
    """An event loop on a thread of its own, serving one workflow's async
    calls (calls in `para` overlap on it) until `close`."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._serve, name="oxiida-async", daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_forever()
        finally:
            # What an abandoned workflow left running is cancelled.
            tasks = asyncio.all_tasks(self.loop)
            for task in tasks:
                task.cancel()
            if tasks:
                self.loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            asyncio.set_event_loop(None)
            self.loop.close()

    def close(self) -> None:
        """Stops the loop; its thread cancels what still runs and ends."""
        try:
            self.loop.call_soon_threadsafe(self.loop.stop)
        except RuntimeError:  # already closed
            pass


def submit(coroutine: Coroutine[Any, Any, Any], loop: asyncio.AbstractEventLoop) -> "concurrent.futures.Future[Any]":
    """The coroutine, scheduled on `loop` (from another thread), as a
    concurrent future; cancelling that future cancels it."""
    try:
        return asyncio.run_coroutine_threadsafe(coroutine, loop)
    except BaseException:
        coroutine.close()  # never scheduled: no "never awaited" warning
        raise
