"""Feedback that holds the feedback and nothing else.

``HideHiddenTests`` (in ``GenerateFeedback.preprocessors``, before the page is written): an
autograded notebook holds the source of its hidden tests (nbgrader puts the test cells back
from the source notebook, hidden tests included), and nbgrader's feedback shows it, markers
and all: every student would read the grader's seeds and shapes, and next year's students
too. Each test cell keeps its visible source and its outputs, and says how many hidden checks
ran in place of their code; tracebacks of test cells keep only their last line (the message),
since IPython's frames quote the cell's source.

``FeedbackSummary`` (after nbgrader's ``GetGrades``): a summary at the top of the page, the
points of every test cell, each graded number against its bar as the cells print it, and for
every cell that lost points the first line of its message and its hint, linked to the cell.

Feedback folders:

``nbgrader generate_feedback`` copies every file of a student's autograded folder next to the
HTML, so each feedback folder would carry the student's weight files (``*.pth``, about 11 MB per
student here) back to them. ``FeedbackExporter`` (``GenerateFeedback.exporter_class``, set by
``autograder.grading.pipeline.configure``) is nbgrader's HTML feedback exporter that first removes
from the feedback folder every file that does not match ``FeedbackExporter.keep``. It serves
``nbgrader generate_feedback`` and the formgrader's "generate feedback" button alike.
"""
from __future__ import annotations

import ast
import fnmatch
import os

from nbconvert.exporters import HTMLExporter
from nbgrader.preprocessors import NbGraderPreprocessor
from traitlets import List, Unicode


def _checks_in(code: str) -> int:
    """How many checks a block of hidden tests holds: its statements (its code lines when it
    does not parse alone)."""
    try:
        return len(ast.parse(code).body)
    except SyntaxError:
        return sum(1 for line in code.splitlines() if line.strip() and not line.strip().startswith("#"))


def _code(text: str) -> str:
    """``text`` as a markdown code span (shown literally, whatever it holds)."""
    return "`" + " ".join(text.replace("`", "'").split()) + "`"


def _message(cell) -> str:
    """The text of the first error of a cell's outputs (``ename: evalue``), or ``""``."""
    for output in cell.get("outputs", []):
        if output.get("output_type") == "error":
            return f"{output.get('ename', 'Error')}: {output.get('evalue', '')}"
    return ""


def _first_and_hint(message: str) -> tuple[str, str, str]:
    """The first line of a check's message, its expected and got lines, and its hint (the
    lines from ``hint:`` on)."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    first = lines[0] if lines else ""
    hint = next((i for i, line in enumerate(lines) if line.startswith("hint:")), len(lines))
    numbers = "; ".join(line for line in lines[1:hint] if line.startswith(("expected", "got")))
    return first, numbers, " ".join(lines[hint:])


def _graded_numbers(cell) -> list[str]:
    """The lines a passing trained-model cell printed with its number beside its bar."""
    text = "".join(o.get("text", "") for o in cell.get("outputs", [])
                   if o.get("output_type") == "stream")
    return [line.strip() for line in text.splitlines() if "passes: required" in line]


class FeedbackSummary(NbGraderPreprocessor):
    """Put a summary of the grades and of what lost points at the top of a feedback page."""

    def preprocess(self, nb, resources):
        from nbformat.v4 import new_markdown_cell

        rows, numbers, lost = [], [], []
        total = maximum = 0.0
        for cell in nb.cells:
            meta = cell.metadata.get("nbgrader", {})
            if cell.cell_type != "code" or not meta.get("grade") or "points" not in meta:
                continue
            grade_id = meta.get("grade_id", "")
            score, points = float(meta.get("score") or 0), float(meta["points"])
            total, maximum = total + score, maximum + points
            rows.append(f"| [{grade_id}](#{grade_id}) | {score:g} / {points:g} |")
            numbers += _graded_numbers(cell)
            if score < points:
                first, expected, hint = _first_and_hint(_message(cell))
                lost.append(f"- [{grade_id}](#{grade_id}) ({score:g} / {points:g}): "
                            + (_code(first) if first else "no message")
                            + "".join(f"\n  - {_code(part)}" for part in (expected, hint) if part))
        if not rows:
            return nb, resources
        parts = [f"## Summary: {total:g} / {maximum:g} points", "",
                 "| test cell | points |", "| --- | --- |", *rows]
        if numbers:
            parts += ["", "**Your saved models' graded numbers**", "",
                      *(f"- {_code(line)}" for line in numbers)]
        parts += ["", "**Where points were lost, and why**" if lost else
                  "**No points were lost.**", "", *lost]
        summary = new_markdown_cell("\n".join(parts).rstrip() + "\n",
                                    metadata={"autograder": {"summary": True}})
        nb.cells.insert(0, summary)
        return nb, resources


class HideHiddenTests(NbGraderPreprocessor):
    """Replace the hidden tests of every grade cell by one line saying how many ran."""

    begin = Unicode("BEGIN HIDDEN TESTS", help="The marker that opens hidden tests (nbgrader's "
                    "ClearHiddenTests.begin_test_delimeter).").tag(config=True)
    end = Unicode("END HIDDEN TESTS", help="The marker that closes them.").tag(config=True)

    def preprocess_cell(self, cell, resources, index):
        if cell.cell_type != "code" or not cell.metadata.get("nbgrader", {}).get("grade"):
            return cell, resources
        cell.source = self.hide(cell.source)
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                output.traceback = [f"{output.get('ename', 'Error')}: {output.get('evalue', '')}"]
        return cell, resources

    def hide(self, source: str) -> str:
        """``source`` with each hidden block (markers included) replaced by a comment line."""
        out, hidden, inside, indent = [], [], False, ""
        for line in source.splitlines():
            if self.begin in line:
                inside, hidden, indent = True, [], line[: len(line) - len(line.lstrip())]
            elif self.end in line and inside:
                n = _checks_in("\n".join(hidden))
                out.append(f"{indent}# ... and {n} hidden check{'s' if n != 1 else ''}, run by "
                           "the grader (not shown)")
                inside = False
            elif inside:
                hidden.append(line[len(indent):] if line.startswith(indent) else line.lstrip())
            else:
                out.append(line)
        if inside:  # an unclosed block: hide the rest as well
            out.append(f"{indent}# ... hidden checks, run by the grader (not shown)")
        return "\n".join(out)


class FeedbackExporter(HTMLExporter):
    """nbgrader's feedback exporter (HTML) that leaves only the feedback in the feedback folder."""

    keep = List(["*.html"], help="File name patterns kept in a student's feedback folder; "
                "nbgrader copies all other files of the autograded folder there, and they are "
                "removed.").tag(config=True)

    def from_filename(self, filename, resources=None, **kw):
        ids = (resources or {}).get("nbgrader", {})
        coursedir = getattr(self.parent, "coursedir", None)
        if coursedir is not None and {"assignment", "student"} <= set(ids):
            self.prune(coursedir.format_path(coursedir.feedback_directory, ids["student"], ids["assignment"]))
        return super().from_filename(filename, resources=resources, **kw)

    def prune(self, folder: str) -> None:
        """Remove the files in `folder` that match no pattern of `keep`, and emptied folders."""
        for root, _dirs, files in os.walk(folder, topdown=False):
            for name in files:
                if not any(fnmatch.fnmatch(name, pattern) for pattern in self.keep):
                    os.remove(os.path.join(root, name))
                    self.log.debug("Feedback: removed %s", os.path.join(root, name))
            if root != folder and not os.listdir(root):
                os.rmdir(root)
