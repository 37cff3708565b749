"""Checks for the variational autoencoder notebook (``vae.ipynb``).

Every check is ``check_<property>(obj, *, seed=0)``: it builds its own seeded inputs, returns
None on success and raises :class:`~autograder.checks.core.CheckFailure` on the first problem it finds,
going coarse to fine (callable -> real tensor -> dtype -> shape -> finite -> value). Each check
seeds torch's global generator itself and restores the caller's random state (and thread count)
afterwards, so its verdict does not depend on what the notebook ran before, and running it does
not change what the notebook draws afterwards.

What each check guarantees
--------------------------
check_loss_kl(loss_kl)
    ``loss_kl(z_mean, z_logvar)`` returns a plain ``torch.Tensor`` scalar (0-dim, float32 or
    float64) equal to (1/N) sum_i KL(N(z_mean_i, diag(exp(z_logvar_i))) || N(0, I)), i.e. summed
    over latent dimensions and averaged over the batch, for shapes (1, k), (B, 1), (B, 2), (B, 10)
    with B up to 64. The oracle is ``torch.distributions.kl_divergence`` in float64. Also: KL = 0
    at N(0, I), KL is symmetric in the mean, and the gradients with respect to both z_mean and
    z_logvar are the true ones. A wrong value is matched against the values that known mistakes
    produce (missing 1/2, batch sum, mean over latent dimensions, flipped sign, standard deviation
    used as the variance, log-variance taken as a log standard deviation, missing -1, and their
    combinations), and the hint names the mistake.
check_loss_loglik(loss_loglik)
    ``loss_loglik(y_mean, y_logvar, x)`` returns a scalar equal to
    -(1/N) sum_i log N(x_i | y_mean_i, diag(exp(y_logvar_i))), summed over pixels and averaged over
    the batch, with or without the constant 0.5*D*log(2*pi) (D = 784 pixels per image). Only the
    slide's shape (B, 1, 28, 28) is required. Oracle: ``Normal.log_prob`` in float64. Gradients
    with respect to y_mean and y_logvar are compared with the oracle's. Diagnosed mistakes: missing
    1/2, variance and log-variance confused, mean over pixels, flipped sign, batch sum.
check_sample(encoder_or_sample_fn)
    ``encoder.sample(z_mean, z_logvar)`` (or a plain ``sample`` function) returns a float32 tensor
    shaped like z_mean; two calls draw different noise; over 20,000 draws the per-element mean and
    standard deviation are z_mean and exp(0.5*z_logvar), and the noise of different elements is
    uncorrelated (a correct implementation fails with probability below 1e-6, see
    ``SAMPLE_Z_BOUND``); the draw is reparameterized: the gradients with respect to z_mean and
    z_logvar are the pathwise ones (so ``torch.normal`` or detached parameters fail).
check_encoder(Encoder)
    ``Encoder(n_components)`` is an ``nn.Module`` whose ``forward(x)``, x of shape
    (B, 1, 28, 28), returns a tuple ``(z_mean, z_logvar)`` of float32, finite tensors of shape
    (B, n_components), for B in (1, 3, 32) (eval mode) and n_components in (2, 5, 10); z_mean
    depends on x; gradients from both outputs reach the parameters (train mode) and are finite.
    The order of z_mean and z_logvar cannot be told apart on an untrained encoder; the
    trained-model checks see it.
check_decoder(Decoder)
    The same for ``Decoder(n_components).forward(z)`` returning ``(y_mean, y_logvar)``, each
    (B, 1, 28, 28); in addition the log-variance floor holds: y_logvar >= ``MIN_LOGVAR_ALLOWED``
    everywhere, even for z scaled by 100 and 1000.
check_encoder_sample(Encoder)
    ``check_sample`` on ``Encoder(n_components=2)``, built by the check itself, so that a test
    cell can pass the class and an unfinished ``__init__`` reads as "not implemented yet".
check_trained_vae_probe / check_trained_vae_loss(Encoder, Decoder, n_components, ...)
    One grade cell each, reading one evaluation per process (``trained_results``;
    ``report_trained`` prints every graded number beside its bar; ``check_trained_vae`` runs
    both). The saved weights load into freshly built models, put in eval() mode; on the seeded
    varianceMNIST evaluation sets (``EVAL_SEED_TRAIN``, ``EVAL_SEED_TEST``), a
    logistic-regression probe on z_mean passes the calibrated accuracy bar, and the negative
    ELBO per test image (KL + NLL without the constant 0.5*784*log(2*pi)), computed by
    :func:`evaluate_vae` in float64 with torch.distributions and one z per image drawn with
    the fixed seed ``EVAL_Z_SEED`` (never with the student's loss functions or ``sample``),
    passes the calibrated loss bar (``autograder.checks.thresholds``).
"""
from __future__ import annotations

import math

import torch
from torch.distributions import Normal, kl_divergence

from ..manifest import notebook
from .core import call, failure, fmt, require_tensor, student_facing
from .core import f64 as _f64
from .core import isolated_rng as _isolated_rng
from .core import require_callable as _require_callable
from .data import seeded_variance, variance_evaluation, variance_sets
from .evaluation import load_models, mode_layers, require_bar, results
from .losses import check_loss_grads, mistake_hint, name_mistake, require_loss_scalar
from .modules import Output, Spec, build, check_module, require_class, split_outputs
from .modules import forward as modules_forward
from .sampling import SAMPLE_N_DRAWS, SAMPLE_Z_BOUND, check_sample  # noqa: F401  (re-exported)
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
_grad = torch.autograd.grad
_Normal = Normal
_kl_divergence = kl_divergence
_isfinite = torch.isfinite
_randn = torch.randn

# ---------------------------------------------------------------------------------------------
# Tolerances and constants
# ---------------------------------------------------------------------------------------------

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
#: clamp or a smooth softplus floor alike).
MIN_LOGVAR_ALLOWED = -10.0
#: The floor must hold for z ~ N(0, I) multiplied by each of these (eval mode).
FLOOR_Z_SCALES = (1.0, 100.0, 1000.0)

#: check_encoder / check_decoder: batch sizes (forward in eval mode) and latent sizes.
BATCH_SIZES = (1, 3, 32)
N_COMPONENTS = (2, 5, 10)
#: Batch size of the gradient check (train mode, so BatchNorm sees more than one sample).
GRAD_BATCH_SIZE = 8


# ---------------------------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------------------------

# ---------------------------------------------------------------------------------------------
# loss_kl
# ---------------------------------------------------------------------------------------------

_KL_HALF = "did you drop the factor 1/2?"
_KL_BATCH_SUM = ("did you sum over the batch instead of averaging over it (divide by the "
                 "batch size)?")
_KL_LATENT_MEAN = ("did you average over the latent dimensions instead of summing over them? "
                   "(a plain .mean() averages over both; sum over dim 1, then mean over the "
                   "batch)")
_KL_SIGN = "is the sign flipped? (a KL divergence is never negative)"
_KL_STD_AS_VAR = ("did you use the standard deviation exp(0.5*z_logvar) where the variance "
                  "exp(z_logvar) belongs?")
_KL_LOGSTD = ("z_logvar is a log-variance, not a log standard deviation: the variance is "
              "exp(z_logvar) and the standard deviation is exp(0.5*z_logvar) "
              "(torch.distributions.Normal takes the standard deviation)")
_KL_MINUS_ONE = "did you forget the -1 term?"
_KL_NONFINITE = ("z_logvar is a log-variance and can be zero or negative: log(z_logvar), "
                 "sqrt(z_logvar) or dividing by z_logvar gives nan/inf; the variance is "
                 "exp(z_logvar)")
_KL_REDUCE = "sum over the latent dimensions (dim 1), then average over the batch (dim 0)"
_KL_FALLBACK = ("per latent dimension, use KL(N(mu, sigma^2) || N(0, 1)) with "
                "sigma^2 = exp(z_logvar); sum over the latent dimensions, then average over "
                "the batch")


def _kl64(mu: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """Oracle: sum over latent dims, mean over batch of KL(N(mu, std^2) || N(0, 1)), float64."""
    prior = _Normal(torch.zeros_like(mu), torch.ones_like(std))
    return _kl_divergence(_Normal(mu, std), prior).sum(-1).mean()


def _kl_value(loss_kl, z_mean, z_logvar, desc: str) -> float:
    """Call loss_kl on copies of float32 inputs, check the result coarse to fine, return it."""
    what = f"loss_kl(z_mean, z_logvar) for {desc}"
    value = call(loss_kl, z_mean.clone(), z_logvar.clone(), what=what)
    return require_loss_scalar(value, what, z_mean.shape[0], z_mean.shape, _KL_REDUCE,
                                _KL_NONFINITE)


def _check_kl_case(loss_kl, z_mean, z_logvar, desc: str) -> None:
    got = _kl_value(loss_kl, z_mean, z_logvar, desc)
    mu, lv = _f64(z_mean), _f64(z_logvar)
    batch_size, n = z_mean.shape
    expected = float(_kl64(mu, (0.5 * lv).exp()))
    scale = float((0.5 * (lv.exp() + mu ** 2 + 1 + lv.abs())).sum(-1).mean())
    tol = KL_ATOL + KL_RTOL * scale
    if abs(got - expected) <= tol:
        return
    bases = [
        ((), expected),
        ((_KL_STD_AS_VAR,), float(_kl64(mu, (0.25 * lv).exp()))),
        ((_KL_LOGSTD,), float(_kl64(mu, lv.exp()))),
        ((_KL_MINUS_ONE,), expected + 0.5 * n),
    ]
    factors = [(_KL_HALF, 2.0), (_KL_BATCH_SUM, float(batch_size)),
               (_KL_LATENT_MEAN, 1.0 / n), (_KL_SIGN, -1.0)]
    named = name_mistake(got, bases, factors, scale, KL_ATOL)
    if got < -tol:
        raise failure(f"loss_kl: negative value for {desc}",
                      f">= 0, a KL divergence is never negative (exactly {fmt(expected)})",
                      fmt(got), mistake_hint(named, _KL_SIGN))
    ratio = f"got/expected = {fmt(got / expected)}; " if expected > tol else ""
    raise failure(f"loss_kl: wrong value for {desc}",
                  f"{fmt(expected)} (tolerance {fmt(tol)})", fmt(got),
                  mistake_hint(named, ratio + _KL_FALLBACK))


def _random_latents(gen: torch.Generator, batch_size: int, n: int):
    z_mean = 1.5 * torch.randn(batch_size, n, generator=gen)
    z_logvar = -3.0 + 5.0 * torch.rand(batch_size, n, generator=gen)  # U(-3, 2)
    return z_mean, z_logvar


#: Random shapes of check_loss_kl: B > 1 and B != n in the first, so that the factors 2, B,
#: 1/n and -1 of the common mistakes all differ; then the edge shapes (B, 1), (1, k).
KL_RANDOM_SHAPES = ((7, 10), (64, 2), (5, 1), (1, 6), (64, 10))


def check_loss_kl(loss_kl, *, seed: int = 0) -> None:
    """loss_kl(z_mean, z_logvar) is the batch mean of KL(q || N(0, I)) summed over latent dims."""
    _require_callable(loss_kl, "loss_kl")
    gen = torch.Generator().manual_seed(seed)
    with _isolated_rng(seed):
        # 1. q = N(0, I): KL is zero.
        zeros = torch.zeros(3, 2)
        _check_kl_case(loss_kl, zeros, zeros.clone(),
                       "z_mean=0, z_logvar=0 (q = N(0, I), so KL = 0), shape (3, 2)")
        # 2. A value one can work out by hand: 2 * 0.5 * (2 - 1 - log 2) = 0.306853.
        _check_kl_case(loss_kl, torch.zeros(3, 2), torch.full((3, 2), math.log(2.0)),
                       "z_mean=0, z_logvar=log 2, shape (3, 2)")
        # 3. Symmetry in the mean: KL(N(mu, s^2) || N(0, 1)) = KL(N(-mu, s^2) || N(0, 1)).
        z_mean, z_logvar = _random_latents(gen, 6, 4)
        desc = "random z_mean and z_logvar, shape (6, 4)"
        plus = _kl_value(loss_kl, z_mean, z_logvar, desc)
        minus = _kl_value(loss_kl, -z_mean, z_logvar, f"-z_mean and the same z_logvar, {desc}")
        scale = float((0.5 * (_f64(z_logvar).exp() + _f64(z_mean) ** 2 + 1
                              + _f64(z_logvar).abs())).sum(-1).mean())
        if abs(plus - minus) > KL_ATOL + KL_RTOL * scale:
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


# ---------------------------------------------------------------------------------------------
# loss_loglik
# ---------------------------------------------------------------------------------------------

_LL_HALF = "did you drop the factor 1/2?"
_LL_BATCH_SUM = ("did you sum over the batch instead of averaging over it (divide by the "
                 "batch size)?")
_LL_PIXEL_MEAN = ("did you average over the pixels instead of summing over them? (sum over "
                  "dims (1, 2, 3), then mean over the batch)")
_LL_SIGN = ("is the sign flipped? loss_loglik is the NEGATIVE log-likelihood "
            "(0.5*y_logvar + 0.5*(x - y_mean)**2 / exp(y_logvar) per pixel, up to a constant)")
_LL_LOGSTD = ("y_logvar is a log-variance, not a log standard deviation: the variance is "
              "exp(y_logvar) and the standard deviation is exp(0.5*y_logvar) "
              "(torch.distributions.Normal takes the standard deviation)")
_LL_STD_AS_VAR = ("did you use the standard deviation exp(0.5*y_logvar) where the variance "
                  "exp(y_logvar) belongs?")
_LL_LOGVAR_AS_VAR = ("did you divide by y_logvar? y_logvar is a log-variance: the variance is "
                     "exp(y_logvar)")
_LL_DIV_BY_STD = ("did you divide the squared error by the standard deviation instead of by "
                  "the variance exp(y_logvar)?")
_LL_REDUCE = ("sum over the pixels (dims 1, 2, 3), then average over the batch (dim 0)")
_LL_FALLBACK = ("per pixel, -log N(x | y_mean, sigma^2) with sigma^2 = exp(y_logvar); sum over "
                "the pixels of an image, then average over the batch")
_LL_NONFINITE = ("y_logvar is a log-variance and can be zero or negative: log(y_logvar), "
                 "sqrt(y_logvar) or dividing by y_logvar gives nan/inf; the variance is "
                 "exp(y_logvar)")


def _nll64(y_mean, std, x) -> torch.Tensor:
    """Oracle with the constant: -sum over pixels, mean over batch of Normal.log_prob, float64."""
    return -_Normal(y_mean, std).log_prob(x).flatten(1).sum(1).mean()


def _loglik_value(loss_loglik, y_mean, y_logvar, x, desc: str) -> float:
    what = f"loss_loglik(y_mean, y_logvar, x) for {desc}"
    value = call(loss_loglik, y_mean.clone(), y_logvar.clone(), x.clone(), what=what)
    return require_loss_scalar(value, what, x.shape[0], x.shape, _LL_REDUCE, _LL_NONFINITE)


def _check_loglik_case(loss_loglik, y_mean, y_logvar, x, desc: str) -> None:
    got = _loglik_value(loss_loglik, y_mean, y_logvar, x, desc)
    m, lv, x64 = _f64(y_mean), _f64(y_logvar), _f64(x)
    batch_size = x.shape[0]
    const = HALF_LOG_2PI * N_PIXELS
    expected = float(_nll64(m, (0.5 * lv).exp(), x64)) - const   # the reference drops it
    if abs(expected) < 1e-9 * const:   # rounding left over from subtracting the constant
        expected = 0.0
    sq = (x64 - m) ** 2
    scale = float((0.5 * lv.abs() + 0.5 * sq / lv.exp() + HALF_LOG_2PI).flatten(1).sum(1).mean())
    tol = LOGLIK_ATOL + LOGLIK_RTOL * scale
    if min(abs(got - expected), abs(got - (expected + const))) <= tol:
        return

    def per_image(terms):
        return float(terms.flatten(1).sum(1).mean())

    conventions = [
        ((), expected),
        ((_LL_LOGSTD,), float(_nll64(m, lv.exp(), x64)) - const),
        ((_LL_STD_AS_VAR,), float(_nll64(m, (0.25 * lv).exp(), x64)) - const),
        ((_LL_LOGVAR_AS_VAR,), per_image(0.5 * lv + 0.5 * sq / lv)),
        ((_LL_DIV_BY_STD,), per_image(0.5 * lv + 0.5 * sq / (0.5 * lv).exp())),
    ]
    bases = []
    for mistakes, b in conventions:
        # without / with the constant; the factor 1/2 dropped from all but the constant
        bases += [(mistakes, b), (mistakes, b + const), (mistakes + (_LL_HALF,), 2 * b + const)]
    factors = [(_LL_HALF, 2.0), (_LL_BATCH_SUM, float(batch_size)),
               (_LL_PIXEL_MEAN, 1.0 / N_PIXELS), (_LL_SIGN, -1.0)]
    named = name_mistake(got, bases, factors, scale, LOGLIK_ATOL)
    raise failure(f"loss_loglik: wrong value for {desc}",
                  f"{fmt(expected)}, or {fmt(expected + const)} with the constant "
                  f"0.5*D*log(2*pi), D = {N_PIXELS} (tolerance {fmt(tol)})",
                  fmt(got), mistake_hint(named, _LL_FALLBACK))


def _random_images(gen: torch.Generator, batch_size: int):
    """varianceMNIST-like x (exact zeros in the background) and a decoder-like output."""
    shape = (batch_size, 1, 28, 28)
    clean = torch.rand(shape, generator=gen) * (torch.rand(shape, generator=gen) < 0.3)
    x = clean * torch.randn(shape, generator=gen)
    y_mean = 0.3 * torch.randn(shape, generator=gen)
    y_logvar = -4.0 + 5.5 * torch.rand(shape, generator=gen)  # U(-4, 1.5)
    return y_mean, y_logvar, x


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
        x = torch.randn(shape3, generator=gen)
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


# ---------------------------------------------------------------------------------------------
# Encoder and Decoder: the generic module check (autograder.checks.modules) with these outputs
# ---------------------------------------------------------------------------------------------

def _encoder_input(gen, batch_size, n=None):
    shape = (batch_size, 1, 28, 28)
    clean = torch.rand(shape, generator=gen) * (torch.rand(shape, generator=gen) < 0.3)
    return clean * torch.randn(shape, generator=gen)


def _latent_hint(n, got):
    if len(got) == 2 and got[1] != n:
        return (f"n_components is not honoured: {got[1]} columns for n_components={n}; size the "
                f"output layer(s) with n_components, not with a fixed number")
    if len(got) != 2:
        return ("the batch dimension was lost: flatten with x.flatten(1) (or "
                "x.view(x.shape[0], -1)), not x.view(-1, k) with a fixed k")
    return "z_mean and z_logvar each have shape (batch_size, n_components)"


def _pixel_hint(n, got):
    if len(got) == 2 and got[1] == N_PIXELS:
        return "reshape to (batch_size, 1, 28, 28), e.g. h.view(-1, 1, 28, 28)"
    if len(got) == 3 and got[1:] == (28, 28):
        return "add the channel dimension: (batch_size, 1, 28, 28)"
    return ("keep the batch dimension first and reshape with -1 for it: h.view(-1, 1, 28, 28); "
            "y_mean and y_logvar each have shape (batch_size, 1, 28, 28)")


def _latent(name):
    return Output(name, lambda b, n: (b, n), _latent_hint)


def _pixels(name):
    return Output(name, lambda b, n: (b, 1, 28, 28), _pixel_hint)


def _encoder_single_hint(got):
    if len(got) == 2 and got[1] % 2 == 0:
        return ("forward must return a tuple (z_mean, z_logvar) of two tensors; if this is z_mean "
                "and z_logvar side by side, split it: z_mean, z_logvar = h.chunk(2, dim=1)")
    return "forward must return a tuple (z_mean, z_logvar) of two tensors"


def _decoder_single_hint(got):
    if len(got) == 4 and got[1] == 2:
        return ("this looks like y_mean and y_logvar stacked on the channel axis: return a "
                "tuple (y_mean, y_logvar), e.g. y_mean, y_logvar = h.chunk(2, dim=1)")
    return "forward must return a tuple (y_mean, y_logvar) of two tensors"


ENCODER = Spec("Encoder", "x", _encoder_input, (_latent("z_mean"), _latent("z_logvar")),
               single_hint=_encoder_single_hint, distinct=True, depends=("z_mean",))


def check_encoder(Encoder, *, seed: int = 0, batch_sizes=BATCH_SIZES,
                  n_components_list=N_COMPONENTS) -> None:
    """Encoder(n_components)(x) returns (z_mean, z_logvar), each (B, n_components), trainable."""
    check_module(Encoder, ENCODER, seed=seed, batch_sizes=batch_sizes,
                 n_components_list=n_components_list, grad_batch=GRAD_BATCH_SIZE)


def check_decoder(Decoder, *, seed: int = 0, batch_sizes=BATCH_SIZES,
                  n_components_list=N_COMPONENTS) -> None:
    """Decoder(n_components)(z) returns (y_mean, y_logvar), each (B, 1, 28, 28), with a floor."""
    check_module(Decoder, DECODER, seed=seed, batch_sizes=batch_sizes,
                 n_components_list=n_components_list, grad_batch=GRAD_BATCH_SIZE)


def _check_floor(dec, n, gen) -> None:
    """y_logvar >= MIN_LOGVAR_ALLOWED for z ~ N(0, I) times each of FLOOR_Z_SCALES (eval mode)."""
    z = torch.randn(16, n, generator=gen)
    for scale in FLOOR_Z_SCALES:
        what = (f"Decoder(n_components={n}) on z ~ N(0, I) * {fmt(scale)} of shape "
                f"(16, {n}) (eval mode)")
        with torch.no_grad():
            out = modules_forward(dec, scale * z, n, what)
        if not isinstance(out, (tuple, list)) or len(out) != 2:
            raise failure(f"{what}: wrong return type", "a tuple (y_mean, y_logvar)",
                          type(out).__qualname__, "return y_mean, y_logvar")
        y_mean, y_logvar = out
        require_tensor(y_logvar, f"{what}: y_logvar")
        lv = _f64(y_logvar)
        if bool(lv.isnan().any()):
            raise failure(f"{what}: y_logvar contains nan",
                          f"y_logvar >= {fmt(MIN_LOGVAR_ALLOWED)} everywhere",
                          f"{int(lv.isnan().sum())} nan entries",
                          "keep the floor numerically safe for large inputs, e.g. "
                          "min_logvar + F.softplus(raw - min_logvar) or raw.clamp(min=min_logvar)")
        low = float(lv.min())
        if low < MIN_LOGVAR_ALLOWED:
            example = (f"e.g. y_logvar = min_logvar + F.softplus(raw - min_logvar) or "
                       f"raw.clamp(min=min_logvar), with min_logvar >= {fmt(MIN_LOGVAR_ALLOWED)} "
                       f"such as log(1e-3)")
            if int((lv == low).sum()) > 1:   # many entries sit exactly on one value: a floor
                hint = f"your floor at {fmt(low)} is too low; raise it: {example}"
            else:
                hint = f"y_logvar needs a floor: bound it from below, {example}"
            if isinstance(y_mean, _Tensor) and y_mean.shape == y_logvar.shape and \
                    float(_f64(y_mean).min()) >= MIN_LOGVAR_ALLOWED:
                hint += ("; if the first output is your y_logvar, swap them: the order is "
                         "(y_mean, y_logvar)")
            flat = int(lv.reshape(-1).argmin())
            idx = tuple(int(i) for i in torch.unravel_index(torch.tensor(flat), lv.shape))
            raise failure(f"{what}: the log-variance floor does not hold",
                          f"y_logvar >= {fmt(MIN_LOGVAR_ALLOWED)} everywhere "
                          f"(variance >= {fmt(math.exp(MIN_LOGVAR_ALLOWED))})",
                          f"minimum {fmt(low)} at index {idx}", hint)


DECODER = Spec("Decoder", "z", lambda gen, b, n: torch.randn(b, n, generator=gen),
               (_pixels("y_mean"), _pixels("y_logvar")), single_hint=_decoder_single_hint,
               distinct=True, depends=("y_mean",), extra=_check_floor)


# ---------------------------------------------------------------------------------------------
# The sample method of an Encoder class (safe on an untouched stub)
# ---------------------------------------------------------------------------------------------

#: check_encoder_sample: the Encoder is built with this many latent dimensions.
SAMPLE_N_COMPONENTS = 2


def check_encoder_sample(Encoder, *, seed: int = 0) -> None:
    """Encoder(n_components).sample(z_mean, z_logvar) passes :func:`check_sample`.

    Takes the class, so that an unfinished ``__init__`` reads as "not implemented yet" instead
    of crashing the test cell that would build the instance.
    """
    require_class(Encoder, "Encoder")
    with _isolated_rng(seed):
        encoder = build(Encoder, SAMPLE_N_COMPONENTS, "Encoder")
    check_sample(encoder, seed=seed)


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
#: image in the order of the test set, for the graded loss.
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


def _kl_per_image(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) of each row, float64, via torch.distributions."""
    std = (0.5 * logvar).exp()   # may underflow to 0: no validation, a non-finite KL is reported
    prior = _Normal(torch.zeros_like(mu), torch.ones_like(std), validate_args=False)
    return _kl_divergence(_Normal(mu, std, validate_args=False), prior).sum(-1)


def _nll_per_image(y_mean: torch.Tensor, y_logvar: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """-log N(x | y_mean, exp(y_logvar)) of each image without the constant 0.5*D*log(2*pi),
    float64, via torch.distributions."""
    std = (0.5 * y_logvar).exp()  # may underflow to 0: no validation, a non-finite NLL is reported
    log_prob = _Normal(y_mean, std, validate_args=False).log_prob(x).flatten(1).sum(1)
    return -log_prob - HALF_LOG_2PI * x[0].numel()


@torch.no_grad()
def evaluate_vae(encoder, decoder, trainset, testset, *,
                 n_components: int | None = None, train_mode: bool = False) -> dict[str, float]:
    """Probe accuracy of z_mean and the negative ELBO of the trained VAE on the test set.

    Both sets are made seeded varianceMNIST sets (``data.seeded_variance``), and both models
    are put in eval mode (``train_mode=True``: left in train mode, for a hint). The probe is
    fitted on z_mean of the training samples and scored on z_mean of the test samples. The
    loss uses none of the student's loss functions and not their ``sample``: for each test
    image, z = z_mean + exp(0.5*z_logvar) * eps with eps from a generator seeded with
    ``EVAL_Z_SEED`` (one draw per image, in test-set order), then, in float64 with
    torch.distributions, KL(q(z | x) || N(0, I)) and -log N(x | y_mean, exp(y_logvar)) of the
    decoder's output for that z (without the constant 0.5*784*log(2*pi), as in the notebook).
    ``n_components`` (optional) is the expected width of z_mean; by default, whatever it is.

    Returns
    -------
    dict with ``probe_accuracy``; ``kl``, ``nll`` and ``loss`` = kl + nll, means per test image;
    ``min_y_logvar``, the smallest y_logvar the decoder output on the test set; ``logstd_loss``,
    the loss if the encoder's second output were read as a log standard deviation
    (z_logvar = 2 * output), for a hint.
    """
    from data_tools.probe import encode, probe_accuracy

    trainset = seeded_variance(trainset, EVAL_SEED_TRAIN, "trainset", "VAE")
    testset = seeded_variance(testset, EVAL_SEED_TEST, "testset", "VAE")
    encoder.train(train_mode)
    decoder.train(train_mode)
    z_mean_of = lambda x: _encode_trained(encoder, x, n_components)[0]  # noqa: E731
    z_train, y_train = encode(z_mean_of, trainset, batch_size=EVAL_BATCH)
    z_test, y_test = encode(z_mean_of, testset, batch_size=EVAL_BATCH)
    accuracy = probe_accuracy(z_train, y_train, z_test, y_test)

    gen = torch.Generator().manual_seed(EVAL_Z_SEED)
    kl_sum = nll_sum = logstd_sum = 0.0
    min_y_logvar = math.inf
    what = "trained Decoder on z drawn from the encoder's q(z | x)"
    for start in range(0, len(testset), EVAL_BATCH):
        x, _ = testset.batch(list(range(start, min(start + EVAL_BATCH, len(testset)))))
        z_mean, z_logvar = _encode_trained(encoder, x, n_components)
        mu, lv = _f64(z_mean), _f64(z_logvar)
        eps = _randn(mu.shape, generator=gen, dtype=_float64)
        z = _Tensor.to(mu + (0.5 * lv).exp() * eps, _float32)
        if not bool(_isfinite(z).all()):
            raise failure(f"{what}: non-finite z", "finite z", "nan or inf (z_logvar too large)",
                          _DIVERGED)
        out = call(decoder, z, what=what)
        y_mean, y_logvar = _trained_pair(out, DECODER, what, x.shape[0], None)
        ym, ylv = _f64(y_mean), _f64(y_logvar)
        kl_sum += float(_kl_per_image(mu, lv).sum())
        nll_sum += float(_nll_per_image(ym, ylv, _f64(x)).sum())
        min_y_logvar = min(min_y_logvar, float(ylv.min()))
        # The same with the second output read as a log standard deviation.
        z2 = _Tensor.to(mu + lv.exp() * eps, _float32)
        if bool(_isfinite(z2).all()):
            out2 = call(decoder, z2, what=what)
            if isinstance(out2, (tuple, list)) and len(out2) == 2 and all(
                    isinstance(t, _Tensor) and tuple(t.shape) == tuple(x.shape) for t in out2):
                logstd_sum += float((_kl_per_image(mu, 2 * lv)
                                     + _nll_per_image(_f64(out2[0]), _f64(out2[1]), _f64(x))).sum())
            else:
                logstd_sum = math.inf
        else:
            logstd_sum = math.inf
    kl, nll = kl_sum / len(testset), nll_sum / len(testset)
    if not (math.isfinite(kl) and math.isfinite(nll)):
        raise failure("negative ELBO of the trained VAE on the test set: non-finite value",
                      "a finite number", f"KL {fmt(kl)}, NLL {fmt(nll)}",
                      "a variance exp(z_logvar) or exp(y_logvar) underflows to 0 or overflows: "
                      "bound y_logvar from below with a floor (see check_decoder); if the "
                      "training diverged, lower the learning rate and train again")
    logstd_loss = logstd_sum / len(testset)
    return {"probe_accuracy": accuracy, "kl": kl, "nll": nll, "loss": kl + nll,
            "min_y_logvar": min_y_logvar,
            "logstd_loss": logstd_loss if math.isfinite(logstd_loss) else math.inf}


def load_trained(Encoder, Decoder, n_components: int, encoder_path: str = ENCODER_PATH,
                 decoder_path: str = DECODER_PATH):
    """Build Encoder and Decoder and load the saved weights; a problem becomes a CheckFailure."""
    __tracebackhide__ = True  # noqa: F841
    return load_models("VAE", n_components, (Encoder, "Encoder", encoder_path),
                       (Decoder, "Decoder", decoder_path))


def trained_results(Encoder, Decoder, n_components: int, *, trainset=None, testset=None,
                    encoder_path: str = ENCODER_PATH, decoder_path: str = DECODER_PATH,
                    train_mode: bool = False) -> dict:
    """The graded numbers of the saved VAE (evaluated once per process, see ``cache``): the dict
    of :func:`evaluate_vae` with ``source`` and ``bars``. The models are evaluated in eval() mode
    (``train_mode=True``: in train mode, for the hint of a failed bar)."""
    __tracebackhide__ = True  # noqa: F841
    given = (trainset, testset)
    trainset, testset, source_key = variance_evaluation(trainset, testset, NOTEBOOK.eval_seeds,
                                                        "VAE")

    def compute():
        encoder, decoder = load_trained(Encoder, Decoder, n_components, encoder_path, decoder_path)
        with _isolated_rng(EVAL_Z_SEED):
            result = evaluate_vae(encoder, decoder, trainset, testset, n_components=n_components,
                                  train_mode=train_mode)
        result["mode_layers"] = mode_layers(encoder, decoder)
        return result

    return results("vae", (Encoder, Decoder), given,
                   (n_components, source_key, NOTEBOOK.eval_seeds, train_mode),
                   (encoder_path, decoder_path), source_key, compute)


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


def report_trained(Encoder, Decoder, n_components: int, *, trainset=None, testset=None,
                   encoder_path: str = ENCODER_PATH, decoder_path: str = DECODER_PATH) -> dict:
    """Print every graded number of the saved VAE beside its bar (never fails a bar)."""
    __tracebackhide__ = True  # noqa: F841
    result = trained_results(Encoder, Decoder, n_components, trainset=trainset, testset=testset,
                             encoder_path=encoder_path, decoder_path=decoder_path)
    print(probe_line(result))
    print(loss_line(result))
    return result


@student_facing
def check_trained_vae_probe(Encoder, Decoder, n_components: int, *, trainset=None,
                            testset=None, encoder_path: str = ENCODER_PATH,
                            decoder_path: str = DECODER_PATH) -> None:
    """A linear probe on z_mean of the saved encoder (eval mode) passes the accuracy bar."""
    kwargs = dict(trainset=trainset, testset=testset, encoder_path=encoder_path,
                  decoder_path=decoder_path)
    result = trained_results(Encoder, Decoder, n_components, **kwargs)
    require_bar(result, "probe_accuracy", reference="reference_accuracy", generic=True,
                what="linear probe on z_mean of the trained encoder, seeded varianceMNIST test set",
                problem="accuracy too low", hint=_probe_hint(result),
                train_mode=lambda: trained_results(Encoder, Decoder, n_components, train_mode=True,
                                                   **kwargs))
    print(probe_line(result))


@student_facing
def check_trained_vae_loss(Encoder, Decoder, n_components: int, *, trainset=None, testset=None,
                           encoder_path: str = ENCODER_PATH,
                           decoder_path: str = DECODER_PATH) -> None:
    """The saved VAE's negative ELBO per test image (eval mode) passes the loss bar."""
    kwargs = dict(trainset=trainset, testset=testset, encoder_path=encoder_path,
                  decoder_path=decoder_path)
    result = trained_results(Encoder, Decoder, n_components, **kwargs)
    hint = _loss_hint(result, result["bars"]["loss"])
    require_bar(result, "loss", op="<=", fmt=".1f", reference="reference_loss",
                what="negative ELBO of the trained VAE on the seeded varianceMNIST test set (KL + NLL "
                     "per image, NLL without the constant 0.5*784*log(2*pi), one z per image drawn "
                     "with a fixed seed)", problem="too high",
                got=f"{result['loss']:.1f} (KL {result['kl']:.1f} + NLL {result['nll']:.1f})",
                # A model that passes in train mode is diagnosed as such first: its stale BatchNorm
                # statistics can also make the log-std reading look better than the real one.
                hint=hint, generic=True,
                train_mode=lambda: trained_results(Encoder, Decoder, n_components, train_mode=True,
                                                   **kwargs))
    print(loss_line(result))


@student_facing
def check_trained_vae(Encoder, Decoder, n_components: int, *, trainset=None, testset=None,
                      encoder_path: str = ENCODER_PATH, decoder_path: str = DECODER_PATH) -> None:
    """Both bars of the saved VAE: the probe, then the test loss."""
    kwargs = dict(trainset=trainset, testset=testset, encoder_path=encoder_path,
                  decoder_path=decoder_path)
    check_trained_vae_probe(Encoder, Decoder, n_components, **kwargs)
    check_trained_vae_loss(Encoder, Decoder, n_components, **kwargs)


# A failed check shows the student their own call and the message, no frame of the grader.
for _name in ("check_loss_kl", "check_loss_loglik", "check_sample", "check_encoder",
              "check_decoder", "check_encoder_sample"):
    globals()[_name] = student_facing(globals()[_name])
del _name
