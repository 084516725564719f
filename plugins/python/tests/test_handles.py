"""Python objects with no language form travel through a workflow as
handles: the same object on plain calls, a pickled copy through `=f=`, and
a clear error for anything the workflow itself would do with them."""

import enum

import pytest

import oxiida

np = pytest.importorskip("numpy")
pd = pytest.importorskip("pandas")


def scale(a):
    return a * 2


def shift(a):
    return a + 1


def total(a):
    return float(a.sum().sum()) if hasattr(a, "columns") else float(a.sum())


CHAIN = "require scale, shift, total;\nb = {s}(a);\nc = {h}(b);\nt = {t}(c);\n"


@pytest.mark.parametrize("call", ["plain", "process"])
def test_an_array_and_a_dataframe_pass_through_three_functions(call):
    wrap = (lambda n: n) if call == "plain" else (lambda n: f"={n}=")
    source = CHAIN.format(s=wrap("scale"), h=wrap("shift"), t=wrap("total"))
    funcs = {"scale": scale, "shift": shift, "total": total}
    arr = np.arange(6.0)
    out = oxiida.run(source, funcs, inputs={"a": arr})
    assert isinstance(out["c"], np.ndarray)
    np.testing.assert_array_equal(out["c"], arr * 2 + 1)
    assert out["t"] == float((arr * 2 + 1).sum())
    frame = pd.DataFrame({"x": [1, 2], "y": [3.5, 4.5]})
    out = oxiida.run(source, funcs, inputs={"a": frame})
    assert isinstance(out["c"], pd.DataFrame)
    assert out["c"].equals(frame * 2 + 1)
    assert out["t"] == float((frame * 2 + 1).sum().sum())


def test_plain_calls_get_the_very_same_object_and_run_returns_it():
    frame = pd.DataFrame({"x": [1]})
    seen = []

    def make():
        return frame

    def keep(df):
        seen.append(df)
        return df

    out = oxiida.run(
        "require make, keep;\nd = make();\ne = keep(d);\nitems = [d, {\"k\": e}];\nsame = d == e;\n",
        {"make": make, "keep": keep},
    )
    assert seen[0] is frame
    assert out["d"] is frame and out["e"] is frame
    assert out["items"][0] is frame and out["items"][1]["k"] is frame
    assert out["same"] is True


def test_equality_is_identity():
    a, b = pd.DataFrame({"x": [1]}), pd.DataFrame({"x": [1]})
    out = oxiida.run("same = a == b;\nself = a == a;\nother = a == 1;\n", inputs={"a": a, "b": b})
    assert out["same"] is False and out["self"] is True and out["other"] is False
    assert out["a"] is a and out["b"] is b


def test_a_process_call_gets_an_equal_copy():
    frame = pd.DataFrame({"x": [1, 2, 3]})

    def ident(df):
        return df

    out = oxiida.run("require ident;\nb = =ident=(a);\nsame = a == b;\n", {"ident": ident}, inputs={"a": frame})
    assert out["b"] is not frame
    assert out["b"].equals(frame)
    assert out["same"] is False


def test_print_shows_the_type(capsys):
    oxiida.run('print(a);\nprint([a, 1]);\nprint("got " + str(a));\n', inputs={"a": np.zeros(2)})
    assert capsys.readouterr().out == "<python ndarray>\n[<python ndarray>, 1]\ngot <python ndarray>\n"


@pytest.mark.parametrize(
    "expr, words",
    [
        ("a + 1", "cannot apply `+` to python ndarray (an opaque python object: pass it to a python function to work on it) and Int"),
        ("a[0]", "cannot index a python ndarray (an opaque python object: pass it to a python function to work on it)"),
        ("len(a)", "len() does not take a python ndarray (an opaque python object"),
        ("a < a", "cannot order python ndarray (an opaque python object"),
        ("-a", "cannot apply unary `-` to python ndarray"),
        ("a.shape", "cannot read `.shape` of a python ndarray (an opaque python object"),
    ],
)
def test_what_the_workflow_cannot_do_with_a_handle_names_its_type(expr, words):
    with pytest.raises(oxiida.OxiidaError) as raised:
        oxiida.run(f"x = {expr};\n", inputs={"a": np.zeros(2)})
    assert words in str(raised.value)


def test_for_over_a_handle_names_its_type():
    with pytest.raises(oxiida.OxiidaError, match=r"cannot iterate over a python ndarray \(an opaque python object: pass it"):
        oxiida.run("for v in a { print v; }\n", inputs={"a": np.zeros(2)})


class Color(enum.Enum):
    RED = 1


@pytest.mark.parametrize("call", ["f()", "=f=()"])
@pytest.mark.parametrize("value", [{1, 2}, {1: "a"}, Color.RED, 1 + 2j, b"ab"], ids=["set", "intkeys", "enum", "complex", "bytes"])
def test_other_objects_cross_as_handles_in_plain_and_process_calls(value, call):
    out = oxiida.run(f"require f;\nx = {call};\n", {"f": lambda: value})
    assert out["x"] == value
    assert type(out["x"]) is type(value)


@pytest.mark.parametrize("call", ["f", "=f="])
@pytest.mark.parametrize(
    "value, expected",
    [
        (np.int64(7), 7),
        (np.int8(-3), -3),
        (np.uint32(5), 5),
        (np.float32(0.5), 0.5),
        (np.float64(2.25), 2.25),
        (np.bool_(True), True),
        (np.bool_(False), False),
        ([np.int64(1), (np.float32(1.5),)], [1, [1.5]]),
    ],
)
def test_numpy_scalars_cross_as_plain_values(value, expected, call):
    out = oxiida.run(f"require f;\nx = {call}();\ny = x == x;\n", {"f": lambda: value})
    assert out["x"] == expected
    assert type(out["x"]) is type(expected)
    assert out["y"] is True


def test_numpy_scalars_take_part_in_arithmetic():
    out = oxiida.run("require f;\nx = f() + 1;\n", {"f": lambda: np.int64(41)})
    assert out["x"] == 42 and type(out["x"]) is int


def test_a_handle_is_released_when_the_workflow_ends():
    import gc
    import weakref

    class Big:
        pass

    obj = Big()
    ref = weakref.ref(obj)
    out = oxiida.run("require f;\nx = f(a);\n", {"f": lambda a: 1}, inputs={"a": obj})
    del obj, out
    gc.collect()
    assert ref() is None


def test_a_process_result_that_cannot_be_pickled_says_so_and_what_to_do():
    import threading

    with pytest.raises(oxiida.OxiidaError) as raised:
        oxiida.run("require f;\nx = =f=();\n", {"f": threading.Lock})
    first = str(raised.value).splitlines()[0]
    assert "cannot return lock from `f`: a value of type `lock` cannot cross" in first
    assert "pickling it back from the worker failed: TypeError" in first
    assert "call the function without =f=" in first
    # A plain call keeps it as a handle.
    assert type(oxiida.run("require f;\nx = f();\n", {"f": threading.Lock})["x"]).__name__ == "lock"


def test_a_handle_no_variable_holds_is_released_during_the_workflow():
    import gc
    import weakref

    class Big:
        pass

    refs = []

    def make():
        obj = Big()
        refs.append(weakref.ref(obj))
        return obj

    def alive():
        gc.collect()
        return refs[-1]() is not None

    source = "require make, alive;\nx = make();\nbefore = alive();\nx = 1;\nafter = alive();\n"
    assert oxiida.run(source, {"make": make, "alive": alive}) == {"x": 1, "before": True, "after": False}


def test_run_async_returns_the_original_objects_too():
    import asyncio

    frame = pd.DataFrame({"x": [1]})

    def keep(df):
        return df

    out = asyncio.run(oxiida.run_async("require keep;\nb = keep(a);\n", {"keep": keep}, inputs={"a": frame}))
    assert out["a"] is frame and out["b"] is frame
