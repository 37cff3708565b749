"""Does a feedback page keep the hidden tests' code out, saying how many hidden checks ran?"""
from __future__ import annotations

import pytest
from conftest import COURSE_ROOT, hidden_test_lines
from nbformat.v4 import new_code_cell, new_output

from autograder.grading.feedback import HideHiddenTests
from autograder.manifest import NOTEBOOKS


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda nb: nb.name)
def test_every_hidden_test_of_a_notebook_is_hidden(nb):
    """Does hiding leave no marker and no line of hidden code in any grade cell of the source
    notebook, and a line with the number of hidden checks in each cell that had some?"""
    import nbformat

    path = COURSE_ROOT / "solutions" / nb.assignment / f"{nb.name}.ipynb"
    hidden = hidden_test_lines(path)
    assert hidden, "the notebook has hidden tests"
    hide = HideHiddenTests()
    for cell in nbformat.read(path, as_version=4).cells:
        if not cell.metadata.get("nbgrader", {}).get("grade"):
            continue
        shown = hide.hide(cell.source)
        assert "HIDDEN TESTS" not in shown
        assert not [line for line in hidden if line in shown]
        assert ("hidden check" in shown) == ("BEGIN HIDDEN TESTS" in cell.source)


def test_the_count_and_the_tracebacks():
    """Is the number of hidden checks the number of statements, and does an error in a test
    cell keep only its message, not the frames that quote the cell's source?"""
    source = ("check(a)\n### BEGIN HIDDEN TESTS\ncheck(a, seed=1)\nfor s in (2, 3):\n"
              "    check(a, seed=s)\n### END HIDDEN TESTS\n")
    cell = new_code_cell(source, metadata={"nbgrader": {"grade": True, "grade_id": "t"}})
    cell.outputs = [new_output("error", ename="CheckFailure", evalue="wrong shape",
                               traceback=["----> 3 check(a, seed=1)", "CheckFailure: wrong shape"])]
    cell, _ = HideHiddenTests().preprocess_cell(cell, {}, 0)
    assert cell.source == "check(a)\n# ... and 2 hidden checks, run by the grader (not shown)"
    assert cell.outputs[0].traceback == ["CheckFailure: wrong shape"]


def test_the_summary_lists_points_numbers_and_what_was_lost():
    """Does the summary at the top give the points of every test cell, the numbers printed
    beside their bars, and for a cell that lost points its first line, expected/got and hint,
    linked to the cell, as literal text?"""
    from nbformat.v4 import new_notebook

    from autograder.grading.feedback import FeedbackSummary

    passed = new_code_cell("checks.check_trained_ae_probe(...)", metadata={"nbgrader": {
        "grade": True, "grade_id": "test_probe", "points": 2, "score": 2.0}})
    passed.outputs = [new_output("stream", name="stdout",
                                 text="linear probe accuracy: 0.886, passes: required >= 0.750\n")]
    failed = new_code_cell("checks.check_encoder(Encoder)", metadata={"nbgrader": {
        "grade": True, "grade_id": "test_encoder", "points": 2, "score": 0.0}})
    failed.outputs = [new_output("error", ename="CheckFailure", traceback=[], evalue=(
        "Encoder on x <b>: wrong shape\n  expected shape (1, 2)\n  got      shape (1, 10)\n"
        "  hint: n_components is not `honoured`"))]
    nb, _ = FeedbackSummary().preprocess(new_notebook(cells=[passed, failed]), {})
    summary = nb.cells[0].source
    assert summary.startswith("## Summary: 2 / 4 points")
    assert "| [test_probe](#test_probe) | 2 / 2 |" in summary
    assert "- `linear probe accuracy: 0.886, passes: required >= 0.750`" in summary
    assert ("- [test_encoder](#test_encoder) (0 / 2): `CheckFailure: Encoder on x <b>: wrong shape`"
            in summary)
    assert "  - `expected shape (1, 2); got shape (1, 10)`" in summary
    assert "  - `hint: n_components is not 'honoured'`" in summary
