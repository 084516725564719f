"""The daemon as an API: oxiida.workflows, status, result, output, kill,
their errors, Ctrl-C while waiting, and a daemon of another environment.
Each test runs its own daemon in private folders (test_daemon's fixture)."""

import datetime
import os
import signal
import site
import subprocess
import sys
import time

import pytest

import oxiida
from test_daemon import private  # noqa: F401 (a fixture)


def test_workflows_status_output_and_result(private):  # noqa: F811
    started = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=1)
    first = oxiida.submit('print "one";\nx = 1;\n', file_name="one.ox")
    second = oxiida.submit('print "two";\nprint "2";\ny = [1, 2.5, "s"];\n', file_name="two.ox")
    assert oxiida.result(second, timeout=30) == {"y": [1, 2.5, "s"]}
    assert oxiida.result(first, timeout=30) == {"x": 1}

    listed = oxiida.workflows()
    assert [w.id for w in listed] == [second, first]  # newest first
    assert isinstance(listed[0], oxiida.WorkflowSummary)
    assert listed[0].name == "two.ox" and listed[0].state == "succeeded" and listed[0].exit_code == 0
    assert listed[0].submitted >= started and listed[0].finished >= listed[0].submitted
    assert [w.id for w in oxiida.workflows(limit=1)] == [second]
    assert [w.id for w in oxiida.workflows(before=second)] == [first]
    assert oxiida.workflows(status="failed") == []
    assert oxiida.workflows(since=datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1)) == []

    s = oxiida.status(second)
    assert isinstance(s, oxiida.WorkflowStatus) and s.done
    assert (s.id, s.name, s.state, s.exit_code, s.error) == (second, "two.ox", "succeeded", 0, None)
    assert s.started is not None and s.finished >= s.started and s.cwd == os.getcwd()
    assert s.source.startswith('print "two";')
    assert oxiida.output(second) == "two\n2\n"


def test_workflows_pages_through_the_daemons_list(private, monkeypatch):  # noqa: F811
    ids = [oxiida.submit(f"x = {i};\n") for i in range(5)]
    monkeypatch.setattr(oxiida._daemon, "_PAGE", 2)  # three requests for five
    assert [w.id for w in oxiida.workflows(limit=None)] == ids[::-1]
    assert [w.id for w in oxiida.workflows(limit=3)] == ids[:1:-1]
    with pytest.raises(ValueError, match="no workflow state 'done'"):
        oxiida.workflows(status="done")


def test_a_function_s_exception_is_raised_as_its_own_with_its_file_and_line(private):  # noqa: F811
    class Refused(Exception):  # a class of the caller's: travels by value, comes back the same class
        pass

    def fails(what):
        if what == "refused":
            raise Refused("not this one")
        raise ValueError("bad input")  # the line the traceback names

    line = fails.__code__.co_firstlineno + 3
    id = oxiida.submit('require fails;\nx = fails("value");\n', file_name="wf.ox")
    with pytest.raises(ValueError) as info:
        oxiida.result(id, timeout=30)
    assert type(info.value) is ValueError and info.value.args == ("bad input",)
    cause = info.value.__cause__
    assert isinstance(cause, oxiida.RemoteTraceback)
    assert f'File "{__file__}", line {line}, in fails' in cause.tb, cause.tb
    if sys.version_info >= (3, 11):
        assert any(f"in oxiida workflow {id}" in n and "wf.ox:2:5" in n for n in info.value.__notes__)
    assert oxiida.status(id).state == "failed" and "bad input" in oxiida.status(id).error

    with pytest.raises(Refused, match="not this one") as info:
        oxiida.submit('require fails;\nx = fails("refused");\n', wait=True)
    assert type(info.value) is Refused
    assert f'line {line - 1}, in fails' in info.value.__cause__.tb


def test_an_exception_that_cannot_travel_is_a_workflow_failed_error_with_its_traceback(private):  # noqa: F811
    import threading

    class Holding(Exception):
        def __init__(self):
            super().__init__("holds a lock")
            self.lock = threading.Lock()  # cannot be pickled

    def fails():
        raise Holding()

    with pytest.raises(oxiida.WorkflowFailedError, match="raised .*Holding.*cannot be pickled") as info:
        oxiida.submit("require fails;\nx = fails();\n", wait=True, file_name="wf.ox")
    assert isinstance(info.value, oxiida.OxiidaError) and info.value.state == "failed"
    assert "wf.ox:2:5" in str(info.value)
    assert "holds a lock" in info.value.__cause__.tb and __file__ in info.value.__cause__.tb


def test_an_exception_that_cannot_be_unpickled_here_is_a_workflow_failed_error(private):  # noqa: F811
    def only_in_the_daemon():
        raise ImportError("no module named 'elsewhere'")  # as a class missing from this environment

    class Elsewhere(Exception):
        def __reduce__(self):
            return (only_in_the_daemon, ())

    def fails():
        raise Elsewhere("from elsewhere")

    id = oxiida.submit("require fails;\nx = fails();\n")
    with pytest.raises(oxiida.WorkflowFailedError, match="cannot be unpickled here .*elsewhere.*install what defines it") as info:
        oxiida.result(id, timeout=30)
    assert "from elsewhere" in info.value.__cause__.tb


def test_a_workflow_error_without_an_exception_is_a_workflow_failed_error(private):  # noqa: F811
    id = oxiida.submit('x = 1 / 0;\n', file_name="div.ox")
    with pytest.raises(oxiida.WorkflowFailedError, match="div.ox:1") as info:
        oxiida.result(id, timeout=30)
    assert (info.value.id, info.value.state) == (id, "failed")


def test_a_timeout_then_kill(private):  # noqa: F811
    def nap():  # a closure: travels by value (the daemon cannot import this module)
        time.sleep(30)

    id = oxiida.submit("require nap;\nprint \"napping\";\nx = nap();\n")
    began = time.monotonic()
    with pytest.raises(oxiida.ResultTimeoutError, match=rf"oxiida.result\({id}\)") as info:
        oxiida.result(id, timeout=0.5)
    assert isinstance(info.value, TimeoutError) and 0.5 <= time.monotonic() - began < 5
    assert oxiida.status(id).state == "running" and not oxiida.status(id).done
    assert [w.id for w in oxiida.workflows(status="running")] == [id]
    for _ in range(100):  # the print is recorded as it comes
        if oxiida.output(id) == "napping\n":
            break
        time.sleep(0.05)
    assert oxiida.output(id) == "napping\n"
    oxiida.kill(id)  # waits for its end
    assert oxiida.status(id).state == "killed"
    with pytest.raises(oxiida.WorkflowFailedError, match="killed") as info:
        oxiida.result(id)
    assert info.value.state == "killed"
    with pytest.raises(oxiida.OxiidaError, match="not running: it killed"):
        oxiida.kill(id)


def test_an_unknown_id_and_no_daemon_say_what_to_do(private, tmp_path, monkeypatch):  # noqa: F811
    for call in (oxiida.status, oxiida.result, oxiida.output, oxiida.kill):
        with pytest.raises(oxiida.UnknownWorkflowError, match=r"no workflow 4242.*oxiida.workflows\(\)"):
            call(4242)
    with pytest.raises(TypeError, match="non-negative int"):
        oxiida.status("1")
    monkeypatch.setenv("OXIIDA_RUNTIME_DIR", str(tmp_path / "elsewhere"))
    for call in (oxiida.workflows, lambda: oxiida.status(1), lambda: oxiida.submit("x = 1;\n")):
        with pytest.raises(oxiida.DaemonNotRunningError, match=r"no daemon is running .*-m oxiida daemon start") as info:
            call()
        assert isinstance(info.value, oxiida.OxiidaError)


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


def test_ctrl_c_while_waiting_says_how_to_reattach(private):  # noqa: F811
    env, tmp_path, _ = private
    script = tmp_path / "waiting.py"
    script.write_text(WAITING)
    proc = subprocess.Popen(
        [sys.executable, str(script)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        assert proc.stdout.readline().strip() == "submitting"
        for _ in range(100):
            if oxiida.workflows(status="running"):
                break
            time.sleep(0.05)
        [running] = oxiida.workflows(status="running")
        os.killpg(proc.pid, signal.SIGINT)
        assert proc.stdout.readline().strip() == "KeyboardInterrupt"
        assert proc.wait(timeout=10) == 0
        err = proc.stderr.read()
        assert f"workflow {running.id} goes on" in err and f"oxiida.result({running.id})" in err, err
        assert oxiida.status(running.id).state == "running"  # detached, not killed
        oxiida.kill(running.id)
    finally:
        proc.kill()
        proc.wait()


def other_venv(tmp_path):
    """A second virtual environment that imports this oxiida (its
    site-packages added to the new one's through a .pth file)."""
    venv = tmp_path / "other-venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    theirs = subprocess.run([str(python), "-c", "import site; print(site.getsitepackages()[0])"], capture_output=True, text=True, check=True)
    ours = [p for p in site.getsitepackages() if os.path.isdir(p)]
    lines = "".join(f"import site; site.addsitedir({p!r})\n" for p in ours)
    with open(os.path.join(theirs.stdout.strip(), "this_oxiida.pth"), "w") as f:
        f.write(lines)
    return venv, python


def test_a_daemon_of_another_environment_is_refused(private, tmp_path):  # noqa: F811
    env, _, _ = private
    venv, python = other_venv(tmp_path)
    code = "import oxiida\ntry:\n    oxiida.submit('x = 1;\\n', wait=True)\nexcept oxiida.WrongEnvironmentError as e:\n    print(e)\n"
    out = subprocess.run([str(python), "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert f"the environment {sys.prefix}, not this one ({venv})" in out.stdout, out.stdout
    assert f"{python} -m oxiida daemon start" in out.stdout
    start = subprocess.run([str(python), "-m", "oxiida", "daemon", "start"], env=env, capture_output=True, text=True, timeout=60)
    assert start.returncode == 1 and f"it runs the Python environment {sys.prefix}, not this one ({venv})" in start.stderr, start
    assert "OXIIDA_RUNTIME_DIR" in start.stderr
    # The daemon's own environment is served.
    assert oxiida.submit("x = 1;\n", wait=True) == {"x": 1}
    # And the other venv's calls that run no Python (listing) still work.
    listed = subprocess.run([str(python), "-c", "import oxiida; print(len(oxiida.workflows()))"], env=env, capture_output=True, text=True)
    assert listed.stdout.strip() == "1", listed.stderr
    # With folders of its own, the other environment runs a daemon of its own beside this one.
    own = dict(env, OXIIDA_RUNTIME_DIR=str(tmp_path / "other-run"), OXIIDA_DATA_DIR=str(tmp_path / "other-data"))
    started = subprocess.run([str(python), "-m", "oxiida", "daemon", "start"], env=own, capture_output=True, text=True, timeout=60)
    try:
        assert started.returncode == 0, started.stderr
        ran = subprocess.run([str(python), "-c", code + "else:\n    print('ran')\n"], env=own, capture_output=True, text=True, timeout=60)
        assert ran.stdout.strip() == "ran", (ran.stdout, ran.stderr)
    finally:
        stopped = subprocess.run([str(python), "-m", "oxiida", "daemon", "stop"], env=own, capture_output=True, text=True, timeout=60)
        assert stopped.returncode == 0, stopped.stderr


def test_prints_of_called_functions_reach_the_waiting_client_in_order(private, capfd):  # noqa: F811
    def shout(word):
        print(f"function says {word}")
        print("no newline yet", end="")
        sys.stdout.flush()
        print(" - now one")
        return word.upper()

    src = 'require shout;\nprint "before";\na = shout("hi");\nprint "between";\nb = shout("yo");\nprint "after";\n'
    assert oxiida.submit(src, wait=True) == {"a": "HI", "b": "YO"}
    expected = (
        "before\nfunction says hi\nno newline yet - now one\n"
        "between\nfunction says yo\nno newline yet - now one\nafter\n"
    )
    assert capfd.readouterr().out == expected
    id = oxiida.workflows(limit=1)[0].id
    assert oxiida.output(id) == expected  # recorded too, not in the daemon's log


def test_a_partial_line_left_at_the_end_is_printed(private, capfd):  # noqa: F811
    def trailing():
        print("unfinished", end="")

    assert oxiida.submit("require trailing;\nx = trailing();\n", wait=True) == {"x": None}
    assert capfd.readouterr().out == "unfinished\n"


def test_the_installed_oxiida_command_is_the_cli_and_runs_this_environments_daemon(private, tmp_path):  # noqa: F811
    env, _, _ = private
    command = os.path.join(os.path.dirname(sys.executable), "oxiida")
    assert os.access(command, os.X_OK), "pip installs an `oxiida` console command beside this Python"

    def oxiida_cmd(*args):
        return subprocess.run([command, *args], env=env, capture_output=True, text=True, timeout=60)

    version = oxiida_cmd("--version")
    assert version.returncode == 0 and version.stdout.startswith("oxiida 0."), version
    id = oxiida.submit('print "hi";\nx = 1;\n', file_name="listed.ox")
    oxiida.result(id, timeout=30)
    listed = oxiida_cmd("workflow", "list")
    assert listed.returncode == 0 and "listed.ox" in listed.stdout and "succeeded" in listed.stdout, listed
    shown = oxiida_cmd("workflow", "show", str(id))
    assert shown.returncode == 0 and "hi" in shown.stdout, shown
    status = oxiida_cmd("daemon", "status")  # this environment's daemon, as `python -m oxiida daemon status`
    assert status.returncode == 0 and sys.executable in status.stdout, status
    assert f"python environment: {sys.prefix}" in status.stdout, status
    flow = tmp_path / "flow.ox"
    flow.write_text('print "ran by the command";\n')
    ran = oxiida_cmd("run", str(flow))
    assert ran.returncode == 0 and ran.stdout == "ran by the command\n", ran
    bad = oxiida_cmd("check", str(tmp_path / "missing.ox"))
    assert bad.returncode != 0 and "missing.ox" in bad.stderr, bad
