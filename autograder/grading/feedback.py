"""Feedback that holds the feedback and nothing else.

``HideHiddenTests`` (in ``GenerateFeedback.preprocessors``, before the page is written): an
autograded notebook holds the source of its hidden tests (nbgrader puts the test cells back
from the source notebook, hidden tests included), and nbgrader's feedback shows it, markers
and all: every student would read the grader's seeds and shapes, and next year's students
too. Each test cell keeps its visible source and its outputs, and says how many hidden checks
ran in place of their code; tracebacks of test cells keep only their last line (the message),
since IPython's frames quote the cell's source.

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
