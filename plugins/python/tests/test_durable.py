"""Durable workflows from Python (docs/durable.md): `oxiida.run(record=True)`
and `cache=True`, `oxiida.submit(cache=True)`, `oxiida.resume` after the
daemon was SIGKILLed mid-workflow, a changed source refused, and the task
counts of `oxiida.status`. Each test has its own daemon folders; a daemon
is started (`python -m oxiida daemon start`) only where the test says."""

import asyncio
import os
import signal
import subprocess
import sys
import time

import pytest

import oxiida
from _support import wait_until

#: The most tasks that can have run twice across the kill: the loop is
#: sequential, so 1 was running, plus a record still on its way to the
#: database when the daemon died (docs/durable.md).
MAX_TASKS = 4


class Folders:
    """This test's daemon folders, and its daemon when started."""

    def __init__(self, tmp_path):
        watched = tmp_path / "watched"
        watched.mkdir()
        self.dir = tmp_path
        self.env = dict(
            os.environ,
            OXIIDA_RUNTIME_DIR=str(tmp_path / "run"),
            OXIIDA_DATA_DIR=str(tmp_path / "data"),
            OXIIDA_WATCH=str(watched),
        )
        self.pid = None

    def daemon(self, *args):
        return subprocess.run(
            [sys.executable, "-m", "oxiida", "daemon", *args], env=self.env, capture_output=True, text=True, timeout=60
        )

    def start(self):
        started = self.daemon("start")
        assert started.returncode == 0, started.stderr
        self.pid = int(started.stdout.split("pid ")[1].split(",")[0])

    def kill_hard(self):
        os.kill(self.pid, signal.SIGKILL)
        # The daemon is not our child (it detached): wait until it is gone.
        assert wait_until(lambda: not os.path.exists(f"/proc/{self.pid}") or _zombie(self.pid), 10)
        self.pid = None

    def stop(self):
        self.daemon("stop")
        if self.pid is not None:
            try:
                os.kill(self.pid, signal.SIGKILL)  # stop failed: never leave one behind
            except ProcessLookupError:
                pass
            self.pid = None


def _zombie(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


@pytest.fixture
def folders(tmp_path, monkeypatch):
    f = Folders(tmp_path)
    for key in ("OXIIDA_RUNTIME_DIR", "OXIIDA_DATA_DIR"):
        monkeypatch.setenv(key, f.env[key])
    yield f
    f.stop()


def lines(path):
    try:
        with open(path) as f:
            return f.read().splitlines()
    except FileNotFoundError:
        return []


def test_a_recorded_run_is_a_workflow_with_its_task_counts(folders):
    log = folders.dir / "calls.txt"

    def step(i):
        with open(log, "a") as f:
            f.write(f"{i}\n")
        return i * 10

    def boom(i):
        raise ValueError(f"no {i}")

    source = "require step;\nxs = [];\nfor i in range(3) { xs = xs + [step(i)]; }\n"
    out = oxiida.run(source, record=True, file_name="recorded.ox")
    assert out == {"xs": [0, 10, 20], "i": 2}
    with pytest.raises(ValueError, match="no 7"):
        oxiida.run("require step, boom;\na = step(5);\nb = boom(7);\n", record=True, file_name="fails.ox")

    folders.start()
    failed, recorded = oxiida.workflows()
    assert (recorded.name, recorded.state) == ("recorded.ox", "succeeded")
    s = oxiida.status(recorded.id)
    assert s.source == source and s.cwd == os.getcwd()
    assert s.tasks == oxiida.TaskCounts(done=3) and s.tasks.total == 3
    records = oxiida.tasks(recorded.id)
    assert [(t.kind, t.what, t.status) for t in records] == [("call", "step", "succeeded")] * 3
    assert len({t.key for t in records}) == 3 and all(t.ended >= t.started for t in records)

    assert failed.name == "fails.ox" and failed.state == "failed"
    s = oxiida.status(failed.id)
    assert s.tasks == oxiida.TaskCounts(done=1, failed=1)
    assert "no 7" in s.error
    assert "no 7" in [t for t in oxiida.tasks(failed.id) if t.status == "failed"][0].error
    # Its functions lived in that process: there is nothing the daemon could run again.
    with pytest.raises(oxiida.OxiidaError, match=r"no recorded submission.*oxiida\.run\(record=True\)"):
        oxiida.resume(failed.id)

    # The daemon holds its database: a run is recorded by submitting it.
    with pytest.raises(oxiida.OxiidaError, match="the daemon holds its database"):
        oxiida.run(source, record=True)
    assert len(lines(log)) == 4, "nothing ran"


def _tools(body):
    """A `work` function of its own code: `body` is its return expression."""
    scope = {}
    exec(f"def work(i, log):\n    with open(log, 'a') as f:\n        f.write(f'{{i}}\\n')\n    return {body}\n", scope)
    return scope["work"]


def test_a_cached_run_runs_nothing_whose_identity_is_unchanged(folders):
    log = str(folders.dir / "calls.txt")
    source = "require work;\nxs = [];\nfor i in range(3) { xs = xs + [work(i, log)]; }\n"
    work = _tools("i * 2")
    assert oxiida.run(source, {"work": work}, inputs={"log": log}, cache=True)["xs"] == [0, 2, 4]
    assert len(lines(log)) == 3
    again = _tools("i * 2")  # the same code, another function object
    assert oxiida.run(source, {"work": again}, inputs={"log": log}, cache=True)["xs"] == [0, 2, 4]
    assert len(lines(log)) == 3, "a cached task ran again"
    # Without cache=True nothing is reused.
    assert oxiida.run(source, {"work": again}, inputs={"log": log})["xs"] == [0, 2, 4]
    assert len(lines(log)) == 6
    # A changed body is another identity: it runs, and its results are new.
    changed = _tools("i * 3")
    assert oxiida.run(source, {"work": changed}, inputs={"log": log}, cache=True)["xs"] == [0, 3, 6]
    assert len(lines(log)) == 9
    # A changed argument too: only the new one runs.
    assert oxiida.run("require work;\na = work(2, log);\nb = work(9, log);\n", {"work": changed}, inputs={"log": log}, cache=True) == {
        "a": 6, "b": 27, "log": log,
    }
    assert lines(log)[9:] == ["9"]

    folders.start()
    runs = oxiida.workflows()
    assert [r.state for r in runs] == ["succeeded"] * 4  # the run without cache was not recorded
    assert [oxiida.status(r.id).tasks for r in runs] == [
        oxiida.TaskCounts(done=1, cached=1),
        oxiida.TaskCounts(done=3),
        oxiida.TaskCounts(cached=3),
        oxiida.TaskCounts(done=3),
    ]
    assert {t.status for t in oxiida.tasks(runs[2].id)} == {"cached"}


def test_the_code_fingerprint_follows_helpers_classes_and_partials_not_line_numbers(folders):
    log = str(folders.dir / "calls.txt")

    def scope(code):
        found = {}
        exec(code, found)
        return found

    helper = "def helper(i):\n    return i + {}\n\ndef work(i, log):\n    with open(log, 'a') as f:\n        f.write('x\\n')\n    return helper(i)\n"
    source = "require work;\na = work(1, log);\n"
    ran = lambda: len(lines(log))  # noqa: E731
    assert oxiida.run(source, scope(helper.format(1)), inputs={"log": log}, cache=True)["a"] == 2 and ran() == 1
    # Moved down three lines: the same code, the same identity.
    assert oxiida.run(source, scope("\n\n\n" + helper.format(1)), inputs={"log": log}, cache=True)["a"] == 2 and ran() == 1
    # The helper it calls changed: it runs again.
    assert oxiida.run(source, scope(helper.format(5)), inputs={"log": log}, cache=True)["a"] == 6 and ran() == 2

    klass = "class Tool:\n    @staticmethod\n    def work(i, log):\n        with open(log, 'a') as f:\n            f.write('x\\n')\n        return i * {}\n"
    source = "require Tool.work;\na = work(2, log);\n"
    assert oxiida.run(source, scope(klass.format(2)), inputs={"log": log}, cache=True)["a"] == 4 and ran() == 3
    assert oxiida.run(source, scope(klass.format(2)), inputs={"log": log}, cache=True)["a"] == 4 and ran() == 3
    assert oxiida.run(source, scope(klass.format(7)), inputs={"log": log}, cache=True)["a"] == 14 and ran() == 4

    import functools

    base = scope(klass.format(3))["Tool"].work
    source = "require bound;\na = bound(log);\n"
    assert oxiida.run(source, {"bound": functools.partial(base, 1)}, inputs={"log": log}, cache=True)["a"] == 3 and ran() == 5
    assert oxiida.run(source, {"bound": functools.partial(base, 1)}, inputs={"log": log}, cache=True)["a"] == 3 and ran() == 5
    assert oxiida.run(source, {"bound": functools.partial(base, 2)}, inputs={"log": log}, cache=True)["a"] == 6 and ran() == 6


def test_run_async_records_caches_and_a_cancelled_one_is_interrupted(folders):
    log = str(folders.dir / "calls.txt")
    source = "require work;\nxs = [];\nfor i in range(3) { xs = xs + [work(i, log)]; }\n"
    scope = {"work": _tools("i - 1")}
    first = asyncio.run(oxiida.run_async(source, scope, inputs={"log": log}, cache=True))
    second = asyncio.run(oxiida.run_async(source, scope, inputs={"log": log}, cache=True))
    assert first == second and first["xs"] == [-1, 0, 1] and len(lines(log)) == 3

    slow = _tools("time.sleep(0.2) or i")
    slow.__globals__["time"] = time
    slow_log = str(folders.dir / "slow.txt")

    async def cancelled():
        long = source.replace("range(3)", "range(50)")
        task = asyncio.ensure_future(oxiida.run_async(long, {"work": slow}, inputs={"log": slow_log}, record=True))
        while len(lines(slow_log)) < 3:
            await asyncio.sleep(0.02)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(cancelled())
    # The recording ends on the workflow's thread, once its running call returns.
    time.sleep(0.5)
    folders.start()
    stopped, cached, recorded = oxiida.workflows()
    assert oxiida.status(recorded.id).tasks == oxiida.TaskCounts(done=3)
    assert oxiida.status(cached.id).tasks == oxiida.TaskCounts(cached=3)
    assert stopped.state == "interrupted"
    # The call running at the cancel is recorded as failed (cancelled).
    counts = oxiida.status(stopped.id).tasks
    assert 2 <= counts.done < 50 and counts.failed <= 1 and counts.done + counts.failed <= len(lines(slow_log)), counts


def test_submit_with_cache_reuses_the_daemons_records(folders):
    folders.start()
    log = str(folders.dir / "calls.txt")
    source = "require work;\nxs = [];\nfor i in range(3) { xs = xs + [work(i, log)]; }\n"
    scope = {"work": _tools("i + 100")}
    first = oxiida.submit(source, scope, inputs={"log": log}, wait=True, cache=True)
    assert first["xs"] == [100, 101, 102] and len(lines(log)) == 3
    second = oxiida.submit(source, scope, inputs={"log": log}, cache=True)
    assert oxiida.result(second, timeout=60) == first
    assert len(lines(log)) == 3, "a cached task ran again"
    assert oxiida.status(second).tasks == oxiida.TaskCounts(cached=3)
    # Off by default.
    third = oxiida.submit(source, scope, inputs={"log": log})
    assert oxiida.result(third, timeout=60) == first and len(lines(log)) == 6
    assert oxiida.status(third).tasks == oxiida.TaskCounts(done=3)
    changed = {"work": _tools("i + 200")}
    assert oxiida.submit(source, changed, inputs={"log": log}, wait=True, cache=True)["xs"] == [200, 201, 202]
    assert len(lines(log)) == 9


WORKFLOW = "require step;\ntotal = 0;\nsquares = [];\nfor i in range(40) {\n    r = step(i);\n    total = total + r;\n    squares = squares + [r];\n}\nprint total;\n"


def test_a_killed_daemons_workflow_resumes_where_it_stopped(folders):
    log = str(folders.dir / "lines.txt")

    def step(i):
        with open(log, "a") as f:
            f.write(f"{i}\n")
        time.sleep(0.05)
        return i * i

    # The reference: the same workflow, uninterrupted, into another file.
    reference_log = str(folders.dir / "reference.txt")

    def reference_step(i):
        with open(reference_log, "a") as f:
            f.write(f"{i}\n")
        return i * i

    reference = oxiida.run(WORKFLOW, {"step": reference_step})
    assert len(lines(reference_log)) == 40

    folders.start()
    id = oxiida.submit(WORKFLOW, {"step": step})
    assert wait_until(lambda: len(lines(log)) >= 20, 60), lines(log)
    folders.kill_hard()
    # What was running at the kill finishes or dies now.
    time.sleep(0.5)
    at_kill = len(lines(log))
    assert 20 <= at_kill < 40, f"killed after {at_kill} tasks"

    folders.start()
    assert oxiida.status(id).state == "interrupted"
    recorded = oxiida.status(id).tasks
    assert recorded.done + MAX_TASKS >= at_kill and recorded.done <= at_kill, (recorded, at_kill)

    # A changed source is refused, with the daemon's reason; nothing runs.
    with pytest.raises(oxiida.OxiidaError, match="changed since it ran"):
        oxiida.resume(id, source=WORKFLOW.replace("range(40)", "range(41)"))
    assert len(lines(log)) == at_kill

    out = oxiida.resume(id, wait=True, source=WORKFLOW)
    assert out == reference
    ran = lines(log)
    assert 40 <= len(ran) <= 40 + MAX_TASKS, f"{len(ran)} lines after the resume ({at_kill} at the kill)"
    assert sorted(set(ran), key=int) == [str(i) for i in range(40)]
    resumed = oxiida.workflows(limit=1)[0]
    assert resumed.id > id and resumed.state == "succeeded"
    counts = oxiida.status(resumed.id).tasks
    assert counts.replayed == recorded.done and counts.done == 40 - recorded.done, counts
    assert oxiida.output(resumed.id) == f"{reference['total']}\n"

    # Resumed once: a second resume is refused, saying which one continues it.
    with pytest.raises(oxiida.OxiidaError, match=f"already resumed, as workflow {resumed.id}"):
        oxiida.resume(id)


def test_resume_of_a_failed_workflow_and_its_refusals(folders):
    folders.start()
    flag = folders.dir / "fixed"
    log = str(folders.dir / "calls.txt")

    def step(i):
        with open(log, "a") as f:
            f.write(f"{i}\n")
        if i == 2 and not flag.exists():
            raise RuntimeError("not yet")
        return i

    source = "require step;\nxs = [];\nfor i in range(4) { xs = xs + [step(i)]; }\n"
    with pytest.raises(RuntimeError, match="not yet"):
        oxiida.submit(source, {"step": step}, wait=True)
    failed = oxiida.workflows(limit=1)[0]
    assert failed.state == "failed"
    assert oxiida.status(failed.id).tasks == oxiida.TaskCounts(done=2, failed=1)

    with pytest.raises(oxiida.OxiidaError, match="changed since it ran") as info:
        oxiida.resume(failed.id, source=source + "\n")
    assert not isinstance(info.value, oxiida.UnknownWorkflowError)

    flag.write_text("")  # the cause is fixed: resume
    new = oxiida.resume(failed.id)
    assert isinstance(new, int) and new > failed.id
    assert oxiida.result(new, timeout=60) == {"xs": [0, 1, 2, 3], "i": 3}
    assert lines(log) == ["0", "1", "2", "2", "3"]  # the tasks that succeeded ran once
    assert oxiida.status(new).tasks == oxiida.TaskCounts(done=2, replayed=2)

    with pytest.raises(oxiida.OxiidaError, match="only an interrupted or failed workflow can be resumed"):
        oxiida.resume(new)
    with pytest.raises(oxiida.UnknownWorkflowError):
        oxiida.resume(10_000)
    with pytest.raises(TypeError):
        oxiida.resume("1")  # type: ignore[arg-type]


def pid():
    return os.getpid()


def test_a_recorded_f_call_names_the_worker_process_that_ran_it(folders):
    # `=f=` runs in a pool worker: its record names that process, not this one.
    # `w` runs inline; the `para` branches' calls go to the pool in batches.
    source = "require pid;\nw = =pid=();\nh = pid();\npara { a = =pid=(); b = =pid=(); c = =pid=(); d = =pid=(); }\n"
    out = oxiida.run(source, record=True, file_name="who.ox")
    assert out["h"] == os.getpid() and out["w"] != os.getpid()
    out["ps"] = [out[v] for v in "abcd"]
    folders.start()
    (recorded,) = oxiida.workflows()
    records = oxiida.tasks(recorded.id)
    f_calls = [t for t in records if t.kind == "call=f="]
    (plain,) = [t for t in records if t.kind == "call"]
    assert len(f_calls) == 5
    assert plain.worker == f"pid {os.getpid()}"
    # Each `=f=` record names the worker whose pid that call returned.
    assert {t.worker for t in f_calls} == {f"pid {p}" for p in [out["w"], *out["ps"]]}
    assert all(t.worker != plain.worker for t in f_calls)
