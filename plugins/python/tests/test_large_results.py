"""Results of `=f=` calls read from the worker's pickle into workflow values,
and workflow values made back into Python objects by `oxiida.run`: every
value comes back as itself (tuples as lists), with its type, whichever path
the pickle reader takes (numbers and strs read straight into their list or
dict, shared keys, memo references, batches of 1,000, nested containers),
and the workflow reads the same values."""

import math

import pytest

import oxiida
from test_durable import folders  # noqa: F401 (a fixture: private record folders)


def plain(value):
    """What a value is once it has crossed: tuples become lists."""
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


def same(a, b, at="result"):
    """Equal, with the same types all the way down (True is not 1, 1.0 is
    not 1, -0.0 is not 0.0), and the same order of dict keys."""
    assert type(a) is type(b), f"{at}: {type(a).__name__} {a!r:.80} is not {type(b).__name__} {b!r:.80}"
    if isinstance(a, list):
        assert len(a) == len(b), f"{at}: {len(a)} items, not {len(b)}"
        for i, (x, y) in enumerate(zip(a, b)):
            same(x, y, f"{at}[{i}]")
    elif isinstance(a, dict):
        assert list(a) == list(b), f"{at}: keys {list(a)[:5]} not {list(b)[:5]}"
        for k in a:
            same(a[k], b[k], f"{at}[{k!r}]")
    elif isinstance(a, float):
        assert (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b)), f"{at}: {a!r} != {b!r}"
    else:
        assert a == b, f"{at}: {a!r:.80} != {b!r:.80}"


SHARED = [1, "two"]
RECORDS = [{"i": i, "s": str(i), "f": i / 2, "b": i % 3 == 0, "n": None, "é": "日本" * (i % 3)} for i in range(3000)]

VALUES = {
    "ints at every width": [0, 1, -1, 127, 128, 255, 256, 65535, 65536, 2**31 - 1, -(2**31), 2**31, -(2**31) - 1,
                            2**32, 2**62, 2**63 - 1, -(2**63)],
    "big ints in a long list": [(-1) ** i * (2**63 - 1 - i) for i in range(2500)],
    "floats": [0.0, -0.0, 1.5, -2.25, 1e300, 5e-324, float("inf"), float("-inf"), float("nan"), 1 / 3],
    "bools and None are not ints": [True, False, None, 1, 0, [True, 1, False, 0, None]],
    "unicode keys and values": {"é": 1, "日本": "語", "": 0, "k" * 300: [1], "\U0001f600": "\U0001f600" * 100, "a\x00b": "\x00"},
    "records sharing keys": RECORDS,
    "records in more than one batch of 1,000": {str(i): {"v": i, "w": [i, str(i)]} for i in range(2500)},
    "repeated strs (memo references past 255)": [str(i % 400) for i in range(3000)] + ["x" * 70000, "x" * 70000],
    "nested lists and maps": {"a": [[], [[]], [[[1, [2.5, {"b": [None, {"c": {}}]}]]]]], "d": {"e": {"f": {"g": [True]}}}},
    "containers among scalars": [1, "a", [2], {"b": 3}, 4.0, None, True, (5,), "a", 6, {"b": 7, "c": [8], "d": "e", "f": 9.5}],
    "tuples": (1, (2, (3,)), (), [4, 5], (6, 7, 8, 9), ("a", "b", "c", "d", "e")),
    "a one-item list holding a tuple": [(1, 2, 3, 4)],
    "a one-item list holding a tuple of strs": [("a", "b", "c", "d")],
    "an empty dict then a tuple": [{}, ("a", 1, "b", 2)],
    "an empty dict then a tuple of numbers": [{}, (1, 2, 3, 4)],
    "a one-item dict holding a tuple": {"k": ("a", 1, "b", 2)},
    "an empty list then a tuple": [[], (1, 2, 3, 4)],
    "the same list twice": [SHARED, SHARED, {"k": SHARED}],
    "deep": [[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]],
    "a dict whose values are containers and scalars in turn": {f"k{i}": ([i] if i % 2 else i) for i in range(1500)},
    "one int": 2**63 - 1,
    "one str": "é" * 1000,
    "empty": [[], {}, "", ()],
}


def give_back(value):
    def give():
        return value

    return give


@pytest.mark.parametrize("value", list(VALUES.values()), ids=list(VALUES))
def test_a_result_comes_back_as_itself_from_plain_and_process_calls(value):
    expected = plain(value)
    for call in ("give()", "=give=()"):
        got = oxiida.run(f"require give;\nx = {call};\n", {"give": give_back(value)})["x"]
        same(got, expected, f"{call}")


def test_the_workflow_reads_the_values_a_process_call_returned():
    scope = {"give": give_back(RECORDS), "big": give_back([2**63 - 1, -(2**63), 1.5, "é"])}
    got = oxiida.run(
        'require give, big;\nr = =give=();\nn = len(r);\ns = r[2999]["s"];\nf = r[7]["f"] + 1.0;\nb = r[3]["b"];\n'
        'm = r[4]["n"];\nu = r[5]["é"];\nx = =big=();\ntop = x[0];\nlow = x[1];\nkeys = r[0];\n',
        scope,
    )
    same(got["n"], 3000)
    same(got["s"], "2999")
    same(got["f"], 4.5)
    same(got["b"], True)
    same(got["m"], None)
    same(got["u"], "日本日本")
    same(got["top"], 2**63 - 1)
    same(got["low"], -(2**63))
    same(got["keys"], RECORDS[0])


def test_large_results_come_back_whole_run_after_run():
    # Large enough to be freed on the discard thread: each run's values
    # are still whole, and the variables beside them too.
    ints = list(range(200_000))
    records = [{"i": i, "s": str(i)} for i in range(20_000)]
    scope = {"ints": give_back(ints), "records": give_back(records)}
    for _ in range(4):
        got = oxiida.run("require ints, records;\na = =ints=();\nb = =records=();\nc = a;\nn = len(b);\n", scope)
        assert got["a"] == ints and got["c"] == ints and got["a"] is not got["c"]
        assert got["b"] == records and got["n"] == 20_000


def test_a_handle_among_large_values_is_released_when_the_run_ends():
    import gc
    import weakref

    class Thing:
        pass

    thing = Thing()
    ref = weakref.ref(thing)

    def make():
        return [{"i": i} for i in range(5000)]

    got = oxiida.run("require make, keep;\nr = make();\nt = keep();\n", {"make": make, "keep": lambda: thing})
    assert got["t"] is thing
    del got, thing
    gc.collect()
    assert ref() is None


def test_the_garbage_collector_is_as_it_was_after_a_run():
    import gc

    scope = {"give": give_back([{"k": i} for i in range(2000)])}
    assert gc.isenabled()
    assert len(oxiida.run("require give;\nx = =give=();\n", scope)["x"]) == 2000
    assert gc.isenabled()
    gc.disable()
    try:
        assert len(oxiida.run("require give;\nx = =give=();\n", scope)["x"]) == 2000
        assert not gc.isenabled()
    finally:
        gc.enable()


# From 1 MiB of pickle, an `=f=` result the workflow only assigns stays in
# its pickle: `oxiida.run` returns it by `pickle.loads`, and reading it in
# the workflow reads the pickle then. Each value above, made that large.
FILLER = list(range(250_000))


@pytest.mark.parametrize("value", list(VALUES.values()), ids=list(VALUES))
def test_a_large_result_comes_back_as_itself_whether_the_workflow_reads_it_or_not(value):
    large = [value, FILLER]
    expected = plain(large)
    got = oxiida.run("require give;\nx = =give=();\n", {"give": give_back(large)})["x"]
    same(got, expected, "returned unread")
    got = oxiida.run("require give;\nx = =give=();\nn = len(x);\nfirst = x[0];\ny = x + [1];\n", {"give": give_back(large)})
    same(got["x"], expected, "returned after reads")
    same(got["n"], 2)
    same(got["first"], plain(value))
    same(got["y"], expected + [1])


def test_a_large_result_that_cannot_cross_fails_at_its_call_as_a_small_one_does():
    for value in ([2**70, 1], [2**70] + FILLER):
        with pytest.raises(oxiida.OxiidaError, match="cannot return list from `give`: the int 1180591620717411303424") as caught:
            oxiida.run("require give;\nx = =give=();\nprint \"not reached\";\n", {"give": give_back(value)})
        assert "<workflow>:2:5" in str(caught.value)


def test_a_large_result_reaches_a_plain_function_and_a_record_as_values(folders):  # noqa: F811
    def check(xs):
        assert type(xs) is list and type(xs[0]) is dict, type(xs)
        return len(xs)

    records = [{"i": i, "s": str(i)} for i in range(60_000)]
    scope = {"give": give_back(records), "check": check}
    got = oxiida.run("require give, check;\nr = =give=();\nn = check(r);\n", scope)
    assert got["n"] == 60_000 and got["r"] == records
    got = oxiida.run("require give;\nr = =give=();\n", scope, record=True, file_name="large.ox")
    assert got["r"] == records


# A pickle of more than 1 MiB is sent in parts while the worker still
# pickles it, and unpickled here as the parts come. When the worker gives
# that pickle up part way (a value it must convert first), or dies sending
# it, the parts already sent are dropped.
def ints_then_a_date():
    import datetime

    return list(range(400_000)) + [datetime.date(2020, 1, 2)]


def ints_then_death():
    import os

    class Fatal:
        def __reduce__(self):
            os._exit(3)

    return list(range(400_000)) + [Fatal()]


def test_a_large_pickle_given_up_part_way_comes_back_as_a_plain_call_gives_it():
    import datetime

    scope = {"give": ints_then_a_date}
    for call in ("give()", "=give=()"):
        got = oxiida.run(f"require give;\nx = {call};\nn = len(x);\nlast = x[{400_000}];\nprint last;\n", scope)
        assert got["n"] == 400_001, call
        assert got["x"][:400_000] == list(range(400_000)), call
        assert got["last"] == datetime.date(2020, 1, 2) and got["x"][-1] == got["last"], call


def test_a_worker_that_dies_sending_a_large_result_fails_that_call_and_the_next_runs():
    with pytest.raises(oxiida.OxiidaError, match=r"the worker running `give` crashed: the worker process \(pid \d+\) exited with status 3"):
        oxiida.run("require give;\nx = =give=();\n", {"give": ints_then_death})
    ints = list(range(300_000))
    assert oxiida.run("require give;\nx = =give=();\n", {"give": give_back(ints)})["x"] == ints
