"""Does a failed check show the student their own call and the message, without the grader's
frames, in a real Jupyter kernel (IPython honours ``__tracebackhide__``) and in Python?"""
from __future__ import annotations

import re
import traceback

import pytest
from nbclient import NotebookClient
from nbformat.v4 import new_code_cell

from autograder import CheckFailure
from autograder.grading.course import notebook

STUDENT_CODE = """\
import torch.nn as nn
from autograder import ae as checks

class Encoder(nn.Module):
    def __init__(self, n_components):
        super().__init__()
        self.fc = nn.Linear(784, 10)  # ignores n_components

    def forward(self, x):
        return self.fc(x.flatten(1))
"""
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _traceback_of(call: str) -> str:
    nb = notebook(new_code_cell(STUDENT_CODE), new_code_cell(call))
    NotebookClient(nb, kernel_name="python3", allow_errors=True, timeout=300).execute()
    (error,) = [o for o in nb.cells[1].outputs if o.output_type == "error"]
    return ANSI.sub("", "\n".join(error.traceback))


@pytest.fixture(scope="module")
def tracebacks():
    return {
        "check": _traceback_of("checks.check_encoder(Encoder)  # my call"),
        # The same check without its student-facing wrapper: the grader's frames are there.
        "unwrapped": _traceback_of("checks.check_encoder.__wrapped__(Encoder)  # my call"),
    }


@pytest.mark.slow
def test_kernel_traceback_shows_the_call_and_message_only(tracebacks):
    """Does the kernel's traceback of a failed check hold the student's call and the message,
    and no frame of autograder/checks?"""
    text = tracebacks["check"]
    assert "checks.check_encoder(Encoder)  # my call" in text
    # The kernel lays the message out for nbgrader validate: a phrase may span two lines.
    assert "CheckFailure" in text and "use n_components in the last layer" in " ".join(text.split())
    assert "autograder/checks" not in text and "modules.py" not in text, text
    assert "File <check_encoder>:1" in text and "the message below says what to change" in text


@pytest.mark.slow
def test_the_frames_would_be_there_without_hiding(tracebacks):
    """Do the grader's frames appear when the check is called without its wrapper (so the test
    above could fail)?"""
    assert "autograder/checks" in tracebacks["unwrapped"], tracebacks["unwrapped"]


def test_python_traceback_is_cut_at_the_check():
    """Does a failed check raised in plain Python carry no frame of autograder/checks but the
    hidden wrapper's?"""
    from conftest import solution_namespace

    from autograder import ae as checks

    Decoder = solution_namespace("ae")["Decoder"]
    with pytest.raises(CheckFailure) as info:
        checks.check_encoder(Decoder)
    frames = traceback.extract_tb(info.value.__traceback__)
    assert [f.name for f in frames if "/autograder/checks/" in f.filename] == ["wrapper"], frames
