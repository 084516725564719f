"""What several test files need: waiting for something asynchronous,
finding unreaped children, and daemons of a test's own."""

import os
import pathlib
import subprocess
import sys
import time


def wait_until(ready, seconds=5.0):
    """Polls `ready()` until it is true or `seconds` pass; returns its last value."""
    deadline = time.monotonic() + seconds
    while not (done := ready()) and time.monotonic() < deadline:
        time.sleep(0.05)
    return done


def zombies_of(parent):
    """Children of `parent` that died and were not reaped."""
    found = []
    for stat in pathlib.Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] == "Z" and int(fields[1]) == parent:
            found.append(stat.parent.name)
    return found


def daemon(env, *args):
    """`python -m oxiida daemon ARGS` in the environment `env`."""
    return subprocess.run([sys.executable, "-m", "oxiida", "daemon", *args], env=env, capture_output=True, text=True, timeout=60)


def daemon_env(tmp_path, monkeypatch, **extra):
    """The environment of a daemon of the test's own: its folders under
    `tmp_path` (also set for this process, so the package's calls reach
    it), plus `extra`."""
    watched = tmp_path / "watched"
    watched.mkdir()
    env = dict(os.environ, OXIIDA_RUNTIME_DIR=str(tmp_path / "run"), OXIIDA_DATA_DIR=str(tmp_path / "data"), OXIIDA_WATCH=str(watched), **extra)
    for key in ("OXIIDA_RUNTIME_DIR", "OXIIDA_DATA_DIR"):
        monkeypatch.setenv(key, env[key])
    return env


def stop_daemon(env, pid):
    """Stops a test's own daemon, and kills it if that failed: never leave one behind."""
    daemon(env, "stop")
    try:
        os.kill(pid, 9)
    except ProcessLookupError:
        pass
