"""Feedback folders that hold the feedback and nothing else.

``nbgrader generate_feedback`` copies every file of a student's autograded folder next to the
HTML, so each feedback folder would carry the student's weight files (``*.pth``, about 11 MB per
student here) back to them. ``FeedbackExporter`` (``GenerateFeedback.exporter_class``, set by
``autograder.grading.pipeline.configure``) is nbgrader's HTML feedback exporter that first removes
from the feedback folder every file that does not match ``FeedbackExporter.keep``. It serves
``nbgrader generate_feedback`` and the formgrader's "generate feedback" button alike.
"""
from __future__ import annotations

import fnmatch
import os

from nbconvert.exporters import HTMLExporter
from traitlets import List


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
