"""`plugins=` of oxiida.run, check and run_async: process plugins (the stdlib
Python one in tests/plugins/python_process.py, the Node kit's example)
beside the caller's Python functions, in one workflow."""

import asyncio
import os
import shutil
import subprocess
import sys
import time

import pytest

import oxiida

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
# The plugin needs msgpack: started by this interpreter (the test venv has it).
PYTOOLS = f"exec:{sys.executable}={os.path.join(ROOT, 'tests', 'plugins', 'python_process.py')}"
NODE_TOOLS = os.path.join(ROOT, "plugins", "node", "examples", "tools.js")


def double(x):
    return x * 2


def test_a_value_goes_from_python_to_the_plugin_and_back():
    seen = []

    def record(text):
        seen.append(text)
        return len(text)

    out = oxiida.run(
        "require double, record;\n"
        "require divide, shout from pytools;\n"
        "a = double(21);\n"
        "b = divide(a, 4);\n"
        "c = shout(\"n\" + \"\" );\n"
        "d = record(shout(\"hey\"));\n",
        {"double": double, "record": record},
        plugins=[PYTOOLS],
    )
    assert out["a"] == 42
    assert out["b"] == 10.5
    assert out["c"] == "N"
    assert out["d"] == 3
    assert seen == ["HEY"]


def test_a_name_without_from_is_the_scopes_first_then_the_plugins():
    def divide(a, b):
        return "python's"

    out = oxiida.run("require divide, describe;\nx = divide(1, 2);\ny = describe(2, unit = \"s\");\n", {"divide": divide}, plugins=PYTOOLS)
    assert out["x"] == "python's"
    assert out["y"] == {"type": "int", "value": 2, "unit": "s"}


def test_para_overlaps_plugin_calls_with_python_calls():
    out = oxiida.run(
        "require double;\nrequire rendezvous from pytools;\n"
        "para { a = rendezvous(1); b = rendezvous(2); c = rendezvous(3); d = double(4); }\n",
        {"double": double},
        plugins=[PYTOOLS],
    )
    assert (out["a"], out["b"], out["c"], out["d"]) == (2, 4, 6, 8)


def test_a_plugin_crash_is_an_oxiida_error_and_python_lives_on():
    with pytest.raises(oxiida.OxiidaError, match=r"process plugin `pytools` exited with status 7 during the call"):
        oxiida.run("require exit_now from pytools;\nexit_now(7);\n", plugins=[PYTOOLS])
    # A new workflow starts a new session.
    assert oxiida.run("require divide from pytools;\nx = divide(9, 3);\n", plugins=[PYTOOLS])["x"] == 3.0


def test_a_plugin_crash_leaves_no_panic_behind():
    # The crashed session's last reference may go on its reply thread, which
    # must not try to join itself (it once panicked there, at exit).
    code = (
        "import oxiida, sys\n"
        "try:\n"
        "    oxiida.run('require exit_now from pytools;\\nexit_now(7);\\n', plugins=[sys.argv[1]])\n"
        "except oxiida.OxiidaError:\n"
        "    print('raised')\n"
    )
    for _ in range(3):
        done = subprocess.run([sys.executable, "-c", code, PYTOOLS], capture_output=True, text=True, timeout=60)
        assert done.stdout == "raised\n", done.stderr
        assert "panicked" not in done.stderr, done.stderr


def test_a_plugins_error_is_an_oxiida_error():
    with pytest.raises(oxiida.OxiidaError, match="ZeroDivisionError"):
        oxiida.run("require divide from pytools;\nx = divide(1, 0);\n", plugins=[PYTOOLS])


def test_an_unknown_plugin_names_it_and_what_to_do():
    with pytest.raises(oxiida.OxiidaError, match=r"plugin `no_such_plugin`: no plugin named `no_such_plugin` was found.*OXIIDA_PLUGIN_PATH"):
        oxiida.run("x = 1;\n", plugins=["no_such_plugin"])


def test_a_program_that_cannot_start_is_an_oxiida_error():
    with pytest.raises(oxiida.OxiidaError, match="exec:/no/such/program"):
        oxiida.run("x = 1;\n", plugins=["exec:/no/such/program"])


def test_from_a_plugin_not_given_says_to_pass_plugins():
    with pytest.raises(oxiida.OxiidaError, match=r"no plugin named `tools` is loaded.*plugins=\["):
        oxiida.run("require fib from tools;\nx = fib(3);\n")
    with pytest.raises(oxiida.OxiidaError, match=r"no plugin named `tools` is loaded \(loaded: pytools\)"):
        oxiida.check("require fib from tools;\nx = fib(3);\n", plugins=[PYTOOLS])


def test_check_asks_the_plugin_for_its_names():
    oxiida.check("require divide from pytools;\nx = divide(1, 2);\n", plugins=[PYTOOLS])
    with pytest.raises(oxiida.OxiidaError, match="nosuch"):
        oxiida.check("require nosuch from pytools;\nx = nosuch(1);\n", plugins=[PYTOOLS])


def test_run_async_takes_plugins():
    async def main():
        return await oxiida.run_async(
            "require double;\nrequire divide from pytools;\nx = divide(double(3), 2);\n", {"double": double}, plugins=[PYTOOLS]
        )

    assert asyncio.run(main())["x"] == 3.0


def test_plugins_must_be_str():
    with pytest.raises(TypeError, match="plugins must be str"):
        oxiida.run("x = 1;\n", plugins=[3])


@pytest.mark.skipif(
    shutil.which("node") is None or not os.path.isdir(os.path.join(ROOT, "plugins", "node", "node_modules")),
    reason="node or the Node kit's npm packages are missing (scripts/test.sh runs `npm ci` in plugins/node)",
)
def test_the_node_example_beside_python_and_the_python_plugin():
    out = oxiida.run(
        "require double;\nrequire fib from tools;\nrequire divide from pytools;\n"
        "n = double(5);\nf = fib(n);\nq = divide(f, 5);\n",
        {"double": double},
        plugins=[f"exec:node={NODE_TOOLS}", PYTOOLS],
    )
    assert (out["n"], out["f"], out["q"]) == (10, 55, 11.0)


def test_cancelling_run_async_stops_a_waiting_plugin_call():
    # rendezvous(1) alone waits 5 s for two more callers; the cancel must not.

    async def main():
        task = asyncio.ensure_future(
            oxiida.run_async("require rendezvous from pytools;\nx = rendezvous(1);\n", plugins=[PYTOOLS])
        )
        await asyncio.sleep(0.5)
        assert len(plugin_children()) == 1, "the plugin runs while its call waits"
        started = time.monotonic()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return time.monotonic() - started

    assert asyncio.run(main()) < 2
    # The cancelled workflow's plugin process ends: no orphan.
    deadline = time.monotonic() + 5
    while plugin_children() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert plugin_children() == []
    # The interpreter lives on, and the next workflow starts the plugin again.
    assert oxiida.run("require divide from pytools;\nx = divide(1, 4);\n", plugins=[PYTOOLS])["x"] == 0.25


def plugin_children():
    """The pids of this process's children running python_process.py."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read()
        except OSError:
            continue
        if ppid == os.getpid() and b"python_process.py" in cmdline:
            found.append(int(entry))
    return found
