"""Does real `nbgrader autograde` score DAE submissions as it should, cell by cell?"""
from __future__ import annotations

import pytest
from conftest import ASSIGNMENT, SOLUTIONS, WEIGHTS, grade_cell_errors, reference_weights

from autograder.cli.weights import write_untrained_weights
from autograder.grading.course import all_scores, autograde, build_course, submit

pytestmark = pytest.mark.slow

CODE_LAYERS = ("nn.Linear(128, n_components),", "nn.Linear(n_components, 128),")
FULL = {"test_dae": 3.0, "test_dae_probe": 2.0, "test_dae_denoising": 2.0}


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    weights = reference_weights("dae")
    course = build_course(tmp_path_factory.mktemp("dae") / "course", (ASSIGNMENT,))
    solution = SOLUTIONS / "dae.ipynb"
    trained = {w: weights / w for w in WEIGHTS["dae"]}
    submit(course, "reference", {"dae.ipynb": solution, **trained})
    submit(course, "untouched", {"dae.ipynb": course / "assignments" / ASSIGNMENT / "dae.ipynb"})
    dest = submit(course, "untrained", {"dae.ipynb": solution})
    write_untrained_weights(dest, ["dae"])
    text = solution.read_text()
    assert all(layer in text for layer in CODE_LAYERS)
    hardcoded = text.replace(CODE_LAYERS[0], "nn.Linear(128, 10),").replace(
        CODE_LAYERS[1], "nn.Linear(10, 128),")
    submit(course, "hardcoded", {"dae.ipynb": hardcoded, **trained})
    proc = autograde(course, force=True)  # one nbgrader call for every student
    assert proc.returncode == 0, proc.output[-6000:]
    return course, all_scores(course)


def points(result, student):
    return {cell: score for (nb, cell), (score, _) in result[student].items() if nb == "dae"}


def errors_of(course, student):
    return grade_cell_errors(course / "autograded" / student / ASSIGNMENT / "dae.ipynb")


def test_reference_gets_full_marks(graded):
    """Does the solution notebook with its trained weights get every point?"""
    course, result = graded
    assert points(result, "reference") == FULL, errors_of(course, "reference")


def test_untouched_release_scores_zero_with_messages(graded):
    """Does the release as handed out score 0, with 'not implemented yet' in every test cell?"""
    course, result = graded
    assert points(result, "untouched") == {cell: 0.0 for cell in FULL}
    errors = errors_of(course, "untouched")
    assert set(errors) == set(FULL)
    for cell, error in errors.items():
        assert error.startswith("NotImplementedYet:") and "not implemented yet" in error, (cell, error)


def test_untrained_weights_lose_only_trained_points(graded):
    """Does correct code with random-init weights lose exactly the trained-model points?"""
    course, result = graded
    assert points(result, "untrained") == {**FULL, "test_dae_probe": 0.0, "test_dae_denoising": 0.0}
    errors = errors_of(course, "untrained")
    assert "accuracy too low" in errors["test_dae_probe"], errors
    assert "too high" in errors["test_dae_denoising"], errors


def test_hardcoded_components_lose_shape_points(graded):
    """Does a DAE that hard-codes a code of 10 lose the model points only (its weights still fit)?"""
    course, result = graded
    assert points(result, "hardcoded") == {**FULL, "test_dae": 0.0}
    assert "n_components=2: use n_components" in errors_of(course, "hardcoded")["test_dae"]
