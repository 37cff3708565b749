"""Warm sandboxes: sandboxed processes forked from an interpreter that imported torch once.

Every sandboxed process of the replay (the producer, the second stage) used to be a fresh
``bwrap`` + ``python``, and each paid for the interpreter and ``import torch`` (3 to 4 s here),
more than the work itself. A :class:`WarmSandbox` starts one server per grading process
(``autograder.sandbox.zygote``) in a bubblewrap sandbox with the kernels' view of the system
and limits, lets it import torch and the checks, and asks it for each job: the server forks a
child that gets new mount, pid, network and ipc namespaces, sees only the job's own
directories, runs as its own uid (as root) or without capabilities (in a user namespace), and
then runs the job's ``main``. A job gets the isolation of a fresh bwrap; what it shares with the
server is memory the server filled before any job ran, copied on write.

Job directories live under :attr:`WarmSandbox.staging` (a private temporary directory, the one
writable path of the server's sandbox); a job sees only those it names.

``c.Sandbox.warm = False`` goes back to a fresh bwrap per process.
"""
from __future__ import annotations

import atexit
import contextlib
import itertools
import json
import os
import select
import shutil
import stat
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from . import Sandbox, SandboxUnavailable, claim_uid
from .zygote import TIMED_OUT as TIMED_OUT_STATUS

__all__ = ["TIMED_OUT_STATUS", "Result", "WarmSandbox", "WarmUnavailable", "copy_workdir", "warm_sandbox"]

START_TIMEOUT = 300
# What every job of the grading uses; the jobs name more (e.g. lightning) as they need them.
PRELOAD = ("numpy", "torch", "autograder.grading.replay_child", "autograder.grading.stage_child")


class WarmUnavailable(SandboxUnavailable):
    """The warm sandbox's server did not start or stopped; a fresh bwrap per process still can."""


@dataclass
class Result:
    returncode: int
    output: str
    timed_out: bool


def _uid_busy(uid: int) -> bool:
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                if os.stat(f"/proc/{entry}").st_uid == uid:
                    return True
    return False


class WarmSandbox:
    """One zygote server; :meth:`run` runs a job in a sandbox of its own (one at a time)."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        self.staging = tempfile.mkdtemp(prefix="autograder-warm-")
        self._logs = os.path.join(self.staging, ".logs")  # hidden from every job
        os.mkdir(self._logs, 0o700)
        self._proc: subprocess.Popen | None = None
        self._server_log = None
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self.started_in: float | None = None
        self.announced = False

    # -- the server ---------------------------------------------------------------------

    def _start(self) -> None:
        sb = self.sandbox
        sb.check()
        environ = dict(os.environ, NBGRADER_EXECUTION="autograde")
        argv = [sys.executable, "-m", "autograder.sandbox.zygote", self.staging, str(sb.tmp_size), *PRELOAD]
        cmd = sb.command(argv, cwd=self.staging, environ=environ, zygote=True)
        self._server_log = open(os.path.join(self._logs, "server.log"), "w+b")  # noqa: SIM115
        start = time.perf_counter()
        self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      stderr=self._server_log, cwd=self.staging)
        line = self._read_line(START_TIMEOUT)
        try:
            ready = json.loads(line) if line else {}
        except ValueError:
            ready = {}
        if not ready.get("ready"):
            tail = self._log_tail()
            self._stop()
            raise WarmUnavailable(f"the warm sandbox did not start: {tail or 'no output'}")
        self.started_in = time.perf_counter() - start

    def _read_line(self, timeout: float) -> str | None:
        out = self._proc.stdout
        if not select.select([out], [], [], timeout)[0]:
            return None
        line = out.readline()
        return line.decode() if line else None

    def _log_tail(self) -> str:
        if self._server_log is None:
            return ""
        self._server_log.flush()
        self._server_log.seek(0)
        lines = self._server_log.read().decode(errors="replace").strip().splitlines()
        return " | ".join(lines[-3:])[:800]

    def _stop(self) -> None:
        if self._proc is not None:
            with contextlib.suppress(OSError):
                self._proc.stdin.close()
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None
        if self._server_log is not None:
            self._server_log.close()
            self._server_log = None

    def close(self) -> None:
        with self._lock:
            self._stop()
            shutil.rmtree(self.staging, ignore_errors=True)

    # -- jobs ---------------------------------------------------------------------------

    def directory(self, prefix: str) -> tempfile.TemporaryDirectory:
        """A temporary directory under the staging root, for a job's files."""
        return tempfile.TemporaryDirectory(prefix=prefix, dir=self.staging)

    def run(self, module: str, args: list[str], *, cwd: str, writable: list[str], timeout: float,
            preload: tuple[str, ...] = ()) -> Result:
        """Run ``module.main(*args)`` in a fresh sandbox whose only writable directories are
        ``writable`` (under :attr:`staging`; ``cwd`` is one of them)."""
        with self._lock:
            if self._proc is None or self._proc.poll() is not None:
                self._stop()
                self._start()
            uid, lock = (None, None)
            if self.sandbox.privileged():
                uid, lock = claim_uid(self.sandbox)
            try:
                return self._run(module, args, cwd, writable, timeout, preload, uid)
            finally:
                if lock is not None:
                    os.close(lock)

    def _run(self, module, args, cwd, writable, timeout, preload, uid) -> Result:
        for folder in writable:
            if uid is not None:
                _hand_over_tree(folder, uid)
        job_id = next(self._ids)
        log = os.path.join(self._logs, f"job-{job_id}.log")
        env = self._env()
        job = {"id": job_id, "module": module, "args": [str(a) for a in args], "cwd": str(cwd),
               "writable": [str(w) for w in writable], "uid": uid, "timeout": timeout,
               "env": env, "log": log, "preload": [*preload, module]}
        try:
            self._proc.stdin.write((json.dumps(job) + "\n").encode())
            self._proc.stdin.flush()
        except OSError:
            tail = self._log_tail()
            self._stop()
            raise WarmUnavailable(f"the warm sandbox stopped: {tail or 'no output'}") from None
        # The server enforces the time limit; this one only catches a server that hangs.
        line = self._read_line(timeout + 120)
        try:
            answer = json.loads(line) if line else None
        except ValueError:
            answer = None
        if not isinstance(answer, dict) or answer.get("id") != job_id:
            tail = self._log_tail()
            self._stop()
            raise WarmUnavailable(f"the warm sandbox stopped answering: {tail or 'no output'}")
        output = ""
        with contextlib.suppress(OSError):
            with open(log, "rb") as f:
                output = f.read()[-200_000:].decode(errors="replace")
            os.unlink(log)
        if answer.get("error"):
            output += f"\nsandbox: {answer['error']}"
        if answer.get("timed_out") and uid is not None:
            deadline = time.monotonic() + 30
            while _uid_busy(uid) and time.monotonic() < deadline:
                time.sleep(0.05)
        return Result(int(answer.get("returncode", 125)), output, bool(answer.get("timed_out")))

    def _env(self) -> dict:
        """The environment of a job: the sandbox's (as ``Sandbox.command`` sets it)."""
        sb = self.sandbox
        environ = dict(os.environ, NBGRADER_EXECUTION="autograde")
        env = {"HOME": "/tmp/home", "TMPDIR": "/tmp", "LANG": "C.UTF-8",
               "PATH": os.pathsep.join([os.path.dirname(sys.executable), "/usr/local/bin", "/usr/bin", "/bin"])}
        env.update(sb.env)
        env.update({k: environ[k] for k in sb.pass_env if k in environ})
        return env


def _hand_over_tree(folder: str, uid: int) -> None:
    """Give a job directory and everything in it to the job's uid (as root)."""
    for path, dirs, files in os.walk(folder):
        for name in [*dirs, *files]:
            full = os.path.join(path, name)
            if not stat.S_ISLNK(os.lstat(full).st_mode):
                os.lchown(full, uid, uid)
        os.lchown(path, uid, uid)


_WARM: dict = {}


def warm_sandbox(sandbox: Sandbox) -> WarmSandbox:
    """The grading process's warm sandbox for these settings, started on first use."""
    key = json.dumps(sandbox.trait_values(config=True), sort_keys=True, default=str)
    if key not in _WARM:
        warm = WarmSandbox(sandbox)
        _WARM[key] = warm
        atexit.register(warm.close)
    return _WARM[key]


def copy_workdir(workdir: Path, dest: Path) -> Path:
    """The regular files and folders of a working copy, without notebooks or links, in ``dest``."""
    dest.mkdir(mode=0o755)
    for path, dirs, files in os.walk(workdir):
        rel = os.path.relpath(path, workdir)
        target = dest / rel
        target.mkdir(exist_ok=True)
        dirs[:] = [d for d in dirs if not os.path.islink(os.path.join(path, d))]
        for name in files:
            src = os.path.join(path, name)
            st = os.lstat(src)
            if stat.S_ISREG(st.st_mode) and not name.endswith(".ipynb"):
                shutil.copyfile(src, target / name)
    return dest
