"""Checks for the variational autoencoder notebook (``vae.ipynb``).

Every check is ``check_<property>(obj, *, seed=0)``: it builds its own seeded inputs, returns
None on success and raises :class:`~autograder.checks.core.CheckFailure` on the first problem it
finds, coarse to fine (callable -> real tensor -> dtype -> shape -> finite -> value), under
:func:`~autograder.checks.core.isolated_rng` (the notebook's random state is left untouched).

check_loss_kl(loss_kl) / check_loss_loglik(loss_loglik)
    A plain 0-dim tensor (float32 or float64) equal to (1/N) sum_i KL(N(z_mean_i,
    diag(exp(z_logvar_i))) || N(0, I)), summed over latent dimensions, for shapes (1, k), (B, 1),
    (B, 2), (B, 10), B up to 64; and to -(1/N) sum_i log N(x_i | y_mean_i, diag(exp(y_logvar_i))),
    summed over pixels, with or without the constant 0.5*D*log(2*pi), D = 784, on the slide's
    shape (B, 1, 28, 28); both averaged over the batch. Oracles in float64: ``kl_divergence``
    and ``Normal.log_prob``. KL = 0 at N(0, I) and is symmetric in the mean; the gradients are
    the true ones. A wrong value is matched against the catalogues ``KL_MISTAKES`` and
    ``LOGLIK_MISTAKES`` (missing 1/2, batch sum, mean over the summed dimensions, flipped sign,
    standard deviation or log standard deviation for the variance, missing -1, ..., and their
    combinations); the hint names the mistake.
check_sample(encoder_or_sample_fn) / check_encoder_sample(Encoder)
    The reparameterized draw z = z_mean + exp(0.5*z_logvar) * eps (:mod:`~autograder.checks.sampling`).
check_encoder(Encoder) / check_decoder(Decoder)
    The generic module check (:func:`~autograder.checks.modules.check_module`):
    ``Encoder(n_components)(x)`` returns ``(z_mean, z_logvar)``, each (B, n_components),
    ``Decoder(n_components)(z)`` returns ``(y_mean, y_logvar)``, each (B, 1, 28, 28), float32 and
    finite for B in (1, 3, 32) (eval mode) and n_components in (2, 5, 10); the two outputs differ,
    the means depend on the input, gradients from both reach the parameters (train mode); the
    decoder's floor holds, y_logvar >= ``MIN_LOGVAR_ALLOWED`` even for z scaled by 100 and 1000.
    The order of z_mean and z_logvar shows only on a trained encoder.
check_trained_vae_probe / check_trained_vae_loss(Encoder, Decoder, n_components, ...)
    One grade cell each, reading one evaluation per process (``trained_results``;
    ``report_trained`` prints every graded number beside its bar; ``check_trained_vae`` runs
    both). The saved weights load into freshly built models, put in eval() mode; on the seeded
    varianceMNIST evaluation sets (``EVAL_SEED_TRAIN``, ``EVAL_SEED_TEST``), a
    logistic-regression probe on z_mean passes the calibrated accuracy bar, and the negative
    ELBO per test image (KL + NLL without the constant 0.5*784*log(2*pi)), computed by
    :func:`evaluate_vae` in float64 with torch.distributions and one z per image drawn with
    the seed ``EVAL_Z_SEED`` (while grading, a seed derived from the run's secret: ``draws``;
    never with the student's loss functions or ``sample``),
    passes the calibrated loss bar (``autograder.checks.thresholds``). The grader applies the
    floor itself: it evaluates the loss with y_logvar clamped from below at
    ``MIN_LOGVAR_ALLOWED`` (the floor ``check_decoder`` requires), so a decoder that outputs a
    lower log-variance on the always-zero background gains nothing.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch
from torch.distributions import Normal, kl_divergence

from ..manifest import notebook
from .core import call, failure, fmt, require_tensor, student_facing
from .core import f64 as _f64
from .core import isolated_rng as _isolated_rng
from .core import require_callable as _require_callable
from .data import eval_seeds, seeded_variance, variance_evaluation, variance_sets
from .draws import LATENT_EPS
from .draws import seed as _draw_seed
from .evaluation import (
    Codes,
    Evaluation,
    Stage,
    apply,
    batches,
    encoder_decoder_functions,
    image_inputs,
    images_and_labels,
    run,
)
from .evidence import checked
from .losses import Mistakes, check_loss_grads, log_std_hint, loss_value, mistake_hint
from .losses import nonfinite_logvar_hint as _nonfinite
from .losses import std_as_var_hint as _std_as_var
from .modules import Spec, code, image, image_hint, module_check, split_outputs
from .modules import forward as modules_forward
from .recorded import replayable
from .sampling import check_encoder_sample, check_sample  # re-exported (__all__)
from .thresholds import graded_line

__all__ = [
    "check_loss_kl", "check_loss_loglik", "check_sample", "check_encoder", "check_decoder",
    "check_encoder_sample", "check_trained_vae", "check_trained_vae_probe",
    "check_trained_vae_loss", "evaluate_vae", "evaluation_data", "load_trained",
    "report_trained", "trained_results", "MIN_LOGVAR_ALLOWED",
]

# Own references, taken at import time (a notebook may rebind the public names later).
_Tensor = torch.Tensor
_float32 = torch.float32
_float64 = torch.float64
_Normal = Normal
_kl_divergence = kl_divergence
_isfinite = torch.isfinite
_randn = torch.randn
_rand = torch.rand

# -------------------------------------------------------------------------------- Tolerances and constants

#: A loss value is accepted when |got - expected| <= ATOL + RTOL * magnitude, where magnitude is
#: the batch mean of the sum of |terms| of the formula (so float32 rounding in a sum of many
#: terms, or cancellation between terms, is covered; a known mistake changes the value by a
#: sizeable fraction of the magnitude).
KL_RTOL = 1e-4
KL_ATOL = 1e-5
LOGLIK_RTOL = 1e-4
LOGLIK_ATOL = 1e-4
#: Pixels per image (1 x 28 x 28), and the constant of a Gaussian log-density per dimension.
N_PIXELS = 28 * 28
HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)
#: check_decoder: the smallest y_logvar a decoder may ever output. exp(-10) = 4.5e-5 is a
#: variance (a standard deviation of 0.0067, under 1% of the pixel range [0, 1]). Without a
#: floor, the zero-variance background pixels of varianceMNIST let -log N(x | y_mean, var)
#: = 0.5 * log(var) + ... go to -infinity, and (x - y_mean)^2 / var blows up the gradients.
#: With y_logvar >= -10 every pixel contributes at least -5 to loss_loglik and 1/var stays
#: below 2.2e4, which float32 training tolerates. The bound is deliberately generous: any floor
#: at or above -10 passes (log(1e-3) = -6.9 as in the reference, log(1e-4) = -9.2, -6, a hard
#: clamp or a smooth softplus floor alike). The graded test loss (:func:`evaluate_vae`) clamps
#: y_logvar from below at this same floor, in the grader's process: a decoder that keeps a floor
#: gets exactly its own numbers, one that goes lower gains nothing.
MIN_LOGVAR_ALLOWED = -10.0
#: The floor must hold for z ~ N(0, I) multiplied by each of these (eval mode).
FLOOR_Z_SCALES = (1.0, 100.0, 1000.0)

#: check_encoder / check_decoder: batch sizes (forward in eval mode) and latent sizes.
BATCH_SIZES = (1, 3, 32)
N_COMPONENTS = (2, 5, 10)
#: Batch size of the gradient check (train mode, so BatchNorm sees more than one sample).
GRAD_BATCH_SIZE = 8


def _variance_like(gen: torch.Generator, batch_size: int) -> torch.Tensor:
    """varianceMNIST-like images, (batch_size, 1, 28, 28): exact zeros in the background."""
    shape = (batch_size, 1, 28, 28)
    clean = _rand(shape, generator=gen) * (_rand(shape, generator=gen) < 0.3)
    return clean * _randn(shape, generator=gen)


_HALF = "did you drop the factor 1/2?"
_BATCH_SUM = "did you sum over the batch instead of averaging over it (divide by the batch size)?"

# ------------------------------------------------------------------------------------------------- loss_kl

_KL_SIGN = "is the sign flipped? (a KL divergence is never negative)"
_KL_REDUCE = "sum over the latent dimensions (dim 1), then average over the batch (dim 0)"
_KL_FALLBACK = ("per latent dimension, use KL(N(mu, sigma^2) || N(0, 1)) with "
                "sigma^2 = exp(z_logvar); sum over the latent dimensions, then average over "
                "the batch")


def _kl_rows(mu: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, std^2) || N(0, I)) of each row, float64 (std may underflow to 0: no validation)."""
    prior = _Normal(torch.zeros_like(mu), torch.ones_like(std), validate_args=False)
    return _kl_divergence(_Normal(mu, std, validate_args=False), prior).sum(-1)


def _kl64(mu: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """Oracle: sum over latent dims, mean over batch of KL(N(mu, std^2) || N(0, 1)), float64."""
    return _kl_rows(mu, std).mean()


#: The known mistakes of loss_kl: the KL each formula mistake gives from z_mean and z_logvar
#: (float64), and the factor of each reduction mistake for a batch of shape (B, n).
KL_MISTAKES = Mistakes(
    formulas=((_std_as_var("z_logvar"), lambda mu, lv: _kl64(mu, (0.25 * lv).exp())),
              (log_std_hint("z_logvar"), lambda mu, lv: _kl64(mu, lv.exp())),
              ("did you forget the -1 term?",
               lambda mu, lv: _kl64(mu, (0.5 * lv).exp()) + 0.5 * mu.shape[1])),
    factors=((_HALF, lambda b, n: 2.0),
             (_BATCH_SUM, lambda b, n: b),
             ("did you average over the latent dimensions instead of summing over them? (a plain "
              ".mean() averages over both; sum over dim 1, then mean over the batch)",
              lambda b, n: 1 / n),
             (_KL_SIGN, lambda b, n: -1.0)))


def _kl_scale(mu: torch.Tensor, lv: torch.Tensor) -> float:
    """The magnitude of the KL's terms (float64 inputs), for the tolerance."""
    return float((0.5 * (lv.exp() + mu ** 2 + 1 + lv.abs())).sum(-1).mean())


def _kl_value(loss_kl, z_mean, z_logvar, desc: str) -> float:
    return loss_value(loss_kl, "loss_kl", ("z_mean", "z_logvar"), (z_mean, z_logvar), desc,
                      _KL_REDUCE, _nonfinite("z_logvar"))


def _check_kl_case(loss_kl, z_mean, z_logvar, desc: str) -> None:
    got = _kl_value(loss_kl, z_mean, z_logvar, desc)
    mu, lv = _f64(z_mean), _f64(z_logvar)
    expected = float(_kl64(mu, (0.5 * lv).exp()))
    scale = _kl_scale(mu, lv)
    tol = KL_ATOL + KL_RTOL * scale
    if abs(got - expected) <= tol:
        return
    named = KL_MISTAKES.name(got, (mu, lv), expected, *z_mean.shape, scale, KL_ATOL)
    if got < -tol:
        raise failure(f"loss_kl: negative value for {desc}",
                      f">= 0, a KL divergence is never negative (exactly {fmt(expected)})",
                      fmt(got), mistake_hint(named, _KL_SIGN))
    ratio = f"got/expected = {fmt(got / expected)}; " if expected > tol else ""
    raise failure(f"loss_kl: wrong value for {desc}",
                  f"{fmt(expected)} (tolerance {fmt(tol)})", fmt(got),
                  mistake_hint(named, ratio + _KL_FALLBACK))


def _random_latents(gen: torch.Generator, batch_size: int, n: int):
    z_mean = 1.5 * _randn(batch_size, n, generator=gen)
    z_logvar = -3.0 + 5.0 * _rand(batch_size, n, generator=gen)  # U(-3, 2)
    return z_mean, z_logvar


#: Random shapes of check_loss_kl: B > 1 and B != n in the first, so that the factors 2, B,
#: 1/n and -1 of the common mistakes all differ; then the edge shapes (B, 1), (1, k).
KL_RANDOM_SHAPES = ((7, 10), (64, 2), (5, 1), (1, 6), (64, 10))


def check_loss_kl(loss_kl, *, seed: int = 0) -> None:
    """loss_kl(z_mean, z_logvar) is the batch mean of KL(q || N(0, I)) summed over latent dims."""
    _require_callable(loss_kl, "loss_kl")
    gen = torch.Generator().manual_seed(seed)
    with _isolated_rng(seed):
        # 1. q = N(0, I): KL is zero. 2. By hand: 2 * 0.5 * (2 - 1 - log 2) = 0.306853.
        for logvar, desc in ((0.0, "z_logvar=0 (q = N(0, I), so KL = 0)"), (math.log(2.0), "z_logvar=log 2")):
            _check_kl_case(loss_kl, torch.zeros(3, 2), torch.full((3, 2), logvar),
                           f"z_mean=0, {desc}, shape (3, 2)")
        # 3. Symmetry in the mean: KL(N(mu, s^2) || N(0, 1)) = KL(N(-mu, s^2) || N(0, 1)).
        z_mean, z_logvar = _random_latents(gen, 6, 4)
        desc = "random z_mean and z_logvar, shape (6, 4)"
        plus = _kl_value(loss_kl, z_mean, z_logvar, desc)
        minus = _kl_value(loss_kl, -z_mean, z_logvar, f"-z_mean and the same z_logvar, {desc}")
        if abs(plus - minus) > KL_ATOL + KL_RTOL * _kl_scale(_f64(z_mean), _f64(z_logvar)):
            raise failure(f"loss_kl: not symmetric in the mean, {desc}",
                          "loss_kl(z_mean, z_logvar) == loss_kl(-z_mean, z_logvar)",
                          f"{fmt(plus)} vs {fmt(minus)}",
                          "the KL depends on z_mean only through z_mean**2: did you forget to "
                          "square z_mean?")
        # 4. Values on random inputs of several shapes.
        for batch_size, n in KL_RANDOM_SHAPES:
            z_mean, z_logvar = _random_latents(gen, batch_size, n)
            _check_kl_case(loss_kl, z_mean, z_logvar,
                           f"random z_mean ~ N(0, 1.5^2), z_logvar ~ U(-3, 2), shape "
                           f"({batch_size}, {n}) (seed {seed})")
        # 5. Gradients reach z_mean and z_logvar and are the true ones.
        z_mean, z_logvar = _random_latents(gen, 7, 10)
        check_loss_grads(
            "loss_kl", loss_kl, (z_mean, z_logvar), ("z_mean", "z_logvar"),
            lambda mu, lv: _kl64(mu, (0.5 * lv).exp()), _KL_REDUCE,
            "random z_mean and z_logvar, shape (7, 10)")


# --------------------------------------------------------------------------------------------- loss_loglik

_LL_REDUCE = "sum over the pixels (dims 1, 2, 3), then average over the batch (dim 0)"
_LL_FALLBACK = ("per pixel, -log N(x | y_mean, sigma^2) with sigma^2 = exp(y_logvar); sum over "
                "the pixels of an image, then average over the batch")
_CONST = HALF_LOG_2PI * N_PIXELS


def _nll_rows(y_mean, std, x) -> torch.Tensor:
    """-log N(x | y_mean, std^2) of each image with the constant, float64 (no validation)."""
    return -_Normal(y_mean, std, validate_args=False).log_prob(x).flatten(1).sum(1)


def _nll64(y_mean, std, x) -> torch.Tensor:
    """Oracle with the constant: -sum over pixels, mean over batch of Normal.log_prob, float64."""
    return _nll_rows(y_mean, std, x).mean()


def _per_image(terms: torch.Tensor) -> float:
    return float(terms.flatten(1).sum(1).mean())


def _with_and_without_constant(mistakes, value):
    """Without, with the constant, and with the factor 1/2 dropped from all but the constant."""
    return ((mistakes, value), (mistakes, value + _CONST), (mistakes + (_HALF,), 2 * value + _CONST))


#: The known mistakes of loss_loglik: the value each formula mistake gives from y_mean,
#: y_logvar and x (float64, without the constant), and the factor of each reduction mistake
#: for a batch of B images of D pixels; each formula with and without the constant.
LOGLIK_MISTAKES = Mistakes(
    formulas=((log_std_hint("y_logvar"), lambda m, lv, x: _nll64(m, lv.exp(), x) - _CONST),
              (_std_as_var("y_logvar"), lambda m, lv, x: _nll64(m, (0.25 * lv).exp(), x) - _CONST),
              ("did you divide by y_logvar? y_logvar is a log-variance: the variance is "
               "exp(y_logvar)", lambda m, lv, x: _per_image(0.5 * lv + 0.5 * (x - m) ** 2 / lv)),
              ("did you divide the squared error by the standard deviation instead of by the "
               "variance exp(y_logvar)?",
               lambda m, lv, x: _per_image(0.5 * lv + 0.5 * (x - m) ** 2 / (0.5 * lv).exp()))),
    factors=((_HALF, lambda b, d: 2.0),
             (_BATCH_SUM, lambda b, d: b),
             ("did you average over the pixels instead of summing over them? (sum over dims "
              "(1, 2, 3), then mean over the batch)", lambda b, d: 1 / d),
             ("is the sign flipped? loss_loglik is the NEGATIVE log-likelihood (0.5*y_logvar + "
              "0.5*(x - y_mean)**2 / exp(y_logvar) per pixel, up to a constant)",
              lambda b, d: -1.0)),
    variants=_with_and_without_constant)


def _check_loglik_case(loss_loglik, y_mean, y_logvar, x, desc: str) -> None:
    got = loss_value(loss_loglik, "loss_loglik", ("y_mean", "y_logvar", "x"), (y_mean, y_logvar, x),
                     desc, _LL_REDUCE, _nonfinite("y_logvar"))
    m, lv, x64 = _f64(y_mean), _f64(y_logvar), _f64(x)
    expected = float(_nll64(m, (0.5 * lv).exp(), x64)) - _CONST   # the reference drops it
    if abs(expected) < 1e-9 * _CONST:   # rounding left over from subtracting the constant
        expected = 0.0
    scale = _per_image(0.5 * lv.abs() + 0.5 * (x64 - m) ** 2 / lv.exp() + HALF_LOG_2PI)
    tol = LOGLIK_ATOL + LOGLIK_RTOL * scale
    if min(abs(got - expected), abs(got - (expected + _CONST))) <= tol:
        return
    named = LOGLIK_MISTAKES.name(got, (m, lv, x64), expected, x.shape[0], N_PIXELS, scale,
                                 LOGLIK_ATOL)
    raise failure(f"loss_loglik: wrong value for {desc}",
                  f"{fmt(expected)}, or {fmt(expected + _CONST)} with the constant "
                  f"0.5*D*log(2*pi), D = {N_PIXELS} (tolerance {fmt(tol)})",
                  fmt(got), mistake_hint(named, _LL_FALLBACK))


def _random_images(gen: torch.Generator, batch_size: int):
    """varianceMNIST-like x and a decoder-like output (y_mean, y_logvar ~ U(-4, 1.5))."""
    shape = (batch_size, 1, 28, 28)
    x = _variance_like(gen, batch_size)
    return 0.3 * _randn(shape, generator=gen), -4.0 + 5.5 * _rand(shape, generator=gen), x


#: Batch sizes of the random cases of check_loss_loglik (the first has B > 1 so that a sum over
#: the batch shows). Only the slide's shape (B, 1, 28, 28) is required.
LOGLIK_RANDOM_BATCHES = (5, 1, 16)


def check_loss_loglik(loss_loglik, *, seed: int = 0) -> None:
    """loss_loglik(y_mean, y_logvar, x) is the batch mean of -log N(x | y_mean, exp(y_logvar))."""
    _require_callable(loss_loglik, "loss_loglik")
    gen = torch.Generator().manual_seed(seed)
    shape3 = (3, 1, 28, 28)
    with _isolated_rng(seed):
        # 1. A perfect mean with unit variance: 0 (or 784 * 0.5 * log(2 pi) with the constant).
        x = _randn(shape3, generator=gen)
        _check_loglik_case(loss_loglik, x.clone(), torch.zeros(shape3), x,
                           "y_mean = x, y_logvar = 0, shape (3, 1, 28, 28)")
        # 2. By hand: per pixel 0.5 * log 2 + 0.5 * 1 / 2 = 0.596574, times 784 = 467.714.
        _check_loglik_case(loss_loglik, torch.zeros(shape3), torch.full(shape3, math.log(2.0)),
                           torch.ones(shape3),
                           "y_mean = 0, y_logvar = log 2, x = 1, shape (3, 1, 28, 28)")
        # 3. Random varianceMNIST-like inputs.
        for batch_size in LOGLIK_RANDOM_BATCHES:
            y_mean, y_logvar, x = _random_images(gen, batch_size)
            _check_loglik_case(loss_loglik, y_mean, y_logvar, x,
                               f"random y_mean, y_logvar ~ U(-4, 1.5) and varianceMNIST-like x, "
                               f"shape ({batch_size}, 1, 28, 28) (seed {seed})")
        # 4. Gradients reach y_mean and y_logvar and are the true ones.
        y_mean, y_logvar, x = _random_images(gen, 5)
        check_loss_grads(
            "loss_loglik", loss_loglik, (y_mean, y_logvar), ("y_mean", "y_logvar"),
            lambda m, lv, x64: _nll64(m, (0.5 * lv).exp(), x64), _LL_REDUCE,
            "random inputs, shape (5, 1, 28, 28)", extra_inputs=(x,))


# ---------------------------------------------------------- Encoder and Decoder (the generic module check)

def _pixel_hint(n, got: tuple) -> str:
    if len(got) == 2 and got[1] == N_PIXELS:
        return ("y_mean and y_logvar are images: reshape to (batch_size, 1, 28, 28), e.g. "
                "h.view(-1, 1, 28, 28)")
    return image_hint(got)


def _pair_hint(first: str, second: str, both_in_one, where: str):
    """Hint for one tensor where (first, second) was due; ``where`` when ``both_in_one(shape)``."""
    split = f"; if this is {first} and {second} {where}, split it: {first}, {second} = h.chunk(2, dim=1)"
    return lambda got: (f"forward must return a tuple ({first}, {second}) of two tensors"
                        + (split if both_in_one(got) else ""))


ENCODER = Spec("Encoder", "x", lambda gen, b, n: _variance_like(gen, b),
               (code("z_mean"), code("z_logvar")), distinct=True, depends=("z_mean",),
               single_hint=_pair_hint("z_mean", "z_logvar", lambda got: len(got) == 2 and got[1] % 2 == 0,
                                      "side by side"))


def _check_floor(dec, n, gen) -> None:
    """y_logvar >= MIN_LOGVAR_ALLOWED for z ~ N(0, I) times each of FLOOR_Z_SCALES (eval mode)."""
    z = _randn(16, n, generator=gen)
    floors = "min_logvar + F.softplus(raw - min_logvar) or raw.clamp(min=min_logvar)"
    example = f"e.g. y_logvar = {floors}, with min_logvar >= {fmt(MIN_LOGVAR_ALLOWED)} such as log(1e-3)"
    for scale in FLOOR_Z_SCALES:
        what = (f"Decoder(n_components={n}) on z ~ N(0, I) * {fmt(scale)} of shape "
                f"(16, {n}) (eval mode)")
        with torch.no_grad():
            out = modules_forward(dec, scale * z, n, what)
        if not isinstance(out, (tuple, list)) or len(out) != 2:
            raise failure(f"{what}: wrong return type", "a tuple (y_mean, y_logvar)",
                          type(out).__qualname__, "return y_mean, y_logvar")
        y_mean, y_logvar = out
        lv = _f64(require_tensor(y_logvar, f"{what}: y_logvar"))
        expected = f"y_logvar >= {fmt(MIN_LOGVAR_ALLOWED)} everywhere"
        if bool(lv.isnan().any()):
            raise failure(f"{what}: y_logvar contains nan", expected, f"{int(lv.isnan().sum())} nan "
                          f"entries", f"keep the floor numerically safe for large inputs, e.g. {floors}")
        low = float(lv.min())
        if low >= MIN_LOGVAR_ALLOWED:
            continue
        hint = (f"your floor at {fmt(low)} is too low; raise it: {example}"
                if int((lv == low).sum()) > 1 else   # many entries exactly on one value: a floor
                f"y_logvar needs a floor: bound it from below, {example}")
        if isinstance(y_mean, _Tensor) and y_mean.shape == y_logvar.shape and \
                float(_f64(y_mean).min()) >= MIN_LOGVAR_ALLOWED:
            hint += "; if the first output is your y_logvar, swap them: the order is (y_mean, y_logvar)"
        idx = tuple(int(i) for i in torch.unravel_index(lv.argmin(), lv.shape))
        raise failure(f"{what}: the log-variance floor does not hold",
                      f"{expected} (variance >= {fmt(math.exp(MIN_LOGVAR_ALLOWED))})",
                      f"minimum {fmt(low)} at index {idx}", hint)


DECODER = Spec("Decoder", "z", lambda gen, b, n: _randn(b, n, generator=gen),
               (image("y_mean", _pixel_hint), image("y_logvar", _pixel_hint)),
               distinct=True, depends=("y_mean",), extra=_check_floor,
               single_hint=_pair_hint("y_mean", "y_logvar", lambda got: len(got) == 4 and got[1] == 2,
                                      "stacked on the channel axis"))


_SIZES = dict(batch_sizes=BATCH_SIZES, n_components_list=N_COMPONENTS, grad_batch=GRAD_BATCH_SIZE)
check_encoder = module_check(ENCODER, "Encoder(n_components)(x) returns (z_mean, z_logvar), each "
                             "(B, n_components), trainable.", **_SIZES)
check_decoder = module_check(DECODER, "Decoder(n_components)(z) returns (y_mean, y_logvar), each "
                             "(B, 1, 28, 28), with a floor.", **_SIZES)


# ---------------------------------------------------------------------------------------------
# The trained models
# ---------------------------------------------------------------------------------------------

NOTEBOOK = notebook("vae", "autoencoders")
ENCODER_PATH, DECODER_PATH = NOTEBOOK.weights
#: Seeds of the evaluation sets (course manifest): the varianceMNIST noise of train and test
#: item i is fixed by (seed, i). The same seeds as the DAE notebook, so both show the same
#: test samples.
EVAL_SEED_TRAIN, EVAL_SEED_TEST = NOTEBOOK.eval_seeds
#: Seed of the generator of eps in z = z_mean + exp(0.5*z_logvar) * eps, one draw per test
#: image in the order of the test set, for the graded loss (while grading, a seed derived from
#: it and the run's secret: ``draws``).
EVAL_Z_SEED = 0
#: Batch size of the evaluation passes.
EVAL_BATCH = 500
#: Below this KL per test image (in nats) the codes carry almost no information about x:
#: the hint of a failed probe then names posterior collapse.
COLLAPSE_KL = 1.0
#: If the decoder's smallest y_logvar on the test set is above this (a variance of 1e-2),
#: the hint of a failed loss bar names the floor: the zero background pixels then cost
#: at least 0.5 * log(1e-2) = -2.3 each instead of about -3.45 with the reference floor.
HIGH_FLOOR = math.log(1e-2)


def evaluation_data(root=None):
    """The seeded varianceMNIST train and test sets of the graded evaluation."""
    return variance_sets(NOTEBOOK.eval_seeds, root)


_DIVERGED = ("the training diverged: lower the learning rate and train again (a floor on "
             "y_logvar keeps 1/exp(y_logvar) bounded)")


def _trained_pair(out, spec: Spec, what: str, batch_size: int, n: int | None):
    """A trained model's output: a tuple of two float32 tensors of the shape, finite."""
    first, second = out if isinstance(out, (tuple, list)) and len(out) == 2 else (None, None)
    for t, output in zip((first, second), spec.outputs):
        shape = output.shape(batch_size, n)
        if isinstance(t, _Tensor) and t.dtype == _float32 and tuple(t.shape) == tuple(shape) \
                and not bool(_isfinite(t).all()):
            raise failure(f"{what}: {output.name} has non-finite values", "finite values",
                          "nan or inf", _DIVERGED)
    return split_outputs(out, spec, batch_size, n, what)


def _encode_trained(encoder, x: torch.Tensor, n_components: int | None):
    """(z_mean, z_logvar) of a trained encoder; n_components None: the width of z_mean."""
    what = "trained Encoder on seeded varianceMNIST images"
    out = call(encoder, x, what=what)
    if n_components is None:
        first = out[0] if isinstance(out, (tuple, list)) and out else out
        shape = getattr(first, "shape", ())
        n_components = int(shape[1]) if len(shape) == 2 else None
    if n_components is None:
        raise failure(f"{what}: wrong return type", "a tuple (z_mean, z_logvar) of two tensors "
                      "of shape (batch_size, n_components)", type(out).__qualname__,
                      "return z_mean, z_logvar")
    return _trained_pair(out, ENCODER, what, x.shape[0], n_components)


def _encode(models: dict, inputs: dict, n_components: int | None = None) -> dict:
    encoder = models["Encoder"]
    z_mean_of = lambda x: _encode_trained(encoder, x, n_components)[0]  # noqa: E731
    out = {"z_mean_train": apply(z_mean_of, inputs["x_train"], "trained Encoder")}
    means, logvars = [], []
    for x in batches(inputs["x_test"]):
        z_mean, z_logvar = _encode_trained(encoder, x, n_components)
        means.append(_f64(z_mean).to(_float32).numpy())
        logvars.append(_f64(z_logvar).to(_float32).numpy())
    out["z_mean"], out["z_logvar"] = np.concatenate(means), np.concatenate(logvars)
    return out


def _draws(first: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """mu, logvar (float64) of the test samples and eps: one draw per image from a generator
    seeded with EVAL_Z_SEED (while grading, from the run's secret), in test-set order, batch
    by batch."""
    mu = torch.from_numpy(checked(first, "z_mean")).to(_float64)
    lv = torch.from_numpy(checked(first, "z_logvar", len(mu))).to(_float64)
    gen = torch.Generator().manual_seed(_draw_seed(EVAL_Z_SEED, LATENT_EPS))
    eps = torch.cat([_randn(m.shape, generator=gen, dtype=_float64) for m in batches(mu)])
    return mu, lv, eps


def _z(first: dict, data) -> dict:
    """The decoder's inputs: z = z_mean + exp(0.5 z_logvar) eps, and z2 with the second output
    read as a log standard deviation (z_mean + exp(z_logvar) eps, zero where not finite)."""
    mu, lv, eps = _draws(first)
    z = _Tensor.to(mu + (0.5 * lv).exp() * eps, _float32)
    if not bool(_isfinite(z).all()):
        raise failure("trained Decoder on z drawn from the encoder's q(z | x): non-finite z",
                      "finite z", "nan or inf (z_logvar too large)", _DIVERGED)
    z2 = _Tensor.to(mu + lv.exp() * eps, _float32)
    return {"z": z, "z2": torch.where(_isfinite(z2), z2, torch.zeros_like(z2))}


def _decode(models: dict, inputs: dict) -> dict:
    decoder = models["Decoder"]
    what = "trained Decoder on z drawn from the encoder's q(z | x)"
    ym, ylv, ym2, ylv2 = [], [], [], []
    for z, z2 in zip(batches(inputs["z"]), batches(inputs["z2"])):
        y_mean, y_logvar = _trained_pair(call(decoder, z, what=what), DECODER, what, len(z), None)
        ym.append(_f64(y_mean).to(_float32).numpy())
        ylv.append(_f64(y_logvar).to(_float32).numpy())
        out2 = call(decoder, z2, what=what)
        ok = isinstance(out2, (tuple, list)) and len(out2) == 2 and all(
            isinstance(t, _Tensor) and tuple(t.shape) == tuple(y_mean.shape) for t in out2)
        nan = np.full(tuple(y_mean.shape), np.nan, np.float32)
        ym2.append(_f64(out2[0]).to(_float32).numpy() if ok else nan)
        ylv2.append(_f64(out2[1]).to(_float32).numpy() if ok else nan)
    return {"y_mean": np.concatenate(ym), "y_logvar": np.concatenate(ylv),
            "y2_mean": np.concatenate(ym2), "y2_logvar": np.concatenate(ylv2)}


def _floored(y_logvar: torch.Tensor) -> torch.Tensor:
    """y_logvar clamped from below at the documented floor ``MIN_LOGVAR_ALLOWED``: the
    zero-variance background of varianceMNIST makes the likelihood unbounded without it, so a
    decoder that goes lower than the floor is graded as if it stopped there."""
    return y_logvar.clamp(min=MIN_LOGVAR_ALLOWED)


def _measure_first(first: dict, data) -> dict:
    """What the encoder's outputs decide alone: the probe accuracy of z_mean."""
    from data_tools.probe import probe_accuracy

    trainset, testset, _ = data
    y_test = images_and_labels(testset)[1]
    y_train = images_and_labels(trainset)[1]
    z_train = checked(first, "z_mean_train", len(y_train))
    mu = torch.from_numpy(checked(first, "z_mean", len(y_test))).to(_float64)
    return {"probe_accuracy": probe_accuracy(z_train, y_train, mu.numpy(), y_test)}


def _measure(first: dict, second: dict, data) -> dict:
    """The numbers of :func:`evaluate_vae` from the recorded encoder and decoder outputs."""
    from data_tools.probe import probe_accuracy

    trainset, testset, _ = data
    x, y_test = images_and_labels(testset)
    y_train = images_and_labels(trainset)[1]
    z_train = checked(first, "z_mean_train", len(y_train))
    mu, lv, eps = _draws(first)
    if len(mu) != len(y_test):
        raise failure("trained Encoder: wrong number of codes", str(len(y_test)), str(len(mu)))
    accuracy = probe_accuracy(z_train, y_train, mu.numpy(), y_test)
    x64 = _f64(x)
    ym = torch.from_numpy(checked(second, "y_mean", len(x))).to(_float64).reshape(x.shape)
    raw = torch.from_numpy(checked(second, "y_logvar", len(x))).to(_float64).reshape(x.shape)
    ylv = _floored(raw)
    kl = float(_kl_rows(mu, (0.5 * lv).exp()).mean())
    nll = float(_nll_rows(ym, (0.5 * ylv).exp(), x64).mean()) - _CONST
    if not (math.isfinite(kl) and math.isfinite(nll)):
        raise failure("negative ELBO of the trained VAE on the test set: non-finite value",
                      "a finite number", f"KL {fmt(kl)}, NLL {fmt(nll)}",
                      "a variance exp(z_logvar) or exp(y_logvar) underflows to 0 or overflows: "
                      "bound y_logvar from below with a floor (see check_decoder); if the "
                      "training diverged, lower the learning rate and train again")
    logstd_loss = math.inf
    if bool(_isfinite(_Tensor.to(mu + lv.exp() * eps, _float32)).all()):
        ym2 = torch.from_numpy(checked(second, "y2_mean", len(x))).to(_float64).reshape(x.shape)
        ylv2 = _floored(torch.from_numpy(checked(second, "y2_logvar", len(x))).to(_float64)
                        .reshape(x.shape))
        logstd_loss = float((_kl_rows(mu, lv.exp()) + _nll_rows(ym2, (0.5 * ylv2).exp(), x64)).mean()) - _CONST
    return {"probe_accuracy": accuracy, "kl": kl, "nll": nll, "loss": kl + nll,
            "min_y_logvar": float(raw.min()),
            "logstd_loss": logstd_loss if math.isfinite(logstd_loss) else math.inf}


def _data(trainset=None, testset=None):
    return variance_evaluation(trainset, testset, NOTEBOOK.eval_seeds, "VAE")


#: The evaluation of the saved VAE: the encoder on the seeded samples; the decoder (in a process
#: of its own during grading) on z drawn by the grader from the encoder's q(z | x) only.
EVALUATION = Evaluation(
    name="vae", what="VAE", bars="vae", data=_data, inputs=image_inputs,
    first=Stage(("Encoder",), _encode, {"z_mean_train": "x_train", "z_mean": "x_test",
                                        "z_logvar": "x_test"}),
    between=_z,
    second=Stage(("Decoder",), _decode, {"y_mean": "z", "y_logvar": "z", "y2_mean": "z2",
                                         "y2_logvar": "z2"}),
    measure=_measure, seed=EVAL_Z_SEED,
    codes=Codes(("z_mean_train", "z_mean", "z_logvar"), NOTEBOOK.n_components),
    measure_first=_measure_first)
EVALUATIONS = (EVALUATION,)


def evaluate_vae(encoder, decoder, trainset, testset, *,
                 n_components: int | None = None, train_mode: bool = False) -> dict[str, float]:
    """Probe accuracy of z_mean and the negative ELBO of the trained VAE on the test set.

    On seeded varianceMNIST sets, models in eval mode (``train_mode=True``: train mode, for a
    hint). The probe is fitted on z_mean of the training samples, scored on the test samples'.
    The loss uses none of the student's functions: per test image, z = z_mean +
    exp(0.5*z_logvar) * eps, eps seeded with ``EVAL_Z_SEED`` in test-set order, then in float64
    KL(q(z | x) || N(0, I)) and -log N(x | y_mean, exp(y_logvar)) without the constant
    0.5*784*log(2*pi), with y_logvar clamped from below at the floor ``MIN_LOGVAR_ALLOWED``
    (a lower log-variance gains nothing). ``n_components``: the expected width of z_mean
    (default: any). Returns ``probe_accuracy``, ``kl``, ``nll``, ``loss`` (means per test
    image), ``min_y_logvar`` (the smallest y_logvar the decoder returned, before the floor) and
    ``logstd_loss`` (the loss with the second output read as a log standard deviation, for a
    hint).
    """
    train_seed, test_seed = eval_seeds(NOTEBOOK.eval_seeds)
    trainset = seeded_variance(trainset, train_seed, "trainset", "VAE")
    testset = seeded_variance(testset, test_seed, "testset", "VAE")
    evaluation = EVALUATION if n_components is None else dataclasses.replace(
        EVALUATION, first=dataclasses.replace(
            EVALUATION.first, run=lambda models, inputs: _encode(models, inputs, n_components)))
    return run(evaluation, {"Encoder": encoder, "Decoder": decoder}, (trainset, testset, None),
               train_mode=train_mode)


def _probe_hint(result: dict) -> str:
    if result["kl"] < COLLAPSE_KL:
        return (f"the codes carry almost no information about x: KL(q(z | x) || N(0, I)) is only "
                f"{result['kl']:.2f} nats per test image (posterior collapse); check that "
                f"loss_kl and loss_loglik are both averaged over the batch (the KL must not "
                f"outweigh the likelihood), that the decoder gets the sampled z, and train again")
    return ("train longer (more epochs), check that the training loop updates the encoder and "
            "that z_mean is the FIRST output of Encoder.forward, and save the weights after "
            "training")


def _loss_hint(result: dict, bar: float) -> str:
    low = result["min_y_logvar"]
    if low < MIN_LOGVAR_ALLOWED:
        return (f"your decoder's y_logvar goes down to {low:.1f} on the test set, below the "
                f"floor {fmt(MIN_LOGVAR_ALLOWED)}: the grader evaluates the loss with y_logvar "
                f"clamped at {fmt(MIN_LOGVAR_ALLOWED)}, so a lower log-variance gains nothing; "
                f"floor y_logvar in Decoder.forward (e.g. min_logvar + F.softplus(raw - "
                f"min_logvar) with min_logvar = log(1e-3) = -6.9, see check_decoder) and train "
                f"again")
    if result["logstd_loss"] <= bar:
        return (f"read as a log standard deviation (z_logvar = 2 * output), your encoder's "
                f"second output would give the test loss {result['logstd_loss']:.1f}, which "
                f"passes: the encoder returns log(sigma) where the interface wants the "
                f"log-variance log(sigma^2); keep the log-variance throughout: sample with "
                f"exp(0.5 * z_logvar) and use the log-variance formula in loss_kl")
    if low > HIGH_FLOOR:
        return (f"your decoder's smallest y_logvar on the test set is {low:.2f}: the background "
                f"pixels, exactly 0 in every sample, cannot get a variance below "
                f"exp({low:.2f}) = {math.exp(low):.3g}; lower the floor on y_logvar (the "
                f"reference uses log(1e-3) = -6.9, anything >= {fmt(MIN_LOGVAR_ALLOWED)} is "
                f"allowed) and train again")
    return ("train longer; check that the training loss is loss_kl(z_mean, z_logvar) + "
            "loss_loglik(y_mean, y_logvar, x) with the decoder applied to the sampled z and x "
            "the input batch, that the optimizer updates both networks, and that both are "
            "saved after training")


def probe_line(result: dict) -> str:
    """The graded probe accuracy beside its bar."""
    bars = result["bars"]
    return graded_line("linear probe accuracy on z_mean of the test samples",
                       result["probe_accuracy"], bars["probe_accuracy"],
                       bars.get("reference_accuracy"), result["source"])


def loss_line(result: dict) -> str:
    """The graded test loss beside its bar."""
    bars = result["bars"]
    return (graded_line("test loss per image (KL + NLL)", result["loss"], bars["loss"],
                        bars.get("reference_loss"), result["source"], fmt=".1f", op="<=")
            + f"; KL {result['kl']:.1f}, NLL {result['nll']:.1f}")


load_trained, trained_results, report_trained, _bar_check, _run_both = encoder_decoder_functions(
    EVALUATION, ENCODER_PATH, DECODER_PATH, (probe_line, loss_line))

check_trained_vae_probe = student_facing(_bar_check(
    "check_trained_vae_probe",
    "A linear probe on z_mean of the saved encoder (eval mode) passes the accuracy bar.",
    "probe_accuracy", probe_line, reference="reference_accuracy", generic=True,
    what="linear probe on z_mean of the trained encoder, seeded varianceMNIST test set",
    problem="accuracy too low", hint=_probe_hint))

# A model that passes in train mode is diagnosed as such first (generic=True): its stale
# BatchNorm statistics can also make the log-std reading look better than the real one.
check_trained_vae_loss = student_facing(_bar_check(
    "check_trained_vae_loss",
    "The saved VAE's negative ELBO per test image (eval mode) passes the loss bar.",
    "loss", loss_line, op="<=", fmt=".1f", reference="reference_loss", problem="too high",
    what="negative ELBO of the trained VAE on the seeded varianceMNIST test set (KL + NLL per image, "
         f"NLL without the constant 0.5*784*log(2*pi), y_logvar floored at "
         f"{fmt(MIN_LOGVAR_ALLOWED)}, one z per image drawn by the grader)",
    got=lambda r: f"{r['loss']:.1f} (KL {r['kl']:.1f} + NLL {r['nll']:.1f})",
    hint=lambda result: _loss_hint(result, result["bars"]["loss"]), generic=True))


#: Both bars of the saved VAE: the probe, then the test loss.
check_trained_vae = student_facing(_run_both("check_trained_vae", check_trained_vae_probe,
                                             check_trained_vae_loss))


# Decided by the judge on the recorded calls during grading (``recorded``).
check_loss_kl = replayable("vae.check_loss_kl")(check_loss_kl)
check_loss_loglik = replayable("vae.check_loss_loglik")(check_loss_loglik)

# A failed check shows the student their own call and the message, no frame of the grader.
for _name in ("check_loss_kl", "check_loss_loglik", "check_sample", "check_encoder",
              "check_decoder", "check_encoder_sample"):
    globals()[_name] = student_facing(globals()[_name])
del _name
