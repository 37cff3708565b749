"""Checks that ``nbgrader autograde`` makes before it touches a submission.

An assignment that was never released (``nbgrader generate_assignment``, ``make release`` at
the repository root) is not in the gradebook, and nbgrader then fails every student with a
traceback ending in "No assignment with ID '...' exists in the database". The gradebook needs
the release: it is where nbgrader records each notebook's test cells, points and checksums
(and the hidden tests). :func:`require_released` stops before any student with one message
that names the command that fixes it.

A grading machine whose sandbox cannot import the course packages (``data_tools``,
``autograder``), for example a copy of the course whose packages the sandbox does not show,
would give every student 0 points with ``No module named 'data_tools'`` in the outputs.
:func:`require_sandbox_imports` stops before any student instead, naming the cause.
"""
from __future__ import annotations

import glob
import os
import subprocess
import sys
import tempfile

from nbgrader.api import Gradebook
from nbgrader.converters.base import NbGraderException

GLOB_CHARS = set("*?[")
REQUIRED_PACKAGES = ("data_tools", "autograder")


def submitted_assignments(coursedir) -> list[str]:
    """The assignments ``nbgrader autograde ASSIGNMENT`` would grade (ASSIGNMENT may be a glob)."""
    name = coursedir.assignment_id
    if not GLOB_CHARS & set(name):
        return [name] if name else []
    pattern = coursedir.format_path(coursedir.submitted_directory, coursedir.student_id or "*", name)
    return sorted({os.path.basename(os.path.normpath(p)) for p in glob.glob(pattern) if os.path.isdir(p)})


def unreleased(coursedir) -> list[str]:
    """The assignments to grade that the gradebook does not know."""
    wanted = submitted_assignments(coursedir)
    if not wanted:
        return []
    with Gradebook(coursedir.db_url, coursedir.course_id) as gb:
        known = {a.name for a in gb.assignments}
    return [name for name in wanted if name not in known]


def unreleased_message(names: list[str], coursedir) -> str:
    quoted = ", ".join(f"'{n}'" for n in names)
    commands = "\n".join(f"    nbgrader generate_assignment {n}" for n in names)
    return (f"nbgrader autograde: the gradebook ({coursedir.db_url}) has no assignment {quoted}: it "
            f"was never released in this course directory ({coursedir.root}). Grading needs the "
            f"release, because that is when nbgrader records the notebooks, test cells, points and "
            f"hidden tests. Release it first (at the repository root: make release):\n\n{commands}\n\n"
            f"then run nbgrader autograde again. No submission was touched.")


def require_released(coursedir, log) -> None:
    """Log a clear error and raise NbGraderException (nbgrader exits 1) for unreleased assignments."""
    missing = unreleased(coursedir)
    if missing:
        log.error(unreleased_message(missing, coursedir))
        raise NbGraderException(f"assignment not released: {', '.join(missing)}")


def sandbox_problem(config) -> str | None:
    """Why a sandboxed kernel would not import the course packages, or None.

    A sandbox that cannot start at all (bubblewrap missing) is left to the kernel manager, which
    fails every notebook with that reason, flagged for manual grading, and records it."""
    from ..sandbox import Sandbox, SandboxUnavailable, switched_off

    if switched_off():
        return None
    sb = Sandbox(config=config)
    try:
        sb.check()
    except SandboxUnavailable:
        return None  # each notebook then fails as "grading failed: the student sandbox cannot start"
    code = ("import importlib\n"
            f"for name in {REQUIRED_PACKAGES!r}:\n"
            "    try:\n        importlib.import_module(name)\n"
            "    except Exception as e:\n        raise SystemExit(f'{type(e).__name__}: {e}')\n")
    with tempfile.TemporaryDirectory(prefix="autograder-imports-") as tmp:
        if sb.privileged():
            os.chown(tmp, sb.uid, sb.uid)
        try:
            run = subprocess.run(sb.command([sys.executable, "-c", code], cwd=tmp), capture_output=True,
                                 text=True, timeout=120)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"the sandboxed Python did not run: {exc}"
    if run.returncode == 0:
        return None
    error = (run.stderr.strip().splitlines() or [f"exit status {run.returncode}"])[-1]
    return (f"the sandboxed Python cannot import the course packages ({', '.join(REQUIRED_PACKAGES)}): "
            f"{error}. Every notebook would fail in its first cell. The sandbox shows the packages "
            f"named in c.Sandbox.packages, from where this Python finds them, and the virtualenv; "
            f"install the course into the grading virtualenv (make setup) and keep "
            f"{', '.join(REQUIRED_PACKAGES)} in c.Sandbox.packages")


def require_sandbox_imports(config, log) -> None:
    """Log a clear error and raise NbGraderException when the sandboxed kernels could not import
    the course packages."""
    problem = sandbox_problem(config)
    if problem:
        log.error("nbgrader autograde: %s. No submission was touched.", problem)
        raise NbGraderException(f"grading environment broken: {problem}")
