"""`=f=` calls on an executor (issue 14): a real Dask cluster started here
on 127.0.0.1 (a `dask scheduler` and two `dask worker --nthreads 1
--nworkers 1` processes, shared by the module's tests and killed at
teardown), ProcessPoolExecutor and loky. `distributed` and `loky` are
installed in the test venv by scripts/test.sh; the package does not need them."""

import asyncio
import functools
import multiprocessing
import os
import pathlib
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor

import pytest

import oxiida
from _support import daemon as run_daemon, daemon_env, stop_daemon, wait_until

distributed = pytest.importorskip("distributed", reason="scripts/test.sh installs distributed in the test venv")
loky = pytest.importorskip("loky", reason="scripts/test.sh installs loky in the test venv")

HERE = pathlib.Path(__file__).resolve().parent
# One failure allowed (Dask's default is 3): a task that kills every worker
# it runs on gives up after two deaths, which keeps the test short.
ALLOWED_FAILURES = 1


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def dask_command(*args):
    return [sys.executable, "-m", "distributed.cli." + args[0], *args[1:]]


class Cluster:
    """A scheduler and two single-threaded workers (each a nanny and its
    worker process), in a process group each, killed at teardown."""

    def __init__(self, log_dir):
        self.port = free_port()
        self.address = f"tcp://127.0.0.1:{self.port}"
        self.procs = []
        env = dict(
            os.environ,
            DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES=str(ALLOWED_FAILURES),
            # The workers import this folder's modules (the tests' functions).
            PYTHONPATH=os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
        )
        self.env = env
        self.log_dir = log_dir
        try:
            self._start(dask_command("dask_scheduler", "--host", "127.0.0.1", "--port", str(self.port), "--no-dashboard"), "scheduler")
            for i in range(2):
                self.start_worker(f"worker{i}")
        except BaseException:
            self.kill()  # what did start
            raise

    def _start(self, argv, name):
        log = open(self.log_dir / f"{name}.log", "ab")
        proc = subprocess.Popen(argv, env=self.env, stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        self.procs.append(proc)
        return proc

    def start_worker(self, name):
        argv = dask_command(
            "dask_worker", self.address, "--nthreads", "1", "--nworkers", "1", "--host", "127.0.0.1", "--no-dashboard", "--name", name
        )
        return self._start(argv, name)

    def kill(self):
        for proc in self.procs:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for proc in self.procs:
            proc.wait(timeout=10)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = Cluster(tmp_path_factory.mktemp("dask"))
    try:
        client = distributed.Client(c.address, timeout="30s", set_as_default=False)
        c.client = client
        try:
            client.wait_for_workers(2, timeout=60)
            yield c
        finally:
            client.close()
    finally:
        c.kill()


@pytest.fixture
def client(cluster):
    """The cluster's client, once both workers are up (a test may have killed one)."""
    cluster.client.wait_for_workers(2, timeout=60)
    return cluster.client


def busy(n):
    """About 0.25 s of CPU; the pid says which worker ran it."""
    deadline = time.process_time() + 0.25
    total = 0
    while time.process_time() < deadline:
        total += sum(range(n))
    return os.getpid()


def fan_out(call, n, names="busy"):
    """A workflow that runs `call` n times in one `para` block, its results in `r`."""
    branches = " ".join(f"r{i} = {call.format(i=i)};" for i in range(n))
    return f"require {names};\npara {{ {branches} }}\nr = [{', '.join(f'r{i}' for i in range(n))}];\n"


def test_fan_out_uses_both_dask_workers(client):
    worker_pids = set(client.run(os.getpid).values())
    assert len(worker_pids) == 2
    out = oxiida.run(fan_out("=busy=(1000)", 8), executor=client)
    assert len(out["r"]) == 8
    assert set(out["r"]) == worker_pids, (out["r"], worker_pids)
    assert os.getpid() not in out["r"]


def test_an_address_string_connects_and_keyword_arguments_pass(cluster, client):
    def scaled(x, factor=1, key="k"):  # `key` is not Dask's `key=`
        return [x * factor, key, os.getpid()]

    out = oxiida.run('require scaled;\na = =scaled=(2, factor = 3, key = "mine");\n', executor="dask://" + cluster.address[len("tcp://"):])
    assert out["a"][:2] == [6, "mine"]
    assert out["a"][2] in set(client.run(os.getpid).values())


def test_oxiida_executor_sets_the_default_and_pool_overrides_it(cluster, client, monkeypatch):
    monkeypatch.setenv("OXIIDA_EXECUTOR", cluster.address)
    workers = set(client.run(os.getpid).values())
    assert oxiida.run("require os.getpid;\np = =getpid=();\n")["p"] in workers
    local = oxiida.run("require os.getpid;\np = =getpid=();\n", executor="pool")["p"]
    assert local not in workers and local != os.getpid()


def test_handles_cross_by_the_executor_s_serialization(client):
    numpy = pytest.importorskip("numpy")

    def make(n):
        return numpy.arange(n)  # no plain form: a handle, sent back by Dask

    def total(a):
        return [int(a.sum()), os.getpid()]

    out = oxiida.run("require make, total;\na = =make=(5);\nt = =total=(a);\n", executor=client)
    assert isinstance(out["a"], numpy.ndarray) and out["a"].tolist() == [0, 1, 2, 3, 4]
    assert out["t"][0] == 10 and out["t"][1] != os.getpid()


class Refused(Exception):
    pass


def refuse(x):
    raise Refused(f"no {x}")  # the line the remote traceback names


def test_an_exception_on_a_worker_is_raised_as_itself_with_the_remote_traceback(client):
    import traceback

    with pytest.raises(Refused, match="no 7") as info:
        oxiida.run("require refuse;\nx = =refuse=(7);\n", executor=client, file_name="wf.ox")
    assert type(info.value) is Refused
    text = "".join(traceback.format_exception(info.value))
    assert f"line {refuse.__code__.co_firstlineno + 1}, in refuse" in text, text
    assert any("wf.ox:2:5" in note for note in info.value.__notes__)


def test_an_unreachable_scheduler_is_a_clear_error_before_anything_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT", "1s")
    import dask

    dask.config.refresh()
    marker = tmp_path / "ran"
    try:
        with pytest.raises(oxiida.OxiidaError, match=r"cannot reach the Dask scheduler at tcp://127.0.0.1:\d+ .*nothing was run"):
            oxiida.run("open(m);\nx = =busy=(1);\n", {"open": open, "busy": busy}, executor=f"dask://127.0.0.1:{free_port()}", inputs={"m": str(marker)})
    finally:
        monkeypatch.undo()
        dask.config.refresh()
    assert not marker.exists()
    with pytest.raises(oxiida.OxiidaError, match="unknown executor `loky`"):
        oxiida.run("x = 1;\n", executor="loky")
    with pytest.raises(TypeError, match="executor must be"):
        oxiida.run("x = 1;\n", executor=42)


def test_max_tasks_bounds_the_calls_in_flight_on_dask(client):
    def span(_):
        start = time.time()
        time.sleep(0.3)
        return [start, time.time()]

    out = oxiida.run(fan_out("=span=({i})", 4, "span"), executor=client, max_tasks=1)
    spans = sorted(out["r"])
    assert all(a[1] <= b[0] + 0.01 for a, b in zip(spans, spans[1:])), spans


def sleeper(seconds):
    time.sleep(seconds)
    return seconds


def spinner(seconds):
    """Pure-Python CPU for `seconds`: a worker can interrupt it."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        pass
    return seconds


def refuse_later(x):
    time.sleep(1)  # the spinner has started by then
    raise Refused(f"no {x}")


def test_a_failing_branch_cancels_its_siblings_futures_and_frees_the_workers(client):
    start = time.monotonic()
    with pytest.raises(Refused):
        oxiida.run(
            "require refuse_later, spinner;\npara { a = =spinner=(30); b = =refuse_later=(1); }\n",
            executor=client,
        )
    assert wait_until(lambda: not any(client.processing().values()), 10), client.processing()
    # The spinner was interrupted on its worker: both are free again at once.
    assert client.gather(client.map(sleeper, [0, 0], pure=False)) == [0, 0]
    assert time.monotonic() - start < 15


def test_cancelling_run_async_cancels_its_futures(client):
    async def main():
        task = asyncio.ensure_future(oxiida.run_async("require spinner;\npara { a = =spinner=(30); b = =spinner=(30); }\n", executor=client))
        assert await asyncio.to_thread(wait_until, lambda: sum(len(v) for v in client.processing().values()) == 2, 20)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    start = time.monotonic()
    asyncio.run(main())
    assert wait_until(lambda: not any(client.processing().values()), 10), client.processing()
    assert client.gather(client.map(sleeper, [0, 0], pure=False)) == [0, 0]  # the spinners were interrupted
    assert time.monotonic() - start < 25


def test_the_same_workflow_runs_on_a_process_pool_and_on_loky():
    source = fan_out("=busy=(1000)", 4)
    context = multiprocessing.get_context("forkserver")
    with ProcessPoolExecutor(2, mp_context=context) as pool:
        pids = oxiida.run(source, executor=pool)["r"]
        assert len(pids) == 4 and os.getpid() not in pids
        with pytest.raises(Refused, match="no 3") as info:
            oxiida.run("require refuse;\nx = =refuse=(3);\n", executor=pool)
        assert "in refuse" in str(info.value.__cause__)  # concurrent.futures' remote traceback
    executor = loky.get_reusable_executor(max_workers=2)
    pids = oxiida.run(source, executor=executor)["r"]
    assert len(pids) == 4 and os.getpid() not in pids
    with pytest.raises(Refused, match="no 4"):
        oxiida.run("require refuse;\nx = =refuse=(4);\n", executor=executor)


def test_a_forking_process_pool_works_too():
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("fork")) as pool:
        assert oxiida.run("require busy;\np = =busy=(10);\n", executor=pool)["p"] != os.getpid()


def test_a_script_s_functions_travel_by_value_through_the_cli(cluster, client, tmp_path):
    """`oxiida run --plugin python=script.py --executor ADDRESS`: the script's
    functions run on the cluster's workers, which cannot import the script."""
    target = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", HERE.parents[2] / "target")) / "debug"
    binary, plugin = target / "oxiida", target / "liboxiida_python.so"
    assert binary.exists() and plugin.exists(), f"build the CLI and the plugin first: cargo build -p oxiida-cli -p oxiida-python ({target})"
    script = tmp_path / "steps.py"
    script.write_text("import os\n\ndef where(x):\n    return [x + 1, os.getpid()]\n\ndef boom(x):\n    raise ValueError(f'bad {x}')\n")
    workflow = tmp_path / "wf.ox"
    workflow.write_text(fan_out("=where=({i})", 4, "where") + "print r;\n")
    import site

    env = dict(os.environ, PYTHONPATH=os.pathsep.join(site.getsitepackages()))
    env.pop("OXIIDA_EXECUTOR", None)
    run = lambda *args: subprocess.run([str(binary), "run", f"--plugin={plugin}={script}", *args], env=env, capture_output=True, text=True, timeout=120)  # noqa: E731
    done = run("--executor", cluster.address, str(workflow))
    assert done.returncode == 0, done.stderr
    pairs = eval(done.stdout.strip())  # noqa: S307 - the workflow's own print of a list
    assert sorted(p[0] for p in pairs) == [1, 2, 3, 4]
    assert {p[1] for p in pairs} <= set(client.run(os.getpid).values())

    workflow.write_text("require boom;\nx = =boom=(1);\n")
    failed = run("--executor", cluster.address, str(workflow))
    assert failed.returncode == 1 and "ValueError: bad 1" in failed.stderr, failed.stderr

    env["DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT"] = "1s"
    unreachable = run("--executor", f"dask://127.0.0.1:{free_port()}", str(workflow))
    assert unreachable.returncode == 2 and "cannot reach the Dask scheduler" in unreachable.stderr, unreachable.stderr


def test_ctrl_c_on_the_cli_leaves_no_task_on_the_cluster(cluster, client, tmp_path):
    target = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", HERE.parents[2] / "target")) / "debug"
    script = tmp_path / "steps.py"
    # Short: the CLI's process dies and the scheduler forgets its tasks, but
    # nothing interrupts them on the workers, which run them to their end.
    script.write_text("import time\n\ndef nap(x):\n    time.sleep(x)\n    return x\n")
    workflow = tmp_path / "wf.ox"
    workflow.write_text("require nap;\npara { a = =nap=(6); b = =nap=(6); }\n")
    import site

    env = dict(os.environ, PYTHONPATH=os.pathsep.join(site.getsitepackages()))
    proc = subprocess.Popen(
        [str(target / "oxiida"), "run", f"--plugin={target / 'liboxiida_python.so'}={script}", "--executor", cluster.address, str(workflow)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert wait_until(lambda: sum(len(v) for v in client.processing().values()) == 2, 30), client.processing()
        started = time.monotonic()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 130
    finally:
        proc.kill()
        proc.wait()
    assert wait_until(lambda: not any(client.processing().values()), 10), client.processing()
    assert time.monotonic() - started < 5  # cancelled, not finished


def test_ctrl_c_under_oxiida_run_cancels_and_interrupts_its_calls(cluster, client, tmp_path):
    script = tmp_path / "main.py"
    script.write_text(
        "import sys, time\nimport oxiida\n\n"
        "def spin(seconds):\n    end = time.monotonic() + seconds\n    while time.monotonic() < end:\n        pass\n\n"
        "try:\n    oxiida.run('require spin;\\npara { a = =spin=(30); b = =spin=(30); }\\n', executor=sys.argv[1])\n"
        "except KeyboardInterrupt:\n    print('interrupted', flush=True)\n"
    )
    proc = subprocess.Popen([sys.executable, str(script), cluster.address], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert wait_until(lambda: sum(len(v) for v in client.processing().values()) == 2, 30), client.processing()
        started = time.monotonic()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
        assert "interrupted" in out, err
    finally:
        proc.kill()
        proc.wait()
    assert wait_until(lambda: not any(client.processing().values()), 10), client.processing()
    assert client.gather(client.map(sleeper, [0, 0], pure=False)) == [0, 0]  # the spinners were interrupted
    assert time.monotonic() - started < 15


def test_workflow_kill_in_a_daemon_started_with_executor_cancels_its_futures(cluster, client, tmp_path, monkeypatch):
    """`python -m oxiida daemon start --executor ADDRESS`: submitted workflows'
    `=f=` calls run on the cluster, and `workflow kill` leaves no task there."""
    env = daemon_env(tmp_path, monkeypatch, PYTHONPATH=str(HERE))  # the runners import this module's functions
    daemon = functools.partial(run_daemon, env)
    refused = daemon("start", "--executor", "loky://4")
    assert refused.returncode == 1 and "unknown executor `loky://4`" in refused.stderr, refused.stderr
    started = daemon("start", "--executor", cluster.address)
    assert started.returncode == 0, started.stderr
    pid = int(started.stdout.split("pid ")[1].split(",")[0])
    try:
        workers = set(client.run(os.getpid).values())
        assert oxiida.submit("require os.getpid;\np = =getpid=();\n", wait=True)["p"] in workers
        id = oxiida.submit("require spinner;\npara { a = =spinner=(30); b = =spinner=(30); }\n")
        assert wait_until(lambda: sum(len(v) for v in client.processing().values()) == 2, 30), client.processing()
        killed = time.monotonic()
        oxiida.kill(id)
        assert oxiida.status(id).state == "killed"
        assert wait_until(lambda: not any(client.processing().values()), 10), client.processing()
        assert client.gather(client.map(sleeper, [0, 0], pure=False)) == [0, 0]  # the spinners were interrupted
        assert time.monotonic() - killed < 15
        # A submitted workflow may name its own executor: here, oxiida's pool.
        local = oxiida.submit("require os.getpid;\np = =getpid=();\n", wait=True, executor="pool")["p"]
        assert local not in workers
    finally:
        stop_daemon(env, pid)


# Last: these kill workers, which their nannies restart.
def slow_then_pid(marker):
    """Writes its pid to `marker` (each attempt), then works for a while."""
    with open(marker, "a") as f:
        f.write(f"{os.getpid()}\n")
    time.sleep(1.5)
    return os.getpid()


def test_a_worker_killed_mid_call_is_retried_by_dask(client, tmp_path):
    marker = tmp_path / "attempts"
    result = {}

    def run():
        result["out"] = oxiida.run("require slow_then_pid;\np = =slow_then_pid=(m);\n", executor=client, inputs={"m": str(marker)})

    thread = threading.Thread(target=run)
    thread.start()
    assert wait_until(lambda: marker.exists() and marker.read_text().strip(), 30)
    first = int(marker.read_text().split()[0])
    os.kill(first, signal.SIGKILL)
    thread.join(60)
    assert not thread.is_alive()
    attempts = [int(p) for p in marker.read_text().split()]
    assert len(attempts) == 2 and attempts[0] == first
    assert result["out"]["p"] == attempts[1] != first


def suicide():
    os.kill(os.getpid(), signal.SIGKILL)


def test_a_task_that_kills_every_worker_is_a_killed_worker_error_naming_the_worker(client):
    with pytest.raises(distributed.scheduler.KilledWorker) as info:
        oxiida.run("require suicide;\nx = =suicide=();\n", executor=client)
    notes = "\n".join(info.value.__notes__)
    assert "`=f=` call of `suicide`" in notes and "tcp://127.0.0.1:" in notes, notes
    assert f"after {ALLOWED_FAILURES + 1} attempts" in notes


def worker_address():
    return distributed.get_worker().address


def pid_here():
    return os.getpid()


def test_a_recorded_call_on_an_executor_names_the_worker_that_ran_it(client, tmp_path, monkeypatch):
    """`oxiida.run(record=True)`: a `=f=` call's record names the Dask
    worker's address, on a process pool the pool process's pid."""
    env = daemon_env(tmp_path, monkeypatch, PYTHONPATH=str(HERE))
    source = "require worker_address;\npara { a = =worker_address=(); b = =worker_address=(); }\n"
    out = oxiida.run(source, executor=client, record=True, file_name="dask.ox")
    assert {out["a"], out["b"]} <= set(client.scheduler_info()["workers"])
    context = multiprocessing.get_context("forkserver")
    with ProcessPoolExecutor(1, mp_context=context) as pool:
        p = oxiida.run("require pid_here;\np = =pid_here=();\n", executor=pool, record=True, file_name="pool.ox")["p"]
    assert p != os.getpid()
    daemon = functools.partial(run_daemon, env)
    started = daemon("start")
    assert started.returncode == 0, started.stderr
    pid = int(started.stdout.split("pid ")[1].split(",")[0])
    try:
        by_name = {w.name: w.id for w in oxiida.workflows()}
        assert sorted(t.worker for t in oxiida.tasks(by_name["dask.ox"])) == sorted([out["a"], out["b"]])
        assert [t.worker for t in oxiida.tasks(by_name["pool.ox"])] == [f"pid {p}"]
        # `oxiida workflow show` has room for an address in its BY column.
        binary = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", HERE.parents[2] / "target")) / "debug" / "oxiida"
        assert binary.exists(), f"build the CLI first: cargo build -p oxiida-cli ({binary})"
        shown = subprocess.run([str(binary), "workflow", "show", str(by_name["dask.ox"])], env=env, capture_output=True, text=True, timeout=60)
        rows = [line for line in shown.stdout.splitlines() if "call=f= worker_address" in line]
        assert sorted(line.split("  no  ")[1].split()[0] for line in rows) == sorted([out["a"], out["b"]]), shown.stdout
        assert all(f"{w}  call=f=" in shown.stdout for w in (out["a"], out["b"])), shown.stdout
    finally:
        stop_daemon(env, pid)


def test_both_daemons_keep_their_executor_across_a_restart(cluster, client, tmp_path, monkeypatch):
    """`oxiida daemon start --executor` (the CLI's daemon, with the Python
    plugin) and `python -m oxiida daemon start --executor`: workflows'
    `=f=` calls run on the cluster, before and after `daemon restart`."""
    target = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", HERE.parents[2] / "target")) / "debug"
    binary, plugin = target / "oxiida", target / "liboxiida_python.so"
    assert binary.exists() and plugin.exists(), f"build the CLI and the plugin first: cargo build -p oxiida-cli -p oxiida-python ({target})"
    script = tmp_path / "steps.py"
    script.write_text("import os\n\ndef pid():\n    return os.getpid()\n")
    (tmp_path / "wf.ox").write_text("require pid;\nprint =pid=();\n")
    import site

    env = daemon_env(tmp_path, monkeypatch, PYTHONPATH=os.pathsep.join([str(HERE), *site.getsitepackages()]))
    env.pop("OXIIDA_EXECUTOR", None)
    workers = set(client.run(os.getpid).values())

    def run(*argv):
        return subprocess.run(list(argv), env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path)

    def on_cluster():
        done = run(str(binary), "submit", "--wait", "wf.ox")
        assert done.returncode == 0, done.stderr
        return int(done.stdout) in workers

    for start, restart in [
        ([str(binary), "daemon", "start", f"--plugin={plugin}={script}"], [str(binary), "daemon", "restart"]),
        ([sys.executable, "-m", "oxiida", "daemon", "start"], [sys.executable, "-m", "oxiida", "daemon", "restart"]),
    ]:
        started = run(*start, "--executor", cluster.address)
        assert started.returncode == 0, started.stderr
        try:
            if start[0] == sys.executable:
                # The Python daemon runs the caller's functions: submitted from Python.
                submit = lambda: oxiida.submit("require pid_here;\np = =pid_here=();\n", wait=True)["p"] in workers  # noqa: E731
            else:
                submit = on_cluster
            assert submit()
            restarted = run(*restart)
            assert restarted.returncode == 0, restarted.stderr
            status = run(str(binary), "daemon", "status")
            assert f"executor: {cluster.address}" in status.stdout, status.stdout
            assert submit(), "the restarted daemon kept --executor"
        finally:
            stopped = run(str(binary), "daemon", "stop")
            assert stopped.returncode == 0, stopped.stderr
