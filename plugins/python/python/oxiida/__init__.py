"""Run oxiida workflows that call this script's own Python functions.

    import oxiida

    def relax(structure): ...

    oxiida.run('''
    require relax;
    para for s in ["Si", "Ge", "C"] { r = relax(s); }
    ''')

Required names are looked up in the caller's locals, then its globals, then
builtins (or in the mapping passed as `scope`); dotted names that are not in
scope import modules (`require math.sqrt;`). Keyword arguments in the
workflow are Python keyword arguments: `relax(s, steps = 100)` calls
`relax(s, steps=100)`, in plain and `=f=` calls alike.

From asyncio, `await oxiida.run_async(source)` runs a workflow without
blocking the event loop. A required `async def` function is awaited: on the
caller's loop under `run_async`, on a loop of the workflow's own under `run`,
and in the worker process for `=f=`.
"""

import atexit
import builtins
import os
import sys
import types
from typing import Any, Coroutine, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from . import _async
from ._oxiida import OxiidaError, __version__, _check, _required, _run, _shutdown, _submit
from ._daemon import *  # noqa: F401,F403 (workflows, status, result, output, kill, their types and errors)
from ._daemon import __all__ as _daemon_all
from ._daemon import _fingerprint

# `=f=` worker processes end with the script, and are reaped.
atexit.register(_shutdown)

__all__ = ["run", "run_async", "check", "submit", "OxiidaError", "RemoteTraceback", "__version__", *_daemon_all]


class RemoteTraceback(Exception):
    """The cause of an exception raised in an `=f=` worker process: its
    traceback there, shown above the exception when it is printed."""

    def __init__(self, tb: str) -> None:
        super().__init__(tb)
        self.tb = tb

    def __str__(self) -> str:
        return f'\n"""\n{self.tb}"""'


def _caller_scope(depth: int) -> Dict[str, Any]:
    frame = sys._getframe(depth + 1)
    scope = dict(builtins.__dict__)
    scope.update(frame.f_globals)
    scope.update(frame.f_locals)
    return scope


def _scope_and_hint(scope: Optional[Mapping[str, Any]], depth: int, api: str) -> Tuple[Dict[str, Any], Optional[str]]:
    # The scope given, or the caller's, with what to say when a name is not
    # in it: where it looked (under `asyncio.to_thread(oxiida.run, src)`,
    # that is the executor's frame, which has none of the script's names).
    if scope is not None:
        return dict(scope), None
    frame = sys._getframe(depth + 1)
    where = f"`{frame.f_code.co_name}` in {frame.f_code.co_filename}"
    hint = (
        f"{api} looked for it where it was called, {where}; when it is called from "
        f"elsewhere (another thread, `asyncio.to_thread`, a library), pass the "
        f"functions as `scope=`, e.g. `{api}(source, scope={{\"f\": f}})` or `scope=globals()`"
    )
    return _caller_scope(depth + 1), hint


def run(
    source: str,
    scope: Optional[Mapping[str, Any]] = None,
    *,
    inputs: Optional[Mapping[str, Any]] = None,
    file_name: str = "<workflow>",
    max_tasks: int = 1024,
    max_fanout: int = 1024,
    executor: Any = None,
    record: bool = False,
    cache: bool = False,
    plugins: Sequence[str] = (),
) -> Dict[str, Any]:
    """Checks and runs a workflow; returns its top-level variables.

    `inputs` maps names to values that the workflow reads as variables
    assigned before its first statement (converted as a function's result
    is: None, bool, int, float, str, list, tuple and dict with str keys);
    they come back among its variables. A Python exception raised by a
    called function is raised again; other errors raise OxiidaError (those
    found before running all at once), with file:line:col. `max_tasks`
    bounds the calls running at once (each plain call that waits holds a thread
    while it runs), `max_fanout` the iterations of one `para for` in flight.

    `executor` is where the workflow's `=f=` calls run instead of oxiida's
    own worker processes: a `distributed.Client` (a Dask cluster), any
    `concurrent.futures.Executor` (ProcessPoolExecutor, loky, MPIPoolExecutor)
    or a Dask scheduler's address ('dask://HOST:PORT', 'tls://HOST:PORT');
    None is OXIIDA_EXECUTOR when set, else oxiida's pool ('pool' says so
    whatever the variable). A scheduler that cannot be reached raises
    OxiidaError before anything runs (docs/distributed.md).

    `record=True` records the run, each of its tasks with its arguments
    and result, into the daemon's database as a workflow of its own, as
    `oxiida run --record` does (`status(id)`, `tasks(id)` and `oxiida
    workflow show ID` read it once a daemon runs; docs/durable.md). The
    daemon holds its database while it runs, so a run is recorded while
    none runs: otherwise this raises OxiidaError (`submit(wait=True)`
    records every task). `cache=True` records too, and each task whose
    identity (the function, a fingerprint of its code, the arguments;
    a shell command's argv, cwd and environment) matches a successful
    record of any earlier workflow takes that result instead of running.

    `plugins` are other plugins beside the Python scope, each as
    `oxiida run --plugin` takes it: a process plugin
    ('exec:node=tools.js', 'exec:python3=tools.py'), a registered or
    manifest name, or a plugin library's path. `require f from NAME;`
    calls plugin NAME; `require f;` is the scope's `f`, else the one plugin
    that provides it (docs/python.md, "Process plugins")."""
    names, hint = _scope_and_hint(scope, 1, "oxiida.run")
    fingerprint = _code_of(source, names, file_name, inputs) if record or cache else None
    return _run(source, names, file_name, max_tasks, max_fanout, inputs, hint, executor, record, cache, fingerprint, _plugin_specs(plugins))


def _code_of(source: str, names: Mapping[str, Any], file_name: str, inputs: Optional[Mapping[str, Any]]) -> bytes:
    # The fingerprint of the functions the workflow requires (cache
    # identities). A source with errors runs nothing: they raise where they
    # would without `record` (at `await` for run_async).
    try:
        required = {dotted.split(".")[0] for dotted in _required(source, file_name, inputs)}
    except OxiidaError:
        return b""
    return _fingerprint((name, names[name]) for name in required if name in names)


def run_async(
    source: str,
    scope: Optional[Mapping[str, Any]] = None,
    *,
    inputs: Optional[Mapping[str, Any]] = None,
    file_name: str = "<workflow>",
    max_tasks: int = 1024,
    max_fanout: int = 1024,
    executor: Any = None,
    record: bool = False,
    cache: bool = False,
    plugins: Sequence[str] = (),
) -> Coroutine[Any, Any, Dict[str, Any]]:
    """`await oxiida.run_async(source)`: runs a workflow as `run` does,
    without blocking the event loop; takes the same arguments, returns its
    variables or raises as `run` does. The workflow runs on a thread of its
    own; its required `async def` functions are awaited on this loop.
    Cancelling the awaiting task cancels the workflow. Names are looked up
    where `run_async` is called, not where it is awaited; errors in the
    source or the inputs raise when it is awaited, before anything runs.
    `record` and `cache` are `run`'s; a cancelled recorded workflow is
    recorded as interrupted."""
    names, hint = _scope_and_hint(scope, 1, "oxiida.run_async")
    fingerprint = _code_of(source, names, file_name, inputs) if record or cache else None
    return _async.await_workflow(
        source, names, file_name, max_tasks, max_fanout, inputs, hint, executor, record, cache, fingerprint, _plugin_specs(plugins)
    )


def check(
    source: str,
    scope: Optional[Mapping[str, Any]] = None,
    *,
    inputs: Optional[Mapping[str, Any]] = None,
    file_name: str = "<workflow>",
    plugins: Sequence[str] = (),
) -> None:
    """Reports syntax and name errors (as OxiidaError) without running
    anything. Only the names of `inputs` matter here; its values may be
    anything. `plugins` are started, as for `run`, to ask them their names."""
    names, hint = _scope_and_hint(scope, 1, "oxiida.check")
    _check(source, names, file_name, inputs, hint, _plugin_specs(plugins))


def _plugin_specs(plugins: Sequence[str]) -> List[str]:
    """`plugins=` as a list of str; a lone str is one plugin."""
    if isinstance(plugins, str):
        return [plugins]
    specs = list(plugins)
    for spec in specs:
        if not isinstance(spec, str):
            raise TypeError(f"plugins must be str such as 'exec:node=tools.js', not {type(spec).__name__}")
    return specs


def submit(
    source: str,
    scope: Optional[Mapping[str, Any]] = None,
    *,
    inputs: Optional[Mapping[str, Any]] = None,
    wait: bool = False,
    file_name: str = "<workflow>",
    env: Union[bool, Mapping[str, str]] = True,
    executor: Any = None,
    cache: bool = False,
    plugins: Sequence[str] = (),
) -> Union[int, Dict[str, Any]]:
    """Sends a workflow to the Python daemon (`python -m oxiida daemon start`).

    The functions it requires travel with it, by value where cloudpickle
    pickles them so (those of your script) and by reference otherwise (the
    daemon imports them from its own environment); they live in that
    workflow's own namespace. Without `wait`, returns the workflow's id at
    once; with it, prints its output to sys.stdout as it comes and returns
    its variables, or raises WorkflowFailedError (an OxiidaError); Ctrl-C
    stops the wait, not the workflow (`result(id)` waits again). A daemon
    of another Python environment is refused (WrongEnvironmentError), none
    running raises DaemonNotRunningError. Errors in the source raise here,
    before anything is sent. The workflow runs with the caller's environment
    variables (`os.environ`, as it is now); `env=False` runs it with the
    daemon's instead, and a mapping gives it exactly those variables.
    `inputs` are the workflow's inputs, as for `run`: they travel with it,
    converted here (a value that cannot cross raises before anything is sent).
    `executor` is a Dask scheduler's address (or a distributed.Client, sent
    as its address) where the workflow's `=f=` calls run; None leaves it to
    the daemon (its --executor, else OXIIDA_EXECUTOR in the workflow's
    environment, else its pool). The daemon records every task
    (`status(id).tasks`, `tasks(id)`), so an interrupted or failed workflow
    can be resumed (`resume(id)`); `cache=True` reuses the result of any
    earlier task with the same identity (the functions sent, the arguments;
    docs/durable.md), as `oxiida submit --cache` does. `plugins` are other
    plugins beside the functions sent, as for `run` (e.g.
    `["exec:node=tools.js"]`): each is found here (one that cannot be raises
    before anything is sent) and started by the workflow's runner, in this
    folder and with the workflow's environment."""
    from ._daemon import _dumps

    scope = dict(scope) if scope is not None else _caller_scope(1)
    names = {}
    for dotted in _required(source, file_name, inputs):
        root = dotted.split(".")[0]
        if root in scope and not isinstance(scope[root], types.ModuleType):
            names[root] = scope[root]
    if env is True:
        sent = list(os.environb.items())
    elif env is False:
        sent = None
    else:
        sent = [(os.fsencode(k), os.fsencode(v)) for k, v in env.items()]
    specs = _plugin_specs(plugins)
    return _submit(source, file_name, _dumps(names), os.getcwd(), wait, sent, inputs, executor, cache, specs)
