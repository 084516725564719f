"""Workflows submitted to the Python daemon, from Python: list them, ask
about one (with its task counts), wait for its variables, read its output
and task records, kill it, resume it.

Every call connects to the daemon of this user (`python -m oxiida daemon
start`); none running raises DaemonNotRunningError, an id the daemon does
not know UnknownWorkflowError.
"""

import datetime
import functools
import hashlib
import pickle
import time
import traceback
import types
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Optional, Set, Tuple, Union

from ._oxiida import (
    DaemonNotRunningError,
    EnvironmentChangedWarning,
    OxiidaError,
    UnknownWorkflowError,
    WrongEnvironmentError,
    _kill,
    _resume,
    _show,
    _tasks,
    _workflows,
)

__all__ = [
    "workflows",
    "status",
    "result",
    "output",
    "kill",
    "resume",
    "tasks",
    "WorkflowSummary",
    "WorkflowStatus",
    "TaskCounts",
    "TaskRecord",
    "WorkflowFailedError",
    "ResultTimeoutError",
    "DaemonNotRunningError",
    "UnknownWorkflowError",
    "WrongEnvironmentError",
    "EnvironmentChangedWarning",
]

#: The states a workflow ends in; `queued` and `running` are the others.
ENDED = ("succeeded", "failed", "killed", "interrupted")
STATES = ("queued", "running") + ENDED

# One `list` request answers with at most this many (the daemon's LIST_MAX).
_PAGE = 10_000


class WorkflowFailedError(OxiidaError):
    """A submitted workflow ended without succeeding: `state` is `failed`,
    `killed` or `interrupted`, `error` what the daemon recorded."""

    def __init__(self, message: str, id: int, state: str, error: Optional[str]) -> None:
        super().__init__(message)
        self.id = id
        self.state = state
        self.error = error


class ResultTimeoutError(OxiidaError, TimeoutError):
    """`result(id, timeout=...)` ran out of time; the workflow goes on."""


def _dumps(names: Dict[str, Any]) -> bytes:
    """The functions `submit` sends, pickled by cloudpickle keeping their
    code's file names, which cloudpickle replaces with "<dynamic-code>":
    a traceback in the daemon then names the real file and line."""
    import io
    import types

    import cloudpickle

    # cloudpickle 3 (cloudpickle.cloudpickle) or 2 (cloudpickle.cloudpickle_fast).
    modules = (getattr(cloudpickle, name, None) for name in ("cloudpickle", "cloudpickle_fast"))
    reduce_code = next((f for f in (getattr(m, "_code_reduce", None) for m in modules) if f is not None), None)
    if reduce_code is None or not hasattr(cloudpickle.Pickler, "dispatch_table"):
        # Another cloudpickle: it pickles as it does (tracebacks may say <dynamic-code>).
        return cloudpickle.dumps(names)

    def keep_file_name(code: types.CodeType):
        make, args = reduce_code(code)
        return make, tuple(code.co_filename if a == "<dynamic-code>" else a for a in args)

    class Pickler(cloudpickle.Pickler):
        dispatch_table = {**cloudpickle.Pickler.dispatch_table, types.CodeType: keep_file_name}

    out = io.BytesIO()
    Pickler(out).dump(names)
    return out.getvalue()


def _pack(exc: BaseException, place: str) -> bytes:
    """In a runner: what a client needs to raise `exc` as its own (see
    `_failed`): the exception pickled (by cloudpickle, so a class of the
    client's script travels by value), its traceback as text, and where in
    the workflow it was raised."""
    import cloudpickle

    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    try:
        pickled, why = cloudpickle.dumps(exc), None
    except Exception as e:  # an exception holding a lock, a socket...
        pickled, why = None, f"it cannot be pickled ({type(e).__name__}: {e})"
    kind = f"{type(exc).__module__}.{type(exc).__qualname__}"
    return pickle.dumps({"exception": pickled, "why": why, "type": kind, "traceback": text, "place": place})


def _failed(id: int, state: str, error: Optional[str], packed: Optional[bytes] = None) -> BaseException:
    """The exception a workflow that did not succeed raises (`result`'s, and
    `submit(wait=True)`'s): the called function's own when one raised it and
    it unpickles here (its traceback in the daemon as its cause, where in
    the workflow as a note), else WorkflowFailedError."""
    from . import RemoteTraceback

    info = None
    if packed is not None:
        try:
            info = pickle.loads(packed)
        except Exception:
            info = None
    if info is not None:
        why = info["why"]
        exc = None
        if info["exception"] is not None:
            try:
                exc = pickle.loads(info["exception"])
            except Exception as e:
                why = f"it cannot be unpickled here ({type(e).__name__}: {e}); install what defines it in this environment"
        if isinstance(exc, BaseException):
            exc.__cause__ = RemoteTraceback(info["traceback"])
            if hasattr(exc, "add_note"):
                exc.add_note(f"in oxiida workflow {id}, run by the daemon:\n{info['place']}")
            return exc
        failed = WorkflowFailedError(
            f"{info['place']}\nthe function raised {info['type']}, which is raised here as WorkflowFailedError: {why}",
            id, state, error,
        )
        failed.__cause__ = RemoteTraceback(info["traceback"])
        return failed
    if error and state == "failed":
        message = error
    elif error:
        message = f"workflow {id} was {state}: {error}"
    else:
        message = f"workflow {id} ended {state}"
    return WorkflowFailedError(message, id, state, error)


def _stamp(ms: int) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(ms / 1000, tz=datetime.timezone.utc)


def _time(ms: Optional[int]) -> Optional[datetime.datetime]:
    return None if ms is None else _stamp(ms)


@dataclass(frozen=True)
class WorkflowSummary:
    """One workflow in `workflows()`: times are timezone-aware (UTC)."""

    id: int
    name: str
    state: str
    exit_code: Optional[int]
    submitted: datetime.datetime
    finished: Optional[datetime.datetime]


@dataclass(frozen=True)
class TaskCounts:
    """How many of a workflow's tasks (shell commands and foreign calls) have
    ended, by how (docs/durable.md): `done` ran and succeeded, `failed`
    ran and failed, `replayed` took the result recorded by the run a
    resume continues, `cached` took an earlier workflow's result
    (`cache=True`). A task is recorded when it ends: one still running is
    in none of them."""

    done: int = 0
    failed: int = 0
    replayed: int = 0
    cached: int = 0

    @property
    def total(self) -> int:
        """Every recorded task."""
        return self.done + self.failed + self.replayed + self.cached


@dataclass(frozen=True)
class TaskRecord:
    """One task of a workflow as the daemon recorded it when it ended
    (`tasks(id)`): its key (its place in the source and the loop
    iterations around it), its kind (`shell`, `shellpipe`, `call` or
    `call=f=`), what it ran, its status (`succeeded`, `failed`, `replayed`
    or `cached`), when it started and ended (UTC), its error, and who ran
    it (`worker`): `pid N` of a shell task's process or of the `=f=` worker
    process, a Dask worker's address, or the workflow's own process for a
    plain call."""

    key: str
    kind: str
    what: str
    status: str
    started: datetime.datetime
    ended: datetime.datetime
    error: Optional[str]
    worker: str = ""


@dataclass(frozen=True)
class WorkflowStatus:
    """What `status(id)` tells about a workflow (its output: `output(id)`)."""

    id: int
    name: str
    state: str
    exit_code: Optional[int]
    error: Optional[str]
    submitted: datetime.datetime
    started: Optional[datetime.datetime]
    finished: Optional[datetime.datetime]
    cwd: Optional[str]
    source: str
    #: Its tasks that have ended, by how (a workflow from before task records: all 0).
    tasks: TaskCounts = field(default_factory=TaskCounts)

    @property
    def done(self) -> bool:
        """Whether it has ended (succeeded, failed, killed or interrupted)."""
        return self.state in ENDED


def workflows(
    status: Optional[str] = None,
    limit: Optional[int] = 100,
    *,
    before: Optional[int] = None,
    since: Optional[datetime.datetime] = None,
) -> List[WorkflowSummary]:
    """The daemon's workflows, newest first: at most `limit` of them (None:
    all), only those in state `status` (one of STATES) if given, only those
    with an id below `before`, and only those submitted at or after `since`."""
    if status is not None and status not in STATES:
        raise ValueError(f"no workflow state {status!r}: use one of {', '.join(STATES)}")
    if limit is not None and limit < 0:
        raise ValueError("limit must be 0 or more, or None for all")
    since_ms = None
    if since is not None:
        if since.tzinfo is None:
            since = since.astimezone()
        since_ms = int(since.timestamp() * 1000)
    found: List[WorkflowSummary] = []
    while limit is None or len(found) < limit:
        page = _PAGE if limit is None else min(_PAGE, limit - len(found))
        rows, more = _workflows(status, page, before, since_ms)
        for id, name, state, exit_code, submitted_ms, finished_ms in rows:
            found.append(WorkflowSummary(id, name, state, exit_code, _stamp(submitted_ms), _time(finished_ms)))
        if not more or not rows:
            break
        before = rows[-1][0]
    return found


def _check_id(id: int) -> None:
    if not isinstance(id, int) or isinstance(id, bool) or id < 0:
        raise TypeError(f"a workflow id is a non-negative int (as `submit` returns), not {id!r}")


def _record(id: int) -> Dict[str, Any]:
    _check_id(id)
    return _show(id)


def status(id: int) -> WorkflowStatus:
    """Where workflow `id` stands (its record, without its output), with
    the counts of its tasks that have ended (`.tasks`, a TaskCounts)."""
    r = _record(id)
    counts: Dict[str, int] = {"succeeded": 0, "failed": 0, "replayed": 0, "cached": 0}
    for row in _tasks(id):
        counts[row[3]] = counts.get(row[3], 0) + 1
    return WorkflowStatus(
        r["id"], r["name"], r["state"], r["exit_code"], r["error"], _stamp(r["submitted_ms"]),
        _time(r["started_ms"]), _time(r["finished_ms"]), r["cwd"], r["source"],
        TaskCounts(counts["succeeded"], counts["failed"], counts["replayed"], counts["cached"]),
    )


def tasks(id: int) -> List[TaskRecord]:
    """The task records of workflow `id`, in the order its tasks ended
    (what `oxiida workflow show ID` lists)."""
    _check_id(id)
    return [
        TaskRecord(key, kind, what, state, _stamp(started), _stamp(ended), error, worker)
        for key, kind, what, state, started, ended, error, worker in _tasks(id)
    ]


def resume(id: int, *, wait: bool = False, source: Optional[str] = None) -> Union[int, Dict[str, Any]]:
    """Runs workflow `id` again (it must be `interrupted` or `failed`, and
    not resumed before) as a new workflow, in the daemon: the same source,
    functions, working directory, environment and inputs it was submitted
    with. Each task that succeeded in the old run takes its recorded result
    instead of running again (a task that was running when the daemon died
    runs again); docs/durable.md says exactly what is replayed.

    Without `wait`, returns the new workflow's id; with it, prints its output
    as it comes and returns its variables, or raises, as
    `submit(wait=True)` does. With `source` (the workflow's text as you
    have it now), the daemon refuses, raising OxiidaError with its reason,
    unless it is the recorded source byte for byte: task results are
    replayed by their place in the source. A workflow that cannot be resumed
    (still running, succeeded, already resumed) raises OxiidaError saying
    why; an unknown id UnknownWorkflowError."""
    _check_id(id)
    if source is not None and not isinstance(source, str):
        raise TypeError(f"source is the workflow's text (a str), not {type(source).__name__}")
    return _resume(id, wait, source)


def _fingerprint(values: Iterable[Tuple[str, Any]]) -> bytes:
    """What `run(cache=True)` identifies the required functions' code by:
    a SHA-256 over each one's bytecode, constants, names, defaults, closure
    cells, and the module-level functions it calls (recursively); other
    values by their pickle (or their type); a class by its methods, a
    functools.partial by its function and arguments. A changed body changes it;
    moving a function in its file (line numbers) does not."""
    h = hashlib.sha256()
    seen: Set[int] = set()

    def feed(data: bytes) -> None:
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)

    def code(c: types.CodeType, names: List[str]) -> None:
        feed(c.co_code)
        feed(repr(c.co_names).encode())
        names.extend(c.co_names)
        for const in c.co_consts:
            if isinstance(const, types.CodeType):
                code(const, names)
            else:
                feed(repr(const).encode())

    def value(v: Any) -> None:
        if id(v) in seen:
            feed(b"seen")
            return
        seen.add(id(v))
        if isinstance(v, types.MethodType):
            v = v.__func__
        if isinstance(v, types.FunctionType):
            feed(b"function")
            names: List[str] = []
            code(v.__code__, names)
            value(v.__defaults__)
            value(v.__kwdefaults__)
            for cell in v.__closure__ or ():
                try:
                    value(cell.cell_contents)
                except ValueError:  # an empty cell
                    feed(b"empty")
            for name in names:
                called = v.__globals__.get(name)
                if isinstance(called, types.FunctionType):
                    feed(name.encode())
                    value(called)
        elif isinstance(v, types.ModuleType):
            feed(b"module " + v.__name__.encode())
        elif isinstance(v, type):
            feed(f"class {v.__module__}.{v.__qualname__}".encode())
            for name, attr in sorted(vars(v).items()):
                if isinstance(attr, (staticmethod, classmethod)):
                    attr = attr.__func__
                if isinstance(attr, types.FunctionType):
                    feed(name.encode())
                    value(attr)
        elif isinstance(v, functools.partial):
            feed(b"partial")
            value(v.func)
            value(v.args)
            value(v.keywords)
        else:
            try:
                feed(pickle.dumps(v))
            except Exception:
                feed(f"{type(v).__module__}.{type(v).__qualname__}".encode())

    for name, v in sorted(values, key=lambda pair: pair[0]):
        feed(name.encode())
        value(v)
    return h.digest()


def output(id: int) -> str:
    """What workflow `id` printed so far, each line ending in a newline (the
    daemon keeps the first and last halves of its --output-limit)."""
    return _record(id)["output"]


def result(id: int, timeout: Optional[float] = None) -> Dict[str, Any]:
    """Waits until workflow `id` ends and returns its top-level variables,
    as `submit(wait=True)` does. A workflow that failed because a called
    function raised raises that exception (its class, its message, its
    traceback in the daemon as its cause); one that failed otherwise, or
    was killed or interrupted, raises WorkflowFailedError. With `timeout` (seconds), raises ResultTimeoutError
    if it has not ended by then (the workflow goes on). The wait asks the
    daemon every 0.05 s at first, then every 0.5 s, for the workflow's
    state alone; Ctrl-C stops it."""
    _check_id(id)
    deadline = None if timeout is None else time.monotonic() + timeout
    pause = 0.05
    first = True
    while True:
        # One row of the list, through its index: the workflow with the
        # highest id below id + 1 is this one, if the daemon knows it.
        rows, _ = _workflows(None, 1, id + 1, None, first)
        first = False
        state = rows[0][2] if rows and rows[0][0] == id else None
        if state is not None and state not in ENDED:
            if deadline is not None and time.monotonic() >= deadline:
                raise ResultTimeoutError(
                    f"workflow {id} is still {state} after {timeout} s; it goes on: call `oxiida.result({id})` "
                    f"again to wait more, or `oxiida.kill({id})` to stop it"
                )
            wait = pause if deadline is None else max(0.0, min(pause, deadline - time.monotonic()))
            time.sleep(wait)
            pause = min(pause * 2, 0.5)
            continue
        r = _show(id, False)  # an unknown id raises UnknownWorkflowError here
        if r["state"] == "succeeded":
            if r["variables"] is None:
                raise OxiidaError(
                    f"workflow {id} succeeded, but its variables were not kept (an older daemon ran it); "
                    f"its output is in `oxiida.output({id})`"
                )
            return r["variables"]
        if r["state"] in ENDED:
            raise _failed(id, r["state"], r["error"], r["exception"])


def kill(id: int, *, wait: bool = True) -> None:
    """Kills workflow `id` (queued or running); with `wait` (the default),
    returns once it has ended, so `status(id).state` is then `killed`. A
    workflow that has already ended raises OxiidaError, saying how it ended."""
    _check_id(id)
    _kill(id, wait)
