#!/usr/bin/env python3
"""A process plugin that leaves a child of its own holding its standard
output, in a session of its own (so no signal to the plugin's process group
reaches it). The test that the host ends the session when the plugin
exits, not when its output closes (cli/tests/process_plugins.rs), runs it."""
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from python_process import serve  # noqa: E402

# stdout=None: the child inherits the protocol's pipe, and keeps it open.
child = subprocess.Popen(["sleep", "30"], start_new_session=True, stdin=subprocess.DEVNULL)
serve({"child": lambda: child.pid}, name="leaky")
sys.stderr.flush()
os._exit(0)
