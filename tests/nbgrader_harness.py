"""A throw-away nbgrader course for end-to-end tests: real nbgrader, real (sandboxed) kernels.

    course = make_course(tmp_path, {"toy": source_nb})         # generate_assignment included
    nb = fill(release(course, "toy"), {"square": "def square(x): return x * x"})
    submit(course, "alice", {"toy.ipynb": nb})
    run = autograde(course, timeout=10)                          # all submitted students, one call
    scores(course, "alice")   # {("toy", "test_square"): (1.0, 1.0), ...}
    report(course)[("alice", "toy")]["status"]                    # "ok" | "failed" | "running"
    graded(course, "alice", "toy")                               # the autograded notebook
    outputs(graded(course, "alice", "toy"), "test_square")       # a cell's output text
    flagged(course, "alice")                                     # grade cells needing review

For the course's own notebooks: ``make_course(tmp_path, {"ae": nbformat.read(path, 4)},
assignment="autoencoders")`` and submit the weights next to the notebook,
``submit(course, "bob", {"ae.ipynb": nb, "ae_encoder.pth": weights_bytes, ...})``.

The course's ``nbgrader_config.py`` is the repository's (so tests see what instructors get),
followed by ``configure(c)`` from ``autograder.nbgrader_setup`` when the repository's file
does not call it yet, and any ``config`` lines given. nbgrader runs ``alembic`` from PATH,
so commands run with the virtualenv's ``bin`` first on PATH (``nbgrader_env``).
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import nbformat
from nbformat import NotebookNode
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

REPO = Path(__file__).resolve().parents[1]
SOURCE, RELEASE = "solutions", "assignments"


# -- notebooks in nbgrader format ------------------------------------------------------

def notebook(*cells: NotebookNode) -> NotebookNode:
    nb = new_notebook(cells=list(cells))
    nb.metadata.kernelspec = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nb


def markdown(text: str) -> NotebookNode:
    return new_markdown_cell(text)


def solution_cell(source: str, grade_id: str) -> NotebookNode:
    """An autograded-answer cell (``### BEGIN SOLUTION`` ... ``### END SOLUTION`` inside)."""
    return new_code_cell(source, metadata={"nbgrader": {
        "grade": False, "solution": True, "locked": False, "grade_id": grade_id, "schema_version": 3}})


def grade_cell(source: str, grade_id: str, points: float) -> NotebookNode:
    """A locked test cell worth `points` (may hold ``### BEGIN HIDDEN TESTS`` blocks)."""
    return new_code_cell(source, metadata={"nbgrader": {
        "grade": True, "solution": False, "locked": True, "grade_id": grade_id, "points": points,
        "schema_version": 3}})


def fill(nb: NotebookNode, answers: dict[str, str]) -> NotebookNode:
    """A copy of `nb` with the source of the cells named by grade_id replaced."""
    nb = nbformat.from_dict(nb)
    for cell in nb.cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if grade_id in answers:
            cell.source = answers[grade_id]
    return nb


def add_cell(nb: NotebookNode, after: str, source: str) -> NotebookNode:
    """A copy of `nb` with a plain student code cell inserted after the cell `after` (grade_id)."""
    nb = nbformat.from_dict(nb)
    ids = [c.metadata.get("nbgrader", {}).get("grade_id") for c in nb.cells]
    nb.cells.insert(ids.index(after) + 1, new_code_cell(source))
    return nb


# -- the course ------------------------------------------------------------------------

def _nbgrader(course: Path, *args: str, timeout: float = 600, env: dict | None = None):
    return subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=course, capture_output=True,
                          text=True, timeout=timeout, env=nbgrader_env(env))


def assignment_of(course: Path) -> str:
    (name,) = [p.name for p in (course / SOURCE).iterdir() if p.is_dir()]
    return name


def make_course(tmp_path: Path, source_notebooks: dict[str, NotebookNode],
                extra_files: dict[str, str | bytes] | None = None, *,
                assignment: str = "toy", config: str = "") -> Path:
    """A course in ``tmp_path/course`` with `source_notebooks` released by nbgrader."""
    course = tmp_path / "course"
    source = course / SOURCE / assignment
    source.mkdir(parents=True)
    text = (REPO / "nbgrader_config.py").read_text()
    if "configure(c)" not in text:
        text += "\nfrom autograder.nbgrader_setup import configure\nconfigure(c)\n"
    text += f"\n{config}\n"
    (course / "nbgrader_config.py").write_text(text)
    for name, nb in source_notebooks.items():
        nbformat.write(nb, source / f"{name}.ipynb")
    for name, content in (extra_files or {}).items():
        path = source / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    run = _nbgrader(course, "generate_assignment", assignment, "--force")
    if run.returncode != 0:
        raise RuntimeError(f"nbgrader generate_assignment failed:\n{run.stdout}\n{run.stderr}")
    return course


def release(course: Path, name: str) -> NotebookNode:
    """The student version of notebook `name`, as nbgrader released it."""
    return nbformat.read(course / RELEASE / assignment_of(course) / f"{name}.ipynb", as_version=4)


def submit(course: Path, student: str, files: dict[str, NotebookNode | str | bytes]) -> Path:
    """Place a submission in ``submitted/<student>/<assignment>/`` (notebooks or raw content)."""
    folder = course / "submitted" / student / assignment_of(course)
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        path = folder / name
        if isinstance(content, NotebookNode):
            nbformat.write(content, path, version=4)
        else:
            path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return folder


@dataclass
class AutogradeRun:
    returncode: int
    output: str
    seconds: float


def autograde_command(course: Path, *students: str, timeout: float | None = None, force: bool = False,
                      args: tuple[str, ...] = ()) -> list[str]:
    """The ``nbgrader autograde`` command line used by `autograde` (for running it yourself)."""
    cmd = [sys.executable, "-m", "nbgrader", "autograde", assignment_of(course), *args]
    if students:
        others = sorted({p.name for p in (course / "submitted").iterdir()} - set(students))
        if others:
            cmd.append(f"--CourseDirectory.student_id_exclude={','.join(others)}")
    if timeout is not None:
        cmd.append(f"--Execute.timeout={timeout}")
    if force:
        cmd.append("--force")
    return cmd


def nbgrader_env(env: dict | None = None) -> dict:
    """The environment nbgrader runs in: ours, with the virtualenv's bin first on PATH."""
    path = os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])
    return {**os.environ, "PATH": path, **(env or {})}


def autograde(course: Path, *students: str, timeout: float | None = None, force: bool = False,
              args: tuple[str, ...] = (), env: dict | None = None, wall_timeout: float = 900) -> AutogradeRun:
    """Run ``nbgrader autograde`` once for `students` (default: every submitted student).

    `timeout` is the per-cell limit (``Execute.timeout``); `args` are extra command-line options.
    """
    cmd = autograde_command(course, *students, timeout=timeout, force=force, args=args)
    start = time.monotonic()
    run = subprocess.run(cmd, cwd=course, capture_output=True, text=True, timeout=wall_timeout,
                         env=nbgrader_env(env))
    return AutogradeRun(run.returncode, run.stdout + run.stderr, time.monotonic() - start)


def scores(course: Path, student: str) -> dict[tuple[str, str], tuple[float, float]]:
    """``{(notebook, grade_id): (score, max_score)}`` from the gradebook ({} if never graded)."""
    from nbgrader.api import Gradebook, MissingEntry
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        try:
            submission = gb.find_submission(assignment_of(course), student)
        except MissingEntry:
            return {}
        return {(nb.name, grade.name): (grade.score, grade.max_score)
                for nb in submission.notebooks for grade in nb.grades}


def flagged(course: Path, student: str) -> set[tuple[str, str]]:
    """The (notebook, grade_id) pairs the gradebook marks as needing manual grading."""
    from nbgrader.api import Gradebook, MissingEntry
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        try:
            submission = gb.find_submission(assignment_of(course), student)
        except MissingEntry:
            return set()
        return {(nb.name, g.name) for nb in submission.notebooks for g in nb.grades if g.needs_manual_grade}


def graded(course: Path, student: str, name: str) -> NotebookNode | None:
    """The autograded notebook `name` of `student`, or None if nbgrader left none."""
    path = course / "autograded" / student / assignment_of(course) / f"{name}.ipynb"
    return nbformat.read(path, as_version=4) if path.exists() else None


def outputs(nb: NotebookNode, grade_id: str | None = None, index: int | None = None) -> str:
    """The text of a cell's outputs (streams, results and errors), found by grade_id or index."""
    if grade_id is not None:
        (cell,) = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id]
    else:
        cell = nb.cells[index]
    parts = []
    for out in cell.get("outputs", []):
        if out.output_type == "stream":
            parts.append(out.text)
        elif out.output_type == "error":
            parts.append(f"{out.ename}: {out.evalue}")
        else:
            parts.append(str(out.get("data", {}).get("text/plain", "")))
    return "".join(p if p.endswith("\n") else p + "\n" for p in parts)


def report(course: Path) -> dict:
    """The grading report's entries, keyed ``(student, notebook)``."""
    from autograder.grading.report import load
    return {(e["student"], e["notebook"]): e for e in load(course)["notebooks"].values()}


# -- checks around the sandbox -------------------------------------------------------------

def sandbox_processes(under: Path, wait: float = 10) -> list[str]:
    """Command lines of processes whose working directory is inside `under` (e.g. a course),
    after waiting up to `wait` seconds for them to end. Needs root to see other users' processes."""
    under = os.path.realpath(under)
    deadline = time.monotonic() + wait
    while True:
        found = []
        for entry in Path("/proc").iterdir():
            try:
                if entry.name.isdigit() and os.path.realpath(entry / "cwd").startswith(under + "/"):
                    found.append((entry / "cmdline").read_bytes().replace(b"\0", b" ").decode())
            except OSError:
                continue
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def host_address() -> str:
    """This machine's address on its default route (no packet is sent), else its hostname's."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))
            return s.getsockname()[0]
        except OSError:
            return socket.gethostbyname(socket.gethostname())
