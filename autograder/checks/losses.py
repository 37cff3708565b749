"""Building blocks for checking a student's loss function against a float64 oracle.

- :func:`require_loss_scalar`: coarse to fine, a plain torch scalar (not ``.item()``), float
  dtype, 0-dim (a per-sample vector gets "missing a mean over the batch?"), finite;
- :func:`loss_value`: call the loss on copies of the inputs, then :func:`require_loss_scalar`;
- :func:`name_mistake` / :func:`mistake_hint`: a table of known mistakes, as data (a
  :class:`Mistakes` catalogue): *bases* (mistakes that change the formula, each with the value
  it gives) and *factors* (mistakes that multiply the whole value, any subset of which may
  apply); the simplest combination that reproduces the wrong value is named ("exactly 2x too
  large - did you drop the factor 1/2?");
- :func:`check_loss_grads`: the loss is differentiable and its gradients equal the oracle's;
- the hints of the mistakes every loss of a log-variance invites (:func:`log_std_hint`, ...).
"""
from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from .core import call, failure, fmt, require_finite, require_tensor, worst_element
from .core import f64 as _f64

_float32 = torch.float32
_float64 = torch.float64
_grad = torch.autograd.grad

#: Looser tolerance used only to name a mistake once the value is already known to be wrong.
MATCH_RTOL = 1e-3
#: A gradient is accepted when every element is within GRAD_ATOL + GRAD_RTOL * max|expected|.
GRAD_RTOL = 1e-3
GRAD_ATOL = 1e-6


def log_std_hint(name: str) -> str:
    """Hint for a log-variance ``name`` used as a log standard deviation."""
    return (f"{name} is a log-variance, not a log standard deviation: the variance is "
            f"exp({name}) and the standard deviation is exp(0.5*{name}) "
            f"(torch.distributions.Normal takes the standard deviation)")


def std_as_var_hint(name: str) -> str:
    """Hint for the standard deviation of a log-variance ``name`` used as its variance."""
    return (f"did you use the standard deviation exp(0.5*{name}) where the variance exp({name}) "
            f"belongs?")


def nonfinite_logvar_hint(name: str) -> str:
    """Hint for a non-finite loss of a log-variance ``name`` (log or sqrt of it, division)."""
    return (f"{name} is a log-variance and can be zero or negative: log({name}), sqrt({name}) or "
            f"dividing by {name} gives nan/inf; the variance is exp({name})")


def ratio_words(f: float) -> str:
    if f == -1:
        return "exactly the negative of the expected value"
    sign = "" if f > 0 else " and of the opposite sign"
    a = abs(f)
    if a > 1:
        return f"exactly {fmt(a)}x too large{sign}"
    return f"exactly {fmt(1 / a)}x too small{sign}"


def name_mistake(got: float, bases, factors, scale: float, atol: float):
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


def _as_is(mistakes, value):
    return ((mistakes, value),)


@dataclass(frozen=True)
class Mistakes:
    """A loss's catalogue of known mistakes, as data, for :func:`name_mistake`.

    ``formulas``: (hint, value) pairs, a mistake that changes the formula and the value it
    gives, a function of the float64 inputs; ``factors``: (hint, factor) pairs, a mistake that
    multiplies the whole value and its factor, a function of (batch_size, the size summed
    over); ``variants``: (mistakes, value) -> the (mistakes, value) pairs each formula (the
    correct one included) stands for, e.g. with and without a constant.
    """

    formulas: tuple[tuple[str, Callable], ...] = ()
    factors: tuple[tuple[str, Callable[[int, int], float]], ...] = ()
    variants: Callable = _as_is

    def name(self, got: float, inputs, expected: float, batch_size: int, size: int,
             scale: float, atol: float):
        """:func:`name_mistake` of ``got`` over this catalogue (``expected``: the right value)."""
        bases = [((), expected)] + [((hint,), float(value(*inputs))) for hint, value in self.formulas]
        bases = [pair for mistakes, value in bases for pair in self.variants(mistakes, value)]
        factors = [(hint, float(factor(batch_size, size))) for hint, factor in self.factors]
        return name_mistake(got, bases, factors, scale, atol)


def mistake_hint(named, fallback: str) -> str:
    if named is None:
        return fallback
    mistakes, pure = named
    questions = " ".join(mistakes)
    if pure is not None:
        return f"{ratio_words(pure)} - {questions}"
    if len(mistakes) > 1:
        return f"this value is what these mistakes together give: {questions}"
    return questions


def require_loss_scalar(value, what: str, batch_size: int, input_shape, reduce_hint: str,
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
    got = float(_f64(value))
    if not math.isfinite(got):
        raise failure(f"{what}: non-finite value", "a finite number", fmt(got),
                      finite_hint or "look for log(0), division by zero or exp of a large number")
    return got


def loss_value(fn, name: str, names: tuple[str, ...], inputs, desc: str, reduce_hint: str,
               finite_hint: str | None = None) -> float:
    """Call the loss ``name(*names)`` on copies of ``inputs``, check the result coarse to fine
    (:func:`require_loss_scalar`), return it as a float."""
    what = f"{name}({', '.join(names)}) for {desc}"
    value = call(fn, *(t.clone() for t in inputs), what=what)
    return require_loss_scalar(value, what, inputs[0].shape[0], inputs[0].shape, reduce_hint,
                               finite_hint)


def check_grads(what: str, grads, expected, names, hint_detached: str) -> None:
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


def check_loss_grads(name, fn, inputs, names, oracle, reduce_hint, desc,
                      extra_inputs=()) -> None:
    """The loss is differentiable and its gradients w.r.t. `inputs` match the float64 oracle's."""
    what = f"{name}({', '.join(names + ('x',) * len(extra_inputs))}) for {desc}"
    leaves = [t.clone().requires_grad_(True) for t in inputs]
    extras = [t.clone() for t in extra_inputs]
    value = call(fn, *leaves, *extras, what=what)
    require_loss_scalar(value, what, inputs[0].shape[0], inputs[0].shape, reduce_hint)
    detached = ("is part of the formula detached from the graph (.detach(), .data, .item(), "
                "numpy, torch.no_grad())? compute it with torch operations on the inputs")
    if not value.requires_grad:
        raise failure(f"{name}: the result is not differentiable, {desc}",
                      "a tensor that loss.backward() can differentiate",
                      "a tensor with requires_grad=False", detached)
    grads = call(_grad, value, leaves, allow_unused=True, what=f"{name}: backward pass")
    refs = [_f64(t).requires_grad_(True) for t in inputs]
    expected = _grad(oracle(*refs, *[_f64(t) for t in extras]), refs)
    check_grads(f"{name}: gradients for {desc}", grads, expected, names, detached)
