#!/usr/bin/env python3
"""An oxiida process plugin in Python, with the standard library and msgpack
only: the proof that the process plugin protocol (docs/plugins.md, "Process
plugins") is not Node-specific. Run it with

    oxiida run --plugin exec:python3=tests/plugins/python_process.py workflow.ox

Calls run on threads of their own, so they overlap (capability
`concurrent`); keyword arguments arrive as Python keyword arguments.
"""
import os
import struct
import sys
import threading
import traceback

import msgpack

PROTOCOL = [1, 0]


def serve(functions, name, version="0.0.0"):
    stdin = sys.stdin.buffer
    stdout = sys.stdout.buffer
    # Standard output carries the protocol: print() goes to stderr.
    sys.stdout = sys.stderr
    lock = threading.Lock()
    cancelled = set()

    def send(message):
        body = msgpack.packb(message, use_bin_type=True)
        with lock:
            stdout.write(struct.pack(">I", len(body)) + body)
            stdout.flush()

    def call(message):
        rid, fname = message["id"], message["name"]
        fn = functions.get(fname)
        if fn is None:
            send({"type": "error", "id": rid, "kind": "not_found", "message": f"no function `{fname}`"})
            return
        try:
            value = fn(*message.get("args", []), **(message.get("kwargs") or {}))
        except Exception as e:  # the plugin's error, sent back with its traceback
            if rid not in cancelled:
                send({"type": "error", "id": rid, "kind": "raised", "message": f"{type(e).__name__}: {e}",
                      "traceback": traceback.format_exc()})
            return
        if rid not in cancelled:
            try:
                send({"type": "result", "id": rid, "value": value})
            except TypeError as e:
                send({"type": "error", "id": rid, "kind": "bad_arguments", "message": f"the result cannot cross: {e}"})

    send({"type": "hello", "protocol": os.environ.get("TESTING_PROTOCOL") and [int(x) for x in os.environ["TESTING_PROTOCOL"].split(".")] or PROTOCOL,
          "name": name, "version": version, "functions": sorted(functions),
          "capabilities": {"concurrent": True, "isolated": False, "keywords": True}})
    while True:
        header = stdin.read(4)
        if len(header) < 4:
            return
        (length,) = struct.unpack(">I", header)
        message = msgpack.unpackb(stdin.read(length), raw=False)
        kind = message.get("type")
        if kind == "call":
            threading.Thread(target=call, args=(message,), daemon=True).start()
        elif kind == "cancel":
            cancelled.add(message["id"])
        elif kind == "bye":
            return
        # `hello` (the host's) and later minor versions' messages: nothing to do.


barrier = threading.Barrier(3, timeout=5)


def rendezvous(x):
    """Returns only when three calls wait here at once."""
    barrier.wait()
    return x * 2


def divide(a, b):
    return a / b


def describe(x, *, unit="m"):
    return {"type": type(x).__name__, "value": x, "unit": unit}


def shout(text):
    print(f"shouting {text}")
    return text.upper()


def exit_now(code):
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    serve({"rendezvous": rendezvous, "divide": divide, "describe": describe, "shout": shout,
           "exit_now": exit_now, "pid": os.getpid}, name="pytools", version="0.2.0")
    # Calls still running on daemon threads end with the process.
    sys.stderr.flush()
    os._exit(0)
