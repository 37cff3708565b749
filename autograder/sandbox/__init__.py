"""Student kernels in a bubblewrap sandbox.

nbgrader runs student code in the grader's own account. :class:`SandboxedKernelManager`
starts each kernel inside `bubblewrap <https://github.com/containers/bubblewrap>`_ instead:

- an empty root file system with read-only views of ``/usr``, ``/etc``, the CPU topology
  (``/sys/devices/system/cpu``), the Python installation, the virtualenv, the course packages
  and the data directories;
- the notebook's working copy (the kernel's cwd) as the only writable host directory;
  the notebook files in it are hidden, because the sanitized copies hold the hidden tests;
- the course root (gradebook, ``solutions/``, other students' folders) is not mounted;
- no network (its own network namespace), its own pid, ipc and uts namespaces;
- resource limits (address space, CPU time, processes, file size) and, when the grader is
  root, an unprivileged uid of its own (see ``sandbox/launch.py``);
- a private ``/tmp`` (also ``HOME``) on a size-limited tmpfs, a clean environment.

The kernel is reached over Jupyter's ``ipc`` transport through a private directory bound
into the sandbox (a kernel in its own network namespace cannot be reached over TCP), and is
interrupted by message, because signals sent to the process group would stop bwrap itself.

Under ``nbgrader autograde`` the kernels are forked from a warm sandbox instead
(``autograder.sandbox.warm``): the same view, limits and uid, in namespaces of their own, without
a new interpreter and ``import torch`` per kernel (``c.Sandbox.warm = False``: a fresh bwrap each).

Settings are traitlets of :class:`Sandbox` (``c.Sandbox.memory_limit = ...``). The
environment variable ``AUTOGRADER_SANDBOX=off`` switches the sandbox off for developers.
"""
from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import json
import os
import select
import shutil
import stat
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

from jupyter_client.manager import AsyncKernelManager
from traitlets import Bool, Dict, Integer, List, Unicode
from traitlets.config import Configurable

from ..tempdirs import socket_tempdir

ENV_SWITCH = "AUTOGRADER_SANDBOX"
GiB = 1024 ** 3
MiB = 1024 ** 2
#: Default caps on the disk one submission takes (docs/security.md; measured with the reference
#: solutions: a submission folder of an assignment holds 17 MB, weights and notebooks; the
#: re-run's folders 22 MB on the embedded data, 230 MB on full MNIST, most of it the inputs).
MAX_WORKDIR_SIZE = 512 * MiB
MAX_JOB_DISK = 2 * GiB
MAX_JOB_FILES = 10_000
LAUNCHER = Path(__file__).resolve().parent / "launch.py"
CPU_INFO_DIR = "/sys/devices/system/cpu"
FIX = ("Install bubblewrap with `make setup` (or `sudo scripts/setup_sandbox.sh`). "
       "Developers only: AUTOGRADER_SANDBOX=off runs student code without any isolation.")
OFF_WARNING = (
    "\n" + "!" * 78 + "\n"
    "!! AUTOGRADER_SANDBOX=off: student code runs WITHOUT a sandbox, with the grader's\n"
    "!! rights. It can read the gradebook and the hidden tests and change grades.\n"
    "!! Use this only on your own notebooks, never to grade submissions.\n"
    + "!" * 78
)


class SandboxUnavailable(RuntimeError):
    """The sandbox cannot start, so student code must not run."""



def switched_off() -> bool:
    """Has the developer opt-out ``AUTOGRADER_SANDBOX=off`` been set?"""
    return os.environ.get(ENV_SWITCH, "").strip().lower() in {"off", "0", "no", "false"}


def _within(path: str, tree: str) -> bool:
    return path == tree or path.startswith(tree.rstrip("/") + "/")


class _MountPlan:
    """bwrap mount arguments, creating (mode 0755) the directories a mount point needs."""

    def __init__(self) -> None:
        self.args: list[str] = []
        self.layers: list[tuple[str, bool]] = []  # (path, shows the host tree at that path)
        self.made: set[str] = set()

    def shows_host(self, path: str) -> bool:
        for tree, host in reversed(self.layers):
            if _within(path, tree):
                return host
        return False

    def _parents(self, path: str) -> None:
        for parent in reversed(Path(path).parents):
            p = str(parent)
            if p == "/" or p in self.made or self.shows_host(p):
                continue
            self.args += ["--perms", "0755", "--dir", p]
            self.made.add(p)

    def bind(self, path: str, *, writable: bool = False) -> None:
        real = os.path.realpath(path)
        for dest in dict.fromkeys([real, os.path.abspath(path)]):
            self._parents(dest)
            self.args += ["--bind" if writable else "--ro-bind", real, dest]
            self.layers.append((dest, True))

    def tmpfs(self, path: str, *, mode: str = "0755", size: int | None = None) -> None:
        self._parents(path)
        self.args += ["--perms", mode] + (["--size", str(size)] if size else []) + ["--tmpfs", path]
        self.layers.append((path, False))
        self.made = {p for p in self.made if not _within(p, path)} | {path}

    def special(self, kind: str, path: str) -> None:
        self.args += [kind, path]
        self.layers.append((path, False))
        self.made.add(path)

    def hide_file(self, path: str) -> None:
        self.args += ["--ro-bind", "/dev/null", path]

    def symlink(self, target: str, path: str) -> None:
        self.args += ["--symlink", target, path]
        self.made.add(path)


class Sandbox(Configurable):
    """How student kernels are isolated: bind mounts, namespaces and resource limits."""

    bwrap = Unicode("bwrap", help="The bubblewrap executable (a name on PATH or a path).").tag(config=True)
    memory_limit = Integer(
        6 * GiB, help="Address-space limit (RLIMIT_AS) of each sandboxed process, in bytes. "
        "An allocation beyond it raises MemoryError in the cell.").tag(config=True)
    cpu_time_limit = Integer(
        3600, help="CPU-time limit (RLIMIT_CPU) of each sandboxed process, in seconds, summed "
        "over all cells and threads; the kernel is killed when it is used up.").tag(config=True)
    max_processes = Integer(
        256, help="Limit on processes and threads (RLIMIT_NPROC) of the sandbox's user (Linux "
        "never enforces it for root, hence the sandbox uids).").tag(config=True)
    max_file_size = Integer(
        1 * GiB, help="Largest file the kernel may write (RLIMIT_FSIZE), in bytes.").tag(config=True)
    tmp_size = Integer(
        1 * GiB, help="Size of the private tmpfs on /tmp (also HOME) and on /dev/shm, in bytes.").tag(config=True)
    max_workdir_size = Integer(
        MAX_WORKDIR_SIZE, help="Largest submission folder (the notebook's working copy, all its "
        "files) that nbgrader autograde runs or copies for a sandboxed process, in bytes; a "
        "larger one is refused, naming this setting.").tag(config=True)
    max_job_disk = Integer(
        MAX_JOB_DISK, help="Most bytes, in all, that the folders of one sandboxed process of the "
        "grading may hold (a kernel's copy of the working directory, a stage of the re-run); "
        "the process is stopped when they hold more, and the grader reads nothing back from "
        "them.").tag(config=True)
    max_job_files = Integer(
        MAX_JOB_FILES, help="Most files and folders in the folders of one sandboxed process "
        "of the grading, and in a submission folder (as max_job_disk).").tag(config=True)
    uid = Integer(
        2_000_000_000, help="When the grader is root, each kernel runs as its own unprivileged "
        "uid (and gid of the same number) from `uid` to `uid + uid_count - 1`, so that the process "
        "limit and file permissions of two sandboxes (say, of two graders running at the same "
        "time) never mix. Pick a range that no account or service uses.").tag(config=True)
    uid_count = Integer(10_000, help="How many uids, from `uid` on, sandboxes may use.").tag(config=True)
    course_root = Unicode(
        "", help="The course directory, hidden from the kernel. Default: CourseDirectory.root "
        "or, failing that, the current directory (nbgrader changes into the course root).").tag(config=True)
    packages = List(
        ["data_tools", "autograder"], help="Packages whose directories are bound read-only, "
        "so that editable installs outside the virtualenv stay importable.").tag(config=True)
    data_dirs = List(
        ["/coursedata"], help="Data directories bound read-only when they exist; the "
        "directory named by $MNIST_ROOT is added automatically.").tag(config=True)
    read_only_paths = List([], help="More host paths to bind read-only.").tag(config=True)
    hidden_paths = List([], help="More host paths to hide (e.g. a gradebook kept outside the "
                        "course root that a read-only path would otherwise expose).").tag(config=True)
    pass_env = List(
        ["NBGRADER_EXECUTION", "NBGRADER_VALIDATING", "MNIST_ROOT", "TZ", "OMP_NUM_THREADS",
         "AUTOGRADER_FIGURES"],
        help="Environment variables copied into the sandbox when set; all others are dropped.").tag(config=True)
    env = Dict(
        {"MPLBACKEND": "Agg", "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1"},
        help="Environment variables set inside the sandbox.").tag(config=True)

    warm = Bool(
        True, help="Under nbgrader autograde, fork the kernels and the re-run's processes "
        "(producer, second stage) from a sandboxed server that imported torch, ipykernel and "
        "the checks once (autograder.sandbox.warm); each still gets namespaces, directories and "
        "a uid of its own. False: a fresh bwrap and interpreter per process.").tag(config=True)

    _probed: dict = {}

    # -- where things are ---------------------------------------------------------------

    def privileged(self) -> bool:
        """Is the grader root (then the kernel drops to `uid`, else a user namespace is used)?"""
        return os.geteuid() == 0

    def resolve_bwrap(self) -> str:
        found = shutil.which(self.bwrap)
        if found is None:
            raise SandboxUnavailable(f"the student sandbox cannot start: bubblewrap ({self.bwrap!r}) "
                                     f"is not installed. {FIX}")
        return found

    def root(self) -> str:
        root = self.course_root or self.config.get("CourseDirectory", {}).get("root", "") or os.getcwd()
        return os.path.realpath(root)

    def _package_dirs(self) -> list[str]:
        dirs = []
        for name in self.packages:
            spec = importlib.util.find_spec(name)
            if spec is not None and spec.submodule_search_locations:
                dirs += [d for d in spec.submodule_search_locations if os.path.isdir(d)]
        return dirs

    def _data_dirs(self, environ) -> list[str]:
        dirs = list(self.data_dirs)
        if environ.get("MNIST_ROOT"):
            dirs.append(environ["MNIST_ROOT"])
        return [d for d in dirs if os.path.isdir(d)]

    def readable_paths(self, environ=None) -> list[str]:
        """The host paths bound read-only besides the system: Python, the virtualenv, the
        course packages, ``read_only_paths`` and the data directories."""
        environ = os.environ if environ is None else environ
        readable = [sys.base_prefix, sys.base_exec_prefix, sys.prefix, sys.exec_prefix,
                    *self._package_dirs(), *self.read_only_paths, *self._data_dirs(environ)]
        return [p for p in dict.fromkeys(os.path.abspath(p) for p in readable) if os.path.exists(p)]

    def environment(self, environ=None) -> dict:
        """The whole environment of a sandboxed process (`environ`: the grader's, by default
        ``os.environ``, from which ``pass_env`` is taken)."""
        environ = os.environ if environ is None else environ
        env = {"HOME": "/tmp/home", "TMPDIR": "/tmp", "LANG": "C.UTF-8",
               "PATH": os.pathsep.join([os.path.dirname(sys.executable), "/usr/local/bin", "/usr/bin", "/bin"])}
        env.update(self.env)
        env.update({k: environ[k] for k in self.pass_env if k in environ})
        return env

    # -- the command --------------------------------------------------------------------

    def command(self, argv: list[str], *, cwd: str, shared_dirs: tuple[str, ...] = (),
                environ=None, info_fd: int | None = None, uid: int | None = None,
                zygote: bool = False) -> list[str]:
        """The bwrap command that runs `argv` in the sandbox with `cwd` as its writable directory.

        With `info_fd`, bwrap writes ``{"child-pid": N}`` to that descriptor: N is the host pid
        of the sandbox's init, whose end means that every process of the sandbox has ended.
        `uid` (default: the first of the range) is the uid and gid used when the grader is root.
        `zygote`: the warm sandbox's server (``autograder.sandbox.zygote``), which keeps the
        capabilities it needs to give each process it forks namespaces of its own and, as root,
        its own uid; it runs no student code.
        """
        environ = os.environ if environ is None else environ
        cwd = os.path.realpath(cwd)
        plan = _MountPlan()
        plan.bind("/usr")
        for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
            host = "/" + name
            if os.path.islink(host):
                plan.symlink(os.readlink(host), host)
            elif os.path.isdir(host):
                plan.bind(host)
        plan.bind("/etc")
        plan.special("--proc", "/proc")
        plan.special("--dev", "/dev")
        # The CPU topology, read-only: without it lscpu fails and joblib (scikit-learn's probe,
        # t-SNE) warns "Could not find the number of physical cores" into the student's output.
        if os.path.isdir(CPU_INFO_DIR):
            plan.bind(CPU_INFO_DIR)
        plan.tmpfs("/dev/shm", mode="1777", size=self.tmp_size)
        plan.tmpfs("/tmp", mode="1777", size=self.tmp_size)

        readable = self.readable_paths(environ)
        for path in readable:
            plan.bind(path)
        # Hide the course (gradebook, sources, other students) wherever a read-only path
        # exposes it, then show again what must stay visible inside it (e.g. a virtualenv).
        masked = []
        for secret in [self.root(), *self.hidden_paths]:
            secret = os.path.realpath(secret)
            # The warm sandbox's server gets the course root as an empty directory in any case:
            # its jobs show a notebook's working copy at its own path in it.
            course_dir = zygote and secret == self.root() and not _within(cwd, secret)
            if secret in ("/", "/usr", "/etc") or not (plan.shows_host(secret) or course_dir):
                continue
            if os.path.isdir(secret):
                plan.tmpfs(secret, mode="0755")
            elif os.path.exists(secret):
                plan.hide_file(secret)
            masked.append(secret)
        for path in readable:
            if any(_within(os.path.realpath(path), m) for m in masked):
                plan.bind(path)

        plan.bind(cwd, writable=True)
        for entry in sorted(os.listdir(cwd)):
            path = os.path.join(cwd, entry)
            if entry.endswith(".ipynb") and os.path.isfile(path):
                plan.hide_file(path)  # the sanitized notebooks hold the hidden tests
            elif entry == "timestamp.txt" and os.path.isfile(path):
                plan.bind(path)
        for shared in shared_dirs:
            plan.bind(shared, writable=True)

        env = self.environment(environ)

        if self.privileged():
            namespaces = ["--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts",
                          "--unshare-cgroup-try", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
            uid = self.uid if uid is None else uid
            identity = [] if zygote else ["--uid", str(uid), "--gid", str(uid)]
        else:
            namespaces = ["--unshare-all", "--unshare-user", "--disable-userns"]
            identity = []
        if zygote:
            namespaces += ["--cap-add", "CAP_SYS_ADMIN"]
        launcher = [sys.executable, "-I", "-S", str(LAUNCHER), *identity,
                    "--memory", str(self.memory_limit), "--cpu", str(self.cpu_time_limit),
                    "--processes", str(self.max_processes), "--file-size", str(self.max_file_size), "--"]
        info = ["--info-fd", str(info_fd)] if info_fd is not None else []
        return [self.resolve_bwrap(), *plan.args, *namespaces, *info, "--die-with-parent", "--new-session",
                "--hostname", "sandbox", "--chdir", cwd, "--clearenv",
                *[a for k, v in sorted(env.items()) for a in ("--setenv", k, str(v))],
                "--", *launcher, *argv]

    def unreadable(self, environ=None) -> list[str]:
        """The read-only paths that the kernel's uid cannot read, when the grader is root.

        That uid belongs to no group, so a directory is readable only with the "other" bits
        r and x (``chmod o+rX``), which a checkout or virtualenv made under ``umask 077``
        lacks. Parent directories do not matter: the sandbox builds its own (mode 0755).
        """
        if not self.privileged():
            return []  # the kernel keeps the grader's own uid
        environ = os.environ if environ is None else environ
        paths = [sys.base_prefix, sys.prefix, *self._package_dirs(), *self.read_only_paths,
                 *self._data_dirs(environ)]
        bad = []
        for path in dict.fromkeys(os.path.realpath(p) for p in paths):
            try:
                mode = os.stat(path).st_mode
            except OSError:
                continue
            need = 0o005 if stat.S_ISDIR(mode) else 0o004
            if mode & need != need:
                bad.append(f"{path} (mode {stat.S_IMODE(mode):04o})")
        return bad

    def check(self) -> None:
        """Raise SandboxUnavailable, naming the problem and the fix, unless the sandbox starts."""
        bwrap = self.resolve_bwrap()
        bad = self.unreadable()
        if bad:
            raise SandboxUnavailable(
                "the student sandbox cannot start: the kernel runs as an unprivileged uid that can "
                f"read only what every user may read, and cannot read {', '.join(bad)}. Make them "
                "readable with `chmod -R o+rX PATH` (a checkout or virtualenv made under umask 077 "
                "is private); their parent directories, e.g. a home directory, may stay private.")
        key = (bwrap, self.privileged())
        if key not in Sandbox._probed:
            with tempfile.TemporaryDirectory(prefix="autograder-probe-") as tmp:
                if self.privileged():
                    os.chown(tmp, self.uid, self.uid)
                cmd = self.command([sys.executable, "-I", "-S", "-c", "pass"], cwd=tmp)
                try:
                    run = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
                    problem = None if run.returncode == 0 else (run.stderr.strip() or f"exit status {run.returncode}")
                except (OSError, subprocess.TimeoutExpired) as e:
                    problem = str(e)
            Sandbox._probed[key] = problem
        problem = Sandbox._probed[key]
        if problem:
            raise SandboxUnavailable(f"the student sandbox cannot start: {problem}. {FIX}")


def claim_uid(sb: Sandbox) -> tuple[int, int]:
    """A uid of the configured range that no other sandbox on this machine holds.

    Held with a lock file in a root-only directory until the returned descriptor is closed.
    """
    locks = "/run/autograder-sandbox" if os.access("/run", os.W_OK) else \
        os.path.join(tempfile.gettempdir(), "autograder-sandbox-uids")
    os.makedirs(locks, mode=0o700, exist_ok=True)
    st = os.lstat(locks)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o077:
        raise SandboxUnavailable(f"{locks} must be a directory of the grader's own with mode 0700")
    start = os.getpid() % max(1, sb.uid_count)
    for i in range(sb.uid_count):
        uid = sb.uid + (start + i) % sb.uid_count
        fd = os.open(os.path.join(locks, str(uid)), os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue
        return uid, fd
    raise SandboxUnavailable(f"all {sb.uid_count} sandbox uids from {sb.uid} are in use")


def hand_over(cwd: str, uid: int) -> list[tuple[str, int, int]]:
    """Give `cwd` and the regular files directly in it to `uid`, so that the sandbox can read
    the submission (weights saved with mode 0600, say); returns what to give back."""
    owners = []
    for path in [cwd, *(os.path.join(cwd, e) for e in os.listdir(cwd))]:
        st = os.lstat(path)
        if path == cwd or stat.S_ISREG(st.st_mode):
            owners.append((path, st.st_uid, st.st_gid))
            os.lchown(path, uid, uid)
    return owners


def give_back(owners: list[tuple[str, int, int]]) -> None:
    """Undo :func:`hand_over` for the paths that still exist."""
    for path, uid, gid in owners:
        if os.path.lexists(path):
            os.lchown(path, uid, gid)


@contextlib.contextmanager
def sandboxed_run(sb: Sandbox, cwd: str):
    """Prepare `cwd` for one sandboxed command; yields ``wrap(argv, cwd, shared) -> argv``.

    As root, a free uid is claimed and the working directory handed to it for the duration.
    """
    sb.check()
    uid, lock, owners = None, None, []
    try:
        if sb.privileged():
            uid, lock = claim_uid(sb)
            owners = hand_over(os.path.realpath(cwd), uid)

        def wrap(argv, cwd, shared):
            if uid is not None:
                os.chown(shared, uid, uid)
            return sb.command(argv, cwd=cwd, shared_dirs=(shared,), uid=uid)

        yield wrap
    finally:
        give_back(owners)
        if lock is not None:
            os.close(lock)


class SandboxedKernelManager(AsyncKernelManager):
    """An AsyncKernelManager whose kernels run in the bubblewrap sandbox described by `Sandbox`.

    During ``nbgrader validate`` a missing sandbox only warns (it is the student's own code
    on the student's own machine); everywhere else it raises SandboxUnavailable.
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.sandbox = Sandbox(config=self.config)
        self.sandboxed = False
        self._shared_dir: str | None = None
        self._workdir: str | None = None
        self._workdir_owner: tuple[int, int] | None = None
        self._log_file = None
        self._info_read: int | None = None
        self._sandbox_init: int | None = None
        self._uid_lock = None
        self.last_log = ""
        self._warm = self._warm_job = self._warm_root = self._warm_work = None

    def _use_sandbox(self) -> bool:
        if switched_off():
            self.log.warning(OFF_WARNING)
            warnings.warn("AUTOGRADER_SANDBOX=off: student code is not isolated", stacklevel=2)
            return False
        try:
            self.sandbox.check()
        except SandboxUnavailable as e:
            if os.environ.get("NBGRADER_EXECUTION") == "validate":
                self.log.warning("%s\nValidating WITHOUT a sandbox.", e)
                return False
            raise
        return True

    def _warm_sandbox(self):
        """The warm sandbox (``autograder.sandbox.warm``) for kernels of ``nbgrader autograde``,
        or None: switched off (``c.Sandbox.warm = False``), validating, or failed to start."""
        if os.environ.get("NBGRADER_EXECUTION") != "autograde":
            return None
        from .warm import available

        return available(self.sandbox, self.log)

    async def _async_pre_start_kernel(self, **kw):
        self.sandboxed = self._use_sandbox()
        if not self.sandboxed:
            return await super()._async_pre_start_kernel(**kw)
        warm = self._warm_sandbox()
        if warm is not None and warm.can_show(os.path.abspath(kw.get("cwd") or os.getcwd())):
            return await self._pre_start_warm(warm, **kw)
        sb = self.sandbox
        if os.environ.get("NBGRADER_EXECUTION") == "autograde":
            from .warm import check_workdir

            check_workdir(Path(os.path.abspath(kw.get("cwd") or os.getcwd())), sb.max_workdir_size,
                          sb.max_job_files)
        self._shared_dir = socket_tempdir("autograder-kernel-")
        self.transport = "ipc"
        self.ip = os.path.join(self._shared_dir, "kernel")
        self.connection_file = os.path.join(self._shared_dir, "connection.json")
        self.kernel_spec.interrupt_mode = "message"
        cmd, kw = await super()._async_pre_start_kernel(**kw)
        cwd = os.path.abspath(kw.get("cwd") or os.getcwd())
        uid = None
        if sb.privileged():
            uid = self._claim_uid()
            for path in (self._shared_dir, self.connection_file):
                os.chown(path, uid, uid)
            st = os.stat(cwd)
            self._workdir_owner = (st.st_uid, st.st_gid)
            if os.environ.get("NBGRADER_EXECUTION") == "autograde":
                hand_over(cwd, uid)  # nbgrader's copy: the submitted files must be readable
            else:
                os.chown(cwd, uid, uid)
        self._workdir = cwd
        self._log_file = open(os.path.join(self._shared_dir, "kernel.log"), "w+b")
        self._info_read, info_write = os.pipe()
        kw.update(cwd=cwd, stdout=self._log_file, stderr=self._log_file, pass_fds=(info_write,))
        return sb.command(cmd, cwd=cwd, shared_dirs=(self._shared_dir,), info_fd=info_write, uid=uid), kw

    async def _pre_start_warm(self, warm, **kw):
        """Prepare a kernel forked from the warm sandbox: its connection files and a copy of the
        working directory (without the notebooks) in job directories of the warm sandbox."""
        from .warm import copy_workdir

        root = Path(tempfile.mkdtemp(prefix="kernel-", dir=warm.staging))
        shared = root / "shared"
        shared.mkdir()
        self._warm, self._warm_root, self._shared_dir = warm, root, str(shared)
        self.transport = "ipc"
        self.ip = str(shared / "kernel")
        self.connection_file = str(shared / "connection.json")
        self.kernel_spec.interrupt_mode = "message"
        cmd, kw = await super()._async_pre_start_kernel(**kw)
        self._workdir = os.path.abspath(kw.get("cwd") or os.getcwd())
        try:
            self._warm_work = copy_workdir(Path(self._workdir), root / "work",
                                           limit=self.sandbox.max_workdir_size,
                                           max_files=self.sandbox.max_job_files)
        except BaseException:
            shutil.rmtree(root, ignore_errors=True)
            self._warm = self._warm_root = self._shared_dir = None
            raise
        return cmd, kw

    async def _launch_warm(self, kernel_cmd) -> None:
        args = None
        for i in range(len(kernel_cmd) - 1):
            if kernel_cmd[i] == "-m" and kernel_cmd[i + 1] == "ipykernel_launcher":
                args = kernel_cmd[i + 2:]
        if args is None:
            raise SandboxUnavailable(f"the warm sandbox runs ipykernel kernels only, not {kernel_cmd!r}; "
                                     "set c.Sandbox.warm = False for this kernel")
        from .warm import KERNEL_PRELOAD

        # The copy of the working directory appears at the working directory's own path.
        job = self._warm.start("autograder.sandbox.kernel_job", args, cwd=self._workdir,
                               writable=[self._shared_dir], binds={self._workdir: str(self._warm_work)},
                               timeout=None, preload=KERNEL_PRELOAD)
        self._warm_job = job
        provisioner = self.provisioner
        provisioner.process, provisioner.pid, provisioner.pgid = job, None, None
        provisioner.cwd = self._workdir
        self._reconcile_connection_info(provisioner.connection_info)

    def _finish_warm(self) -> None:
        """After a warm kernel: its log, the files it wrote back into the working directory."""
        from .warm import copy_back

        job = self._warm_job
        if job is not None:
            if job.poll() is None:
                job.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    job.wait(30)
            self.last_log = job.output()[-2000:]
            job.discard()
        try:
            for path in copy_back(self._warm_work, Path(self._workdir),
                                  limit=self.sandbox.max_workdir_size):
                self.log.warning("Not copying back %s left by the student's code", path)
        finally:
            shutil.rmtree(self._warm_root, ignore_errors=True)
            self._warm = self._warm_job = self._warm_root = self._warm_work = None
            self._shared_dir = None

    def _claim_uid(self) -> int:
        """A uid of the configured range that no other sandbox on this machine holds."""
        uid, self._uid_lock = claim_uid(self.sandbox)
        return uid

    async def _async_launch_kernel(self, kernel_cmd, **kw):
        if self.sandboxed and self._warm is not None:
            return await self._launch_warm(kernel_cmd)
        info_write = kw.get("pass_fds", (None,))[0]
        try:
            await super()._async_launch_kernel(kernel_cmd, **kw)
        finally:
            if self.sandboxed and info_write is not None:
                os.close(info_write)
        if self.sandboxed:
            self._sandbox_init = self._read_init_pid()

    _launch_kernel = _async_launch_kernel

    def _read_init_pid(self) -> int | None:
        """The host pid of the sandbox's init, from bwrap's --info-fd (None if bwrap failed)."""
        data = b""
        try:
            while select.select([self._info_read], [], [], 30)[0]:
                chunk = os.read(self._info_read, 4096)
                if not chunk:
                    break
                data += chunk
                if data.rstrip().endswith(b"}"):
                    break
        finally:
            os.close(self._info_read)
        try:
            return int(json.loads(data)["child-pid"])
        except (ValueError, KeyError, TypeError):
            return None

    def _wait_for_sandbox_end(self, timeout: float = 30) -> None:
        """Wait until every process of the sandbox has ended.

        The end of the sandbox's init (it becomes a zombie or disappears) means that the
        kernel has killed and reaped every other process in its pid namespace. Without this
        wait, the processes of a fork bomb still count against the next kernel's process limit.
        """
        pid = self._sandbox_init
        deadline = time.monotonic() + timeout
        while pid and time.monotonic() < deadline:
            try:
                with open(f"/proc/{pid}/stat") as f:
                    state = f.read().rsplit(")", 1)[1].split()[0]
            except (FileNotFoundError, ProcessLookupError, IndexError):
                break
            if state in ("Z", "X"):
                break
            time.sleep(0.05)
        else:
            if pid:
                self.log.warning("The sandbox of the kernel (init pid %d) has not ended after %d s", pid, timeout)
        self._sandbox_init = None

    def log_tail(self, n: int = 2000) -> str:
        """The last characters the sandbox and kernel wrote to stdout/stderr (for diagnosis)."""
        if self._warm_job is not None:
            return self._warm_job.output()[-n:]
        if self._log_file is None or self._log_file.closed:
            return ""
        self._log_file.flush()
        self._log_file.seek(max(0, os.fstat(self._log_file.fileno()).st_size - 4 * n))
        return self._log_file.read(4 * n).decode("utf-8", "replace")[-n:]

    def exit_description(self) -> str:
        """How the kernel process ended, e.g. 'killed by SIGKILL', or '' if unknown or alive."""
        process = getattr(self.provisioner, "process", None)
        code = process.poll() if process is not None else None
        if code is None:
            return ""
        if getattr(process, "refused", ""):  # a warm job the grader stopped (warm.Job.watch)
            return process.refused
        signum = -code if code < 0 else (code - 128 if self.sandboxed and code > 128 else 0)
        if signum:
            try:
                import signal
                name = signal.Signals(signum).name
            except ValueError:
                name = f"signal {signum}"
            return f"killed by {name}"
        return f"exit status {code}"

    async def _async_cleanup_resources(self, restart: bool = False) -> None:
        await super()._async_cleanup_resources(restart=restart)
        if restart or not self.sandboxed:
            return
        if self._warm is not None:
            self._finish_warm()
            return
        self._wait_for_sandbox_end()
        self._restore_workdir()
        if self._uid_lock is not None:
            os.close(self._uid_lock)
            self._uid_lock = None
        if self._log_file is not None and not self._log_file.closed:
            self.last_log = self.log_tail()
            self._log_file.close()
        if self._shared_dir:
            shutil.rmtree(self._shared_dir, ignore_errors=True)
            self._shared_dir = None

    cleanup_resources = _async_cleanup_resources

    def _restore_workdir(self) -> None:
        """Give the working directory back to its owner; after autograding, also clean it.

        nbgrader writes into the autograded copy after the kernel has gone (as the grader),
        so a symlink left there by student code (say ``next_notebook.ipynb ->
        ../../../gradebook.db``) must not survive. Only nbgrader's own copy is walked: during
        ``validate`` the working directory is wherever the notebook lives.
        """
        cwd = self._workdir
        if not cwd or not os.path.isdir(cwd):
            return
        owner = self._workdir_owner
        if os.environ.get("NBGRADER_EXECUTION") == "autograde":
            for dirpath, dirnames, filenames in os.walk(cwd):
                for name in dirnames + filenames:
                    path = os.path.join(dirpath, name)
                    mode = os.lstat(path).st_mode
                    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
                        self.log.warning("Removing %s left by the student's code", path)
                        os.unlink(path)
                    elif owner:
                        os.lchown(path, *owner)
        if owner:
            os.chown(cwd, *owner)
