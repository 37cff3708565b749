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

from ..tempdirs import socket_tempdir
from . import MAX_JOB_FILES, MAX_WORKDIR_SIZE, Sandbox, SandboxUnavailable, _within, claim_uid
from .zygote import TIMED_OUT as TIMED_OUT_STATUS

__all__ = ["TIMED_OUT_STATUS", "FolderTooLarge", "Job", "Result", "WarmSandbox", "WarmUnavailable",
           "available", "check_workdir", "copy_workdir", "fail", "folder_usage", "warm_sandbox"]

START_TIMEOUT = 300
# What every job of the grading uses; the jobs name more (e.g. lightning) as they need them.
PRELOAD = ("numpy", "torch", "autograder.grading.replay_child", "autograder.grading.stage_child")
# What a kernel job adds: ipykernel and what the course notebooks import at the top.
KERNEL_PRELOAD = ("autograder.sandbox.kernel_job", "ipykernel.kernelapp", "ipykernel.ipkernel",
                  "ipykernel.debugger", "IPython.core.debugger", "IPython.core.completerlib",
                  "IPython.extensions.storemagic", "sqlite3", "tornado.platform.asyncio", "matplotlib.pyplot",
                  "data_tools", "tqdm.auto")


class WarmUnavailable(SandboxUnavailable):
    """The warm sandbox's server did not start or stopped; a fresh bwrap per process still can."""


class FolderTooLarge(SandboxUnavailable):
    """A submission folder larger than the grader runs (``c.Sandbox.max_workdir_size``)."""


#: Seconds between two measures of a running job's folders (``c.Sandbox.max_job_disk``).
DISK_POLL_S = 0.5
#: The last bytes of a job's log that the grader reads.
LOG_TAIL = 200_000


def size_text(n: int) -> str:
    """``n`` bytes for a message (MiB or GiB)."""
    return f"{n / 1024 ** 3:.3g} GiB" if n >= 1024 ** 3 else f"{n / 1024 ** 2:.3g} MiB"


def folder_usage(folders, *, max_bytes: int, max_files: int, files=()) -> tuple[int, int]:
    """``(bytes, entries)`` under ``folders`` (never following a link; a file counts its size
    or the disk it takes, whichever is more) plus the files ``files``; the count stops as soon
    as either exceeds its bound. A folder that cannot be listed counts nothing."""
    total = count = 0
    for path in files:
        with contextlib.suppress(OSError):
            total += os.lstat(path).st_size
    stack = [str(f) for f in folders]
    while stack:
        try:
            with os.scandir(stack.pop()) as entries:
                for entry in entries:
                    count += 1
                    try:
                        st = entry.stat(follow_symlinks=False)
                    except OSError:
                        continue
                    if stat.S_ISDIR(st.st_mode):
                        stack.append(entry.path)
                    else:
                        total += max(st.st_size, st.st_blocks * 512)
                    if total > max_bytes or count > max_files:
                        return total, count
        except OSError:
            continue
    return total, count


def check_workdir(workdir: Path, limit: int = MAX_WORKDIR_SIZE, max_files: int = MAX_JOB_FILES) -> None:
    """Refuse (:class:`FolderTooLarge`) a submission folder of more than ``limit`` bytes or
    ``max_files`` files and folders, before anything of it is copied or run."""
    size, count = folder_usage([workdir], max_bytes=limit, max_files=max_files)
    if size > limit:
        raise FolderTooLarge(
            f"the submission's folder holds more than {size_text(limit)}, the most the grader "
            f"accepts (c.Sandbox.max_workdir_size): a submission is the notebooks and their "
            f"weight files (a few MB); remove the other files (data, checkpoints) and submit again")
    if count > max_files:
        raise FolderTooLarge(
            f"the submission's folder holds more than {max_files:,} files and folders, the most "
            f"the grader accepts (c.Sandbox.max_job_files): remove the files that are not part "
            f"of the submission and submit again")


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


class Job:
    """A running job: ``poll()``, ``wait()``, ``kill()`` (what a kernel manager asks of a
    process) and, once ended, ``returncode``, ``timed_out`` and :meth:`output`."""

    def __init__(self, warm: WarmSandbox, job_id: int, log: str, uid, lock) -> None:
        self.warm, self.id, self.log, self.uid, self._lock = warm, job_id, log, uid, lock
        self.pid = None  # no host pid: signals go through the server
        self.stdin = self.stdout = self.stderr = None
        self.returncode: int | None = None
        self.timed_out = False
        self.killed = False
        self.error = ""
        self.refused = ""  # why the grader stopped the job (its folders outgrew their cap)
        self.started = threading.Event()
        self.done = threading.Event()

    def _end(self, answer: dict) -> None:
        self.timed_out = bool(answer.get("timed_out"))
        self.error = str(answer.get("error") or "")
        if self.uid is not None and (self.timed_out or self.killed):
            # The job's init was killed: its namespace's other processes end just after it.
            deadline = time.monotonic() + 30
            while _uid_busy(self.uid) and time.monotonic() < deadline:
                time.sleep(0.05)
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None
        self.returncode = int(answer.get("returncode", 125))
        self.started.set()
        self.done.set()

    def poll(self) -> int | None:
        return self.returncode

    def wait(self, timeout: float | None = None) -> int | None:
        if not self.done.wait(timeout):
            raise subprocess.TimeoutExpired(f"warm sandbox job {self.id}", timeout)
        return self.returncode

    def kill(self) -> None:
        if self.returncode is None:
            self.killed = True
            self.warm._send({"op": "kill", "id": self.id})

    terminate = kill

    def send_signal(self, signum: int) -> None:
        import signal

        if signum in (signal.SIGKILL, signal.SIGTERM):
            self.kill()  # an interrupt goes by message (the kernels' interrupt_mode)

    def output(self) -> str:
        text = ""
        with contextlib.suppress(OSError):
            with open(self.log, "rb") as f:
                f.seek(max(0, os.fstat(f.fileno()).st_size - LOG_TAIL))
                text = f.read(LOG_TAIL).decode(errors="replace")
        if self.error:
            text += f"\nsandbox: {self.error}"
        if self.refused:
            text += f"\nsandbox: {self.refused}"
        return text

    def watch(self, folders: list[str], max_bytes: int, max_files: int) -> None:
        """Stop the job as soon as its folders (and its log) hold more than ``max_bytes`` or
        ``max_files`` entries (measured every :data:`DISK_POLL_S` seconds until it ends)."""
        while not self.done.wait(DISK_POLL_S):
            size, count = folder_usage(folders, max_bytes=max_bytes, max_files=max_files,
                                       files=[self.log])
            if size > max_bytes or count > max_files:
                self.refused = (f"stopped: its files took more than {size_text(max_bytes)} of disk "
                                f"(c.Sandbox.max_job_disk)" if size > max_bytes else
                                f"stopped: it made more than {max_files:,} files and folders "
                                f"(c.Sandbox.max_job_files)")
                self.kill()
                return

    def discard(self) -> None:
        with contextlib.suppress(OSError):
            os.unlink(self.log)


class WarmSandbox:
    """One zygote server; :meth:`start` runs a job in a sandbox of its own, :meth:`run` runs
    one to its end. Jobs may run at the same time."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        self.course = sandbox.root()  # an empty directory in the server's view
        self._readonly = sandbox.readable_paths()
        self.staging = socket_tempdir("autograder-warm-")  # the kernels' sockets are below it
        self._logs = os.path.join(self.staging, ".logs")  # hidden from every job
        os.mkdir(self._logs, 0o700)
        self._proc: subprocess.Popen | None = None
        self._server_log = None
        self._ids = itertools.count(1)
        self._lock = threading.RLock()
        self._jobs: dict[int, Job] = {}
        self._reader: threading.Thread | None = None
        self.started_in: float | None = None
        self.announced = False

    # -- the server ---------------------------------------------------------------------

    def can_show(self, workdir: str) -> bool:
        """Can a job see a copy of ``workdir`` at its own path (a folder of the course below
        ``autograded/`` or another top folder the server does not show)?"""
        from .zygote import course_top

        try:
            top = course_top(os.path.realpath(workdir), self.course)
        except OSError:
            return False
        return not any(_within(p, top) or _within(top, p) for p in self._readonly)

    def ensure_started(self) -> None:
        """Start the server unless it runs (raises WarmUnavailable when it cannot)."""
        with self._lock:
            if self._proc is None or self._proc.poll() is not None:
                self._stop()
                self._start()

    def _start(self) -> None:
        sb = self.sandbox
        sb.check()
        argv = [sys.executable, "-m", "autograder.sandbox.zygote", self.staging, str(sb.tmp_size),
                self.course, *PRELOAD]
        cmd = sb.command(argv, cwd=self.staging, environ=self._environ(), zygote=True)
        self._server_log = open(os.path.join(self._logs, "server.log"), "w+b")  # noqa: SIM115
        start = time.perf_counter()
        self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      stderr=self._server_log, cwd=self.staging)
        ready = {}
        if select.select([self._proc.stdout], [], [], START_TIMEOUT)[0]:
            with contextlib.suppress(ValueError):
                ready = json.loads(self._proc.stdout.readline() or b"{}")
        if not isinstance(ready, dict) or not ready.get("ready"):
            tail = self._log_tail()
            self._stop()
            raise WarmUnavailable(f"the warm sandbox did not start: {tail or 'no output'}")
        self.started_in = time.perf_counter() - start
        self._reader = threading.Thread(target=self._read, args=(self._proc,), daemon=True,
                                        name="warm-sandbox-reader")
        self._reader.start()

    def _read(self, proc: subprocess.Popen) -> None:
        """Dispatch the server's answers to their jobs; when it ends, end every job."""
        for line in proc.stdout:
            try:
                answer = json.loads(line)
            except ValueError:
                continue
            job = self._jobs.get(answer.get("id")) if isinstance(answer, dict) else None
            if job is None:
                continue
            if answer.get("started"):
                job.started.set()
            else:
                self._jobs.pop(job.id, None)
                job._end(answer)
        tail = self._log_tail()
        for job in list(self._jobs.values()):
            self._jobs.pop(job.id, None)
            job._end({"returncode": 125, "error": f"the warm sandbox stopped: {tail or 'no output'}"})

    def _log_tail(self) -> str:
        log = os.path.join(self._logs, "server.log")
        try:
            with open(log, "rb") as f:
                lines = f.read().decode(errors="replace").strip().splitlines()
        except OSError:
            return ""
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
        if self._reader is not None:
            self._reader.join(5)
            self._reader = None
        if self._server_log is not None:
            self._server_log.close()
            self._server_log = None

    def close(self) -> None:
        with self._lock:
            self._stop()
            shutil.rmtree(self.staging, ignore_errors=True)

    def _send(self, message: dict) -> None:
        with self._lock:
            proc = self._proc
            if proc is None:
                return
            try:
                proc.stdin.write((json.dumps(message) + "\n").encode())
                proc.stdin.flush()
            except (OSError, ValueError):
                pass  # the reader ends the jobs of a server that has gone

    # -- jobs ---------------------------------------------------------------------------

    def directory(self, prefix: str) -> tempfile.TemporaryDirectory:
        """A temporary directory under the staging root, for a job's files."""
        return tempfile.TemporaryDirectory(prefix=prefix, dir=self.staging)

    def start(self, module: str, args: list[str], *, cwd: str, writable: list[str],
              timeout: float | None, preload: tuple[str, ...] = (), environ=None,
              binds: dict[str, str] | None = None) -> Job:
        """Start ``module.main(*args)`` in a fresh sandbox whose only writable directories are
        ``writable`` (under :attr:`staging`) and the values of ``binds`` (``{path in the
        course: directory under staging}``, e.g. the notebook's working copy), one of which is
        ``cwd``; ``timeout`` in seconds (None: none). ``environ`` is the grader's environment
        the sandbox's is taken from."""
        with self._lock:
            self.ensure_started()
            uid, lock = (None, None)
            if self.sandbox.privileged():
                uid, lock = claim_uid(self.sandbox)
                for folder in [*writable, *(binds or {}).values()]:
                    _hand_over_tree(folder, uid)
            job_id = next(self._ids)
            job = Job(self, job_id, os.path.join(self._logs, f"job-{job_id}.log"), uid, lock)
            self._jobs[job.id] = job
            self._send({"id": job.id, "module": module, "args": [str(a) for a in args],
                        "cwd": str(cwd), "writable": [str(w) for w in writable], "uid": uid,
                        "binds": [[str(src), str(dest)] for dest, src in (binds or {}).items()],
                        "timeout": timeout, "env": self._env(environ), "log": job.log,
                        "readonly": self._readonly,
                        "preload": [*preload, module]})
        if not job.started.wait(START_TIMEOUT):
            job.kill()
            raise WarmUnavailable(f"the warm sandbox did not start a job: {self._log_tail() or 'no output'}")
        if job.returncode == 125 and "the warm sandbox stopped" in job.error:
            raise WarmUnavailable(job.error)
        threading.Thread(target=job.watch, daemon=True, name=f"warm-sandbox-disk-{job.id}",
                         args=([*writable, *(binds or {}).values()], self.sandbox.max_job_disk,
                               self.sandbox.max_job_files)).start()
        return job

    def run(self, module: str, args: list[str], *, cwd: str, writable: list[str], timeout: float,
            preload: tuple[str, ...] = (), binds: dict[str, str] | None = None) -> Result:
        """:meth:`start`, then wait for the job's end."""
        job = self.start(module, args, cwd=cwd, writable=writable, timeout=timeout, preload=preload,
                         binds=binds)
        try:
            job.wait(timeout + 120)  # the server enforces the limit; this catches a hung server
        except subprocess.TimeoutExpired:
            with self._lock:
                self._stop()
            raise WarmUnavailable("the warm sandbox stopped answering") from None
        if job.returncode == 125 and "the warm sandbox stopped" in job.error:
            raise WarmUnavailable(job.error)
        output = job.output()
        job.discard()
        return Result(job.returncode, output, job.timed_out)

    @staticmethod
    def _environ(environ=None) -> dict:
        return dict(os.environ if environ is None else environ, NBGRADER_EXECUTION="autograde")

    def _env(self, environ=None) -> dict:
        """The environment of a job: the sandbox's (as ``Sandbox.command`` sets it)."""
        return self.sandbox.environment(self._environ(environ))


def _hand_over_tree(folder: str, uid: int) -> None:
    """Give a job directory and everything in it to the job's uid (as root)."""
    for path, dirs, files in os.walk(folder):
        for name in [*dirs, *files]:
            full = os.path.join(path, name)
            if not stat.S_ISLNK(os.lstat(full).st_mode):
                os.lchown(full, uid, uid)
        os.lchown(path, uid, uid)


_WARM: dict = {}
# Why the warm sandbox failed in this process, if it did: then every kernel and every process
# of the re-run starts a sandbox of its own.
_FAILED: list[str] = []


def warm_sandbox(sandbox: Sandbox) -> WarmSandbox:
    """The grading process's warm sandbox for these settings and course, started on first use."""
    key = json.dumps([sandbox.trait_values(config=True), sandbox.root()], sort_keys=True, default=str)
    if key not in _WARM:
        warm = WarmSandbox(sandbox)
        _WARM[key] = warm
        atexit.register(warm.close)
    return _WARM[key]


def available(sandbox: Sandbox, log) -> WarmSandbox | None:
    """The running warm sandbox for ``sandbox``, or None: switched off (``c.Sandbox.warm =
    False``), or it failed to start in this process (said once, on ``log``)."""
    if not sandbox.warm or _FAILED:
        return None
    warm = warm_sandbox(sandbox)
    try:
        warm.ensure_started()
    except WarmUnavailable as exc:
        fail(str(exc), log)
        return None
    return warm


def fail(reason: str, log) -> None:
    """Give up the warm sandbox for the rest of this process, saying why."""
    log.warning("The warm sandbox is not available (%s): every kernel and process of the re-run "
                "starts a sandbox of its own, which is slower.", reason)
    _FAILED.append(reason)


def copy_workdir(workdir: Path, dest: Path, *, limit: int = MAX_WORKDIR_SIZE,
                 max_files: int = MAX_JOB_FILES) -> Path:
    """The regular files and folders of a working copy, without notebooks or links, in ``dest``;
    a working copy of more than ``limit`` bytes or ``max_files`` entries is refused
    (:func:`check_workdir`) before anything is copied."""
    check_workdir(workdir, limit, max_files)
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


def copy_back(work: Path, workdir: Path, *, limit: int = MAX_WORKDIR_SIZE) -> list[str]:
    """Copy the regular files a job wrote or changed in ``work`` (a :func:`copy_workdir`) back
    into ``workdir``, as if it had worked there; never notebooks, ``timestamp.txt``, links or
    special files, never through a link in ``workdir``, and no more than ``limit`` bytes in
    all. Returns what it left out."""
    left_out = []
    budget = limit
    for path, dirs, files in os.walk(work):
        rel = os.path.relpath(path, work)
        target = workdir if rel == "." else workdir / rel
        for name in [*dirs, *files]:
            st = os.lstat(os.path.join(path, name))
            if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
                left_out.append(os.path.join(rel, name))
        dirs[:] = [d for d in dirs if stat.S_ISDIR(os.lstat(os.path.join(path, d)).st_mode)]
        if os.path.islink(target) or (os.path.lexists(target) and not os.path.isdir(target)):
            left_out.append(rel)
            dirs[:] = []
            continue
        target.mkdir(exist_ok=True)
        for name in files:
            src = os.path.join(path, name)
            if not stat.S_ISREG(os.lstat(src).st_mode) or name.endswith(".ipynb") or \
                    (rel == "." and name == "timestamp.txt"):
                continue
            dest = target / name
            if os.path.lexists(dest):
                if not dest.is_file() or dest.is_symlink():
                    left_out.append(os.path.join(rel, name))
                    continue
                if _same(src, dest):
                    continue
            size = os.lstat(src).st_size
            if size > budget:
                left_out.append(os.path.join(rel, name))
                continue
            budget -= size
            if os.path.lexists(dest):
                dest.unlink()
            shutil.copyfile(src, dest)
    return left_out


def _same(a: str, b: Path) -> bool:
    if os.path.getsize(a) != os.path.getsize(b):
        return False
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            x, y = fa.read(1 << 20), fb.read(1 << 20)
            if x != y:
                return False
            if not x:
                return True
