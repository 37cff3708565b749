"""Does real `nbgrader autograde` score VAE submissions as it should, cell by cell?"""
from __future__ import annotations

import pytest
from conftest import ASSIGNMENT, SOLUTIONS, WEIGHTS, grade_cell_errors, reference_weights

from autograder.cli.weights import write_untrained_weights
from autograder.grading.course import all_scores, autograde, build_course, nbgrader, submit

pytestmark = pytest.mark.slow

# The solution's KL line, and the same line without the factor 1/2.
KL_LINE = "kl = 0.5 * (torch.exp(z_logvar) + z_mean ** 2 - 1.0 - z_logvar)"
KL_NO_HALF = "kl = (torch.exp(z_logvar) + z_mean ** 2 - 1.0 - z_logvar)"
FULL = {"test_vae_encoder": 1.0, "test_vae_sample": 2.0, "test_vae_loss_kl": 2.0,
        "test_vae_decoder": 2.0, "test_vae_loss_loglik": 2.0, "test_vae_probe": 2.0,
        "test_vae_loss": 2.0}


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    weights = reference_weights("vae")
    course = build_course(tmp_path_factory.mktemp("vae") / "course", (ASSIGNMENT,))
    solution = SOLUTIONS / "vae.ipynb"
    trained = {w: weights / w for w in WEIGHTS["vae"]}
    submit(course, "reference", {"vae.ipynb": solution, **trained})
    submit(course, "untouched", {"vae.ipynb": course / "assignments" / ASSIGNMENT / "vae.ipynb"})
    dest = submit(course, "untrained", {"vae.ipynb": solution})
    write_untrained_weights(dest, ["vae"])
    text = solution.read_text()
    assert text.count(KL_LINE) == 1
    submit(course, "kl_no_half", {"vae.ipynb": text.replace(KL_LINE, KL_NO_HALF), **trained})
    proc = autograde(course, force=True)
    assert proc.returncode == 0, proc.output[-6000:]
    return course, all_scores(course)


def points(result, student):
    return {cell: score for (nb, cell), (score, _) in result[student].items() if nb == "vae"}


def errors(course, student):
    return grade_cell_errors(course / "autograded" / student / ASSIGNMENT / "vae.ipynb")


def test_reference_gets_full_marks(graded):
    """Does the solution notebook with its trained weights get every point?"""
    course, result = graded
    assert points(result, "reference") == FULL
    assert set(errors(course, "reference").values()) == {""}


def test_untouched_release_scores_zero_with_messages(graded):
    """Does the release as handed out score 0, with 'not implemented yet' in every grade cell?"""
    course, result = graded
    assert points(result, "untouched") == {cell: 0.0 for cell in FULL}
    found = errors(course, "untouched")
    assert set(found) == set(FULL)
    for cell, error in found.items():
        assert error.startswith("NotImplementedYet:") and "not implemented yet" in error, (cell, error)


def test_untrained_weights_lose_only_trained_points(graded):
    """Does correct code with random-init weights lose exactly the trained-model points?"""
    course, result = graded
    assert points(result, "untrained") == {**FULL, "test_vae_probe": 0.0, "test_vae_loss": 0.0}
    found = errors(course, "untrained")
    assert all(part in found["test_vae_probe"] for part in ("accuracy too low", "expected >= ", "got "))
    assert all(part in found["test_vae_loss"] for part in ("too high", "expected <= ", "got "))


def test_kl_without_half_loses_only_kl_points(graded):
    """Does loss_kl without the factor 1/2 lose exactly the KL points, with the hint?"""
    course, result = graded
    assert points(result, "kl_no_half") == {**FULL, "test_vae_loss_kl": 0.0}
    assert "did you drop the factor 1/2?" in errors(course, "kl_no_half")["test_vae_loss_kl"]


def test_feedback_shows_the_hint(graded):
    """Does `nbgrader generate_feedback` write reports, with the KL hint for that student?"""
    course, _ = graded
    proc = nbgrader(course, "generate_feedback", ASSIGNMENT, "--force")
    assert proc.returncode == 0, proc.stderr[-2000:]
    html = (course / "feedback" / "kl_no_half" / ASSIGNMENT / "vae.html").read_text()
    assert "did you drop the factor 1/2?" in html
    assert "test_vae_loss" in (course / "feedback" / "reference" / ASSIGNMENT /
                                  "vae.html").read_text()
