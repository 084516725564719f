"""A worker process of oxiida's `=f=` pool. The Rust side starts it as
`python -c <this file>` (so it needs no installed package), writes call
frames to its stdin and reads reply frames from its stdout.

Frames (little-endian): a call is u64 function key, u8 "function follows",
[u32 length + cloudpickled function], u32 length + pickled argument tuple.
A reply is u8 status (0 ok, 1 raised) and u32 length + pickle of the result,
or of (type name, message, formatted traceback, pickled exception or None).
"""

import os
import pickle
import select
import struct
import sys
import time
import traceback


def _die_with_parent(parent):
    # Linux: SIGKILL when the parent dies; then make sure it had not already.
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, 9, 0, 0, 0)  # PR_SET_PDEATHSIG, SIGKILL
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:
        os._exit(0)


# Waking a process that sleeps on a pipe costs tens of microseconds on a
# VM, more than a whole trivial call: after each reply the worker polls its
# pipe for a short while before it sleeps, so calls in a row find it awake.
SPIN_SECONDS = 0.0002


class _Frames:
    """Reads call frames from a non-blocking pipe, spinning, then sleeping."""

    def __init__(self, fd):
        self.fd, self.buffer = fd, bytearray()
        os.set_blocking(fd, False)

    def _fill(self):
        deadline = time.monotonic() + SPIN_SECONDS
        while True:
            try:
                data = os.read(self.fd, 1 << 16)
            except BlockingIOError:
                if time.monotonic() > deadline:
                    select.select([self.fd], [], [])
                else:
                    os.sched_yield()  # on a busy machine, the caller may need this core
                continue
            if not data:
                raise EOFError
            self.buffer += data
            return

    def read(self, n):
        while len(self.buffer) < n:
            self._fill()
        data = bytes(self.buffer[:n])
        del self.buffer[:n]
        return data


def _write_all(fd, data):
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _traceback(exception):
    # Without this loop's own frame: the trace starts in the user's function.
    frames = exception.__traceback__.tb_next or exception.__traceback__
    return "".join(traceback.format_exception(type(exception), exception, frames))


def _pickled(exception, pickler):
    # The exception itself, so the caller can raise its type; None when it
    # cannot travel (its traceback never does: the text goes instead).
    try:
        return pickler.dumps(exception.with_traceback(None), protocol=5)
    except Exception:  # noqa: BLE001 - then the caller gets type name and message only
        return None


def main():
    _die_with_parent(int(os.environ.get("OXIIDA_PARENT_PID", os.getppid())))
    try:
        import cloudpickle
    except ImportError as e:  # every call then fails with this clear reason
        cloudpickle, missing = None, e

    # The pipes move to private descriptors: a function that prints, even
    # from C, writes to stderr, and one that reads stdin reads nothing.
    inp, out = _Frames(os.dup(0)), os.dup(1)
    os.dup2(2, 1)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    sys.stdout = sys.stderr
    functions = {}
    while True:
        try:
            key, has_function = struct.unpack("<QB", inp.read(9))
            function = None
            if has_function:
                (n,) = struct.unpack("<I", inp.read(4))
                function = inp.read(n)
            (n,) = struct.unpack("<I", inp.read(4))
            args = inp.read(n)
        except EOFError:
            return
        try:
            if cloudpickle is None:
                raise missing
            if function is not None:
                functions[key] = cloudpickle.loads(function)
            status, payload = 0, pickle.dumps(functions[key](*pickle.loads(args)), protocol=5)
        except BaseException as e:  # noqa: BLE001 - every failure goes back to the caller
            status, payload = 1, pickle.dumps((type(e).__name__, str(e), _traceback(e), _pickled(e, cloudpickle or pickle)), protocol=5)
        _write_all(out, struct.pack("<BI", status, len(payload)) + payload)


if __name__ == "__main__":
    main()
