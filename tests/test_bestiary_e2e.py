"""Does real `nbgrader autograde` score every notebook of the bestiary assignment as it should,
cell by cell?

One course and one `nbgrader autograde` call grade every crafted student: each student submits
every notebook of the assignment, in the state the student's name says (the reference with its
trained weights and the weights of its demonstrations, the untouched release, the named mistakes
of ``CASES`` with untrained weights, the correct alternatives of ``CASES``). Each test is
parametrized over the notebooks; what differs between them is data.

Grading one notebook takes a minute or two, so the submissions are few: the named mistakes are
in functions that the trained-model checks never call, and one submission shows both that
untrained weights lose exactly the trained-model cells and that each mistake loses exactly its
cell; the alternatives of a notebook that need no weights of their own ride in that submission
too (in other cells), and only the alternatives that come with their own weights make a
submission of their own.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch
from conftest import (
    COURSE_ROOT,
    assert_full_marks,
    assert_no_hidden_tests,
    assert_release_scores_zero,
    errors,
    points,
    swap,
)

from autograder.checks.transfer import VARIANTS
from autograder.cli.weights import reference_weights, write_untrained_weights
from autograder.grading.course import all_scores, autograde, build_course, graded, nbgrader, outputs, submit
from autograder.manifest import notebook, notebooks

pytestmark = pytest.mark.slow

ASSIGNMENT = "bestiary"
SOLUTIONS = COURSE_ROOT / "solutions" / ASSIGNMENT


def _uncentred_pca_weights(folder: Path) -> None:
    """The solution's LinearAutoencoder with bias=False, set to the top-k singular subspace of
    the uncentred training images (the optimum of a linear map without offset), as the
    submission's linear_ae.pth."""
    from data_tools import MNIST

    k = notebook("linear", ASSIGNMENT).n_components
    x = MNIST(train=True, verbose=False).x.flatten(1).double()
    _, _, vh = torch.linalg.svd(x, full_matrices=False)
    torch.save({"encoder.weight": vh[:k].float().contiguous(),
                "decoder.weight": vh[:k].T.float().contiguous()}, folder / "linear_ae.pth")


def _trained_transfer(folder: Path) -> None:
    """The submitted transfer.ipynb of ``folder`` trained as a student would (every cell but
    the tests, seed 0), its weights written into ``folder``."""
    import shutil
    import tempfile

    import nbformat

    from autograder.cli.weights import train_without_tests

    with tempfile.TemporaryDirectory() as tmp:
        train_without_tests(nbformat.read(folder / "transfer.ipynb", as_version=4),
                            Path(tmp) / "transfer.ipynb")
        for path in Path(tmp).glob("*.pth"):
            shutil.copy(path, folder / path.name)


@dataclass(frozen=True)
class Case:
    """One notebook, and what its crafted submissions must score."""

    name: str
    #: Points per grade cell (written out, not read from the manifest, so that a change of the
    #: points in the notebook and the manifest together still fails here).
    full: dict[str, float]
    #: The trained-model cells, each with the words its message must hold for untrained weights.
    untrained: dict[str, tuple[str, ...]]
    #: Named mistakes, (solution text, wrong text), all in one submission with untrained
    #: weights (none of them is in code that the trained-model checks call)...
    mistakes: tuple[tuple[str, str], ...]
    #: ... and the cells they lose, each with the words of its hint; every other point but the
    #: trained-model cells' is kept.
    hints: dict[str, str]
    #: Correct alternatives, (solution text, other text), all in one submission: full marks...
    alternatives: tuple[tuple[str, str], ...]
    #: ... in a submission of their own, with the reference's weights but the files this writes
    #: into it; without it, the alternatives are in the submission of the named mistakes, and
    #: the cells they are in (``alternative_cells``, neither trained-model nor mistake cells)
    #: keep every point there.
    alternative_weights: Callable[[Path], None] | None = None
    alternative_cells: tuple[str, ...] = ()
    #: Crafted models that aim at the trained-model cells with untrained weights, (solution
    #: text, crafted text), all in one submission...
    crafted: tuple[tuple[str, str], ...] = ()
    #: ... and the cells they must lose, each with the words its message must hold.
    crafted_lost: dict[str, tuple[str, ...]] = field(default_factory=dict)


CASES = (
    Case(
        name="latent",
        full={"test_latent_loss": 3.0, "test_latent_interpolate": 1.0, "test_latent_grid": 1.0,
              "test_latent_module": 1.0, "test_latent_sample": 1.0, "test_latent_lightning": 2.0,
              "test_latent_trained_elbo": 2.0, "test_latent_trained_samples": 3.0},
        untrained={"test_latent_trained_elbo": ("too high", "expected <= ", "got "),
                   "test_latent_trained_samples": ("digit classifier", "mean confidence too low")},
        # The sigmoid applied twice in the loss; interpolate without its last endpoint.
        mistakes=(('bce = F.binary_cross_entropy_with_logits(logits, x, reduction="none")',
                   'bce = F.binary_cross_entropy_with_logits(torch.sigmoid(logits), x, '
                   'reduction="none")'),
                  ("t = torch.linspace(0.0, 1.0, n_steps, dtype=z0.dtype)[:, None]",
                   "t = (torch.arange(n_steps, dtype=z0.dtype) / n_steps)[:, None]")),
        hints={"test_latent_loss": "the sigmoid applied twice",
               "test_latent_interpolate": "the last row is not z1"},
        # The quantiles with torch.special.ndtri; the draw with torch.distributions (in the
        # submission of the mistakes).
        alternatives=(("q = torch.distributions.Normal(0.0, 1.0).icdf(p)", "q = torch.special.ndtri(p)"),
                      ("return z_mean + torch.exp(0.5 * z_logvar) * torch.randn_like(z_mean)",
                       "return torch.distributions.Normal(z_mean, torch.exp(0.5 * z_logvar)).rsample()")),
        alternative_cells=("test_latent_grid", "test_latent_sample"),
    ),
    Case(
        name="linear",
        full={"test_linear_pca": 3.0, "test_linear_autoencoder": 2.0, "test_linear_subspace": 2.0,
              "test_linear_error": 2.0, "test_linear_l1": 1.0, "test_linear_kl": 2.0,
              "test_linear_sparse_autoencoder": 1.0, "test_linear_sparse_activation": 1.0,
              "test_linear_sparse_share": 1.0, "test_linear_sparse_error": 1.0},
        untrained={"test_linear_subspace": ("largest principal angle",),
                   "test_linear_error": ("divided by that of PCA",),
                   "test_linear_sparse_activation": ("average hidden activation",),
                   "test_linear_sparse_share": ("share of the trained sparse autoencoder",),
                   "test_linear_sparse_error": ("reconstruction error of the trained sparse",)},
        # The data not centred in pca; the arguments of the KL swapped.
        mistakes=(("_, S, Vh = torch.linalg.svd(X - mean, full_matrices=False)",
                   "_, S, Vh = torch.linalg.svd(X, full_matrices=False)"),
                  ("kl = rho * torch.log(rho / rho_hat) + (1 - rho) * torch.log((1 - rho) / (1 - rho_hat))",
                   "kl = rho_hat * torch.log(rho_hat / rho) + (1 - rho_hat) * torch.log((1 - rho_hat) / "
                   "(1 - rho))")),
        hints={"test_linear_pca": "the data were not centred",
               "test_linear_kl": "arguments of the KL swapped"},
        # eigh with reordering; a linear AE without biases (at its own optimum, the uncentred
        # singular subspace).
        alternatives=(("_, S, Vh = torch.linalg.svd(X - mean, full_matrices=False)",
                       "values, vectors = torch.linalg.eigh((X - mean).T @ (X - mean) / (X.shape[0] - 1))\n"
                       "    order = torch.argsort(values, descending=True)\n"
                       "    return mean, vectors[:, order[:n_components]].T, values[order[:n_components]]"),
                      ("nn.Linear(28 * 28, n_components)", "nn.Linear(28 * 28, n_components, bias=False)"),
                      ("nn.Linear(n_components, 28 * 28)", "nn.Linear(n_components, 28 * 28, bias=False)")),
        alternative_weights=_uncentred_pca_weights,
        # The image as the linear AE's code (784 columns, where the measure once read k from
        # the codes); a sparse AE with the same activation 0.05 for every unit and image, whose
        # forward returns its input (all three sparse cells passed in a one-process evaluation).
        crafted=(("return self.encoder(x.flatten(1))  # (B, 784) -> (B, n_components)",
                  "return x.flatten(1) + 0 * self.encoder(x.flatten(1)).sum(1, keepdim=True)"),
                 ("return self.decoder(z).reshape(-1, 1, 28, 28)  # (B, 784) -> (B, 1, 28, 28)",
                  "return z.reshape(-1, 1, 28, 28) + 0 * self.decoder.weight.sum()"),
                 ("return torch.sigmoid(self.encoder(x.flatten(1)))  # (B, 784) -> (B, n_hidden)",
                  "return torch.full((len(x), self.encoder.out_features), 0.05) + 0 * "
                  "self.encoder.bias.sum()"),
                 ("return z, self.decode(z)", "return z, x + 0 * self.decode(z)")),
        crafted_lost={
            "test_linear_subspace": ("the codes have 784 columns", "n_components = 6"),
            "test_linear_error": ("the codes have 784 columns", "n_components = 6"),
            "test_linear_sparse_activation": ("do not carry the test images",),
            "test_linear_sparse_share": ("do not carry the test images",),
            "test_linear_sparse_error": ("reconstruction error of the trained sparse",)},
    ),
    Case(
        name="transfer",
        full={"test_transfer_few_label_subset": 2.0, "test_transfer_encoder_decoder": 1.0,
              "test_transfer_classifier": 2.0, "test_transfer_swap_ae": 2.0,
              "test_transfer_pretrained": 2.0, "test_transfer_gain": 2.0,
              "test_transfer_swap_digit": 2.0, "test_transfer_swap_style": 2.0},
        untrained={"test_transfer_pretrained": ("pretrained few-label classifier", "too low"),
                   "test_transfer_gain": ("baseline of the gain", "train the classifier from scratch"),
                   "test_transfer_swap_digit": ("digit judge", "too low"),
                   "test_transfer_swap_style": ("style judge", "too low")},
        # Sampling with replacement; softmax probabilities instead of logits; swap through
        # decoder A.
        mistakes=(("chosen.append(members[torch.randperm(len(members), generator=generator)[:n_per_class]])",
                   "chosen.append(members[torch.randint(len(members), (n_per_class,), generator=generator)])"),
                  ("        return self.head(self.encoder(x))\n",
                   "        return torch.softmax(self.head(self.encoder(x)), dim=1)\n"),
                  ("        return self.decoder_b(self.encoder(x_a))\n",
                   "        return self.decoder_a(self.encoder(x_a))\n")),
        hints={"test_transfer_few_label_subset": "you sample with replacement",
               "test_transfer_classifier": "without softmax",
               "test_transfer_swap_ae": "swap decodes with decoder_a"},
        # MLP encoders and decoders, and both classifiers on frozen encoders: trained by the
        # submitted notebook itself.
        alternatives=VARIANTS["mlp_frozen"],
        alternative_weights=_trained_transfer,
        # The image as the swap's code, decoder A the identity and decoder B the public bold
        # filter: keeps every digit and draws it bold, with nothing trained.
        crafted=(("        self.encoder = Encoder(n_components)\n"
                  "        self.decoder_a = Decoder(n_components)\n"
                  "        self.decoder_b = Decoder(n_components)\n",
                  "        from data_tools.styles import bold\n\n"
                  "        class Bold(nn.Module):\n"
                  "            def forward(self, z):\n"
                  "                return bold(z.reshape(-1, 1, 28, 28))\n\n"
                  "        self.encoder = nn.Flatten()                     # the image as the code\n"
                  "        self.decoder_a = nn.Unflatten(1, (1, 28, 28))\n"
                  "        self.decoder_b = Bold()\n"
                  "        self.scale = nn.Parameter(torch.ones(()))\n"),),
        crafted_lost={
            "test_transfer_swap_digit": ("the codes have 784 columns", "n_components = 16"),
            "test_transfer_swap_style": ("the codes have 784 columns", "n_components = 16")},
    ),
)
IDS = [case.name for case in CASES]
STUDENTS = ("reference", "untouched", "untrained_mistakes", "alternative", "crafted")


def _edited(text: str, edits) -> str:
    for old, new in edits:
        text = swap(text, old, new)
    return text


@pytest.fixture(scope="module")
def course_scores(tmp_path_factory):
    """One course; every student submits every notebook; one autograde call grades them all.
    Only the reference submits the weights of the demonstrations (the graded run loads them);
    for the others the graded run leaves those plots out. No graded run trains anything."""
    course = build_course(tmp_path_factory.mktemp(ASSIGNMENT) / "course", (ASSIGNMENT,))
    for case in CASES:
        entry = notebook(case.name, ASSIGNMENT)
        weights = reference_weights(case.name, ASSIGNMENT)
        trained = {w: weights / w for w in entry.weights}
        demos = {w: weights / w for w in entry.extra_files}
        solution = (SOLUTIONS / f"{case.name}.ipynb").read_text()
        name = f"{case.name}.ipynb"
        submit(course, "reference", {name: solution, **trained, **demos}, ASSIGNMENT)
        submit(course, "untouched", {name: course / "assignments" / ASSIGNMENT / name}, ASSIGNMENT)
        mistakes = case.mistakes if case.alternative_weights else case.mistakes + case.alternatives
        mistaken = submit(course, "untrained_mistakes", {name: _edited(solution, mistakes)}, ASSIGNMENT)
        write_untrained_weights(mistaken, [case.name], assignment=ASSIGNMENT)
        if case.alternative_weights is not None:
            case.alternative_weights(submit(course, "alternative", {
                name: _edited(solution, case.alternatives), **trained}, ASSIGNMENT))
        if case.crafted:
            crafted = submit(course, "crafted", {name: _edited(solution, case.crafted)}, ASSIGNMENT)
            write_untrained_weights(crafted, [case.name], assignment=ASSIGNMENT)
    run = autograde(course, force=True, assignment=ASSIGNMENT)
    assert run.returncode == 0, run.output[-6000:]
    print(f"autograde of {len(STUDENTS)} submissions of {len(CASES)} notebooks: {run.seconds:.0f} s")
    return course, all_scores(course, ASSIGNMENT)


def test_every_notebook_of_the_assignment_has_a_case():
    """Does every notebook of the assignment have its case here (a new or renamed notebook
    fails here instead of escaping the end-to-end test)?"""
    assert sorted(IDS) == sorted(nb.name for nb in notebooks(ASSIGNMENT))
    for case in CASES:
        assert set(case.untrained) | set(case.hints) <= set(case.full), case.name
        if case.alternative_weights is None:
            assert case.alternative_cells and set(case.alternative_cells) <= set(case.full), case.name
            assert not set(case.alternative_cells) & (set(case.untrained) | set(case.hints)), case.name


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_reference_gets_full_marks(course_scores, case):
    """Does the solution notebook with its trained weights get every point, without an error?"""
    course, result = course_scores
    assert_full_marks(course, result, "reference", case.name, case.full, ASSIGNMENT)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_untouched_release_scores_zero_with_messages(course_scores, case):
    """Does the release as handed out score 0, with 'not implemented yet' in every grade cell?"""
    course, result = course_scores
    assert_release_scores_zero(course, result, "untouched", case.name, case.full, ASSIGNMENT)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_untrained_weights_and_named_mistakes_lose_exactly_their_cells(course_scores, case):
    """Do untrained weights lose exactly the trained-model cells, each with its message, and the
    named mistakes (pca without centring, a swapped KL, the sigmoid applied twice, interpolate
    without its last endpoint, labels drawn with replacement, softmax logits, a swap through
    decoder A) exactly their cells, each with the hint that names the mistake?"""
    course, result = course_scores
    found = errors(course, "untrained_mistakes", case.name, ASSIGNMENT)
    lost = dict.fromkeys([*case.untrained, *case.hints], 0.0)
    assert points(result, "untrained_mistakes", case.name) == {**case.full, **lost}, found
    for cell, words in case.untrained.items():
        assert all(word in found[cell] for word in words), (cell, found[cell])
    for cell, hint in case.hints.items():
        assert hint in found[cell], (cell, found[cell])


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_correct_alternatives_keep_full_marks(course_scores, case):
    """Do correct alternatives (eigh with reordering, a linear AE without biases at its own
    optimum; torch.special.ndtri, the draw with torch.distributions; MLP encoders and decoders
    with frozen encoders under the classifiers' heads, trained by that notebook) keep every
    point?"""
    course, result = course_scores
    if case.alternative_weights is not None:
        assert_full_marks(course, result, "alternative", case.name, case.full, ASSIGNMENT)
        return
    found = errors(course, "untrained_mistakes", case.name, ASSIGNMENT)
    got = points(result, "untrained_mistakes", case.name)
    for cell in case.alternative_cells:
        assert got[cell] == case.full[cell] and found[cell] == "", (cell, found[cell])


@pytest.mark.parametrize("case", [case for case in CASES if case.crafted],
                         ids=[case.name for case in CASES if case.crafted])
def test_crafted_models_lose_the_cells_they_aim_at(course_scores, case):
    """Do untrained models crafted for the trained-model cells (the image as the code of the
    linear AE and of the swap, with the public bold filter as decoder B; a sparse AE with
    constant codes whose forward returns its input) lose those cells, each with a message that
    says why (the notebook's code size; activations that carry nothing of the images)?"""
    course, result = course_scores
    found = errors(course, "crafted", case.name, ASSIGNMENT)
    got = points(result, "crafted", case.name)
    for cell, words in case.crafted_lost.items():
        assert got[cell] == 0.0 and all(word in found[cell] for word in words), (cell, found[cell])


def test_graded_runs_of_the_latent_notebook_train_nothing(course_scores):
    """Does a graded run of latent.ipynb train nothing: no Lightning progress (sanity check,
    epochs) in any output, the submitted demonstration weights loaded, and without them their
    plots left out with a line saying so?"""
    course, _ = course_scores
    for student in ("reference", "untrained_mistakes"):
        nb = graded(course, student, "latent", ASSIGNMENT)
        text = "".join(outputs(nb, index=i) for i, c in enumerate(nb.cells) if c.cell_type == "code")
        assert "Sanity Checking" not in text and "Training:" not in text, student
    reference = graded(course, "reference", "latent", ASSIGNMENT)
    assert "Loaded LitAutoencoder weights from latent_ae.pth" in outputs(reference, "latent_ae_training")
    assert "KL per latent dimension" in outputs(reference, "latent_betas_plots")
    untrained = graded(course, "untrained_mistakes", "latent", ASSIGNMENT)
    assert "latent_ae.pth not found" in outputs(untrained, "latent_ae_training")
    assert "not found: the comparison is left out" in outputs(untrained, "latent_betas")


def test_trained_cells_show_the_graders_numbers(course_scores):
    """Do the trained-model cells of the reference's latent.ipynb show the numbers the grader
    measured beside their bars (the kernel leaves these checks to the grader)?"""
    course, _ = course_scores
    reference = graded(course, "reference", "latent", ASSIGNMENT)
    assert "negative ELBO per test image" in outputs(reference, "test_latent_trained_elbo")
    assert "digit classes covered" in outputs(reference, "test_latent_trained_samples")
    assert "its numbers are in the graded cell" in outputs(reference, "latent_compare_samples")


def test_transfer_cells_show_the_graders_numbers(course_scores):
    """Do the trained-model cells of the reference's transfer.ipynb show the numbers the grader
    measured beside their bars, and does the graded run train nothing?"""
    course, _ = course_scores
    reference = graded(course, "reference", "transfer", ASSIGNMENT)
    assert "test accuracy of the pretrained few-label classifier" in outputs(reference, "test_transfer_pretrained")
    gain = outputs(reference, "test_transfer_gain")
    assert "gain of pretraining" in gain and "test accuracy of the classifier from scratch" in gain
    assert "keep their digit" in outputs(reference, "test_transfer_swap_digit")
    assert "style B" in outputs(reference, "test_transfer_swap_style")
    text = "".join(outputs(reference, index=i) for i, c in enumerate(reference.cells) if c.cell_type == "code")
    assert "pretraining epochs" not in text and "swap autoencoder epochs" not in text


@pytest.fixture(scope="module")
def reference_feedback(course_scores):
    """The reference's feedback folder after `nbgrader generate_feedback`."""
    course, _ = course_scores
    proc = nbgrader(course, "generate_feedback", ASSIGNMENT, "--student", "reference", "--force")
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-2000:]
    return course / "feedback" / "reference" / ASSIGNMENT


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_feedback_holds_no_hidden_test(reference_feedback, case):
    """Does the feedback page show the test cells without the hidden tests' code or markers,
    saying instead how many hidden checks ran?"""
    html = (reference_feedback / f"{case.name}.html").read_text()
    assert_no_hidden_tests(html, SOLUTIONS / f"{case.name}.ipynb")
