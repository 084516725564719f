"""asyncio: `oxiida.run_async`, `async def` functions under `run`,
`run_async` and `=f=`, and the scope hint for `asyncio.to_thread`."""

import asyncio
import os
import threading
import time

import pytest

import oxiida
from _support import wait_until
from test_daemon import private  # noqa: F401 - the fixture of a daemon in private folders


async def double_later(x):
    await asyncio.sleep(0.3)
    return 2 * x


async def loop_id():
    return id(asyncio.get_running_loop())


async def fails(x):
    await asyncio.sleep(0)
    raise ValueError(f"async failure {x}")


async def worker_pid():
    await asyncio.sleep(0.01)
    return os.getpid()


def test_run_async_leaves_the_event_loop_free():
    # A 0.1 s ticker keeps at least 90% of its ticks while a 1 s workflow runs.
    async def main():
        stamps = []

        async def ticker():
            start = time.monotonic()
            k = 0
            while True:
                k += 1
                await asyncio.sleep(max(0.0, start + 0.1 * k - time.monotonic()))
                stamps.append(time.monotonic())

        task = asyncio.create_task(ticker())
        await asyncio.sleep(0)
        begin = time.monotonic()
        out = await oxiida.run_async("require time.sleep as sleep;\nsleep(1.0);\nx = 1;\n")
        end = time.monotonic()
        task.cancel()
        ticks = sum(begin <= s <= end for s in stamps)
        return out, ticks, int((end - begin) / 0.1)

    out, ticks, expected = asyncio.run(main())
    assert out == {"x": 1}
    assert expected >= 10
    assert ticks >= 0.9 * expected, f"{ticks} ticks of {expected}"


def test_run_async_returns_prints_and_raises_as_run_does(capsys):
    async def main():
        out = await oxiida.run_async('require identity;\nprint "from the workflow";\nx = identity(3);\n', {"identity": lambda v: v})
        with pytest.raises(ZeroDivisionError):
            await oxiida.run_async("require inverse;\ny = inverse(0);\n", {"inverse": lambda v: 1 / v})
        with pytest.raises(oxiida.OxiidaError, match=":1:5"):
            await oxiida.run_async("x = ;\n")
        return out

    assert asyncio.run(main()) == {"x": 3}
    assert "from the workflow\n" in capsys.readouterr().out


def test_run_async_finds_the_callers_names():
    async def main():
        def local_triple(v):
            return 3 * v

        return await oxiida.run_async("require local_triple;\nx = local_triple(2);\n")

    assert asyncio.run(main()) == {"x": 6}


def test_an_async_function_under_run_is_awaited_on_one_private_loop_per_workflow():
    start = time.monotonic()
    out = oxiida.run(
        "require double_later, loop_id;\npara { a = double_later(1); b = double_later(2); }\nc = loop_id();\nd = loop_id();\n"
    )
    elapsed = time.monotonic() - start
    assert (out["a"], out["b"]) == (2, 4)
    assert elapsed < 0.55, f"the two awaits did not overlap: {elapsed:.2f} s"
    assert out["c"] == out["d"]
    # The workflow's loop ends with it.
    assert wait_until(lambda: not any(t.name == "oxiida-async" for t in threading.enumerate()))


def test_an_async_function_under_run_async_is_awaited_on_the_callers_loop():
    async def main():
        caller_loop = asyncio.get_running_loop()

        async def on_which_loop():
            return asyncio.get_running_loop() is caller_loop

        return await oxiida.run_async(
            "require on_which_loop, double_later;\nmine = on_which_loop();\npara { a = double_later(1); b = double_later(2); }\n"
        )

    start = time.monotonic()
    out = asyncio.run(main())
    assert out == {"mine": True, "a": 2, "b": 4}
    assert time.monotonic() - start < 0.55
    assert not any(t.name == "oxiida-async" for t in threading.enumerate())


def test_an_async_function_with_process_mode_is_awaited_in_the_worker():
    out = oxiida.run("require double_later, worker_pid;\na = =double_later=(5);\np = =worker_pid=();\n")
    assert out["a"] == 10
    assert out["p"] != os.getpid()


@pytest.mark.parametrize("call", ["fails(1)", "=fails=(1)"])
def test_what_an_async_function_raises_is_raised_as_itself(call):
    with pytest.raises(ValueError, match="async failure 1"):
        oxiida.run(f"require fails;\nx = {call};\n")

    async def main():
        await oxiida.run_async(f"require fails;\nx = {call};\n")

    with pytest.raises(ValueError, match="async failure 1"):
        asyncio.run(main())


def test_cancelling_run_async_cancels_the_workflow():
    marks = []
    cancelled = threading.Event()

    def mark(i):
        marks.append(i)

    async def forever():
        try:
            await asyncio.sleep(100)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    async def main():
        source = "require mark, time.sleep as sleep;\ni = 0;\nwhile (i < 100) { mark(i); sleep(0.05); i = i + 1; }\n"
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(oxiida.run_async(source, {"mark": mark}), 0.3)
        seen = len(marks)
        await asyncio.sleep(0.4)
        assert len(marks) <= seen + 1, "the workflow went on after it was cancelled"
        # A coroutine the workflow awaits on this loop is cancelled with it.
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(oxiida.run_async("require forever;\nx = forever();\n", {"forever": forever}), 0.3)
        await asyncio.sleep(0.1)

    start = time.monotonic()
    asyncio.run(main())
    assert 0 < len(marks) < 20
    assert cancelled.is_set()
    assert time.monotonic() - start < 3


def test_a_missing_name_under_to_thread_says_to_pass_scope():
    async def main():
        return await asyncio.to_thread(oxiida.run, "require double_later;\nx = double_later(1);\n")

    with pytest.raises(oxiida.OxiidaError) as raised:
        asyncio.run(main())
    message = str(raised.value)
    assert "`double_later` is not found" in message
    assert "pass the functions as `scope=`" in message
    assert "thread.py" in message  # where it looked: the executor's frame

    async def with_scope():
        return await asyncio.to_thread(oxiida.run, "require double_later;\nx = double_later(1);\n", {"double_later": double_later})

    assert asyncio.run(with_scope()) == {"x": 2}


def test_a_given_scope_gets_no_hint():
    with pytest.raises(oxiida.OxiidaError) as raised:
        oxiida.run("require nowhere;\n", {})
    assert "scope=" not in str(raised.value)


def test_run_async_takes_inputs_as_run_does():
    async def main():
        out = await oxiida.run_async("require double_later;\ny = double_later(n);\n", inputs={"n": 4})
        with pytest.raises(oxiida.OxiidaError, match="input `n` cannot cross"):
            await oxiida.run_async("y = n;\n", inputs={"n": 2**64})
        return out

    assert asyncio.run(main()) == {"n": 4, "y": 8}


def test_a_submitted_workflow_awaits_its_async_functions(private):  # noqa: F811 - the daemon fixture
    async def shifted(x):  # a closure of this test: travels by value
        await asyncio.sleep(0.01)
        return x + 10

    out = oxiida.submit("require shifted;\na = shifted(1);\nb = =shifted=(2);\n", wait=True)
    assert out == {"a": 11, "b": 12}
