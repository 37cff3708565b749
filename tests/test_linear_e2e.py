"""Does real `nbgrader autograde` score bestiary/linear.ipynb submissions as it should, cell by
cell? One autograde run grades every crafted student."""
from __future__ import annotations

import nbformat
import pytest
import torch
from conftest import (
    COURSE_ROOT,
    assert_full_marks,
    assert_release_scores_zero,
    errors,
    points,
    reference_weights,
)

from autograder.cli.weights import write_untrained_weights
from autograder.grading.course import all_scores, autograde, build_course, cell_source, fill, submit
from autograder.manifest import notebook

pytestmark = pytest.mark.slow

ASSIGNMENT = "bestiary"
NOTEBOOK = notebook("linear", ASSIGNMENT)
FULL = {cell: float(p) for cell, p in NOTEBOOK.points.items()}
TRAINED = ("test_linear_subspace", "test_linear_error", "test_linear_sparse_activation",
           "test_linear_sparse_share", "test_linear_sparse_error")
SOLUTION = COURSE_ROOT / "solutions" / ASSIGNMENT / "linear.ipynb"

PCA_SVD = "_, S, Vh = torch.linalg.svd(X - mean, full_matrices=False)"
PCA_EIGH = """values, vectors = torch.linalg.eigh((X - mean).T @ (X - mean) / (X.shape[0] - 1))
    order = torch.argsort(values, descending=True)
    return mean, vectors[:, order[:n_components]].T, values[order[:n_components]]"""
KL_LINE = "kl = rho * torch.log(rho / rho_hat) + (1 - rho) * torch.log((1 - rho) / (1 - rho_hat))"
KL_SWAPPED = ("kl = rho_hat * torch.log(rho_hat / rho) + (1 - rho_hat) * torch.log((1 - rho_hat) / "
              "(1 - rho))")


def _edit(nb, grade_id: str, old: str, new: str):
    source = cell_source(nb, grade_id)
    assert old in source, (grade_id, old)
    return fill(nb, {grade_id: source.replace(old, new)})


def _uncentred_pca_weights(k: int) -> dict:
    """State dict of the solution's LinearAutoencoder with bias=False, set to the top-k singular
    subspace of the uncentred training images (the optimum of a linear map without offset)."""
    from data_tools import MNIST

    x = MNIST(train=True, verbose=False).x.flatten(1).double()
    _, _, vh = torch.linalg.svd(x, full_matrices=False)
    return {"encoder.weight": vh[:k].float().contiguous(), "decoder.weight": vh[:k].T.float().contiguous()}


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    weights = reference_weights("linear", ASSIGNMENT)
    course = build_course(tmp_path_factory.mktemp("linear") / "course", (ASSIGNMENT,))
    release = course / "assignments" / ASSIGNMENT / "linear.ipynb"
    solution = nbformat.read(SOLUTION, as_version=4)
    trained = {w: weights / w for w in NOTEBOOK.weights}

    submit(course, "reference", {"linear.ipynb": SOLUTION, **trained}, ASSIGNMENT)
    submit(course, "untouched", {"linear.ipynb": release}, ASSIGNMENT)
    dest = submit(course, "untrained", {"linear.ipynb": SOLUTION}, ASSIGNMENT)
    write_untrained_weights(dest, ["linear"], assignment=ASSIGNMENT)
    # Named mistakes: the data not centred in pca, the arguments of the KL swapped.
    mistakes = _edit(solution, "linear_pca", PCA_SVD, "_, S, Vh = torch.linalg.svd(X, full_matrices=False)")
    mistakes = _edit(mistakes, "linear_kl", KL_LINE, KL_SWAPPED)
    submit(course, "mistakes", {"linear.ipynb": mistakes, **trained}, ASSIGNMENT)
    # Correct alternatives: eigh with reordering, and a linear AE without biases.
    alternative = _edit(solution, "linear_pca", PCA_SVD, PCA_EIGH)
    alternative = _edit(alternative, "linear_autoencoder", "nn.Linear(28 * 28, n_components)",
                        "nn.Linear(28 * 28, n_components, bias=False)")
    alternative = _edit(alternative, "linear_autoencoder", "nn.Linear(n_components, 28 * 28)",
                        "nn.Linear(n_components, 28 * 28, bias=False)")
    folder = submit(course, "alternative", {"linear.ipynb": alternative,
                                            "sparse_ae.pth": weights / "sparse_ae.pth"}, ASSIGNMENT)
    torch.save(_uncentred_pca_weights(NOTEBOOK.n_components), folder / "linear_ae.pth")

    run = autograde(course, force=True, assignment=ASSIGNMENT)
    assert run.returncode == 0, run.output[-6000:]
    return course, all_scores(course, ASSIGNMENT)


def test_reference_gets_full_marks(graded):
    """Does the solution notebook with its trained weights get every point?"""
    course, result = graded
    assert_full_marks(course, result, "reference", "linear", FULL, ASSIGNMENT)


def test_untouched_release_scores_zero_with_messages(graded):
    """Does the release as handed out score 0, with 'not implemented yet' in every cell?"""
    course, result = graded
    assert_release_scores_zero(course, result, "untouched", "linear", FULL, ASSIGNMENT)


def test_untrained_weights_lose_only_trained_points(graded):
    """Does correct code with random-init weights lose exactly the trained-model points?"""
    course, result = graded
    assert points(result, "untrained", "linear") == {**FULL, **{cell: 0.0 for cell in TRAINED}}
    found = errors(course, "untrained", "linear", ASSIGNMENT)
    assert "largest principal angle" in found["test_linear_subspace"]
    assert "divided by that of PCA" in found["test_linear_error"]
    assert "average hidden activation" in found["test_linear_sparse_activation"]


def test_named_mistakes_lose_their_points_with_their_hints(graded):
    """Do pca without centring and a swapped KL lose exactly their cells, with their hints?"""
    course, result = graded
    assert points(result, "mistakes", "linear") == {**FULL, "test_linear_pca": 0.0, "test_linear_kl": 0.0}
    found = errors(course, "mistakes", "linear", ASSIGNMENT)
    assert "the data were not centred" in found["test_linear_pca"]
    assert "arguments of the KL swapped" in found["test_linear_kl"]


def test_correct_alternatives_keep_full_marks(graded):
    """Do eigh with reordering and a linear AE with bias=False (at its own optimum) get every
    point?"""
    course, result = graded
    assert_full_marks(course, result, "alternative", "linear", FULL, ASSIGNMENT)
