"""`plugins=` of oxiida.submit: process plugins beside the functions sent
with a workflow, started by the workflow's runner in the daemon the package
started (`python -m oxiida daemon start`, test_daemon's fixture), with the
Python plugin of tests/plugins/python_process.py and the Node kit's example."""

import os
import sys

import pytest

import oxiida
from _support import wait_until
from test_daemon import private  # noqa: F401 (a fixture)

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
# The plugin needs msgpack: started by this interpreter (the test venv has it).
PYTOOLS = f"exec:{sys.executable}={os.path.join(ROOT, 'tests', 'plugins', 'python_process.py')}"
NODE_TOOLS = os.path.join(ROOT, "plugins", "node", "examples", "tools.js")


def test_a_submitted_workflow_calls_a_process_plugin_beside_its_functions(private, capsys):  # noqa: F811
    def double(x):  # a function of this test: travels by value
        return x * 2

    out = oxiida.submit(
        "require double;\n"
        "require divide, shout, pid from pytools;\n"
        "a = double(21);\n"
        "b = divide(a, 4);\n"
        "print shout(\"hey\");\n"
        "p = pid();\n",
        {"double": double},
        plugins=[PYTOOLS],
        wait=True,
    )
    assert (out["a"], out["b"]) == (42, 10.5)
    # The plugin's stderr (prefixed with its name) is in the workflow's
    # output too, as a runner's stderr is: in order only roughly.
    assert sorted(capsys.readouterr().out.splitlines()) == ["HEY", "[pytools] shouting hey"]
    # The plugin ran in the workflow's runner, not here, and ended with it.
    assert out["p"] != os.getpid()
    assert wait_until(lambda: not os.path.exists(f"/proc/{out['p']}")), "the plugin outlived its workflow"


def test_a_node_plugin_without_wait_and_the_name_routing_of_run(private):  # noqa: F811
    def fib(n):
        return "python's"

    # `from tools` is the plugin's; a bare name is the functions' first.
    id = oxiida.submit(
        "require fib from tools;\nrequire fib as mine;\nx = fib(20);\ny = mine(1);\n",
        {"fib": fib},
        plugins=f"exec:node={NODE_TOOLS}",
    )
    assert oxiida.result(id, timeout=60) == {"x": 6765, "y": "python's"}


def test_a_plugin_that_cannot_be_found_raises_before_anything_is_sent(private):  # noqa: F811
    with pytest.raises(oxiida.OxiidaError, match="no such file"):
        oxiida.submit("x = 1;\n", plugins=["exec:/no/such/plugin.js"])
    with pytest.raises(TypeError, match="plugins must be str"):
        oxiida.submit("x = 1;\n", plugins=[3])
    assert oxiida.workflows() == []


def test_a_plugins_error_or_crash_fails_the_workflow_naming_it(private):  # noqa: F811
    with pytest.raises(oxiida.OxiidaError, match="ZeroDivisionError: division by zero"):
        oxiida.submit("require divide from pytools;\nx = divide(1, 0);\n", plugins=[PYTOOLS], wait=True)
    id = oxiida.submit("require exit_now from pytools;\nexit_now(7);\n", plugins=[PYTOOLS])
    with pytest.raises(oxiida.OxiidaError, match="process plugin `pytools` exited with status 7 during the call"):
        oxiida.result(id, timeout=60)
    # The daemon lives on.
    assert oxiida.submit("x = 1;\n", wait=True) == {"x": 1}


def test_a_changed_plugin_script_is_not_served_from_the_cache(private, tmp_path):  # noqa: F811
    script = tmp_path / "tools.py"
    script.write_text(open(os.path.join(ROOT, "tests", "plugins", "python_process.py")).read())
    spec = f"exec:{sys.executable}={script}"
    source = "require divide from pytools;\nx = divide(10, 4);\n"

    def statuses(id):
        return [t.status for t in oxiida.tasks(id)]

    first = oxiida.submit(source, plugins=[spec], cache=True)
    assert oxiida.result(first, timeout=60) == {"x": 2.5}
    again = oxiida.submit(source, plugins=[spec], cache=True)
    assert oxiida.result(again, timeout=60) == {"x": 2.5}
    assert statuses(again) == ["cached"], "the unchanged plugin's call is reused"
    # The same spec, another script: the call runs again.
    script.write_text(script.read_text() + "\n# changed\n")
    changed = oxiida.submit(source, plugins=[spec], cache=True)
    assert oxiida.result(changed, timeout=60) == {"x": 2.5}
    assert statuses(changed) == ["succeeded"], "a changed script's call must run again"
