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

__all__ = ["run", "check", "OxiidaError"]


def _caller_scope(depth: int) -> dict:
    frame = sys._getframe(depth + 1)
    scope = dict(builtins.__dict__)
    scope.update(frame.f_globals)
    scope.update(frame.f_locals)
    return scope


def run(source: str, scope: Optional[Mapping[str, Any]] = None, *, file_name: str = "<workflow>") -> dict:
    """Checks and runs a workflow; returns its top-level variables.

    Raises OxiidaError for errors found before running (all of them at once)
    and for runtime errors, with file:line:col and the foreign traceback."""
    return _run(source, dict(scope) if scope is not None else _caller_scope(1), file_name)


def check(source: str, scope: Optional[Mapping[str, Any]] = None, *, file_name: str = "<workflow>") -> None:
    """Reports syntax and name errors (as OxiidaError) without running anything."""
    _check(source, dict(scope) if scope is not None else _caller_scope(1), file_name)
