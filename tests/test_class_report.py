"""The class report (``python -m autograder report``) on a course graded by real nbgrader.

One toy course (``square``; three test cells, one of them hidden) and three students graded with
one ``nbgrader autograde`` call: full marks, a named mistake (``x + x``), and a hostile student
whose wrong value differs from that mistake's only by numbers in one cell, whose failure message
carries a ``<script>`` and an ``<img onerror>`` in another, and whose kernel dies in the last (a
grading failure, flagged for manual grading). The report's CSV is compared with the gradebook,
and its page is opened in headless Chromium: a screenshot that is not blank, the sections, the
hostile text shown as text and no script run.
"""

from __future__ import annotations

import base64
import csv
import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from nbgrader_harness import (
    all_scores,
    autograde,
    fill,
    flagged,
    grade_cell,
    make_course,
    markdown,
    notebook,
    release,
    solution_cell,
    submit,
)

from autograder.__main__ import main as autograder_main
from autograder.cli import classreport
from autograder.cli.classreport import ReportError, failure_summary, message_key

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SECTIONS = ("summary", "scores", "pass-rates", "messages", "failures", "times")

# A check in the style of the course's: what was tried (with the value got), expected, hint.
CHECK = """from autograder.checks.core import failure
got = square({x})
if got != {want}:
    raise failure(f"square: wrong value for x={x}: got {{got!r}}", "{want}",
                  hint="did you add instead of multiplying?")"""


def js(n: int) -> str:
    """JavaScript that would mark the page with an element ``pwned-N`` if it ran (base64'd)."""
    code = f"var m=document.createElement('div');m.id='pwned-{n}';document.body.appendChild(m);"
    return f"eval(atob('{base64.b64encode(code.encode()).decode()}'))"


# mallory: the same mistake as bob's up to numbers in test_square, markup in test_hidden's
# message, and a kernel that dies in test_big (a grading failure, flagged for manual grading).
HOSTILE_VALUE = f'<script>{js(1)}</script><img src=x onerror="{js(2)}">'
HOSTILE = (
    "def square(x):\n"
    "    if x == 100:\n"
    "        import os\n"
    "        os._exit(1)\n"
    "    if x == 12:\n"
    f"        return {HOSTILE_VALUE!r}\n"
    "    return x + 4 if x == 3 else x * x\n"
)
STUDENTS = {
    "alice": "def square(x):\n    return x * x",
    "bob": "def square(x):\n    return x + x",
    "mallory": HOSTILE,
}


def toy_source():
    return notebook(
        markdown("# Toy\nImplement `square`."),
        solution_cell(
            "def square(x):\n    ### BEGIN SOLUTION\n    return x * x\n    ### END SOLUTION", "square"
        ),
        grade_cell(CHECK.format(x=3, want=9), "test_square", 1),
        grade_cell(
            "assert square(-2) == 4\n### BEGIN HIDDEN TESTS\n"
            + CHECK.format(x=12, want=144)
            + "\n### END HIDDEN TESTS",
            "test_hidden",
            2,
        ),
        grade_cell(CHECK.format(x=100, want=10000), "test_big", 1),
    )


def report_here(course: Path, out: Path, assignment: str = "toy", capsys=None) -> tuple[int, str]:
    """``python -m autograder report``, in this process (saving an interpreter's start and imports)."""
    code = autograder_main(["report", assignment, "--course", str(course), "--out", str(out)])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def chromium(url: str, tmp: Path, *args: str) -> subprocess.CompletedProcess:
    profile = tempfile.mkdtemp(dir=tmp, prefix="chromium-")
    cmd = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--host-resolver-rules=MAP * ~NOTFOUND",
        f"--user-data-dir={profile}",
        "--virtual-time-budget=3000",
        *args,
        url,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("class-report")
    course = make_course(tmp, {"toy": toy_source()})
    with pytest.raises(ReportError, match="no submission of 'toy' has been graded yet"):
        classreport.load(course, "toy")
    for student, source in STUDENTS.items():
        submit(course, student, {"toy.ipynb": fill(release(course, "toy"), {"square": source})})
    run = autograde(course, timeout=20)
    assert run.returncode == 0, run.output
    return course


@pytest.fixture(scope="module")
def page(course, tmp_path_factory):
    out = tmp_path_factory.mktemp("page") / "toy.html"
    assert autograder_main(["report", "toy", "--course", str(course), "--out", str(out)]) == 0
    return out


def rows(path: Path) -> dict[str, dict]:
    with open(path, newline="") as f:
        return {row["student"]: row for row in csv.DictReader(f)}


def test_failure_messages_that_differ_only_by_numbers_share_a_key():
    """Do two messages with different numbers group together, and different hints apart?"""
    a = failure_summary(
        "CheckFailure",
        "square: wrong value for x=7: got 14\n  expected 49\n  got 14\n"
        "  hint: did you add instead of multiplying?",
    )
    b = failure_summary(
        "CheckFailure",
        "square: wrong value for x=7: got 10.5\n  expected 49\n  hint: did you add instead of multiplying?",
    )
    c = failure_summary("CheckFailure", "square: wrong value for x=7: got 10.5\n  hint: a different mistake")
    assert a == "CheckFailure: square: wrong value for x=7: got 14\nhint: did you add instead of multiplying?"
    assert message_key(a) == message_key(b) != message_key(c)
    assert failure_summary("AssertionError", "") == "AssertionError"


@pytest.mark.slow
def test_csv_matches_the_gradebook(course, page):
    """Does the CSV hold, for every student, the gradebook's scores, flags and a grading status?"""
    table = rows(page.with_suffix(".csv"))
    gradebook = all_scores(course)
    assert set(table) == set(gradebook) == set(STUDENTS)
    for student, cells in gradebook.items():
        row = table[student]
        assert float(row["toy"]) == pytest.approx(sum(score for score, _ in cells.values()))
        assert float(row["total"]) == float(row["toy"])
        assert float(row["max_score"]) == 4.0
        assert row["flagged_cells"].split() == sorted(f"{nb}/{cell}" for nb, cell in flagged(course, student))
        assert int(row["flagged"]) == len(flagged(course, student))
    assert (float(table["alice"]["total"]), table["alice"]["status"]) == (4.0, "graded")
    assert (float(table["bob"]["total"]), table["bob"]["status"]) == (0.0, "graded")
    assert table["mallory"]["status"] == "grading failed"
    assert table["mallory"]["flagged_cells"] == "toy/test_big"
    assert {r["grading_seconds"] for r in table.values()} == {""}  # plain nbgrader autograde records none


@pytest.mark.slow
def test_page_groups_failures_and_escapes_student_text(course, page):
    """Does the page group failure messages by hint, and show a student's markup only as text?"""
    text = page.read_text()
    assert "<script" not in text and "<img src=x" not in text
    assert "&lt;script&gt;" in text and "&lt;img src=x onerror=" in text
    links = re.findall(r'(?:src|href)\s*=\s*"([^"]*)"', text)
    assert links and all(link.startswith("data:image/png;base64,") for link in links)  # self-contained
    # bob (got 6) and mallory (got 7) share one group of test_square; the message names the hint
    assert "2 variants differing only by numbers" in text
    assert "did you add instead of multiplying?" in text
    assert "No grading times were recorded" in text


@pytest.mark.slow
def test_page_renders_in_chromium_without_running_student_scripts(page, tmp_path):
    """Does the page render in headless Chromium, not blank, with its sections, and no script run?"""
    assert Path(CHROMIUM).exists(), "chromium is missing: run `make setup` (scripts/setup_browser.sh)"
    # the control: mallory's value, unescaped in a page without the report's policy, does run
    control = tmp_path / "control.html"
    control.write_text(f"<html><body>{HOSTILE_VALUE}</body></html>")
    ran = chromium(control.as_uri(), tmp_path, "--dump-dom").stdout
    assert 'id="pwned-1"' in ran and 'id="pwned-2"' in ran, ran[-2000:]

    dom = chromium(page.as_uri(), tmp_path, "--dump-dom")
    assert dom.returncode == 0 and "<html" in dom.stdout, dom.stderr[-2000:]
    for section in SECTIONS:
        assert f'<section id="{section}">' in dom.stdout, section
    assert 'id="pwned-' not in dom.stdout, "a student script ran in the report"
    assert "<script" not in dom.stdout.lower() and "&lt;script&gt;" in dom.stdout
    assert dom.stdout.count('src="data:image/png;base64,') >= 3  # total, notebook, pass rates

    shot = tmp_path / "shot.png"
    run = chromium(
        page.as_uri(), tmp_path, f"--screenshot={shot}", "--window-size=1200,1600", "--hide-scrollbars"
    )
    assert run.returncode == 0 and shot.exists(), run.stderr[-2000:]
    from matplotlib.image import imread

    pixels = imread(shot)[..., :3]
    dark = (pixels.mean(axis=2) < 0.5).mean()
    colours = len({tuple(p) for p in (pixels[::8, ::8].reshape(-1, 3) * 255).astype(int)})
    assert 0.005 < dark < 0.5, f"{dark:.4f} of the screenshot is dark: blank or unreadable"
    assert colours > 20, f"the screenshot has only {colours} colours: no plot rendered"


@pytest.mark.slow
def test_timings_and_an_unreadable_notebook(course, tmp_path, capsys):
    """Does the page show recorded grading times, and an unreadable notebook with the rest rendered?"""
    copy = tmp_path / "course"
    shutil.copytree(course, copy)
    data = json.loads((copy / "grading_report.json").read_text())
    # the entries the batch grade command records, one per submission
    data["submissions"] = {
        f"toy/{s}": {
            "status": "graded",
            "key": "k" + s,
            "seconds": 4.0 + i,
            "attempts": 1,
            "worker": "w1",
            "error": None,
            "finished": "2025-01-01T00:00:00",
        }
        for i, s in enumerate(STUDENTS)
    }
    data["submissions"]["toy/bob"].update(status="failed", error="the worker died <b>twice</b>", attempts=3)
    data["submissions"]["toy/dave"] = {**data["submissions"]["toy/bob"], "seconds": 1.0, "error": "no kernel"}
    (copy / "grading_report.json").write_text(json.dumps(data))
    unreadable = copy / "autograded" / "alice" / "toy" / "toy.ipynb"
    unreadable.chmod(0o644)
    unreadable.write_text("{ not json")
    code, output = report_here(copy, tmp_path / "t.html", capsys=capsys)
    assert code == 0 and "1 file(s) unreadable" in output, output
    text = (tmp_path / "t.html").read_text()
    assert "No grading times were recorded" not in text
    assert "4 submissions: mean 4.0 s, median 4.5 s, max 6.0 s" in text
    assert "the worker died &lt;b&gt;twice&lt;/b&gt;" in text
    assert "could not be read" in text and f"{unreadable} cannot be read" in text
    assert text.count('src="data:image/png;base64,') >= 4  # the rest is rendered, with the time histogram
    table = rows(tmp_path / "t.csv")
    assert table["bob"]["status"] == "grading failed" and table["bob"]["grading_seconds"] == "5.0"
    assert float(table["alice"]["total"]) == 4.0  # scores still come from the gradebook
    # a student whose grading failed before the gradebook had a row for them is not dropped
    assert (table["dave"]["status"], table["dave"]["total"], table["dave"]["grading_seconds"]) == (
        "grading failed",
        "",
        "1.0",
    )
    assert "no kernel" in text


@pytest.mark.slow
def test_unknown_assignment_is_a_clear_error(course, tmp_path, capsys):
    """Does an unknown assignment name fail with the gradebook's assignments, and write nothing?"""
    code, output = report_here(course, tmp_path / "x.html", assignment="toys", capsys=capsys)
    assert code == 1 and "unknown assignment 'toys'" in output and "toy" in output, output
    assert not (tmp_path / "x.html").exists() and not (tmp_path / "x.csv").exists()


def test_a_directory_without_gradebook_is_a_clear_error(tmp_path):
    """Does a folder with no gradebook fail with the path, instead of creating an empty gradebook?"""
    with pytest.raises(ReportError, match="there is no gradebook at"):
        classreport.load(tmp_path, "toy")
    assert not (tmp_path / "gradebook.db").exists()
