"""`=f=` calls on an executor: a Dask cluster (`distributed.Client`) or any
`concurrent.futures.Executor` (ProcessPoolExecutor, loky, mpi4py's
MPIPoolExecutor). The Rust side (plugins/python/src/executor.rs) loads this
file from its own text, as it does `_loop.py`, so the command-line plugin
needs no installed package; neither do the executor's workers, which only
need cloudpickle (and Dask's own packages, for a Dask worker).

A workflow with an executor has one `Dispatch`: each `=f=` call submits the
function and its arguments there and waits for the result on the call's
thread (the GIL released while it waits). The function travels as
cloudpickle's bytes, made once per function: by value for a script's own
functions, by reference for those of importable modules (the workers must
import those). Arguments and results use the executor's own serialization.
Cancelling the workflow cancels its futures: `client.cancel(..., force=True)`
on Dask, `Future.cancel()` (pending calls only) elsewhere.
"""

import atexit
import concurrent.futures
import os
import sys
import threading
import uuid

# The address schemes handed to `distributed.Client` as they are; `dask://`
# is plain TCP (`tcp://`), the scheduler's default.
_DASK_SCHEMES = ("tcp://", "tls://", "ucx://", "ws://", "wss://", "inproc://")

# Clients made here from an address, one per address in the process: a
# second workflow to the same scheduler reuses the connection.
_CLIENTS = {}
_CLIENTS_LOCK = threading.Lock()


class ExecutorError(Exception):
    """An executor that cannot be used: said before anything runs."""


class CannotSend(Exception):
    """The function could not be pickled for the executor."""


def _is_dask_client(obj):
    distributed = sys.modules.get("distributed")
    return distributed is not None and isinstance(obj, distributed.Client)


def describe(spec):
    """What `spec` is, for messages."""
    if isinstance(spec, str):
        return spec
    if _is_dask_client(spec):
        return f"the Dask cluster at {spec.scheduler.address if spec.scheduler else '(no scheduler)'}"
    return type(spec).__name__


def _address(spec):
    if spec.startswith("dask://"):
        return "tcp://" + spec[len("dask://"):]
    if spec.startswith(_DASK_SCHEMES):
        return spec
    raise ExecutorError(
        f"unknown executor `{spec}`: give a Dask scheduler's address (dask://HOST:PORT, or tcp://, tls://), "
        "`pool` for oxiida's own worker processes, or (in Python) a concurrent.futures.Executor or a distributed.Client"
    )


def _connect(address):
    try:
        import distributed
        import dask
    except ImportError as e:
        raise ExecutorError(
            f"the executor {address} is a Dask scheduler, which needs the `distributed` package in this Python "
            f"({sys.executable}): pip install distributed ({e})"
        ) from None
    with _CLIENTS_LOCK:
        client = _CLIENTS.get(address)
        if client is not None and client.status == "running":
            return client
        timeout = dask.config.get("distributed.comm.timeouts.connect")
        try:
            client = distributed.Client(address, set_as_default=False, timeout=timeout)
        except (OSError, TimeoutError) as e:
            raise ExecutorError(
                f"cannot reach the Dask scheduler at {address} (waited {timeout}: {e}); start it with "
                f"`dask scheduler` and its workers with `dask worker {address}`, or check the address; nothing was run"
            ) from None
        _CLIENTS[address] = client
        return client


def connect(spec):
    """The `Dispatch` for `spec` (an address string, a distributed.Client, a
    concurrent.futures.Executor), or None for oxiida's own pool (None, "",
    "pool"). None means OXIIDA_EXECUTOR, when it is set."""
    if spec is None:
        spec = os.environ.get("OXIIDA_EXECUTOR") or None
        if spec is None:
            return None
    if isinstance(spec, str):
        spec = spec.strip()
        if spec in ("", "pool"):
            return None
        return Dispatch(_connect(_address(spec)))
    if _is_dask_client(spec):
        if spec.status != "running":
            raise ExecutorError(f"the distributed.Client given as executor is {spec.status}, not running; connect it again")
        return Dispatch(spec)
    if isinstance(spec, concurrent.futures.Executor):
        _start_forked(spec)
        return Dispatch(spec)
    raise TypeError(
        f"executor must be a concurrent.futures.Executor, a distributed.Client or an address such as "
        f"'dask://HOST:PORT', not {type(spec).__name__}"
    )


def _start_forked(executor):
    # A ProcessPoolExecutor that forks starts all its processes at its first
    # submit; started from a workflow's thread, the forked children of this
    # multi-threaded process can hang. Its first submit is made here, on the
    # caller's thread, before the workflow runs.
    if isinstance(executor, concurrent.futures.ProcessPoolExecutor):
        context = getattr(executor, "_mp_context", None)
        if context is not None and context.get_start_method() == "fork" and not getattr(executor, "_processes", None):
            executor.submit(int).result()


def address_of(spec):
    """`spec` as an address the daemon can connect to itself (`oxiida.submit`)."""
    if spec is None or isinstance(spec, str):
        if isinstance(spec, str) and spec.strip() not in ("", "pool"):
            _address(spec.strip())  # refused here, before anything is sent
        return spec
    if _is_dask_client(spec):
        return spec.scheduler.address
    raise TypeError(
        f"oxiida.submit sends the workflow to the daemon, where a {type(spec).__name__} object cannot follow: "
        "give the executor as a Dask scheduler's address ('dask://HOST:PORT'), or start the daemon with --executor"
    )


def _close_clients():
    with _CLIENTS_LOCK:
        clients = list(_CLIENTS.values())
        _CLIENTS.clear()
    for client in clients:
        try:
            client.close(timeout=2)
        except Exception:  # noqa: BLE001 - at exit, a client that cannot close is left
            pass


atexit.register(_close_clients)


class _Shipped:
    """A function as it travels: pickled, it is `pickle.loads(bytes)`, so the
    receiving side gets the function itself from cloudpickle's bytes (by
    value for a script's own functions) with nothing of oxiida imported."""

    __slots__ = ("function", "data")

    def __init__(self, function, data):
        self.function = function
        self.data = data

    def __reduce__(self):
        import pickle

        return (pickle.loads, (self.data,))

    def __call__(self, *args, **kwargs):
        return self.function(*args, **kwargs)


def _say_who(function, kwargs, *args):
    # Runs on the executor's worker (sent by value, as `_interrupt` is): the
    # call, and who ran it for oxiida's task records: a Dask worker's
    # address, else the executor process's pid and host.
    import os
    import socket

    result = function(*args, **(kwargs or {}))
    who = None
    try:
        from distributed import get_worker

        who = get_worker().address
    except Exception:  # noqa: BLE001 - not on a Dask worker
        pass
    return result, who or (os.getpid(), socket.gethostname())


def _interrupt(keys, dask_worker=None):
    # Runs on each Dask worker (`client.run`; sent by value, as this module
    # is not importable there): raises InterruptedError in the threads still
    # running one of `keys`, at their next bytecode. A call blocked in C (a
    # sleep, a read) stops when that returns; the task is already cancelled.
    import ctypes

    wanted = set(keys)
    for ident, key in list(getattr(dask_worker, "active_threads", {}).items()):
        if key in wanted:
            ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(ident), ctypes.py_object(InterruptedError))


class Dispatch:
    """One workflow's `=f=` calls on one executor, and its futures still
    wanted (cancelled with the workflow)."""

    def __init__(self, executor):
        self.executor = executor
        self.dask = _is_dask_client(executor)
        self.futures = set()
        self.lock = threading.Lock()
        self.cancelled = False
        self.shipped = {}
        self.reporter = None

    def _ship(self, key, function, name):
        shipped = self.shipped.get(key)
        if shipped is None:
            import cloudpickle

            try:
                data = cloudpickle.dumps(function)
            except Exception as e:  # noqa: BLE001 - said as a transport failure
                raise CannotSend(f"{type(e).__name__}: {e}") from None
            shipped = self.shipped.setdefault(key, _Shipped(function, data))
        return shipped

    def _reporter(self):
        if self.reporter is None:
            import cloudpickle

            # This module is not importable on the workers: `_say_who` goes by value.
            cloudpickle.register_pickle_by_value(sys.modules[__name__])
            self.reporter = _Shipped(_say_who, cloudpickle.dumps(_say_who))
        return self.reporter

    def call_reporting(self, key, name, function, args, kwargs):
        """`call`, and who ran it (for a recorded task): `(result, who)`,
        `who` a Dask worker's address or `pid N` (`pid N on HOST` when the
        executor's process is on another host)."""
        result, who = self.call(key, name, function, args, kwargs, report=True)
        if not isinstance(who, str):
            import socket

            pid, host = who
            who = f"pid {pid}" if host == socket.gethostname() else f"pid {pid} on {host}"
        return result, who

    def call(self, key, name, function, args, kwargs, report=False):
        """Runs `function(*args, **kwargs)` on the executor and returns its
        result, or raises what it raised (Dask: with the worker's traceback;
        elsewhere: with the executor's RemoteTraceback as its cause).
        `report`: returns `(result, who)` from `_say_who` instead."""
        shipped = self._ship(key, function, name)
        with self.lock:
            if self.cancelled:
                raise concurrent.futures.CancelledError("the workflow was cancelled")
            if report:
                # Keywords as one argument of `_say_who`: never Dask's `key=`.
                extra = {"key": f"{name}-{uuid.uuid4().hex}", "pure": False} if self.dask else {}
                future = self.executor.submit(self._reporter(), shipped, kwargs, *args, **extra)
            elif self.dask:
                # A key of its own (pure=False): the same call twice runs twice.
                # Keywords through a partial: `f(key=1)` must not be Dask's `key=`.
                target = shipped
                if kwargs:
                    import functools

                    target = functools.partial(shipped, **kwargs)
                future = self.executor.submit(target, *args, key=f"{name}-{uuid.uuid4().hex}", pure=False)
            else:
                future = self.executor.submit(shipped, *args, **(kwargs or {}))
            self.futures.add(future)
        try:
            return future.result()
        except BaseException as e:
            self._explain(e, name)
            remote = None
            if self.dask and future.status == "error":
                try:
                    remote = future.traceback()
                except Exception:  # noqa: BLE001 - then the whole traceback stays
                    remote = None
            if remote is None:
                raise
            # The worker's frames, without the client's machinery in between.
            raise e.with_traceback(remote) from e.__cause__
        finally:
            with self.lock:
                self.futures.discard(future)

    def _explain(self, e, name):
        killed = getattr(sys.modules.get("distributed.scheduler"), "KilledWorker", None)
        if killed is not None and isinstance(e, killed) and hasattr(e, "add_note"):
            worker = getattr(getattr(e, "last_worker", None), "address", None) or "unknown"
            e.add_note(
                f"the `=f=` call of `{name}` was running on every Dask worker that died while running it "
                f"(the last one: {worker}); Dask gave up after "
                f"{getattr(e, 'allowed_failures', 0) + 1} attempts (distributed.scheduler.allowed-failures). "
                "Look at that worker's log: a crash in native code, or a worker memory limit, kills a worker"
            )

    def cancel(self):
        """The workflow is over or cancelled: its futures still pending or
        running are not wanted, and no new call is submitted."""
        with self.lock:
            self.cancelled = True
            futures = list(self.futures)
            self.futures.clear()
        if not futures:
            return
        if self.dask:
            keys = [future.key for future in futures]
            try:
                self.executor.cancel(futures, force=True)
            except Exception:  # noqa: BLE001 - a client already closed has nothing to cancel
                return
            # The scheduler forgets them, but a worker thread still runs each
            # one that had started: interrupt it there too.
            try:
                import cloudpickle

                # This module is not importable on the workers: `_interrupt` goes by value.
                cloudpickle.register_pickle_by_value(sys.modules[__name__])
                self.executor.run(_interrupt, keys)
            except Exception as e:  # noqa: BLE001 - then they run to their end
                print(f"oxiida: the cancelled calls still running on Dask workers could not be interrupted: {e}", file=sys.stderr)
        else:
            for future in futures:
                future.cancel()
