"""Run oxiida workflows that call this script's own Python functions.

    import oxiida

    def relax(structure): ...

    oxiida.run('''
    require relax;
    para for s in ["Si", "Ge", "C"] { r = relax(s); }
    ''')

Required names are looked up in the caller's locals, then its globals, then
builtins (or in the mapping passed as `scope`); dotted names that are not in
scope import modules (`require math.sqrt;`).
"""

import atexit
import builtins
import sys
from typing import Any, Mapping, Optional

from ._oxiida import OxiidaError, _check, _run, _shutdown

# `=f=` worker processes end with the script, and are reaped.
atexit.register(_shutdown)

__all__ = ["run", "check", "OxiidaError", "RemoteTraceback"]


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
