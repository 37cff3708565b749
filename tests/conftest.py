"""Shared fixtures: the course root, the manifest's facts, the definitions of the solution
notebooks (extracted exactly as the replay extracts a submission's), reference weights."""
from __future__ import annotations

from pathlib import Path

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

