"""Checks for the variational autoencoder notebook (``vae.ipynb``).

Every check is ``check_<property>(obj, *, seed=0)``: it builds its own seeded inputs, returns
None on success and raises :class:`~autograder.core.CheckFailure` on the first problem it finds,
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
    passes the calibrated loss bar (``autograder.thresholds``).
"""
from __future__ import annotations

import contextlib
import itertools
import math

import torch
from torch import nn
from torch.distributions import Normal, kl_divergence

from . import cache
from .core import (CheckFailure, NotImplementedYet, call, failure, fmt, require_dtype,
                   require_finite, require_shape, require_tensor, student_facing, worst_element)
from ..manifest import notebook
from .data import seeded_variance, variance_evaluation, variance_sets
from .modules import load_weights

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
#: Looser tolerance used only to name a mistake once the value is already known to be wrong.
MATCH_RTOL = 1e-3
#: A gradient is accepted when every element is within GRAD_ATOL + GRAD_RTOL * max|expected|.
GRAD_RTOL = 1e-3
GRAD_ATOL = 1e-6

#: Pixels per image (1 x 28 x 28).
N_PIXELS = 28 * 28
#: The constant of a Gaussian log-density per dimension: 0.5 * log(2 pi).
HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)

#: check_sample: number of draws per element and the acceptance bound in standard errors.
#: For N independent draws z = mu + sigma * eps, the empirical mean is exactly
#: N(mu, sigma^2 / N); the empirical standard deviation is approximately N(sigma, sigma^2 / (2N))
#: and the empirical correlation of two independent elements approximately N(0, 1 / N).
#: Each statistic is accepted within SAMPLE_Z_BOUND = 6 standard errors; a two-sided normal tail
#: beyond 6 has probability 2 * (1 - Phi(6)) = 1.97e-9. The check tests
#: SAMPLE_ROWS * SAMPLE_COLS = 12 means, 12 standard deviations and 12 * 11 / 2 = 66
#: correlations, 90 statistics in all, so by the union bound a correct implementation fails with
#: probability <= 90 * 1.97e-9 = 1.8e-7 < 1e-6. The factor ~5 of slack absorbs the error of the
#: normal approximation for the standard deviation and the correlations at N = 20,000 (their
#: skewness is of order 1/sqrt(N), which changes a 6-sigma tail by well under a factor 2).
SAMPLE_N_DRAWS = 20_000
SAMPLE_Z_BOUND = 6.0
SAMPLE_ROWS, SAMPLE_COLS = 4, 3
#: Relative tolerance used only to name a wrong standard deviation (e.g. exp(z_logvar)).
SAMPLE_DIAG_RTOL = 0.05

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

@contextlib.contextmanager
def _isolated_rng(seed: int):
    """Seed torch's global generator inside, restore the caller's random state afterwards.

    The checks work on small tensors, for which one thread is fastest; more threads only
    compete with each other (and with other processes) for the cores. The caller's thread
    count is restored afterwards.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            yield
    finally:
        torch.set_num_threads(threads)


def _f64(t: torch.Tensor) -> torch.Tensor:
    """A detached float64 copy, through the Tensor class itself (not instance attributes)."""
    return _Tensor.to(_Tensor.detach(t), _float64)


def _as_float(t: torch.Tensor) -> float:
    return float(_f64(t))


def _require_callable(fn, what: str) -> None:
    if not callable(fn):
        raise failure(f"{what}: not callable", "a function",
                      f"{type(fn).__module__}.{type(fn).__qualname__}",
                      "pass the function (or class) itself, not the result of calling it")


def _shape_str(shape) -> str:
    return str(tuple(int(s) for s in shape))


def _ratio_words(f: float) -> str:
    if f == -1:
        return "exactly the negative of the expected value"
    sign = "" if f > 0 else " and of the opposite sign"
    a = abs(f)
    if a > 1:
        return f"exactly {fmt(a)}x too large{sign}"
    return f"exactly {fmt(1 / a)}x too small{sign}"


def _name_mistake(got: float, bases, factors, scale: float, atol: float):
    """Find the simplest known mistake that reproduces `got`.

    bases: (mistakes, value) pairs; mistakes == () marks an accepted convention.
    factors: (mistake, factor) pairs that multiply the whole value (any subset may apply).
    Returns (mistakes, pure_factor) for the best match, pure_factor being the product of the
    factors when the base was an accepted convention (else None), or None if nothing matches.
    """
    factors = [(q, f) for q, f in factors if f != 1]
    matches = []
    for base_mistakes, value in bases:
        if not math.isfinite(value):
            continue
        for r in range(len(factors) + 1):
            for combo in itertools.combinations(factors, r):
                mistakes = tuple(base_mistakes) + tuple(q for q, _ in combo)
                if not mistakes:
                    continue
                f = math.prod(f for _, f in combo)
                v = value * f
                tol = atol + MATCH_RTOL * max(abs(v), scale * abs(f))
                if math.isfinite(v) and abs(got - v) <= tol:
                    pure = f if not base_mistakes else None
                    matches.append((len(mistakes), abs(got - v), mistakes, pure))
    if not matches:
        return None
    best = min(matches, key=lambda m: (m[0], m[1]))
    return best[2], best[3]


def _mistake_hint(named, fallback: str) -> str:
    if named is None:
        return fallback
    mistakes, pure = named
    questions = " ".join(mistakes)
    if pure is not None:
        return f"{_ratio_words(pure)} - {questions}"
    if len(mistakes) > 1:
        return f"this value is what these mistakes together give: {questions}"
    return questions


def _require_loss_scalar(value, what: str, batch_size: int, input_shape, reduce_hint: str,
                         finite_hint: str | None = None):
    """Coarse checks on a returned loss: real tensor, float dtype, 0-dim, finite."""
    if isinstance(value, (float, int)) and not isinstance(value, bool):
        raise failure(f"{what}: wrong return type", "a torch.Tensor scalar",
                      f"a Python {type(value).__name__}",
                      "return the tensor itself, not .item() or float(...): the loss must stay "
                      "differentiable for loss.backward()")
    require_tensor(value, what)
    if value.dtype not in (_float32, _float64):
        raise failure(f"{what}: wrong dtype", "torch.float32 (or torch.float64)",
                      str(value.dtype),
                      "compute the loss with floating-point torch operations on the inputs")
    shape = tuple(value.shape)
    if shape != ():
        if shape == (batch_size,):
            hint = ("per-sample vector instead of a scalar - missing a mean over the batch? "
                    f"{reduce_hint}")
        elif shape == tuple(input_shape):
            hint = f"one value per element instead of a scalar: {reduce_hint}"
        elif value.numel() == 1:
            hint = ("return a 0-dim scalar (shape ()), e.g. reduce with .mean() / .sum() "
                    "without keepdim=True and without indexing [None]")
        else:
            hint = f"reduce to a single number: {reduce_hint}"
        raise failure(f"{what}: wrong shape (the loss must be a scalar)", "shape ()",
                      f"shape {shape}", hint)
    got = _as_float(value)
    if not math.isfinite(got):
        raise failure(f"{what}: non-finite value", "a finite number", fmt(got),
                      finite_hint or "look for log(0), division by zero or exp of a large number")
    return got


def _check_grads(what: str, grads, expected, names, hint_detached: str) -> None:
    """Each gradient exists, is finite and matches the expected one."""
    for g, e, name in zip(grads, expected, names):
        if g is None:
            raise failure(f"{what}: no gradient reaches {name}",
                          f"a gradient with respect to {name}", "None (not connected)",
                          hint_detached)
        require_finite(g, f"{what}: gradient with respect to {name}",
                       "look for log(0), division by zero or sqrt(0) in the formula")
        g64, e64 = _f64(g), _f64(e)
        tol = GRAD_ATOL + GRAD_RTOL * float(e64.abs().max())
        if float((g64 - e64).abs().max()) > tol:
            raise failure(f"{what}: wrong gradient with respect to {name}",
                          f"the gradient of the exact formula (tolerance {fmt(tol)})",
                          worst_element(g64, e64), hint_detached)


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
    return _require_loss_scalar(value, what, z_mean.shape[0], z_mean.shape, _KL_REDUCE,
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
    named = _name_mistake(got, bases, factors, scale, KL_ATOL)
    if got < -tol:
        raise failure(f"loss_kl: negative value for {desc}",
                      f">= 0, a KL divergence is never negative (exactly {fmt(expected)})",
                      fmt(got), _mistake_hint(named, _KL_SIGN))
    ratio = f"got/expected = {fmt(got / expected)}; " if expected > tol else ""
    raise failure(f"loss_kl: wrong value for {desc}",
                  f"{fmt(expected)} (tolerance {fmt(tol)})", fmt(got),
                  _mistake_hint(named, ratio + _KL_FALLBACK))


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
        _check_loss_grads(
            "loss_kl", loss_kl, (z_mean, z_logvar), ("z_mean", "z_logvar"),
            lambda mu, lv: _kl64(mu, (0.5 * lv).exp()), _KL_REDUCE,
            "random z_mean and z_logvar, shape (7, 10)")


def _check_loss_grads(name, fn, inputs, names, oracle, reduce_hint, desc,
                      extra_inputs=()) -> None:
    """The loss is differentiable and its gradients w.r.t. `inputs` match the float64 oracle's."""
    what = f"{name}({', '.join(names + ('x',) * len(extra_inputs))}) for {desc}"
    leaves = [t.clone().requires_grad_(True) for t in inputs]
    extras = [t.clone() for t in extra_inputs]
    value = call(fn, *leaves, *extras, what=what)
    _require_loss_scalar(value, what, inputs[0].shape[0], inputs[0].shape, reduce_hint)
    detached = ("is part of the formula detached from the graph (.detach(), .data, .item(), "
                "numpy, torch.no_grad())? compute it with torch operations on the inputs")
    if not value.requires_grad:
        raise failure(f"{name}: the result is not differentiable, {desc}",
                      "a tensor that loss.backward() can differentiate",
                      "a tensor with requires_grad=False", detached)
    grads = call(_grad, value, leaves, allow_unused=True, what=f"{name}: backward pass")
    refs = [_f64(t).requires_grad_(True) for t in inputs]
    expected = _grad(oracle(*refs, *[_f64(t) for t in extras]), refs)
    _check_grads(f"{name}: gradients for {desc}", grads, expected, names, detached)


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
    return _require_loss_scalar(value, what, x.shape[0], x.shape, _LL_REDUCE, _LL_NONFINITE)


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
    named = _name_mistake(got, bases, factors, scale, LOGLIK_ATOL)
    raise failure(f"loss_loglik: wrong value for {desc}",
                  f"{fmt(expected)}, or {fmt(expected + const)} with the constant "
                  f"0.5*D*log(2*pi), D = {N_PIXELS} (tolerance {fmt(tol)})",
                  fmt(got), _mistake_hint(named, _LL_FALLBACK))


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
        _check_loss_grads(
            "loss_loglik", loss_loglik, (y_mean, y_logvar), ("y_mean", "y_logvar"),
            lambda m, lv, x64: _nll64(m, (0.5 * lv).exp(), x64), _LL_REDUCE,
            "random inputs, shape (5, 1, 28, 28)", extra_inputs=(x,))


# ---------------------------------------------------------------------------------------------
# sample (reparameterization trick)
# ---------------------------------------------------------------------------------------------

_REPARAM = ("use the reparameterization trick: z = z_mean + exp(0.5*z_logvar) * eps with "
            "eps = torch.randn_like(z_mean) (or Normal(z_mean, std).rsample()); "
            "torch.normal(...), Normal(...).sample() and detached parameters let no gradient "
            "through the draw")


def _sample_fn(obj):
    """The sample function of an Encoder instance, or obj itself if it is a function."""
    if isinstance(obj, type):
        raise failure("check_sample: got a class", "an Encoder instance or a function "
                      "sample(z_mean, z_logvar)", f"the class {obj.__qualname__}",
                      "pass an instance, e.g. check_sample(Encoder(n_components=10))")
    if isinstance(obj, nn.Module):
        fn = getattr(obj, "sample", None)
        if fn is None:
            raise failure(f"{type(obj).__qualname__}: no method sample",
                          "a method sample(self, z_mean, z_logvar)", "no such attribute",
                          "define sample inside the Encoder class (indented under it)")
        what = f"{type(obj).__qualname__}.sample(z_mean, z_logvar)"
    else:
        fn, what = obj, "sample(z_mean, z_logvar)"
    _require_callable(fn, what)
    return fn, what


def _sample_draw(fn, what, z_mean, z_logvar, desc):
    """Call sample and check its result coarse to fine: real tensor, float32, shape, finite."""
    what = f"{what} for {desc}"
    z = call(fn, z_mean, z_logvar, what=what)
    require_tensor(z, what)
    require_dtype(z, _float32, what)
    require_shape(z, z_mean.shape, what, "z has the shape of z_mean: one draw per element")
    require_finite(z, what, "sigma = exp(0.5*z_logvar) is finite for finite z_logvar; "
                            "log or sqrt of z_logvar gives nan")
    return z


def _sample_latents(gen):
    rows, cols = SAMPLE_ROWS, SAMPLE_COLS
    z_mean = 2.0 * torch.randn(rows, cols, generator=gen)
    # log-variances away from 0, so that exp(z_logvar), exp(0.5*z_logvar), |z_logvar| and 1
    # are all clearly different standard deviations.
    sign = torch.where(torch.rand(rows, cols, generator=gen) < 0.5, -1.0, 1.0)
    z_logvar = sign * (0.8 + 1.7 * torch.rand(rows, cols, generator=gen))  # +-U(0.8, 2.5)
    return z_mean, z_logvar


def check_sample(encoder_or_sample_fn, *, seed: int = 0) -> None:
    """sample(z_mean, z_logvar) draws z ~ N(z_mean, exp(z_logvar)) by reparameterization."""
    fn, what = _sample_fn(encoder_or_sample_fn)
    gen = torch.Generator().manual_seed(seed)
    with _isolated_rng(seed):
        z_mean, z_logvar = _sample_latents(gen)
        desc = f"z_mean and z_logvar of shape {_shape_str(z_mean.shape)}"
        # 1. Type, dtype, shape, finite; fresh noise on every call.
        z1 = _sample_draw(fn, what, z_mean.clone(), z_logvar.clone(), desc)
        z2 = _sample_draw(fn, what, z_mean.clone(), z_logvar.clone(), desc)
        if bool(_Tensor.equal(_f64(z1), _f64(z2))):
            hint = ("z is just z_mean: add the noise sigma * eps" if
                    bool(_Tensor.equal(_f64(z1), _f64(z_mean))) else
                    "sample must draw fresh noise on every call (torch.randn_like(z_mean)); do "
                    "not fix eps, reuse a stored eps or seed a generator inside sample")
            raise failure(f"{what}: two calls with the same {desc}",
                          "two different random draws", "identical tensors", hint)
        # 2. Statistics over many draws, all in one call: row k * rows + r is a draw for row r.
        n = SAMPLE_N_DRAWS
        big_mean, big_logvar = z_mean.repeat(n, 1), z_logvar.repeat(n, 1)
        z = _sample_draw(fn, what, big_mean.clone(), big_logvar.clone(),
                         f"{n} copies of {desc}, stacked into shape "
                         f"{_shape_str(big_mean.shape)}")
        draws = _f64(z).reshape(n, -1)                                 # (n, rows * cols)
        mu, lv = _f64(z_mean).reshape(-1), _f64(z_logvar).reshape(-1)
        sigma = (0.5 * lv).exp()
        _check_sample_stats(what, draws, mu, lv, sigma, n, z_mean.shape)
        # 3. Reparameterized: pathwise gradients reach z_mean and z_logvar.
        mu_leaf = z_mean.clone().requires_grad_(True)
        lv_leaf = z_logvar.clone().requires_grad_(True)
        zg = _sample_draw(fn, what, mu_leaf, lv_leaf, f"{desc}, requires_grad=True")
        if not zg.requires_grad:
            raise failure(f"{what}: z is not differentiable with respect to z_mean and z_logvar",
                          "gradients flowing from z to z_mean and z_logvar",
                          "a tensor with requires_grad=False", _REPARAM)
        w = torch.randn(z_mean.shape, generator=gen)
        grads = call(_grad, (zg * w).sum(), [mu_leaf, lv_leaf], allow_unused=True,
                     what=f"{what}: backward pass")
        # d z / d z_mean = 1 and d z / d z_logvar = 0.5 * sigma * eps = 0.5 * (z - z_mean).
        expected = (w, 0.5 * w * (_Tensor.detach(zg) - z_mean))
        _check_grads(f"{what}: gradients of sum(w * z)", grads, expected,
                     ("z_mean", "z_logvar"), _REPARAM)


def _check_sample_stats(what, draws, mu, lv, sigma, n, shape) -> None:
    def index(flat):
        return tuple(int(i) for i in torch.unravel_index(torch.tensor(flat), shape))

    mean_hat = draws.mean(0)
    std_hat = draws.std(0)
    if bool((std_hat == 0).all()):
        raise failure(f"{what}: no randomness across the rows of one batch",
                      "independent draws for every row", "all rows with the same z_mean and "
                      "z_logvar got the same z",
                      "draw eps with the full shape of z_mean (torch.randn_like(z_mean)), not "
                      "one eps shared by all rows of the batch")
    # Standard deviation first (its test does not depend on the mean, whereas the mean's bound
    # assumes the right sigma): (std_hat - sigma) / (sigma / sqrt(2n)) is about N(0, 1).
    z_std_err = (std_hat - sigma) / (sigma / math.sqrt(2 * n))
    k = int(z_std_err.abs().argmax())
    if float(z_std_err.abs().max()) > SAMPLE_Z_BOUND:
        candidates = [
            (lv.exp(), "the standard deviation of z is exp(z_logvar): " + _KL_LOGSTD),
            ((0.25 * lv).exp(), "the standard deviation of z is exp(0.25*z_logvar): sigma = "
                                "exp(0.5*z_logvar) is already the standard deviation, do not "
                                "take its square root"),
            (lv.abs(), "the standard deviation of z is |z_logvar|: sigma = exp(0.5*z_logvar)"),
            (torch.ones_like(lv), "the standard deviation of z is 1: multiply eps by "
                                  "sigma = exp(0.5*z_logvar)"),
            (sigma / math.sqrt(12.0), "eps must be standard normal (torch.randn_like), not "
                                      "uniform (torch.rand_like)"),
        ]
        hint = "the standard deviation of z must be sigma = exp(0.5*z_logvar)"
        for cand, cand_hint in candidates:
            if _all_close_rel(std_hat, cand):
                hint = cand_hint
                break
        raise failure(f"{what}: wrong standard deviation over {n} draws",
                      f"exp(0.5*z_logvar) = {fmt(float(sigma[k]))} at element {index(k)} "
                      f"(allowed +-{fmt(SAMPLE_Z_BOUND * float(sigma[k]) / math.sqrt(2 * n))})",
                      f"{fmt(float(std_hat[k]))}", hint)
    # Mean: (mean_hat - mu) / (sigma / sqrt(n)) is standard normal.
    z_mean_err = (mean_hat - mu) / (sigma / math.sqrt(n))
    k = int(z_mean_err.abs().argmax())
    if float(z_mean_err.abs().max()) > SAMPLE_Z_BOUND:
        hint = ("E[z] = z_mean: add z_mean, and draw eps from a standard normal with mean 0 "
                "(torch.randn_like)")
        if float((mean_hat / (sigma / math.sqrt(n))).abs().max()) <= SAMPLE_Z_BOUND:
            hint = "the mean of z is 0, not z_mean: z = z_mean + sigma * eps"
        raise failure(f"{what}: wrong mean over {n} draws",
                      f"mean z_mean = {fmt(float(mu[k]))} at element {index(k)} (allowed "
                      f"+-{fmt(SAMPLE_Z_BOUND * float(sigma[k]) / math.sqrt(n))})",
                      f"{fmt(float(mean_hat[k]))}", hint)
    # Independence between elements: correlations of the standardized noise are about N(0, 1/n).
    eps = (draws - mean_hat) / std_hat
    corr = (eps.T @ eps) / n
    corr.fill_diagonal_(0.0)
    bound = SAMPLE_Z_BOUND / math.sqrt(n)
    if float(corr.abs().max()) > bound:
        flat = int(corr.abs().argmax())
        i, j = divmod(flat, corr.shape[1])
        raise failure(f"{what}: the noise of different elements is correlated over {n} draws",
                      f"correlation within +-{fmt(bound)} between every two elements",
                      f"{fmt(float(corr[i, j]))} between elements {index(i)} and {index(j)}",
                      "draw one independent eps per element with the full shape of z_mean "
                      "(torch.randn_like(z_mean)), not one eps per row or per column")


def _all_close_rel(a: torch.Tensor, b: torch.Tensor) -> bool:
    return bool(((a - b).abs() <= SAMPLE_DIAG_RTOL * b.abs()).all())


# ---------------------------------------------------------------------------------------------
# Encoder and Decoder
# ---------------------------------------------------------------------------------------------

def _build(cls, n: int, kind: str) -> nn.Module:
    what = f"{kind}(n_components={n})"
    model = call(cls, n_components=n, what=what)
    if not isinstance(model, nn.Module):
        raise failure(f"{what}: not a torch module", "an nn.Module instance",
                      f"{type(model).__module__}.{type(model).__qualname__}",
                      f"declare class {kind}(nn.Module) and call super().__init__() first")
    return model


def _require_class(cls, kind: str) -> None:
    if isinstance(cls, nn.Module):
        raise failure(f"check_{kind.lower()}: got an instance", f"the class {kind}",
                      f"an instance of {type(cls).__qualname__}",
                      f"pass the class itself: check_{kind.lower()}({kind}); the check builds "
                      f"{kind}(n_components=...) for several sizes")
    _require_callable(cls, kind)


def _require_pair(out, what: str, names, shape, pair_hint, shape_hint):
    """forward returned a tuple of two float32, finite tensors of the given shape."""
    first, second = names
    if isinstance(out, _Tensor):
        raise failure(f"{what}: wrong return type", f"a tuple ({first}, {second})",
                      f"a single tensor of shape {_shape_str(out.shape)}",
                      pair_hint(tuple(out.shape), tuple(shape)))
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        got = (f"a {type(out).__name__} of {len(out)} items"
               if isinstance(out, (tuple, list)) else
               f"{type(out).__module__}.{type(out).__qualname__}")
        raise failure(f"{what}: wrong return type", f"a tuple ({first}, {second})", got,
                      f"return exactly two tensors, in this order: return {first}, {second}")
    for t, name in zip(out, names):
        w = f"{what}: {name}"
        require_tensor(t, w)
        require_dtype(t, _float32, w)
        require_shape(t, shape, w, shape_hint(tuple(t.shape), tuple(shape)))
        require_finite(t, w)
    return out


def _grads_reach_parameters(model, outputs, names, what, gen) -> None:
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise failure(f"{what}: no trainable parameters", "layers with parameters",
                      "model.parameters() is empty",
                      "create the layers in __init__ as attributes (self.fc = nn.Linear(...)) "
                      "after super().__init__()")
    for t, name in zip(outputs, names):
        hint = (f"{name} is not connected to the parameters: do not detach it or compute it "
                f"under torch.no_grad(), and compute it from a layer of the model")
        if not t.requires_grad:
            raise failure(f"{what}: {name} does not depend on the model's parameters",
                          "gradients from it to the parameters", "requires_grad=False", hint)
        w = torch.randn(t.shape, generator=gen)
        grads = call(_grad, (t * w).sum(), params, allow_unused=True, retain_graph=True,
                     what=f"{what}: backward pass from {name}")
        if all(g is None or not bool((g != 0).any()) for g in grads):
            raise failure(f"{what}: no gradient reaches the parameters from {name}",
                          "a nonzero gradient for some parameter", "all None or zero", hint)
        for g in grads:
            if g is not None:
                require_finite(g, f"{what}: gradient from {name}",
                               "look for log(0), division by zero or exp of a large number")


def _check_distinct(a, b, names, what) -> None:
    if bool(_Tensor.equal(_f64(a), _f64(b))):
        raise failure(f"{what}: {names[0]} and {names[1]} are identical",
                      "two different outputs", "the same values",
                      f"compute {names[1]} with its own layer (or its own half of the output), "
                      f"not with the layer of {names[0]}")


def _encoder_input(gen, batch_size):
    shape = (batch_size, 1, 28, 28)
    clean = torch.rand(shape, generator=gen) * (torch.rand(shape, generator=gen) < 0.3)
    return clean * torch.randn(shape, generator=gen)


def _check_depends_on_input(out, what: str, out_name: str, in_name: str) -> None:
    """The first three rows (different inputs) do not all give the same output."""
    o = _f64(out)
    if bool(_Tensor.equal(o[0], o[1])) and bool(_Tensor.equal(o[1], o[2])):
        raise failure(f"{what}: {out_name} does not depend on {in_name}",
                      f"different outputs for different {in_name}", f"the same {out_name}",
                      f"compute {out_name} from {in_name} through the layers")


def check_encoder(Encoder, *, seed: int = 0) -> None:
    """Encoder(n_components)(x) returns (z_mean, z_logvar), each (B, n_components), trainable."""
    _require_class(Encoder, "Encoder")
    names = ("z_mean", "z_logvar")

    def pair_hint(got, expected):
        if got == (expected[0], 2 * expected[1]):
            return ("this looks like z_mean and z_logvar side by side: return a tuple "
                    "(z_mean, z_logvar), e.g. z_mean, z_logvar = h.chunk(2, dim=1)")
        return "forward must return a tuple (z_mean, z_logvar) of two tensors"

    def shape_hint(got, expected):
        if len(got) == 2 and got[0] == expected[0] and got[1] != expected[1]:
            return (f"n_components is not honoured: {got[1]} columns for "
                    f"n_components={expected[1]}; size the output layer(s) with n_components, "
                    f"not with a fixed number")
        if len(got) >= 1 and got[0] != expected[0]:
            return ("the batch dimension was lost: flatten with x.flatten(1) (or "
                    "x.view(x.shape[0], -1)), not x.view(-1, k) with a fixed k")
        return "z_mean and z_logvar each have shape (batch_size, n_components)"

    gen = torch.Generator().manual_seed(seed)
    with _isolated_rng(seed):
        for n in N_COMPONENTS:
            enc = _build(Encoder, n, "Encoder")
            # Shapes in eval mode (BatchNorm works at batch size 1, dropout is off).
            enc.eval()
            for batch_size in BATCH_SIZES:
                x = _encoder_input(gen, batch_size)
                what = (f"Encoder(n_components={n}).forward(x), x of shape "
                        f"{_shape_str(x.shape)} (eval mode)")
                with torch.no_grad():
                    out = call(enc, x.clone(), what=what)
                z_mean, z_logvar = _require_pair(out, what, names, (batch_size, n),
                                                 pair_hint, shape_hint)
            _check_distinct(z_mean, z_logvar, names, what)
            _check_depends_on_input(z_mean, what, "z_mean", "x")
            # Gradients, in train mode (BatchNorm needs more than one sample).
            enc.train()
            x = _encoder_input(gen, GRAD_BATCH_SIZE)
            what = (f"Encoder(n_components={n}).forward(x), x of shape "
                    f"{_shape_str(x.shape)} (train mode)")
            out = call(enc, x, what=what)
            out = _require_pair(out, what, names, (GRAD_BATCH_SIZE, n), pair_hint, shape_hint)
            _grads_reach_parameters(enc, out, names, what, gen)


def _decoder_forward(dec, z, n, what):
    """Call the decoder; a crash on z of width n that goes away at another width is named."""
    try:
        return call(dec, z.clone(), what=what)
    except NotImplementedYet:
        raise
    except CheckFailure as exc:
        first = next((m for m in dec.modules() if isinstance(m, (nn.Linear, nn.Bilinear))),
                     None)
        in_features = getattr(first, "in_features", None)
        if in_features is not None and in_features != n:
            lines = [l for l in str(exc).splitlines() if not l.startswith("  hint:")]
            lines.append(f"  hint: n_components is not honoured: the first Linear layer takes "
                         f"{in_features} inputs but z has n_components={n} columns; use "
                         f"nn.Linear(n_components, ...)")
            raise CheckFailure("\n".join(lines)) from None
        raise


def check_decoder(Decoder, *, seed: int = 0) -> None:
    """Decoder(n_components)(z) returns (y_mean, y_logvar), each (B, 1, 28, 28), with a floor."""
    _require_class(Decoder, "Decoder")
    names = ("y_mean", "y_logvar")

    def pair_hint(got, expected):
        if got == (expected[0], 2, 28, 28):
            return ("this looks like y_mean and y_logvar stacked on the channel axis: return a "
                    "tuple (y_mean, y_logvar), e.g. y_mean, y_logvar = h.chunk(2, dim=1)")
        return "forward must return a tuple (y_mean, y_logvar) of two tensors"

    def shape_hint(got, expected):
        if len(got) == 2 and got[1] == N_PIXELS:
            return "reshape to (batch_size, 1, 28, 28), e.g. h.view(-1, 1, 28, 28)"
        if len(got) == 3 and got[1:] == (28, 28):
            return "add the channel dimension: (batch_size, 1, 28, 28)"
        if len(got) >= 1 and got[0] != expected[0]:
            return ("keep the batch dimension first and reshape with -1 for it: "
                    "h.view(-1, 1, 28, 28)")
        return "y_mean and y_logvar each have shape (batch_size, 1, 28, 28)"

    gen = torch.Generator().manual_seed(seed)
    with _isolated_rng(seed):
        for n in N_COMPONENTS:
            dec = _build(Decoder, n, "Decoder")
            dec.eval()
            for batch_size in BATCH_SIZES:
                z = torch.randn(batch_size, n, generator=gen)
                what = (f"Decoder(n_components={n}).forward(z), z of shape "
                        f"{_shape_str(z.shape)} (eval mode)")
                with torch.no_grad():
                    out = _decoder_forward(dec, z, n, what)
                y_mean, y_logvar = _require_pair(out, what, names, (batch_size, 1, 28, 28),
                                                 pair_hint, shape_hint)
            _check_distinct(y_mean, y_logvar, names, what)
            _check_depends_on_input(y_mean, what, "y_mean", "z")
            _check_floor(dec, n, gen)
            # Gradients, in train mode.
            dec.train()
            z = torch.randn(GRAD_BATCH_SIZE, n, generator=gen)
            what = (f"Decoder(n_components={n}).forward(z), z of shape "
                    f"{_shape_str(z.shape)} (train mode)")
            out = _decoder_forward(dec, z, n, what)
            out = _require_pair(out, what, names, (GRAD_BATCH_SIZE, 1, 28, 28), pair_hint,
                                shape_hint)
            _grads_reach_parameters(dec, out, names, what, gen)


def _check_floor(dec, n, gen) -> None:
    """y_logvar >= MIN_LOGVAR_ALLOWED for z ~ N(0, I) times each of FLOOR_Z_SCALES (eval mode)."""
    z = torch.randn(16, n, generator=gen)
    for scale in FLOOR_Z_SCALES:
        what = (f"Decoder(n_components={n}).forward(z), z ~ N(0, I) * {fmt(scale)} of shape "
                f"(16, {n}) (eval mode)")
        with torch.no_grad():
            out = _decoder_forward(dec, scale * z, n, what)
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
    _require_class(Encoder, "Encoder")
    with _isolated_rng(seed):
        encoder = _build(Encoder, SAMPLE_N_COMPONENTS, "Encoder")
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


def _trained_pair(out, what: str, names, shape) -> tuple[torch.Tensor, torch.Tensor]:
    """A trained model's output: a tuple of two float32 tensors of the shape, finite."""
    def pair_hint(got, expected):
        return f"forward must return a tuple ({names[0]}, {names[1]}) of two tensors"

    def shape_hint(got, expected):
        return f"{names[0]} and {names[1]} each have shape {_shape_str(expected)}"

    first, second = out if isinstance(out, (tuple, list)) and len(out) == 2 else (None, None)
    for t, name in ((first, names[0]), (second, names[1])):
        if isinstance(t, _Tensor) and t.dtype == _float32 and tuple(t.shape) == tuple(shape) \
                and not bool(_isfinite(t).all()):
            raise failure(f"{what}: {name} has non-finite values", "finite values", "nan or inf",
                          _DIVERGED)
    return _require_pair(out, what, names, shape, pair_hint, shape_hint)


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
    return _trained_pair(out, what, ("z_mean", "z_logvar"), (x.shape[0], n_components))


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
        y_mean, y_logvar = _trained_pair(out, what, ("y_mean", "y_logvar"), tuple(x.shape))
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
    encoder = _build(Encoder, n_components, "Encoder")
    decoder = _build(Decoder, n_components, "Decoder")
    load_weights("VAE", (encoder, encoder_path), (decoder, decoder_path))
    return encoder, decoder


def _mode_layers(*models) -> bool:
    """Do the models hold layers that act differently in train and eval mode?"""
    kinds = (nn.modules.batchnorm._BatchNorm, nn.Dropout, nn.Dropout2d)
    return any(isinstance(m, kinds) for model in models for m in model.modules())


def trained_results(Encoder, Decoder, n_components: int, *, trainset=None, testset=None,
                    encoder_path: str = ENCODER_PATH, decoder_path: str = DECODER_PATH) -> dict:
    """The graded numbers of the saved VAE (evaluated once per process, see ``cache``).

    Returns the dict of :func:`evaluate_vae` with ``source`` (the data source's threshold key)
    and ``bars`` (its thresholds) added. The models are evaluated in eval() mode.
    """
    __tracebackhide__ = True  # noqa: F841
    from .thresholds import threshold

    given = (trainset, testset)
    trainset, testset, source_key = variance_evaluation(trainset, testset, NOTEBOOK.eval_seeds,
                                                        "VAE")

    def compute():
        encoder, decoder = load_trained(Encoder, Decoder, n_components, encoder_path, decoder_path)
        with _isolated_rng(EVAL_Z_SEED):
            result = evaluate_vae(encoder, decoder, trainset, testset, n_components=n_components)
        result["mode_layers"] = _mode_layers(encoder, decoder)
        return result

    result = cache.evaluation((Encoder, Decoder, *given),
                              ("vae", n_components, source_key, NOTEBOOK.eval_seeds),
                              (encoder_path, decoder_path), compute)
    result["source"], result["bars"] = source_key, threshold(source_key, "vae")
    return result


def _train_mode_result(Encoder, Decoder, n_components, trainset, testset, encoder_path,
                       decoder_path) -> dict:
    encoder, decoder = load_trained(Encoder, Decoder, n_components, encoder_path, decoder_path)
    trainset, testset, _ = variance_evaluation(trainset, testset, NOTEBOOK.eval_seeds, "VAE")
    with _isolated_rng(EVAL_Z_SEED):
        return evaluate_vae(encoder, decoder, trainset, testset, n_components=n_components,
                            train_mode=True)


EVAL_MODE_HINT = ("in train mode your models pass this bar, but the grader evaluates them in "
                  "eval() mode (it calls .eval() itself, as every evaluation should), where "
                  "BatchNorm uses the running statistics it collected during training and "
                  "Dropout is off: train in train() mode (call .train() before the loop, and "
                  "again after any .eval() inside it), and use nn.Dropout rather than "
                  "F.dropout without training=self.training")


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
    from .thresholds import graded_line

    bars = result["bars"]
    return graded_line("linear probe accuracy on z_mean of the test samples",
                       result["probe_accuracy"], bars["probe_accuracy"],
                       bars.get("reference_accuracy"), result["source"])


def loss_line(result: dict) -> str:
    """The graded test loss beside its bar."""
    from .thresholds import graded_line

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
    from .thresholds import required, source_name

    result = trained_results(Encoder, Decoder, n_components, trainset=trainset, testset=testset,
                             encoder_path=encoder_path, decoder_path=decoder_path)
    bars, acc = result["bars"], result["probe_accuracy"]
    if acc < bars["probe_accuracy"]:
        hint = _probe_hint(result)
        if result["mode_layers"]:
            train = _train_mode_result(Encoder, Decoder, n_components, trainset, testset,
                                       encoder_path, decoder_path)
            if train["probe_accuracy"] >= bars["probe_accuracy"]:
                hint = f"{EVAL_MODE_HINT} (train mode: {train['probe_accuracy']:.3f})"
        raise failure(
            "linear probe on z_mean of the trained encoder, seeded varianceMNIST test set "
            f"(models in eval() mode, {source_name(result['source'])}): accuracy too low",
            required(bars["probe_accuracy"], bars.get("reference_accuracy")),
            f"{acc:.3f}", hint)
    print(probe_line(result))


@student_facing
def check_trained_vae_loss(Encoder, Decoder, n_components: int, *, trainset=None, testset=None,
                           encoder_path: str = ENCODER_PATH,
                           decoder_path: str = DECODER_PATH) -> None:
    """The saved VAE's negative ELBO per test image (eval mode) passes the loss bar."""
    from .thresholds import required, source_name

    result = trained_results(Encoder, Decoder, n_components, trainset=trainset, testset=testset,
                             encoder_path=encoder_path, decoder_path=decoder_path)
    bars, loss = result["bars"], result["loss"]
    if loss > bars["loss"]:
        hint = _loss_hint(result, bars["loss"])
        if result["mode_layers"] and hint.startswith("train longer"):
            train = _train_mode_result(Encoder, Decoder, n_components, trainset, testset,
                                       encoder_path, decoder_path)
            if train["loss"] <= bars["loss"]:
                hint = f"{EVAL_MODE_HINT} (train mode: {train['loss']:.1f})"
        raise failure(
            "negative ELBO of the trained VAE on the seeded varianceMNIST test set (KL + NLL "
            "per image, NLL without the constant 0.5*784*log(2*pi), one z per image drawn with "
            f"a fixed seed, models in eval() mode, {source_name(result['source'])}): too high",
            required(bars["loss"], bars.get("reference_loss"), fmt=".1f", op="<="),
            f"{loss:.1f} (KL {result['kl']:.1f} + NLL {result['nll']:.1f})", hint)
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
