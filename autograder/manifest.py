"""The course manifest: every fact about the course's notebooks, in one place.

Per assignment and notebook: the classes the student writes and the weight file each one is
saved to, the settings constants of the notebook's settings cell, the seeds of the graded
evaluation sets, the module of its checks, and the points of its grade cells. Everything that
needs one of these facts reads it here: ``nbgrader_config.py`` (which weight files a
submission keeps), the replay and its child process, the checks, calibration and the
instructor commands.

Adding a notebook means: its source notebook in ``solutions/<assignment>/``, its checks module
in ``autograder/checks/``, an entry below, and its tests.

This module is imported by ``nbgrader_config.py`` for every nbgrader command: it imports
nothing heavy.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType


@dataclass(frozen=True)
class Model:
    """A class the student writes, built as ``cls(n_components)`` (or ``cls(size)`` when
    ``size`` is given), saved as ``weights``."""

    cls: str
    weights: str
    #: The argument the instructor tools build the class with, when not ``n_components``
    #: (e.g. ``SparseAutoencoder(n_hidden)``).
    size: int | None = None
    #: The arguments, when the class takes other models: each is ``"n_components"`` (the number)
    #: or the name of another class of the notebook, built as ``that_class(n_components)``;
    #: ``("Encoder", "n_components")`` builds ``Classifier(Encoder(n_components), n_components)``.
    args: tuple[str, ...] | None = None

    def build(self, namespace: dict, n_components: int):
        """An instance of the class from a notebook's definitions (``namespace``)."""
        if self.args is None:
            return namespace[self.cls](n_components if self.size is None else self.size)
        return namespace[self.cls](*(n_components if a == "n_components" else namespace[a](n_components)
                                     for a in self.args))


@dataclass(frozen=True)
class Notebook:
    """One graded notebook of an assignment."""

    name: str
    assignment: str
    #: The module of the notebook's checks (``from autograder import <name> as checks``).
    checks: str
    #: The classes and their weight files, in the order the notebook saves them.
    models: tuple[Model, ...]
    #: The literal constants of the settings cell (the replay keeps the student's values).
    settings: tuple[str, ...]
    #: Points per grade cell, as in the source notebook (a test compares the two). Each
    #: property of a trained model has its own cell: one bar, one set of points.
    points: MappingProxyType = field(default_factory=lambda: MappingProxyType({}))
    #: Seeds of the graded evaluation sets (noise of train item i and test item i), or None.
    eval_seeds: tuple[int, int] | None = None
    #: ``n_components`` of the models the instructor tools build (untrained weights, calibration).
    n_components: int = 10
    #: Further files the notebook saves for its own plots; never graded, never required.
    extra_files: tuple[str, ...] = ()
    #: What ``from autograder import <name> as checks`` shows: the names the notebook's cells
    #: use (the checks its test cells call, the helpers its visible cells call); the grader's
    #: internals (oracles, references) stay out of the student's reach (a test compares this
    #: with the source notebook).
    api: tuple[str, ...] = ()

    @property
    def weights(self) -> tuple[str, ...]:
        """The weight files the notebook saves next to itself."""
        return tuple(m.weights for m in self.models)

    @property
    def total_points(self) -> float:
        return float(sum(self.points.values()))

    def model_for(self, weights: str) -> Model:
        """The model saved under the file name ``weights``."""
        for model in self.models:
            if model.weights == weights:
                return model
        raise KeyError(f"{self.name}: no model is saved as {weights!r}; known: {self.weights}")


def _points(**cells: float) -> MappingProxyType:
    return MappingProxyType(dict(cells))


#: Seeds of the varianceMNIST evaluation sets (train, test) of the graded trained-model checks.
VARIANCE_EVAL_SEEDS = (1001, 1002)

# The literal constants of the settings cells (n_epochs is computed from the data source there).
_SETTINGS = ("skip_training", "n_components", "batch_size", "learning_rate", "seed")

NOTEBOOKS: tuple[Notebook, ...] = (
    Notebook(
        name="ae", assignment="autoencoders", checks="autograder.checks.ae",
        api=(
            "check_decoder", "check_encoder", "check_trained_ae_probe",
            "check_trained_ae_reconstruction", "report_trained",
        ),
        models=(Model("Encoder", "ae_encoder.pth"), Model("Decoder", "ae_decoder.pth")),
        settings=_SETTINGS,
        points=_points(test_ae_encoder=2, test_ae_decoder=2, test_ae_probe=2,
                       test_ae_reconstruction=2),
    ),
    Notebook(
        name="dae", assignment="autoencoders", checks="autograder.checks.dae",
        api=(
            "EVAL_SEED_TEST", "check_dae", "check_trained_dae_denoising",
            "check_trained_dae_probe", "report_trained",
        ),
        models=(Model("DAE", "dae.pth"),),
        settings=(*_SETTINGS, "sigma_n"),
        points=_points(test_dae=3, test_dae_probe=2, test_dae_denoising=2),
        eval_seeds=VARIANCE_EVAL_SEEDS,
    ),
    Notebook(
        name="vae", assignment="autoencoders", checks="autograder.checks.vae",
        api=(
            "EVAL_SEED_TEST", "check_decoder", "check_encoder", "check_encoder_sample",
            "check_loss_kl", "check_loss_loglik", "check_trained_vae_loss",
            "check_trained_vae_probe", "report_trained",
        ),
        models=(Model("Encoder", "vae_encoder.pth"), Model("Decoder", "vae_decoder.pth")),
        settings=_SETTINGS,
        points=_points(test_vae_encoder=1, test_vae_sample=2, test_vae_loss_kl=2,
                       test_vae_decoder=2, test_vae_loss_loglik=2, test_vae_probe=2,
                       test_vae_loss=2),
        eval_seeds=VARIANCE_EVAL_SEEDS,
    ),
    Notebook(
        name="linear", assignment="bestiary", checks="autograder.checks.linear",
        api=(
            "LOW_ACTIVATION", "check_kl_sparsity", "check_l1_penalty", "check_linear_autoencoder",
            "check_pca", "check_sparse_autoencoder", "check_trained_linear_error",
            "check_trained_linear_subspace", "check_trained_sparse_activation",
            "check_trained_sparse_error", "check_trained_sparse_share", "evaluate_linear_ae",
            "evaluate_sparse_ae", "principal_angles",
        ),
        models=(Model("LinearAutoencoder", "linear_ae.pth"),
                Model("SparseAutoencoder", "sparse_ae.pth", size=64)),
        settings=("skip_training", "n_components", "n_hidden", "n_epochs", "n_epochs_sparse",
                  "batch_size", "learning_rate", "sparsity_weight", "rho", "seed"),
        points=_points(test_linear_pca=3, test_linear_autoencoder=2, test_linear_subspace=2,
                       test_linear_error=2, test_linear_l1=1, test_linear_kl=2,
                       test_linear_sparse_autoencoder=1, test_linear_sparse_activation=1,
                       test_linear_sparse_share=1, test_linear_sparse_error=1),
        n_components=6,
        extra_files=("plain_ae.pth",),  # the plain AE of the activation-histogram comparison
    ),
    Notebook(
        name="latent", assignment="bestiary", checks="autograder.checks.latent",
        api=(
            "check_beta_vae", "check_beta_vae_loss", "check_beta_vae_sample", "check_interpolate",
            "check_latent_grid", "check_lightning", "check_trained_elbo", "check_trained_samples",
            "digit_classifier", "prior_codes", "sample_quality",
        ),
        models=(Model("BetaVAE", "beta_vae.pth"),),
        settings=("skip_training", "n_components", "n_epochs", "patience", "n_epochs_ae", "beta_large",
                  "n_epochs_beta_large", "batch_size", "learning_rate", "seed"),
        points=_points(test_latent_loss=3, test_latent_interpolate=1, test_latent_grid=1,
                       test_latent_module=1, test_latent_sample=1, test_latent_lightning=2,
                       test_latent_trained_elbo=2, test_latent_trained_samples=3),
        n_components=2,
        # The plain AE of the worked example and the two brief beta-VAEs of the beta comparison.
        extra_files=("latent_ae.pth", "beta_vae_beta1.pth", "beta_vae_beta_large.pth"),
    ),
    Notebook(
        name="transfer", assignment="bestiary", checks="autograder.checks.transfer",
        api=(
            "check_classifier", "check_decoder", "check_encoder", "check_few_label_subset",
            "check_swap_autoencoder", "check_trained_gain", "check_trained_pretrained",
            "check_trained_swap_digit", "check_trained_swap_style",
        ),
        models=(Model("Encoder", "pretrain_encoder.pth"),
                Model("Classifier", "fewlabel_pretrained.pth", args=("Encoder", "n_components")),
                Model("Classifier", "fewlabel_scratch.pth", args=("Encoder", "n_components")),
                Model("SwapAutoencoder", "swap_ae.pth")),
        settings=("skip_training", "n_components", "n_labels", "n_steps_classifier", "batch_size",
                  "learning_rate", "sigma_n", "seed"),
        points=_points(test_transfer_few_label_subset=2, test_transfer_encoder_decoder=1,
                       test_transfer_classifier=2, test_transfer_swap_ae=2,
                       test_transfer_pretrained=2, test_transfer_gain=2,
                       test_transfer_swap_digit=2, test_transfer_swap_style=2),
        n_components=16,
    ),
)


def assignments() -> tuple[str, ...]:
    """The course's nbgrader assignments, in course order."""
    return tuple(dict.fromkeys(nb.assignment for nb in NOTEBOOKS))


def notebooks(assignment: str | None = None) -> tuple[Notebook, ...]:
    """The notebooks of one assignment (or of the whole course), in course order."""
    if assignment is not None and assignment not in assignments():
        raise KeyError(f"unknown assignment {assignment!r}; the course has {assignments()}")
    return tuple(nb for nb in NOTEBOOKS if assignment is None or nb.assignment == assignment)


def notebook(name: str, assignment: str | None = None) -> Notebook:
    """The notebook called ``name`` (in ``assignment``, when notebook names repeat)."""
    found = [nb for nb in notebooks(assignment) if nb.name == name]
    if len(found) != 1:
        known = sorted(f"{nb.assignment}/{nb.name}" for nb in NOTEBOOKS)
        raise KeyError(f"unknown notebook {name!r}" if not found else
                       f"notebook {name!r} is in several assignments: name the assignment"
                       f"; known: {known}")
    return found[0]


def weight_files(assignment: str | None = None) -> tuple[str, ...]:
    """Every weight file of an assignment (or of the course)."""
    return tuple(w for nb in notebooks(assignment) for w in nb.weights)


def settings_names() -> frozenset[str]:
    """The names a settings cell may assign (over every notebook)."""
    return frozenset(s for nb in NOTEBOOKS for s in nb.settings)


def check_modules() -> tuple[str, ...]:
    """The checks modules of every notebook (the replay imports them before student code)."""
    return tuple(dict.fromkeys(nb.checks for nb in NOTEBOOKS))
