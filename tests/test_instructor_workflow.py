"""An instructor's first run, through the real nbgrader commands on throw-away toy courses.

Autograding before the release, the checksum warning for untouched test cells, resubmissions,
feedback folders, what the sandboxed kernel prints, and the progress of reference training.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import nbformat
import pytest
from nbgrader_harness import (
    autograde,
    cell_source,
    fill,
    flagged,
    grade_cell,
    graded,
    make_course,
    markdown,
    nbgrader,
    notebook,
    outputs,
    release,
    scores,
    solution_cell,
    submit,
)

from autograder.cli.demo import next_steps
from autograder.cli.weights import execute_notebook
from autograder.grading.course import _config_text
from autograder.grading.report import main as report_main

REPO = Path(__file__).resolve().parents[1]
CHECKSUM_WARNING = "Attribute 'checksum' for cell"

SQUARE = "def square(x):\n    return x * x"
# Passes the visible test (square(3) == 9) and fails the hidden one (square(12) == 144).
VISIBLE_ONLY = "def square(x):\n    return 9"
PHYSICAL_CORES = "import joblib\nprint('physical cores:', joblib.cpu_count(only_physical_cores=True))"


def toy_source():
    return notebook(
        markdown("# Toy assignment\nImplement `square`."),
        solution_cell("def square(x):\n    ### BEGIN SOLUTION\n    return x * x\n    ### END SOLUTION",
                      "square"),
        grade_cell("assert square(3) == 9\n### BEGIN HIDDEN TESTS\nassert square(12) == 144\n"
                   "### END HIDDEN TESTS", "test_square", 2),
        grade_cell(PHYSICAL_CORES, "test_cores", 1),
    )


@pytest.fixture(scope="module")
def course(tmp_path_factory) -> Path:
    return make_course(tmp_path_factory.mktemp("instructor"), {"toy": toy_source()})


def graded_once(course: Path, student: str, answer: str, **changes: str):
    """Submit the release with `answer` (and test cells changed by grade_id), autograde it alone."""
    nb = fill(release(course, "toy"), {"square": answer, **changes})
    submit(course, student, {"toy.ipynb": nb, "w.pth": b"weights"})
    return autograde(course, student)


# -- 8: autograding before the release --------------------------------------------------------

@pytest.mark.slow
def test_autograde_before_release_names_the_fix(tmp_path):
    """Does autograding an assignment that was never released stop with the command that fixes it?"""
    course = tmp_path / "course"
    (course / "solutions" / "toy").mkdir(parents=True)
    (course / "nbgrader_config.py").write_text(_config_text(""))
    nbformat.write(toy_source(), course / "solutions" / "toy" / "toy.ipynb")
    submit(course, "alice", {"toy.ipynb": toy_source()}, assignment="toy")
    run = autograde(course, assignment="toy")
    assert run.returncode == 1, run.output
    assert "has no assignment 'toy'" in run.output and "nbgrader generate_assignment toy" in run.output
    assert "make release" in run.output
    assert "Traceback" not in run.output and "exists in the database" not in run.output
    assert not (course / "autograded").exists()
    # the command it names fixes it
    assert nbgrader(course, "generate_assignment", "toy").returncode == 0
    run = autograde(course, assignment="toy")
    assert run.returncode == 0, run.output
    assert scores(course, "alice", "toy")[("toy", "test_square")] == (2.0, 2.0)


# -- 9: the checksum warning ------------------------------------------------------------------

@pytest.fixture(scope="module")
def honest(course):
    """The release with a correct answer, test cells untouched, graded alone."""
    return graded_once(course, "honest", SQUARE)


@pytest.mark.slow
def test_untouched_release_grades_without_checksum_warning(course, honest):
    """Does a submission whose test cells are as released grade without the checksum warning?"""
    assert honest.returncode == 0, honest.output
    assert "Sanitizing" in honest.output and CHECKSUM_WARNING not in honest.output
    assert scores(course, "honest")[("toy", "test_square")] == (2.0, 2.0)


@pytest.mark.slow
def test_hidden_tests_still_run_for_untouched_cells(course):
    """Are the hidden tests put back into untouched test cells (a visible-only answer loses the points)?"""
    run = graded_once(course, "visible_only", VISIBLE_ONLY)
    assert run.returncode == 0, run.output
    assert CHECKSUM_WARNING not in run.output
    assert scores(course, "visible_only")[("toy", "test_square")] == (0.0, 2.0)
    assert "assert square(12) == 144" in cell_source(graded(course, "visible_only", "toy"), "test_square")


@pytest.mark.slow
def test_changed_locked_cell_still_warns_and_is_restored(course):
    """Does a really changed test cell still warn, and is it restored with its hidden tests?"""
    run = graded_once(course, "changed", VISIBLE_ONLY, test_square="pass")
    assert run.returncode == 0, run.output
    assert f"{CHECKSUM_WARNING} test_square has changed!" in run.output
    assert f"{CHECKSUM_WARNING} test_cores" not in run.output
    assert scores(course, "changed")[("toy", "test_square")] == (0.0, 2.0)


# -- 13: what the sandboxed kernel prints -------------------------------------------------------

@pytest.mark.slow
def test_sandboxed_kernel_prints_no_noise(course, honest):
    """Do graded outputs and the grader's log stay free of joblib's core count and the TCP warning?"""
    text = outputs(graded(course, "honest", "toy"), "test_cores")
    assert "physical cores:" in text, text
    assert "Could not find the number of physical cores" not in text and "found 0 physical" not in text
    assert scores(course, "honest")[("toy", "test_cores")] == (1.0, 1.0)
    assert "without encryption" not in honest.output


# -- 10: resubmissions --------------------------------------------------------------------------

@pytest.mark.slow
def test_resubmissions(course):
    """Is a resubmission skipped without a newer timestamp, regraded with one, and regraded by --force?"""
    def resubmit(answer: str, timestamp: str | None = None):
        files = {"toy.ipynb": fill(release(course, "toy"), {"square": answer})}
        submit(course, "again", {**files, **({"timestamp.txt": timestamp} if timestamp else {})})

    def points():
        return scores(course, "again")[("toy", "test_square")][0]

    resubmit(VISIBLE_ONLY, "2000-01-01 10:00:00.000000 UTC")
    assert autograde(course, "again").returncode == 0 and points() == 0.0

    # files replaced by hand, timestamp unchanged: skipped, the old grade stays
    resubmit(SQUARE)
    run = autograde(course, "again")
    assert run.returncode == 0 and "Skipping existing assignment" in run.output, run.output
    assert points() == 0.0

    # --force regrades (here: only this student)
    run = autograde(course, "again", force=True)
    assert run.returncode == 0 and points() == 2.0, run.output

    # a newer timestamp.txt (what `nbgrader collect --update` writes): regraded without --force
    resubmit(VISIBLE_ONLY, "2000-01-02 10:00:00.000000 UTC")
    run = autograde(course, "again")
    assert run.returncode == 0 and "Updating existing assignment" in run.output, run.output
    assert points() == 0.0


# -- 12: feedback folders ---------------------------------------------------------------------------

@pytest.mark.slow
def test_feedback_holds_only_the_html(course):
    """Does nbgrader generate_feedback leave only the HTML in the feedback folder (no weights)?"""
    graded_once(course, "feedback", SQUARE)
    assert (course / "autograded" / "feedback" / "toy" / "w.pth").exists()
    run = nbgrader(course, "generate_feedback", "toy", "--student", "feedback", "--force")
    assert run.returncode == 0, run.stdout + run.stderr
    folder = course / "feedback" / "feedback" / "toy"
    files = sorted(p.name for p in folder.rglob("*") if p.is_file())
    assert files == ["toy.html"], files
    html = (folder / "toy.html").read_text()
    assert "Score: 3.0 / 3.0" in html and 'name="test_square"' in html


# -- 11: the failures command ---------------------------------------------------------------------

def test_failures_command_before_any_grading(tmp_path, capsys):
    """Does `python -m autograder failures` say that no grading happened yet, rather than 'no failures'?"""
    assert report_main(["--course", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "no grading has happened yet" in out and "nbgrader autograde" in out


@pytest.mark.slow
def test_flagged_cells_need_manual_grading_in_the_gradebook(course, honest):
    """Is a cell whose grading failed listed as needing manual grading where formgrader looks?"""
    from nbgrader.api import Gradebook

    # a crash in the last test cell: the cell is changed, so OverwriteCells restores it, but the
    # kernel is killed by the cell before (a plain student cell added after the solution)
    nb = fill(release(course, "toy"), {"square": SQUARE + "\nimport os\nos._exit(3)"})
    submit(course, "crash", {"toy.ipynb": nb})
    assert autograde(course, "crash").returncode == 0
    assert flagged(course, "crash") == {("toy", "test_square"), ("toy", "test_cores")}
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        listed = {d["student"]: d for d in gb.notebook_submission_dicts("toy", "toy")}
        assert listed["crash"]["needs_manual_grade"] is True  # formgrader's "needs manual grade"
        assert listed["honest"]["needs_manual_grade"] is False


# -- 6, 7: make demo --------------------------------------------------------------------------------

@pytest.mark.slow
def _kernels() -> set[int]:
    """The process ids of the kernels that this process started and that are still running."""
    import psutil

    return {p.pid for p in psutil.Process().children(recursive=True)
            if "ipykernel" in " ".join(p.cmdline()) and p.status() != psutil.STATUS_ZOMBIE}


def test_training_shows_progress(tmp_path, capfd):
    """Does executing a notebook for training announce each cell and relay its bar live, without TCP noise?"""
    nb = notebook(markdown("# Training"),
                  nbformat.v4.new_code_cell("from tqdm import tqdm\nimport time"),
                  nbformat.v4.new_code_cell("for epoch in tqdm(range(3), desc='epochs'):\n"
                                            "    time.sleep(0.3)\nprint('trained')"))
    path = tmp_path / "train.ipynb"
    nbformat.write(nb, path)
    start = time.monotonic()
    before = _kernels()
    execute_notebook(path, progress="toy")
    captured = capfd.readouterr()
    assert _kernels() - before == set(), "the training kernel is still running"
    out = captured.out
    assert "[toy 1/2] from tqdm import tqdm" in out and "[toy 2/2] for epoch in tqdm(" in out
    assert "epochs: 100%" in out and "3/3" in out and "trained" in out
    assert out.index("[toy 2/2]") < out.index("epochs: 100%") < out.index("trained")
    assert "without encryption" not in captured.out + captured.err
    assert time.monotonic() - start < 120


def test_demo_ends_with_the_next_commands(tmp_path):
    """Does the demo's closing note say where the course is and how to continue there?"""
    text = next_steps(tmp_path / "demo", ("autoencoders",))
    assert str(tmp_path / "demo") in text and "cd " in text
    for command in ["nbgrader generate_feedback autoencoders", "nbgrader export", "jupyter lab",
                    f"export PATH={Path(sys.executable).parent}:$PATH"]:
        assert command in text, command


# -- 13: packaging ----------------------------------------------------------------------------------

def test_pyproject_builds_without_warnings():
    """Does setuptools read pyproject.toml without a deprecation warning (license as SPDX string)?"""
    import warnings

    from setuptools.config.pyprojecttoml import apply_configuration
    from setuptools.dist import Distribution

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cwd = os.getcwd()
        os.chdir(REPO)
        try:
            dist = apply_configuration(Distribution(), REPO / "pyproject.toml")
        finally:
            os.chdir(cwd)
    assert [str(w.message) for w in caught if "license" in str(w.message).lower()] == []
    assert dist.metadata.license_expression == "MIT"


# -- 11: collecting submissions from a learning platform ----------------------------------------------

@pytest.mark.slow
def test_zip_collect_brings_notebooks_and_weights(course):
    """Does `nbgrader zip_collect` put each student's notebook and weights into submitted/ (course config)?"""
    import zipfile

    archive = course / "downloaded" / "toy" / "archive"
    archive.mkdir(parents=True)
    nb = nbformat.writes(fill(release(course, "toy"), {"square": SQUARE}))
    with zipfile.ZipFile(archive / "all_submissions.zip", "w") as zf:
        for student in ["zoe", "yan"]:
            zf.writestr(f"{student}/toy.ipynb", nb)
            zf.writestr(f"{student}/w.pth", b"weights of " + student.encode())
            zf.writestr(f"{student}/notes.txt", "not collected")
    run = nbgrader(course, "zip_collect", "toy")
    assert run.returncode == 0, run.stdout + run.stderr
    for student in ["zoe", "yan"]:
        folder = course / "submitted" / student / "toy"
        assert sorted(p.name for p in folder.iterdir()) == ["toy.ipynb", "w.pth"]
        assert (folder / "w.pth").read_bytes() == b"weights of " + student.encode()
