"""Per-workflow state, Ctrl-C from a terminal, and calls that run a
workflow or an event loop themselves (issue 10, points 3 to 5)."""

import asyncio
import os
import pathlib
import signal
import subprocess
import sys
import textwrap
import time

import pytest

import oxiida
from _support import wait_until, zombies_of


def where():
    return [os.getcwd(), os.environ.get("OXIIDA_TEST_PLACE")]


def test_process_calls_run_in_the_callers_folder_and_environment_at_run_time(tmp_path, monkeypatch):
    src = "require where;\nt = where();\np = =where=();\n"
    before = oxiida.run(src)  # starts a worker in this folder
    assert before["p"] == before["t"] == [os.getcwd(), None]
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OXIIDA_TEST_PLACE", "here")
    moved = oxiida.run(src)  # the same warm worker, told where the caller is now
    assert moved["p"] == moved["t"] == [str(tmp_path), "here"]
    monkeypatch.undo()
    assert oxiida.run(src)["p"] == before["p"], "a worker leaves a workflow's folder and environment after each call"


def wander():
    before = os.getcwd()
    os.chdir("/")
    return before


def test_a_function_that_changes_folder_does_not_move_the_next_call(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = oxiida.run("require wander;\na = =wander=();\nb = =wander=();\n")
    assert out == {"a": str(tmp_path), "b": str(tmp_path)}


def test_workers_run_in_a_process_group_of_their_own():
    def group():
        return [os.getpid(), os.getpgid(0)]

    pid, group_id = oxiida.run("require group;\np = =group=();\n", {"group": group})["p"]
    assert group_id == pid != os.getpgid(0)


def nested_run():
    return oxiida.run("x = 20 + 1;\n")["x"]


def with_asyncio():
    async def main():
        await asyncio.sleep(0)
        return 21

    return asyncio.run(main())


@pytest.mark.parametrize("function", [nested_run, with_asyncio])
@pytest.mark.parametrize(
    "src",
    ["require f;\nx = f();\n", "require f;\npara { x = f(); y = f(); }\n", "require f;\nx = =f=();\n"],
    ids=["lone", "para", "process"],
)
def test_a_called_function_may_run_a_workflow_or_an_event_loop(function, src):
    out = oxiida.run(src, {"f": function})
    assert out["x"] == 21 and out.get("y", 21) == 21


CTRL_C = """
import os, sys, time, oxiida
def pid(x):
    time.sleep(0.3)  # two at once: both workers start
    return os.getpid()
def stuck(path):
    open(path, "w").write(str(os.getpid()))
    time.sleep(60)
warm = oxiida.run("require pid;\\npara { a = =pid=(1); b = =pid=(2); }\\n")
print("workers", warm["a"], warm["b"], flush=True)
caught = 0
try:
    oxiida.run('require stuck;\\nx = =stuck=("%s");\\n' % sys.argv[1])
except KeyboardInterrupt:
    caught += 1
    print("KeyboardInterrupt", flush=True)
    time.sleep(0.5)  # a second KeyboardInterrupt would land here
print("caught", caught, flush=True)
start = time.monotonic()
after = oxiida.run("require pid;\\np = =pid=(3);\\n")["p"]
print("after", after, round(time.monotonic() - start, 3), flush=True)
sys.stdin.readline()
"""


def alive(pid):
    stat = pathlib.Path(f"/proc/{pid}/stat")
    try:
        return stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_ctrl_c_to_the_process_group_raises_once_and_spares_idle_workers(tmp_path):
    script = tmp_path / "ctrl_c.py"
    script.write_text(CTRL_C)
    pid_file = tmp_path / "worker.pid"
    env = dict(os.environ, OXIIDA_WORKERS="2")
    proc = subprocess.Popen(
        [sys.executable, str(script), str(pid_file)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, start_new_session=True,
    )
    try:
        first = proc.stdout.readline().split()
        assert first[0] == "workers", first
        workers = {int(first[1]), int(first[2])}
        assert len(workers) == 2
        assert wait_until(lambda: pid_file.exists() and pid_file.read_text(), 10)
        busy = int(pid_file.read_text())
        idle = (workers - {busy}).pop()
        sent = time.monotonic()
        os.killpg(proc.pid, signal.SIGINT)  # as a terminal's Ctrl-C does
        assert proc.stdout.readline().strip() == "KeyboardInterrupt"
        assert time.monotonic() - sent < 1.0
        assert proc.stdout.readline().split() == ["caught", "1"]
        after = proc.stdout.readline().split()
        assert after[0] == "after" and int(after[1]) == idle, "the idle worker survived and served the next call"
        assert float(after[2]) < 0.5
        assert wait_until(lambda: not alive(busy)), "the worker running the cancelled call was killed"
        assert alive(idle)
        assert zombies_of(proc.pid) == []
        proc.stdin.write("\n")
        proc.stdin.flush()
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert wait_until(lambda: not alive(idle)), "workers end with their host"


def test_workers_die_with_a_killed_host(tmp_path):
    script = tmp_path / "host.py"
    script.write_text(textwrap.dedent("""
        import os, sys, oxiida
        print(oxiida.run("require getpid;\\np = =getpid=();\\n", {"getpid": os.getpid})["p"], flush=True)
        sys.stdin.readline()
    """))
    proc = subprocess.Popen([sys.executable, str(script)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    worker = int(proc.stdout.readline())
    assert alive(worker)
    proc.kill()
    proc.wait()
    assert wait_until(lambda: not alive(worker)), "an orphaned worker lives on"
