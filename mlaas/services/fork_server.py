"""A fork server: a long-lived process that has imported and warmed what its children need and
starts each of them as a forked child of itself, so that a child begins where a new interpreter
would be after seconds of imports and first-call set-up. The warm trainer
(mlaas/retraining/warm_trainer.py) and the warm runtime (inference_svc/warm.py) are fork servers;
the scheduler's local backend starts them and is their one client
(scheduler_svc/backends/fork_client.py).

It reads requests on its standard input, one JSON object per line, and answers each on its
standard output, after a first `{"ready": true}` once it is warm:

    {"argv": [...], "env_file": "/path/child.env", "log": "/path/child.log"}
    -> {"pid": 1234}   or   {"error": "why not"}

and, between answers, when a child ends: {"exited": 1234, "code": 0} (minus the signal's number
when a signal ended it, as subprocess says it).

The child runs the server's `run_child(argv)` under the rules of a process started cold: its own
session (process group), its own log on its standard output and error, nothing of the server's
open files, exactly the environment in `env_file` (a JSON object), which the child reads and
deletes, and the command line a cold one would have (`python -m CHILD_MODULE ARGV...`, for ps
and for whoever looks for it). The server never reads that file: a child's credential does not pass through the memory
that every later child inherits.

The server holds no thread when it forks (it never opens a gRPC channel itself) and reaps its
children as they end. When its standard input closes (its client is gone) it starts no more children and
exits once the last one has: they stay its children, in the process tree of whoever started it.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import sys
import traceback
from collections.abc import Callable
from typing import IO

import setproctitle

RunChild = Callable[[list[str]], int]


def child_env(path: str) -> dict[str, str]:
    """The environment a request's file holds, which is deleted once read."""
    try:
        with open(path) as env_file:
            env = json.load(env_file)
    finally:
        os.unlink(path)
    return checked_env(env)


def checked_env(env: object) -> dict[str, str]:
    """A child's environment as a request gave it, if it maps strings to strings."""
    if not (isinstance(env, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in env.items())):
        raise ValueError("the environment must map strings to strings")
    return env


def checked_argv(argv: object) -> list[str]:
    """A child's arguments as a request gave them, if they are a list of strings."""
    if not (isinstance(argv, list) and all(isinstance(a, str) for a in argv)):
        raise ValueError("argv must be a list of strings")
    return argv


def start_child(request: dict, run_child: RunChild, server: str, child_module: str) -> tuple[int, int]:
    """Forks the child of `request`: its pid, and the pipe to write one byte to once the client
    has its pid. The child goes on only then: one whose pid never reached the client (the server
    was killed or stalled meanwhile) would run untracked, so it exits when the pipe closes unwritten."""
    argv, env_file, log = checked_argv(request["argv"]), request["env_file"], request["log"]
    if not (isinstance(env_file, str) and isinstance(log, str)):
        raise ValueError("env_file and log must be paths")
    log_fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    go_read, go_write = os.pipe()
    try:
        pid = os.fork()
    except OSError:
        for fd in (log_fd, go_read, go_write):
            os.close(fd)
        raise
    if pid:
        os.close(log_fd)
        os.close(go_read)
        return pid, go_write
    code = 1  # as Python's for an exception nobody caught
    try:
        os.setsid()
        signal.set_wakeup_fd(-1)  # the server's, closed below
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        os.close(go_write)
        if os.read(go_read, 1) != b"1":
            os._exit(1)  # untracked: nobody would ever stop it
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        os.closerange(3, 1 << 16)  # nothing of the server's stays open in the child
        os.environ.clear()
        os.environ.update(child_env(env_file))
        setproctitle.setproctitle(" ".join([sys.executable, "-m", child_module, *argv]))
        print(f"forked by {server} {os.getppid()}", flush=True)
        code = run_child(argv)
    except SystemExit as stop:  # as the interpreter says it: None is 0, a message is 1
        code = 0 if stop.code is None else stop.code if isinstance(stop.code, int) else 1
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)  # no interpreter teardown: the child's outputs are written and closed


def reap() -> list[dict[str, int]]:
    """The children that ended since the last call, collected."""
    ended: list[dict[str, int]] = []
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return ended
        if pid == 0:
            return ended
        ended.append({"exited": pid, "code": os.waitstatus_to_exitcode(status)})


def serve(requests: int, answers: IO[str], run_child: RunChild, server: str, child_module: str) -> None:
    """Answers the requests on the file descriptor `requests` until it closes, and says when a
    child ends (SIGCHLD wakes the wait)."""
    woken, wake = os.pipe()
    os.set_blocking(wake, False)
    signal.set_wakeup_fd(wake)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # a handler: the wake-up fd is written only for those
    pending = b""
    env_files: dict[int, str] = {}  # of the running children: removed (unread) when one ended before reading its own
    while True:
        readable, _, _ = select.select([requests, woken], [], [])
        if woken in readable:
            os.read(woken, 4096)
        for message in reap():
            with contextlib.suppress(OSError):
                os.unlink(env_files.pop(message["exited"], ""))
            _say(answers, message)
        if requests not in readable:
            continue
        chunk = os.read(requests, 65536)
        if not chunk:
            return
        *lines, pending = (pending + chunk).split(b"\n")
        for line in lines:
            try:
                request = json.loads(line)
                pid, go = start_child(request, run_child, server, child_module)
            except Exception as err:  # the request's fault or the machine's: said, and the next one is served
                _say(answers, {"error": f"{type(err).__name__}: {err}"})
                continue
            env_files[pid] = request["env_file"]
            try:
                _say(answers, {"pid": pid})
                with contextlib.suppress(BrokenPipeError):  # the child is gone already (killed by its pid)
                    os.write(go, b"1")
            finally:
                os.close(go)


def _say(answers: IO[str], message: dict) -> None:
    answers.write(json.dumps(message) + "\n")
    answers.flush()


def outlive_children() -> None:
    """Waits until every child has ended."""
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    while True:
        try:
            os.wait()
        except ChildProcessError:
            return
        except InterruptedError:
            continue


def run(warm_up: Callable[[], None], run_child: RunChild, server: str, child_module: str) -> int:
    """The fork server's main: warms up, says it is ready, serves its standard input until it
    closes, then waits for its children."""
    setproctitle.getproctitle()  # makes room for the children's titles while the environment is as exec left it
    warm_up()
    answers = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # what the libraries print goes to the server's log, not into the answers
    answers.write(json.dumps({"ready": True}) + "\n")
    answers.flush()
    serve(sys.stdin.fileno(), answers, run_child, server, child_module)
    answers.close()
    outlive_children()
    return 0
