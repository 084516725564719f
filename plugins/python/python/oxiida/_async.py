"""`oxiida.run_async`: a workflow awaited from asyncio without blocking the
event loop. The workflow runs on a thread of its own (as under `oxiida.run`);
its end is handed to the loop with `call_soon_threadsafe`, and cancelling
the awaiting task cancels the workflow."""

import asyncio
from typing import Any, Dict, Mapping, Optional, Sequence

from ._oxiida import _start


def _settle(future: "asyncio.Future[Dict[str, Any]]", ok: bool, value: Any) -> None:
    if future.done():  # cancelled meanwhile
        return
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)


async def await_workflow(
    source: str,
    scope: Dict[str, Any],
    file_name: str,
    max_tasks: int,
    max_fanout: int,
    inputs: Optional[Mapping[str, Any]],
    hint: Optional[str],
    executor: Any = None,
    record: bool = False,
    cache: bool = False,
    fingerprint: Optional[bytes] = None,
    plugins: Sequence[str] = (),
) -> Dict[str, Any]:
    loop = asyncio.get_running_loop()
    future: "asyncio.Future[Dict[str, Any]]" = loop.create_future()

    def done(ok: bool, value: Any) -> None:  # on the workflow's thread
        try:
            loop.call_soon_threadsafe(_settle, future, ok, value)
        except RuntimeError:  # the loop is closed: nobody waits any more
            pass

    started = _start(
        source, scope, file_name, max_tasks, max_fanout, loop, done, inputs, hint, executor, record, cache, fingerprint, list(plugins)
    )
    try:
        return await future
    except asyncio.CancelledError:
        started.cancel()
        raise

