"""`=f=`: calls in a pool of worker processes."""

import os
import pathlib
import signal
import subprocess
import sys
import textwrap

import pytest

import oxiida
from _support import wait_until, zombies_of


def zombies():
    """Children of this process that died and were not reaped."""
    return zombies_of(os.getpid())


def test_closures_and_lambdas_run_in_another_process():
    factor = 3

    def scaled(x):
        return x * factor

    out = oxiida.run("require scaled, add_one, getpid;\na = =scaled=(5);\nb = =add_one=(1);\np = =getpid=();\n",
                     {"scaled": scaled, "add_one": lambda v: v + 1, "getpid": os.getpid})
    assert (out["a"], out["b"]) == (15, 2)
    assert out["p"] != os.getpid()


def test_workers_are_bounded_and_reused():
    out = oxiida.run("require getpid;\npids = [];\npara for i in range(24) { p = =getpid=(); }\nlast = =getpid=();\n", {"getpid": os.getpid})
    assert out["last"] != os.getpid()
    seen = set()
    for _ in range(3):
        seen.add(oxiida.run("require getpid;\np = =getpid=();\n", {"getpid": os.getpid})["p"])
    assert 1 <= len(seen) <= (os.cpu_count() or 1)


def test_a_remote_exception_comes_back_as_itself_with_its_traceback():
    def remote_fail(x):
        raise ValueError(f"remote bad {x}")

    with pytest.raises(ValueError, match="remote bad 7") as info:
        oxiida.run("require remote_fail;\nx = =remote_fail=(7);\n", file_name="wf.ox")
    cause = info.value.__cause__
    assert isinstance(cause, oxiida.RemoteTraceback)
    assert "in remote_fail" in str(cause) and "ValueError: remote bad 7" in str(cause)
    assert "in main" not in str(cause)  # the worker's own loop is not shown
    if sys.version_info >= (3, 11):
        assert any("wf.ox:2:5" in note for note in info.value.__notes__)


class NeedsTwo(Exception):
    def __init__(self, a, b):  # pickles, but cannot be rebuilt from its args
        super().__init__(f"{a}-{b}")


def test_an_exception_that_cannot_travel_is_an_oxiida_error_with_the_remote_traceback():
    def fails():
        raise NeedsTwo(1, 2)

    with pytest.raises(oxiida.OxiidaError) as info:
        oxiida.run("require fails;\nx = =fails=();\n", file_name="wf.ox")
    text = str(info.value)
    assert "NeedsTwo: 1-2" in text and "in a worker process" in text and "wf.ox:2:5" in text


def test_a_killed_worker_fails_only_its_call_and_is_replaced():
    def suicide():
        os.kill(os.getpid(), signal.SIGKILL)

    with pytest.raises(oxiida.OxiidaError, match=r"the worker process \(pid \d+\) was killed by signal 9"):
        oxiida.run("require suicide;\nx = =suicide=();\n")
    assert oxiida.run("require getpid;\np = =getpid=();\n", {"getpid": os.getpid})["p"] != os.getpid()
    assert zombies() == []


def test_scripts_are_not_rerun_and_workers_are_reaped_at_exit(tmp_path):
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent("""
        import os, oxiida
        print("top level ran", flush=True)   # no `if __name__ == "__main__"` guard
        def work(x):
            return os.getpid()
        out = oxiida.run("require work;\\npara { a = =work=(1); b = =work=(2); }\\n")
        print(out["a"], out["b"], flush=True)
    """))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines.count("top level ran") == 1, done.stdout
    for pid in lines[-1].split():
        stat = pathlib.Path(f"/proc/{pid}/stat")
        assert not stat.exists() or stat.read_text().rsplit(")", 1)[1].split()[0] != "Z", f"worker {pid} left a zombie"


def module_level(x):
    return x * 2


def test_module_level_functions_are_found_by_workers():
    # cloudpickle sends these by reference: the worker imports this module.
    assert oxiida.run("require module_level;\nx = =module_level=(21);\n")["x"] == 42


def test_idle_workers_exit_after_the_timeout(tmp_path):
    script = tmp_path / "idle.py"
    script.write_text(textwrap.dedent("""
        import os, pathlib, time, oxiida
        first = oxiida.run("require getpid;\\np = =getpid=();\\n", {"getpid": os.getpid})["p"]
        for _ in range(100):  # the timeout is 0.5 s; give it up to 10 s
            if not pathlib.Path(f"/proc/{first}").exists():
                break
            time.sleep(0.1)
        gone = not pathlib.Path(f"/proc/{first}").exists()
        second = oxiida.run("require getpid;\\np = =getpid=();\\n", {"getpid": os.getpid})["p"]
        print(gone, first != second)
    """))
    env = dict(os.environ, OXIIDA_WORKER_IDLE_SECS="0.5")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "True"], done.stdout


BOUNDED = """
import os, time, oxiida
def stamp(i):
    start = time.monotonic()
    time.sleep(0.2)
    return [os.getpid(), start, time.monotonic()]
stamps = []
oxiida.run("require stamp, record;\\npara for i in range(8) { record(=stamp=(i)); }\\n", {"stamp": stamp, "record": stamps.append})
print(stamps)
"""


def test_at_most_n_workers_run_at_most_n_calls_at_once(tmp_path):
    script = tmp_path / "bounded.py"
    script.write_text(BOUNDED)
    env = dict(os.environ, OXIIDA_WORKERS="2")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0, done.stderr
    stamps = eval(done.stdout)  # noqa: S307 - our own script's output
    assert len(stamps) == 8
    assert len({pid for pid, _, _ in stamps}) <= 2
    events = sorted([(start, 1) for _, start, _ in stamps] + [(end, -1) for _, _, end in stamps], key=lambda e: (e[0], e[1]))
    running = most = 0
    for _, step in events:
        running += step
        most = max(most, running)
    assert most == 2  # two at once (they did overlap), never three


CANCEL = """
import os, sys, time, oxiida
def stuck(path):
    open(path, "w").write(str(os.getpid()))
    time.sleep(60)
try:
    oxiida.run('require stuck;\\npara { a = =stuck=("%s"); b = 1; }\\n' % sys.argv[1])
except KeyboardInterrupt:
    print("KeyboardInterrupt", flush=True)
print(oxiida.run("require getpid;\\np = =getpid=();\\n", {"getpid": os.getpid})["p"], flush=True)
sys.stdin.readline()  # stay alive until the test has looked
"""


def test_ctrl_c_kills_the_worker_running_the_call_and_the_pool_goes_on(tmp_path):
    script = tmp_path / "cancel.py"
    script.write_text(CANCEL)
    pid_file = tmp_path / "worker.pid"
    proc = subprocess.Popen([sys.executable, str(script), str(pid_file)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert wait_until(lambda: pid_file.exists() and pid_file.read_text(), 10)
        worker = int(pid_file.read_text())
        proc.send_signal(signal.SIGINT)
        assert proc.stdout.readline().strip() == "KeyboardInterrupt"
        replacement = int(proc.stdout.readline())
        assert replacement != worker
        stat = pathlib.Path(f"/proc/{worker}/stat")
        # Killed, then reaped by the thread that waited for it.
        assert wait_until(lambda: not stat.exists()), "the cancelled call's worker still exists (running or a zombie)"
        assert zombies_of(proc.pid) == []
        proc.stdin.write("\n")
        proc.stdin.flush()
        assert proc.wait(timeout=30) == 0
    finally:
        proc.kill()
        proc.wait()


def test_a_function_writing_to_fd_1_or_reading_stdin_cannot_break_the_pipe():
    def noisy(x):
        os.write(1, b"\x00\x01 not a frame\n")  # as C code printing would
        print("printed")
        return [x, len(os.read(0, 10))]

    assert oxiida.run("require noisy;\nx = =noisy=(5);\n")["x"] == [5, 0]


def test_process_calls_take_keyword_arguments():
    def scaled(x, factor=2, *, offset=0):
        return (x * factor + offset, os.getpid())

    out = oxiida.run(
        "require scaled;\na = =scaled=(5, offset = 1);\nb = =scaled=(5);\nc = [];\n"
        "para for i in range(4) { r = =scaled=(i, factor = 0, offset = 7); }\nd = =scaled=(1, factor = 10, offset = 1);\n"
    )
    assert [out[k][0] for k in "abd"] == [11, 10, 11]
    assert out["a"][1] != os.getpid()
    with pytest.raises(TypeError, match="unexpected keyword argument 'factr'"):
        oxiida.run("require scaled;\nx = =scaled=(1, factr = 3);\n")
