"""Checks that ``nbgrader autograde`` makes before it touches a submission.

An assignment that was never released (``nbgrader generate_assignment``, ``make release`` at
the repository root) is not in the gradebook, and nbgrader then fails every student with a
traceback ending in "No assignment with ID '...' exists in the database". The gradebook needs
the release: it is where nbgrader records each notebook's test cells, points and checksums
(and the hidden tests). :func:`require_released` stops before any student with one message
that names the command that fixes it.
"""
from __future__ import annotations

import glob
import os

from nbgrader.api import Gradebook
from nbgrader.converters.base import NbGraderException

GLOB_CHARS = set("*?[")


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
