"""The check of a reparameterized Gaussian sample z = z_mean + exp(0.5 * z_logvar) * eps, shared
by every notebook whose model draws latent codes (the VAE, the beta-VAE).

:func:`check_sample` takes an object with a ``sample(z_mean, z_logvar)`` method or a plain
function: the result is a float32 tensor shaped like z_mean, two calls draw different noise,
over many draws the per-element mean and standard deviation are z_mean and exp(0.5*z_logvar)
and different elements are uncorrelated (a correct implementation fails with probability below
1e-6), and the gradients with respect to z_mean and z_logvar are the pathwise ones.
:func:`check_encoder_sample` takes the Encoder class and checks the sample method of
``Encoder(2)`` (an unfinished ``__init__`` reads as "not implemented yet").
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .core import CheckFailure, call, failure, fmt, require_dtype, require_finite, require_shape, require_tensor
from .core import f64 as _f64
from .core import isolated_rng as _isolated_rng
from .core import require_callable as _require_callable
from .core import shape_str as _shape_str
from .evidence import mode as _evidence_mode
from .losses import check_grads, log_std_hint
from .modules import build, require_class
from .recorded import record_failure, replayable

_Tensor = torch.Tensor
_float32 = torch.float32
_grad = torch.autograd.grad
_randn = torch.randn

_LOGSTD = log_std_hint("z_logvar")

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
        check_grads(f"{what}: gradients of sum(w * z)", grads, expected,
                     ("z_mean", "z_logvar"), _REPARAM)


#: check_encoder_sample: the Encoder is built with this many latent dimensions.
SAMPLE_N_COMPONENTS = 2


def check_encoder_sample(Encoder, *, seed: int = 0) -> None:
    """Encoder(n_components).sample(z_mean, z_logvar) passes :func:`check_sample`.

    Takes the class, so that an unfinished ``__init__`` reads as "not implemented yet" instead
    of crashing the test cell that would build the instance.
    """
    if _evidence_mode() == "judge":  # the judge replays the recorded calls of Encoder.sample
        return check_sample(None, seed=seed)
    try:
        require_class(Encoder, "Encoder")
        with _isolated_rng(seed):
            encoder = build(Encoder, SAMPLE_N_COMPONENTS, "Encoder")
    except CheckFailure as exc:
        record_failure("sampling.check_sample", exc)  # the judge fails the cell the same way
        raise
    check_sample(encoder, seed=seed)


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
            (lv.exp(), "the standard deviation of z is exp(z_logvar): " + _LOGSTD),
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


# Decided by the judge on the recorded calls during grading (``recorded``).
check_sample = replayable("sampling.check_sample", method="sample")(check_sample)
