"""What crosses from Python into a workflow, and the words when something
does not: a plain call and an `=f=` call of the same function give the same
value, or the same error."""

import collections
import enum
import sys
import threading
import types

import pytest

import oxiida


class Color(enum.IntEnum):
    RED = 3


class Perm(enum.IntFlag):
    R = 4
    W = 2


class Name(str):
    pass


class Ratio(float):
    pass


Point = collections.namedtuple("Point", "x y")


def _cycle():
    items = []
    items.append(items)
    return items


def gives(value):
    return lambda: value


@pytest.mark.parametrize(
    "value, expected",
    [
        (Color.RED, 3),
        (Perm.R | Perm.W, 6),
        (Name("si"), "si"),
        (Ratio(0.5), 0.5),
        (Point(1, 2), [1, 2]),
        (collections.OrderedDict(a=Color.RED), {"a": 3}),
        ([Color.RED, (Name("x"),)], [3, ["x"]]),
    ],
)
@pytest.mark.parametrize("call", ["f()", "=f=()"])
def test_subclasses_cross_as_their_base_values_in_plain_and_process_calls(value, expected, call):
    out = oxiida.run(f"require f;\nx = {call};\n", {"f": gives(value)})
    assert out["x"] == expected
    assert type(out["x"]) is type(expected)


@pytest.mark.parametrize(
    "value, words",
    [
        (2**70, "cannot return int from `f`: the int 1180591620717411303424 does not fit in 64 bits; pass it as a str or a float"),
        (_cycle(), "cannot return list from `f`: it is nested more than 100 levels deep (or contains itself); return a flatter value"),
        ("bad \udc80", "cannot return str from `f`: a str that is not valid UTF-8"),
    ],
)
def test_a_result_that_cannot_cross_gives_the_same_words_in_plain_and_process_calls(value, words):
    # Anything else crosses as a handle (test_handles.py).
    for call in ["f()", "=f=()"]:
        with pytest.raises(oxiida.OxiidaError) as raised:
            oxiida.run(f"require f;\nx = {call};\n", {"f": gives(value)})
        assert words in str(raised.value), call
        assert "bad arguments" not in str(raised.value).splitlines()[0]
        assert "raised" not in str(raised.value).splitlines()[0]


def test_a_function_that_cannot_be_pickled_says_it_could_not_be_sent():
    lock = threading.Lock()

    def holds_a_lock():
        return lock.locked()

    with pytest.raises(oxiida.OxiidaError) as raised:
        oxiida.run("require holds_a_lock;\nx = =holds_a_lock=();\n")
    first = str(raised.value).splitlines()[0]
    assert "could not send `holds_a_lock` to the worker (pickling failed: TypeError: cannot pickle '_thread.lock' object)" in first
    assert "call `holds_a_lock` without `=f=`" in first
    # The same function as a plain call runs.
    assert oxiida.run("require holds_a_lock;\nx = holds_a_lock();\n") == {"x": False}


def test_a_function_the_worker_cannot_import_says_it_could_not_be_loaded():
    # A module the host has but the workers cannot import: cloudpickle sends
    # its functions by reference.
    module = types.ModuleType("oxiida_host_only")
    exec("def answer():\n    return 42\n", module.__dict__)
    sys.modules["oxiida_host_only"] = module
    try:
        with pytest.raises(oxiida.OxiidaError) as raised:
            oxiida.run("require answer;\nx = =answer=();\n", {"answer": module.answer})
        first = str(raised.value).splitlines()[0]
        assert "could not load `answer` in the worker (unpickling failed: ModuleNotFoundError" in first
        assert "make the module that defines it importable there" in first
        # The worker still works, and says the same the next time.
        assert oxiida.run("require abs;\nx = =abs=(-2);\n") == {"x": 2}
        with pytest.raises(oxiida.OxiidaError, match="could not load `answer` in the worker"):
            oxiida.run("require answer;\nx = =answer=();\n", {"answer": module.answer})
    finally:
        del sys.modules["oxiida_host_only"]


def test_the_package_does_not_need_numpy():
    import subprocess

    code = (
        "import sys\n"
        "class NoNumpy:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'numpy' or name.startswith('numpy.'):\n"
        "            raise ImportError('numpy is blocked')\n"
        "sys.meta_path.insert(0, NoNumpy())\n"
        "import oxiida\n"
        "out = oxiida.run('require f;\\nx = f();\\ny = =f=();\\n', {'f': lambda: [1, 2.5]})\n"
        "assert out == {'x': [1, 2.5], 'y': [1, 2.5]}, out\n"
        "assert 'numpy' not in sys.modules\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
