"""Does every submission of the fairness corpus (``tests/corpus``) get, under real
`nbgrader autograde`, exactly the points its own run earns: correct code in any style keeps
every point, a real bug loses exactly its cells, each with a message that names the cause?

The corpus lists each submission's source and what it exercises; ``docs/fairness.md`` is its
table. Submissions with ``weights="reference"`` compute the reference's function, so their
weights are the reference weights moved by position into their own parameters.
"""
from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest
import torch
from conftest import ASSIGNMENT, COURSE_ROOT, SOLUTIONS, errors, points, reference_weights
from corpus import ENTRIES, KNOWN_GAPS

from autograder.grading.course import add_cell, all_scores, autograde, build_course, fill, release, submit
from autograder.manifest import notebook

DOC = COURSE_ROOT / "docs" / "fairness.md"


def full_points(name: str) -> dict[str, float]:
    """Every grade cell of the notebook and its points."""
    nb = nbformat.read(SOLUTIONS / f"{name}.ipynb", as_version=4)
    return {c.metadata.nbgrader["grade_id"]: float(c.metadata.nbgrader["points"])
            for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade")}


def student_notebook(course: Path, entry) -> nbformat.NotebookNode:
    """The released notebook as the student hands it in: the solution cells filled (with the
    reference's code where the entry leaves them), the student's own cells added."""
    solution = nbformat.read(SOLUTIONS / f"{entry.notebook}.ipynb", as_version=4)
    answers = {c.metadata.nbgrader["grade_id"]: _without_markers(c.source) for c in solution.cells
               if c.metadata.get("nbgrader", {}).get("solution")
               and not c.metadata.nbgrader.get("grade")}
    nb = fill(release(course, entry.notebook), {**answers, **entry.cells})
    for after, source in reversed(entry.added):
        nb = add_cell(nb, after, source)
    return nb


def _without_markers(source: str) -> str:
    return "\n".join(line for line in source.splitlines()
                     if not re.match(r"\s*### (BEGIN|END) SOLUTION", line))


def student_models(entry, nb) -> dict[str, torch.nn.Module]:
    """The student's models, freshly initialised (seed 0) and keyed by weight file, built from
    the student's cells run in order as the notebook runs them (not as the grader does)."""
    namespace: dict = {"__name__": "__main__", "device": "cpu"}
    exec("import torch\nimport torch.nn as nn\nimport torch.nn.functional as F", namespace)
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if cell.cell_type == "code" and not meta.get("grade") and not meta.get("locked") \
                and "skip_training" not in cell.source and not meta.get("grade_id", "").endswith("_training"):
            try:
                exec(compile(cell.source, "<cell>", "exec"), namespace)
            except Exception:  # noqa: BLE001, S110 - a cell that needs the data: not a model
                pass
    meta = notebook(entry.notebook, ASSIGNMENT)
    torch.manual_seed(0)
    return {m.weights: m.build(namespace, meta.n_components) for m in meta.models}


def moved_reference(model: torch.nn.Module, reference: dict) -> dict:
    """The reference's parameters and buffers in ``model``'s own names, by position."""
    own = model.state_dict()
    assert [tuple(v.shape) for v in own.values()] == [tuple(v.shape) for v in reference.values()], \
        "the corpus entry's parameters do not match the reference's, in order and shape"
    return dict(zip(own, reference.values()))


@pytest.fixture(scope="module")
def graded_corpus(tmp_path_factory):
    folders = {name: reference_weights(name) for name in {e.notebook for e in ENTRIES}}
    course = build_course(tmp_path_factory.mktemp("fairness") / "course", (ASSIGNMENT,))
    for entry in ENTRIES:
        nb = student_notebook(course, entry)
        dest = submit(course, entry.name, {f"{entry.notebook}.ipynb": nb})
        for filename, model in student_models(entry, nb).items():
            state = model.state_dict()
            if entry.weights == "reference":
                reference = torch.load(folders[entry.notebook] / filename, weights_only=True)
                state = moved_reference(model, reference)
            torch.save(state, dest / filename)
    proc = autograde(course, force=True)  # one nbgrader call for the whole corpus
    assert proc.returncode == 0, proc.output[-6000:]
    return course, all_scores(course)


def _cases():
    """Every entry; those with a known gap (``corpus.KNOWN_GAPS``) fail until it is closed."""
    for entry in ENTRIES:
        gap = KNOWN_GAPS.get(entry.name)
        marks = [pytest.mark.xfail(reason=gap, strict=True)] if gap else []
        yield pytest.param(entry, id=entry.name, marks=marks)


@pytest.mark.slow
@pytest.mark.parametrize("entry", list(_cases()))
def test_corpus_submission_gets_exactly_its_points(graded_corpus, entry):
    """Does the submission keep every point but those of its listed cells, with no error in
    the cells it keeps and the named cause in the cells it loses?"""
    course, result = graded_corpus
    full = full_points(entry.notebook)
    found = errors(course, entry.name, entry.notebook)
    expected = {cell: 0.0 if cell in entry.lost else score for cell, score in full.items()}
    assert points(result, entry.name, entry.notebook) == expected, found
    for cell in full:
        assert (found[cell] != "") == (cell in entry.lost), (cell, found[cell])
    for cell, phrase in entry.messages.items():
        assert phrase in " ".join(found[cell].split()), (cell, found[cell])
    if entry.correct:
        assert not any("NameError" in e for e in found.values()), found


def test_the_corpus_table_lists_every_submission():
    """Does docs/fairness.md have a row for every submission of the corpus, with its points?"""
    text = DOC.read_text()
    for entry in ENTRIES:
        full = full_points(entry.notebook)
        got = sum(0.0 if cell in entry.lost else score for cell, score in full.items())
        row = next((line for line in text.splitlines() if f"`{entry.name}`" in line), None)
        assert row is not None, f"docs/fairness.md has no row for {entry.name}"
        assert f"{got:g} / {sum(full.values()):g}" in row, row
