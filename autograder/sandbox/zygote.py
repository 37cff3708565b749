"""The warm sandbox's server: a pre-imported interpreter that forks sandboxed processes.

Started by :class:`autograder.sandbox.warm.WarmSandbox` inside a bubblewrap sandbox of its own
(``python -m autograder.sandbox.zygote STAGING TMP_SIZE COURSE MODULE...``): the same read-only view of the system, the
Python installation, the course packages and the data as a kernel's sandbox, the same
limits, plus one writable directory, STAGING, that holds every job's files. It imports
torch, the checks and whatever else a job asks for, and never runs student code itself.

For each job (one JSON line on stdin) it forks a child that, before any student code runs,

1. enters new mount, pid, network and ipc namespaces of its own (``unshare``);
2. covers ``/tmp``, ``/dev/shm`` and STAGING with fresh empty tmpfs mounts and binds back only
   the job's own writable directories, at their own path or at the path of the notebook's
   working copy in the course (``COURSE/autograded/<student>/<assignment>``, under a fresh tmpfs
   on ``COURSE/autograded``; the course root is an empty directory in the server's view), so
   that it sees no other job's files and a kernel sees the paths a fresh bwrap shows it;
3. forks the init (pid 1) of the new pid namespace, which mounts a ``/proc`` of that
   namespace, forks the job (pid 2) and reaps orphans until the job ends; the job sees no
   process of the server or of another job, and when the init ends the kernel ends every
   process the job left behind;
4. in the job: drops its privileges for good: as the grader's root, the uid of the job
   (``setuid`` clears every capability); in a user namespace, every capability;
   ``no_new_privs`` either way;
5. reseeds the random generators a fresh interpreter would seed, clears the environment to
   the sandbox's, points stdin at ``/dev/null`` and stdout/stderr at the job's log, and calls
   ``main(*args)`` of the job's module, which the server imported before.

The server answers one JSON line per job: the exit status, or that the job was killed at
its time limit. So every job gets a sandbox of its own, as a fresh ``bwrap`` would give it,
without paying for an interpreter start and ``import torch`` each time.

Standard library only at the top: the heavy imports are the job's ``preload`` list.
"""
from __future__ import annotations

import contextlib
import ctypes
import errno
import gc
import importlib
import json
import os
import random
import select
import signal
import sys
import time
import traceback

CLONE_NEWNS = 0x00020000
CLONE_NEWIPC = 0x08000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_SET_NO_NEW_PRIVS = 1, 4, 38
PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL = 47, 4
SYS_CAPSET = {"x86_64": 126, "aarch64": 91}
LINUX_CAPABILITY_VERSION_3 = 0x20080522
# Exit status of a job killed at its time limit (as timeout(1) reports it).
TIMED_OUT = 124

_libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    _check(_libc.mount(source.encode() if source else None, target.encode(),
                       fstype.encode() if fstype else None, ctypes.c_ulong(flags),
                       data.encode() if data else None), f"mount {target}")


def _drop_capabilities() -> None:
    """Clear the effective, permitted and inheritable sets, and the ambient set."""
    machine = os.uname().machine
    if machine not in SYS_CAPSET:
        raise OSError(errno.ENOSYS, f"capset: unknown system call number on {machine}")

    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    class Data(ctypes.Structure):
        _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                    ("inheritable", ctypes.c_uint32)]

    header, data = Header(LINUX_CAPABILITY_VERSION_3, 0), (Data * 2)()
    _check(_libc.syscall(SYS_CAPSET[machine], ctypes.byref(header), ctypes.byref(data)), "capset")
    _check(_libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0), "prctl(ambient)")


def _capabilities() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("CapEff:"):
                return int(line.split()[1], 16)
    return -1


def _isolate(job: dict, staging: str, tmp_size: int) -> None:
    """Step 1 and 2: namespaces and mounts of the child (it still runs trusted code only)."""
    _check(_libc.unshare(CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC), "unshare")
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    keep, tops = [], set()
    for source, target in [*([p, p] for p in job["writable"]), *job.get("binds", ())]:
        real = os.path.realpath(source)
        if os.path.commonpath([real, staging]) != staging or real == staging:
            raise OSError(errno.EPERM, f"{source} is not a job directory of the warm sandbox")
        target = os.path.abspath(target)
        if target != real:
            tops.add(course_top(target, job["course"]))
        keep.append((target, os.open(real, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW)))
    # The read-only paths (the virtualenv, the course packages, the data) that lie where a fresh
    # tmpfs is about to cover them (a checkout under /tmp) are bound again afterwards.
    covered = ["/tmp", "/dev/shm", staging]
    again = []
    for path in job.get("readonly", ()):
        path = os.path.abspath(path)
        if os.path.exists(path) and any(os.path.commonpath([path, c]) == c for c in covered):
            again.append((path, os.path.isdir(path), os.open(path, os.O_PATH | os.O_NOFOLLOW)))
    for path, mode in (("/tmp", "1777"), ("/dev/shm", "1777")):
        _mount("tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV, f"mode={mode},size={tmp_size}")
    if os.path.isdir(staging):  # (gone already when it lies under /tmp)
        _mount("tmpfs", staging, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=65536")
    for path, is_dir, fd in again:
        if is_dir:
            os.makedirs(path, mode=0o755, exist_ok=True)
        else:
            os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o644))
        _mount(f"/proc/self/fd/{fd}", path, None, MS_BIND | MS_REC)
        _mount(None, path, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)
        os.close(fd)
    for top in sorted(tops):
        # A fixed name (say ``autograded``) in the course root, an empty directory in the
        # server's view: the student's folders below it live in this job's own tmpfs.
        if os.path.lexists(top) and (not os.path.isdir(top) or os.path.islink(top) or os.listdir(top)):
            raise OSError(errno.EPERM, f"{top} is not free for a job directory")
        os.makedirs(top, mode=0o755, exist_ok=True)
        _mount("tmpfs", top, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=65536")
    for path, fd in keep:
        os.makedirs(path, mode=0o755, exist_ok=True)
        _mount(f"/proc/self/fd/{fd}", path, None, MS_BIND | MS_REC | MS_NOSUID | MS_NODEV)
        os.close(fd)


def course_top(target: str, course: str) -> str:
    """``COURSE/<first folder>`` of a path in the course (where a working copy is shown); raises
    for a path outside the course."""
    rel = os.path.relpath(target, course) if course not in ("", "/") else ".."
    if rel == "." or rel.split(os.sep)[0] == "..":
        raise OSError(errno.EPERM, f"{target} is not a place in the course for a job directory")
    return os.path.join(course, rel.split(os.sep)[0])


def _become_job(job: dict, log_fd: int) -> None:
    """Steps 4 and 5, in the job's process (pid 2 of its namespace)."""
    uid = job.get("uid")
    if uid is not None:
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)
        try:
            os.setuid(0)
        except PermissionError:
            pass
        else:
            raise OSError(errno.EPERM, "could not drop root privileges")
    else:
        _drop_capabilities()
    # After the change of uid, which clears it: the job dies with its init.
    _check(_libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "prctl(pdeathsig)")
    _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(no_new_privs)")
    if _capabilities() != 0:
        raise OSError(errno.EPERM, "capabilities left after dropping them")
    os.environ.clear()
    os.environ.update(job["env"])
    os.makedirs(os.environ.get("HOME", "/tmp/home"), exist_ok=True)
    os.chdir(job["cwd"])
    if sys.path and sys.path[0] in ("", job["staging"]):
        sys.path[0] = job["cwd"]  # as ``python -m`` started in the job's directory has it
    null = os.open("/dev/null", os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    os.closerange(3, 1 << 20)
    sys.stdin = open(0, closefd=False)
    sys.stdout = open(1, "w", buffering=1, closefd=False)
    sys.stderr = open(2, "w", buffering=1, closefd=False)
    random.seed()
    if "numpy" in sys.modules:
        sys.modules["numpy"].random.seed()
    sys.argv = [job["module"], *job["args"]]


def _run_job(job: dict, log_fd: int) -> None:
    """The job's process: never returns."""
    status = 1
    try:
        _become_job(job, log_fd)
        module = sys.modules[job["module"]]
        module.main(*job["args"])
        status = 0
    except SystemExit as exc:
        status = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:  # noqa: BLE001 - the job's failure is its exit status
        traceback.print_exc()
    finally:
        try:
            _interpreter_exit()
        finally:
            os._exit(status)


def _init(job: dict, log_fd: int, report: int) -> None:
    """Step 3: the init (pid 1) of the job's pid namespace, as bwrap has one: it mounts the
    namespace's ``/proc``, drops its capabilities, forks the job (pid 2), reaps orphans until the
    job has ended and reports the job's wait status; its end ends every process left behind."""
    status = 1 << 8
    try:
        _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
        _check(_libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "prctl(pdeathsig)")
        pid = os.fork()
        if pid == 0:
            os.close(report)
            _run_job(job, log_fd)
        _drop_capabilities()
        _check(_libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0), "prctl(dumpable)")
        while True:
            done, status = os.wait()
            if done == pid:
                break
    except BaseException:  # noqa: BLE001 - reported in the job's log
        os.write(log_fd, ("sandbox: " + traceback.format_exc()).encode())
        status = 125 << 8
    finally:
        os.write(report, status.to_bytes(4, "little"))
        os._exit(0)


def _interpreter_exit() -> None:
    """What the end of a fresh interpreter would do: wait for its threads, run its atexit
    functions, flush its output."""
    import atexit
    import threading

    for thread in threading.enumerate():
        if thread is not threading.current_thread() and not thread.daemon:
            thread.join()
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()


def _child(job: dict, staging: str, tmp_size: int, log_fd: int) -> int:
    """The forked child: isolate, fork the namespace's init, wait for it (and so for the whole
    namespace); returns the job's exit code (negative: killed by that signal)."""
    _isolate(job, staging, tmp_size)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        _init(job, log_fd, write)
    os.close(write)
    os.waitpid(pid, 0)
    data = os.read(read, 4)
    if len(data) != 4:
        raise OSError(errno.EIO, "the job's init ended without reporting the job's status")
    return os.waitstatus_to_exitcode(int.from_bytes(data, "little"))


def _start(job: dict, staging: str, tmp_size: int, course: str) -> int:
    """Fork the child of ``job``; returns its pid."""
    job["staging"], job["course"] = staging, course
    for name in job.get("preload", ()):
        _preload(name)
    log_fd = os.open(job["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    # What the server has loaded stays: a job's garbage collections never walk it (IPython's
    # exit alone spent 0.3 s in gc.collect() over torch's objects), nor copy it by touching it.
    gc.freeze()
    pid = os.fork()
    if pid == 0:
        status = 1
        try:
            os.closerange(3, log_fd)  # the control stream, other jobs' pidfds
            os.closerange(log_fd + 1, 1 << 20)
            status = _child(job, staging, tmp_size, log_fd)
            if status < 0:  # the job died of a signal: so does this child, for the server to see
                if -status != signal.SIGKILL:
                    signal.signal(-status, signal.SIG_DFL)
                    signal.pthread_sigmask(signal.SIG_UNBLOCK, [-status])
                os.kill(os.getpid(), -status)
        except BaseException:  # noqa: BLE001 - a failure to isolate is reported, never ignored
            os.write(log_fd, ("sandbox: " + traceback.format_exc()).encode())
            status = 125
        finally:
            os._exit(status if 0 <= status < 256 else 1)
    os.close(log_fd)
    return pid


def _preload(name: str) -> None:
    if name not in sys.modules:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001, S110 - the job itself will fail on the import
            pass


class _Server:
    """The job table and the event loop: requests on stdin, job ends on their pidfds."""

    def __init__(self, staging: str, tmp_size: int, course: str, control) -> None:
        self.staging, self.tmp_size, self.course, self.control = staging, tmp_size, course, control
        self.jobs: dict = {}  # pidfd -> {"id", "pid", "deadline", "timed_out"}
        self.buffer = b""

    def answer(self, message: dict) -> None:
        self.control.write(json.dumps(message) + "\n")

    def request(self, job: dict) -> None:
        if job.get("op") == "kill":
            for entry in self.jobs.values():
                if entry["id"] == job.get("id"):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(entry["pid"], signal.SIGKILL)
            return
        try:
            pid = _start(job, self.staging, self.tmp_size, self.course)
        except Exception as exc:  # noqa: BLE001 - the grader reports it
            self.answer({"id": job.get("id"), "returncode": 125, "timed_out": False,
                         "error": f"{type(exc).__name__}: {exc}"})
            return
        timeout = job.get("timeout")
        self.jobs[os.pidfd_open(pid)] = {"id": job["id"], "pid": pid, "timed_out": False,
                                         "deadline": None if timeout is None else time.monotonic() + float(timeout)}
        self.answer({"id": job["id"], "started": True})

    def ended(self, pidfd: int) -> None:
        entry = self.jobs.pop(pidfd)
        os.close(pidfd)
        _, status = os.waitpid(entry["pid"], 0)
        code = TIMED_OUT if entry["timed_out"] else os.waitstatus_to_exitcode(status)
        self.answer({"id": entry["id"], "returncode": code, "timed_out": entry["timed_out"]})

    def expire(self) -> None:
        now = time.monotonic()
        for entry in self.jobs.values():
            if entry["deadline"] is not None and now >= entry["deadline"] and not entry["timed_out"]:
                entry["timed_out"] = True  # its waiting child dies, its init (PDEATHSIG) and the rest after
                with contextlib.suppress(ProcessLookupError):
                    os.kill(entry["pid"], signal.SIGKILL)

    def serve(self) -> None:
        stdin = sys.stdin.fileno()
        while True:
            deadlines = [e["deadline"] for e in self.jobs.values() if e["deadline"] is not None
                         and not e["timed_out"]]
            wait = max(0.0, min(deadlines) - time.monotonic()) if deadlines else None
            ready = select.select([stdin, *self.jobs], [], [], wait)[0]
            for fd in ready:
                if fd != stdin:
                    self.ended(fd)
            if stdin in ready:
                chunk = os.read(stdin, 1 << 16)
                if not chunk:  # the grader has gone: so do the jobs
                    for entry in self.jobs.values():
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(entry["pid"], signal.SIGKILL)
                    return
                self.buffer += chunk
                while b"\n" in self.buffer:
                    line, self.buffer = self.buffer.split(b"\n", 1)
                    if line.strip():
                        self.request(json.loads(line))
            self.expire()


def main(staging: str, tmp_size: str, course: str, *preload: str) -> None:
    control = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # what the imports print goes to the server's log, not to the control stream
    start = time.perf_counter()
    for name in preload:
        _preload(name)
    print(json.dumps({"ready": True, "pid": os.getpid(), "seconds": round(time.perf_counter() - start, 2)}),
          file=control)
    _Server(os.path.realpath(staging), int(tmp_size), os.path.realpath(course) if course else "",
            control).serve()


if __name__ == "__main__":
    main(*sys.argv[1:])
