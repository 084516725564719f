from typing import Any, Mapping, Optional

class OxiidaError(Exception): ...

def run(
    source: str,
    scope: Optional[Mapping[str, Any]] = None,
    *,
    file_name: str = "<workflow>",
    max_tasks: int = 1024,
    max_fanout: int = 1024,
) -> dict[str, Any]: ...
def check(source: str, scope: Optional[Mapping[str, Any]] = None, *, file_name: str = "<workflow>") -> None: ...
