"""A grading process that runs ``nbgrader autograde`` for one task after another.

    python -m autograder.grading.autograde_server [FOLDER]

A worker of ``python -m autograder grade`` (``autograder.grading.batch``) grades each task with
real nbgrader, run as ``nbgrader`` runs it (``NbGraderApp``: the command line, the course's
``nbgrader_config.py``, ``app.start()``), in a process of its own, so that a task past its
time limit is stopped by killing that process's group. A fresh ``nbgrader`` process per task
paid, every time, for nbgrader's and torch's imports, the warm sandbox's server and the judges'
server (about 13 s of CPU on 2 cores, docs/performance.md); this process keeps them from one
task to the next, as one ``nbgrader autograde`` of several students already does. No student
code runs in it: kernels and re-runs run in the sandbox, metrics in the judges.

The protocol, one JSON object per line: the worker writes ``{"cwd": COURSE, "args": [...],
"log": FILE, "env": {...}}`` to stdin; this process runs ``nbgrader ARGS`` in ``COURSE``, with
``env`` added to its environment for that task, and with its stdout and
stderr (and those of the processes it starts) going to ``FILE``, then answers ``{"returncode":
N}`` on its own stdout; ``{"preload": [MODULE, ...]}`` imports those modules ahead of the first
task. End of input ends it.

``FOLDER`` is the worker's folder for this process (its private course and the log). The worker
removes it when it stops this process; when the worker itself dies (a killed or terminated pool
worker), this process gets SIGTERM (``PR_SET_PDEATHSIG``), ends the processes it started (its
process group) and removes the folder itself, so that nothing is left in the temporary folder.
"""
from __future__ import annotations

import atexit
import json
import os
import shutil
import signal
import sys
import time
import traceback


def autograde(args: list[str]) -> int:
    """``nbgrader ARGS`` in this process, as nbgrader's own tests run it (``NbGraderApp``,
    then ``reset()`` so that the next call starts from a fresh application)."""
    from nbgrader.apps.nbgraderapp import NbGraderApp

    app = NbGraderApp.instance()
    try:
        app.initialize(args)
        app.start()
        return 0
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except Exception:  # noqa: BLE001 - the task's failure, as an uncaught error ends `nbgrader`
        traceback.print_exc()
        return 1
    finally:
        app.reset()


def _orphaned(folder: str):
    """The SIGTERM handler (the worker is gone, or stops this process): the processes of this
    group (a kernel, the sandbox's servers) are ended, the worker's folder is removed, the
    exit-time clean-up runs, then this process ends."""

    owner = os.getpid()

    def handler(signum, frame):  # noqa: ARG001
        if os.getpid() != owner:  # a forked child that kept the handler: ends as by default
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        try:
            os.killpg(os.getpgrp(), signal.SIGTERM)
        except OSError:
            pass
        for _ in range(3):  # a process of the group may still write for a moment
            shutil.rmtree(folder, ignore_errors=True)
            if not os.path.exists(folder):
                break
            time.sleep(0.2)
        # The exit-time clean-up (the warm sandbox's staging folder, ...), within 10 s: SIGALRM
        # ends the process if a clean-up hangs.
        signal.alarm(10)
        try:
            atexit._run_exitfuncs()
        except BaseException:  # noqa: BLE001, S110 - exiting anyway
            pass
        os._exit(128 + signum)

    return handler


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv:
        signal.signal(signal.SIGTERM, _orphaned(argv[0]))
    answers = os.fdopen(os.dup(1), "w")
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    home = os.getcwd()
    for line in sys.stdin:
        request = json.loads(line)
        if "preload" in request:  # modules to import before the first task (see batch.PoolRunner)
            for module in request["preload"]:
                __import__(module)
            answers.write(json.dumps({"returncode": 0}) + "\n")
            answers.flush()
            continue
        log = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(log)
        path, environ = list(sys.path), dict(os.environ)
        try:
            os.environ.update(request.get("env") or {})
            os.chdir(request["cwd"])
            code = autograde(request["args"])
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(devnull, 1)
            os.dup2(devnull, 2)
            os.chdir(home)
            sys.path[:] = path  # nbgrader puts the course first on sys.path
            os.environ.clear()
            os.environ.update(environ)
        answers.write(json.dumps({"returncode": code}) + "\n")
        answers.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
