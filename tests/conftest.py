"""Shared fixtures: the course root, the manifest's facts, the definitions of the solution
notebooks (extracted exactly as the replay extracts a submission's), reference weights."""
from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from autograder.cli.weights import reference_weights  # noqa: F401  (re-exported for the tests)
from autograder.grading.course import definitions, grade_cell_errors  # noqa: F401
from autograder.manifest import notebooks

COURSE_ROOT = Path(__file__).resolve().parent.parent
ASSIGNMENT = "autoencoders"
SOLUTIONS = COURSE_ROOT / "solutions" / ASSIGNMENT
WEIGHTS = {nb.name: nb.weights for nb in notebooks(ASSIGNMENT)}


@pytest.fixture(scope="session")
def course_root() -> Path:
    return COURSE_ROOT


def solution_namespace(name: str) -> dict:
    """The classes and functions defined by the solution notebook ``name``."""
    return definitions(SOLUTIONS / f"{name}.ipynb")


@pytest.fixture(scope="session")
def ae_solution() -> dict:
    return solution_namespace("ae")


@pytest.fixture
def figures():
    """matplotlib without a display (Agg), every figure closed before and after the test."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.close("all")
    yield plt
    plt.close("all")


# -- end-to-end tests: crafted submissions and their grades ----------------------------------

def swap(text: str, old: str, new: str) -> str:
    """The notebook JSON ``text`` with ``old`` replaced by ``new`` in the one cell holding it
    (``old`` must occur exactly once in the notebook)."""
    nb = nbformat.reads(text, as_version=4)
    assert sum(c.source.count(old) for c in nb.cells) == 1, old
    for cell in nb.cells:
        cell.source = cell.source.replace(old, new)
    return nbformat.writes(nb)


def points(result: dict, student: str, notebook: str) -> dict[str, float]:
    """``{grade cell: score}`` of one student's notebook, from ``all_scores(course)``."""
    return {cell: score for (nb, cell), (score, _) in result[student].items() if nb == notebook}


def errors(course: Path, student: str, notebook: str, assignment: str = ASSIGNMENT) -> dict[str, str]:
    """``{grade cell: 'ename: evalue' of its error, or ''}`` of one student's autograded notebook."""
    return grade_cell_errors(course / "autograded" / student / assignment / f"{notebook}.ipynb")


def assert_release_scores_zero(course: Path, result: dict, student: str, notebook: str,
                               cells, assignment: str = ASSIGNMENT) -> None:
    """The release as handed out scores 0 in every grade cell, each with "not implemented yet"."""
    assert points(result, student, notebook) == {cell: 0.0 for cell in cells}
    found = errors(course, student, notebook, assignment)
    assert set(found) == set(cells)
    for cell, error in found.items():
        assert error.startswith("NotImplementedYet:") and "not implemented yet" in error, (cell, error)


def assert_full_marks(course: Path, result: dict, student: str, notebook: str, full: dict,
                      assignment: str = ASSIGNMENT) -> None:
    """Every point of the notebook, and no error in any grade cell."""
    found = errors(course, student, notebook, assignment)
    assert points(result, student, notebook) == full, found
    assert set(found.values()) == {""}, found
