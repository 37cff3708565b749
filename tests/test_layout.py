"""Does a check's message, laid out for a notebook, keep every line whole under `nbgrader
validate` (nbgrader's own Validator cuts what is too long) and keep its text?"""
from __future__ import annotations

import pytest
from nbgrader.validator import Validator

from autograder.checks import core
from autograder.checks.core import CheckFailure, failure, student_facing
from autograder.checks.layout import LINE_WIDTH, VALIDATE_INDENT, VALIDATE_WIDTH, wrap_message

HINT = ("the saved weights score like an untrained network: save after training, not before "
        "the training loop (untrained networks score 0.405 to 0.562 here); if you saved after "
        "training: train longer or with a larger learning rate, and save the weights to "
        "/home/student/" + "very_long_folder_name_" * 5 + "/ae_encoder.pth")
MESSAGE = str(failure("linear probe on the trained encoder's test codes (models in eval() mode, "
                      "the embedded data (4,000 training images)): accuracy too low",
                      ">= 0.750 (reference about 0.888)", "0.429", HINT))


def _shown(message: str, ename: str = "CheckFailure") -> list[str]:
    """The lines `nbgrader validate` prints for an error whose last traceback line is
    'ename: message'."""
    return Validator()._indent(f"{ename}: {message}").split("\n")


def test_layout_follows_nbgrader_validate():
    """Are the widths those of nbgrader's Validator, which cuts the long lines of the plain
    message?"""
    assert (VALIDATE_WIDTH, VALIDATE_INDENT) == (Validator().width, Validator().indent)
    assert LINE_WIDTH == 83
    assert any(line.endswith("...") for line in _shown(MESSAGE))


@pytest.mark.parametrize("ename", ["CheckFailure", "NotImplementedYet"])
def test_wrapped_message_is_shown_whole(ename):
    """Does nbgrader validate show every line of the wrapped message whole, with the words (a
    long path broken inside) and their order kept, the hint on lines of its own?"""
    wrapped = wrap_message(MESSAGE, ename)
    shown = _shown(wrapped, ename)
    assert not any(line.endswith("...") for line in shown)
    assert max(len(line) for line in shown) <= VALIDATE_WIDTH - 3
    assert "".join(wrapped.split()) == "".join(MESSAGE.split())
    words = MESSAGE.split()
    assert wrapped.split()[:len(words) - 1] == words[:-1]  # only the path is broken
    lines = wrapped.split("\n")
    hint = next(i for i, line in enumerate(lines) if line.startswith("  hint: "))
    assert lines[1].startswith("    ") and lines[1][4] != " "  # the first line continued
    assert lines[hint - 2:hint] == ["  expected >= 0.750 (reference about 0.888)",
                                    "  got      0.429"]
    assert all(line.startswith(" " * len("  hint: ")) and line[8] != " "
               for line in lines[hint + 1:])  # the hint continued under its text


def test_wrapping_keeps_short_lines_and_is_stable():
    """Is a message whose lines fit left as it is, and does wrapping twice change nothing?"""
    short = "loss_kl: wrong value\n  expected 0.306853\n  got      0.613706\n  hint: factor 1/2?"
    assert wrap_message(short) == short
    assert wrap_message(wrap_message(MESSAGE)) == wrap_message(MESSAGE)


def test_student_facing_wraps_only_for_a_notebook(monkeypatch):
    """Does a failed check reach a notebook's kernel wrapped, and the grader's processes and
    the tests with one line per part?"""
    @student_facing
    def check_something():
        raise failure("what was tried", "a", "b", HINT)

    with pytest.raises(CheckFailure) as plain:
        check_something()
    assert str(plain.value) == str(failure("what was tried", "a", "b", HINT))
    monkeypatch.setattr(core, "_shown_by_ipython", lambda: True)
    with pytest.raises(CheckFailure) as shown:
        check_something()
    assert str(shown.value) == wrap_message(str(plain.value)) != str(plain.value)
