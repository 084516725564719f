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
import struct
import sys
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


def _read_exact(stream, n):
    data = stream.read(n)
    if data is None or len(data) < n:
        raise EOFError
    return data


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

    inp, out = sys.stdin.buffer, sys.stdout.buffer
    # What the functions print must not corrupt the reply pipe.
    sys.stdout = sys.stderr
    functions = {}
    while True:
        try:
            key, has_function = struct.unpack("<QB", _read_exact(inp, 9))
            function = None
            if has_function:
                (n,) = struct.unpack("<I", _read_exact(inp, 4))
                function = _read_exact(inp, n)
            (n,) = struct.unpack("<I", _read_exact(inp, 4))
            args = _read_exact(inp, n)
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
        out.write(struct.pack("<BI", status, len(payload)) + payload)
        out.flush()


if __name__ == "__main__":
    main()
