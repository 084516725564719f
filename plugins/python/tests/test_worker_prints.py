"""What `=f=` functions print (in worker processes) goes where the workflow's
own prints go: the caller's `sys.stdout` under `oxiida.run`, the waiting
client and the workflow's record under a daemon. Each daemon test runs its
own daemon in private folders, never the user's."""

import os
import re
import sys

import pytest

import oxiida
from _support import wait_until
from test_daemon import private  # noqa: F401 (a fixture)


def made():
    """The functions, made here so that they travel to a daemon by value
    (a test module's own functions would be pickled by reference)."""

    def talk(x):
        print(f"call {x} starts")
        print(f"call {x} ends", end="")  # a partial line: sent when the call returns
        return x * 10

    def complain(x):
        print(f"complaint {x}", file=sys.stderr)
        return x

    return talk, complain


WORKFLOW = (
    "require talk;\n"
    'print "first";\n'
    "a = =talk=(1);\n"
    'print "second";\n'
    "para for i in range(3) { b = =talk=(i); }\n"
    'print "third";\n'
)


def test_run_sends_process_prints_through_sys_stdout_in_order(capsys):
    talk, _ = made()
    out = oxiida.run(WORKFLOW)
    assert out["a"] == 10
    printed = capsys.readouterr().out
    before, rest = printed.split("second\n")
    assert before == "first\ncall 1 starts\ncall 1 ends"
    fanned, after = rest.split("third\n")
    for i in range(3):
        assert f"call {i} starts\ncall {i} ends" in fanned
    assert after == ""


def test_run_sends_process_stderr_through_sys_stderr(capsys):
    _, complain = made()
    assert oxiida.run("require complain;\nx = =complain=(4);\n")["x"] == 4
    captured = capsys.readouterr()
    assert captured.err == "complaint 4\n" and captured.out == ""


def test_prints_before_a_worker_dies_are_not_lost(capsys):
    def dying():
        print("last words")
        os._exit(3)

    with pytest.raises(oxiida.OxiidaError, match="exited with status 3"):
        oxiida.run("require dying;\nx = =dying=();\n")
    assert capsys.readouterr().out == "last words\n"


def test_a_function_that_prints_nothing_sends_nothing(capsys):
    out = oxiida.run("require quiet;\npara for i in range(50) { x = =quiet=(i); }\ny = =quiet=(1);\n", {"quiet": abs})
    assert out["y"] == 1
    assert capsys.readouterr() == ("", "")




def test_submit_wait_shows_process_prints_in_order_and_records_them(private, capsys):
    talk, _ = made()
    out = oxiida.submit(WORKFLOW, wait=True)
    assert out["a"] == 10
    printed = capsys.readouterr().out
    before, rest = printed.split("second\n")
    # The partial line went as a piece at the call's end; the next print starts a new line.
    assert before == "first\ncall 1 starts\ncall 1 ends"
    fanned, after = rest.split("third\n")
    for i in range(3):
        assert f"call {i} starts\n" in fanned and f"call {i} ends" in fanned
    assert after == ""
    # The same text is the workflow's record.
    id = oxiida.submit(WORKFLOW)
    oxiida.result(id, timeout=60)
    recorded = oxiida.output(id)
    assert recorded.startswith("first\ncall 1 starts\ncall 1 ends")
    assert recorded.index("call 1 ends") < recorded.index("second\n") < recorded.index("call 2 starts") < recorded.index("third\n")
    log = (private[1] / "data" / "daemon.log").read_text()
    assert "call 1 starts" not in log


def test_a_long_calls_prints_reach_the_record_while_it_runs(private):
    go = private[1] / "go"

    def slow(path):
        import pathlib
        import time

        print("waiting for the go")
        while not pathlib.Path(path).exists():
            time.sleep(0.02)
        print("went")
        return 1

    id = oxiida.submit("require slow;\nx = =slow=(path);\n", inputs={"path": str(go)})
    try:
        assert wait_until(lambda: oxiida.output(id) == "waiting for the go\n", 30), oxiida.output(id)
    finally:
        go.write_text("")
    assert oxiida.result(id, timeout=60) == {"x": 1, "path": str(go)}
    assert oxiida.output(id) == "waiting for the go\nwent\n"


def test_process_stderr_goes_where_a_plain_calls_does(private, capsys):
    _, complain = made()
    # A runner's stderr goes to the daemon's log and, line by line, into the
    # workflow's output, for plain and =f= calls alike.
    assert oxiida.submit("require complain;\nx = complain(1);\ny = =complain=(2);\n", wait=True) == {"x": 1, "y": 2}
    assert sorted(capsys.readouterr().out.splitlines()) == ["complaint 1", "complaint 2"]
    log = (private[1] / "data" / "daemon.log").read_text()
    assert "complaint 1" in log and "complaint 2" in log


def test_prints_from_threads_a_function_starts_arrive_whole(capsys):
    def threaded(n):
        import threading

        def chatter(k):
            for i in range(50):
                print(f"thread {k} line {i}")

        threads = [threading.Thread(target=chatter, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        print("joined")
        return n

    out = oxiida.run("require threaded;\npara for i in range(4) { x = =threaded=(i); }\ny = =threaded=(9);\n")
    assert out["y"] == 9
    printed = capsys.readouterr().out
    # Every line arrives, intact (a thread's text and its newline may be split
    # by another thread's, as on a terminal), and the pipe survived.
    # Another worker's line may land between a thread's text and its
    # newline ("...line 49joined"), so "joined" is counted in the text.
    assert printed.count("joined") == 5
    for k in range(4):
        for i in range(50):
            assert len(re.findall(rf"thread {k} line {i}(?!\d)", printed)) == 5


def test_what_a_call_writes_to_descriptor_1_is_the_output_too(private, capsys):
    def raw(x):
        import os

        os.write(1, f"raw {x}\n".encode())  # as a C printf would, past sys.stdout
        return x

    # The runner's stdout is a pipe into the workflow's output, not the daemon's log.
    source = 'require raw;\nprint "first";\na = raw(1);\nprint "second";\n'
    assert oxiida.submit(source, wait=True) == {"a": 1}
    assert capsys.readouterr().out == "first\nraw 1\nsecond\n"
    assert "raw 1" not in (private[1] / "data" / "daemon.log").read_text()
