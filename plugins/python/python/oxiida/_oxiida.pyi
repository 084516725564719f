# Types of the native module behind the `oxiida` package (built by maturin
# from plugins/python/src/package.rs and daemon.rs). The public API is typed in __init__.py.
from typing import Any, Callable, Iterable, Mapping

__version__: str

class OxiidaError(Exception): ...

def _run(
    source: str,
    scope: dict[str, Any],
    file_name: str,
    max_tasks: int = ...,
    max_fanout: int = ...,
    inputs: Mapping[str, Any] | None = ...,
    hint: str | None = ...,
    executor: Any = ...,
    record: bool = ...,
    cache: bool = ...,
    fingerprint: bytes | None = ...,
    plugins: list[str] = ...,
) -> dict[str, Any]: ...
def _check(
    source: str,
    scope: dict[str, Any],
    file_name: str,
    inputs: Iterable[str] | None = ...,
    hint: str | None = ...,
    plugins: list[str] = ...,
) -> None: ...

class Started:
    def cancel(self) -> None: ...

def _start(
    source: str,
    scope: dict[str, Any],
    file_name: str,
    max_tasks: int,
    max_fanout: int,
    event_loop: Any,
    done: Callable[[bool, Any], None],
    inputs: Mapping[str, Any] | None = ...,
    hint: str | None = ...,
    executor: Any = ...,
    record: bool = ...,
    cache: bool = ...,
    fingerprint: bytes | None = ...,
    plugins: list[str] = ...,
) -> Started: ...
def _shutdown() -> None: ...

# The Python-bound daemon (plugins/python/src/daemon.rs).
def _required(source: str, file_name: str, inputs: Iterable[str] | None = ...) -> list[str]: ...
def _submit(
    source: str,
    file_name: str,
    pickled: bytes,
    cwd: str,
    wait: bool,
    env: list[tuple[bytes, bytes]] | None,
    inputs: Mapping[str, Any] | None = ...,
    executor: Any = ...,
    cache: bool = ...,
    plugins: list[str] = ...,
) -> int | dict[str, Any]: ...
def _resume(id: int, wait: bool, source: str | None = ...) -> int | dict[str, Any]: ...
def _tasks(id: int) -> list[tuple[str, str, str, str, int, int, str | None, str]]: ...
def _daemon_serve(watch: list[str], *limits: str | None, executor: str | None = ...) -> None: ...
def _daemon_pid() -> int | None: ...
def _daemon_paths() -> tuple[str, str]: ...
def _daemon_command(name: str) -> int: ...
def _workflows(
    state: str | None = ..., limit: int | None = ..., before: int | None = ..., since_ms: int | None = ..., notices: bool = ...
) -> tuple[list[tuple[int, str, str, int | None, int, int | None]], bool]: ...
def _show(id: int, notices: bool = ...) -> dict[str, Any]: ...
def _kill(id: int, wait: bool) -> None: ...
def _cli(argv: list[str]) -> int: ...
def _daemon_environment() -> str | None: ...

class DaemonNotRunningError(OxiidaError): ...
class UnknownWorkflowError(OxiidaError): ...
class WrongEnvironmentError(OxiidaError): ...
class EnvironmentChangedWarning(UserWarning): ...
