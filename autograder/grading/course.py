"""The course harness: nbgrader courses in a folder, driven by the real nbgrader commands.

The instructor commands (``python -m autograder demo``, calibration) and the tests use it::

    course = build_course(tmp / "course")                        # this course, released
    course = make_course(tmp, {"toy": source_nb})                # a course of given notebooks
    nb = fill(release(course, "toy"), {"square": "def square(x): return x * x"})
    submit(course, "alice", {"toy.ipynb": nb, "w.pth": b"..."})  # notebooks, paths or bytes
    run = autograde(course)                                       # real `nbgrader autograde`
    scores(course, "alice")         # {("toy", "test_square"): (1.0, 1.0), ...}
    all_scores(course)              # {"alice": {...}, ...}
    graded(course, "alice", "toy")  # the autograded notebook
    outputs(graded(...), "test_square"), flagged(course, "alice"), report(course)

Every function takes ``assignment=``; without it, the course's only assignment is used.
nbgrader runs ``alembic`` from PATH, so commands run with the virtualenv's ``bin`` first on
PATH (:func:`nbgrader_env`). :func:`definitions` extracts a notebook's classes and functions
exactly as the replay does (``autograder.grading.replay.definitions``).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import nbformat
from nbformat import NotebookNode
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

COURSE_ROOT = Path(__file__).resolve().parents[2]
SOURCE, RELEASE = "solutions", "assignments"


# -- notebooks in nbgrader format ------------------------------------------------------------

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


def cell_source(nb: NotebookNode, grade_id: str) -> str:
    """The source of the cell with this grade_id."""
    (cell,) = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id]
    return cell.source


def definitions(path: Path | NotebookNode) -> dict:
    """The classes, functions, imports and constants of a notebook's solution cells, executed
    in a fresh namespace after the standard imports: what the replay keeps of a submission."""
    from .replay import definitions as replay_definitions

    nb = path if isinstance(path, NotebookNode) else nbformat.read(path, as_version=4)
    ns: dict = {"__name__": "__main__"}
    exec("import torch\nimport torch.nn as nn\nimport torch.nn.functional as F", ns)
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if cell.cell_type == "code" and meta.get("solution") and not meta.get("grade"):
            code, _ = replay_definitions(cell.source)
            exec(compile(code, f"<{meta.get('grade_id', 'cell')}>", "exec"), ns)
    return ns


# -- the course --------------------------------------------------------------------------------

def nbgrader_env(env: dict | None = None) -> dict:
    """The environment nbgrader runs in: ours, with the virtualenv's bin first on PATH."""
    path = os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])
    return {**os.environ, "PATH": path, **(env or {})}


def nbgrader(course: Path, *args: str, timeout: float = 900, env: dict | None = None
             ) -> subprocess.CompletedProcess:
    """Run ``nbgrader ARGS`` in the course directory."""
    return subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=course, capture_output=True,
                          text=True, timeout=timeout, env=nbgrader_env(env))


def assignment_of(course: Path, assignment: str | None = None) -> str:
    """``assignment``, or the only assignment in the course's source folder."""
    if assignment is not None:
        return assignment
    names = sorted(p.name for p in (course / SOURCE).iterdir() if p.is_dir())
    if len(names) != 1:
        raise ValueError(f"{course}: the course has the assignments {names}: name one (assignment=...)")
    return names[0]


def _config_text(config: str, course: Path = COURSE_ROOT) -> str:
    text = (course / "nbgrader_config.py").read_text()
    if "configure(c)" not in text:
        text += "\nfrom autograder.grading.pipeline import configure\nconfigure(c)\n"
    return text + f"\n{config}\n"


def _generate(course: Path, assignment: str) -> None:
    run = nbgrader(course, "generate_assignment", assignment, "--force")
    if run.returncode != 0:
        raise RuntimeError(f"nbgrader generate_assignment {assignment} failed:\n{run.stdout}\n{run.stderr}")


def make_course(tmp_path: Path, source_notebooks: dict[str, NotebookNode],
                extra_files: dict[str, str | bytes] | None = None, *,
                assignment: str = "toy", config: str = "") -> Path:
    """A course in ``tmp_path/course`` with `source_notebooks` released by nbgrader."""
    course = tmp_path / "course"
    source = course / SOURCE / assignment
    source.mkdir(parents=True)
    (course / "nbgrader_config.py").write_text(_config_text(config))
    for name, nb in source_notebooks.items():
        nbformat.write(nb, source / f"{name}.ipynb")
    for name, content in (extra_files or {}).items():
        path = source / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    _generate(course, assignment)
    return course


def build_course(workdir: Path, assignments: tuple[str, ...] | None = None, *,
                 config: str = "", course: Path = COURSE_ROOT) -> Path:
    """A fresh copy of ``course`` (config and source notebooks; default: this repository's) in
    ``workdir``, released."""
    from ..manifest import assignments as all_assignments

    names = assignments or all_assignments()
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    (workdir / "nbgrader_config.py").write_text(_config_text(config, course))
    for name in names:
        shutil.copytree(course / SOURCE / name, workdir / SOURCE / name,
                        ignore=shutil.ignore_patterns("*.pth", ".ipynb_checkpoints"))
        _generate(workdir, name)
    return workdir


def release(course: Path, name: str, assignment: str | None = None) -> NotebookNode:
    """The student version of notebook `name`, as nbgrader released it."""
    path = course / RELEASE / assignment_of(course, assignment) / f"{name}.ipynb"
    return nbformat.read(path, as_version=4)


def submit(course: Path, student: str, files: dict[str, NotebookNode | Path | str | bytes],
           assignment: str | None = None) -> Path:
    """Place a submission in ``submitted/<student>/<assignment>/``: notebooks, files to copy
    (a Path) or raw content (str or bytes)."""
    folder = course / "submitted" / student / assignment_of(course, assignment)
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        path = folder / name
        if isinstance(content, NotebookNode):
            nbformat.write(content, path, version=4)
        elif isinstance(content, Path):
            shutil.copy(content, path)
        else:
            path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return folder


@dataclass
class AutogradeRun:
    returncode: int
    output: str
    seconds: float


def autograde_command(course: Path, *students: str, timeout: float | None = None, force: bool = False,
                      args: tuple[str, ...] = (), assignment: str | None = None) -> list[str]:
    """The ``nbgrader autograde`` command line that :func:`autograde` runs."""
    cmd = [sys.executable, "-m", "nbgrader", "autograde", assignment_of(course, assignment), *args]
    if students:
        others = sorted({p.name for p in (course / "submitted").iterdir()} - set(students))
        if others:
            cmd.append(f"--CourseDirectory.student_id_exclude={','.join(others)}")
    if timeout is not None:
        cmd.append(f"--Execute.timeout={timeout}")
    if force:
        cmd.append("--force")
    return cmd


def autograde(course: Path, *students: str, timeout: float | None = None, force: bool = False,
              args: tuple[str, ...] = (), env: dict | None = None, wall_timeout: float = 1800,
              assignment: str | None = None) -> AutogradeRun:
    """Run ``nbgrader autograde`` once for `students` (default: every submitted student).

    `timeout` is the per-cell limit (``Execute.timeout``); `args` are extra command-line options.
    """
    cmd = autograde_command(course, *students, timeout=timeout, force=force, args=args,
                            assignment=assignment)
    start = time.monotonic()
    run = subprocess.run(cmd, cwd=course, capture_output=True, text=True, timeout=wall_timeout,
                         env=nbgrader_env(env))
    return AutogradeRun(run.returncode, run.stdout + run.stderr, time.monotonic() - start)


def _gradebook(course: Path):
    from nbgrader.api import Gradebook
    return Gradebook(f"sqlite:///{course / 'gradebook.db'}")


def scores(course: Path, student: str, assignment: str | None = None
           ) -> dict[tuple[str, str], tuple[float, float]]:
    """``{(notebook, grade_id): (score, max_score)}`` from the gradebook ({} if never graded)."""
    from nbgrader.api import MissingEntry
    with _gradebook(course) as gb:
        try:
            submission = gb.find_submission(assignment_of(course, assignment), student)
        except MissingEntry:
            return {}
        return {(nb.name, grade.name): (grade.score, grade.max_score)
                for nb in submission.notebooks for grade in nb.grades}


def all_scores(course: Path, assignment: str | None = None
               ) -> dict[str, dict[tuple[str, str], tuple[float, float]]]:
    """:func:`scores` of every graded student of the assignment."""
    name = assignment_of(course, assignment)
    with _gradebook(course) as gb:
        students = [sub.student_id for sub in gb.assignment_submissions(name)]
    return {student: scores(course, student, name) for student in students}


def flagged(course: Path, student: str, assignment: str | None = None) -> set[tuple[str, str]]:
    """The (notebook, grade_id) pairs the gradebook marks as needing manual grading."""
    from nbgrader.api import MissingEntry
    with _gradebook(course) as gb:
        try:
            submission = gb.find_submission(assignment_of(course, assignment), student)
        except MissingEntry:
            return set()
        return {(nb.name, g.name) for nb in submission.notebooks for g in nb.grades if g.needs_manual_grade}


def graded(course: Path, student: str, name: str, assignment: str | None = None) -> NotebookNode | None:
    """The autograded notebook `name` of `student`, or None if nbgrader left none."""
    path = course / "autograded" / student / assignment_of(course, assignment) / f"{name}.ipynb"
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


def grade_cell_errors(nb: NotebookNode | Path | None) -> dict[str, str]:
    """For each grade cell of an autograded notebook: 'ename: evalue' of its error, or ''."""
    if not isinstance(nb, NotebookNode):
        nb = nbformat.read(nb, as_version=4)
    errors = {}
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if cell.cell_type == "code" and meta.get("grade"):
            errs = [o for o in cell.outputs if o.output_type == "error"]
            errors[meta["grade_id"]] = f"{errs[0].ename}: {errs[0].evalue}" if errs else ""
    return errors


def report(course: Path) -> dict:
    """The grading report's entries, keyed ``(student, notebook)``."""
    from .report import load
    return {(e["student"], e["notebook"]): e for e in load(course)["notebooks"].values()}
