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
"""

import atexit
import builtins
import os
import sys
import types
from typing import Any, Mapping, Optional, Union

from ._oxiida import OxiidaError, _check, _required, _run, _shutdown, _submit
from ._daemon import *  # noqa: F401,F403 (workflows, status, result, output, kill, their types and errors)
from ._daemon import __all__ as _daemon_all

# `=f=` worker processes end with the script, and are reaped.
atexit.register(_shutdown)

__all__ = ["run", "check", "submit", "OxiidaError", "RemoteTraceback", *_daemon_all]


class RemoteTraceback(Exception):
    """The cause of an exception raised in an `=f=` worker process: its
    traceback there, shown above the exception when it is printed."""

    def __init__(self, tb: str) -> None:
        super().__init__(tb)
        self.tb = tb

    def __str__(self) -> str:
        return f'\n"""\n{self.tb}"""'


def _caller_scope(depth: int) -> dict:
    frame = sys._getframe(depth + 1)
    scope = dict(builtins.__dict__)
    scope.update(frame.f_globals)
    scope.update(frame.f_locals)
    return scope


def run(
    source: str,
    scope: Optional[Mapping[str, Any]] = None,
    *,
    file_name: str = "<workflow>",
    max_tasks: int = 1024,
    max_fanout: int = 1024,
) -> dict:
    """Checks and runs a workflow; returns its top-level variables.

    A Python exception raised by a called function is raised again; other
    errors raise OxiidaError (those found before running all at once), with
    file:line:col. `max_tasks` bounds the calls running at once (each plain
    call holds a thread while it runs), `max_fanout` the iterations of one
    `para for` in flight."""
    scope = dict(scope) if scope is not None else _caller_scope(1)
    return _run(source, scope, file_name, max_tasks, max_fanout)


def check(source: str, scope: Optional[Mapping[str, Any]] = None, *, file_name: str = "<workflow>") -> None:
    """Reports syntax and name errors (as OxiidaError) without running anything."""
    _check(source, dict(scope) if scope is not None else _caller_scope(1), file_name)


def submit(
    source: str,
    scope: Optional[Mapping[str, Any]] = None,
    *,
    wait: bool = False,
    file_name: str = "<workflow>",
    env: Union[bool, Mapping[str, str]] = True,
) -> Union[int, dict]:
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
    daemon's instead, and a mapping gives it exactly those variables."""
    from ._daemon import _dumps

    scope = dict(scope) if scope is not None else _caller_scope(1)
    names = {}
    for dotted in _required(source, file_name):
        root = dotted.split(".")[0]
        if root in scope and not isinstance(scope[root], types.ModuleType):
            names[root] = scope[root]
    if env is True:
        sent = list(os.environb.items())
    elif env is False:
        sent = None
    else:
        sent = [(os.fsencode(k), os.fsencode(v)) for k, v in env.items()]
    return _submit(source, file_name, _dumps(names), os.getcwd(), wait, sent)
