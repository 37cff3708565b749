"""Where the random draws of a trained-model evaluation come from: public seeds, or a secret.

A trained-model evaluation draws random numbers: the data noise eps of the varianceMNIST
samples (``VarianceMNIST(eval_seed=...)``), the DAE's corruption noise (the test set's seed, in
another stream), eps of the VAEs' z = z_mean + exp(0.5 z_logvar) eps, the beta-VAE's prior
codes z ~ N(0, I), and the orders in which the grader hands rows to the student's code.

- **Outside grading** (a notebook kernel, ``nbgrader validate``, the tests) no secret is set,
  and every draw uses its public seed (the manifest's ``eval_seeds``, ``EVAL_Z_SEED``,
  ``SAMPLE_SEED``): a notebook shows the same numbers on every run and machine.
- **While grading**, the grader draws a secret per notebook in its own process
  (:func:`new_secret`), and every draw of that notebook's evaluation uses a seed derived from
  the secret and the public seed (:func:`seed`). The secret is set (:func:`using`) only in
  processes that never run student code: the grader's (the stages' inputs, the row orders)
  and the judge's (the measures; it comes in the judge's job). The sandboxed processes receive
  only arrays made with it, so a submission cannot recompute the noise it is handed.

The grader keeps each notebook's secret in its entry of ``grading_report.json`` (the course
root, which no sandbox sees), so that an instructor can compute the graded numbers again::

    with draws.using(entry["secret"]):
        checks.trained_results(...)
"""
from __future__ import annotations

import contextlib
import contextvars
import operator
import secrets

import numpy as np

__all__ = ["LATENT_EPS", "ORDERS", "PRIOR", "VARIANCE", "current", "new_secret", "rng", "seed",
           "using"]

#: Streams of :func:`seed`, one per kind of draw, so that two kinds never share a seed: the
#: varianceMNIST evaluation sets (data noise, and the DAE's corruption of the test set), eps of
#: the VAEs' z, the prior codes of the sample judge, and the row orders.
VARIANCE, LATENT_EPS, PRIOR, ORDERS = 1, 2, 3, 4
#: Random bits of a secret.
SECRET_BITS = 128

# Per thread (and task): a grading process that grades notebooks side by side never mixes
# their secrets.
_SECRET: contextvars.ContextVar = contextvars.ContextVar("autograder_draws_secret", default=None)


def new_secret() -> int:
    """A fresh secret for one notebook's grading: random bits from the operating system."""
    return secrets.randbits(SECRET_BITS)


def _checked(secret) -> int | None:
    """``secret`` as a non-negative int (an int, or its decimal digits as recorded), or None."""
    if secret is None:
        return None
    value = int(secret, 10) if isinstance(secret, str) else operator.index(secret)
    if value < 0:
        raise ValueError(f"a secret of the draws is a non-negative integer, got {value}")
    return value


def current() -> int | None:
    """The secret of the draws in effect here, or None (public seeds)."""
    return _SECRET.get()


@contextlib.contextmanager
def using(secret):
    """Draw from ``secret`` inside (None: the public seeds); the previous setting afterwards."""
    token = _SECRET.set(_checked(secret))
    try:
        yield
    finally:
        _SECRET.reset(token)


def seed(public: int, stream: int) -> int:
    """The seed of a draw whose public seed is ``public``: ``public`` itself when no secret is
    set, else a 64-bit seed derived from (secret, ``stream``, ``public``) by numpy's
    ``SeedSequence``, which nobody can compute without the secret."""
    secret = _SECRET.get()
    if secret is None:
        return public
    words = np.random.SeedSequence([secret, stream, int(public)]).generate_state(2, np.uint32)
    return int(words[0]) << 32 | int(words[1])


def rng(secret: int, stream: int = ORDERS) -> np.random.Generator:
    """A numpy generator drawn from ``secret`` alone (the grader's row orders)."""
    return np.random.default_rng(np.random.SeedSequence([_checked(secret), stream]))
