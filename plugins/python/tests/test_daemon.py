"""The Python-bound daemon: `python -m oxiida daemon ...` and `oxiida.submit`.
Each test runs its own daemon in private folders, never the user's."""

import os
import subprocess
import sys
import time
import warnings

import pytest

import oxiida
from _support import daemon, daemon_env, stop_daemon


@pytest.fixture
def private(tmp_path, monkeypatch):
    """A daemon of this Python in private folders, stopped afterwards."""
    env = daemon_env(tmp_path, monkeypatch)
    started = daemon(env, "start")
    assert started.returncode == 0, started.stderr
    pid = int(started.stdout.split("pid ")[1].split(",")[0])
    yield env, tmp_path, tmp_path / "watched"
    stop_daemon(env, pid)


def scale_factor():
    return 3


def test_submit_waits_streams_prints_and_returns_variables(private, capsys):
    offset = 10

    def shifted(x):  # a closure of this test: travels by value
        return x + offset

    out = oxiida.submit('require shifted, math.sqrt;\nprint "hello";\na = shifted(1);\nb = sqrt(16.0);\nc = =shifted=(2);\n', wait=True)
    assert out == {"a": 11, "b": 4.0, "c": 12}
    assert capsys.readouterr().out == "hello\n"


def test_submit_without_wait_returns_an_id_at_once(private):
    first = oxiida.submit('x = 1;\n')
    second = oxiida.submit('x = 2;\n')
    assert isinstance(first, int) and second > first


def test_each_workflow_has_its_own_namespace(private):
    count = 0

    def bump():
        nonlocal count
        count += 1
        return count

    src = "require bump;\na = bump();\nb = bump();\n"
    assert oxiida.submit(src, wait=True) == {"a": 1, "b": 2}
    assert oxiida.submit(src, wait=True) == {"a": 1, "b": 2}  # not 3 and 4
    assert count == 0  # this process's closure was never touched


def test_errors_raise_with_the_remote_traceback(private):
    def fails():
        raise ValueError("bad input")

    with pytest.raises(ValueError, match="bad input") as info:  # its own class (more in test_daemon_api)
        oxiida.submit("require fails;\nx = fails();\n", wait=True, file_name="wf.ox")
    assert "ValueError: bad input" in info.value.__cause__.tb
    with pytest.raises(oxiida.OxiidaError, match="nope"):
        oxiida.submit("require nope;\nx = nope(;\n")  # found here, nothing sent


def test_status_and_a_second_start(private):
    env, _, _ = private
    status = daemon(env, "status")
    assert status.returncode == 0 and "running" in status.stdout and "python" in status.stdout
    again = daemon(env, "start")
    assert again.returncode == 1 and "already running" in again.stderr


def changed_warnings(call):
    """The EnvironmentChangedWarnings `call()` issues (every one: the
    filter shows repeats too), and the other warnings."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        call()
    ours = [w for w in caught if issubclass(w.category, oxiida.EnvironmentChangedWarning)]
    return ours, [w for w in caught if w not in ours]


def test_a_change_in_a_watched_folder_warns_every_call_once_until_restart(private, capfd):
    env, tmp_path, watched = private
    log = (tmp_path / "data" / "daemon.log").read_text()
    assert "site-packages" in log and str(watched) in log
    ours, _ = changed_warnings(lambda: oxiida.submit("x = 1;\n", wait=True))
    assert ours == []
    (watched / "newly_installed.py").write_text("x = 1\n")
    for _ in range(100):  # inotify is asynchronous
        ours, others = changed_warnings(lambda: oxiida.submit("x = 1;\n", wait=True))
        if ours:
            break
        time.sleep(0.05)
    assert len(ours) == 1 and others == []  # once per call, though every reply says it
    message = str(ours[0].message)
    assert "newly_installed.py" in message and "python -m oxiida daemon restart" in message
    assert ours[0].filename == __file__  # it points at the caller's line
    assert issubclass(oxiida.EnvironmentChangedWarning, UserWarning)
    for call in (lambda: oxiida.submit("x = 1;\n"), lambda: oxiida.workflows(), lambda: oxiida.status(1)):
        ours, _ = changed_warnings(call)
        assert len(ours) == 1  # still, on every call

    def doze():
        time.sleep(0.4)

    ids = []
    changed_warnings(lambda: ids.append(oxiida.submit("require doze;\nx = doze();\n", {"doze": doze})))
    dozing = ids[0]
    ours, _ = changed_warnings(lambda: oxiida.result(dozing, timeout=30))
    assert len(ours) == 1  # result asks the daemon several times, and warns once
    assert "environment changed" not in capfd.readouterr().err  # a warning, not a write to stderr
    restarted = daemon(env, "restart")
    assert restarted.returncode == 0, restarted.stderr
    ours, _ = changed_warnings(lambda: oxiida.submit("x = 1;\n", wait=True))
    assert ours == []


def test_no_daemon_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("OXIIDA_RUNTIME_DIR", str(tmp_path / "run"))
    monkeypatch.setenv("OXIIDA_DATA_DIR", str(tmp_path / "data"))
    with pytest.raises(oxiida.OxiidaError, match="no daemon is running"):
        oxiida.submit("x = 1;\n")


WHERE = """
import os, oxiida
def where(x):
    return os.getcwd()
out = oxiida.submit("require where;\\nt = where(1);\\np = =where=(1);\\n", wait=True)
print(out["t"], out["p"])
"""


def test_each_workflow_runs_in_its_clients_folder(private):
    env, tmp_path, _ = private
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "script.py").write_text(WHERE)
    for name in ("a", "b"):  # the same daemon, and its warm worker, for both
        folder = tmp_path / name
        done = subprocess.run([sys.executable, "script.py"], cwd=folder, env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert done.stdout.split() == [os.path.realpath(folder)] * 2


WAITING = """
import time, oxiida
def nap():
    time.sleep(30)
print("submitting", flush=True)
try:
    oxiida.submit("require nap;\\nx = nap();\\n", wait=True)
except KeyboardInterrupt:
    print("KeyboardInterrupt", flush=True)
"""


def test_ctrl_c_while_waiting_detaches_at_once(private):
    import signal

    env, tmp_path, _ = private
    script = tmp_path / "waiting.py"
    script.write_text(WAITING)
    proc = subprocess.Popen([sys.executable, str(script)], env=env, stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert proc.stdout.readline().strip() == "submitting"
        time.sleep(0.5)  # the request is sent, the client waits
        sent = time.monotonic()
        os.killpg(proc.pid, signal.SIGINT)
        assert proc.stdout.readline().strip() == "KeyboardInterrupt"
        assert time.monotonic() - sent < 1.0
        assert proc.wait(timeout=10) == 0
    finally:
        proc.kill()
        proc.wait()


def test_a_function_that_aborts_fails_its_own_workflow_alone(private, capsys):
    _, tmp_path, _ = private

    def crash():  # takes its whole process down, as a crashing extension would
        os.abort()

    def chatty():
        print("said by a function")  # the workflow's output, not the log
        return 1

    with pytest.raises(oxiida.OxiidaError, match=r"runner killed by signal 6 \(SIGABRT\)"):
        oxiida.submit("require crash;\nx = crash();\n", wait=True)
    # The daemon lives on, and so does the next workflow.
    assert oxiida.submit("require chatty;\nx = chatty();\n", wait=True) == {"x": 1}
    assert capsys.readouterr().out == "said by a function\n"
    log = (tmp_path / "data" / "daemon.log").read_text()
    assert "runner killed by signal 6 (SIGABRT)" in log and "said by a function" not in log


def test_the_daemons_files_are_the_users_alone(private):
    env, tmp_path, _ = private
    oxiida.submit("x = 1;\n", wait=True)
    mode = lambda p: os.lstat(p).st_mode & 0o777  # noqa: E731
    assert mode(tmp_path / "run") == 0o700
    assert mode(tmp_path / "data") == 0o700
    for name in ("daemon.log", "workflows.sqlite3"):
        assert mode(tmp_path / "data" / name) == 0o600, name


def test_a_runtime_folder_open_to_others_is_refused(tmp_path, monkeypatch):
    run = tmp_path / "run"
    run.mkdir()
    run.chmod(0o755)
    monkeypatch.setenv("OXIIDA_RUNTIME_DIR", str(run))
    monkeypatch.setenv("OXIIDA_DATA_DIR", str(tmp_path / "data"))
    with pytest.raises(oxiida.OxiidaError, match="has mode 0755"):
        oxiida.submit("x = 1;\n")
    env = dict(os.environ, OXIIDA_RUNTIME_DIR=str(run), OXIIDA_DATA_DIR=str(tmp_path / "data"))
    for action in ("start", "status", "stop"):
        refused = daemon(env, action)
        assert refused.returncode == 1, (action, refused.stderr)
        assert "has mode 0755" in refused.stderr and "Traceback" not in refused.stderr, (action, refused.stderr)
    assert not (run / "daemon.sock").exists()


def test_limits_are_flags_that_restart_keeps_and_a_memory_error_is_a_failed_call(tmp_path, monkeypatch):
    env = dict(os.environ, OXIIDA_RUNTIME_DIR=str(tmp_path / "run"), OXIIDA_DATA_DIR=str(tmp_path / "data"))
    for key in ("OXIIDA_RUNTIME_DIR", "OXIIDA_DATA_DIR"):
        monkeypatch.setenv(key, env[key])
    bad = daemon(env, "start", "--foreground", "--memory-limit", "lots")
    assert bad.returncode == 1 and "e.g. 512M, 4G" in bad.stderr
    started = daemon(env, "start", "--memory-limit", "2G", "--max-running", "3")
    assert started.returncode == 0, started.stderr
    try:
        status = daemon(env, "status").stdout
        assert "limits: memory 2 GiB per workflow, output 64 MiB per workflow, 3 running at once" in status, status

        def greedy():
            return len(bytearray(3 << 30))

        # Over the runner's memory limit, Python raises; the runner lives on.
        with pytest.raises(MemoryError):  # the function's own exception
            oxiida.submit("require greedy;\nx = greedy();\n", wait=True)
        restarted = daemon(env, "restart", "--idle-timeout", "60")
        assert restarted.returncode == 0, restarted.stderr
        status = daemon(env, "status").stdout
        want = "limits: memory 2 GiB per workflow, output 64 MiB per workflow, 3 running at once, idle connections closed after 60s"
        assert want in status, status
    finally:
        daemon(env, "stop")


def test_a_workflow_runs_with_the_callers_environment(private, monkeypatch, capsys):
    # Set after the daemon started: only the caller has it.
    monkeypatch.setenv("OXIIDA_TEST_FROM_CLIENT", "set by the caller")

    def seen(name):
        return os.environ.get(name, "<unset>")

    source = (
        'require seen;\nplain = seen("OXIIDA_TEST_FROM_CLIENT");\nforked = =seen=("OXIIDA_TEST_FROM_CLIENT");\n'
        'shelled = shell {"sh", ["-c", "echo -n ${OXIIDA_TEST_FROM_CLIENT-<unset>}"]}.stdout;\n'
    )
    out = oxiida.submit(source, wait=True)
    assert out == {"plain": "set by the caller", "forked": "set by the caller", "shelled": "set by the caller"}
    # The daemon's own environment, which never had it.
    out = oxiida.submit(source, wait=True, env=False)
    assert out == {"plain": "<unset>", "forked": "<unset>", "shelled": "<unset>"}
    # Exactly the mapping given.
    out = oxiida.submit('require seen;\nmine = seen("MINE");\nother = seen("OXIIDA_TEST_FROM_CLIENT");\n', wait=True, env={"MINE": "only this"})
    assert out == {"mine": "only this", "other": "<unset>"}


def test_values_over_a_frame_come_back_whole(private, capsys):
    def big():
        return "ab€é💡x" * (1 << 21)  # 24 MiB, over one 16 MiB frame

    out = oxiida.submit("require big;\ns = big();\nprint s;\n", wait=True)
    assert out["s"] == big()
    assert capsys.readouterr().out == big() + "\n"


def test_a_submission_over_a_frame_is_refused_unsent(private):
    with pytest.raises(oxiida.OxiidaError, match=r"over the daemon's limit of 16 MiB per message; nothing was sent"):
        oxiida.submit('s = "' + "x" * (17 << 20) + '";\n')


def test_submitted_workflows_pass_keyword_arguments(private):
    def scaled(x, factor=2, *, offset=0):
        return x * factor + offset

    out = oxiida.submit("require scaled;\na = scaled(5, offset = 1);\nb = =scaled=(5, factor = 3);\nc = scaled(5);\n", wait=True)
    assert out == {"a": 11, "b": 15, "c": 10}
    with pytest.raises(TypeError, match="unexpected keyword argument 'factr'"):
        oxiida.submit("require scaled;\nx = scaled(1, factr = 3);\n", wait=True)
