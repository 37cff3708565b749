"""Shared fixtures: the course root, the manifest's facts, the definitions of the solution
notebooks (extracted exactly as the replay extracts a submission's), reference weights."""
from __future__ import annotations

import shutil
import tempfile
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
def short_tmp():
    """A private temporary folder for one run, short enough (under /tmp) that the folders for
    sockets (``autograder.tempdirs``: the warm sandbox's staging folder, the kernels' folders)
    are made in it too; removed afterwards."""
    tmp = Path(tempfile.mkdtemp(prefix="ag-", dir="/tmp"))
    yield tmp
    shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture
def figures():
    """matplotlib without a display (Agg), every figure closed before and after the test."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.close("all")
    yield plt
    plt.close("all")


# -- the grader's processes, run in turn in the test's process ------------------------------

@pytest.fixture
def modes():
    """Leaves the process in local mode, whatever a test switched to."""
    from autograder.checks import evidence, recorded

    yield
    evidence._STATE.update(mode=None, dir=None, inputs={}, produced=set(), cell="", data={}, judged={})
    recorded._STATE.update(entries=None, dir=None, used={})


def start_staged(checks_module: str, weight_files: tuple, workdir: Path, secret: int | None = None):
    """A judged run of one notebook (``autograder.grading.judged``) up to the producer: the
    grader's inputs written (drawn with ``secret``, a fresh one if None), the weight files of
    ``workdir`` kept, this process in produce mode. The test then calls the checks as the
    producer would, and :func:`finish_staged`."""
    from autograder.checks import evidence
    from autograder.grading import judged

    (workdir / "run").mkdir()
    run = judged._Run(checks_module, weight_files, workdir / "run", secret=secret)
    run.write_inputs()
    run.keep_weights(workdir)
    evidence.start_producing(str(run.shared))
    return run


def finish_staged(run, source_path: Path, checks_module: str) -> dict:
    """The rest of a judged run: the first stage's outputs collected, the second stage run (in
    this process) on the source notebook's definitions when there is one, and the judge's
    verdicts of the source notebook's grade cells."""
    from autograder.checks import evidence
    from autograder.grading import judge, stage_child
    from autograder.grading.replay import build_plan

    evidence._STATE.update(mode=None)
    run.collect_first()
    source = nbformat.read(source_path, as_version=4)
    plan = build_plan(source, source)
    if run.requests:
        stage_child.main(str(run.second_plan(plan)), str(run.second))
        run.collect_second()
    run.write_metas()
    cells = [{"grade_id": c.metadata.nbgrader["grade_id"], "source": c.source} for c in source.cells
             if c.metadata.get("nbgrader", {}).get("grade")]
    settings = [s.code for s in plan if s.kind == "trusted" and not s.grade_id]
    return judge.judge({"checks": checks_module, "cells": cells, "settings": settings,
                        "evidence": str(run.private), "calls": str(run.shared / "calls"),
                        "secret": run.secret})


# -- end-to-end tests: crafted submissions and their grades ----------------------------------

def swap(text: str, old: str, new: str) -> str:
    """The notebook JSON ``text`` with ``old`` replaced by ``new`` in the one cell holding it
    (``old`` must occur exactly once in the notebook)."""
    from autograder.cli.calibrate import apply_edits

    nb = nbformat.reads(text, as_version=4)
    apply_edits(nb, [(old, new)])
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


def pytest_collection_modifyitems(config, items):
    """The files with slow tests first: in a parallel run (``make test``: one process per core,
    one file per process at a time) the longest files then start at once instead of last."""
    slow_files = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow_files)


def hidden_test_lines(source_path: Path) -> list[str]:
    """The code lines of the hidden tests of a source notebook (markers excluded)."""
    lines, inside = [], False
    for cell in nbformat.read(source_path, as_version=4).cells:
        for line in cell.source.splitlines() if cell.metadata.get("nbgrader", {}).get("grade") else []:
            if "BEGIN HIDDEN TESTS" in line:
                inside = True
            elif "END HIDDEN TESTS" in line:
                inside = False
            elif inside and line.strip() and not line.strip().startswith("#"):
                lines.append(line.strip())
    return lines


def page_text(html: str) -> str:
    """The text of an HTML page as a reader sees it: tags removed, entities decoded, and
    whitespace runs as single spaces (syntax highlighting splits code into many tags)."""
    import html as html_lib
    import re

    text = html_lib.unescape(re.sub(r"<[^>]+>", "", html))
    return " ".join(text.split())


def assert_no_hidden_tests(html: str, source_path: Path) -> None:
    """A feedback page shows no hidden test (no marker, no line of their code) and says that
    hidden checks ran."""
    text = page_text(html)
    assert "HIDDEN TESTS" not in text
    for line in hidden_test_lines(source_path):
        assert " ".join(line.split()) not in text, line
    assert "hidden check" in text
