"""Tests of the latent-space checks (bestiary/latent.ipynb): the solution passes, alternative
correct implementations pass, and each known-wrong implementation fails with the hint that
names its mistake."""
from __future__ import annotations

import math
import subprocess
import sys

import lightning as L
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import COURSE_ROOT, finish_staged, start_staged
from torch import nn
from torch.distributions import Normal, kl_divergence

from autograder.checks import latent
from autograder.checks.core import CheckFailure, NotImplementedYet
from autograder.checks.latent import (
    check_beta_vae,
    check_beta_vae_loss,
    check_beta_vae_sample,
    check_interpolate,
    check_latent_grid,
    check_lightning,
)
from autograder.grading.course import definitions
from autograder.grading.replay import definitions as replay_definitions

SOURCE = COURSE_ROOT / "solutions" / "bestiary" / "latent.ipynb"


@pytest.fixture(scope="module")
def solution() -> dict:
    """The solution notebook's definitions, extracted as the replay extracts a submission's."""
    return definitions(SOURCE)


# ---------------------------------------------------------------------------------------------
# beta_vae_loss
# ---------------------------------------------------------------------------------------------

def _kl(z_mean, z_logvar):
    return 0.5 * (torch.exp(z_logvar) + z_mean ** 2 - 1 - z_logvar)


def _bce(logits, x):
    return F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(dim=(1, 2, 3))


def loss_distributions(logits, x, z_mean, z_logvar, beta):
    q = Normal(z_mean, torch.exp(0.5 * z_logvar))
    kl = kl_divergence(q, Normal(torch.zeros_like(z_mean), torch.ones_like(z_mean))).sum(1)
    return (_bce(logits, x) + beta * kl).mean()


def loss_probabilities(logits, x, z_mean, z_logvar, beta):
    bce = F.binary_cross_entropy(torch.sigmoid(logits), x, reduction="sum") / len(x)
    return bce + beta * _kl(z_mean, z_logvar).sum() / len(x)


def loss_float64(logits, x, z_mean, z_logvar, beta):
    return loss_distributions(logits.double(), x.double(), z_mean.double(), z_logvar.double(), beta)


def loss_manual(logits, x, z_mean, z_logvar, beta):
    log_p = F.logsigmoid(logits)
    log_not_p = F.logsigmoid(-logits)
    bce = -(x * log_p + (1 - x) * log_not_p).flatten(1).sum(1)
    return bce.mean() + beta * _kl(z_mean, z_logvar).sum(1).mean()


@pytest.mark.parametrize("fn", [loss_distributions, loss_probabilities, loss_float64, loss_manual])
def test_correct_losses_pass(fn):
    """Do torch.distributions, F.binary_cross_entropy on probabilities, float64 and a hand-written
    log-sigmoid BCE all pass?"""
    check_beta_vae_loss(fn)
    check_beta_vae_loss(fn, seed=3)


MISTAKES = {
    "beta_on_recon": (
        lambda lg, x, m, v, b: (b * _bce(lg, x) + _kl(m, v).sum(1)).mean(),
        "beta multiplies the reconstruction term"),
    "sigmoid_twice": (
        lambda lg, x, m, v, b: (_bce(torch.sigmoid(lg), x) + b * _kl(m, v).sum(1)).mean(),
        "the sigmoid applied twice"),
    "pixel_mean": (
        lambda lg, x, m, v, b: F.binary_cross_entropy_with_logits(lg, x) + b * _kl(m, v).sum(1).mean(),
        "average the binary cross-entropy over the pixels"),
    "kl_no_half": (
        lambda lg, x, m, v, b: (_bce(lg, x) + b * 2 * _kl(m, v).sum(1)).mean(),
        "factor 1/2 of the KL term"),
    "batch_sum": (
        lambda lg, x, m, v, b: (_bce(lg, x) + b * _kl(m, v).sum(1)).sum(),
        "sum over the batch instead of averaging"),
    "kl_latent_mean": (
        lambda lg, x, m, v, b: _bce(lg, x).mean() + b * _kl(m, v).mean(),
        "average the KL over the latent dimensions"),
}


@pytest.mark.parametrize("name", sorted(MISTAKES))
def test_named_loss_mistakes_fail_with_their_hint(name):
    """Does each named mistake of beta_vae_loss fail with the hint that names it?"""
    fn, hint = MISTAKES[name]
    with pytest.raises(CheckFailure, match=hint) as info:
        check_beta_vae_loss(fn)
    assert "expected" in str(info.value) and "got" in str(info.value)


def test_combined_mistakes_are_named_together():
    """Does a loss with two mistakes (mean over pixels and the batch summed) name both?"""
    def both(lg, x, m, v, b):
        return len(x) * (F.binary_cross_entropy_with_logits(lg, x) + b * _kl(m, v).sum(1).mean())

    with pytest.raises(CheckFailure, match="these mistakes together") as info:
        check_beta_vae_loss(both)
    assert "over the pixels" in str(info.value) and "sum over the batch" in str(info.value)


def test_loss_per_sample_vector_is_rejected():
    """Does a per-sample vector instead of a scalar fail with a hint about the batch mean?"""
    with pytest.raises(CheckFailure, match="missing a mean over the batch"):
        check_beta_vae_loss(lambda lg, x, m, v, b: _bce(lg, x) + b * _kl(m, v).sum(1))


def test_detached_loss_is_rejected():
    """Does a loss computed from detached inputs fail the gradient check?"""
    with pytest.raises(CheckFailure, match="cut off"):
        check_beta_vae_loss(lambda lg, x, m, v, b: loss_distributions(lg.detach(), x, m.detach(),
                                                                     v.detach(), b))


def test_loss_stub_is_not_implemented_yet():
    """Does the release's stub read as 'not implemented yet'?"""
    def stub(*args):
        raise NotImplementedError()

    with pytest.raises(NotImplementedYet, match="not implemented yet"):
        check_beta_vae_loss(stub)


# ---------------------------------------------------------------------------------------------
# interpolate and latent_grid
# ---------------------------------------------------------------------------------------------

def test_solution_functions_pass(solution):
    """Do the solution's beta_vae_loss, interpolate and latent_grid pass their checks?"""
    check_beta_vae_loss(solution["beta_vae_loss"])
    check_interpolate(solution["interpolate"])
    check_latent_grid(solution["latent_grid"])


def interp_loop(z0, z1, n_steps):
    return torch.stack([z0 + (k / (n_steps - 1)) * (z1 - z0) for k in range(n_steps)])


def grid_scipy(n, quantile=0.95):
    import numpy as np
    from scipy.stats import norm

    q = norm.ppf(np.linspace(1 - quantile, quantile, n))
    return torch.tensor([[a, b] for a in q for b in q], dtype=torch.float32)


def test_alternative_walks_pass():
    """Do a loop-based interpolate and a scipy-based latent_grid (converted to float32) pass?"""
    check_interpolate(interp_loop)
    check_latent_grid(grid_scipy)


@pytest.mark.parametrize("fn, hint", [
    (lambda z0, z1, n: interp_loop(z1, z0, n), "from z1 to z0"),
    (lambda z0, z1, n: torch.stack([z0 + (k / n) * (z1 - z0) for k in range(n)]),
     "include both endpoints"),
    (lambda z0, z1, n: interp_loop(z0, z1, n).T, "transpose"),
    (lambda z0, z1, n: interp_loop(z0.double(), z1.double(), n), "float64"),
])
def test_interpolate_mistakes(fn, hint):
    """Do reversed, open-ended, transposed and float64 interpolations fail with their hints?"""
    with pytest.raises(CheckFailure, match=hint):
        check_interpolate(fn)


@pytest.mark.parametrize("fn, hint", [
    (lambda n, quantile=0.95: grid_scipy(n, quantile)[:, [1, 0]], "transposed"),
    (lambda n, quantile=0.95: torch.stack(torch.meshgrid(
        torch.linspace(1 - quantile, quantile, n), torch.linspace(1 - quantile, quantile, n),
        indexing="ij"), -1).reshape(-1, 2), "probabilities p themselves"),
    (lambda n, quantile=0.95: grid_scipy(n, 0.95), "quantile is ignored"),
    (lambda n, quantile=0.95: grid_scipy(n, 1.0), "infinite quantile"),
])
def test_latent_grid_mistakes(fn, hint):
    """Do a transposed grid, raw probabilities, an ignored quantile and p = 0..1 fail with their
    hints?"""
    with pytest.raises(CheckFailure, match=hint):
        check_latent_grid(fn)


# ---------------------------------------------------------------------------------------------
# BetaVAE
# ---------------------------------------------------------------------------------------------

def test_solution_module_passes(solution):
    """Does the solution's BetaVAE pass the module, sample and Lightning checks?"""
    check_beta_vae(solution["BetaVAE"])
    check_beta_vae_sample(solution["BetaVAE"])
    check_lightning(solution["BetaVAE"])


def _variant(solution, **methods):
    """A subclass of the solution's BetaVAE with some methods replaced."""
    return type("BetaVAE", (solution["BetaVAE"],), methods)


def test_sample_without_reparameterization_fails(solution):
    """Does a sample that uses torch.normal lose the sample points with the reparameterization
    hint (the VAE notebook's check, reused)?"""
    cls = _variant(solution, sample=lambda self, m, v: torch.normal(m, torch.exp(0.5 * v)))
    with pytest.raises(CheckFailure, match="reparameterization"):
        check_beta_vae_sample(cls)


def test_decode_dead_at_initialisation_passes(solution):
    """Does a BetaVAE whose decode ends in a ReLU that is dead at initialisation (logits shifted
    by -10) pass, instead of being told that decode gives the same output for two z?"""
    base = solution["BetaVAE"]
    check_beta_vae(_variant(solution, decode=lambda self, z: torch.relu(base.decode(self, z) - 10.0)))


def test_decode_that_ignores_z_still_fails(solution):
    """Does a decode that ignores z (zeros of the batch's size) still fail?"""
    with pytest.raises(CheckFailure, match="the same output for two different z"):
        check_beta_vae(_variant(solution, decode=lambda self, z: torch.zeros(len(z), 1, 28, 28)
                                + 0.0 * self.decoder(z).sum()))


def test_plain_module_is_rejected():
    """Does a BetaVAE that is a plain nn.Module (not a LightningModule) fail with a hint?"""
    class Plain(nn.Module):
        def __init__(self, n_components=2, beta=1.0, learning_rate=1e-3):
            super().__init__()

    with pytest.raises(CheckFailure, match="LightningModule"):
        check_beta_vae(Plain)


def test_optimizer_over_decoder_only_fails(solution):
    """Does an optimizer over the decoder alone fail, naming the missing parameters?"""
    cls = _variant(solution, configure_optimizers=lambda self: torch.optim.Adam(
        self.decoder.parameters(), lr=self.learning_rate))
    with pytest.raises(CheckFailure, match="misses parameters"):
        check_lightning(cls)


def test_fixed_learning_rate_fails(solution):
    """Does an optimizer that ignores learning_rate fail with a hint?"""
    cls = _variant(solution, configure_optimizers=lambda self: torch.optim.Adam(self.parameters()))
    with pytest.raises(CheckFailure, match="self.learning_rate"):
        check_lightning(cls)


def test_missing_val_loss_fails(solution):
    """Does a validation_step that logs under another name fail, naming val_loss?"""
    def validation_step(self, batch, batch_idx):
        x, _ = batch
        logits, m, v = self(x)
        self.log("validation_loss", F.binary_cross_entropy_with_logits(logits, x))

    with pytest.raises(CheckFailure, match="no val_loss logged"):
        check_lightning(_variant(solution, validation_step=validation_step))


def test_training_step_without_loss_fails(solution):
    """Does a training_step that returns nothing fail with 'returned no loss'?"""
    def training_step(self, batch, batch_idx):
        x, _ = batch
        self(x)

    with pytest.raises(CheckFailure, match="returned no loss"):
        check_lightning(_variant(solution, training_step=training_step))


def test_loss_without_decoder_fails(solution):
    """Does a training loss that never reaches the decoder fail the gradient check?"""
    def training_step(self, batch, batch_idx):
        x, _ = batch
        m, v = self.encode(x)
        return _kl(m, v).sum(1).mean()

    with pytest.raises(CheckFailure, match="gradients do not reach every parameter"):
        check_lightning(_variant(solution, training_step=training_step))


def test_lightning_check_is_quiet(solution, capfd):
    """Does the real Trainer run of check_lightning write nothing to stderr?"""
    check_lightning(solution["BetaVAE"])
    assert capfd.readouterr().err == ""


@pytest.mark.slow
def test_lightning_check_is_quiet_in_a_fresh_process():
    """In a fresh interpreter (as the replay runs it), is check_lightning silent on stderr?"""
    code = ("from autograder.grading.course import definitions\n"
            f"ns = definitions({str(SOURCE)!r})\n"
            "from autograder.checks.latent import check_lightning\n"
            "check_lightning(ns['BetaVAE'])\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300, cwd=COURSE_ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stderr == "", proc.stderr[-2000:]


def test_replay_keeps_a_lightning_module():
    """Does the replay's definitions extraction keep `import lightning as L`, the callbacks'
    import and `class BetaVAE(L.LightningModule)`?"""
    cell = ("import lightning as L\n"
            "from lightning.pytorch.callbacks import EarlyStopping\n"
            "class BetaVAE(L.LightningModule):\n"
            "    def __init__(self, n_components=2, beta=1.0, learning_rate=1e-3):\n"
            "        super().__init__()\n"
            "        self.save_hyperparameters()\n")
    code, dropped = replay_definitions(cell)
    assert dropped == []
    ns: dict = {}
    exec(code, ns)
    assert issubclass(ns["BetaVAE"], L.LightningModule)
    assert ns["BetaVAE"]().hparams.beta == 1.0


# ---------------------------------------------------------------------------------------------
# The trained model: the stages of latent.EVALUATION
# ---------------------------------------------------------------------------------------------

class _Images:
    """A small data set shaped like data_tools.MNIST (x, targets)."""

    def __init__(self, n, seed=0):
        gen = torch.Generator().manual_seed(seed)
        self.x = torch.rand(n, 1, 28, 28, generator=gen)
        self.targets = torch.arange(n) % 10

    def __len__(self):
        return len(self.x)


class _Judge:
    """A stand-in digit classifier: image k is digit k % 10 with probability 0.5."""

    def predict_proba(self, x):
        proba = np.full((len(x), 10), 0.5 / 9)
        proba[np.arange(len(x)), np.arange(len(x)) % 10] = 0.5
        return proba


def _stages(model, testset):
    """The first stage, the grader's codes and the second stage of latent.EVALUATION."""
    evaluation = latent.EVALUATION
    data = (testset, testset, None)
    first = evaluation.first.run({"BetaVAE": model}, evaluation.inputs(data))
    codes = evaluation.between(first, data)
    return first, codes, evaluation.second.run({"BetaVAE": model}, codes)


def test_stages_give_plain_arrays_and_decode_sees_codes_only(solution):
    """Do the stages give only float32 numpy arrays of the interface's shapes, with decode
    called on the grader's codes of shape (B, 2) only (one draw per test image from q(z | x),
    then the judge's z ~ N(0, I)), and the same arrays on a second run?"""
    seen = []

    def decode(self, z):
        seen.append(tuple(z.shape))
        return solution["BetaVAE"].decode(self, z)

    torch.manual_seed(0)
    model = _variant(solution, decode=decode)(n_components=2).eval()
    with torch.no_grad():
        first, codes, second = _stages(model, _Images(12))
    assert sorted(first) == ["z_logvar", "z_mean"] and sorted(second) == ["logits", "prior_logits"]
    assert all(type(a) is np.ndarray and a.dtype == np.float32 for a in (*first.values(), *second.values()))
    assert first["z_mean"].shape == first["z_logvar"].shape == (12, 2)
    assert second["logits"].shape == (12, 1, 28, 28)
    assert second["prior_logits"].shape == (latent.N_SAMPLES, 1, 28, 28)
    assert seen and all(len(s) == 2 and s[1] == 2 for s in seen)
    eps = torch.randn(12, 2, generator=torch.Generator().manual_seed(latent.EVAL_Z_SEED), dtype=torch.float64)
    z = torch.from_numpy(first["z_mean"]).double() + torch.exp(0.5 * torch.from_numpy(first["z_logvar"]).double()) * eps
    torch.testing.assert_close(codes["z"], z.float())
    torch.testing.assert_close(codes["z_prior"], latent.prior_codes(2))
    with torch.no_grad():
        again = _stages(model, _Images(12))
    assert all(np.array_equal(a[k], b[k]) for a, b in zip((first, second), again[::2]) for k in a)


def test_metrics_come_from_the_arrays_alone(monkeypatch):
    """Does the measure compute the ELBO and the sample quality from arrays alone: logits 0 and
    q = N(0, I) give 784 log 2 nats per image and KL 0; the judge's votes give the confidence
    and the classes?"""
    monkeypatch.setattr(latent, "digit_classifier", lambda trainset: _Judge())
    n = 7
    testset = _Images(n)
    testset.x = (testset.x > 0.5).float()
    first = {"z_mean": np.zeros((n, 2), np.float32), "z_logvar": np.zeros((n, 2), np.float32)}
    second = {"logits": np.zeros((n, 1, 28, 28), np.float32),
              "prior_logits": np.full((latent.N_SAMPLES, 1, 28, 28), 3.0, np.float32)}
    result = latent.EVALUATION.measure(first, second, (testset, testset, None))
    assert result["kl"] == pytest.approx(0.0, abs=1e-12)
    assert result["elbo_loss"] == pytest.approx(784 * math.log(2), rel=1e-9)
    assert result["confidence"] == pytest.approx(0.5)
    assert result["classes"] == 10          # 100 samples per digit: each over 1 %
    assert result["probability_logits"] is False


def test_metrics_notice_probabilities_and_non_finite_outputs(monkeypatch):
    """Does the measure flag decoded values in [0, 1] (probabilities, not logits), and do the
    grader's codes name a non-finite z_logvar?"""
    monkeypatch.setattr(latent, "digit_classifier", lambda trainset: _Judge())
    testset = _Images(3)
    first = {"z_mean": np.zeros((3, 2), np.float32), "z_logvar": np.zeros((3, 2), np.float32)}
    second = {"logits": np.full((3, 1, 28, 28), 0.5, np.float32),
              "prior_logits": np.full((latent.N_SAMPLES, 1, 28, 28), 0.5, np.float32)}
    data = (testset, testset, None)
    assert latent.EVALUATION.measure(first, second, data)["probability_logits"] is True
    first["z_logvar"][1, 0] = np.nan
    for stage in (lambda: latent.EVALUATION.between(first, data),
                  lambda: latent.EVALUATION.measure(first, second, data)):
        with pytest.raises(CheckFailure, match="z_logvar: non-finite values"):
            stage()


def test_measure_refuses_outputs_of_the_wrong_rows(monkeypatch):
    """Does the measure refuse logits for fewer images than the test set (a failure naming the
    rows, not a crash or a pass)?"""
    monkeypatch.setattr(latent, "digit_classifier", lambda trainset: _Judge())
    testset = _Images(4)
    first = {"z_mean": np.zeros((4, 2), np.float32), "z_logvar": np.zeros((4, 2), np.float32)}
    second = {"logits": np.zeros((3, 1, 28, 28), np.float32),
              "prior_logits": np.zeros((latent.N_SAMPLES, 1, 28, 28), np.float32)}
    with pytest.raises(CheckFailure, match="rows"):
        latent.EVALUATION.measure(first, second, (testset, testset, None))


@pytest.mark.slow
def test_trained_checks_fail_untrained_weights_with_hints(solution, tmp_path):
    """Do untrained weights fail both trained-model checks, and does a decoder that returns
    probabilities get the logits hint?"""
    from data_tools.utils import save_model

    torch.manual_seed(0)
    path = tmp_path / "beta_vae.pth"
    save_model(solution["BetaVAE"](2), path)
    with pytest.raises(CheckFailure, match="too high") as elbo:
        latent.check_trained_elbo(solution["BetaVAE"], path=str(path))
    assert "train longer" in str(elbo.value)
    with pytest.raises(CheckFailure, match="digit classifier") as samples:
        latent.check_trained_samples(solution["BetaVAE"], path=str(path))
    assert "mean confidence too low" in str(samples.value)
    probabilities = _variant(solution, decode=lambda self, z: torch.sigmoid(self.decoder(z)))
    with pytest.raises(CheckFailure, match="decode must return LOGITS"):
        latent.check_trained_elbo(probabilities, path=str(path))


def test_samples_of_a_few_digits_fail_the_classes_bar(solution, tmp_path):
    """Do confident samples that show only five digits (a decoder that returns training images
    of the digits 0-4, picked by z) pass the confidence bar but fail the classes bar, with the
    hint that names the number of digits and the KL term?"""
    from data_tools.utils import save_model

    trainset, _ = latent.evaluation_data()
    bank = trainset.x[trainset.targets < 5][:500].clamp(1e-3, 1 - 1e-3)
    bank_logits = torch.log(bank) - torch.log1p(-bank)

    def decode(self, z):
        return bank_logits[(z[:, 0].abs() * 1000).long() % len(bank_logits)]

    torch.manual_seed(0)
    path = tmp_path / "beta_vae.pth"
    save_model(solution["BetaVAE"](2), path)
    few_digits = _variant(solution, decode=decode)
    result = latent.trained_results(few_digits, path=str(path))
    assert result["confidence"] >= result["bars"]["confidence"] and result["classes"] == 5
    with pytest.raises(CheckFailure, match="too few digit classes") as info:
        latent.check_trained_samples(few_digits, path=str(path))
    assert "only 5 of the 10 digits" in str(info.value) and "KL term" in str(info.value)


def test_quiet_lightning_hides_only_the_torch_internals_warning():
    """Does quiet_lightning hide Lightning's deprecation warning about torch internals, and let
    other warnings through?"""
    import warnings

    from data_tools import quiet_lightning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        quiet_lightning()
        warnings.warn("`isinstance(treespec, LeafSpec)` is deprecated, use ...", DeprecationWarning,
                      stacklevel=1)
        warnings.warn("something a student should see", UserWarning, stacklevel=1)
    assert [str(w.message) for w in caught] == ["something a student should see"]


# ---------------------------------------------------------------------------------------------
# Grading: the producer, the second stage and the judge (autograder.grading.judged), in turn
# ---------------------------------------------------------------------------------------------

def _sigmoid_twice(logits, x, z_mean, z_logvar, beta):
    bce = F.binary_cross_entropy_with_logits(torch.sigmoid(logits), x, reduction="none").sum(dim=(1, 2, 3))
    return (bce + beta * _kl(z_mean, z_logvar).sum(1)).mean()


def test_staged_grading_gives_the_local_numbers_and_verdicts(solution, tmp_path, monkeypatch, modes):
    """Run as the grader runs them (the producer on the grader's inputs, decode in the second
    stage on shuffled codes, the judge on the recorded outputs and calls), do the trained-model
    checks give the numbers of one process with the same secret draws, the replayed function
    checks the verdicts and the hint of one process, and do the structural cells stay with the
    producer?"""
    from autograder.checks import draws, evidence
    from autograder.checks.evaluation import evidence_key

    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
    torch.save(solution["BetaVAE"](2).state_dict(), tmp_path / "beta_vae.pth")
    secret = draws.new_secret()
    with draws.using(secret):
        local = latent.trained_results(solution["BetaVAE"])
    with pytest.raises(CheckFailure) as local_loss:
        check_beta_vae_loss(_sigmoid_twice, seed=1)

    run = start_staged("autograder.checks.latent", ("beta_vae.pth",), tmp_path, secret)
    evidence.set_cell("test_latent_loss")
    for seed in (0, 1, 2):
        check_beta_vae_loss(solution["beta_vae_loss"], seed=seed)
    evidence.set_cell("test_latent_interpolate")
    for seed in (0, 1):
        with pytest.raises(CheckFailure):  # the endpoints left out: the judge must fail it too
            check_interpolate(lambda z0, z1, n: z0 + torch.linspace(0, 1, n + 2)[1:-1, None] * (z1 - z0),
                              seed=seed)
    evidence.set_cell("test_latent_trained_elbo")
    with pytest.raises(evidence.Deferred):
        latent.check_trained_elbo(solution["BetaVAE"])
    verdicts = finish_staged(run, SOURCE, "autograder.checks.latent")
    assert [r["evaluation"] for r in run.requests] == ["latent"]
    key = evidence_key(latent.EVALUATION, 2, ("beta_vae.pth",))
    assert (run.private / f"{key}.eval.second.npz").exists()
    for structural in ("test_latent_module", "test_latent_lightning"):
        assert not verdicts[structural]["decided"], structural
    assert verdicts["test_latent_loss"]["decided"] and verdicts["test_latent_loss"]["passed"]
    assert verdicts["test_latent_interpolate"]["decided"]
    assert "endpoints are missing" in verdicts["test_latent_interpolate"]["error"]
    for cell, words in (("test_latent_trained_elbo", "too high"), ("test_latent_trained_samples",
                                                                   "mean confidence too low")):
        assert verdicts[cell]["decided"] and not verdicts[cell]["passed"], cell
        assert words in verdicts[cell]["error"], verdicts[cell]["error"]
    result = evidence.judged(latent.EVALUATION, 2, ("beta_vae.pth",), False)
    for metric in ("elbo_loss", "bce", "kl", "confidence", "classes"):
        assert result[metric] == pytest.approx(local[metric], rel=1e-6), metric
    assert f"got      {local['elbo_loss']:.1f}" in verdicts["test_latent_trained_elbo"]["error"]

    # The sigmoid applied twice, replayed by the judge: the message of one process.
    evidence._STATE.update(mode=None)
    calls = tmp_path / "calls"
    evidence._STATE.update(mode="produce", dir=str(calls))
    calls.mkdir()
    evidence.set_cell("cell")
    with pytest.raises(CheckFailure):
        check_beta_vae_loss(_sigmoid_twice, seed=1)
    from autograder.checks import recorded

    evidence._STATE.update(mode="judge")
    recorded.start_judging(str(calls / "calls"))
    with pytest.raises(CheckFailure) as judged_loss:
        check_beta_vae_loss(None, seed=1)
    assert str(judged_loss.value) == str(local_loss.value)
    assert "the sigmoid applied twice" in str(judged_loss.value)
