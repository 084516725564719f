"""Workflows submitted to the Python daemon, from Python: list them, ask
about one, wait for its variables, read its output, kill it.

Every call connects to the daemon of this user (`python -m oxiida daemon
start`); none running raises DaemonNotRunningError, an id the daemon does
not know UnknownWorkflowError.
"""

import datetime
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Optional

from ._oxiida import (
    DaemonNotRunningError,
    EnvironmentChangedWarning,
    OxiidaError,
    UnknownWorkflowError,
    WrongEnvironmentError,
    _kill,
    _show,
    _workflows,
)

__all__ = [
    "workflows",
    "status",
    "result",
    "output",
    "kill",
    "WorkflowSummary",
    "WorkflowStatus",
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


def _failed(id: int, state: str, error: Optional[str]) -> WorkflowFailedError:
    """The exception a workflow that did not succeed raises (also `submit(wait=True)`'s)."""
    if error and state == "failed":
        message = error
    elif error:
        message = f"workflow {id} was {state}: {error}"
    else:
        message = f"workflow {id} ended {state}"
    return WorkflowFailedError(message, id, state, error)


def _time(ms: Optional[int]) -> Optional[datetime.datetime]:
    if ms is None:
        return None
    return datetime.datetime.fromtimestamp(ms / 1000, tz=datetime.timezone.utc)


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
            found.append(WorkflowSummary(id, name, state, exit_code, _time(submitted_ms), _time(finished_ms)))
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
    """Where workflow `id` stands (its record, without its output)."""
    r = _record(id)
    return WorkflowStatus(
        r["id"], r["name"], r["state"], r["exit_code"], r["error"], _time(r["submitted_ms"]),
        _time(r["started_ms"]), _time(r["finished_ms"]), r["cwd"], r["source"],
    )


def output(id: int) -> str:
    """What workflow `id` printed so far, each line ending in a newline (the
    daemon keeps the first and last halves of its --output-limit)."""
    return _record(id)["output"]


def result(id: int, timeout: Optional[float] = None) -> Dict[str, Any]:
    """Waits until workflow `id` ends and returns its top-level variables,
    as `submit(wait=True)` does; a workflow that did not succeed raises
    WorkflowFailedError. With `timeout` (seconds), raises ResultTimeoutError
    if it has not ended by then (the workflow goes on). The wait asks the
    daemon every 0.05 s at first, then every 0.5 s; Ctrl-C stops it."""
    deadline = None if timeout is None else time.monotonic() + timeout
    pause = 0.05
    while True:
        r = _record(id)
        if r["state"] == "succeeded":
            if r["variables"] is None:
                raise OxiidaError(
                    f"workflow {id} succeeded, but its variables were not kept (an older daemon ran it); "
                    f"its output is in `oxiida.output({id})`"
                )
            return r["variables"]
        if r["state"] in ENDED:
            raise _failed(id, r["state"], r["error"])
        if deadline is not None and time.monotonic() >= deadline:
            raise ResultTimeoutError(
                f"workflow {id} is still {r['state']} after {timeout} s; it goes on: call `oxiida.result({id})` "
                f"again to wait more, or `oxiida.kill({id})` to stop it"
            )
        wait = pause if deadline is None else max(0.0, min(pause, deadline - time.monotonic()))
        time.sleep(wait)
        pause = min(pause * 2, 0.5)


def kill(id: int, *, wait: bool = True) -> None:
    """Kills workflow `id` (queued or running); with `wait` (the default),
    returns once it has ended, so `status(id).state` is then `killed`. A
    workflow that has already ended raises OxiidaError, saying how it ended."""
    _check_id(id)
    _kill(id, wait)
