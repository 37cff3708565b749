"""Shared fixtures: the course root, and the definitions of the solution notebooks."""
from __future__ import annotations

from pathlib import Path

import pytest

from autograder.instructor import _class_namespace

COURSE_ROOT = Path(__file__).resolve().parent.parent
SOLUTIONS = COURSE_ROOT / "solutions" / "autoencoders"


@pytest.fixture(scope="session")
def course_root() -> Path:
    return COURSE_ROOT


def solution_namespace(name: str) -> dict:
    """The classes and functions defined by the solution notebook ``name``."""
    return _class_namespace(SOLUTIONS / f"{name}.ipynb")


@pytest.fixture(scope="session")
def ae_solution() -> dict:
    return solution_namespace("ae")


def reference_weights(name: str) -> Path:
    """The reference weights directory, training the notebook ``name`` first if needed."""
    from autograder.instructor import WEIGHTS, reference_dir, train_weights

    out = reference_dir()
    if not all((out / w).exists() for w in WEIGHTS[name]):
        train_weights([name])
    return out


def grade_cell_errors(notebook_path: Path) -> dict[str, str]:
    """For each grade cell of an autograded notebook: 'ename: evalue' of its error, or ''."""
    import nbformat

    nb = nbformat.read(notebook_path, as_version=4)
    errors = {}
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if cell.cell_type == "code" and meta.get("grade"):
            errs = [o for o in cell.outputs if o.output_type == "error"]
            errors[meta["grade_id"]] = f"{errs[0].ename}: {errs[0].evalue}" if errs else ""
    return errors
