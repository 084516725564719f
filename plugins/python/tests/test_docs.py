"""Every ```python block of docs/python.md runs as written."""

import pathlib
import re

import pytest

DOC = pathlib.Path(__file__).resolve().parents[3] / "docs" / "python.md"
BLOCKS = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)


def test_the_doc_has_examples():
    assert len(BLOCKS) >= 3


@pytest.mark.parametrize("code", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_doc_example_runs(code, capsys, tmp_path, monkeypatch):
    # The daemon example must never meet the user's own daemon.
    monkeypatch.setenv("OXIIDA_RUNTIME_DIR", str(tmp_path / "run"))
    monkeypatch.setenv("OXIIDA_DATA_DIR", str(tmp_path / "data"))
    exec(compile(code, str(DOC), "exec"), {"__name__": "__doc_example__"})
