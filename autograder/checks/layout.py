"""How a check's message is laid out for a notebook, so that ``nbgrader validate`` shows every
line of it whole.

``nbgrader validate`` prints a failed cell's error output (the traceback lines, the last of
which is ``CheckFailure: <message>``) indented by ``Validator.indent`` (four spaces) and cuts
every line longer than ``Validator.width - 3`` characters (87), ending it with "...": the end of
a long hint, the part that says what to change, was lost. :func:`wrap_message` breaks each line
of a message that would be cut at spaces (a path or another long word is broken inside), with
continuation lines indented under the text they continue:

    CheckFailure: linear probe on the trained encoder's test codes (models in eval()
        mode, the embedded data (4,000 training images)): accuracy too low
      expected >= 0.750 (reference about 0.888)
      got      0.429
      hint: the saved weights score like an untrained network: save after training, not
            before the training loop (...)

``core.student_facing`` lays out a failure this way where a notebook shows it (an IPython
shell: a kernel); the message's text itself, which the grader's processes, the reports and
the tests read, keeps one line per part.
"""
from __future__ import annotations

import re
import textwrap

#: ``nbgrader.validator.Validator``'s defaults, which the course's nbgrader_config.py keeps.
VALIDATE_WIDTH = 90
VALIDATE_INDENT = "    "
#: The longest line of an error that ``nbgrader validate`` shows whole, after its indent.
LINE_WIDTH = VALIDATE_WIDTH - 3 - len(VALIDATE_INDENT)
#: The indent of a continuation line that has no label to align with.
CONTINUATION = 4

# A labelled line of a four-part message: its continuation lines start under the text.
_LABEL = re.compile(r" *(?:hint:|note:|expected|got) +")


def _wrap_line(line: str, first_width: int) -> list[str]:
    lead = len(line) - len(line.lstrip(" "))
    label = _LABEL.match(line)
    hang = max(label.end() if label else lead + CONTINUATION, CONTINUATION)
    if hang > LINE_WIDTH // 2:  # a deeply indented line: keep room for its words
        hang = CONTINUATION
    shift = LINE_WIDTH - first_width  # the room the exception's name takes on the first line
    wrapper = textwrap.TextWrapper(width=LINE_WIDTH, initial_indent=" " * shift,
                                   subsequent_indent=" " * hang, break_long_words=True,
                                   break_on_hyphens=False)
    lines = wrapper.wrap(line)
    return [lines[0][shift:], *lines[1:]] if lines else [line]


def wrap_message(message: str, ename: str = "CheckFailure") -> str:
    """``message`` with each line that ``nbgrader validate`` would cut broken into lines that it
    shows whole; the first line makes room for ``"{ename}: "``, which comes before it. Lines that
    fit are left as they are, so wrapping a wrapped message changes nothing."""
    out = []
    for i, line in enumerate(message.split("\n")):
        width = LINE_WIDTH - (len(ename) + 2 if i == 0 else 0)
        if len(line.rstrip()) <= width:
            out.append(line)
        else:
            out.extend(_wrap_line(line.rstrip(), width))
    return "\n".join(out)

