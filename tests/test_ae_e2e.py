"""Does real `nbgrader autograde` score AE submissions as it should, cell by cell?"""
from __future__ import annotations

import pytest
from conftest import ASSIGNMENT, SOLUTIONS, WEIGHTS, grade_cell_errors, reference_weights

from autograder.cli.weights import write_untrained_weights
from autograder.grading.course import all_scores, autograde, build_course, nbgrader, submit

pytestmark = pytest.mark.slow

ENCODER_LAST_LAYER = "nn.Linear(250, n_components),"
FULL = {"test_ae_encoder": 2.0, "test_ae_decoder": 2.0, "test_ae_probe": 2.0,
        "test_ae_reconstruction": 2.0}


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    weights = reference_weights("ae")
    course = build_course(tmp_path_factory.mktemp("ae") / "course", (ASSIGNMENT,))
    solution = SOLUTIONS / "ae.ipynb"
    trained = {w: weights / w for w in WEIGHTS["ae"]}
    submit(course, "reference", {"ae.ipynb": solution, **trained})
    submit(course, "untouched", {"ae.ipynb": course / "assignments" / ASSIGNMENT / "ae.ipynb"})
    dest = submit(course, "untrained", {"ae.ipynb": solution})
    write_untrained_weights(dest, ["ae"])
    text = solution.read_text()
    assert ENCODER_LAST_LAYER in text
    submit(course, "hardcoded", {"ae.ipynb": text.replace(ENCODER_LAST_LAYER, "nn.Linear(250, 10),"),
                                 **trained})
    proc = autograde(course, force=True)
    assert proc.returncode == 0, proc.output[-6000:]
    return course, all_scores(course)


def points(result, student):
    return {cell: score for (nb, cell), (score, _) in result[student].items() if nb == "ae"}


def test_reference_gets_full_marks(graded):
    """Does the solution notebook with its trained weights get every point?"""
    course, result = graded
    assert points(result, "reference") == FULL


def test_untouched_release_scores_zero_with_messages(graded):
    """Does the release as handed out score 0, with 'not implemented yet' in every cell?"""
    course, result = graded
    assert points(result, "untouched") == {cell: 0.0 for cell in FULL}
    errors = grade_cell_errors(course / "autograded" / "untouched" / ASSIGNMENT / "ae.ipynb")
    assert set(errors) == set(FULL)
    for cell, error in errors.items():
        assert error.startswith("NotImplementedYet:") and "not implemented yet" in error, (cell, error)


def test_untrained_weights_lose_only_trained_points(graded):
    """Does correct code with random-init weights lose exactly the trained-model points?"""
    course, result = graded
    assert points(result, "untrained") == {**FULL, "test_ae_probe": 0.0,
                                           "test_ae_reconstruction": 0.0}
    errors = grade_cell_errors(course / "autograded" / "untrained" / ASSIGNMENT / "ae.ipynb")
    assert "accuracy too low" in errors["test_ae_probe"]
    assert "reconstruction error" in errors["test_ae_reconstruction"]


def test_hardcoded_components_lose_shape_points(graded):
    """Does an Encoder that hard-codes 10 components lose the encoder shape points only?"""
    course, result = graded
    assert points(result, "hardcoded") == {**FULL, "test_ae_encoder": 0.0}
    errors = grade_cell_errors(course / "autograded" / "hardcoded" / ASSIGNMENT / "ae.ipynb")
    assert "n_components=2: use n_components in the last layer" in errors["test_ae_encoder"]


def test_feedback_is_generated(graded):
    """Does `nbgrader generate_feedback` produce an HTML report for a graded student?"""
    course, _ = graded
    proc = nbgrader(course, "generate_feedback", ASSIGNMENT, "--student", "reference", "--force")
    assert proc.returncode == 0, proc.stderr[-2000:]
    html = (course / "feedback" / "reference" / ASSIGNMENT / "ae.html").read_text()
    assert "test_ae_probe" in html and "test_ae_reconstruction" in html
