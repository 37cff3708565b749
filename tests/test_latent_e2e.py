"""Does real `nbgrader autograde` score submissions of the latent-space notebook (bestiary) as it
should, cell by cell?"""
from __future__ import annotations

import pytest
from conftest import COURSE_ROOT, grade_cell_errors, reference_weights

from autograder.cli.weights import write_untrained_weights
from autograder.grading.course import all_scores, autograde, build_course, graded, outputs, submit
from autograder.manifest import notebook

pytestmark = pytest.mark.slow

ASSIGNMENT = "bestiary"
NAME = "latent"
SOLUTION = COURSE_ROOT / "solutions" / ASSIGNMENT / f"{NAME}.ipynb"
FULL = {cell: float(points) for cell, points in notebook(NAME, ASSIGNMENT).points.items()}
TRAINED = ("test_latent_trained_elbo", "test_latent_trained_samples")

# The solution's reconstruction line, the same with the sigmoid applied twice, and a correct
# alternative on probabilities computed once.
BCE_LINE = 'bce = F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(dim=(1, 2, 3))'
BCE_TWICE = ('bce = F.binary_cross_entropy_with_logits(torch.sigmoid(logits), x, '
             'reduction="none").sum(dim=(1, 2, 3))')
BCE_PROBS = ('bce = F.binary_cross_entropy(torch.sigmoid(logits), x, '
             'reduction="none").sum(dim=(1, 2, 3))')


@pytest.fixture(scope="module")
def course_scores(tmp_path_factory):
    entry = notebook(NAME, ASSIGNMENT)
    weights = reference_weights(NAME, ASSIGNMENT)
    course = build_course(tmp_path_factory.mktemp(NAME) / "course", (ASSIGNMENT,))
    trained = {w: weights / w for w in entry.weights}
    # The reference submits the demonstration weights too (the graded run loads them); the
    # others do not (the graded run leaves those plots out). Neither trains anything.
    demos = {w: weights / w for w in entry.extra_files}
    assert all(p.exists() for p in demos.values()), sorted(demos)
    text = SOLUTION.read_text()
    assert text.count(BCE_LINE.replace('"', '\\"')) == 1
    variant = lambda new: text.replace(BCE_LINE.replace('"', '\\"'), new.replace('"', '\\"'))  # noqa: E731
    submit(course, "reference", {f"{NAME}.ipynb": SOLUTION, **trained, **demos}, ASSIGNMENT)
    submit(course, "untouched", {f"{NAME}.ipynb": course / "assignments" / ASSIGNMENT / f"{NAME}.ipynb"},
           ASSIGNMENT)
    dest = submit(course, "untrained", {f"{NAME}.ipynb": SOLUTION}, ASSIGNMENT)
    write_untrained_weights(dest, [NAME], assignment=ASSIGNMENT)
    submit(course, "sigmoid_twice", {f"{NAME}.ipynb": variant(BCE_TWICE), **trained}, ASSIGNMENT)
    submit(course, "probabilities", {f"{NAME}.ipynb": variant(BCE_PROBS), **trained}, ASSIGNMENT)
    proc = autograde(course, force=True, assignment=ASSIGNMENT)
    assert proc.returncode == 0, proc.output[-6000:]
    print(f"autograde of 5 submissions: {proc.seconds:.0f} s")
    return course, all_scores(course, ASSIGNMENT)


def points(result, student):
    return {cell: score for (nb, cell), (score, _) in result[student].items() if nb == NAME}


def errors(course, student):
    return grade_cell_errors(course / "autograded" / student / ASSIGNMENT / f"{NAME}.ipynb")


def test_reference_gets_full_marks(course_scores):
    """Does the solution notebook with its trained weights get every point?"""
    course, result = course_scores
    assert points(result, "reference") == FULL
    assert set(errors(course, "reference").values()) == {""}


def test_graded_runs_train_nothing(course_scores):
    """Does a graded run train nothing: no Lightning progress (sanity check, epochs) in any
    output, the submitted demonstration weights loaded, and without them their plots left out
    with a line saying so?"""
    course, _ = course_scores
    for student in ("reference", "untrained"):
        nb = graded(course, student, NAME, ASSIGNMENT)
        text = "".join(outputs(nb, index=i) for i, c in enumerate(nb.cells) if c.cell_type == "code")
        assert "Sanity Checking" not in text and "Training:" not in text, student
    reference = graded(course, "reference", NAME, ASSIGNMENT)
    assert "Loaded LitAutoencoder weights from latent_ae.pth" in outputs(reference, "latent_ae_training")
    assert "KL per latent dimension" in outputs(reference, "latent_betas_plots")
    untrained = graded(course, "untrained", NAME, ASSIGNMENT)
    assert "latent_ae.pth not found" in outputs(untrained, "latent_ae_training")
    assert "not found: the comparison is left out" in outputs(untrained, "latent_betas")


def test_untouched_release_scores_zero_with_messages(course_scores):
    """Does the release as handed out score 0, with 'not implemented yet' in every grade cell?"""
    course, result = course_scores
    assert points(result, "untouched") == {cell: 0.0 for cell in FULL}
    found = errors(course, "untouched")
    assert set(found) == set(FULL)
    for cell, error in found.items():
        assert "not implemented yet" in error, (cell, error)


def test_untrained_weights_lose_only_trained_points(course_scores):
    """Does correct code with random-init weights lose exactly the trained-model points?"""
    course, result = course_scores
    assert points(result, "untrained") == {**FULL, **{cell: 0.0 for cell in TRAINED}}
    found = errors(course, "untrained")
    assert "too high" in found["test_latent_trained_elbo"]
    assert "digit classifier" in found["test_latent_trained_samples"]


def test_sigmoid_twice_loses_only_loss_points(course_scores):
    """Does the sigmoid applied twice lose exactly the loss points, with its hint?"""
    course, result = course_scores
    assert points(result, "sigmoid_twice") == {**FULL, "test_latent_loss": 0.0}
    assert "the sigmoid applied twice" in errors(course, "sigmoid_twice")["test_latent_loss"]


def test_binary_cross_entropy_on_probabilities_keeps_full_marks(course_scores):
    """Does F.binary_cross_entropy on probabilities computed once keep every point?"""
    _, result = course_scores
    assert points(result, "probabilities") == FULL
