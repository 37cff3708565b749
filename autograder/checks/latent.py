"""Checks for the latent-space notebook of the bestiary (``latent.ipynb``).

Every check is ``check_<property>(obj, *, seed=0)``: it builds its own seeded inputs, returns
None on success and raises :class:`~autograder.checks.core.CheckFailure` on the first problem,
coarse to fine. Checks seed torch's global generator themselves and restore the caller's random
state and thread count afterwards (``core.isolated_rng``).

What each check guarantees
--------------------------
check_beta_vae_loss(beta_vae_loss)
    ``beta_vae_loss(logits, x, z_mean, z_logvar, beta)`` returns a plain tensor scalar equal to
    (1/N) sum_i [BCE(logits_i, x_i) summed over pixels + beta * KL(q(z_i | x_i) || N(0, I))
    summed over latent dimensions], for several shapes and betas (0, 1, 4), with x in [0, 1]
    (not only binary). Oracles in float64: ``Bernoulli(logits=...).log_prob`` and
    ``kl_divergence`` of ``torch.distributions``. Gradients with respect to logits, z_mean and
    z_logvar are compared with the oracle's. A wrong value is matched against the values of the
    named mistakes (beta on the reconstruction term, the sigmoid applied twice, a mean over
    pixels, the KL without its 1/2, the batch summed, the KL averaged over latent dimensions,
    and their combinations) and the hint names the mistake.
check_interpolate(interpolate)
    ``interpolate(z0, z1, n_steps)`` returns an (n_steps, d) float32 tensor whose row k is
    z0 + t_k (z1 - z0), t = linspace(0, 1, n_steps): first row z0, last row z1.
check_latent_grid(latent_grid)
    ``latent_grid(n, quantile)`` returns an (n * n, 2) float32 tensor of the points
    (Phi^-1(p_i), Phi^-1(p_j)), p = linspace(1 - quantile, quantile, n), i varying slowest.
    Oracle: ``statistics.NormalDist().inv_cdf`` in float64.
check_beta_vae(BetaVAE)
    ``BetaVAE(n_components=n)`` is a ``lightning.LightningModule``; ``encode``, ``decode``
    and ``forward`` return float32, finite tensors of the interface's shapes for n in (2, 3, 8)
    and batch sizes 1, 5, 32 (eval mode); the decoded logits depend on z; gradients from every
    output reach the parameters.
check_beta_vae_sample(BetaVAE)
    ``sampling.check_sample`` (the statistics and the reparameterized gradients of the VAE
    notebook) on the method ``sample`` of ``BetaVAE(n_components=2)``.
check_lightning(BetaVAE)
    A real ``lightning.Trainer(fast_dev_run=1)`` on CPU fits ``BetaVAE(n_components=2,
    beta=..., learning_rate=...)`` on a small seeded set of images, quietly: ``training_step``
    returns a finite scalar loss whose gradients reach every parameter, ``validation_step`` logs
    a finite ``val_loss``, and ``configure_optimizers`` gives an optimizer over every parameter
    with the model's learning rate.
check_trained_elbo(BetaVAE) / check_trained_samples(BetaVAE)
    The saved weights load into ``BetaVAE(n_components)``; the negative ELBO per test image (beta = 1, one
    z per image drawn by the grader, float64, the grader's own formulas) is under its bar;
    and images decoded from a seeded set of z ~ N(0, I) (while grading, both drawn from the
    run's secret: ``draws``) look like digits to a
    logistic-regression classifier that the grader fits on the training images: the mean
    confidence of its predictions and the number of digit classes it sees among the samples
    clear calibrated bars (docs/calibration.md, "Bestiary: latent spaces"). The evaluation
    is staged (``EVALUATION``, see ``autograder.checks.evaluation``): ``encode`` on the test
    images gives plain arrays; the grader draws the codes (one z per test image from q(z | x),
    and the judge's z ~ N(0, I)); ``decode`` sees those codes only; every number is measured
    from the arrays and the grader's own data. During grading the stages run in separate
    processes and the numbers are measured where no student code runs (docs/security.md);
    both checks read one evaluation per process.

``check_beta_vae_loss``, ``check_interpolate``, ``check_latent_grid`` and the ``sample`` calls of
``check_beta_vae_sample`` are replayable (``autograder.checks.recorded``): during grading the
student's function is called in the grader's re-run of the tests and the comparisons are made
by the judge on the recorded calls.
"""
from __future__ import annotations

import contextlib
import itertools
import logging
import math
import statistics
import tempfile
import warnings

import numpy as np
import torch
from torch import nn
from torch.distributions import Bernoulli, Normal, kl_divergence

from ..manifest import notebook
from .core import (
    CheckFailure,
    call,
    failure,
    fmt,
    require_dtype,
    require_finite,
    require_shape,
    require_tensor,
    student_facing,
)
from .core import f64 as _f64
from .core import isolated_rng as _isolated_rng
from .core import require_callable as _require_callable
from .data import mnist_evaluation, mnist_sets
from .draws import LATENT_EPS, PRIOR
from .draws import seed as _draw_seed
from .evaluation import (
    Codes,
    Evaluation,
    Stage,
    batches,
    fitted_once,
    images_and_labels,
    load_models,
    require_bar,
    results,
    run,
)
from .evidence import checked, evidence_failure
from .evidence import mode as _evidence_mode
from .losses import check_grads as _check_grads
from .losses import require_loss_scalar as _require_loss_scalar
from .modules import LOOKED_AGAIN, REINIT_SEED, WAKE_BATCH, look_again
from .recorded import record_failure, replayable
from .sampling import check_sample
from .thresholds import graded_line

__all__ = [
    "check_beta_vae_loss", "check_interpolate", "check_latent_grid", "check_beta_vae",
    "check_beta_vae_sample", "check_lightning", "check_trained_elbo", "check_trained_samples",
    "evaluate_latent", "evaluation_data", "load_trained", "trained_results", "sample_quality",
    "digit_classifier", "prior_codes", "EVALUATION", "EVALUATIONS",
]

# Own references, taken at import time (a notebook may rebind the public names later).
_Tensor = torch.Tensor
_float32 = torch.float32
_float64 = torch.float64
_grad = torch.autograd.grad
_randn = torch.randn
_rand = torch.rand
_sigmoid = torch.sigmoid
_exp = torch.exp
_Bernoulli = Bernoulli
_Normal = Normal
_kl_divergence = kl_divergence

NOTEBOOK = notebook("latent", "bestiary")
(WEIGHTS_PATH,) = NOTEBOOK.weights
#: The notebook's demonstration weights (never graded): the plain autoencoder of the worked
#: example, and the two brief beta-VAEs of the beta comparison.
AE_PATH, BETA_1_PATH, BETA_LARGE_PATH = NOTEBOOK.extra_files

# ---------------------------------------------------------------------------------------------
# Tolerances and constants
# ---------------------------------------------------------------------------------------------

#: A loss value is accepted when |got - expected| <= LOSS_ATOL + LOSS_RTOL * magnitude, the
#: magnitude being the batch mean of the sum of |terms| (float32 sums of 784 pixel terms).
LOSS_RTOL = 1e-4
LOSS_ATOL = 1e-4
#: Looser tolerance used only to name a mistake once the value is known to be wrong.
MATCH_RTOL = 1e-3
#: interpolate / latent_grid: absolute tolerance on each coordinate (float32 arithmetic).
POINT_ATOL = 1e-5
POINT_RTOL = 1e-5
#: Pixels per image.
N_PIXELS = 28 * 28

#: check_beta_vae: latent sizes and batch sizes (eval mode); batch of the gradient check.
N_COMPONENTS = (2, 3, 8)
BATCH_SIZES = (1, 5, 32)
GRAD_BATCH_SIZE = 8

#: check_lightning: images of the small seeded data set, its batch size, and the settings the
#: model is built with (a learning rate no one picks by accident, to see that it is used).
FIT_IMAGES = 16
FIT_BATCH = 8
FIT_BETA = 2.0
FIT_LEARNING_RATE = 3.7e-4

#: Trained-model evaluation: seeds of the z drawn for the ELBO (one per test image) and of the
#: z ~ N(0, I) decoded for the sample-quality judge (while grading, seeds derived from these and
#: the run's secret: ``draws``), and the number of those samples.
EVAL_Z_SEED = 0
SAMPLE_SEED = 1234
N_SAMPLES = 1000
EVAL_BATCH = 500
#: A digit class counts as covered when at least this fraction of the samples is classified
#: as that digit (1 % of 1,000 samples: 10 images).
CLASS_MIN_FRACTION = 0.01
#: The judge: multinomial logistic regression on the 784 pixels of the training images.
CLASSIFIER_C = 0.05
CLASSIFIER_MAX_ITER = 300


# ---------------------------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------------------------

def _shape(t) -> tuple:
    return tuple(int(s) for s in getattr(t, "shape", ()))


@contextlib.contextmanager
def _quiet_lightning():
    """Silence Lightning's informational banners and warnings (and no other output)."""
    names = ("lightning", "lightning.pytorch", "lightning.fabric", "pytorch_lightning",
             "lightning_fabric")
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


# ---------------------------------------------------------------------------------------------
# beta_vae_loss
# ---------------------------------------------------------------------------------------------

_M_BETA_RECON = ("beta multiplies the reconstruction term: beta weighs only the KL term, "
                 "loss = BCE + beta * KL")
_M_SIGMOID_TWICE = ("the reconstruction term is what the sigmoid applied twice gives: "
                    "F.binary_cross_entropy_with_logits takes the logits themselves; did you "
                    "pass torch.sigmoid(logits) (probabilities) where logits are expected?")
_M_PIXEL_MEAN = ("did you average the binary cross-entropy over the pixels instead of summing "
                 "over them? (reduction='mean' averages over everything; sum over dims 1, 2, 3)")
_M_KL_HALF = "did you drop the factor 1/2 of the KL term?"
_M_BATCH_SUM = ("did you sum over the batch instead of averaging over it (divide by the batch "
                "size)?")
_M_KL_LATENT_MEAN = ("did you average the KL over the latent dimensions instead of summing over "
                     "them? (sum over dim 1, then mean over the batch)")
_LOSS_REDUCE = ("sum the binary cross-entropy over the pixels and the KL over the latent "
                "dimensions, then average over the batch")
_LOSS_FALLBACK = ("per image: the binary cross-entropy of the logits against x summed over the "
                  "784 pixels (F.binary_cross_entropy_with_logits(logits, x, reduction='none')), "
                  "plus beta * 0.5 * sum(exp(z_logvar) + z_mean**2 - 1 - z_logvar); then the "
                  "mean over the batch")
_LOSS_NONFINITE = ("use F.binary_cross_entropy_with_logits on the logits (log(sigmoid) of a "
                   "large logit underflows), and exp(z_logvar) for the variance")
_LOSS_GRAD = ("the loss must be computed with differentiable torch operations on the inputs "
              "(no .detach(), .item() or numpy)")


def _bce64(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Per image: the binary cross-entropy summed over pixels, float64 (torch.distributions)."""
    log_p = _Bernoulli(logits=logits, validate_args=False).log_prob(x)
    return -log_p.flatten(1).sum(1)


def _kl64(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Per image: KL(N(mu, exp(logvar)) || N(0, I)) summed over latent dims, float64."""
    std = (0.5 * logvar).exp()
    prior = _Normal(torch.zeros_like(mu), torch.ones_like(std), validate_args=False)
    return _kl_divergence(_Normal(mu, std, validate_args=False), prior).sum(-1)


def _oracle(logits, x, z_mean, z_logvar, beta):
    return (_bce64(logits, x) + beta * _kl64(z_mean, z_logvar)).mean()


def _loss_candidates(logits, x, mu, lv, beta):
    """(mistakes, value) for every combination of the named mistakes (the first: none)."""
    batch_size, n = mu.shape
    recon = {False: _bce64(logits, x).mean(), True: _bce64(_sigmoid(logits), x).mean()}
    kl = float(_kl64(mu, lv).mean())
    flags = (_M_BETA_RECON, _M_SIGMOID_TWICE, _M_PIXEL_MEAN, _M_KL_HALF, _M_BATCH_SUM,
             _M_KL_LATENT_MEAN)
    out = []
    for on in itertools.product((False, True), repeat=len(flags)):
        beta_recon, twice, pixel_mean, kl_half, batch_sum, latent_mean = on
        r = float(recon[twice]) * (beta if beta_recon else 1.0) / (N_PIXELS if pixel_mean else 1)
        k = kl * (2.0 if kl_half else 1.0) / (n if latent_mean else 1)
        # "beta on the reconstruction term" means beta moved there: the KL keeps weight 1.
        value = (r + (1.0 if beta_recon else beta) * k) * (batch_size if batch_sum else 1)
        out.append((tuple(f for f, flag in zip(flags, on) if flag), value))
    return out


def _loss_value(fn, logits, x, z_mean, z_logvar, beta, desc):
    what = f"beta_vae_loss(logits, x, z_mean, z_logvar, beta={beta:g}) for {desc}"
    value = call(fn, logits.clone(), x.clone(), z_mean.clone(), z_logvar.clone(), beta, what=what)
    return what, _require_loss_scalar(value, what, logits.shape[0], logits.shape, _LOSS_REDUCE,
                                      _LOSS_NONFINITE)


def _check_loss_case(fn, logits, x, z_mean, z_logvar, beta, desc) -> None:
    what, got = _loss_value(fn, logits, x, z_mean, z_logvar, beta, desc)
    lg, x64, mu, lv = _f64(logits), _f64(x), _f64(z_mean), _f64(z_logvar)
    expected = float(_oracle(lg, x64, mu, lv, beta))
    scale = float((_bce64(lg, x64).abs() + beta * _kl64(mu, lv).abs()).mean()) + 1.0
    tol = LOSS_ATOL + LOSS_RTOL * scale
    if abs(got - expected) <= tol:
        return
    matches = []
    for mistakes, value in _loss_candidates(lg, x64, mu, lv, beta):
        if mistakes and abs(got - value) <= LOSS_ATOL + MATCH_RTOL * max(abs(value), scale):
            matches.append((len(mistakes), abs(got - value), mistakes))
    if matches:
        mistakes = min(matches)[2]
        hint = (mistakes[0] if len(mistakes) == 1 else
                "this value is what these mistakes together give: " + " ".join(mistakes))
    else:
        hint = f"got/expected = {fmt(got / expected)}; {_LOSS_FALLBACK}"
    raise failure(f"{what}: wrong value", f"{fmt(expected)} (tolerance {fmt(tol)})", fmt(got),
                  hint)


def _random_loss_inputs(gen, batch_size, n):
    logits = 3.0 * torch.randn(batch_size, 1, 28, 28, generator=gen)
    # Grey levels in [0, 1] as in MNIST, with exact 0 and 1 among them.
    x = torch.rand(batch_size, 1, 28, 28, generator=gen)
    x = torch.where(x < 0.3, torch.zeros_like(x), torch.where(x > 0.8, torch.ones_like(x), x))
    z_mean = 1.5 * torch.randn(batch_size, n, generator=gen)
    z_logvar = -2.0 + 3.0 * torch.rand(batch_size, n, generator=gen)
    return logits, x, z_mean, z_logvar


#: Random cases of check_beta_vae_loss: (batch_size, n_components, beta). The first has B > 1,
#: B != n and beta not in (1, 2), so that every named mistake changes the value differently.
LOSS_CASES = ((5, 3, 4.0), (7, 2, 1.0), (1, 4, 0.5), (16, 8, 0.0))


def check_beta_vae_loss(beta_vae_loss, *, seed: int = 0) -> None:
    """beta_vae_loss is the batch mean of pixel-summed BCE + beta * latent-summed KL."""
    _require_callable(beta_vae_loss, "beta_vae_loss")
    gen = torch.Generator().manual_seed(seed)
    with _isolated_rng(seed):
        # 1. Structural: q = N(0, I) leaves only the BCE; logits 0 give log 2 per pixel.
        x = (torch.rand(3, 1, 28, 28, generator=gen) > 0.5).float()
        zeros = torch.zeros(3, 2)
        _check_loss_case(beta_vae_loss, torch.zeros(3, 1, 28, 28), x, zeros, zeros.clone(), 4.0,
                         "logits 0 (every pixel has probability 1/2: 784 * log 2 = 543.4 nats "
                         "per image), z_mean 0, z_logvar 0 (KL = 0), binary x, batch size 3")
        # 2. Random inputs, several shapes and betas.
        for batch_size, n, beta in LOSS_CASES:
            logits, x, z_mean, z_logvar = _random_loss_inputs(gen, batch_size, n)
            _check_loss_case(beta_vae_loss, logits, x, z_mean, z_logvar, beta,
                             f"random logits, x in [0, 1], z_mean and z_logvar of shape "
                             f"({batch_size}, {n})")
        # 3. Gradients with respect to logits, z_mean and z_logvar.
        logits, x, z_mean, z_logvar = _random_loss_inputs(gen, 4, 3)
        leaves = [t.clone().requires_grad_(True) for t in (logits, z_mean, z_logvar)]
        what = "beta_vae_loss: gradients, random inputs of batch size 4, beta=2"
        value = call(beta_vae_loss, leaves[0], x.clone(), leaves[1], leaves[2], 2.0, what=what)
        require_tensor(value, what)
        if not value.requires_grad:
            raise failure(f"{what}: the loss is cut off from its inputs",
                          "a loss that requires grad", "requires_grad=False", _LOSS_GRAD)
        grads = call(_grad, value, leaves, allow_unused=True, what=f"{what}: backward pass")
        leaves64 = [_f64(t).requires_grad_(True) for t in (logits, z_mean, z_logvar)]
        expected = torch.autograd.grad(_oracle(leaves64[0], _f64(x), leaves64[1], leaves64[2], 2.0),
                                       leaves64)
        _check_grads(what, grads, expected, ("logits", "z_mean", "z_logvar"), _LOSS_GRAD)


# ---------------------------------------------------------------------------------------------
# interpolate and latent_grid
# ---------------------------------------------------------------------------------------------

def _require_points(value, shape, what, shape_hint):
    require_tensor(value, what)
    if _shape(value) == tuple(reversed(shape)) and shape[0] != shape[1]:
        shape_hint = f"shape {_shape(value)} is the transpose: one point per row"
    require_shape(value, shape, what, shape_hint)
    if value.dtype == _float64:
        raise failure(f"{what}: wrong dtype", "torch.float32 (the decoder's dtype)", "torch.float64",
                      "convert with .float() (scipy and numpy give float64)")
    require_dtype(value, _float32, what)
    require_finite(value, what, "p = 0 or 1 gives an infinite quantile: p runs from "
                                "1 - quantile to quantile")
    return _f64(value)


def _close(got, expected) -> bool:
    return bool(((got - expected).abs() <= POINT_ATOL + POINT_RTOL * expected.abs()).all())


def _worst_row(got, expected) -> str:
    err = (got - expected).abs().max(1).values
    k = int(err.argmax())
    as_list = lambda t: "[" + ", ".join(fmt(float(v)) for v in t) + "]"  # noqa: E731
    return f"row {k}: expected {as_list(expected[k])}, got {as_list(got[k])}"


def check_interpolate(interpolate, *, seed: int = 0) -> None:
    """interpolate(z0, z1, n_steps) gives the n_steps points z0 + t (z1 - z0), t in [0, 1]."""
    _require_callable(interpolate, "interpolate")
    gen = torch.Generator().manual_seed(seed)
    with _isolated_rng(seed):
        for d, n_steps in ((2, 5), (3, 2), (5, 9), (2, 11)):
            z0, z1 = torch.randn(d, generator=gen), torch.randn(d, generator=gen)
            what = f"interpolate(z0, z1, n_steps={n_steps}) for random z0, z1 of shape ({d},)"
            got = call(interpolate, z0.clone(), z1.clone(), n_steps, what=what)
            got = _require_points(got, (n_steps, d), what,
                                  "one row per step: shape (n_steps, d)")
            a, b = _f64(z0), _f64(z1)
            t = torch.linspace(0, 1, n_steps, dtype=_float64)[:, None]
            expected = a + t * (b - a)
            if _close(got, expected):
                continue
            hint = "row k is z0 + t_k * (z1 - z0) with t = torch.linspace(0, 1, n_steps)"
            if _close(got, expected.flip(0)):
                hint = "the rows run from z1 to z0: the first row must be z0, the last z1"
            elif n_steps > 1:
                t_open = torch.linspace(0, 1, n_steps + 1, dtype=_float64)[:-1, None]
                t_open2 = (torch.arange(n_steps, dtype=_float64) / n_steps)[:, None]
                if _close(got, a + t_open * (b - a)) or _close(got, a + t_open2 * (b - a)):
                    hint = ("the last row is not z1: include both endpoints, t = "
                            "torch.linspace(0, 1, n_steps) (not arange(n_steps) / n_steps)")
                elif _close(got, a + torch.linspace(0, 1, n_steps + 2, dtype=_float64)[1:-1, None]
                            * (b - a)):
                    hint = "the endpoints are missing: the first row is z0 and the last z1"
            raise failure(f"{what}: wrong points", "z0 + t * (z1 - z0), t = linspace(0, 1, n_steps)",
                          _worst_row(got, expected), hint)


def _grid64(n, quantile, slow_first=True):
    inv = statistics.NormalDist().inv_cdf
    q = [inv(p) for p in np.linspace(1.0 - quantile, quantile, n)]
    pts = [(q[i], q[j]) if slow_first else (q[j], q[i]) for i in range(n) for j in range(n)]
    return torch.tensor(pts, dtype=_float64)


def check_latent_grid(latent_grid, *, seed: int = 0) -> None:
    """latent_grid(n, quantile) gives the n x n standard-normal quantile grid, i slowest."""
    _require_callable(latent_grid, "latent_grid")
    with _isolated_rng(seed):
        cases = ((5, 0.95, True), (3, 0.9, False), (8, 0.99, False), (2, 0.75, False))
        for n, quantile, default in cases:
            what = (f"latent_grid({n})" if default else f"latent_grid({n}, quantile={quantile})")
            got = call(latent_grid, n, what=what) if default else \
                call(latent_grid, n, quantile=quantile, what=what)
            got = _require_points(got, (n * n, 2), what, "one point per row: shape (n * n, 2)")
            expected = _grid64(n, quantile)
            if _close(got, expected):
                continue
            hint = ("the quantiles Phi^-1(p) of p = torch.linspace(1 - quantile, quantile, n), "
                    "e.g. torch.distributions.Normal(0, 1).icdf(p); every pair (q[i], q[j])")
            if _close(got, _grid64(n, quantile, slow_first=False)):
                hint = ("the order is transposed: the first coordinate varies slowest (row k "
                        "is (q[k // n], q[k % n])); torch.meshgrid(q, q, indexing='ij') gives "
                        "this order")
            else:
                p = torch.linspace(1.0 - quantile, quantile, n, dtype=_float64)
                raw = torch.stack(torch.meshgrid(p, p, indexing="ij"), -1).reshape(-1, 2)
                if _close(got, raw) or _close(got, raw.flip(1)):
                    hint = ("these are the probabilities p themselves: map them through the "
                            "standard normal's quantile function Phi^-1 (Normal(0, 1).icdf)")
                elif not default and _close(got, _grid64(n, 0.95)) or \
                        _close(got, _grid64(n, 0.95, slow_first=False)):
                    hint = "the argument quantile is ignored: use it instead of a fixed 0.95"
            raise failure(f"{what}: wrong points",
                          f"(Phi^-1(p_i), Phi^-1(p_j)), p = linspace({1 - quantile:g}, "
                          f"{quantile:g}, {n})", _worst_row(got, expected), hint)


# ---------------------------------------------------------------------------------------------
# BetaVAE as a module
# ---------------------------------------------------------------------------------------------

def _lightning_module():
    import lightning

    return lightning.LightningModule


def _build(BetaVAE, what=None, **kwargs) -> nn.Module:
    if isinstance(BetaVAE, nn.Module) or not callable(BetaVAE):
        raise failure("BetaVAE: not a class", "the class BetaVAE itself",
                      type(BetaVAE).__qualname__, "pass the class, not an instance")
    args = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
    what = what or f"BetaVAE({args})"
    with _quiet_lightning():
        model = call(BetaVAE, **kwargs, what=what)
    if not isinstance(model, _lightning_module()):
        raise failure(f"{what}: not a LightningModule", "an instance of a subclass of "
                      "lightning.LightningModule", type(model).__qualname__,
                      "derive the class from L.LightningModule (import lightning as L) and call "
                      "super().__init__()")
    return model


def _method(model, name: str):
    fn = getattr(model, name, None)
    if not callable(fn):
        raise failure(f"BetaVAE: no method {name}", f"a method {name} in the class",
                      "no such attribute", f"define {name} inside the class (indented under it)")
    return fn


def _pair(out, what, shape):
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        got = (f"a {type(out).__name__} of {len(out)} items" if isinstance(out, (tuple, list))
               else type(out).__qualname__)
        raise failure(f"{what}: wrong return type", "a tuple (z_mean, z_logvar)", got,
                      "return z_mean, z_logvar")
    for t, name in zip(out, ("z_mean", "z_logvar")):
        _check_output(t, shape, f"{what}: {name}", "(batch_size, n_components): use "
                      "n_components in the heads")
    return out


def _check_output(t, shape, what, hint):
    require_tensor(t, what)
    require_shape(t, shape, what, hint)
    require_dtype(t, _float32, what)
    require_finite(t, what)


def _decode_ignores_z(model, n: int) -> bool:
    """Whether decode gives the same output for two batches of codes also on a second look
    (larger and negated codes, fresh initialisations: a ReLU dead at initialisation makes a
    correct decoder look constant)."""
    wake = torch.Generator().manual_seed(REINIT_SEED)

    def probe(m, scale, left):
        decode = _method(m, "decode")
        with torch.no_grad():
            a = call(decode, scale * _randn(WAKE_BATCH, n, generator=wake), what="decode")
            b = call(decode, scale * _randn(WAKE_BATCH, n, generator=wake), what="decode")
        if not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.shape == b.shape):
            return ()
        return () if float((a - b).abs().max()) == 0.0 else left

    return bool(look_again(model, ("decode",), probe))


def check_beta_vae(BetaVAE, *, seed: int = 0) -> None:
    """BetaVAE's encode, decode and forward have the interface's types and shapes."""
    gen = torch.Generator().manual_seed(seed)
    with _isolated_rng(seed):
        for n in N_COMPONENTS:
            model = _build(BetaVAE, n_components=n)
            model.eval()
            encode, decode = _method(model, "encode"), _method(model, "decode")
            for b in BATCH_SIZES:
                x = _rand(b, 1, 28, 28, generator=gen)
                with torch.no_grad():
                    _pair(call(encode, x, what=f"BetaVAE({n}).encode(x), x {(b, 1, 28, 28)}"),
                          f"BetaVAE({n}).encode(x), x {(b, 1, 28, 28)}", (b, n))
                    z = _randn(b, n, generator=gen)
                    what = f"BetaVAE({n}).decode(z), z {(b, n)}"
                    _check_output(call(decode, z, what=what), (b, 1, 28, 28), what,
                                  "logits of shape (batch_size, 1, 28, 28): reshape the 784 outputs")
                    what = f"BetaVAE({n})(x), x {(b, 1, 28, 28)}"
                    out = call(model, x, what=what)
                    if not isinstance(out, (tuple, list)) or len(out) != 3:
                        raise failure(f"{what}: wrong return type",
                                      "a tuple (logits, z_mean, z_logvar)", type(out).__qualname__,
                                      "forward returns logits, z_mean, z_logvar")
                    _check_output(out[0], (b, 1, 28, 28), f"{what}: logits", None)
                    _pair(tuple(out[1:]), what, (b, n))
            with torch.no_grad():
                z = _randn(2, n, generator=gen)
                a = call(decode, z, what=f"BetaVAE({n}).decode")
                b2 = call(decode, _randn(2, n, generator=gen), what=f"BetaVAE({n}).decode")
            if float((a - b2).abs().max()) == 0.0 and _decode_ignores_z(model, n):
                raise failure(f"BetaVAE({n}).decode: the same output for two different z",
                              "logits that depend on z", f"identical outputs ({LOOKED_AGAIN})",
                              "decode must compute from its argument z")
            model.train()
            x = _rand(GRAD_BATCH_SIZE, 1, 28, 28, generator=gen)
            logits, z_mean, z_logvar = call(model, x, what=f"BetaVAE({n})(x) in train mode")
            for name, t in (("logits", logits), ("z_mean", z_mean), ("z_logvar", z_logvar)):
                if not t.requires_grad:
                    raise failure(f"BetaVAE({n})(x): {name} is cut off from the parameters",
                                  "an output that requires grad", "requires_grad=False",
                                  "no .detach(), .data or torch.no_grad() in encode/decode")
            params = [p for p in model.parameters() if p.requires_grad]
            loss = (logits ** 2).mean() + (z_mean ** 2).mean() + (z_logvar ** 2).mean()
            grads = _grad(loss, params, allow_unused=True)
            if all(g is None or float(g.abs().sum()) == 0.0 for g in grads):
                raise failure(f"BetaVAE({n}): gradients do not reach the parameters",
                              "non-zero gradients", "all zero or None",
                              "no .detach(), .data or torch.no_grad() in encode/decode")


def check_beta_vae_sample(BetaVAE, *, seed: int = 0) -> None:
    """BetaVAE(n_components=2).sample draws z ~ N(z_mean, exp(z_logvar)) by reparameterization."""
    if _evidence_mode() == "judge":  # the judge replays the recorded calls of BetaVAE.sample
        return check_sample(None, seed=seed)
    try:
        with _isolated_rng(seed):
            model = _build(BetaVAE, n_components=2)
    except CheckFailure as exc:
        record_failure("sampling.check_sample", exc)  # the judge fails the cell the same way
        raise
    check_sample(model, seed=seed)


# ---------------------------------------------------------------------------------------------
# A real Lightning fit
# ---------------------------------------------------------------------------------------------

def _probe_callback():
    import lightning

    class Probe(lightning.Callback):
        """Records what one fast_dev_run step shows."""

        def __init__(self):
            self.outputs = []
            self.grads = None
            self.optimizers = []

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            self.outputs.append(outputs)

        def on_before_optimizer_step(self, trainer, pl_module, optimizer):
            self.optimizers.append(optimizer)
            self.grads = {name: (None if p.grad is None else p.grad.detach().clone())
                          for name, p in pl_module.named_parameters() if p.requires_grad}

    return Probe()


def _optimizers(config) -> list:
    """The optimizers in whatever configure_optimizers returned."""
    if isinstance(config, torch.optim.Optimizer):
        return [config]
    if isinstance(config, dict):
        return _optimizers(config.get("optimizer"))
    if isinstance(config, (list, tuple)):
        found = []
        for item in config:
            found += _optimizers(item)
        return found
    return []


def _fit_data(gen):
    x = _rand(FIT_IMAGES, 1, 28, 28, generator=gen)
    y = torch.randint(0, 10, (FIT_IMAGES,), generator=gen)
    dataset = torch.utils.data.TensorDataset(x, y)
    return (torch.utils.data.DataLoader(dataset, batch_size=FIT_BATCH),
            torch.utils.data.DataLoader(dataset, batch_size=FIT_BATCH))


def check_lightning(BetaVAE, *, seed: int = 0) -> None:
    """A real Trainer(fast_dev_run=1) fits BetaVAE: loss, gradients, val_loss, optimizer."""
    import lightning

    gen = torch.Generator().manual_seed(seed)
    with _isolated_rng(seed):
        model = _build(BetaVAE, n_components=2, beta=FIT_BETA, learning_rate=FIT_LEARNING_RATE)
        params = {name: p for name, p in model.named_parameters() if p.requires_grad}
        if not params:
            raise failure("BetaVAE(): has no trainable parameters", "layers with parameters",
                          "model.parameters() is empty", "create the layers in __init__")
        # 1. configure_optimizers, called directly: every parameter, the model's learning rate.
        what = "BetaVAE(n_components=2, beta=2.0, learning_rate=0.00037).configure_optimizers()"
        config = call(_method(model, "configure_optimizers"), what=what)
        optimizers = _optimizers(config)
        if not optimizers:
            raise failure(f"{what}: no optimizer", "a torch.optim optimizer (or a dict / list "
                          "holding one)", type(config).__qualname__,
                          "return torch.optim.Adam(self.parameters(), lr=self.learning_rate)")
        covered = {id(p) for opt in optimizers for g in opt.param_groups for p in g["params"]}
        missing = [name for name, p in params.items() if id(p) not in covered]
        if missing:
            raise failure(f"{what}: the optimizer misses parameters", "every parameter of the "
                          "model", f"{len(missing)} of {len(params)} missing, e.g. {missing[0]}",
                          "pass self.parameters() (the whole model), not one sub-network")
        lrs = sorted({float(g["lr"]) for opt in optimizers for g in opt.param_groups})
        if not all(math.isclose(lr, FIT_LEARNING_RATE, rel_tol=1e-6) for lr in lrs):
            raise failure(f"{what}: wrong learning rate", f"lr={FIT_LEARNING_RATE:g}, the "
                          "learning_rate given to __init__", f"lr={', '.join(f'{v:g}' for v in lrs)}",
                          "store learning_rate in __init__ (self.learning_rate = learning_rate) "
                          "and use it in configure_optimizers")
        # 2. One training and one validation step inside a real Trainer.
        train_loader, val_loader = _fit_data(gen)
        probe = _probe_callback()
        with tempfile.TemporaryDirectory(prefix="lightning-check-") as tmp, _quiet_lightning():
            trainer = lightning.Trainer(
                fast_dev_run=1, accelerator="cpu", devices=1, logger=False,
                enable_checkpointing=False, enable_progress_bar=False,
                enable_model_summary=False, default_root_dir=tmp, callbacks=[probe])
            call(trainer.fit, model, train_loader, val_loader,
                 what="Trainer(fast_dev_run=1).fit(BetaVAE(...)) on 16 random images in "
                      "batches of 8, as (x, label) pairs")
        fit = "Trainer(fast_dev_run=1).fit(BetaVAE(...)): training_step(batch, 0)"
        out = probe.outputs[0] if probe.outputs else None
        loss = out.get("loss") if isinstance(out, dict) else out
        if loss is None:
            raise failure(f"{fit}: returned no loss", "the loss tensor", repr(out),
                          "return the loss from training_step (Lightning then calls backward and "
                          "steps the optimizer)")
        _require_loss_scalar(loss, fit, FIT_BATCH, (FIT_BATCH, 1, 28, 28), _LOSS_REDUCE,
                             _LOSS_NONFINITE)
        if probe.grads is None:
            raise failure(f"{fit}: no optimizer step", "a backward pass and an optimizer step",
                          "none", "return the loss itself (a tensor that requires grad), "
                                  "not loss.item() or a detached copy")
        dead = [name for name, g in probe.grads.items() if g is None]
        if dead:
            raise failure(f"{fit}: gradients do not reach every parameter",
                          "a gradient for every parameter", f"none for {len(dead)} of "
                          f"{len(probe.grads)}, e.g. {dead[0]}",
                          "the loss must use the decoder's logits of the SAMPLED z and the "
                          "encoder's z_mean, z_logvar: loss = beta_vae_loss(logits, x, z_mean, "
                          "z_logvar, self.beta)")
        bad = [name for name, g in probe.grads.items() if not bool(torch.isfinite(g).all())]
        if bad:
            raise failure(f"{fit}: non-finite gradients", "finite gradients",
                          f"nan or inf for {bad[0]}", _LOSS_NONFINITE)
        metrics = dict(trainer.callback_metrics)
        val = metrics.get("val_loss")
        vfit = "Trainer(fast_dev_run=1).fit(BetaVAE(...)): validation_step(batch, 0)"
        if val is None:
            raise failure(f"{vfit}: no val_loss logged", "self.log(\"val_loss\", loss) in "
                          "validation_step", f"logged metrics: {sorted(metrics) or 'none'}",
                          "EarlyStopping(monitor=\"val_loss\") and ModelCheckpoint need the "
                          "validation loss under exactly this name")
        val = float(_f64(torch.as_tensor(val)))
        if not math.isfinite(val):
            raise failure(f"{vfit}: val_loss is not finite", "a finite number", fmt(val),
                          _LOSS_NONFINITE)


# ---------------------------------------------------------------------------------------------
# The trained model, in stages (``evaluation.Evaluation``, docs/security.md):
#   first:   BetaVAE.encode on the test images -> z_mean, z_logvar (plain arrays);
#   between: the grader's own arithmetic: one z = z_mean + exp(0.5 z_logvar) eps per test image
#            (eps seeded with EVAL_Z_SEED) and the seeded z ~ N(0, I) of the judge (prior_codes),
#            from the run's secret while grading (``draws``);
#   second:  BetaVAE.decode on those codes only (never an image) -> logits (plain arrays);
#   measure: every graded number from those arrays and the grader's own data (the test images,
#            the digit classifier fitted on the training images).
# ---------------------------------------------------------------------------------------------

def evaluation_data(root=None):
    """The MNIST train and test sets of the graded evaluation."""
    return mnist_sets(root)


def _fit_classifier(x, y):
    from sklearn.linear_model import LogisticRegression

    clf = LogisticRegression(C=CLASSIFIER_C, max_iter=CLASSIFIER_MAX_ITER, tol=1e-4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a ConvergenceWarning would reach stderr
        clf.fit(x, y)
    return clf


def digit_classifier(trainset):
    """The judge: logistic regression on the pixels of ``trainset``, fitted once per process
    and data set (deterministic: lbfgs from zero weights)."""
    images, y = images_and_labels(trainset)
    x = images.reshape(len(images), -1).double().numpy()
    return fitted_once("latent digit classifier", x, y, _fit_classifier)


def sample_quality(images, classifier) -> dict[str, float]:
    """The judge on ``images`` (N, 1, 28, 28) in [0, 1]: ``confidence``, the mean probability of
    the digit it picks; ``classes``, the number of digits it picks for at least
    CLASS_MIN_FRACTION of the images; ``rarest``, how many images the least picked digit got
    (for calibration: how close ``classes`` is to changing)."""
    x = np.asarray(_f64(torch.as_tensor(images))).reshape(len(images), -1)
    proba = classifier.predict_proba(x)
    counts = np.bincount(proba.argmax(1), minlength=10)
    return {"confidence": float(proba.max(1).mean()),
            "classes": int((counts >= CLASS_MIN_FRACTION * len(x)).sum()),
            "rarest": int(counts.min())}


def prior_codes(n_components: int = 2) -> torch.Tensor:
    """The seeded z ~ N(0, I) of the sample-quality judge, (N_SAMPLES, n_components): seeded
    with SAMPLE_SEED (while grading, with a seed derived from it and the run's secret)."""
    gen = torch.Generator().manual_seed(_draw_seed(SAMPLE_SEED, PRIOR))
    return _randn(N_SAMPLES, n_components, generator=gen)


def _array(t, shape, what, hint) -> np.ndarray:
    """A model output as a plain float32 array (a copy), after its type, shape and dtype."""
    require_tensor(t, what)
    require_shape(t, shape, what, hint)
    require_dtype(t, _float32, what)
    return np.array(_Tensor.numpy(_Tensor.cpu(_Tensor.detach(t))), dtype=np.float32)


_DIVERGED = ("the training diverged or the weights are broken: lower the learning rate and "
             "train again")
_WHAT_ENCODE = "trained BetaVAE.encode on the MNIST test images"
_WHAT_DECODE = "trained BetaVAE.decode on z drawn from q(z | x)"
_WHAT_PRIOR = "trained BetaVAE.decode on z ~ N(0, I)"
_LOGITS_SHAPE = "logits of shape (batch_size, 1, 28, 28)"


def _inputs(data) -> dict:
    """The first stage's inputs: every test image."""
    return {"x_test": images_and_labels(data[1])[0]}


def _encode(models: dict, inputs: dict) -> dict:
    """First stage: ``encode`` of the test images, in batches: z_mean and z_logvar as plain
    float32 arrays of one width (the module check holds that width to n_components)."""
    encode = _method(models["BetaVAE"], "encode")
    width = None
    means, logvars = [], []
    for xb in batches(inputs["x_test"]):
        out = call(encode, _Tensor.clone(xb), what=_WHAT_ENCODE)
        if not isinstance(out, (tuple, list)) or len(out) != 2:
            _pair(out, _WHAT_ENCODE, (len(xb), width or 2))  # raises the wrong-return-type failure
        if width is None:
            shape = _shape(out[0])
            width = shape[1] if len(shape) == 2 and shape[1] > 0 else NOTEBOOK.n_components
        mu, lv = (_array(t, (len(xb), width), f"{_WHAT_ENCODE}: {name}", "(batch_size, "
                         "n_components): use n_components in the heads")
                  for t, name in zip(out, ("z_mean", "z_logvar")))
        means.append(mu)
        logvars.append(lv)
    return {"z_mean": np.concatenate(means), "z_logvar": np.concatenate(logvars)}


def _finite(array: np.ndarray, what: str) -> torch.Tensor:
    t = torch.from_numpy(np.asarray(array, dtype=np.float64))
    if not bool(torch.isfinite(t).all()):
        raise failure(f"{what}: non-finite values", "finite values", "nan or inf", _DIVERGED)
    return t


def _codes(first: dict, data) -> dict:
    """The decoder's inputs, made by the grader: ``z``, one draw z = z_mean + exp(0.5 *
    z_logvar) * eps per test image (eps float64, seeded with EVAL_Z_SEED or while grading from
    the run's secret, in test-set order), and ``z_prior``, the judge's z ~ N(0, I)
    (:func:`prior_codes`)."""
    mu = _finite(checked(first, "z_mean"), f"{_WHAT_ENCODE}: z_mean")
    lv = _finite(checked(first, "z_logvar", len(mu)), f"{_WHAT_ENCODE}: z_logvar")
    if mu.ndim != 2 or lv.shape != mu.shape:
        raise evidence_failure("the codes have inconsistent shapes")
    gen = torch.Generator().manual_seed(_draw_seed(EVAL_Z_SEED, LATENT_EPS))
    eps = _randn(*mu.shape, generator=gen, dtype=_float64)
    z = _Tensor.to(mu + _exp(0.5 * lv) * eps, _float32)
    if not bool(torch.isfinite(z).all()):
        raise failure(f"{_WHAT_DECODE}: non-finite z", "finite z",
                      "nan or inf (exp(0.5 * z_logvar) overflows)", _DIVERGED)
    return {"z": z, "z_prior": prior_codes(mu.shape[1])}


def _decode(models: dict, inputs: dict) -> dict:
    """Second stage: ``decode`` of the grader's codes only, logits as plain float32 arrays."""
    decode = _method(models["BetaVAE"], "decode")
    out = {}
    for name, key, what in (("logits", "z", _WHAT_DECODE), ("prior_logits", "z_prior", _WHAT_PRIOR)):
        out[name] = np.concatenate(
            [_array(call(decode, _Tensor.clone(z), what=what), (len(z), 1, 28, 28), what,
                    _LOGITS_SHAPE) for z in batches(inputs[key])])
    return out


def _measure(first: dict, second: dict, data) -> dict:
    """Every graded number, from the stages' arrays and the grader's own data, in float64:

    - ``elbo_loss``: the negative ELBO per test image with beta = 1, ``bce`` + ``kl``: the
      binary cross-entropy of ``logits`` against x summed over the pixels, and
      KL(N(z_mean, exp(z_logvar)) || N(0, I)) summed over the latent dimensions;
    - ``confidence``, ``classes``, ``rarest``: the judge (the digit classifier of the training
      images) on sigmoid(``prior_logits``) (:func:`sample_quality`);
    - ``probability_logits``: whether every decoded value lies in [0, 1] (a decode that
      returns probabilities instead of logits), for a hint.
    """
    trainset, testset, _ = data
    x = images_and_labels(testset)[0]
    mu = _finite(checked(first, "z_mean", len(x)), f"{_WHAT_ENCODE}: z_mean")
    lv = _finite(checked(first, "z_logvar", len(x)), f"{_WHAT_ENCODE}: z_logvar")
    logits = _finite(checked(second, "logits", len(x)), _WHAT_DECODE).reshape(x.shape)
    prior = _finite(checked(second, "prior_logits", N_SAMPLES), _WHAT_PRIOR).reshape(N_SAMPLES, 1, 28, 28)
    bce = float(_bce64(logits, _f64(x)).mean())
    kl = float(_kl64(mu, lv).mean())
    if not (math.isfinite(bce) and math.isfinite(kl)):
        raise failure("negative ELBO of the trained BetaVAE on the test images: non-finite value",
                      "a finite number", f"BCE {fmt(bce)}, KL {fmt(kl)}",
                      "exp(z_logvar) overflows or underflows: " + _DIVERGED)
    in_unit = bool(((logits >= 0) & (logits <= 1)).all() and ((prior >= 0) & (prior <= 1)).all())
    return {"elbo_loss": bce + kl, "bce": bce, "kl": kl,
            **sample_quality(_sigmoid(prior), digit_classifier(trainset)), "probability_logits": in_unit}


def _data(trainset=None, testset=None):
    return mnist_evaluation(trainset, testset, "BetaVAE")


def prepare_judge(data) -> None:
    """In the judge's server, before it forks any judge (``grading/judge_preload.py``): fit the
    digit classifier on the evaluation's training images once, instead of once per judge."""
    digit_classifier(data[0])


#: The evaluation of the saved BetaVAE: encode on the test images; decode (in a process of its
#: own during grading) on codes the grader makes; the numbers measured where no student code ran.
EVALUATION = Evaluation(
    name="latent", what="BetaVAE", bars="latent", data=_data, inputs=_inputs,
    first=Stage(("BetaVAE",), _encode, {"z_mean": "x_test", "z_logvar": "x_test"}),
    between=_codes,
    second=Stage(("BetaVAE",), _decode, {"logits": "z", "prior_logits": "z_prior"}),
    measure=_measure, seed=EVAL_Z_SEED, codes=Codes(("z_mean", "z_logvar"), NOTEBOOK.n_components))
EVALUATIONS = (EVALUATION,)


def evaluate_latent(model, trainset, testset, *, train_mode: bool = False) -> dict[str, float]:
    """The graded numbers of a trained BetaVAE (the stages of ``EVALUATION`` in this process):
    the test images of ``testset``, the digit classifier of ``trainset``; eval() mode
    (``train_mode=True``: train mode, for a hint)."""
    return run(EVALUATION, {"BetaVAE": model}, (trainset, testset, None), train_mode=train_mode)


@torch.no_grad()
def evaluate_baselines(workdir, trainset, testset) -> dict[str, float]:
    """Calibration only: the baselines the notebook run in ``workdir`` trained beside the
    reference. ``ae_*``: the judge on the plain autoencoder of the worked example (``AE_PATH``,
    its class taken from the source notebook's read-only cell ``latent_ae_setup``) decoding the
    same seeded z ~ N(0, I) as the VAE; ``brief1_*`` and ``brief_large_*``: every graded number
    of the two brief beta-VAEs of the beta comparison (``BETA_1_PATH``, ``BETA_LARGE_PATH``:
    a few epochs, beta = 1 and beta = beta_large)."""
    import io
    from pathlib import Path

    import nbformat

    from data_tools.utils import load_model

    from ..grading.course import COURSE_ROOT, SOURCE, definitions

    path = COURSE_ROOT / SOURCE / NOTEBOOK.assignment / f"{NOTEBOOK.name}.ipynb"
    cell = next(c for c in nbformat.read(path, as_version=4).cells
                if c.metadata.get("nbgrader", {}).get("grade_id") == "latent_ae_setup")
    ns: dict = {}
    exec("import torch\nimport torch.nn as nn\nimport torch.nn.functional as F\n"
         "import lightning as L\n" + cell.source, ns)
    ae = ns["LitAutoencoder"](NOTEBOOK.n_components)
    with contextlib.redirect_stdout(io.StringIO()):
        load_model(ae, Path(workdir) / AE_PATH)
    ae.eval()
    probs = _sigmoid(_f64(ae.decoder(prior_codes(NOTEBOOK.n_components))))
    result = {f"ae_{key}": value for key, value in
              sample_quality(probs, digit_classifier(trainset)).items()}
    BetaVAE = definitions(path)["BetaVAE"]
    for prefix, weights in (("brief1", BETA_1_PATH), ("brief_large", BETA_LARGE_PATH)):
        model = BetaVAE(NOTEBOOK.n_components)
        with contextlib.redirect_stdout(io.StringIO()):
            load_model(model, Path(workdir) / weights)
        numbers = evaluate_latent(model, trainset, testset)
        result.update({f"{prefix}_{key}": value for key, value in numbers.items()
                       if key != "probability_logits"})
    return result


def load_trained(BetaVAE, path: str = WEIGHTS_PATH):
    """Build BetaVAE(n_components) and load the saved weights; a problem becomes a CheckFailure."""
    __tracebackhide__ = True  # noqa: F841
    (model,) = load_models("BetaVAE", NOTEBOOK.n_components, (BetaVAE, "BetaVAE", path))
    return model.eval()


def trained_results(BetaVAE, *, trainset=None, testset=None, path: str = WEIGHTS_PATH,
                    train_mode: bool = False) -> dict:
    """The graded numbers of the saved BetaVAE, built as BetaVAE(n_components) (evaluated once
    per process, see ``evaluation.results``): the dict of :func:`evaluate_latent` with
    ``source`` and ``bars``; eval() mode (``train_mode=True``: train mode, for the hint of a
    failed bar)."""
    __tracebackhide__ = True  # noqa: F841
    return results(EVALUATION, NOTEBOOK.n_components, ((BetaVAE, "BetaVAE", path),),
                   (trainset, testset), train_mode=train_mode)


_LOGITS_HINT = ("every decoded value lies in [0, 1]: decode must return LOGITS (no sigmoid at "
                "the end); the loss applies the sigmoid itself, through "
                "binary_cross_entropy_with_logits")
_ELBO_HINT = ("train longer (EarlyStopping ends training when val_loss stops improving), load "
              "the BEST checkpoint before saving, and check that training_step uses "
              "beta_vae_loss on the logits of the sampled z")
_SAMPLES_HINT = ("the decoder must turn codes from the prior N(0, I) into digits: check that the "
                 "KL term is in the loss with beta = 1 for the saved model, and train longer")
_CLASSES_HINT = ("the samples show only {classes} of the 10 digits: the codes of the training "
                 "images do not fill N(0, I) evenly, as with a plain autoencoder (the notebook's "
                 "shows 7 to 9 digits on these codes); check the KL term of beta_vae_loss (the "
                 "factor 1/2, summed over the latent dimensions, beta = 1 for the saved model), "
                 "that training_step uses it on z_mean and z_logvar of the same batch, and "
                 "train until early stopping")
_SAMPLES_WHAT = (f"{N_SAMPLES} images decoded from seeded z ~ N(0, I), judged by a "
                 "logistic-regression digit classifier fitted on the training images")


def elbo_line(result: dict) -> str:
    """The graded negative ELBO beside its bar."""
    bars = result["bars"]
    return (graded_line("negative ELBO per test image (beta = 1)", result["elbo_loss"],
                        bars["elbo_loss"], bars.get("reference_elbo_loss"), result["source"],
                        fmt=".1f", op="<=", models="model")
            + f"; BCE {result['bce']:.1f} + KL {result['kl']:.1f}")


def samples_lines(result: dict) -> str:
    """The graded sample-quality numbers beside their bars."""
    bars = result["bars"]
    return "\n".join((
        graded_line("samples from z ~ N(0, I): mean classifier confidence", result["confidence"],
                    bars["confidence"], bars.get("reference_confidence"), result["source"],
                    models="model"),
        graded_line(f"samples from z ~ N(0, I): digit classes covered (at least "
                    f"{CLASS_MIN_FRACTION:.0%} of the samples each)", result["classes"],
                    bars["classes"], bars.get("reference_classes"), result["source"], fmt=".0f",
                    models="model")))


def check_trained_elbo(BetaVAE, *, trainset=None, testset=None, path: str = WEIGHTS_PATH) -> None:
    """The saved BetaVAE's negative ELBO per test image (beta = 1) is under the bar."""
    kwargs = dict(trainset=trainset, testset=testset, path=path)
    result = trained_results(BetaVAE, **kwargs)
    logits = result["probability_logits"]
    require_bar(result, "elbo_loss", op="<=", fmt=".1f", reference="reference_elbo_loss",
                what="negative ELBO (beta = 1) of the trained BetaVAE per MNIST test image (BCE "
                     "summed over pixels + KL, one z per image drawn by the grader)",
                problem="too high",
                got=f"{result['elbo_loss']:.1f} (BCE {result['bce']:.1f} + KL {result['kl']:.1f})",
                hint=_LOGITS_HINT if logits else _ELBO_HINT, generic=not logits, models="model",
                train_mode=lambda: trained_results(BetaVAE, train_mode=True, **kwargs))
    print(elbo_line(result))


def check_trained_samples(BetaVAE, *, trainset=None, testset=None,
                          path: str = WEIGHTS_PATH) -> None:
    """Images decoded from z ~ N(0, I) convince the grader's digit classifier."""
    kwargs = dict(trainset=trainset, testset=testset, path=path)
    result = trained_results(BetaVAE, **kwargs)
    logits = result["probability_logits"]
    common = dict(generic=not logits, models="model",
                  train_mode=lambda: trained_results(BetaVAE, train_mode=True, **kwargs))
    require_bar(result, "confidence", reference="reference_confidence", what=_SAMPLES_WHAT,
                problem="mean confidence too low", hint=_LOGITS_HINT if logits else _SAMPLES_HINT,
                **common)
    require_bar(result, "classes", reference="reference_classes", fmt=".0f", what=_SAMPLES_WHAT,
                problem=f"too few digit classes (a class counts with at least "
                        f"{CLASS_MIN_FRACTION:.0%} of the samples)",
                hint=_LOGITS_HINT if logits else _CLASSES_HINT.format(classes=result["classes"]),
                **common)
    print(samples_lines(result))


# Decided by the judge on the recorded calls during grading (``recorded``).
check_beta_vae_loss = replayable("latent.check_beta_vae_loss")(check_beta_vae_loss)
check_interpolate = replayable("latent.check_interpolate")(check_interpolate)
check_latent_grid = replayable("latent.check_latent_grid")(check_latent_grid)

# A failed check shows the student their own call and the message, no frame of the grader.
for _name in ("check_beta_vae_loss", "check_interpolate", "check_latent_grid", "check_beta_vae",
              "check_beta_vae_sample", "check_lightning", "check_trained_elbo",
              "check_trained_samples"):
    globals()[_name] = student_facing(globals()[_name])
del _name
