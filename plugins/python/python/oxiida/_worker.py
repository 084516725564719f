"""A worker process of oxiida's `=f=` pool. The Rust side starts it as
`python -c <this file>` (so it needs no installed package), in a process
group of its own (a terminal's Ctrl-C is not for it), writes call frames to
its stdin and reads reply frames from its stdout.

A frame is a 4-byte big-endian length, then that many bytes of body (the
framing of `oxiida_abi::frame`). A call's body: u64 function key, u64
context key, u8 flags (1: the cloudpickled function follows, 2: the pickled
context follows, 4: the last pickle is an (argument tuple, keyword dict)
pair), each that follows as a u32 length and its bytes, then the pickled
argument tuple (or pair). A context is (working directory, environment dict or
None): the worker enters it for the call and leaves it after. A reply's body
is u8 status (0 ok, 1 raised), then the pickle of the result, or of (type
name, message, formatted traceback, pickled exception or None). Status 2:
the result is no value oxiida takes, and the pickle is of (its type name,
why); status 3: the result could not be pickled, and status 4: the function
could not be unpickled here, each with the pickle of the error's text.
Status 5: returned, with out-of-band buffers (pickle protocol 5: a numpy
array's memory is never copied into the pickle): u32 count, a u64 size
each, u64 size of the pickle, the pickle, then the buffers' bytes. Replies
to the frames already read wait until none is left (a batch of calls gets
its replies in one write). Integers are big-endian.

Status 6 is not a reply but what the call being run wrote to `sys.stdout`
(then u8 1) or `sys.stderr` (u8 2), as UTF-8: each whole line as it is
written (so a long call's prints arrive as it runs), the rest when the call
returns; any number of these come before the call's reply. The caller writes
them to its own `sys.stdout` and `sys.stderr`, where the workflow's prints go.

A result crosses as it would from a plain call: subclasses of int, float,
str, list, tuple and dict (an IntEnum, a namedtuple) as their base values,
numpy scalars as their `.item()`, and anything else as itself, pickled
(protocol 5, its buffers out of band): the caller keeps it as a handle (the package) or
refuses it (the CLI plugin). One that cannot be pickled is refused here with
the words the caller uses. A call
of an `async def` function is awaited on the worker's own event loop.
"""

import io
import os
import pickle
import select
import struct
import sys
import threading
import time
import traceback
import types

# What the caller's conversion refuses deeper than (plugins/python/src/convert.rs).
MAX_DEPTH = 100


class _CannotCross(Exception):
    pass


class _CannotLoad(Exception):
    pass


# Values of these exact types are plain already (subclasses are not: they
# are converted to their base values below).
_EXACT = frozenset((type(None), bool, int, float, str))
_STR = frozenset((str,))


def _plain(value, depth=0, keep=False):
    # The result as the plain values a plain call would give the workflow;
    # `keep`: a value with no plain form stays itself (a handle for the caller).
    # Items of exact plain types are taken as they are, without a call each:
    # a list of a million ints is checked, not rebuilt item by item.
    if depth > MAX_DEPTH:
        raise _CannotCross(f"it is nested more than {MAX_DEPTH} levels deep (or contains itself); return a flatter value")
    if type(value) in _EXACT:
        return value
    if depth < MAX_DEPTH:
        if type(value) is list or type(value) is tuple:
            if _EXACT.issuperset(map(type, value)):  # the whole check in C
                return value if type(value) is list else list(value)
            exact, inner = _EXACT, depth + 1
            return [item if type(item) in exact else _plain(item, inner, keep) for item in value]
        if type(value) is dict:
            if _STR.issuperset(map(type, value)) and _EXACT.issuperset(map(type, value.values())):
                return value
            exact, inner, plain = _EXACT, depth + 1, {}
            for key, item in value.items():
                if type(key) is not str:
                    break
                plain[key] = item if type(item) in exact else _plain(item, inner, keep)
            else:
                return plain
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [_plain(item, depth + 1, keep) for item in value]
    if isinstance(value, dict):
        plain = {}
        for key, item in value.items():
            if not isinstance(key, str):
                if keep:
                    return value
                raise _CannotCross(f"a dict key must be a str, found `{type(key).__name__}`; convert the keys with str()")
            plain[str(key)] = _plain(item, depth + 1, keep)
        return plain
    numpy = sys.modules.get("numpy")
    if numpy is not None and isinstance(value, numpy.generic):
        item = value.item()
        if item is not value:
            return _plain(item, depth + 1, keep)
    if keep:
        return value
    raise _CannotCross(
        f"a value of type `{type(value).__name__}` cannot cross into oxiida; "
        "convert it to None, bool, int, float, str, list, tuple or dict"
    )


_loop = None


def _await(coroutine):
    # One event loop for the worker's life: a function's loop-bound state
    # (a client session) survives between calls, as in one workflow.
    global _loop
    if _loop is None:
        import asyncio

        _loop = asyncio.new_event_loop()
        asyncio.set_event_loop(_loop)
    return _loop.run_until_complete(coroutine)


class _NotPlain(Exception):
    pass


class _PlainPickler(pickle.Pickler):
    # The C pickler handles None, bool, int, float, str, bytes, list, tuple,
    # dict and set of their exact types itself and asks this only for any
    # other object: then the result needs converting first.
    def reducer_override(self, obj):
        raise _NotPlain


class _Parts(list):
    """The pickler's output as the parts it wrote (one per pickle frame of
    about 64 KiB, each a bytes the pickler made and handed over): sent by
    writev as they are, never joined or copied into a BytesIO.

    A large pickle is sent while it is being made: once its parts pass
    `FIRST` bytes, they go out as status 7 frames (each `EVERY` bytes), and
    its last part as status 8. The caller unpickles the parts as they come,
    while this process still pickles the rest: a large result costs the
    slower of the two, not their sum. Any other status after status 7
    frames (the pickle failed and its value went another way) tells the
    caller to drop them."""

    FIRST, EVERY = 1 << 20, 1 << 18

    def __init__(self, replies):
        super().__init__()
        self.replies, self.size, self.streamed = replies, 0, False

    def write(self, data):
        self.append(data)
        self.size += len(data)
        if self.size >= (self.EVERY if self.streamed else self.FIRST):
            with self.replies.lock:
                self.replies.add_parts(7, self)
                self.replies._flush()
            self.clear()
            self.size, self.streamed = 0, True


def _dumps(result, keep, replies):
    """The result pickled (protocol 5), as a plain call would give it: its
    status (0, 8 when its first parts were sent already, 5 with buffers),
    the pickle's parts and its out-of-band buffers (a numpy array's memory,
    sent without a copy). What is left to free once it is pickled (the
    pickler and its memo) goes into `keep`, freed after the reply is sent."""
    if type(result) in _EXACT:
        # A number, a str, None: nothing to convert or to free later, and
        # `pickle.dumps` is a fifth of a pickler made for it (0.2 against 1.1 us).
        return 0, [pickle.dumps(result, protocol=5)], []
    parts = _Parts(replies)
    pickler = _PlainPickler(parts, protocol=5)
    keep.append(pickler)
    try:
        pickler.dump(result)
        return (8 if parts.streamed else 0), parts, []
    except Exception:  # noqa: BLE001 - not only exact plain types: converted, then pickled
        buffers = []
        pickled = pickle.dumps(_plain(result, keep=True), protocol=5, buffer_callback=buffers.append)
        return (5 if buffers else 0), [pickled], buffers


def _die_with_parent(parent):
    # The host asked the kernel (PR_SET_PDEATHSIG, before exec) to kill this
    # worker when it dies; if it died before that, leave now.
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

    def has_frame(self):
        # Whether a whole call frame is already read: then its reply can
        # wait, and replies to a batch of calls leave in one write.
        if len(self.buffer) < 4:
            return False
        (size,) = struct.unpack_from(">I", self.buffer)
        return len(self.buffer) >= 4 + size

    def read(self, n):
        while len(self.buffer) < n:
            self._fill()
        data = bytes(self.buffer[:n])
        del self.buffer[:n]
        return data


class _Replies:
    """Replies held until no call frame is waiting (or they pass 1 MiB),
    then written together: one write for a batch of calls, and a large
    result is never copied to join it to its header."""

    LIMIT = 1 << 20

    def __init__(self, fd):
        self.fd, self.parts, self.size = fd, [], 0
        # A thread a function started may send its prints (`_Stream`): one
        # writer at a time, and each frame's parts added in one step.
        self.lock = threading.Lock()

    def add(self, status, payload):
        self.parts += (struct.pack(">IB", len(payload) + 1, status), payload)
        self.size += len(payload) + 5

    def add_parts(self, status, parts):
        # A payload in parts (a pickle as its pickler wrote it), not joined.
        size = sum(map(len, parts))
        self.parts.append(struct.pack(">IB", size + 1, status))
        self.parts += parts
        self.size += size + 5

    def add_with_buffers(self, parts, buffers):
        # Status 5: u32 count, a u64 size each, u64 pickle size, the pickle,
        # then each buffer's bytes as they are in memory (no copy here).
        raws = [b.raw() for b in buffers]
        pickled = sum(map(len, parts))
        head = struct.pack(f">I{len(raws)}QQ", len(raws), *(r.nbytes for r in raws), pickled)
        size = 1 + len(head) + pickled + sum(r.nbytes for r in raws)
        self.parts += [struct.pack(">IB", size, 5), head, *parts, *raws]
        self.size += size + 4

    def flush(self):
        with self.lock:
            self._flush()

    def _flush(self):
        parts = self.parts
        while parts:
            written = os.writev(self.fd, parts[:512])
            while parts and written >= len(parts[0]):
                written -= len(parts[0])
                parts.pop(0)
            if written:
                parts[0] = memoryview(parts[0])[written:]
        self.size = 0


class _Stream(io.TextIOBase):
    """`sys.stdout` or `sys.stderr` (`which`: 1 or 2) of a worker: what a
    function writes is sent to the caller as status 6 frames, after the
    replies held before it. Line-buffered: each write that ends a line sends
    up to that line's end (a long call's prints arrive as it runs); a
    partial line waits in `pending` until its end, `flush()` or the call's
    return, so a call that printed nothing costs the loop one test."""

    encoding, errors, LIMIT = "utf-8", "backslashreplace", 1 << 16
    # Set by the loop while a call runs; the thread that runs calls.
    calling, main = False, threading.get_ident()

    def __init__(self, which, replies):
        super().__init__()
        self.which, self.replies, self.pending, self.size = struct.pack(">B", which), replies, [], 0
        self.buffer = _Bytes(self)

    def writable(self):
        return True

    def isatty(self):
        return False

    def fileno(self):
        # A library that wants a descriptor (faulthandler) gets the worker's
        # stderr: fd 1 is the stderr too (see main).
        return 2

    def write(self, text):
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        if threading.get_ident() != self.main:
            # Another thread (one the function started): sent at once, unbuffered,
            # while a call runs; between calls nobody reads the frames, so to stderr.
            data = text.encode("utf-8", "backslashreplace")
            if _Stream.calling:
                self.send(data)
            else:
                os.write(2, data)
            return len(text)
        end = text.rfind("\n")
        if end < 0:
            self.pending.append(text)
            self.size += len(text)
            if self.size > self.LIMIT:
                self.flush()
        else:
            self.pending.append(text[: end + 1])
            self.flush()
            if end + 1 < len(text):
                self.pending.append(text[end + 1 :])
                self.size = len(text) - end - 1
        return len(text)

    def flush(self):
        if self.pending:
            text, self.pending, self.size = "".join(self.pending), [], 0
            self.send(text.encode("utf-8", "backslashreplace"))

    def send(self, data):
        with self.replies.lock:
            self.replies.add(6, self.which + data)
            self.replies._flush()


class _Bytes:
    """`sys.stdout.buffer`: bytes written go at once, after the text before them."""

    def __init__(self, text):
        self.text = text

    def write(self, data):
        data = bytes(data)
        if threading.get_ident() != _Stream.main:
            if not _Stream.calling:
                os.write(2, data)
            elif data:
                self.text.send(data)
            return len(data)
        self.text.flush()
        if data:
            self.text.send(data)
        return len(data)

    def flush(self):
        self.text.flush()

    def writable(self):
        return True


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


class _Contexts:
    """Where each workflow's calls run. Entering one changes only what
    differs from the worker's own directory and environment; leaving
    restores them. The variables the pool set for the worker itself stay."""

    OWN = ("OXIIDA_PARENT_PID", "PYTHONPATH")

    def __init__(self):
        self.known = {}
        self.home = os.getcwd()
        self.base = dict(os.environ)

    def add(self, key, pickled):
        cwd, env = pickle.loads(pickled)
        changed, removed = {}, []
        if env is not None:
            changed = {k: v for k, v in env.items() if self.base.get(k) != v and k not in self.OWN}
            removed = [k for k in self.base if k not in env and k not in self.OWN]
        self.known[key] = (cwd, changed, removed)

    def enter(self, key):
        cwd, changed, removed = self.known[key]
        if cwd != self.home:
            os.chdir(cwd)
        if changed or removed:
            os.environ.update(changed)
            for k in removed:
                os.environ.pop(k, None)

    def leave(self, key):
        _, changed, removed = self.known[key]
        if changed or removed:
            for k in changed:
                if k in self.base:
                    os.environ[k] = self.base[k]
                else:
                    os.environ.pop(k, None)
            for k in removed:
                os.environ[k] = self.base[k]
        try:
            if os.getcwd() != self.home:  # the call's folder, or one the function moved to
                os.chdir(self.home)
        except OSError:
            pass


def main():
    _die_with_parent(int(os.environ.get("OXIIDA_PARENT_PID", os.getppid())))
    try:
        import cloudpickle
    except ImportError as e:  # every call then fails with this clear reason
        cloudpickle, missing = None, e

    # The pipes move to private descriptors: what a function writes to
    # fd 1 (from C) goes to stderr, and one that reads stdin reads nothing.
    # What it writes to sys.stdout and sys.stderr goes to the caller, which
    # prints it where the workflow's own prints go.
    inp, out = _Frames(os.dup(0)), os.dup(1)
    os.dup2(2, 1)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    functions = {}
    # Functions that could not be loaded, and why: a batch may call one again
    # without sending it again.
    unloadable = {}
    contexts = _Contexts()
    replies = _Replies(out)
    stdout = sys.stdout = _Stream(1, replies)
    stderr = sys.stderr = _Stream(2, replies)
    # Results already pickled, with their picklers: freeing a large one
    # (a million ints, its pickler's memo) waits until its reply is sent,
    # so the caller reads it meanwhile.
    sent = []
    while True:
        if replies.parts and (not inp.has_frame() or replies.size > replies.LIMIT):
            replies.flush()
            sent.clear()
        try:
            (size,) = struct.unpack(">I", inp.read(4))
            body = memoryview(inp.read(size))
        except EOFError:
            return
        key, context, flags = struct.unpack_from(">QQB", body)
        at = 17
        function = None
        if flags & 1:
            (n,) = struct.unpack_from(">I", body, at)
            function, at = body[at + 4:at + 4 + n], at + 4 + n
        if flags & 2:
            (n,) = struct.unpack_from(">I", body, at)
            contexts.add(context, body[at + 4:at + 4 + n])
            at += 4 + n
        args = body[at:]
        entered = False
        try:
            if function is not None:
                unloadable.pop(key, None)
                try:
                    if cloudpickle is None:
                        raise missing
                    functions[key] = cloudpickle.loads(function)
                except Exception as e:  # noqa: BLE001 - the function never ran: said so
                    unloadable[key] = f"{type(e).__name__}: {e}"
                    raise _CannotLoad(unloadable[key]) from None
            elif key in unloadable:
                raise _CannotLoad(unloadable[key])
            contexts.enter(context)
            entered = True
            _Stream.calling = True
            if flags & 4:
                positional, keywords = pickle.loads(args)
            else:
                positional, keywords = pickle.loads(args), {}
            result = functions[key](*positional, **keywords)
            if isinstance(result, types.CoroutineType):
                result = _await(result)
            status = 0
        except _CannotLoad as e:
            status, payload = 4, pickle.dumps(str(e), protocol=5)
        except BaseException as e:  # noqa: BLE001 - every failure goes back to the caller
            status, payload = 1, pickle.dumps((type(e).__name__, str(e), _traceback(e), _pickled(e, cloudpickle or pickle)), protocol=5)
        finally:
            _Stream.calling = False
            if entered:
                contexts.leave(context)
            # A partial line printed goes before the reply.
            if stdout.pending:
                stdout.flush()
            if stderr.pending:
                stderr.flush()
        if status == 0:
            try:
                try:
                    status, payload, buffers = _dumps(result, sent, replies)
                except Exception as e:
                    # A value that would not cross anyway is refused as such.
                    try:
                        _plain(result)
                    except _CannotCross as refused:
                        raise _CannotCross(
                            f"{refused} (the oxiida package keeps such a value as a handle, but pickling it "
                            f"back from the worker failed: {type(e).__name__}: {e}; call the function without =f=)"
                        ) from None
                    raise
            except _CannotCross as e:
                status, payload = 2, pickle.dumps((type(result).__name__, str(e)), protocol=5)
            except Exception as e:  # noqa: BLE001 - said as a transport failure, not as raised
                status, payload = 3, pickle.dumps(f"{type(e).__name__}: {e}", protocol=5)
            if status in (0, 5, 8):
                sent.append(result)
            result = None
        if status == 5:
            replies.add_with_buffers(payload, buffers)
        elif status in (0, 8):
            replies.add_parts(status, payload)
        else:
            replies.add(status, payload)
        payload = buffers = None


if __name__ == "__main__":
    main()
