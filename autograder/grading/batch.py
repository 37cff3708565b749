"""Grade a whole assignment: stateless tasks on a process pool or a Dask cluster, one writer.

``python -m autograder grade ASSIGNMENT`` (``autograder.cli.grade``) uses this module.

- **A task** is one student's submission of one assignment, carried as data (:func:`make_task`):
  the submitted files (``timestamp.txt`` included), the course's grading definition (its
  ``nbgrader_config.py`` and ``solutions/<assignment>/``), the grader's version and the key.
  :func:`grade_task`, a plain function of that data, grades it in a private temporary course with
  the same pipeline as ``nbgrader autograde`` (sandbox, replay, crash isolation): a template
  course, built once per worker process and grading definition (``nbgrader generate_assignment``,
  an SQLite gradebook), is copied for each task, and real ``nbgrader autograde ASSIGNMENT
  --student S`` runs there in the worker's grading process (:class:`AutogradeServer`: a process
  of its own, in its own session, that runs nbgrader for one task after another, so that
  nbgrader, torch, the warm sandbox's server and the judges' server start once per worker; a
  task past its time limit kills it). It returns the files of ``autograded/<student>/
  <assignment>/`` that differ from the submitted ones, each notebook as it was right after
  execution and replay (captured by :class:`CaptureExecuted`; for a student, nbgrader stops
  there: the steps after execution are the driver's, see :data:`CAPTURE_ONLY`), the notebooks'
  grading-report entries, for the preflight the scores of the private gradebook, the elapsed
  seconds and the worker's host and pid. Workers never touch the course.
- **The driver** (:func:`grade`) is the only writer of the course. For each finished task it runs
  nbgrader's own autograde for that student in-process (``NbGraderAPI.autograde``) with the
  course's configuration, in which the execution steps (``GradingExecute``, ``ReplayChecks``)
  are replaced by :class:`UseExecuted`, which hands on the worker's executed notebook and its
  grading failures. nbgrader itself then writes the gradebook rows (submission, timestamp,
  grades, comments, late penalty, flags for manual grading) and the ``autograded/`` files, and
  ``RecordingExporter`` the notebooks' entries in ``grading_report.json``, exactly as
  ``nbgrader autograde`` would have, so that ``generate_feedback``, ``export`` and formgrader
  work unchanged. SQLite stays safe (one writer); PostgreSQL (``db_url``) works the same way.
- **Idempotent and resumable**: ``grading_report.json`` gets ``"submissions":
  {"<assignment>/<student>": {"status", "key", "seconds", "attempts", "worker", "error",
  "finished"}}``. The key is a hash of the submission's files and of the grader's version
  (:func:`grader_version`). A student whose recorded status is "graded" with the same key, and
  whose gradebook submission exists, is skipped (unless ``force``). The status is "writing"
  while the driver writes a student, so a driver killed at any moment leaves that student to be
  graded again by the next run; nbgrader's own per-notebook records make it remove a
  half-written ``autograded/`` folder.
- **Batches**: a task still pays for its private course, nbgrader's set-up and its trip to and
  from the worker, so a large class goes out in batches of up to ``MAX_BATCH`` submissions per
  task (:func:`batch_sizes`: shrinking towards single submissions at the end; ``--batch N`` sets
  it). A batch is one ``nbgrader autograde`` in one private course and returns one result per
  student. A batch that does not finish (a dead worker, its
  time limit: the sum of its submissions') is split: its students are graded again one by one,
  and only those attempts count.
- **Failures**: a task whose worker died (or ran past the per-submission timeout) is retried
  up to ``retries`` times, then recorded as "failed" for that student alone: the student gets a
  gradebook submission whose grade cells read ``grading failed: <reason>`` and are flagged for
  manual grading. A failed student is tried again by the next run.
- **Preflight** (:func:`preflight`): before any student, the reference solution notebooks, with
  the reference weights (``make weights``), are graded as a task through the same executor; the
  run stops, naming the first failing cell and its message, unless they get full marks.
"""
from __future__ import annotations

import atexit
import contextlib
import copy
import ctypes
import datetime
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
from nbgrader.preprocessors import NbGraderPreprocessor
from traitlets import Unicode

from . import report
from .preflight import REQUIRED_PACKAGES

REFERENCE_STUDENT = "_reference"  # the preflight's student id, never written to the course
EXECUTED_DIR = ".executed"  # in a worker's private course: notebooks right after execution
SOURCE, SUBMITTED, AUTOGRADED = "solutions", "submitted", "autograded"
# The most submissions one task grades (see batch_sizes).
MAX_BATCH = 10
EXECUTION_STEPS = ("GradingExecute", "ReplayChecks", "Execute")


class GradeError(RuntimeError):
    """A problem that stops the whole run (bad course, failed preflight, mismatched workers)."""


# -- facts about the course and a submission -------------------------------------------------

def _tree_files(root: Path, ignore=(".ipynb_checkpoints", "__pycache__")) -> dict[str, bytes]:
    files = {}
    if not root.is_dir():
        return files
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if path.is_file() and not any(part in ignore for part in rel.parts) and path.suffix != ".pyc":
            files[rel.as_posix()] = path.read_bytes()
    return files


def _digest(files: dict[str, bytes]) -> str:
    h = hashlib.sha256()
    for name in sorted(files):
        h.update(name.encode() + b"\0" + hashlib.sha256(files[name]).digest())
    return h.hexdigest()


def package_version() -> str:
    """A hash of this grader's own code (the autograder and data_tools packages' sources)."""
    files = {}
    for name in REQUIRED_PACKAGES:
        root = Path(__import__(name).__file__).resolve().parent
        files.update({f"{name}/{k}": v for k, v in _tree_files(root).items() if k.endswith(".py")})
    return _digest(files)


def grading_definition(course: Path, assignment: str) -> dict:
    """What defines the grading of an assignment besides the code: the course's
    ``nbgrader_config.py`` and ``solutions/<assignment>/`` (weights excluded)."""
    source = {k: v for k, v in _tree_files(course / SOURCE / assignment).items() if not k.endswith(".pth")}
    if not any(k.endswith(".ipynb") for k in source):
        raise GradeError(f"{course / SOURCE / assignment}: no source notebooks; is {assignment!r} an "
                         f"assignment of the course in {course}?")
    return {"assignment": assignment, "config": (course / "nbgrader_config.py").read_text(), "source": source}


def grader_version(definition: dict) -> str:
    """The grader's version: its code, the course's configuration and the source notebooks."""
    return _digest({"code": package_version().encode(), "config": definition["config"].encode(),
                    **{f"source/{k}": v for k, v in definition["source"].items()}})


def submission_files(course: Path, assignment: str, student: str) -> dict[str, bytes]:
    """The files of ``submitted/<student>/<assignment>/`` (timestamp.txt included)."""
    return _tree_files(course / SUBMITTED / student / assignment)


def submitted_students(course: Path, assignment: str) -> list[str]:
    root = course / SUBMITTED
    return sorted(p.name for p in root.iterdir() if (p / assignment).is_dir()) if root.is_dir() else []


def make_task(assignment: str, student: str, files: dict[str, bytes], definition: dict, version: str,
              timeout: float | None = None) -> dict:
    """One student's submission as a task; ``key`` identifies the submission and the grader."""
    key = hashlib.sha256(f"{_digest(files)}\0{version}".encode()).hexdigest()
    return {"assignment": assignment, "student": student, "files": files, "key": key,
            "definition": definition, "version": version, "timeout": timeout}


# -- the worker ----------------------------------------------------------------------------

_TEMPLATES: dict[str, Path] = {}
_TEMPLATE_LOCK = threading.Lock()

# Appended to the worker's copy of nbgrader_config.py: a private root and SQLite gradebook (the
# course's own db_url may name a shared PostgreSQL server), and the capture of executed notebooks.
_WORKER_CONFIG = '''
# -- a private grading course (autograder.grading.batch) --
import os as _os
c.CourseDirectory.root = _os.path.dirname(_os.path.abspath(__file__))
c.CourseDirectory.db_url = "sqlite:///" + _os.path.join(c.CourseDirectory.root, "gradebook.db")
from autograder.grading.batch import capture_executed as _capture_executed
_capture_executed(c, _os.path.join(c.CourseDirectory.root, "{executed}"))
'''


def worker_env(threads: int | None = None) -> dict:
    """The environment of a worker's nbgrader: with ``threads`` (a pool's share of this
    machine's cores per worker), ``OMP_NUM_THREADS`` too, unless it is set already. Its kernels,
    re-runs and judges then compute on that many threads, not on every core each: a pool of 2
    on 2 cores graded 8% faster so (docs/performance.md)."""
    from .course import nbgrader_env

    env = nbgrader_env()
    if threads and "OMP_NUM_THREADS" not in env:
        env["OMP_NUM_THREADS"] = str(threads)
    return env


def _nbgrader(course: Path, *args: str, timeout: float | None = None) -> subprocess.CompletedProcess:
    return _run_group([sys.executable, "-m", "nbgrader", *args], cwd=course, env=worker_env(),
                      timeout=timeout)


def _die_with_parent(sig: int = signal.SIGKILL) -> None:
    try:  # Linux: PR_SET_PDEATHSIG, so that nbgrader does not outlive a killed worker
        ctypes.CDLL(None, use_errno=True).prctl(1, sig)
    except (OSError, AttributeError):
        pass


def _terminated_with_parent() -> None:
    """SIGTERM when the parent dies: the grading process then ends its process group and
    removes its folders itself (``autograde_server``)."""
    _die_with_parent(signal.SIGTERM)


def _run_group(cmd: list[str], *, cwd: Path, env: dict, timeout: float | None) -> subprocess.CompletedProcess:
    """Run `cmd` in its own session; on timeout the whole process group is killed."""
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True, preexec_fn=_die_with_parent)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        raise subprocess.TimeoutExpired(cmd, timeout, output=out) from None
    return subprocess.CompletedProcess(cmd, proc.returncode, out, "")


class AutogradeServer:
    """A worker's grading process (``autograder.grading.autograde_server``): ``nbgrader
    autograde`` for one task after another in the private course :attr:`course`, whose path
    stays the same (the warm sandbox's server is started for a course path). It runs in a
    session of its own and dies with the worker; a task past its time limit kills its whole
    process group, and the next task starts a fresh one."""

    #: Tasks after which the process is replaced (memory that a long run would otherwise keep).
    MAX_TASKS = 25

    def __init__(self, threads: int | None = None):
        self.threads = threads
        self.root = Path(tempfile.mkdtemp(prefix="autograder-task-"))
        self.course = self.root / "course"
        self.tasks = 0
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "autograder.grading.autograde_server", str(self.root)], cwd=self.root,
            env=worker_env(threads), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL, text=True, start_new_session=True,
            preexec_fn=_terminated_with_parent)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def run(self, args: list[str], timeout: float | None, env: dict | None = None) -> subprocess.CompletedProcess:
        """``nbgrader ARGS`` in :attr:`course`, with ``env`` added to the environment for this
        task; raises TimeoutExpired (having killed the process) past ``timeout`` seconds."""
        import select

        self.tasks += 1
        log = self.root / "nbgrader.log"
        request = {"cwd": str(self.course), "args": args, "log": str(log), "env": env or {}}
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        ready = select.select([self.proc.stdout], [], [], timeout)[0]
        answer = self.proc.stdout.readline() if ready else None
        output = log.read_text(errors="replace") if log.exists() else ""
        if answer is None:
            self.kill()
            raise subprocess.TimeoutExpired(args, timeout, output=output)
        if not answer:  # the process died
            self.kill()
            return subprocess.CompletedProcess(args, self.proc.returncode, output, "")
        return subprocess.CompletedProcess(args, json.loads(answer)["returncode"], output, "")

    def preload(self, modules: tuple[str, ...]) -> None:
        """Import ``modules`` in the grading process now (what its first task would import)."""
        self.proc.stdin.write(json.dumps({"preload": list(modules)}) + "\n")
        self.proc.stdin.flush()
        self.proc.stdout.readline()

    def clear(self) -> None:
        shutil.rmtree(self.course, ignore_errors=True)
        with contextlib.suppress(OSError):
            (self.root / "nbgrader.log").unlink()

    def kill(self) -> None:
        """Stop the process: SIGTERM first (it ends its group and removes its folders, the warm
        sandbox's staging folder included), then SIGKILL to whatever of its group is left."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                self.proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(5)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        shutil.rmtree(self.root, ignore_errors=True)


_SERVERS: list[AutogradeServer] = []  # idle grading processes of this worker
_SERVERS_LOCK = threading.Lock()
_EXIT_HOOK = False  # whether _close_servers is registered to run at this worker's exit


@contextlib.contextmanager
def _autograde_server(threads: int | None):
    """An idle grading process of this worker (a Dask worker may run several tasks at once),
    started when there is none; it goes back for the next task unless it died or is used up."""
    global _EXIT_HOOK
    with _SERVERS_LOCK:
        dead = [s for s in _SERVERS if not s.alive()]  # died while idle: reaped, folder removed
        for gone in dead:
            _SERVERS.remove(gone)
        server = next((s for s in _SERVERS if s.threads == threads), None)
        if server is not None:
            _SERVERS.remove(server)
        elif not _EXIT_HOOK:
            atexit.register(_close_servers)
            _EXIT_HOOK = True
    for gone in dead:
        gone.kill()
    if server is None:
        server = AutogradeServer(threads)
    try:
        yield server
    finally:
        server.clear()
        if server.alive() and server.tasks < server.MAX_TASKS:
            with _SERVERS_LOCK:
                _SERVERS.append(server)
        else:
            server.kill()


#: What a grading process imports for its first task anyway (seconds of CPU).
SERVER_PRELOAD = ("nbgrader.apps.nbgraderapp", "autograder.grading.pipeline", "autograder.grading.judged",
                  "torch")


def prepare_worker(threads: int | None) -> None:
    """Start this worker's grading process and let it import what grading needs, while the
    driver is still reading the submissions (its first task then starts sooner)."""
    with _autograde_server(threads) as server:
        server.preload(SERVER_PRELOAD)


def _close_servers() -> None:
    with _SERVERS_LOCK:
        while _SERVERS:
            _SERVERS.pop().kill()


def template_cache() -> Path:
    """Where workers keep released template courses, shared by the workers of one machine."""
    return Path(os.environ.get("AUTOGRADER_TEMPLATE_DIR")
                or Path(tempfile.gettempdir()) / f"autograder-templates-{os.getuid()}")


def _template(definition: dict) -> Path:
    """A released private course for a grading definition, built once per machine and version
    (``nbgrader generate_assignment`` into an SQLite gradebook) and reused by every task."""
    import fcntl

    key = _digest({"code": package_version().encode(), "config": definition["config"].encode(),
                   **{f"source/{k}": v for k, v in definition["source"].items()}})
    with _TEMPLATE_LOCK:
        if key in _TEMPLATES:
            return _TEMPLATES[key]
        cache = template_cache()
        cache.mkdir(mode=0o700, parents=True, exist_ok=True)
        root = cache / key[:32] / "course"
        with open(cache / f"{key[:32]}.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # one build per machine; the others wait for it
            if not (root / "gradebook.db").exists():
                shutil.rmtree(root.parent, ignore_errors=True)
                build = Path(tempfile.mkdtemp(prefix="build-", dir=cache)) / "course"
                source = build / SOURCE / definition["assignment"]
                for rel, content in definition["source"].items():
                    (source / rel).parent.mkdir(parents=True, exist_ok=True)
                    (source / rel).write_bytes(content)
                (build / "nbgrader_config.py").write_text(
                    definition["config"] + _WORKER_CONFIG.format(executed=EXECUTED_DIR))
                run = _nbgrader(build, "generate_assignment", definition["assignment"], "--force", timeout=600)
                if run.returncode != 0:
                    shutil.rmtree(build.parent, ignore_errors=True)
                    raise RuntimeError(f"the worker could not release {definition['assignment']!r} in its "
                                       f"private course:\n{run.stdout[-3000:]}")
                os.replace(build.parent, root.parent)
        _TEMPLATES[key] = root
        return root


def _private_scores(course: Path, assignment: str, student: str) -> list[list]:
    """``[[notebook, grade_id, score, max_score, needs_manual_grade], ...]`` of a private gradebook."""
    from nbgrader.api import Gradebook, MissingEntry

    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        try:
            submission = gb.find_submission(assignment, student)
        except MissingEntry:
            return []
        return [[nb.name, g.name, g.score, g.max_score, bool(g.needs_manual_grade)]
                for nb in submission.notebooks for g in nb.grades]


def grade_task(task: dict) -> dict:
    """Grade one submission, or a batch of them (``{"batch": [task, ...]}``, see
    :func:`batches`), in a private temporary course; never touches the real course.

    Returns ``{"status": "graded" | "timeout", ...}`` for one submission and ``{"status":
    "batch", "results": [...]}`` (or a "timeout" for the whole batch) for a batch; raises when
    the worker itself cannot grade.
    """
    start = time.monotonic()
    tasks = task.get("batch") or [task]
    first = tasks[0]
    assignment = first["assignment"]
    base = {"assignment": assignment, "worker": f"{socket.gethostname()}/{os.getpid()}",
            "version": package_version()}
    if base["version"] != first["version"].split(":")[0]:
        return {**base, "student": first["student"], "key": first["key"], "status": "mismatch",
                "seconds": time.monotonic() - start}
    template = _template(first["definition"])
    with _autograde_server(task.get("threads")) as server:
        course = server.course
        shutil.copytree(template, course, symlinks=True)
        for one in tasks:
            folder = course / SUBMITTED / one["student"] / assignment
            for rel, content in one["files"].items():
                (folder / rel).parent.mkdir(parents=True, exist_ok=True)
                (folder / rel).write_bytes(content)
        # One student: ``--student S``; a batch: every student of the private course.
        only = ("--student", first["student"]) if "batch" not in task else ()
        limit = sum(t["timeout"] for t in tasks) if all(t.get("timeout") for t in tasks) else None
        full = bool(task.get("full"))  # the preflight: every step, and the private scores
        try:
            run = server.run(["autograde", assignment, *only, "--force"], timeout=limit,
                             env=None if full else {CAPTURE_ONLY: "1"})
        except subprocess.TimeoutExpired as exc:
            timeout = {**base, "status": "timeout", "seconds": time.monotonic() - start,
                       "log": (exc.output or "")[-3000:]}
            return timeout if "batch" in task else {**timeout, "student": first["student"], "key": first["key"]}
        entries = report.load(course)["notebooks"]
        seconds = (time.monotonic() - start) / len(tasks)
        results = []
        for one in tasks:
            student = one["student"]
            executed = {}
            for path in sorted((course / EXECUTED_DIR / student).glob("*.ipynb")):
                failures = path.with_suffix(".json")
                executed[path.stem] = {"notebook": path.read_text(),
                                       "failures": json.loads(failures.read_text()) if failures.exists() else []}
            results.append({
                **base, "student": student, "key": one["key"], "status": "graded",
                "returncode": run.returncode, "log": run.stdout[-5000:],
                # What the driver's nbgrader would not write itself: the submitted files (the
                # weights: megabytes per student) it copies from the submission as they are.
                "autograded": {rel: content for rel, content in
                               _tree_files(course / AUTOGRADED / student / assignment).items()
                               if one["files"].get(rel) != content},
                "executed": executed,
                "report": {k: v for k, v in entries.items()
                           if v["student"] == student and v["assignment"] == assignment},
                "scores": _private_scores(course, assignment, student) if full else [], "seconds": seconds})
        if "batch" in task:
            return {**base, "status": "batch", "results": results, "seconds": time.monotonic() - start}
        return results[0]


def batch_sizes(todo: int, workers: int) -> list[int]:
    """How many submissions each task grades, in the order the tasks go out: a task still pays
    for its private course and nbgrader's set-up, so a large class goes out in batches of up to
    ``MAX_BATCH``; the sizes shrink as the class does (half of what is left per worker), so that
    the last tasks are single submissions and every worker finishes at about the same time,
    with little left for the driver to write once they have."""
    sizes, left = [], todo
    while left > 0:
        size = max(1, min(MAX_BATCH, left // (2 * max(1, workers))))
        sizes.append(size)
        left -= size
    return sizes


def batches(tasks: list[dict], sizes: int | list[int]) -> list[dict]:
    """``tasks`` grouped by ``sizes`` (one size for all, or :func:`batch_sizes`): single tasks
    stay as they are, groups become ``{"batch": [...], "student": "a, b, ...", "key": ...}``."""
    if isinstance(sizes, int):
        sizes = [max(1, sizes)] * len(tasks)
    grouped, i = [], 0
    for size in sizes:
        if i >= len(tasks):
            break
        group = tasks[i:i + size]
        i += size
        grouped.append(group[0] if len(group) == 1 else {
            "batch": group, "assignment": group[0]["assignment"],
            "student": ", ".join(t["student"] for t in group),
            "key": _digest({t["student"]: t["key"].encode() for t in group})})
    return grouped


# -- the two pipeline steps that carry execution from the worker to the driver ------------------

def _step_name(step) -> str:
    """A pipeline step's class name, whether configured as a class or as a dotted string."""
    return (step if isinstance(step, str) else step.__name__).rsplit(".", 1)[-1]


def _split(steps: list) -> tuple[list, list]:
    """nbgrader's autograde steps before/after the execution steps (which are left out)."""
    names = [_step_name(s) for s in steps]
    positions = [i for i, n in enumerate(names) if n in EXECUTION_STEPS]
    if not positions:
        raise GradeError(f"the course's Autograde.autograde_preprocessors {names} have no execution "
                         f"step ({', '.join(EXECUTION_STEPS)})")
    return list(steps[:positions[0]]), list(steps[positions[-1] + 1:])


def _autograde_steps(c) -> list:
    from nbgrader.converters import Autograde

    if "autograde_preprocessors" in c.Autograde:
        return list(c.Autograde.autograde_preprocessors)
    return list(Autograde.class_traits()["autograde_preprocessors"].default())


class CaptureExecuted(NbGraderPreprocessor):
    """Keep a copy of each notebook, and its grading failures, right after execution."""

    directory = Unicode("", help="Where the executed notebooks are written (a folder per student).").tag(config=True)

    def preprocess(self, nb, resources):
        folder = Path(self.directory) / resources["nbgrader"]["student"]
        folder.mkdir(parents=True, exist_ok=True)
        name = resources["nbgrader"]["notebook"]
        nbformat.write(nb, folder / f"{name}.ipynb")
        failures = resources.get("autograder", {}).get("failures", [])
        (folder / f"{name}.json").write_text(json.dumps(failures))
        return nb, resources


#: Set for a student's task in the worker's grading process: its nbgrader stops each notebook's
#: pipeline right after the capture. The steps after execution (the scores, the flags, the
#: sanitized outputs) count only where the driver runs them on the captured notebook; in the
#: private course they would be done twice. The preflight's task runs them all, for its scores.
CAPTURE_ONLY = "AUTOGRADER_CAPTURE_ONLY"


def capture_executed(c, directory: str) -> None:
    """Configure a worker's nbgrader to keep the executed notebooks in `directory`."""
    steps = _autograde_steps(c)
    before, after = _split(steps)
    kept = [] if os.environ.get(CAPTURE_ONLY) == "1" else after
    c.Autograde.autograde_preprocessors = steps[:len(steps) - len(after)] + [CaptureExecuted] + kept
    c.CaptureExecuted.directory = directory


class UseExecuted(NbGraderPreprocessor):
    """In place of execution: the worker's executed notebook and grading failures, and the
    secret of its evaluation's draws (from the worker's record).

    With ``reason`` set (the task could not be graded), every grade cell instead gets the
    error ``grading failed: <reason>`` and is listed as a grading failure, so that it scores 0
    and ``FlagGradingFailures`` flags it for manual grading.
    """

    directory = Unicode("", help="The worker's executed notebooks (NAME.ipynb, NAME.json).").tag(config=True)
    reason = Unicode("", help="Why the submission could not be graded ('' when it was).").tag(config=True)

    def preprocess(self, nb, resources):
        from nbgrader import utils

        from .execute import failure_output

        name = resources["nbgrader"]["notebook"]
        failures = resources.setdefault("autograder", {}).setdefault("failures", [])
        if self.reason:
            for index, cell in enumerate(nb.cells):
                if cell.cell_type == "code" and utils.is_grade(cell):
                    cell.outputs = [failure_output(self.reason)]
                    failures.append({"cell": index, "grade_id": cell.metadata.nbgrader["grade_id"],
                                     "reason": self.reason})
            return nb, resources
        folder = Path(self.directory)
        path = folder / f"{name}.ipynb"
        entry = json.loads((folder / "report.json").read_text()).get(name, {})
        if not path.exists():
            reasons = "; ".join(p["reason"] for p in entry.get("problems", [])) or "no reason recorded"
            raise RuntimeError(f"the worker did not execute {name}.ipynb: {reasons}")
        failures.extend(json.loads((folder / f"{name}.json").read_text()))
        if entry.get("secret") is not None:  # the worker's draws, for the course's record
            resources["autograder"]["secret"] = entry["secret"]
        return nbformat.read(path, as_version=4), resources


# -- the driver: the only writer of the course ----------------------------------------------

def load_course_config(course: Path):
    """The course's nbgrader configuration, as ``nbgrader`` would load it in `course`."""
    from traitlets.config.loader import Config, PyFileConfigLoader

    path = course / "nbgrader_config.py"
    if not path.exists():
        raise GradeError(f"{course} is not a course directory: it has no nbgrader_config.py")
    old = os.getcwd()
    os.chdir(course)
    try:
        cfg = PyFileConfigLoader(str(path), path=str(course)).load_config()
    finally:
        os.chdir(old)
    merged = Config()
    merged.merge(cfg)
    merged.CourseDirectory.root = str(course)
    return merged


class Writer:
    """Writes one student's results into the course through nbgrader's own autograde."""

    def __init__(self, course: Path, assignment: str):
        import logging

        self.course, self.assignment = course, assignment
        self.config = load_course_config(course)
        before, after = _split(_autograde_steps(self.config))
        self.config.Autograde.autograde_preprocessors = [*before, UseExecuted, *after]
        self.config.RecordingExporter.check_sandbox = False  # the workers run the kernels
        self.log = logging.getLogger("autograder.grade.nbgrader")
        self.log.propagate = False
        self.log.setLevel(logging.INFO)

    def coursedir(self, config=None):
        from nbgrader.coursedir import CourseDirectory

        return CourseDirectory(config=config or self.config)

    def write(self, student: str, result: dict | None, reason: str = "") -> tuple[bool, str]:
        """Autograde `student` from a worker's `result` (or fail every cell with `reason`)."""
        import warnings

        from nbgrader.converters import Autograde
        from nbgrader.utils import capture_log
        from sqlalchemy.exc import SAWarning

        staging = Path(tempfile.mkdtemp(prefix="autograder-write-"))
        try:
            for name, item in ((result or {}).get("executed") or {}).items():
                (staging / f"{name}.ipynb").write_text(item["notebook"])
                (staging / f"{name}.json").write_text(json.dumps(item["failures"]))
            entries = {e["notebook"]: e for e in ((result or {}).get("report") or {}).values()}
            (staging / "report.json").write_text(json.dumps(entries))
            config = copy.deepcopy(self.config)
            config.UseExecuted.directory = str(staging)
            config.UseExecuted.reason = reason
            if not reason:
                # The worker's nbgrader ran the sanitizing steps on this very submission, and
                # UseExecuted hands on what it executed from their output: here they would
                # only build a notebook that is thrown away (a third of writing a student).
                config.Autograde.sanitize_preprocessors = []
                # nbgrader's metadata check after execution, too: the worker's sanitizing pass
                # ended with it on these very cells, and execution changes no cell metadata (a
                # sixth of writing a student: jsonschema checks the schema at every cell).
                config.Autograde.autograde_preprocessors = [
                    s for s in config.Autograde.autograde_preprocessors
                    if _step_name(s) != "CheckCellMetadata"]
            coursedir = self.coursedir(config)
            coursedir.assignment_id, coursedir.student_id = self.assignment, student
            app = Autograde(coursedir=coursedir, config=config, log=self.log)
            app.force, app.create_student = True, True
            with warnings.catch_warnings():  # nbgrader's own session warnings, as under its command
                warnings.simplefilter("ignore", SAWarning)
                outcome = capture_log(app)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        if outcome["success"] and result:
            self._copy_extra_files(student, result.get("autograded") or {})
        return bool(outcome["success"]), outcome.get("error") or ""

    def _copy_extra_files(self, student: str, files: dict[str, bytes]) -> None:
        """Files that the notebooks wrote while they ran in the worker, as nbgrader leaves them."""
        dest = self.course / AUTOGRADED / student / self.assignment
        if not dest.is_dir():
            return
        for rel, content in files.items():
            path = dest / rel
            if not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(content)

    def has_submission(self, student: str) -> bool:
        from nbgrader.api import Gradebook, MissingEntry

        coursedir = self.coursedir()
        with Gradebook(coursedir.db_url, coursedir.course_id) as gb:
            try:
                gb.find_submission(self.assignment, student)
            except MissingEntry:
                return False
        return (self.course / AUTOGRADED / student / self.assignment).is_dir()

    def require_released(self) -> None:
        from .preflight import unreleased, unreleased_message

        coursedir = self.coursedir()
        coursedir.assignment_id = self.assignment
        if unreleased(coursedir):
            raise GradeError(unreleased_message([self.assignment], coursedir).replace(
                "nbgrader autograde", "python -m autograder grade"))


# -- executors -------------------------------------------------------------------------------

@dataclass
class Outcome:
    task: dict
    result: dict | None = None  # grade_task's return value
    dead: str = ""  # why the worker died, or ""
    error: str = ""  # an exception raised by the task


class PoolRunner:
    """``--workers N`` on this machine: N one-process pools, so that a dead worker costs only its
    own task (a broken ProcessPoolExecutor fails every task it holds) and is replaced."""

    def __init__(self, workers: int):
        import multiprocessing

        from ..tempdirs import fit_multiprocessing

        fit_multiprocessing()  # the forkserver's socket, below a TMPDIR of any length
        self.context = multiprocessing.get_context("forkserver")
        self.context.set_forkserver_preload([__name__])
        self.slots: list[ProcessPoolExecutor | None] = [None] * max(1, workers)
        self.running: dict = {}  # future -> (slot, task)
        # Each worker's share of the cores (worker_env); a Dask worker's is set where it runs.
        self.threads = max(1, (os.cpu_count() or 1) // len(self.slots))

    def prepare(self) -> None:
        """Start every worker and its grading process now; tasks queue behind this."""
        for slot in range(len(self.slots)):
            if self.slots[slot] is None:
                self.slots[slot] = ProcessPoolExecutor(1, mp_context=self.context)
            self.slots[slot].submit(prepare_worker, self.threads)

    def describe(self) -> str:
        return f"a pool of {len(self.slots)} worker process(es)"

    def capacity(self) -> int:
        return len(self.slots)

    def free(self) -> int:
        return len(self.slots) - len(self.running)

    def submit(self, task: dict) -> None:
        busy = {slot for slot, _ in self.running.values()}
        slot = next(i for i in range(len(self.slots)) if i not in busy)
        if self.slots[slot] is None:
            self.slots[slot] = ProcessPoolExecutor(1, mp_context=self.context)
        self.running[self.slots[slot].submit(grade_task, {**task, "threads": self.threads})] = (slot, task)

    def wait(self, block: bool = True) -> list[Outcome]:
        """The outcomes of finished tasks: at least one (``block``), or those finished now."""
        done, _ = wait(list(self.running), timeout=None if block else 0, return_when=FIRST_COMPLETED)
        outcomes = []
        for future in done:
            slot, task = self.running.pop(future)
            try:
                outcomes.append(Outcome(task, result=future.result()))
            except BrokenProcessPool as exc:
                self.slots[slot].shutdown(wait=False, cancel_futures=True)
                self.slots[slot] = None
                outcomes.append(Outcome(task, dead=f"the worker process died ({exc})"))
            except Exception as exc:  # noqa: BLE001 - a task error is that task's failure
                outcomes.append(Outcome(task, error=f"{type(exc).__name__}: {exc}"))
        return outcomes

    def close(self) -> None:
        for pool in self.slots:
            if pool is not None:
                for process in list(getattr(pool, "_processes", {}).values()):
                    process.kill()  # do not wait for tasks in flight (Ctrl-C)
                pool.shutdown(wait=False, cancel_futures=True)


class DaskRunner:
    """``--scheduler ADDRESS``: the same task function on a Dask cluster."""

    def __init__(self, scheduler):
        from distributed import Client

        self.client = scheduler if isinstance(scheduler, Client) else Client(scheduler, timeout="30s")
        self.owned = not isinstance(scheduler, Client)
        self.running: dict = {}

    def describe(self) -> str:
        workers = self.client.scheduler_info().get("workers", {})
        return f"the Dask cluster at {self.client.scheduler.address} ({len(workers)} worker(s))"

    def free(self) -> int:
        return 1 << 30  # the scheduler queues the tasks

    def capacity(self) -> int:
        return max(1, len(self.client.scheduler_info().get("workers", {})))

    def submit(self, task: dict) -> None:
        self.running[self.client.submit(grade_task, task, pure=False)] = task

    def wait(self, block: bool = True) -> list[Outcome]:
        from distributed import KilledWorker
        from distributed import wait as dask_wait

        if block:
            done, _ = dask_wait(list(self.running), return_when="FIRST_COMPLETED")
        else:
            done = [future for future in self.running if future.done()]
        outcomes = []
        for future in done:
            task = self.running.pop(future)
            try:
                outcomes.append(Outcome(task, result=future.result()))
            except KilledWorker as exc:
                outcomes.append(Outcome(task, dead=f"the Dask worker died ({exc})"))
            except Exception as exc:  # noqa: BLE001
                outcomes.append(Outcome(task, error=f"{type(exc).__name__}: {exc}"))
            future.release()
        return outcomes

    def close(self) -> None:
        for future in self.running:
            future.cancel()
        if self.owned:
            self.client.close()


# -- preflight -------------------------------------------------------------------------------

def reference_files(course: Path, assignment: str) -> dict[str, bytes]:
    """The reference submission: the source notebooks and the reference weights."""
    from ..cli.weights import reference_dir
    from ..manifest import assignments, weight_files

    files = {k: v for k, v in _tree_files(course / SOURCE / assignment).items() if k.endswith(".ipynb")}
    if assignment in assignments():
        where = reference_dir(course)
        missing = [w for w in weight_files(assignment) if not (where / w).exists()]
        if missing:
            raise GradeError(f"the preflight grades the reference solutions with the reference weights, "
                             f"and {', '.join(missing)} are missing in {where}: run `make weights` "
                             f"(python -m autograder weights) first, or name their folder with "
                             f"AUTOGRADER_REFERENCE_DIR")
        files.update({w: (where / w).read_bytes() for w in weight_files(assignment)})
    return files


def first_failure(result: dict) -> str | None:
    """'notebook [grade_id]: message' of the first grade cell short of full marks, or None."""
    if result.get("status") != "graded":
        return f"the reference could not be graded: {result.get('status')}"
    if not result.get("scores"):
        log = (result.get("log") or "").strip()[-2000:]
        return f"nbgrader graded no notebook of the reference; its output ended with:\n{log}"
    problems = {(e["notebook"], p.get("grade_id")): p["reason"]
                for e in result.get("report", {}).values() for p in e.get("problems", [])}
    for notebook, grade_id, score, max_score, _ in result["scores"]:
        if score is not None and score >= max_score and (notebook, grade_id) not in problems:
            continue
        message = problems.get((notebook, grade_id))
        if message is None:
            text = result.get("autograded", {}).get(f"{notebook}.ipynb")
            if text is not None:
                from .course import grade_cell_errors

                message = grade_cell_errors(nbformat.reads(text.decode(), as_version=4)).get(grade_id)
        if message is None:  # no error in the notebook: nbgrader's own error, if it logged one
            message = last_error(result.get("log") or "")
        return (f"{notebook} [{grade_id}]: {score:g} of {max_score:g} point(s): "
                f"{message or 'no error output'}")
    return None


_ERROR_LINE = re.compile(r"^\s*((?:[A-Za-z_][\w]*\.)*[A-Za-z_]\w*(?:Error|Exception|Unavailable)): (.+)$")


def last_error(log: str) -> str | None:
    """The last ``SomethingError: message`` line of a log (the end of its last traceback), e.g.
    nbgrader's "the kernel did not start in the sandbox" when no notebook was autograded."""
    found = [m.group(1).rsplit(".", 1)[-1] + ": " + m.group(2).strip()
             for m in map(_ERROR_LINE.match, log.splitlines()) if m]
    return found[-1][:800] if found else None


# -- the run ---------------------------------------------------------------------------------

@dataclass
class Summary:
    graded: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)  # worker seconds per graded submission
    wall: float = 0.0
    interrupted: bool = False

    def text(self, assignment: str) -> str:
        n = len(self.graded) + len(self.failed)
        per = f"{sum(self.seconds) / len(self.seconds):.1f} s per submission in a worker, " if self.seconds else ""
        wall = f"{self.wall / n:.1f} s per submission of wall time" if n else "nothing to grade"
        line = (f"{assignment}: {len(self.graded)} graded, {len(self.unchanged)} unchanged (skipped), "
                f"{len(self.failed)} failed; {per}{wall} ({self.wall:.0f} s in all)")
        if self.failed:
            line += (f"\n  grading failed for: {', '.join(self.failed)} (flagged for manual grading; "
                     f"python -m autograder failures lists the reasons)")
        if self.interrupted:
            line += "\n  interrupted: run the same command again to grade the rest"
        return line


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def preflight(runner, course: Path, assignment: str, definition: dict, version: str,
              timeout: float | None) -> float:
    """Grade the reference through `runner`; raise GradeError unless it gets full marks."""
    task = make_task(assignment, REFERENCE_STUDENT, reference_files(course, assignment), definition,
                     version, timeout)
    task["full"] = True  # its scores are read here (first_failure)
    runner.submit(task)
    (outcome,) = runner.wait()
    if outcome.dead or outcome.error:
        raise GradeError(f"preflight: the worker could not grade the reference solutions: "
                         f"{outcome.dead or outcome.error}")
    _check_version(outcome.result)
    problem = first_failure(outcome.result)
    if problem:
        raise GradeError(
            f"preflight: the reference solutions of {assignment!r} do not get full marks in this grading "
            f"environment, so no student was graded and the gradebook was not touched.\n  first failing "
            f"cell: {problem}\n  hint: a missing module (data_tools, autograder) means that the sandbox "
            f"does not show the course packages (Sandbox.packages, an installation outside the "
            f"virtualenv); 'bubblewrap' means that the sandbox cannot start (make setup); other data or "
            f"stale reference weights change the numbers (make weights). --skip-preflight grades anyway.")
    return outcome.result["seconds"]


def _check_version(result: dict) -> None:
    if result.get("status") == "mismatch":
        raise GradeError(f"the worker {result['worker']} runs another version of the autograder code "
                         f"({result['version'][:12]}) than this command: install the same checkout of the "
                         f"course on every worker")


def grade(course: Path, assignment: str, runner, *, students: list[str] | None = None, force: bool = False,
          retries: int = 2, timeout: float | None = None, skip_preflight: bool = False,
          progress: bool = True, stop: threading.Event | None = None, out=sys.stdout,
          batch: int | None = None) -> Summary:
    """Grade the submissions of `assignment` in `course` through `runner` (see the module doc);
    `batch`: submissions per task (default :func:`batch_sizes`)."""
    from tqdm import tqdm

    start = time.monotonic()
    course = Path(course).resolve()
    summary = Summary()
    stop = stop or threading.Event()
    known = submitted_students(course, assignment)
    records = report.submissions(course)
    prepared = force or any(records.get(f"{assignment}/{s}", {}).get("status") != "graded"
                            for s in students or known)
    if prepared and hasattr(runner, "prepare"):
        runner.prepare()  # the workers start while this process reads the submissions
    definition = grading_definition(course, assignment)
    if students:
        unknown = [s for s in students if s not in known]
        if unknown:
            raise GradeError(f"no submission of {assignment!r} for {', '.join(unknown)} (looked in "
                             f"{course / SUBMITTED}/<student>/{assignment}/)")
    writer = Writer(course, assignment)
    writer.require_released()
    version = grader_version(definition)
    task_version = f"{package_version()}:{version}"
    todo = []
    for student in students or known:
        task = make_task(assignment, student, submission_files(course, assignment, student), definition,
                         task_version, timeout)
        record = records.get(f"{assignment}/{student}", {})
        if (not force and record.get("status") == "graded" and record.get("key") == task["key"]
                and writer.has_submission(student)):
            summary.unchanged.append(student)
        else:
            todo.append(task)
    if not todo:
        summary.wall = time.monotonic() - start
        return summary
    if not prepared and hasattr(runner, "prepare"):
        runner.prepare()  # changed submissions only: nothing started for a class with nothing new
    if not skip_preflight:
        print(f"preflight: grading the reference solutions of {assignment} on {runner.describe()} ...",
              file=out, flush=True)
        seconds = preflight(runner, course, assignment, definition, task_version, timeout)
        print(f"preflight: full marks ({seconds:.1f} s)", file=out, flush=True)

    sizes = batch or batch_sizes(len(todo), runner.capacity())
    queue, attempts, failures = deque(batches(todo, sizes)), {}, 0
    bar = tqdm(total=len(todo), desc=f"grade {assignment}", unit="submission", disable=not progress,
               file=out, dynamic_ncols=True)

    def fill() -> None:
        while queue and runner.free() > 0 and not stop.is_set():
            task = queue.popleft()
            if "batch" not in task:
                attempts[task["student"]] = attempts.get(task["student"], 0) + 1
            runner.submit(task)

    pending: deque[Outcome] = deque()  # outcomes that came back and are not written yet

    def collect(outcomes: list[Outcome]) -> None:
        for outcome in outcomes:
            result = outcome.result or {}
            if "batch" not in outcome.task:
                pending.append(outcome)
            elif result.get("status") == "batch":
                for sub, sub_result in zip(outcome.task["batch"], result["results"]):
                    attempts[sub["student"]] = attempts.get(sub["student"], 0) + 1
                    pending.append(Outcome(sub, result=sub_result))
            elif result.get("status") == "mismatch":
                _check_version(result)
            else:
                # A batch that did not finish (a dead worker, its time limit): its students
                # are graded again one by one, so that one submission cannot fail the others.
                queue.extend(outcome.task["batch"])

    try:
        while (queue or runner.running or pending) and not stop.is_set():
            fill()
            # Wait for a worker only when nothing is left to write. Between two writes (a
            # second each), whatever came back is taken in and its worker gets its next task
            # at once, instead of waiting for every student of a batch to be written.
            collect(runner.wait(block=not pending))
            fill()
            if not pending:
                continue
            outcome = pending.popleft()
            task, student = outcome.task, outcome.task["student"]
            result = outcome.result or {}
            if result.get("status") == "mismatch":
                _check_version(result)
            if result.get("status") == "graded":
                ok = _write(writer, course, task, result, attempts[student], "")
                (summary.graded if ok else summary.failed).append(student)
                summary.seconds.append(result["seconds"])
                failures += not ok
                bar.update(1)
            else:
                why = outcome.dead or outcome.error or (
                    f"grading took longer than the limit of {timeout:g} s per submission"
                    if result.get("status") == "timeout" else f"worker status {result.get('status')}")
                if attempts[student] <= retries:
                    queue.append(task)
                    continue
                reason = f"{why} ({attempts[student]} attempt(s))"
                _write(writer, course, task, None, attempts[student], reason,
                       worker=result.get("worker", ""), seconds=result.get("seconds", 0.0))
                summary.failed.append(student)
                failures += 1
                bar.update(1)
            bar.set_postfix(failed=failures)
    finally:
        bar.close()
        summary.interrupted = stop.is_set() and bool(queue or runner.running or pending)
        summary.wall = time.monotonic() - start
    return summary


def _write(writer: Writer, course: Path, task: dict, result: dict | None, attempts: int, reason: str,
           worker: str = "", seconds: float = 0.0) -> bool:
    """Write one student and record it; True when graded without a grading failure."""
    student, assignment = task["student"], task["assignment"]
    where = f"{assignment}/{student}"
    report.record_submission(course, where, {"status": "writing", "key": task["key"], "attempts": attempts})
    ok, error = writer.write(student, result, reason)
    failed = bool(reason) or not ok
    error = reason or (f"nbgrader could not autograde the submission: {error.strip()[-1500:]}" if not ok else None)
    report.record_submission(course, where, {
        "status": "failed" if failed else "graded", "key": task["key"],
        "seconds": round(result["seconds"] if result else seconds, 3), "attempts": attempts,
        "worker": (result or {}).get("worker", worker), "error": error, "finished": _now()})
    return not failed
