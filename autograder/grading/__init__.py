"""nbgrader plumbing that makes autograding robust against hostile or crashing submissions.

- ``execute``: runs the notebook; a kernel that dies or stops responding fails only the
  cells it could not run ("grading failed: <reason>"), never the whole submission;
- ``preprocessors``: harmless stderr (warnings, progress bars) does not cost points, and
  grade cells whose grading failed are flagged for review in the gradebook;
- ``report``: the machine-readable record of every graded notebook
  (``grading_report.json`` in the course root, ``python -m autograder failures``);
- ``launch``: the first program inside the sandbox (limits, unprivileged uid).

``autograder.grading.pipeline.configure(c)`` wires all of this, and the sandbox of
``autograder.sandbox``, into nbgrader.
"""
