"""The grading report: which notebooks were graded, and which failed and why.

``grading_report.json`` in the course root holds one entry per submitted notebook::

    {"notebooks": {"<assignment>/<student>/<notebook>": {
        "assignment": ..., "student": ..., "notebook": ...,
        "status": "ok" | "failed" | "running",
        "problems": [{"cell": 7, "grade_id": "test_kl", "reason": "the kernel died in cell [7] ..."}],
        "pid": 1234, "secret": "8301...52"}}}

``status`` is "running" from the moment nbgrader starts on the notebook until it has been
graded; an entry left "running" by a grader that no longer exists means that grading was
interrupted. ``secret`` (decimal digits) is the secret of the random draws of the notebook's
graded evaluation (``autograder.checks.draws``): with it an instructor computes the graded
numbers again; no sandbox sees this file. ``RecordingExporter`` (nbgrader's
``Autograde.exporter_class``) writes the entries, and on start removes the autograded folders
of interrupted gradings so that ``nbgrader autograde`` grades them again instead of skipping
them as done. Before that, it stops with a clear message when the assignment was never
released (``preflight``).

``python -m autograder grade`` adds one entry per graded submission under ``"submissions"``
(:func:`record_submission`; ``autograder.grading.batch`` says what they hold).

List the failures with ``python -m autograder failures [--course DIR]``.
"""
from __future__ import annotations

import argparse
import fcntl
import fnmatch
import json
import os
import shutil
import sys
from contextlib import contextmanager
from pathlib import Path

from nbconvert.exporters import NotebookExporter
from nbformat import ValidationError
from nbformat.reader import NotJSONError
from traitlets import Bool

from .preflight import require_released, require_sandbox_imports

REPORT_FILE = "grading_report.json"
LOCK_FILE = ".grading_report.lock"
INTERRUPTED = "grading did not finish (the grader was interrupted); run `nbgrader autograde` again"


def report_path(course: str | os.PathLike) -> Path:
    return Path(course) / REPORT_FILE


@contextmanager
def _locked(course):
    with open(Path(course) / LOCK_FILE, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def load(course) -> dict:
    """The report as a dict (empty when no grading has been recorded yet)."""
    try:
        data = json.loads(report_path(course).read_text())
    except FileNotFoundError:
        data = {}
    data.setdefault("notebooks", {})
    return data


def _update(course, key: str, entry: dict, section: str = "notebooks") -> None:
    with _locked(course):
        data = load(course)
        entries = data.setdefault(section, {})
        entries[key] = entry
        data[section] = dict(sorted(entries.items()))
        tmp = report_path(course).with_suffix(".json.tmp")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
        os.replace(tmp, report_path(course))


def record(course, assignment: str, student: str, notebook: str, status: str,
           problems: list[dict] | None = None, secret: str | None = None) -> None:
    """Record the grading status of one notebook (and the secret of its draws, if any)."""
    key = f"{assignment}/{student}/{notebook}"
    entry = {"assignment": assignment, "student": student, "notebook": notebook,
             "status": status, "problems": list(problems or []), "pid": os.getpid()}
    if secret is not None:
        entry["secret"] = str(secret)
    _update(course, key, entry)


def record_submission(course, key: str, entry: dict) -> None:
    """Record the batch grading of one submission (key ``<assignment>/<student>``)."""
    _update(course, key, entry, section="submissions")


def submissions(course) -> dict[str, dict]:
    """The batch gradings recorded so far, keyed ``<assignment>/<student>``."""
    return load(course).get("submissions", {})


def _alive(pid) -> bool:
    try:
        os.kill(int(pid), 0)
    except (OSError, ValueError, TypeError):
        return False
    return True


def interrupted(entry: dict) -> bool:
    """Was this notebook's grading started by a grader that has gone without finishing?"""
    if entry.get("status") != "running" or entry.get("pid") == os.getpid():
        return False
    return not _alive(entry.get("pid"))


def failures(course, assignment: str = "*") -> list[dict]:
    """Entries whose grading failed or was interrupted, each with a list of reasons."""
    found = []
    for entry in load(course)["notebooks"].values():
        if not fnmatch.fnmatchcase(entry["assignment"], assignment):
            continue
        if entry["status"] == "failed":
            found.append(entry)
        elif entry["status"] == "running" and interrupted(entry):
            found.append({**entry, "problems": [{"cell": None, "grade_id": None, "reason": INTERRUPTED}]})
    return found


def explain(error: BaseException) -> str:
    """A one-line reason for an exception that stopped nbgrader on a notebook."""
    if isinstance(error, NotJSONError):
        return "the submitted notebook is not valid JSON, so it cannot be opened"
    if isinstance(error, ValidationError):
        return f"the submitted notebook is not a valid notebook: {error.message}"[:500]
    text = str(error).strip() or type(error).__name__
    if type(error).__name__ != "SandboxUnavailable":
        text = f"{type(error).__name__}: {text}"
    return text[:2000]


class RecordingExporter(NotebookExporter):
    """nbgrader's notebook exporter, recording each graded notebook in the grading report.

    nbgrader converts every notebook twice: first a sanitizing pass (submitted -> autograded;
    here the entry becomes "running"), then the autograde pass, run with
    ``NBGRADER_EXECUTION=autograde`` (here it becomes "ok" or "failed"). An exception in
    either pass is recorded as "failed" with its reason, and re-raised for nbgrader.
    """

    check_sandbox = Bool(
        True, help="Before grading, check that a sandboxed Python imports the course packages "
        "(off where no kernel runs, as in the writer of python -m autograder grade).").tag(config=True)

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        if self._coursedir is not None:
            require_released(self._coursedir, self.log)
            if self.check_sandbox:
                require_sandbox_imports(self.config, self.log)
        self._regrade_interrupted()

    @property
    def _coursedir(self):
        return getattr(self.parent, "coursedir", None)

    def _course(self) -> str:
        return self._coursedir.root if self._coursedir is not None else os.getcwd()

    def _regrade_interrupted(self) -> None:
        coursedir = self._coursedir
        if coursedir is None or not report_path(coursedir.root).exists():
            return
        for entry in load(coursedir.root)["notebooks"].values():
            if not (interrupted(entry) and fnmatch.fnmatchcase(entry["assignment"], coursedir.assignment_id)):
                continue
            dest = coursedir.format_path(coursedir.autograded_directory, entry["student"], entry["assignment"])
            if os.path.isdir(dest):
                self.log.warning("Grading of %s/%s was interrupted; removing %s so that it is graded again",
                                 entry["student"], entry["assignment"], dest)
                shutil.rmtree(dest)

    def from_filename(self, filename, resources=None, **kw):
        ids = (resources or {}).get("nbgrader", {})
        if not {"assignment", "student", "notebook"} <= set(ids):
            return super().from_filename(filename, resources=resources, **kw)
        where = (self._course(), ids["assignment"], ids["student"], ids["notebook"])
        autograding = os.environ.get("NBGRADER_EXECUTION") == "autograde"
        if not autograding:
            record(*where, "running")
        try:
            output, resources = super().from_filename(filename, resources=resources, **kw)
        except Exception as error:
            record(*where, "failed", [{"cell": None, "grade_id": None, "reason": explain(error)}])
            raise
        if autograding:
            problems = resources.get("autograder", {}).get("failures", [])
            record(*where, "failed" if problems else "ok", problems,
                   secret=resources.get("autograder", {}).get("secret"))
        return output, resources


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m autograder failures",
        description="List the notebooks whose autograding failed or was interrupted.")
    parser.add_argument("--course", default=".", help="the course directory (default: .)")
    parser.add_argument("--assignment", default="*", help="an assignment name or glob (default: all)")
    parser.add_argument("--json", action="store_true", help="print the entries as JSON")
    args = parser.parse_args(argv)
    found = failures(args.course, args.assignment)
    if args.json:
        print(json.dumps(found, indent=1, sort_keys=True))
    else:
        for entry in found:
            for problem in entry["problems"]:
                where = f"{entry['assignment']}/{entry['student']}/{entry['notebook']}"
                cell = (f" [{problem['grade_id'] or 'cell ' + str(problem['cell'])}]"
                        if problem["cell"] is not None else "")
                print(f"{where}{cell}: grading failed: {problem['reason']}")
        if not report_path(args.course).exists():
            print(f"no grading has happened yet in {os.path.abspath(args.course)} (there is no "
                  f"{REPORT_FILE}): run `nbgrader autograde ASSIGNMENT` there first, or name the "
                  f"course directory with --course")
        elif not found:
            graded = sum(fnmatch.fnmatchcase(e["assignment"], args.assignment)
                         for e in load(args.course)["notebooks"].values())
            print(f"no failed gradings: {graded} graded notebook(s) recorded in {report_path(args.course)}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
