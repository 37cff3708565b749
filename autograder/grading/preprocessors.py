"""Two small steps of the autograde pipeline, around nbgrader's ``SaveAutoGrades``.

nbgrader scores a grade cell 0 when it has *any* stderr output (``utils.determine_grade``
treats a stderr stream like an error), so a PyTorch warning or a tqdm progress bar in a
passing test cell would cost all its points. ``HarmlessStderr`` (before SaveAutoGrades)
turns those stderr streams into stdout streams: they stay visible in the feedback, and only
a real ``error`` output fails the cell.

``FlagGradingFailures`` (after SaveAutoGrades) marks the grade cells whose grading failed
(see ``execute.GradingExecute``) as needing manual grading, so that the formgrader shows them
to the instructor instead of an ordinary 0.
"""
from __future__ import annotations

from traitlets import Bool

from nbgrader import utils
from nbgrader.api import Gradebook, MissingEntry
from nbgrader.preprocessors import NbGraderPreprocessor


class HarmlessStderr(NbGraderPreprocessor):
    """Move stderr stream outputs of grade cells to stdout, so that warnings cost no points."""

    def preprocess_cell(self, cell, resources, cell_index):
        if cell.cell_type == "code" and utils.is_grade(cell):
            for output in cell.outputs:
                if output.output_type == "stream" and output.name == "stderr":
                    output.name = "stdout"
        return cell, resources


class FlagGradingFailures(NbGraderPreprocessor):
    """Mark grade cells whose grading failed as needing manual grading in the gradebook."""

    enabled = Bool(True, help="Flag grade cells whose grading failed for manual review.").tag(config=True)

    def preprocess(self, nb, resources):
        failures = resources.get("autograder", {}).get("failures", [])
        grade_ids = {cell.metadata.nbgrader["grade_id"] for cell in nb.cells if utils.is_grade(cell)}
        failed = sorted({f["grade_id"] for f in failures if f.get("grade_id") in grade_ids})
        if not failed:
            return nb, resources
        ids = resources["nbgrader"]
        with Gradebook(ids["db_url"]) as gb:
            for grade_id in failed:
                try:
                    grade = gb.find_grade(grade_id, ids["notebook"], ids["assignment"], ids["student"])
                except MissingEntry:
                    continue
                grade.needs_manual_grade = True
            gb.db.commit()
        return nb, resources
