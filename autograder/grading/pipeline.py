"""Wire the sandbox and the robust grading pipeline into nbgrader.

Call ``configure(c)`` at the end of ``nbgrader_config.py``::

    from autograder.grading.pipeline import configure
    configure(c)

It sets, for every nbgrader command that runs notebooks (``autograde``, ``validate``):

- ``Execute.kernel_manager_class``: kernels start in the bubblewrap sandbox
  (``autograder.sandbox``; settings under ``c.Sandbox``);

and for ``nbgrader autograde``:

- ``Execute`` -> ``GradingExecute``: a kernel that dies or hangs fails only the cells it
  could not run ("grading failed: <reason>") instead of the whole submission;
- ``ReplayChecks`` after it: in notebooks whose source opts in (metadata
  ``autograder.grading.replay``), test cells are scored by a re-run on the submitted definitions in a
  fresh sandboxed process, which the notebook's kernel state cannot reach
  (``autograder.grading.replay``), and every metric is decided by a judge process in which
  no student code has run (``autograder.grading.judged``);
- ``HarmlessStderr`` before ``SaveAutoGrades``: warnings and progress bars on stderr no
  longer zero a passing test cell;
- ``FlagGradingFailures`` after ``SaveAutoGrades``: failed grade cells need manual grading;
- ``RecordingExporter``: every notebook's outcome goes to ``grading_report.json``, and
  interrupted gradings are graded again on the next run;
- ``RestoreCellMetadata`` before ``OverwriteCells``: tampered nbgrader cell metadata is reset
  to the source's instead of failing the whole notebook;
- ``OverwriteCells.add_missing_cells``: a deleted test cell is put back and run;
- ``SanitizeOutputs`` last: what the notebook displays is cleaned of anything that could run in
  the browser of whoever opens it (formgrader, feedback) (``autograder.grading.sanitize``);
- ``RecordingExporter`` also stops, with the command that fixes it, when the assignment was
  never released (``autograder.grading.preflight``);

and for ``nbgrader generate_feedback`` (and the formgrader's feedback button):

- ``SanitizeOutputs`` again, before the HTML is written;
- ``HideHiddenTests``: the hidden tests' code never reaches a feedback page (one line says how
  many hidden checks ran);
- ``FeedbackSummary``: a summary at the top (points per test cell, the graded numbers against
  their bars, and what lost points, with the hint);
- ``FeedbackExporter``: feedback folders hold only the HTML, not the student's weight files.

Values set in ``nbgrader_config.py`` after the call, or on the command line, win.
"""
from __future__ import annotations

from nbgrader.converters import Autograde, GenerateFeedback
from nbgrader.preprocessors import Execute, OverwriteCells, SaveAutoGrades

from ..sandbox import SandboxedKernelManager
from .execute import GradingExecute
from .feedback import FeedbackExporter, FeedbackSummary, HideHiddenTests
from .preprocessors import FlagGradingFailures, HarmlessStderr, ReplayChecks, RestoreCellMetadata
from .report import RecordingExporter
from .sanitize import SanitizeOutputs


def sanitize_preprocessors() -> list[type]:
    """nbgrader's sanitizing steps with RestoreCellMetadata before OverwriteCells."""
    pipeline = []
    for pp in Autograde.class_traits()["sanitize_preprocessors"].default():
        pipeline += [RestoreCellMetadata, pp] if pp is OverwriteCells else [pp]
    return pipeline


def autograde_preprocessors() -> list[type]:
    """nbgrader's autograde pipeline with the grading steps of this module swapped in."""
    pipeline = []
    for pp in Autograde.class_traits()["autograde_preprocessors"].default():
        if pp is Execute:
            pipeline += [GradingExecute, ReplayChecks]
        elif pp is SaveAutoGrades:
            pipeline += [HarmlessStderr, SaveAutoGrades, FlagGradingFailures]
        else:
            pipeline.append(pp)
    return pipeline + [SanitizeOutputs]


def feedback_preprocessors() -> list[type]:
    """nbgrader's feedback pipeline with HideHiddenTests and SanitizeOutputs before the HTML is
    written."""
    return [*GenerateFeedback.class_traits()["preprocessors"].default(), HideHiddenTests,
            FeedbackSummary, SanitizeOutputs]


def configure(c) -> None:
    """Configure nbgrader (the ``c`` of ``nbgrader_config.py``) to grade in the sandbox."""
    c.Execute.kernel_manager_class = SandboxedKernelManager
    c.Autograde.sanitize_preprocessors = sanitize_preprocessors()
    c.Autograde.autograde_preprocessors = autograde_preprocessors()
    c.Autograde.exporter_class = RecordingExporter
    c.GenerateFeedback.preprocessors = feedback_preprocessors()
    c.OverwriteCells.add_missing_cells = True
    c.GenerateFeedback.exporter_class = FeedbackExporter
