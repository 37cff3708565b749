"""``python -m autograder report ASSIGNMENT``: how a class did, on one page and in a CSV.

    python -m autograder report autoencoders [--course DIR] [--out PATH]

Writes one self-contained HTML page (plots embedded as PNG data, no script, no external
resource; default ``<course>/reports/<assignment>.html``) and a CSV beside it with the same
name (one row per student: the score of each notebook, the total, the cells flagged for
manual grading and the grading status). The page shows

- the score distribution of each notebook and of the total,
- the pass rate of every test cell,
- the most frequent failure messages of each test cell, grouped when they differ only by
  numbers (the first line of the error a cell raised in the autograded notebook, and its
  ``hint:`` line), with counts and a few students as examples,
- grading failures (``grading_report.json``) and the cells flagged for manual grading,
- the grading time of each submission, when the batch command recorded it (the
  ``"submissions"`` entries of ``grading_report.json``; plain ``nbgrader autograde`` records none).

It reads the gradebook at the course's ``db_url`` (SQLite or PostgreSQL, from the course's
``nbgrader_config.py``), the autograded notebooks and the grading report; it writes nothing else.
Everything that comes from a student (messages, names) is HTML-escaped, and the page forbids
scripts (a Content-Security-Policy), so that nothing a student wrote can run in the browser.
"""

from __future__ import annotations

import argparse
import base64
import csv
import html
import io
import json
import math
import re
import statistics
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from ..grading import report as grading_report

#: How many failure messages per cell, and example students per message, the page shows.
TOP_MESSAGES = 5
EXAMPLES = 3
#: Longest line of a failure message kept (a student's output can be arbitrarily long).
MAX_LINE = 300
#: Content-Security-Policy of the page: no script, no request; images only from data: URLs.
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"

STATUS_GRADED = "graded"
STATUS_MANUAL = "needs manual grading"
STATUS_FAILED = "grading failed"
STATUS_INTERRUPTED = "grading interrupted"
STATUS_NOT_GRADED = "not graded"


class ReportError(Exception):
    """The report cannot be made (the message says why and what to do)."""


# -- what the report reads --------------------------------------------------------------------


@dataclass
class CellGrade:
    notebook: str
    cell: str
    score: float
    max_score: float
    needs_manual_grade: bool
    code: bool  # a test cell (autograded code), not a written answer


@dataclass
class Student:
    student: str
    graded: bool = True
    grades: list[CellGrade] = field(default_factory=list)
    status: str = STATUS_GRADED
    timing: dict | None = None

    def notebook_score(self, notebook: str) -> float:
        return sum(g.score for g in self.grades if g.notebook == notebook)

    @property
    def total(self) -> float:
        return sum(g.score for g in self.grades)

    @property
    def flagged(self) -> list[CellGrade]:
        return [g for g in self.grades if g.needs_manual_grade]


@dataclass
class ClassData:
    assignment: str
    course: Path
    database: str
    notebooks: dict[str, float]  # notebook -> max score, in order
    cells: list[tuple[str, str, float]]  # (notebook, test cell, max score), in notebook order
    students: list[Student]
    messages: dict[tuple[str, str, str], str]  # (student, notebook, cell) -> failure summary
    unreadable: list[tuple[str, str, str]]  # (student, notebook, why)
    failures: list[dict]  # grading failures: student, notebook, cell, reason
    timings_recorded: bool

    @property
    def max_total(self) -> float:
        return sum(self.notebooks.values())

    @property
    def graded(self) -> list[Student]:
        return [s for s in self.students if s.graded]


def course_directory(course: Path):
    """nbgrader's CourseDirectory for `course`, configured by its ``nbgrader_config.py``."""
    from nbgrader.coursedir import CourseDirectory
    from traitlets.config import Config
    from traitlets.config.loader import PyFileConfigLoader

    config = Config()
    if (course / "nbgrader_config.py").exists():
        try:
            config = PyFileConfigLoader("nbgrader_config.py", path=str(course)).load_config()
        except Exception as error:  # the file's own error, whatever it is
            raise ReportError(
                f"{course / 'nbgrader_config.py'} cannot be loaded ({type(error).__name__}: {error}); "
                f"nbgrader itself would fail on it: fix it and run the command again"
            ) from None
    coursedir = CourseDirectory(config=config)
    if "root" not in config.get("CourseDirectory", {}):
        coursedir.root = str(course.resolve())
    return coursedir


def shown_url(db_url: str) -> str:
    """The database URL without its password."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(db_url).render_as_string(hide_password=True)
    except Exception:  # not a URL sqlalchemy understands: show its scheme only
        return db_url.split("://", 1)[0] + "://..."


def failure_summary(ename: str, evalue: str) -> str:
    """The lines of an error output that name the failure: its first line and its hint line."""
    lines = [ln.strip() for ln in str(evalue).strip().splitlines() if ln.strip()]
    first = f"{ename}: {lines[0]}" if lines else str(ename)
    parts = [first]
    hint = next((ln for ln in lines[1:] if ln.lower().startswith("hint:")), None)
    if hint:
        parts.append(hint)
    return "\n".join(p if len(p) <= MAX_LINE else p[: MAX_LINE - 3] + "..." for p in parts)


_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


def message_key(summary: str) -> str:
    """The summary with every number replaced by ``#``: messages that differ only by numbers
    share a key."""
    return _NUMBER.sub("#", summary)


def cell_errors(path: Path) -> tuple[list[str], dict[str, str]]:
    """The grade cells of an autograded notebook in order, and the failure summary of each
    grade cell whose output holds an error."""
    nb = json.loads(path.read_text(encoding="utf-8"))  # plain JSON: nbformat's validation is slow
    if not isinstance(nb, dict) or not isinstance(nb.get("cells"), list):
        raise ValueError("not a notebook in nbformat 4 (no list of cells)")
    order, errors = [], {}
    for cell in nb["cells"]:
        meta = (cell.get("metadata") or {}).get("nbgrader") or {}
        if not meta.get("grade") or "grade_id" not in meta:
            continue
        order.append(meta["grade_id"])
        if cell.get("cell_type") != "code":
            continue
        errs = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
        if errs:
            errors[meta["grade_id"]] = failure_summary(
                errs[0].get("ename", "Error"), errs[0].get("evalue", "")
            )
    return order, errors


def load(course: Path, assignment: str) -> ClassData:
    """Everything the report shows, read from the gradebook, the autograded notebooks and
    the grading report. Raises ReportError when there is nothing to report."""
    from nbgrader.api import (
        Assignment,
        Grade,
        Gradebook,
        GradeCell,
        MissingEntry,
        SubmittedAssignment,
        SubmittedNotebook,
    )

    course = Path(course)
    if not course.is_dir():
        raise ReportError(f"{course} is not a directory: name the course directory with --course")
    coursedir = course_directory(course)
    db_url = coursedir.db_url
    if db_url.startswith("sqlite:///"):
        db_file = Path(db_url[len("sqlite:///") :])
        if not db_file.exists():  # nbgrader would create an empty gradebook there
            raise ReportError(
                f"there is no gradebook at {db_file}: is {course.resolve()} the course directory? "
                f"Name it with --course, or release an assignment there first (nbgrader generate_assignment)"
            )

    with Gradebook(db_url) as gb:
        try:
            gb_assignment = gb.find_assignment(assignment)
        except MissingEntry:
            known = sorted(a.name for a in gb.assignments)
            raise ReportError(
                f"unknown assignment {assignment!r}: the gradebook ({shown_url(db_url)}) has "
                f"{'the assignments ' + ', '.join(known) if known else 'no assignment'}; "
                f"check the name, or release it first (nbgrader generate_assignment {assignment})"
            ) from None
        # the graded cells (test cells, written answers, tasks) of each notebook, by id
        cells_by_id = {
            c.id: (nb.name, c.name, float(c.max_score), isinstance(c, GradeCell) and c.cell_type == "code")
            for nb in gb_assignment.notebooks
            for c in [*nb.grade_cells, *nb.task_cells]
        }
        notebooks = {nb.name: 0.0 for nb in sorted(gb_assignment.notebooks, key=lambda n: n.name)}
        for nb, _, max_score, _ in cells_by_id.values():
            notebooks[nb] += max_score
        cell_max = {(nb, c): (m, code) for nb, c, m, code in cells_by_id.values()}
        # one query for every grade of the assignment (not one per student, notebook and cell)
        submissions = (
            gb.db.query(SubmittedAssignment.student_id)
            .join(Assignment, SubmittedAssignment.assignment_id == Assignment.id)
            .filter(Assignment.name == assignment)
        )
        students = {student_id: Student(student_id) for (student_id,) in submissions}
        grades = (
            gb.db.query(SubmittedAssignment.student_id, Grade.cell_id, Grade.score, Grade.needs_manual_grade)
            .join(SubmittedNotebook, Grade.notebook_id == SubmittedNotebook.id)
            .join(SubmittedAssignment, SubmittedNotebook.assignment_id == SubmittedAssignment.id)
            .join(Assignment, SubmittedAssignment.assignment_id == Assignment.id)
            .filter(Assignment.name == assignment)
        )
        for student_id, cell_id, score, needs_manual_grade in grades:
            if cell_id in cells_by_id and student_id in students:
                nb, cell, max_score, code = cells_by_id[cell_id]
                students[student_id].grades.append(
                    CellGrade(nb, cell, float(score or 0.0), max_score, bool(needs_manual_grade), code)
                )
        students = list(students.values())

    submitted_root = Path(coursedir.format_path(coursedir.submitted_directory, "*", assignment))
    submitted = sorted(
        p.parent.name for p in submitted_root.parent.parent.glob(f"*/{assignment}") if p.is_dir()
    )
    if not students:
        raise ReportError(
            f"no submission of {assignment!r} has been graded yet (the gradebook has none"
            f"{f'; {len(submitted)} are in {coursedir.submitted_directory}/' if submitted else ''}): "
            f"grade them first (python -m autograder grade {assignment}, or nbgrader autograde {assignment})"
        )
    graded_ids = {s.student for s in students}
    students += [Student(s, graded=False, status=STATUS_NOT_GRADED) for s in submitted if s not in graded_ids]
    students.sort(key=lambda s: s.student)

    # failure messages from the autograded notebooks, and the order of the cells
    messages, unreadable, order = {}, [], {}
    for student in students:
        if not student.graded:
            continue
        folder = Path(coursedir.format_path(coursedir.autograded_directory, student.student, assignment))
        for name in notebooks:
            path = folder / f"{name}.ipynb"
            if not path.exists():
                unreadable.append((student.student, name, f"{path} does not exist"))
                continue
            try:
                cells, errors = cell_errors(path)
            except Exception as error:  # a truncated or hand-edited file: say so, report the rest
                unreadable.append(
                    (
                        student.student,
                        name,
                        f"{path} cannot be read: {type(error).__name__}: {str(error).strip()[:MAX_LINE]}",
                    )
                )
                continue
            order.setdefault(name, cells)
            for cell, summary in errors.items():
                messages[(student.student, name, cell)] = summary
    rank = {(nb, c): i for nb, cells in order.items() for i, c in enumerate(cells)}
    cells = sorted(
        ((nb, c, m) for (nb, c), (m, code) in cell_max.items() if code),
        key=lambda x: (list(notebooks).index(x[0]), rank.get((x[0], x[1]), math.inf), x[1]),
    )
    for student in students:
        student.grades.sort(
            key=lambda g: (
                list(notebooks).index(g.notebook),
                rank.get((g.notebook, g.cell), math.inf),
                g.cell,
            )
        )

    # grading failures and timings from the grading report
    failures, data, found = [], {}, []
    try:
        data, found = grading_report.load(course), grading_report.failures(course, assignment)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:  # a damaged file
        unreadable.append(
            (
                "",
                grading_report.REPORT_FILE,
                f"{grading_report.report_path(course)} cannot be read: "
                f"{type(error).__name__}: {str(error).strip()[:MAX_LINE]}; "
                "grading failures and times are missing",
            )
        )
    for entry in found:
        for problem in entry.get("problems") or [{}]:
            failures.append(
                {
                    "student": entry["student"],
                    "notebook": entry["notebook"],
                    "cell": problem.get("grade_id")
                    or (f"cell {problem['cell']}" if problem.get("cell") is not None else ""),
                    "reason": str(problem.get("reason", "")),
                }
            )
    timings = {
        key.split("/", 1)[1]: value
        for key, value in (data.get("submissions") or {}).items()
        if key.startswith(f"{assignment}/") and isinstance(value, dict)
    }
    for key, value in sorted(timings.items()):
        if value.get("status") == "failed":
            failures.append(
                {
                    "student": key,
                    "notebook": "",
                    "cell": "",
                    "reason": str(value.get("error") or "grading failed"),
                }
            )
    failed = {f["student"] for f in failures}
    interrupted = {e["student"] for e in found if e["status"] == "running"}
    # a student whose grading failed before any grade was written still gets a row
    known = {s.student for s in students}
    students += [Student(name, graded=False) for name in sorted(failed - known)]
    students.sort(key=lambda s: s.student)
    for student in students:
        student.timing = timings.get(student.student)
        if student.student in interrupted:
            student.status = STATUS_INTERRUPTED
        elif student.student in failed:
            student.status = STATUS_FAILED
        elif not student.graded:
            student.status = STATUS_NOT_GRADED
        elif student.flagged:
            student.status = STATUS_MANUAL
    return ClassData(
        assignment,
        course.resolve(),
        shown_url(db_url),
        notebooks,
        cells,
        students,
        messages,
        unreadable,
        failures,
        timings_recorded=bool(timings),
    )


# -- the CSV ------------------------------------------------------------------------------------


def _cell(value):
    """A CSV field that a spreadsheet shows as text, never evaluates as a formula."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def _number(x: float) -> str:
    return f"{x:g}"


def write_csv(data: ClassData, path: Path) -> None:
    header = [
        "student",
        *data.notebooks,
        "total",
        "max_score",
        "flagged",
        "flagged_cells",
        "status",
        "grading_seconds",
    ]
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        for s in data.students:
            seconds = (s.timing or {}).get("seconds")
            row = [
                s.student,
                *(_number(s.notebook_score(nb)) if s.graded else "" for nb in data.notebooks),
                _number(s.total) if s.graded else "",
                _number(data.max_total),
                len(s.flagged),
                " ".join(f"{g.notebook}/{g.cell}" for g in s.flagged),
                s.status,
                f"{seconds:.1f}" if isinstance(seconds, (int, float)) else "",
            ]
            writer.writerow([_cell(v) for v in row])


# -- the page -----------------------------------------------------------------------------------


def esc(value) -> str:
    return html.escape(str(value), quote=True)


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return f'<img alt="" src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}">'


def _label(text: str) -> str:
    """Text for a plot, shown as written (a ``$`` would start matplotlib's math mode)."""
    return str(text).replace("$", r"\$")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def histogram(values: list[float], max_score: float, title: str, xlabel: str = "points") -> str:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4.2, 2.6))
    if max_score <= 30:
        bins = [b - 0.5 for b in range(int(math.ceil(max_score)) + 2)]
    else:
        bins = [max_score * i / 20 for i in range(21)]
    ax.hist(values, bins=bins, color="#3b6ea5", edgecolor="white")
    ax.set_title(_label(title), fontsize=10)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("students")
    ax.yaxis.get_major_locator().set_params(integer=True)
    return _png(fig)


def time_histogram(seconds: list[float]) -> str:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 2.6))
    ax.hist(seconds, bins=min(20, max(1, len(set(seconds)))), color="#6a8e3b", edgecolor="white")
    ax.set_title("grading time per submission", fontsize=10)
    ax.set_xlabel("seconds")
    ax.set_ylabel("submissions")
    ax.yaxis.get_major_locator().set_params(integer=True)
    return _png(fig)


def pass_rate_chart(rows: list[tuple[str, float]]) -> str:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 0.3 * len(rows) + 0.8))
    labels = [_label(r[0]) for r in rows][::-1]
    rates = [100 * r[1] for r in rows][::-1]
    ax.barh(labels, rates, color=["#b33" if r < 50 else "#d90" if r < 80 else "#3a3" for r in rates])
    ax.set_xlim(0, 100)
    ax.set_xlabel("% of graded students with full points")
    ax.tick_params(axis="y", labelsize=8)
    return _png(fig)


def _table(header: list[str], rows: list[list], cls: str = "") -> str:
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table class="{esc(cls)}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _pre(text: str) -> str:
    return f"<pre>{esc(text)}</pre>"


def _students(names: list[str], total: int) -> str:
    shown = ", ".join(esc(n) for n in names[:EXAMPLES])
    return shown + (f" and {total - len(names[:EXAMPLES])} more" if total > EXAMPLES else "")


def section_summary(data: ClassData) -> str:
    graded = data.graded
    totals = [s.total for s in graded]
    counts = Counter(s.status for s in data.students)
    rows = [
        ["assignment", esc(data.assignment)],
        ["course", esc(data.course)],
        ["gradebook", esc(data.database)],
        ["students", f"{len(data.students)} submitted, {len(graded)} graded"],
        ["status", esc(", ".join(f"{n} {status}" for status, n in sorted(counts.items())))],
        [
            "total score",
            f"mean {statistics.mean(totals):.2f}, median {statistics.median(totals):g}, "
            f"min {min(totals):g}, max {max(totals):g} of {data.max_total:g}",
        ],
    ]
    return "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows)


def section_scores(data: ClassData) -> str:
    graded = data.graded
    plots = [histogram([s.total for s in graded], data.max_total, f"total (of {data.max_total:g})")]
    for nb, max_score in data.notebooks.items():
        plots.append(histogram([s.notebook_score(nb) for s in graded], max_score, f"{nb} (of {max_score:g})"))
    rows = []
    for nb, max_score in [*data.notebooks.items(), ("total", data.max_total)]:
        values = [s.total if nb == "total" else s.notebook_score(nb) for s in graded]
        full = sum(v >= max_score for v in values)
        rows.append(
            [
                esc(nb),
                f"{statistics.mean(values):.2f}",
                f"{statistics.median(values):g}",
                f"{max_score:g}",
                f"{full} ({100 * full / len(values):.0f}%)",
                f"{sum(v == 0 for v in values)}",
            ]
        )
    table = _table(["notebook", "mean", "median", "max points", "full marks", "zero"], rows, "scores")
    return f'<div class="plots">{"".join(plots)}</div>{table}'


def cell_stats(data: ClassData) -> list[dict]:
    stats = []
    for nb, cell, max_score in data.cells:
        grades = [g for s in data.graded for g in s.grades if (g.notebook, g.cell) == (nb, cell)]
        passed = sum(g.score >= max_score and not g.needs_manual_grade for g in grades)
        partial = sum(0 < g.score < max_score and not g.needs_manual_grade for g in grades)
        flagged = sum(g.needs_manual_grade for g in grades)
        stats.append(
            {
                "notebook": nb,
                "cell": cell,
                "max": max_score,
                "graded": len(grades),
                "passed": passed,
                "partial": partial,
                "flagged": flagged,
                "failed": len(grades) - passed - partial - flagged,
                "rate": passed / len(grades) if grades else 0.0,
            }
        )
    return stats


def section_pass_rates(data: ClassData) -> str:
    stats = cell_stats(data)
    if not stats:
        return "<p>The assignment has no autograded test cells.</p>"
    rows = [
        [
            esc(s["notebook"]),
            esc(s["cell"]),
            f"{s['max']:g}",
            f"{100 * s['rate']:.0f}%",
            str(s["passed"]),
            str(s["partial"]),
            str(s["failed"]),
            str(s["flagged"]),
        ]
        for s in stats
    ]
    chart = pass_rate_chart([(f"{s['notebook']}/{s['cell']}", s["rate"]) for s in stats])
    return chart + _table(
        ["notebook", "test cell", "points", "pass rate", "passed", "partial", "failed", "flagged"],
        rows,
        "pass-rates",
    )


def message_groups(data: ClassData) -> dict[tuple[str, str], list[dict]]:
    """For each test cell, its failure messages grouped by :func:`message_key`, most frequent first."""
    failing = {
        (s.student, g.notebook, g.cell): g
        for s in data.graded
        for g in s.grades
        if g.code and (g.score < g.max_score or g.needs_manual_grade)
    }
    groups: dict[tuple[str, str], dict[str, dict]] = defaultdict(dict)
    for (student, nb, cell), grade in sorted(failing.items()):
        summary = data.messages.get((student, nb, cell))
        if summary is None:
            summary = f"(no error in the cell's output: {grade.score:g} of {grade.max_score:g} points)"
        group = groups[(nb, cell)].setdefault(message_key(summary), {"variants": Counter(), "students": []})
        group["variants"][summary] += 1
        group["students"].append(student)
    return {
        cell: sorted(
            (
                {
                    "message": g["variants"].most_common(1)[0][0],
                    "count": len(g["students"]),
                    "variants": len(g["variants"]),
                    "students": g["students"],
                }
                for g in found.values()
            ),
            key=lambda g: (-g["count"], g["message"]),
        )
        for cell, found in groups.items()
    }


def section_messages(data: ClassData) -> str:
    groups = message_groups(data)
    if not groups:
        return "<p>No test cell failed.</p>"
    parts = []
    for nb, cell, _ in data.cells:
        found = groups.get((nb, cell))
        if not found:
            continue
        total = sum(g["count"] for g in found)
        rows = [
            [
                str(g["count"]),
                _pre(g["message"])
                + (
                    f'<span class="note">{g["variants"]} variants differing only by numbers</span>'
                    if g["variants"] > 1
                    else ""
                ),
                _students(g["students"], g["count"]),
            ]
            for g in found[:TOP_MESSAGES]
        ]
        more = (
            f'<p class="note">{len(found) - TOP_MESSAGES} rarer messages not shown.</p>'
            if len(found) > TOP_MESSAGES
            else ""
        )
        parts.append(
            f"<h3>{esc(nb)} / {esc(cell)} <small>({total} failing)</small></h3>"
            + _table(["students", "message (first line and hint)", "for example"], rows, "messages")
            + more
        )
    return "".join(parts)


def section_failures(data: ClassData) -> str:
    parts = []
    if data.failures:
        rows = [
            [esc(f["student"]), esc(f["notebook"]), esc(f["cell"]), _pre(f["reason"][:2000])]
            for f in data.failures
        ]
        parts.append(
            "<h3>Grading failures</h3>" + _table(["student", "notebook", "cell", "reason"], rows, "failures")
        )
    else:
        parts.append("<h3>Grading failures</h3><p>No grading failed.</p>")
    if data.unreadable:
        rows = [[esc(s), esc(nb), _pre(why)] for s, nb, why in data.unreadable]
        parts.append(
            "<h3>Files that could not be read</h3>"
            "<p>Scores come from the gradebook; what these files hold is missing above.</p>"
            + _table(["student", "notebook", "problem"], rows, "unreadable")
        )
    flagged = [(s.student, g) for s in data.graded for g in s.flagged]
    if flagged:
        rows = [
            [
                esc(student),
                esc(g.notebook),
                esc(g.cell),
                f"{g.max_score:g}",
                _pre(data.messages.get((student, g.notebook, g.cell), ""))
                if g.code
                else "a written answer, graded by hand",
            ]
            for student, g in flagged
        ]
        parts.append(
            f"<h3>Cells flagged for manual grading ({len(flagged)})</h3>"
            "<p>Grade them in the formgrader (Manual Grading); the flag clears when a score is given.</p>"
            + _table(["student", "notebook", "cell", "points", "output"], rows, "flagged")
        )
    else:
        parts.append("<h3>Cells flagged for manual grading</h3><p>No cell is flagged.</p>")
    not_graded = [s.student for s in data.students if not s.graded]
    if not_graded:
        parts.append(f"<h3>Not in the gradebook ({len(not_graded)})</h3><p>{esc(', '.join(not_graded))}</p>")
    return "".join(parts)


def section_times(data: ClassData) -> str:
    timed = [s for s in data.students if isinstance((s.timing or {}).get("seconds"), (int, float))]
    if not timed:
        return (
            "<p>No grading times were recorded for this assignment: they are recorded by "
            f"<code>python -m autograder grade {esc(data.assignment)}</code>, not by plain "
            "<code>nbgrader autograde</code>.</p>"
        )
    seconds = [float(s.timing["seconds"]) for s in timed]
    summary = (
        f"<p>{len(seconds)} submissions: mean {statistics.mean(seconds):.1f} s, median "
        f"{statistics.median(seconds):.1f} s, max {max(seconds):.1f} s, total {sum(seconds) / 60:.1f} min "
        "of grading work.</p>"
    )
    rows = [
        [
            esc(s.student),
            f"{float(s.timing['seconds']):.1f}",
            esc(s.timing.get("status", "")),
            esc(s.timing.get("attempts", "")),
            esc(s.timing.get("worker", "")),
            esc(s.timing.get("finished", "")),
        ]
        for s in sorted(timed, key=lambda s: -float(s.timing["seconds"]))
    ]
    return (
        time_histogram(seconds)
        + summary
        + _table(["student", "seconds", "status", "attempts", "worker", "finished"], rows, "times")
    )


STYLE = """
body { font-family: sans-serif; margin: 1.5em 2em; color: #222; max-width: 1200px; }
h1 { font-size: 1.5em; } h2 { border-bottom: 2px solid #3b6ea5; padding-bottom: 0.2em; margin-top: 1.6em; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.5em; text-align: left; vertical-align: top; }
thead th { background: #eef2f7; }
pre { margin: 0; white-space: pre-wrap; word-break: break-word; max-width: 70em; }
.plots img { margin: 0 0.6em 0.6em 0; } .note { color: #666; font-size: 0.85em; display: block; }
"""

SECTIONS = [
    ("scores", "Score distribution", section_scores),
    ("pass-rates", "Pass rate of each test cell", section_pass_rates),
    ("messages", "Most frequent failure messages", section_messages),
    ("failures", "Grading failures and manual grading", section_failures),
    ("times", "Grading time", section_times),
]


def render(data: ClassData) -> str:
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    body = "".join(
        f'<section id="{sid}"><h2>{esc(title)}</h2>{make(data)}</section>' for sid, title, make in SECTIONS
    )
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        f"<title>{esc(data.assignment)}: class report</title><style>{STYLE}</style></head><body>"
        f'<h1>{esc(data.assignment)}: class report</h1><p class="note">generated {now}</p>'
        f'<section id="summary"><table class="summary">{section_summary(data)}</table></section>'
        f"{body}</body></html>\n"
    )


def make_report(course: Path, assignment: str, out: Path | None = None) -> tuple[Path, Path, ClassData]:
    """Write the page and the CSV; return their paths and what they show."""
    data = load(Path(course), assignment)
    out = Path(out) if out else Path(course) / "reports" / f"{assignment}.html"
    out.parent.mkdir(parents=True, exist_ok=True)
    csv_path = out.with_suffix(".csv")
    write_csv(data, csv_path)
    out.write_text(render(data), encoding="utf-8")
    return out, csv_path, data


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m autograder report",
        description="Write an HTML page (plots embedded) and a CSV on how a class did in an assignment: "
        "score distributions, pass rate of each test cell, the most frequent failure messages, "
        "grading failures and cells flagged for manual grading, grading times.",
    )
    parser.add_argument("assignment", help="the assignment's name, as in the gradebook")
    parser.add_argument("--course", default=".", help="the course directory (default: .)")
    parser.add_argument(
        "--out",
        default=None,
        help="the HTML file to write; the CSV goes beside it with the suffix .csv "
        "(default: COURSE/reports/ASSIGNMENT.html)",
    )
    args = parser.parse_args(argv)
    try:
        page, table, data = make_report(
            Path(args.course), args.assignment, Path(args.out) if args.out else None
        )
    except ReportError as error:
        print(f"python -m autograder report: {error}", file=sys.stderr)
        return 1
    graded = len(data.graded)
    print(
        f"{page}\n{table}\n{graded} graded student(s), {len(data.failures)} grading failure(s), "
        f"{sum(len(s.flagged) for s in data.graded)} cell(s) flagged for manual grading"
        + (f", {len(data.unreadable)} file(s) unreadable (named in the page)" if data.unreadable else "")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
