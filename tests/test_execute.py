"""Does the execution step leave every prompt number as nbformat allows it, whatever the
kernel reported?"""
from __future__ import annotations

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook, new_output

from autograder.grading.execute import plain_counts


@pytest.mark.parametrize("forged", ["<b>7</b>", "3", 1.5, True, -1, [1]])
def test_a_forged_prompt_number_becomes_none(forged):
    """Does a prompt number that is not an int >= 0 (the kernel's code can make it report a
    string of markup) become None, in the cell and its result, so that the notebook stays
    valid and is not dropped?"""
    cell = new_code_cell("1 + 1", execution_count=1)
    cell.outputs = [new_output("execute_result", data={"text/plain": "2"}, execution_count=1)]
    cell.execution_count = forged
    cell.outputs[0].execution_count = forged
    plain_counts(cell)
    assert cell.execution_count is None and cell.outputs[0].execution_count is None
    nbformat.validate(new_notebook(cells=[cell]))


def test_plain_prompt_numbers_are_kept():
    """Are real prompt numbers (and a cell never run) left as they are?"""
    cell = new_code_cell("1 + 1", execution_count=4)
    cell.outputs = [new_output("execute_result", data={"text/plain": "2"}, execution_count=4)]
    plain_counts(cell)
    assert cell.execution_count == 4 and cell.outputs[0].execution_count == 4
    idle = new_code_cell("x")
    plain_counts(idle)
    assert idle.execution_count is None
