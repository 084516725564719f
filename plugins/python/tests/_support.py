"""What several test files need: waiting for something asynchronous, and
finding unreaped children."""

import pathlib
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
