"""An `=f=` worker busy in a call that ignores SIGTERM and never reads its
input again still dies with a SIGKILLed host: the kernel kills it
(PR_SET_PDEATHSIG, set by plugins/python/src/pool.rs), not its input's end."""

import subprocess
import sys
import textwrap

from _support import wait_until


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_a_busy_worker_deaf_to_sigterm_dies_with_a_sigkilled_host(tmp_path):
    marker = tmp_path / "worker.pid"
    script = tmp_path / "host.py"
    script.write_text(textwrap.dedent(f"""
        import os, signal, time, oxiida

        def stubborn():
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            with open({str(marker)!r}, "w") as f:
                f.write(str(os.getpid()))
            while True:
                time.sleep(1)

        oxiida.run("require stubborn;\\nx = =stubborn=();\\n", {{"stubborn": stubborn}})
    """))
    host = subprocess.Popen([sys.executable, str(script)])
    try:
        assert wait_until(lambda: marker.exists() and marker.read_text(), seconds=30), "the worker never started its call"
        worker = int(marker.read_text())
        assert alive(worker) and worker != host.pid
    finally:
        host.kill()  # SIGKILL: the host cleans nothing up
        host.wait()
    assert wait_until(lambda: not alive(worker), seconds=3), f"worker {worker} outlived its SIGKILLed host"
