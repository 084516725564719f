#!/usr/bin/env python3
"""A process plugin that ignores everything but SIGKILL: SIGTERM, `bye` and
its input closing. The test that a SIGKILLed host still takes its plugins
with it (cli/tests/process_plugins.rs) runs it; no plugin should be written
like this."""
import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from python_process import serve  # noqa: E402

signal.signal(signal.SIGTERM, signal.SIG_IGN)
serve({"pid": os.getpid, "sleep": time.sleep}, name="deaf")
# `bye`, or its input closed: a deaf plugin carries on.
while True:
    time.sleep(60)
