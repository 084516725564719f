"""`python -m oxiida daemon start [--foreground] [LIMITS] [--executor ADDRESS] | stop | restart [LIMITS] | status`

LIMITS are the `oxiida daemon start` flags: --memory-limit SIZE|none,
--output-limit SIZE, --max-running N, --idle-timeout SECS; `restart` keeps
the running daemon's unless given new ones. `--executor dask://HOST:PORT`
runs every workflow's `=f=` calls on that Dask cluster (docs/distributed.md);
`restart` keeps it unless given another (`--executor pool`: oxiida's own workers).

A daemon started this way is bound to this interpreter: its workflows call
Python in this environment (its sys.path, its installed packages), and it
warns every client once that environment's site-packages change.
"""

import argparse
import os
import site
import select
import signal
import subprocess
import sys

from . import _oxiida


def _watched():
    """site-packages, the folders their .pth files add (editable installs),
    and those in OXIIDA_WATCH (colon-separated)."""
    folders = [f for f in site.getsitepackages() if os.path.isdir(f)]
    folders += [f for f in os.environ.get("OXIIDA_WATCH", "").split(os.pathsep) if f and os.path.isdir(f)]
    user = site.getusersitepackages()
    if isinstance(user, str) and os.path.isdir(user):
        folders.append(user)
    for folder in list(folders):
        for name in sorted(os.listdir(folder)):
            if not name.endswith(".pth"):
                continue
            try:
                with open(os.path.join(folder, name), encoding="utf-8") as f:
                    lines = f.read().splitlines()
            except OSError:
                continue
            for line in lines:
                line = line.strip()
                if line and not line.startswith(("#", "import ")) and os.path.isdir(line) and line not in folders:
                    folders.append(line)
    return folders


_LIMITS = ("memory_limit", "output_limit", "max_running", "idle_timeout")
# Passed on like the limits, but not one of them (no daemon reports it back).
_FLAGS = _LIMITS + ("executor",)


def _limit_args(args):
    """The limit flags given, as `daemon start --foreground` takes them."""
    return [f"--{name.replace('_', '-')}={getattr(args, name)}" for name in _FLAGS if getattr(args, name) is not None]


def _add_limits(parser):
    parser.add_argument("--memory-limit", metavar="SIZE", help="most memory (address space) per workflow, about 0.5 GiB of it reserved by the runner itself: 2G, 8G or none [default: 4G]")
    parser.add_argument("--output-limit", metavar="SIZE", help="most output kept per workflow, its first and last halves [default: 64M]")
    parser.add_argument("--max-running", metavar="N", help="most workflows running at once; more wait, queued [default: 64]")
    parser.add_argument("--idle-timeout", metavar="SECS", help="close connections silent this long [default: 300]")
    parser.add_argument(
        "--executor", metavar="ADDRESS",
        help="run the workflows' =f= calls on this Dask scheduler (dask://HOST:PORT, tls://HOST:PORT), "
        "or `pool` for oxiida's own workers [default: OXIIDA_EXECUTOR, else the pool]",
    )


def _start(foreground, args):
    pid = _oxiida._daemon_pid()
    socket, log = _oxiida._daemon_paths()
    if pid is not None:
        said = f"oxiida: a daemon is already running (pid {pid}, socket {socket})"
        there = _oxiida._daemon_environment()
        if there is not None and there != sys.prefix:
            runs = f"the Python environment {there}" if there else "no Python (the `oxiida` CLI started it)"
            said += (
                f"; it runs {runs}, not this one ({sys.prefix}): stop it first (`daemon stop`), or give this "
                "environment a daemon of its own by setting OXIIDA_RUNTIME_DIR and OXIIDA_DATA_DIR to folders of its own"
            )
        print(said, file=sys.stderr)
        return 1
    if foreground:
        try:
            _oxiida._daemon_serve(_watched(), *(getattr(args, name) for name in _LIMITS), executor=args.executor)
        except KeyboardInterrupt:
            pass
        except _oxiida.OxiidaError as e:
            print(f"oxiida: {e}", file=sys.stderr)
            return 1
        return 0
    # The daemon writes to this pipe once it serves, and closes it unwritten
    # if it fails first: the wait is a read, not a poll of the socket.
    ready_read, ready_write = os.pipe()
    env = dict(os.environ, OXIIDA_DAEMON_READY_FD=str(ready_write))
    # The log holds workflows' output: the user's alone (0600), never opened through a link.
    log_fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    with os.fdopen(log_fd, "ab") as out:
        start_at = out.tell()
        child = subprocess.Popen(
            [sys.executable, "-m", "oxiida", "daemon", "start", "--foreground", *_limit_args(args)],
            stdin=subprocess.DEVNULL, stdout=out, stderr=out, cwd="/", start_new_session=True,
            env=env, pass_fds=(ready_write,),
        )
    os.close(ready_write)
    try:
        answered, _, _ = select.select([ready_read], [], [], 10)
        said = os.read(ready_read, 1) if answered else None
    finally:
        os.close(ready_read)
    if said is None:
        print(f"oxiida: the daemon did not answer within 10 s; see {log}", file=sys.stderr)
        return 1
    if not said:
        child.wait()
        with open(log, "rb") as f:
            f.seek(start_at)
            print(f"oxiida: the daemon did not start:\n{f.read().decode(errors='replace').rstrip()}", file=sys.stderr)
        return 1
    print(f"daemon started (pid {child.pid}, Python {sys.executable}); socket {socket}, log {log}")
    return 0


def main(argv=None, prog="python -m oxiida"):
    parser = argparse.ArgumentParser(prog=prog, description="The oxiida daemon, bound to this Python.")
    commands = parser.add_subparsers(dest="command", required=True)
    daemon = commands.add_parser("daemon", help="start, stop, restart or ask about the daemon")
    action = daemon.add_subparsers(dest="action", required=True)
    start = action.add_parser("start", help="start the daemon (detached unless --foreground)")
    start.add_argument("--foreground", action="store_true", help="serve in this terminal")
    _add_limits(start)
    action.add_parser("stop", help="stop the daemon, cancelling its running workflows")
    restart = action.add_parser("restart", help="stop the daemon and start it again with this Python, keeping its limits")
    _add_limits(restart)
    action.add_parser("status", help="pid, uptime, socket, log, plugins, running workflows")
    args = parser.parse_args(argv)
    try:
        if args.action == "start":
            return _start(args.foreground, args)
        if args.action == "restart":
            # Each limit not given again is the running daemon's.
            for flag in _oxiida._daemon_limit_args():
                name, value = flag[2:].split("=", 1)
                if getattr(args, name.replace("-", "_")) is None:
                    setattr(args, name.replace("-", "_"), value)
            stopped = _oxiida._daemon_command("stop")
            return stopped if stopped else _start(False, args)
        return _oxiida._daemon_command(args.action)
    except _oxiida.OxiidaError as e:
        # A runtime folder that cannot be trusted, say: the message, not a traceback.
        print(f"oxiida: {e}", file=sys.stderr)
        return 1


def console():
    """The `oxiida` console command that installing the package puts on
    PATH: the `oxiida` CLI (run, check, submit, workflow, --version, ...),
    its own code running in this process, except `oxiida daemon ...`, which
    is `python -m oxiida daemon ...`: the daemon of this Python environment."""
    argv = sys.argv[1:]
    if argv[:1] == ["daemon"]:
        return main(argv, prog="oxiida")
    sys.stdout.flush()
    # Ctrl-C does what it does to the `oxiida` binary (the CLI handles it
    # where it waits on a workflow), not raise KeyboardInterrupt later.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    return _oxiida._cli(["oxiida", *argv])


if __name__ == "__main__":
    sys.exit(main())
