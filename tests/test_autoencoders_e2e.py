"""Does real `nbgrader autograde` score every notebook of the autoencoders assignment as it
should, cell by cell?

One course and one `nbgrader autograde` call grade every crafted student: each student submits
every notebook of the assignment, in the state the student's name says (the reference with its
trained weights, the untouched release, the reference with untrained weights, the named
mistakes of ``CASES``, the correct alternatives of ``CASES``). Each test is parametrized over
the notebooks; what differs between them is data.
"""
from __future__ import annotations

from dataclasses import dataclass

import pytest
from conftest import (
    ASSIGNMENT,
    SOLUTIONS,
    WEIGHTS,
    assert_full_marks,
    assert_no_hidden_tests,
    assert_release_scores_zero,
    errors,
    page_text,
    points,
    reference_weights,
    swap,
)

from autograder.cli.weights import write_untrained_weights
from autograder.grading.course import all_scores, autograde, build_course, nbgrader, submit
from autograder.manifest import notebooks

pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class Case:
    """One notebook, and what its crafted submissions must score."""

    name: str
    #: Points per grade cell (written out, not read from the manifest, so that a change of the
    #: points in the notebook and the manifest together still fails here).
    full: dict[str, float]
    #: The trained-model cells, each with the words its message must hold for untrained weights.
    untrained: dict[str, tuple[str, ...]]
    #: Named mistakes, (solution text, wrong text), all in one submission...
    mistakes: tuple[tuple[str, str], ...]
    #: ... and the cells they lose, each with the words of its hint; every other point is kept.
    hints: dict[str, str]
    #: Correct alternatives, (solution text, other text), all in one submission: full marks.
    alternatives: tuple[tuple[str, str], ...]


CASES = (
    Case(
        name="ae",
        full={"test_ae_encoder": 2.0, "test_ae_decoder": 2.0, "test_ae_probe": 2.0,
              "test_ae_reconstruction": 2.0},
        untrained={"test_ae_probe": ("accuracy too low",),
                   "test_ae_reconstruction": ("reconstruction error",)},
        # An Encoder that hard-codes 10 components.
        mistakes=(("nn.Linear(250, n_components),", "nn.Linear(250, 10),"),),
        hints={"test_ae_encoder": "n_components=2: use n_components in the last layer"},
        # Other ways to flatten and unflatten (the same weights).
        alternatives=(("return self.fc(h.flatten(1))", "return self.fc(h.view(h.shape[0], -1))"),
                      ("h = self.fc(z).reshape(-1, 16, 20, 20)",
                       "h = self.fc(z).view(z.shape[0], 16, 20, 20)")),
    ),
    Case(
        name="dae",
        full={"test_dae": 3.0, "test_dae_probe": 2.0, "test_dae_denoising": 2.0},
        untrained={"test_dae_probe": ("accuracy too low",), "test_dae_denoising": ("too high",)},
        # A DAE that hard-codes a code of 10 (its weights still fit).
        mistakes=(("nn.Linear(128, n_components),", "nn.Linear(128, 10),"),
                  ("nn.Linear(n_components, 128),", "nn.Linear(10, 128),")),
        hints={"test_dae": "n_components=2: use n_components"},
        # The gate written out: x * sigmoid(f) = x / (1 + exp(-f)).
        alternatives=(("denoised_x = x * torch.sigmoid(logits)",
                       "denoised_x = x / (1 + torch.exp(-logits))"),),
    ),
    Case(
        name="vae",
        full={"test_vae_encoder": 1.0, "test_vae_sample": 2.0, "test_vae_loss_kl": 2.0,
              "test_vae_decoder": 2.0, "test_vae_loss_loglik": 2.0, "test_vae_probe": 2.0,
              "test_vae_loss": 2.0},
        untrained={"test_vae_probe": ("accuracy too low", "expected >= ", "got "),
                   "test_vae_loss": ("too high", "expected <= ", "got ")},
        # loss_kl without the factor 1/2.
        mistakes=(("kl = 0.5 * (torch.exp(z_logvar) + z_mean ** 2 - 1.0 - z_logvar)",
                   "kl = (torch.exp(z_logvar) + z_mean ** 2 - 1.0 - z_logvar)"),),
        hints={"test_vae_loss_kl": "did you drop the factor 1/2?"},
        # torch.distributions for the draw and both losses, the likelihood with its constant.
        alternatives=(
            ("return z_mean + torch.exp(0.5 * z_logvar) * eps",
             "return torch.distributions.Normal(z_mean, torch.exp(0.5 * z_logvar)).rsample()"),
            ("kl = 0.5 * (torch.exp(z_logvar) + z_mean ** 2 - 1.0 - z_logvar)",
             "kl = torch.distributions.kl_divergence(torch.distributions.Normal(z_mean, "
             "torch.exp(0.5 * z_logvar)), torch.distributions.Normal(0.0, 1.0))"),
            ("nll = 0.5 * (y_logvar + (x - y_mean) ** 2 * torch.exp(-y_logvar))",
             "nll = -torch.distributions.Normal(y_mean, torch.exp(0.5 * y_logvar)).log_prob(x)")),
    ),
)
IDS = [case.name for case in CASES]
STUDENTS = ("reference", "untouched", "untrained", "mistakes", "alternative")


def _edited(text: str, edits) -> str:
    for old, new in edits:
        text = swap(text, old, new)
    return text


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """One course; every student submits every notebook; one autograde call grades them all."""
    course = build_course(tmp_path_factory.mktemp("autoencoders") / "course", (ASSIGNMENT,))
    for case in CASES:
        weights = reference_weights(case.name)
        trained = {w: weights / w for w in WEIGHTS[case.name]}
        solution = (SOLUTIONS / f"{case.name}.ipynb").read_text()
        name = f"{case.name}.ipynb"
        submit(course, "reference", {name: solution, **trained})
        submit(course, "untouched", {name: course / "assignments" / ASSIGNMENT / name})
        write_untrained_weights(submit(course, "untrained", {name: solution}), [case.name])
        submit(course, "mistakes", {name: _edited(solution, case.mistakes), **trained})
        submit(course, "alternative", {name: _edited(solution, case.alternatives), **trained})
    run = autograde(course, force=True)
    assert run.returncode == 0, run.output[-6000:]
    return course, all_scores(course)


@pytest.fixture(scope="module")
def feedback(graded):
    """The feedback folder after one `nbgrader generate_feedback` for every student."""
    course, result = graded
    assert sorted(result) == sorted(STUDENTS)
    proc = nbgrader(course, "generate_feedback", ASSIGNMENT, "--force")
    assert proc.returncode == 0, proc.stderr[-2000:]
    return course / "feedback"


def test_every_notebook_of_the_assignment_has_a_case():
    """Does every notebook of the assignment have its case here (a new or renamed notebook
    fails here instead of escaping the end-to-end test)?"""
    assert IDS == [nb.name for nb in notebooks(ASSIGNMENT)]
    for case in CASES:
        assert set(case.untrained) | set(case.hints) <= set(case.full), case.name


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_reference_gets_full_marks(graded, case):
    """Does the solution notebook with its trained weights get every point, without an error?"""
    course, result = graded
    assert_full_marks(course, result, "reference", case.name, case.full)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_untouched_release_scores_zero_with_messages(graded, case):
    """Does the release as handed out score 0, with 'not implemented yet' in every grade cell?"""
    course, result = graded
    assert_release_scores_zero(course, result, "untouched", case.name, case.full)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_untrained_weights_lose_only_trained_points(graded, case):
    """Does correct code with random-init weights lose exactly the trained-model points, each
    cell with its message?"""
    course, result = graded
    assert points(result, "untrained", case.name) == {**case.full, **dict.fromkeys(case.untrained, 0.0)}
    found = errors(course, "untrained", case.name)
    for cell, words in case.untrained.items():
        assert all(word in found[cell] for word in words), (cell, found[cell])


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_named_mistakes_lose_their_cells_with_their_hints(graded, case):
    """Do the named mistakes (a hard-coded code size, a KL without its factor 1/2) lose exactly
    their cells, each with the hint that names the mistake?"""
    course, result = graded
    found = errors(course, "mistakes", case.name)
    assert points(result, "mistakes", case.name) == {**case.full, **dict.fromkeys(case.hints, 0.0)}, found
    for cell, hint in case.hints.items():
        assert hint in found[cell], (cell, found[cell])


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_correct_alternatives_keep_full_marks(graded, case):
    """Do correct alternatives (other reshapes, the gate written out, torch.distributions and the
    likelihood's constant) keep every point?"""
    course, result = graded
    assert_full_marks(course, result, "alternative", case.name, case.full)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_feedback_shows_every_cell_and_the_hints(feedback, case):
    """Does `nbgrader generate_feedback` write a report for every student, the reference's with
    every grade cell, and that of the student with the named mistakes with their hints?"""
    for student in STUDENTS:
        assert (feedback / student / ASSIGNMENT / f"{case.name}.html").is_file(), student
    html = (feedback / "reference" / ASSIGNMENT / f"{case.name}.html").read_text()
    assert all(cell in html for cell in case.full), case.name
    html = (feedback / "mistakes" / ASSIGNMENT / f"{case.name}.html").read_text()
    assert all(hint in html for hint in case.hints.values()), case.name


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_feedback_holds_no_hidden_test(feedback, case):
    """Does every student's feedback page show the test cells without the hidden tests' code or
    markers, saying instead how many hidden checks ran?"""
    for student in STUDENTS:
        html = (feedback / student / ASSIGNMENT / f"{case.name}.html").read_text()
        assert_no_hidden_tests(html, SOLUTIONS / f"{case.name}.ipynb")


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_feedback_starts_with_a_summary(feedback, case):
    """Does every feedback page start with the points, the reference's saying nothing was lost
    and listing its graded numbers, and the untrained student's naming each lost cell with
    its hint?"""
    full = sum(case.full.values())
    text = page_text((feedback / "reference" / ASSIGNMENT / f"{case.name}.html").read_text())
    assert f"Summary: {full:g} / {full:g} points" in text and "No points were lost." in text
    assert "passes: required" in text.split("No points were lost.")[0]
    text = page_text((feedback / "untrained" / ASSIGNMENT / f"{case.name}.html").read_text())
    summary = text[text.index("Summary:"):text.index("Where points were lost")]
    lost = [cell for cell in case.full if f"{cell} 0 / " in summary]
    assert lost, summary
    after = text[text.index("Where points were lost"):]
    for cell in lost:
        assert f"{cell} (0 / " in after and "hint:" in after, after[:2000]
