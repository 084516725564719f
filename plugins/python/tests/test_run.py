"""oxiida.run and oxiida.check from Python, through the installed package."""

import functools
import math
import threading

import pytest

import oxiida
from _support import wait_until

MODULE_LEVEL = "module"


def identity(x):
    return x


def module_function():
    return MODULE_LEVEL


@pytest.mark.parametrize(
    "value, expected",
    [
        (None, None),
        (True, True),
        (0, 0),
        (-(2**63), -(2**63)),
        (2**63 - 1, 2**63 - 1),
        (1.5, 1.5),
        (math.inf, math.inf),
        ("héllo", "héllo"),
        ([1, [2, "x"]], [1, [2, "x"]]),
        ((1, 2.5), [1, 2.5]),
        ({"a": {"b": [1, None]}}, {"a": {"b": [1, None]}}),
    ],
)
def test_values_cross_both_ways(value, expected):
    out = oxiida.run("require identity, make;\nx = identity(make());\n", {"identity": identity, "make": lambda: value})
    assert out["x"] == expected


def test_nan_crosses():
    assert math.isnan(oxiida.run("require f;\nx = f();\n", {"f": lambda: math.nan})["x"])


def test_values_that_cannot_cross_name_the_function():
    with pytest.raises(oxiida.OxiidaError, match=r"cannot return int from `big`: the int 1180591620717411303424 does not fit in 64 bits"):
        oxiida.run("require big;\nx = big();\n", {"big": lambda: 2**70})
    with pytest.raises(oxiida.OxiidaError, match=r"cannot return list from `deep`: it is nested more than 100 levels deep"):
        oxiida.run("require deep;\nx = deep();\n", {"deep": lambda: functools.reduce(lambda a, _: [a], range(200), [])})


def test_names_are_found_in_locals_then_globals_then_builtins():
    def module_function():  # a local shadows the global of the same name
        return "local"

    def local_only(x):
        return x * 2

    out = oxiida.run("require module_function, local_only, abs;\na = module_function();\nb = local_only(21);\nc = abs(-3);\n")
    assert out == {"a": "local", "b": 42, "c": 3}


def test_a_module_level_function_is_found_from_inside_a_function():
    def inner():
        return oxiida.run("require module_function;\nx = module_function();\n")

    assert inner()["x"] == "module"


def test_workflow_variables_never_clash_with_script_variables():
    y = 1
    out = oxiida.run("y = 7;\nMODULE_LEVEL = 2;\n")
    assert out == {"y": 7, "MODULE_LEVEL": 2}
    assert y == 1 and MODULE_LEVEL == "module"


def test_dotted_requires_import_modules():
    out = oxiida.run('require math.sqrt, os.path.join as pjoin;\na = sqrt(16.0);\nb = pjoin("x", "y");\n')
    assert out == {"a": 4.0, "b": "x/y"}


class CustomError(Exception):
    pass


def test_the_original_exception_is_raised_with_its_traceback_and_location():
    def fails(x):
        raise CustomError(f"bad input {x}")

    with pytest.raises(CustomError, match="bad input 1") as info:
        oxiida.run("require fails;\nx = 1;\ny = fails(x);\n", file_name="wf.ox")
    assert info.traceback[-1].name == "fails", "the original traceback is kept"
    notes = "\n".join(getattr(info.value, "__notes__", []))
    if hasattr(info.value, "add_note"):  # Python 3.11+
        assert "wf.ox:3:5" in notes


def test_an_error_of_the_workflow_itself_is_an_oxiida_error():
    with pytest.raises(oxiida.OxiidaError, match="division by zero"):
        oxiida.run("x = 0;\ny = 1 / x;\n")


def test_every_error_before_running_is_reported_and_nothing_runs():
    called = []
    with pytest.raises(oxiida.OxiidaError) as info:
        oxiida.run("require f;\nf();\nx = ;\nprint nope;\nbreak;\n", {"f": lambda: called.append(1)})
    text = str(info.value)
    assert ":3:5" in text and ":5:1" in text
    assert called == []


def test_check_reports_without_running():
    called = []
    oxiida.check("require f;\nf();\n", {"f": lambda: called.append(1)})
    with pytest.raises(oxiida.OxiidaError, match="`nope` is not defined"):
        oxiida.check("print nope;\n")
    assert called == []


def test_print_goes_to_sys_stdout(capsys):
    oxiida.run('print "hello";\nprint [1, "a"];\n')
    assert capsys.readouterr().out == 'hello\n[1, "a"]\n'


def test_calls_in_para_overlap():
    barrier = threading.Barrier(2, timeout=10)

    def meet():
        barrier.wait()  # passes only when both calls wait at once
        return True

    assert oxiida.run("require meet;\npara { a = meet(); b = meet(); }\n") == {"a": True, "b": True}


def test_two_workflows_run_at_once_from_two_threads():
    barrier = threading.Barrier(2, timeout=10)
    results = {}

    def meet(tag):
        barrier.wait()
        return tag

    def work(tag):
        results[tag] = oxiida.run(f'require meet;\nx = meet("{tag}");\n', {"meet": meet})["x"]

    threads = [threading.Thread(target=work, args=(t,)) for t in ("one", "two")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert results == {"one": "one", "two": "two"}


CTRL_C_SCRIPT = """
import sys, time, oxiida
def sleeper():
    time.sleep(30)
src = "require sleeper;\\nx = sleeper();\\n" if sys.argv[1] == "inline" else "require sleeper;\\npara { a = sleeper(); b = sleeper(); }\\n"
print("started", flush=True)
try:
    oxiida.run(src)
except KeyboardInterrupt:
    print("KeyboardInterrupt", flush=True)
    sys.exit(3)
"""


@pytest.mark.parametrize("mode", ["inline", "para"])
def test_ctrl_c_raises_keyboard_interrupt_within_a_second(mode, tmp_path):
    import signal
    import subprocess
    import sys
    import time

    script = tmp_path / "ctrl_c.py"
    script.write_text(CTRL_C_SCRIPT)
    proc = subprocess.Popen([sys.executable, str(script), mode], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "started"
        time.sleep(0.3)  # let the workflow reach its call
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=10)  # a hang guard, far above the 1 s asked for
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 3, out
    assert "KeyboardInterrupt" in out


SPIN_SCRIPT = """
import sys, oxiida
def spin(path):
    n = 0
    try:
        print("spinning", flush=True)  # inside: the interrupt may land as print returns
        while True:  # a body: 3.11 never interrupts a bare `while True: pass`
            n += 1
    except KeyboardInterrupt:
        open(path, "w").write("stopped")
        raise
try:
    oxiida.run('require spin;\\npara { a = spin("%s"); b = 1; }\\n' % sys.argv[1])
except KeyboardInterrupt:
    print("KeyboardInterrupt", flush=True)
sys.stdin.readline()
"""


def test_ctrl_c_stops_plain_calls_still_running(tmp_path):
    import signal
    import subprocess
    import sys

    flag = tmp_path / "stopped"
    script = tmp_path / "spin.py"
    script.write_text(SPIN_SCRIPT)
    proc = subprocess.Popen([sys.executable, str(script), str(flag)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "spinning"
        proc.send_signal(signal.SIGINT)
        assert proc.stdout.readline().strip() == "KeyboardInterrupt"
        # The call's thread sees it at its next bytecode.
        assert wait_until(lambda: flag.exists() and flag.read_text() == "stopped")
        proc.stdin.write("\n")
        proc.stdin.flush()
        assert proc.wait(timeout=30) == 0
    finally:
        proc.kill()
        proc.wait()


def test_the_task_limit_bounds_calls_running_at_once():
    lock = threading.Lock()
    now = [0, 0]  # running, most seen

    def tracked():
        with lock:
            now[0] += 1
            now[1] = max(now[1], now[0])
        threading.Event().wait(0.02)
        with lock:
            now[0] -= 1

    oxiida.run("require tracked;\npara for i in range(12) { tracked(); }\n", max_tasks=3)
    assert now[1] <= 3


def scale(x, factor=2, *, offset=0):
    return x * factor + offset


def test_keyword_arguments_are_python_keyword_arguments():
    seen = []

    def record(*args, **kwargs):
        seen.append((args, list(kwargs.items())))
        return len(kwargs)

    out = oxiida.run(
        "require scale, record;\na = scale(5);\nb = scale(5, factor = 3);\nc = scale(5, offset = 1, factor = 10);\n"
        "n = record(1, zeta = [1, nil], alpha = \"x\");\npara { p = scale(1, offset = 1); q = scale(2, offset = 2); }\n"
    )
    assert (out["a"], out["b"], out["c"], out["p"], out["q"]) == (10, 15, 51, 3, 6)
    # In the order written, values converted as positional ones are.
    assert out["n"] == 2 and seen == [((1,), [("zeta", [1, None]), ("alpha", "x")])]


def test_an_unexpected_keyword_is_the_functions_own_type_error():
    with pytest.raises(TypeError, match="unexpected keyword argument 'factr'") as info:
        oxiida.run("require scale;\nx = scale(1, factr = 3);\n", file_name="kw.ox")
    if hasattr(info.value, "__notes__"):
        assert any("kw.ox:2:5" in note for note in info.value.__notes__)


def test_keywords_in_a_workflow_that_only_checks():
    oxiida.check("require scale;\nx = scale(1, offset = 3);\n")
