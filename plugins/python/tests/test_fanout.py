"""Calls in `para` without a thread per call (issue 13, fan-out): plain
calls run in batches by the workflow's runner threads, which hand over to
more runners when a call waits; `=f=` calls go to workers in batches."""

import ctypes
import os
import signal
import sys
import threading
import time
import traceback

import pytest

import oxiida
from _support import zombies_of
from test_daemon import private  # noqa: F401 (a fixture)


def inc(x):
    return x + 1


class Odd(Exception):
    """Raised by `check`; module level, so it pickles back from a worker."""


def check(i):
    if i == 57:
        raise Odd(f"item {i} is odd")
    return i


def test_many_quick_plain_calls_in_para_for_give_every_result():
    seen = {}

    def record(i, r):
        seen[i] = r

    oxiida.run("require inc, record;\npara for i in range(2000) { record(i, inc(i)); }\n", {"inc": inc, "record": record})
    assert seen == {i: i + 1 for i in range(2000)}


def test_blocking_plain_calls_in_para_for_all_wait_at_once():
    # 64 calls that each pass only when all 64 wait together: each call that
    # blocks must hand the rest of the queue to another thread.
    barrier = threading.Barrier(64, timeout=20)

    def meet(i):
        barrier.wait()
        return i

    assert oxiida.run("require meet;\npara for i in range(64) { x = meet(i); }\nok = true;\n", {"meet": meet})["ok"]


def test_quick_calls_are_not_held_up_by_a_call_that_waits():
    # One branch waits for an event that a later branch's quick calls set:
    # the queue behind the waiting call must still be drained.
    go = threading.Event()
    count = []

    def wait_for_go():
        return go.wait(20)

    def tick(i):
        count.append(i)
        if len(count) == 500:
            go.set()
        return i

    src = "require wait_for_go, tick;\npara {\n    w = wait_for_go();\n    seq { for i in range(500) { t = tick(i); } }\n}\n"
    assert oxiida.run(src, {"wait_for_go": wait_for_go, "tick": tick})["w"] is True


def test_a_rendezvous_between_two_para_branches_does_not_deadlock():
    ready = threading.Event()
    answer = threading.Event()

    def ask():
        ready.set()
        return answer.wait(20)

    def reply():
        assert ready.wait(20)
        answer.set()
        return True

    for src in ("para { a = ask(); b = reply(); }", "para { b = reply(); a = ask(); }"):
        ready.clear()
        answer.clear()
        out = oxiida.run(f"require ask, reply;\n{src}\n", {"ask": ask, "reply": reply})
        assert (out["a"], out["b"]) == (True, True)


LIBC = ctypes.CDLL(None)


def thread_name():
    """The OS name of the calling thread (Linux's prctl, a quick call: the
    runtime names its threads)."""
    name = ctypes.create_string_buffer(16)
    LIBC.prctl(16, name)  # PR_GET_NAME
    return name.value.decode()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="thread names are read with Linux's prctl")
def test_quick_plain_calls_run_on_the_workflows_own_thread():
    # A function's first call goes to a runner; once it has been quick, the
    # workflow's thread runs its queued calls itself when it parks.
    # On a loaded machine the watcher may hand them to runners while the
    # workflow's thread waits to be scheduled: the best of three runs.
    names = []

    def where(i):
        names.append(thread_name())
        return i

    # A `para for` of one call starts 256 calls, all of which go to runners
    # if the first is slow (here, ctypes' first call): 1,500 leave room.
    thread_name()
    counts = []
    for _ in range(3):
        names.clear()
        oxiida.run("require where;\npara for i in range(1500) { x = where(i); }\n", {"where": where})
        assert len(names) == 1500
        assert names[0] == "oxiida-call", names[:3]
        counts.append({n: names.count(n) for n in set(names)})
    assert max(c.get("oxiida-run", 0) for c in counts) >= 750, counts


def test_a_quick_function_that_starts_to_wait_does_not_hold_up_the_queue():
    # Call 20 waits for call 40 (both among the first iterations a `para
    # for` starts): when the workflow's thread is the one stuck in call 20,
    # the watcher hands the queue behind it to runners.
    last = threading.Event()
    waited = []

    def step(i):
        if i == 20:
            waited.append(last.wait(20))
        if i == 40:
            last.set()
        return i

    start = time.monotonic()
    oxiida.run("require step;\npara for i in range(60) { x = step(i); }\n", {"step": step})
    assert waited == [True]
    assert time.monotonic() - start < 10


def in_flight_counter():
    lock = threading.Lock()
    state = {"now": 0, "most": 0}

    def hold(seconds):
        with lock:
            state["now"] += 1
            state["most"] = max(state["most"], state["now"])
        time.sleep(seconds)
        with lock:
            state["now"] -= 1
        return seconds

    return hold, state


def test_para_for_ramps_up_to_every_waiting_call_and_no_further_than_max_fanout():
    # A `para for` starts 64 iterations, and more while none finishes: 300
    # calls that wait are all in flight at once; `max_fanout` still caps them.
    arrived = []
    everyone = threading.Event()

    def gather(i):
        arrived.append(i)
        if len(arrived) == 300:
            everyone.set()
        return everyone.wait(20)

    start = time.monotonic()
    oxiida.run("require gather;\npara for i in range(300) { x = gather(i); }\n", {"gather": gather})
    assert everyone.is_set(), f"only {len(arrived)} of 300 calls were in flight at once"
    assert time.monotonic() - start < 10
    hold, state = in_flight_counter()
    oxiida.run("require hold;\npara for i in range(40) { x = hold(0.05); }\n", {"hold": hold}, max_fanout=8)
    assert 2 <= state["most"] <= 8


def test_sleeps_in_para_for_overlap():
    start = time.monotonic()
    oxiida.run("require time.sleep;\npara for i in range(200) { sleep(0.5); }\n")
    # 200 sleeps of 0.5 s in sequence would take 100 s; overlapped, one.
    assert time.monotonic() - start < 10


def test_prints_keep_their_order_within_a_branch_and_around_para(capsys):
    def say(i):
        print(f"call {i}")
        return i

    oxiida.run('require say;\nprint "before";\npara for i in range(50) { s = say(i); print "after " + str(s); }\nprint "end";\n', {"say": say})
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "before" and lines[-1] == "end"
    assert sorted(lines[1:-1]) == sorted([f"call {i}" for i in range(50)] + [f"after {i}" for i in range(50)])
    for i in range(50):
        assert lines.index(f"call {i}") < lines.index(f"after {i}")


@pytest.mark.parametrize("call", ["check(i)", "=check=(i)"])
def test_an_exception_from_a_batched_call_keeps_its_class_and_traceback(call):
    with pytest.raises(Odd, match="item 57 is odd") as raised:
        oxiida.run(f"require check;\npara for i in range(200) {{ x = {call}; }}\n", {"check": check})
    frames = traceback.format_exception(raised.value)
    text = "".join(frames)
    assert 'raise Odd(f"item {i} is odd")' in text, text
    if call.startswith("="):
        assert isinstance(raised.value.__cause__, oxiida.RemoteTraceback)


def test_many_quick_process_calls_in_para_for_give_every_result():
    seen = {}

    def record(i, r):
        seen[i] = r

    oxiida.run("require inc, record;\npara for i in range(1000) { record(i, =inc=(i)); }\n", {"inc": inc, "record": record})
    assert seen == {i: i + 1 for i in range(1000)}


def die_at(i, target):
    if i == target:
        os.kill(os.getpid(), signal.SIGKILL)
    return i


def test_a_worker_dying_mid_batch_fails_its_calls_and_the_pool_lives_on():
    with pytest.raises(oxiida.OxiidaError, match=r"the worker process \(pid \d+\) was killed by signal 9") as raised:
        oxiida.run("require die_at;\npara for i in range(400) { x = =die_at=(i, 150); }\n", {"die_at": die_at})
    assert "crashed" in str(raised.value)
    seen = {}

    def record(i, r):
        seen[i] = r

    oxiida.run("require die_at, record;\npara for i in range(400) { record(i, =die_at=(i, -1)); }\n", {"die_at": die_at, "record": record})
    assert seen == {i: i for i in range(400)}
    assert zombies_of(os.getpid()) == []


def test_a_function_that_cannot_load_fails_each_of_its_batched_calls():
    class Local:
        def __reduce__(self):
            raise TypeError("no pickling")

    def unpicklable(i):
        return i

    unpicklable.marker = Local()  # cloudpickle pickles function attributes
    with pytest.raises(oxiida.OxiidaError, match="could not send `unpicklable` to the worker"):
        oxiida.run("require unpicklable;\npara for i in range(20) { x = =unpicklable=(i); }\n", {"unpicklable": unpicklable})


def test_plain_calls_in_para_overlap_in_a_daemon_runner(private, tmp_path):  # noqa: F811
    # The daemon's runtime has no hook that says when the workflow's thread
    # sleeps (`parking`): calls queued there must still run, and overlap.
    # Two branches' calls each wait for the other's file.
    def rendezvous(name):
        import pathlib
        import time

        pathlib.Path(name).write_text("here")
        other = pathlib.Path(name[:-1] + ("b" if name.endswith("a") else "a"))
        deadline = time.monotonic() + 20
        while not other.exists():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    def inc(x):
        return x + 1

    src = (
        "require rendezvous, inc;\n"
        f'para {{ a = rendezvous("{tmp_path}/ra"); b = rendezvous("{tmp_path}/rb"); }}\n'
        "para for i in range(300) { x = inc(i); }\nlast = inc(299);\n"
    )
    out = oxiida.submit(src, wait=True)
    assert (out["a"], out["b"], out["last"]) == (True, True, 300)


def test_a_function_the_workers_cannot_load_fails_each_batched_call_alike():
    # Sent once in a batch, unloadable there: every call of the batch says so
    # (not a KeyError for the calls that did not carry the function).
    import sys
    import types

    module = types.ModuleType("oxiida_batch_host_only")
    exec("def answer(i):\n    return i\n", module.__dict__)
    sys.modules["oxiida_batch_host_only"] = module
    try:
        for _ in range(2):
            with pytest.raises(oxiida.OxiidaError, match="could not load `answer` in the worker"):
                oxiida.run("require answer;\npara for i in range(100) { x = =answer=(i); }\n", {"answer": module.answer})
        assert oxiida.run("require abs;\npara for i in range(100) { x = =abs=(-i); }\ny = =abs=(-2);\n")["y"] == 2
    finally:
        del sys.modules["oxiida_batch_host_only"]


SHARED = [1, "two"]
VALUES = [
    None,
    True,
    [0, 1, -1, 255, 256, 65535, 65536, 2**31 - 1, -(2**31), 2**31, 2**63 - 1, -(2**63)],
    [1.5, -0.0, float("inf"), 1e300],
    ["", "é", "a" * 300, "x" * 70000],
    [{"i": i, "s": str(i)} for i in range(1200)],
    (1, (2, (3,)), (), [4, 5]),
    {"nested": {"deeper": [[], {}, [[]]]}, "n": None},
    [SHARED, SHARED, {"k": SHARED}],
    [[[[[[[[[[1]]]]]]]]]],
]


@pytest.mark.parametrize("value", VALUES, ids=[f"v{i}" for i in range(len(VALUES))])
def test_a_result_read_straight_from_its_pickle_is_what_a_plain_call_gives(value):
    def give():
        return value

    plain = oxiida.run("require give;\nx = give();\n", {"give": give})["x"]
    process = oxiida.run("require give;\nx = =give=();\n", {"give": give})["x"]
    assert process == plain


@pytest.mark.parametrize(
    "value, words",
    [([2**64], "does not fit in 64 bits"), ([{1: "a"}], None), (["\udcff"], "not valid UTF-8")],
    ids=["bigint", "intkey", "surrogate"],
)
def test_a_result_the_direct_read_refuses_gives_what_a_plain_call_gives(value, words):
    def give():
        return value

    outcomes = []
    for call in ("give()", "=give=()"):
        try:
            outcomes.append(("ok", oxiida.run(f"require give;\nx = {call};\n", {"give": give})["x"]))
        except oxiida.OxiidaError as e:
            outcomes.append(("error", str(e).splitlines()[0].split(": ", 1)[-1]))
    assert outcomes[0] == outcomes[1], outcomes
    if words:
        assert outcomes[0][0] == "error" and words in outcomes[0][1]


def test_a_failing_branch_stops_the_calls_a_batched_para_for_has_not_started():
    # `para for` of one call hands its calls over in batches; a failure
    # beside it drops the queued ones, and those running end on their own.
    # At most `max_fanout` (1,024) are started before any call returns.
    ran = []
    first = threading.Event()

    def slow(i):
        ran.append(i)
        first.set()
        time.sleep(0.2)
        return i

    def boom():
        first.wait(10)
        time.sleep(0.05)
        raise ValueError("boom")

    src = "require slow, boom;\npara {\n  para for i in range(2000) { x = slow(i); }\n  boom();\n}\n"
    with pytest.raises(ValueError, match="boom"):
        oxiida.run(src, {"slow": slow, "boom": boom})
    # A runner that took a call just before the failure may enter it later
    # (it waits for the GIL among a thousand threads on a loaded machine),
    # one call per runner at most. Calls last 0.2 s: had the queued ones not
    # been dropped, the runners would have run all 2,000 within the second.
    time.sleep(1.0)
    started = len(ran)
    time.sleep(0.5)
    assert len(ran) == started, "no queued call started after the workflow ended"
    assert 0 < started < 2000


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_runs_para_calls_without_its_parents_kept_threads():
    # The parent's runner and watcher threads wait for the next workflow
    # after this one; a child made by fork has none of them.
    src = "require inc;\npara for i in range(200) { x = inc(i); }\nlast = inc(1);\n"
    assert oxiida.run(src, {"inc": inc})["last"] == 2
    pid = os.fork()
    if pid == 0:
        signal.alarm(20)
        try:
            ok = oxiida.run(src, {"inc": inc})["last"] == 2
        except BaseException:
            ok = False
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, f"the child ended with status {status:#x}"
