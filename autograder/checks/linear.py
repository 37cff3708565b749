"""Checks for the linear and sparse autoencoders notebook (``bestiary/linear.ipynb``).

Every check is ``check_<property>(obj, *, seed=0)``: it builds its own seeded inputs, returns
None on success and raises :class:`~autograder.core.CheckFailure` on the first problem it finds,
coarse to fine (callable -> real tensor -> dtype -> shape -> finite -> value). Checks seed
torch's global generator themselves and restore the caller's random state afterwards.

What each check guarantees
--------------------------
check_pca(pca)
    ``pca(X, n_components)`` returns ``(mean, components, explained_variance)``: the column means
    (D,), n_components orthonormal rows (n_components, D) spanning, row by row and up to sign,
    the principal directions in order of decreasing variance, and the variance of the centred
    data along each of them (the 1/N and the 1/(N-1) conventions are both accepted). The oracle
    is a float64 SVD of the centred data; the data are seeded, of shapes with N > D and N < D,
    with a spectrum whose top n_components are well separated from each other and from the rest.
    Named mistakes: data not centred, components as columns, the smallest components or an
    increasing order, singular values or their squares instead of variances, X changed in place.
check_linear_autoencoder(LinearAutoencoder)
    ``LinearAutoencoder(n_components)`` has ``encode`` (B, 1, 28, 28) -> (B, n_components),
    ``decode`` (B, n_components) -> (B, 1, 28, 28) and ``forward`` = decode(encode(x)), float32
    and finite, for several batch sizes and n_components; encode and decode are both affine,
    f(a x1 + (1 - a) x2) = a f(x1) + (1 - a) f(x2) (a nonlinearity gets its own hint); gradients
    reach the parameters. Biases are optional (``bias=False`` passes).
check_l1_penalty(l1_penalty)
    ``l1_penalty(z)`` is the batch mean of the sum over units of |z|, a 0-dim tensor, with the
    right gradient. Named mistakes: a mean over units, no mean over the batch, no absolute value,
    squares instead of absolute values.
check_kl_sparsity(kl_sparsity)
    ``kl_sparsity(rho, z)`` is sum_j KL(Bernoulli(rho) || Bernoulli(rho_hat_j)) with rho_hat_j
    the batch mean of z[:, j]; oracle ``torch.distributions.kl_divergence`` in float64, on
    activations near 0, near 1 and in between, and its gradient. Named mistakes: a per-sample
    rho_hat, the arguments of the KL swapped, the (1 - rho) term missing, a mean over units.
check_sparse_autoencoder(SparseAutoencoder)
    ``SparseAutoencoder(n_hidden).forward(x)`` returns ``(z, xrec)``, z (B, n_hidden) strictly in
    (0, 1), xrec (B, 1, 28, 28), float32, finite; z depends on x; gradients reach the parameters;
    ``encode(x)`` is that z and ``decode(z)`` that xrec (the grader evaluates them apart).
check_trained_linear_subspace / check_trained_linear_error
    The saved linear AE's decoder spans the top-n_components PCA subspace of the training images
    (largest principal angle under a calibrated bar), and its test reconstruction error is within
    a calibrated factor of PCA's. A model without any offset (``bias=False`` throughout) is
    compared with its own optimum, the top subspace of the uncentred images.
check_trained_sparse_activation / check_trained_sparse_share / check_trained_sparse_error
    On the test images, the saved sparse AE's average activation is near rho = 0.05, the share
    of activations below 0.1 is far above a plain AE's, and its reconstruction error is under a
    bar (``autograder.checks.thresholds``, docs/calibration.md). ``encode`` runs on the images,
    ``decode`` (in a process of its own during grading) on the codes only; the activation cells
    require codes that carry the images (:data:`READOUT_MIN`).
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch.distributions import Bernoulli, kl_divergence

from ..manifest import notebook
from .core import (
    call,
    failure,
    fmt,
    require_finite,
    require_shape,
    require_tensor,
    student_facing,
    worst_element,
)
from .core import f64 as _f64
from .core import isolated_rng as _isolated_rng
from .core import require_callable as _require_callable
from .data import mnist_evaluation, mnist_sets
from .evaluation import (
    Codes,
    Evaluation,
    Stage,
    apply,
    batches,
    images_and_labels,
    load_models,
    results,
    run,
    tensor_rows,
    untrained_first,
)
from .evidence import checked, evidence_failure
from .losses import check_loss_grads as _check_loss_grads
from .losses import mistake_hint as _mistake_hint
from .losses import name_mistake as _name_mistake
from .losses import require_loss_scalar as _require_loss_scalar
from .modules import (
    Output,
    Spec,
    build,
    check_gradients,
    check_module,
    check_tensor_output,
    codes,
    forward,
    image,
    image_hint,
    image_input,
    images,
    split_outputs,
)
from .recorded import replayable

__all__ = [
    "check_pca", "check_linear_autoencoder", "check_l1_penalty", "check_kl_sparsity",
    "check_sparse_autoencoder", "check_trained_linear_subspace", "check_trained_linear_error",
    "check_trained_sparse_activation", "check_trained_sparse_share", "check_trained_sparse_error",
    "evaluate_linear", "evaluate_linear_ae", "evaluate_sparse_ae", "evaluation_data",
    "load_trained_linear", "load_trained_sparse", "pca_reference", "principal_angles",
    "SPARSITY_TARGET", "LOW_ACTIVATION",
]

_Tensor = torch.Tensor
_float32 = torch.float32
_float64 = torch.float64
_Bernoulli = Bernoulli
_kl_divergence = kl_divergence
_svd = torch.linalg.svd
_qr = torch.linalg.qr
_svdvals = torch.linalg.svdvals

NOTEBOOK = notebook("linear", "bestiary")
LINEAR_PATH, SPARSE_PATH = NOTEBOOK.weights

# ---------------------------------------------------------------------------------------------
# Tolerances and constants
# ---------------------------------------------------------------------------------------------

#: pca: a returned row matches a principal direction when |cos| >= 1 - COS_TOL (about 2.6
#: degrees); float32 SVD, eigh and torch.pca_lowrank on the well-separated test spectra are far
#: closer, and every named mistake is far off.
COS_TOL = 1e-3
#: pca: the mean and the variances are accepted within ATOL + RTOL * scale.
PCA_RTOL = 1e-3
PCA_ATOL = 1e-6
#: pca: orthonormal rows, |C C^T - I| <= ORTHO_TOL entrywise.
ORTHO_TOL = 1e-3
#: pca test cases (N, D, n_components): N > D, N < D, a single component.
PCA_CASES = ((40, 12, 3), (8, 30, 4), (120, 60, 10), (6, 5, 1))

#: Affine checks: |f(a x1 + (1 - a) x2) - (a f(x1) + (1 - a) f(x2))| <= AFFINE_ATOL +
#: AFFINE_RTOL * max|f|. Float32 rounding of a 784-term dot product is ~1e-6 relative.
AFFINE_RTOL = 1e-4
AFFINE_ATOL = 1e-5
AFFINE_WEIGHTS = (0.3, -1.5)

#: Loss values are accepted within ATOL + RTOL * magnitude (magnitude: sum of |terms|).
L1_RTOL = 1e-5
L1_ATOL = 1e-6
KL_RTOL = 1e-4
KL_ATOL = 1e-5

BATCH_SIZES = (1, 3, 64)
N_COMPONENTS = (2, 10)
N_HIDDEN = (16, 64)
GRAD_BATCH = 4

#: The sparsity target the trained sparse AE is graded against (the notebook's rho).
SPARSITY_TARGET = 0.05
#: An activation below this counts as "off" for the share of low activations.
LOW_ACTIVATION = 0.1
#: The activation cells grade statistics of codes, so the codes must carry the images: a
#: least-squares read-out of the test images from their codes (``code_readout``, fitted on the
#: even-numbered test images, measured on the odd-numbered ones) must explain at least this
#: share of the images' variance. Codes that are the same for every image score 0, codes
#: unrelated to the image below 0; the reference 0.57, a plain AE 0.34, untrained networks
#: 0.65-0.66 (docs/calibration.md): a gate against codes that are no code, not a bar for
#: training.
READOUT_MIN = 0.1
#: Batch size of the evaluation passes.
EVAL_BATCH = 1000


# ---------------------------------------------------------------------------------------------
# pca
# ---------------------------------------------------------------------------------------------

def pca_reference(X: torch.Tensor, n_components: int, *, centre: bool = True):
    """The float64 oracle: (mean, components (k, D), variances 1/N (k,), all singular values)."""
    X = _f64(X)
    mean = X.mean(0) if centre else torch.zeros(X.shape[1], dtype=_float64)
    _, s, vh = _svd(X - mean, full_matrices=False)
    return mean, vh[:n_components], s[:n_components] ** 2 / X.shape[0], s, vh


def _pca_data(gen: torch.Generator, n: int, d: int, k: int) -> torch.Tensor:
    """Seeded data (n, d) with a large mean, top-k standard deviations 4 * 0.75**i and the
    rest at most 0.03: well separated, so that every correct method agrees on each component."""
    m = min(n - 1, d)
    z = torch.randn(n, m, generator=gen, dtype=_float64)
    u, _ = _qr(z - z.mean(0))                               # centred orthonormal columns
    v, _ = _qr(torch.randn(d, m, generator=gen, dtype=_float64))
    std = torch.cat([4.0 * 0.75 ** torch.arange(k, dtype=_float64),
                     0.03 * 0.8 ** torch.arange(m - k, dtype=_float64)])
    mean = 2.0 + torch.randn(d, generator=gen, dtype=_float64)
    x = (u * (std * math.sqrt(n))) @ v.T + mean
    return x.to(_float32)


_PCA_ORDER = ("return the components in order of DECREASING variance: torch.linalg.svd "
              "already sorts the singular values in decreasing order; torch.linalg.eigh "
              "returns eigenvalues in INCREASING order, so flip its eigenvectors (and "
              "eigenvalues) before taking the first n_components")
_PCA_SMALLEST = ("these are the directions of SMALLEST variance: torch.linalg.eigh returns the "
                 "eigenvalues in increasing order, so the last eigenvectors are the principal "
                 "ones; reorder them (e.g. torch.flip, or argsort(descending=True))")
_PCA_CENTRE = ("the data were not centred: subtract the mean of each feature, X - X.mean(dim=0), "
               "before the SVD (without centring the first direction points towards the mean)")
_PCA_COLUMNS = ("components must be ROWS, shape (n_components, D): take the first rows of Vh "
                "from torch.linalg.svd (or transpose the eigenvector columns of eigh)")
_PCA_FALLBACK = ("the rows must be the principal directions of the centred data, e.g. the "
                 "first n_components rows of Vh in U, S, Vh = torch.linalg.svd(X - mean, "
                 "full_matrices=False)")


def _pca_call(pca, X, k, desc):
    what = f"pca(X, n_components={k}) for {desc}"
    X_in = X.clone()
    out = call(pca, X_in, k, what=what)
    if not bool(_Tensor.equal(X_in, X)):
        raise failure(f"{what}: X was changed", "X left as it was", "pca modified its argument "
                      "in place", "do not use in-place operations on X (X -= mean, X.sub_()); "
                      "compute Xc = X - mean instead")
    if not isinstance(out, (tuple, list)) or len(out) != 3:
        got = (f"a {type(out).__name__} of {len(out)} items" if isinstance(out, (tuple, list))
               else type(out).__qualname__)
        raise failure(f"{what}: wrong return type", "a tuple (mean, components, "
                      "explained_variance)", got, "return mean, components, explained_variance")
    for t, name in zip(out, ("mean", "components", "explained_variance")):
        require_tensor(t, f"{what}: {name}")
        if t.dtype not in (_float32, _float64):
            raise failure(f"{what}: {name} has the wrong dtype", "torch.float32 (or float64)",
                          str(t.dtype), "compute with floating-point torch operations")
    return what, out


def _check_pca_case(pca, X: torch.Tensor, k: int, desc: str) -> None:
    n, d = X.shape
    what, (mean, comps, var) = _pca_call(pca, X, k, desc)
    # Shapes.
    mean_hint = ("the mean of each of the D features over the N samples: X.mean(dim=0), "
                 "shape (D,), without keepdim")
    require_shape(mean, (d,), f"{what}: mean", mean_hint)
    if tuple(comps.shape) == (d, k) and d != k:
        raise failure(f"{what}: components have the wrong shape", f"shape {(k, d)}",
                      f"shape {tuple(comps.shape)}", _PCA_COLUMNS)
    if comps.dim() == 2 and comps.shape[1] == d and comps.shape[0] != k:
        hint = f"keep only the first n_components = {k} principal directions"
    else:
        hint = _PCA_COLUMNS
    require_shape(comps, (k, d), f"{what}: components", hint)
    require_shape(var, (k,), f"{what}: explained_variance",
                  "one variance per component: shape (n_components,)")
    for t, name in ((mean, "mean"), (comps, "components"), (var, "explained_variance")):
        require_finite(t, f"{what}: {name}")
    ref_mean, ref_comps, ref_var, s, vh = pca_reference(X, k)
    # The mean.
    scale = float(ref_mean.abs().max())
    if float((_f64(mean) - ref_mean).abs().max()) > PCA_ATOL + PCA_RTOL * scale:
        raise failure(f"{what}: wrong mean", "X.mean(dim=0)", worst_element(mean, ref_mean),
                      mean_hint)
    # Orthonormal rows.
    c = _f64(comps)
    gram = c @ c.T
    if float((gram - torch.eye(k, dtype=_float64)).abs().max()) > ORTHO_TOL:
        norms = c.norm(dim=1)
        if bool(((norms - s[:k]).abs() <= 1e-2 * s[:k]).all()) or \
                bool(((norms - s[:k] ** 2).abs() <= 1e-2 * s[:k] ** 2).all()):
            hint = ("the rows are scaled by the singular values: return the unit vectors "
                    "(rows of Vh), not S[:, None] * Vh")
        else:
            hint = ("the rows of Vh from torch.linalg.svd (or the eigenvectors of eigh) are "
                    "orthonormal: do not scale or mix them")
        raise failure(f"{what}: the components are not orthonormal rows",
                      "components @ components.T == identity",
                      f"row norms {[round(float(x), 4) for x in norms[:4]]}"
                      f"{' ...' if k > 4 else ''}", hint)
    # The directions, row by row, up to sign.
    n_dirs = int((s > 1e-9 * float(s[0])).sum())
    cos = (c @ vh[:n_dirs].T).abs()                          # (k, n_dirs)
    matched = cos.max(1).values
    best = cos.argmax(1)
    ok = [bool(matched[i] >= 1 - COS_TOL) and int(best[i]) == i for i in range(k)]
    if not all(ok):
        i = ok.index(False)
        got = (f"row {i} has |cos| = {float(cos[i, i]) if i < n_dirs else 0.0:.4f} with principal "
               f"direction {i}")
        _, _, _, _, vh_u = pca_reference(X, k, centre=False)
        cos_u = (c @ vh_u[:k].T).abs().diagonal()
        along = ((_f64(X) - ref_mean) @ c.T).pow(2).mean(0)  # variance along each row, 1/N
        if bool((cos_u >= 1 - 10 * COS_TOL).all()):
            hint = _PCA_CENTRE
        elif all(bool(matched[j] >= 1 - COS_TOL) for j in range(k)) and \
                sorted(int(b) for b in best) == list(range(k)):
            hint = _PCA_ORDER
        elif float(along.sum()) < 0.5 * float(ref_var.sum()):
            hint = _PCA_SMALLEST
        else:
            hint = _PCA_FALLBACK
        raise failure(f"{what}: wrong principal directions",
                      f"row i equal to the i-th principal direction up to sign, |cos| >= "
                      f"{1 - COS_TOL} (directions in order of decreasing variance)", got, hint)
    # The variances.
    v = _f64(var)
    accepted = (ref_var, s[:k] ** 2 / (n - 1))
    tol = PCA_ATOL * float(s[0] ** 2) + PCA_RTOL * ref_var
    if any(bool(((v - a).abs() <= tol + PCA_RTOL * a).all()) for a in accepted):
        return
    mistakes = [
        ("these are the singular values S: the variance along component i is S[i]**2 / N "
         "(or / (N - 1))", s[:k]),
        ("these are the squared singular values S**2: divide by the number of samples N "
         "(or N - 1) to get variances", s[:k] ** 2),
        ("these are standard deviations: the variance is their square", ref_var.sqrt()),
        ("these are standard deviations: the variance is their square", (s[:k] ** 2 / (n - 1)).sqrt()),
    ]
    hint = next((h for h, m in mistakes if bool(((v - m).abs() <= 1e-3 * m.abs() + 1e-9).all())), None)
    if hint is None and k > 1 and bool((v[1:] > v[:-1]).any()):
        hint = "the variances must be in decreasing order, like the components: " + _PCA_ORDER
    raise failure(f"{what}: wrong explained_variance",
                  f"{_vec(ref_var)} (1/N) or {_vec(s[:k] ** 2 / (n - 1))} (1/(N-1))",
                  _vec(v), hint or "the variance of the centred data along component i: "
                  "S[i]**2 / N with S the singular values of X - mean (1/(N-1) is accepted)")


def _vec(t: torch.Tensor, n: int = 4) -> str:
    vals = ", ".join(fmt(float(x)) for x in t[:n])
    return f"[{vals}{', ...' if len(t) > n else ''}]"


def check_pca(pca, *, seed: int = 0, cases=PCA_CASES) -> None:
    """pca(X, k) returns the mean, the top-k principal directions (rows) and their variances."""
    _require_callable(pca, "pca")
    gen = torch.Generator().manual_seed(seed)
    with _isolated_rng(seed):
        for n, d, k in cases:
            X = _pca_data(gen, n, d, k)
            _check_pca_case(pca, X, k, f"seeded data X of shape ({n}, {d}) (seed {seed}, "
                                       f"{'N > D' if n > d else 'N < D'})")


# ---------------------------------------------------------------------------------------------
# LinearAutoencoder
# ---------------------------------------------------------------------------------------------

_NONLINEAR = ("a linear autoencoder has no nonlinearity: {part} must be one affine map (e.g. a "
              "single nn.Linear on the flattened image, or on the code), without ReLU, sigmoid, "
              "tanh or anything after it")


def _method(model, name: str, cls_name: str):
    fn = getattr(model, name, None)
    if not callable(fn):
        raise failure(f"{cls_name}: no method {name}", f"a method {name}(self, ...)",
                      "no such attribute", f"define {name} inside the class (indented under it)")
    return fn


def _check_affine(fn, inputs, what: str, part: str) -> None:
    x1, x2 = inputs
    with torch.no_grad():
        f1, f2 = call(fn, x1, what=what), call(fn, x2, what=what)
        for a in AFFINE_WEIGHTS:
            mix = call(fn, a * x1 + (1 - a) * x2, what=what)
            expected = a * _f64(f1) + (1 - a) * _f64(f2)
            scale = max(float(_f64(f1).abs().max()), float(_f64(f2).abs().max()),
                        float(_f64(mix).abs().max()))
            err = float((_f64(mix) - expected).abs().max())
            if err > AFFINE_ATOL + AFFINE_RTOL * scale:
                hint = _NONLINEAR.format(part=part)
                if bool((_f64(f1) >= 0).all() and (_f64(f2) >= 0).all()):
                    hint += " (all its outputs are >= 0, as after a ReLU or a sigmoid)"
                raise failure(f"{what}: not affine, f(a*x1 + (1-a)*x2) != a*f(x1) + (1-a)*f(x2) "
                              f"for a = {a}",
                              f"equal within {fmt(AFFINE_ATOL + AFFINE_RTOL * scale)}",
                              f"largest difference {fmt(err)}", hint)


def check_linear_autoencoder(LinearAutoencoder, *, seed: int = 0, batch_sizes=BATCH_SIZES,
                             n_components_list=N_COMPONENTS) -> None:
    """encode/decode/forward have the right shapes, are affine, and let gradients through."""
    gen = torch.Generator().manual_seed(seed)
    with _isolated_rng(seed):
        for n in n_components_list:
            model = build(LinearAutoencoder, n, "LinearAutoencoder")
            name = f"LinearAutoencoder({n})"
            encode = _method(model, "encode", name)
            decode = _method(model, "decode", name)
            model.eval()
            for b in batch_sizes:
                x = images(b, gen)
                what = f"{name}.encode(x), x of shape {tuple(x.shape)}"
                with torch.no_grad():
                    z = call(encode, x, what=what)
                check_tensor_output(z, (b, n), what, _code_hint(n, tuple(getattr(z, "shape", ()))))
                what = f"{name}.decode(z), z of shape {(b, n)}"
                with torch.no_grad():
                    xrec = call(decode, z, what=what)
                check_tensor_output(xrec, (b, 1, 28, 28), what,
                                    image_hint(tuple(getattr(xrec, "shape", ()))))
                what = f"{name}(x), x of shape {tuple(x.shape)}"
                with torch.no_grad():
                    out = call(model, x, what=what)
                check_tensor_output(out, (b, 1, 28, 28), what,
                                    image_hint(tuple(getattr(out, "shape", ()))))
                err = float((_f64(out) - _f64(xrec)).abs().max())
                if err > AFFINE_ATOL + AFFINE_RTOL * float(_f64(xrec).abs().max()):
                    raise failure(f"{what}: forward(x) differs from decode(encode(x))",
                                  "forward(x) == decode(encode(x))",
                                  f"largest difference {fmt(err)}",
                                  "forward must return self.decode(self.encode(x))")
            _check_affine(encode, (images(4, gen), images(4, gen)), f"{name}.encode", "encode")
            _check_affine(decode, (codes(4, n, gen), codes(4, n, gen)), f"{name}.decode", "decode")
            _depends_on_input(encode, images(2, gen), images(2, gen), f"{name}.encode")
            model.train()
            out = call(model, images(GRAD_BATCH, gen), what=f"{name}(x) in train mode")
            check_gradients(model, (out ** 2).sum(), name)


def _code_hint(n: int, shape: tuple, size: str = "n_components") -> str:
    if len(shape) == 2 and shape[1] != n:
        return f"the code has {shape[1]} columns for {size}={n}: use {size} instead of a fixed number"
    return f"flatten the image to (batch_size, 784), then one nn.Linear(784, {size})"


def _depends_on_input(fn, a, b, what: str) -> None:
    with torch.no_grad():
        if float((_f64(call(fn, a, what=what)) - _f64(call(fn, b, what=what))).abs().max()) == 0:
            raise failure(f"{what}: the same output for two different inputs",
                          "an output that depends on the input", "identical outputs",
                          "compute from the argument, not from a stored or constant tensor")


# ---------------------------------------------------------------------------------------------
# l1_penalty
# ---------------------------------------------------------------------------------------------

_L1_UNIT_MEAN = ("did you average over the units instead of summing over them? (sum over dim 1, "
                 "then mean over the batch)")
_L1_BATCH = "did you sum over the batch instead of averaging over it?"
_L1_ABS = "did you forget the absolute value? the L1 norm is the sum of |z|"
_L1_SQUARE = "this is the squared L2 norm: the L1 penalty sums |z|, not z**2"
_L1_REDUCE = "sum |z| over the units (dim 1), then average over the batch (dim 0)"


def _l1_64(z):
    return z.abs().sum(1).mean()


def _check_l1_case(l1_penalty, z: torch.Tensor, desc: str) -> None:
    what = f"l1_penalty(z) for {desc}"
    value = call(l1_penalty, z.clone(), what=what)
    got = _require_loss_scalar(value, what, z.shape[0], z.shape, _L1_REDUCE)
    z64 = _f64(z)
    expected = float(_l1_64(z64))
    scale = expected
    tol = L1_ATOL + L1_RTOL * scale
    if abs(got - expected) <= tol:
        return
    b, h = z.shape
    bases = [((), expected), ((_L1_ABS,), float(z64.sum(1).mean())),
             ((_L1_SQUARE,), float((z64 ** 2).sum(1).mean()))]
    factors = [(_L1_UNIT_MEAN, 1.0 / h), (_L1_BATCH, float(b))]
    named = _name_mistake(got, bases, factors, scale, L1_ATOL)
    raise failure(f"l1_penalty: wrong value for {desc}", f"{fmt(expected)} (tolerance {fmt(tol)})",
                  fmt(got), _mistake_hint(named, _L1_REDUCE))


#: Random shapes (B, H), B != H and both > 1 first, so that the factors B and 1/H differ.
L1_SHAPES = ((7, 10), (64, 3), (1, 5), (5, 1))


def check_l1_penalty(l1_penalty, *, seed: int = 0) -> None:
    """l1_penalty(z) is the batch mean of the sum of |z| over the units, with its gradient."""
    _require_callable(l1_penalty, "l1_penalty")
    gen = torch.Generator().manual_seed(seed)
    with _isolated_rng(seed):
        _check_l1_case(l1_penalty, torch.zeros(3, 4), "z = 0, shape (3, 4) (penalty 0)")
        _check_l1_case(l1_penalty, torch.tensor([[1.0, -2.0, 0.5], [-3.0, 0.0, 4.0]]),
                       "z = [[1, -2, 0.5], [-3, 0, 4]] (penalty (3.5 + 7) / 2 = 5.25)")
        for b, h in L1_SHAPES:
            z = torch.randn(b, h, generator=gen)
            _check_l1_case(l1_penalty, z, f"z ~ N(0, 1) of shape ({b}, {h}) (seed {seed})")
        z = torch.rand(6, 4, generator=gen) * 0.98 + 0.01
        _check_l1_case(l1_penalty, z, "sigmoid-like z in (0, 1) of shape (6, 4)")
        z = torch.randn(7, 10, generator=gen)
        _check_loss_grads("l1_penalty", l1_penalty, (z,), ("z",), _l1_64, _L1_REDUCE,
                          "z ~ N(0, 1) of shape (7, 10)")


# ---------------------------------------------------------------------------------------------
# kl_sparsity
# ---------------------------------------------------------------------------------------------

_KL_PER_SAMPLE = ("did you use each sample's activation z[i, j] as rho_hat? rho_hat_j is the "
                  "MEAN over the batch, z.mean(dim=0), taken before the KL")
_KL_SWAPPED = ("are the arguments of the KL swapped? the penalty is KL(rho || rho_hat_j) = "
               "rho*log(rho/rho_hat_j) + (1-rho)*log((1-rho)/(1-rho_hat_j))")
_KL_ONE_MINUS = ("is the (1 - rho) term missing? the KL between two Bernoulli distributions has "
                 "two terms: rho*log(rho/rho_hat) + (1-rho)*log((1-rho)/(1-rho_hat))")
_KL_UNIT_MEAN = "did you average over the hidden units instead of summing over them?"
_KL_SIGN = "is the sign flipped? a KL divergence is never negative"
_KL_REDUCE = ("rho_hat = z.mean(dim=0), shape (n_hidden,); then sum the KL of the n_hidden "
              "units to one number")
_KL_NONFINITE = ("log(0) or division by 0: rho_hat and 1 - rho_hat are positive for activations "
                 "in (0, 1); take the logs of rho_hat, not of z - rho or of differences")


def _bern_kl(p, q):
    """sum_j KL(Bernoulli(p) || Bernoulli(q_j)) with torch.distributions, float64."""
    p = torch.full_like(q, float(p))
    return _kl_divergence(_Bernoulli(probs=p, validate_args=False),
                          _Bernoulli(probs=q, validate_args=False))


def _kl64(rho: float, z: torch.Tensor) -> torch.Tensor:
    return _bern_kl(rho, z.mean(0)).sum()


def _check_kl_case(kl_sparsity, rho: float, z: torch.Tensor, desc: str) -> None:
    what = f"kl_sparsity(rho={rho}, z) for {desc}"
    value = call(kl_sparsity, rho, z.clone(), what=what)
    got = _require_loss_scalar(value, what, z.shape[0], z.shape, _KL_REDUCE, _KL_NONFINITE)
    z64 = _f64(z)
    rho_hat = z64.mean(0)
    expected = float(_kl64(rho, z64))
    t1 = rho * torch.log(rho / rho_hat)
    t2 = (1 - rho) * torch.log((1 - rho) / (1 - rho_hat))
    scale = float((t1.abs() + t2.abs()).sum())
    # Float32 rounding of the batch mean, propagated through the slope of the KL.
    slope = (-rho / rho_hat + (1 - rho) / (1 - rho_hat)).abs()
    tol = KL_ATOL + KL_RTOL * scale + float((slope * (rho_hat * 1e-6 + 1e-7)).sum())
    if abs(got - expected) <= tol:
        return
    b, h = z.shape
    per_sample = _bern_kl(rho, z64).sum(1)            # (B,): each sample's own rho_hat
    swapped = float(_kl_divergence(_Bernoulli(probs=rho_hat), _Bernoulli(
        probs=torch.full_like(rho_hat, rho))).sum())
    bases = [((), expected), ((_KL_PER_SAMPLE,), float(per_sample.mean())),
             ((_KL_PER_SAMPLE, "and summed over the batch"), float(per_sample.sum())),
             ((_KL_SWAPPED,), swapped), ((_KL_ONE_MINUS,), float(t1.sum()))]
    factors = [(_KL_UNIT_MEAN, 1.0 / h), (_KL_SIGN, -1.0)]
    named = _name_mistake(got, bases, factors, scale, KL_ATOL)
    raise failure(f"kl_sparsity: wrong value for {desc}", f"{fmt(expected)} (tolerance {fmt(tol)})",
                  fmt(got), _mistake_hint(named, _KL_REDUCE))


def _activations(gen, b: int, h: int, low: float = 0.01, high: float = 0.99) -> torch.Tensor:
    return low + (high - low) * torch.rand(b, h, generator=gen)


def check_kl_sparsity(kl_sparsity, *, seed: int = 0) -> None:
    """kl_sparsity(rho, z) = sum_j KL(Bernoulli(rho) || Bernoulli(mean_i z[i, j]))."""
    _require_callable(kl_sparsity, "kl_sparsity")
    gen = torch.Generator().manual_seed(seed)
    with _isolated_rng(seed):
        # 1. rho_hat = rho for every unit: 0.
        _check_kl_case(kl_sparsity, 0.05, torch.full((4, 3), 0.05),
                       "z = 0.05 everywhere, shape (4, 3) (rho_hat = rho, so KL = 0)")
        # 2. By hand: 2 * (0.05 log 0.1 + 0.95 log 1.9) = 0.989264.
        _check_kl_case(kl_sparsity, 0.05, torch.full((4, 2), 0.5),
                       "z = 0.5 everywhere, shape (4, 2) (KL = 2 * 0.494632)")
        # 3. Activations that vary over the batch, several shapes and targets.
        for rho, (b, h) in ((0.05, (8, 5)), (0.2, (32, 20)), (0.05, (3, 7)), (0.1, (64, 2))):
            _check_kl_case(kl_sparsity, rho, _activations(gen, b, h),
                           f"z ~ U(0.01, 0.99) of shape ({b}, {h}) (seed {seed})")
        # 4. Units whose average activation is near 0 and near 1.
        z = torch.cat([_activations(gen, 16, 3, 1e-5, 2e-4), _activations(gen, 16, 3, 0.9985, 0.9995),
                       _activations(gen, 16, 2)], dim=1)
        _check_kl_case(kl_sparsity, 0.05, z, "z of shape (16, 8) with units whose rho_hat is near "
                       "0 (about 1e-4) and near 1 (about 0.999)")
        # 5. Gradient with respect to z.
        z = _activations(gen, 9, 6)
        _check_loss_grads("kl_sparsity", lambda z: kl_sparsity(0.05, z), (z,), ("z",),
                          lambda z: _kl64(0.05, z), _KL_REDUCE, "rho = 0.05, z ~ U(0.01, 0.99) of "
                          "shape (9, 6)")


# ---------------------------------------------------------------------------------------------
# SparseAutoencoder
# ---------------------------------------------------------------------------------------------

_SIGMOID = ("the hidden activations must lie strictly between 0 and 1 (the KL penalty treats "
            "them as probabilities): apply torch.sigmoid to the hidden layer")
_SPARSE_ORDER = "return z, xrec: the hidden activations first, then the reconstruction"


def _swapped(outs, batch_size: int, n, what: str) -> None:
    z, xrec = outs
    if getattr(z, "dim", lambda: 0)() == 4 and getattr(xrec, "dim", lambda: 0)() == 2:
        raise failure(f"{what}: the outputs are in the wrong order",
                      "a tuple (z, xrec): z of shape (batch_size, n_hidden) first",
                      f"shapes {tuple(z.shape)} and {tuple(xrec.shape)}", _SPARSE_ORDER)


def _activations_in_unit_interval(model, n: int, gen: torch.Generator) -> None:
    """z lies strictly between 0 and 1 (eval mode)."""
    x = images(max(BATCH_SIZES), gen)
    what = f"SparseAutoencoder(n_hidden={n}) on x of shape {tuple(x.shape)} (eval mode)"
    with torch.no_grad():
        z, _ = _sparse_forward(model, x, n, what)
    low, high = float(z.min()), float(z.max())
    if low <= 0.0 or high >= 1.0:
        raise failure(f"{what}: z outside (0, 1)", "0 < z < 1 everywhere",
                      f"values from {fmt(low)} to {fmt(high)}", _SIGMOID)


def _sparse_forward(model, x, n: int, what: str):
    """(z, xrec) of the model on x, checked coarse to fine (the outputs of ``SPARSE_SPEC``)."""
    return split_outputs(forward(model, x, n, what), SPARSE_SPEC, x.shape[0], n, what)


SPARSE_SPEC = Spec(
    "SparseAutoencoder", "x", image_input,
    (Output("z", lambda b, n: (b, n), lambda n, got: _code_hint(n, got, "n_hidden")), image("xrec")),
    single_hint=lambda got: _SPARSE_ORDER, inspect=_swapped, extra=_activations_in_unit_interval,
    size="n_hidden")


def check_sparse_autoencoder(SparseAutoencoder, *, seed: int = 0, batch_sizes=BATCH_SIZES,
                             n_hidden_list=N_HIDDEN) -> None:
    """forward(x) returns (z in (0, 1) of shape (B, n_hidden), xrec of shape (B, 1, 28, 28)),
    z = encode(x) and xrec = decode(z)."""
    check_module(SparseAutoencoder, SPARSE_SPEC, seed=seed, batch_sizes=batch_sizes,
                 n_components_list=n_hidden_list, grad_batch=GRAD_BATCH)
    gen = torch.Generator().manual_seed(seed)
    with _isolated_rng(seed), torch.no_grad():
        for n in n_hidden_list:
            model = build(SparseAutoencoder, n, "SparseAutoencoder", "n_hidden")
            name = f"SparseAutoencoder({n})"
            encode = _method(model, "encode", name)
            decode = _method(model, "decode", name)
            model.eval()
            for b in batch_sizes:
                x = images(b, gen)
                what = f"{name}.encode(x), x of shape {tuple(x.shape)}"
                z = call(encode, x, what=what)
                check_tensor_output(z, (b, n), what, _code_hint(n, tuple(getattr(z, "shape", ())),
                                                                 "n_hidden"))
                what = f"{name}.decode(z), z = encode(x) of shape {(b, n)}"
                xrec = call(decode, z, what=what)
                check_tensor_output(xrec, (b, 1, 28, 28), what,
                                    image_hint(tuple(getattr(xrec, "shape", ()))))
                what = f"{name}(x), x of shape {tuple(x.shape)}"
                z_fwd, xrec_fwd = _sparse_forward(model, x, n, what)
                for part, got, want in (("z", z_fwd, z), ("xrec", xrec_fwd, xrec)):
                    err = float((_f64(got) - _f64(want)).abs().max())
                    if err > AFFINE_ATOL + AFFINE_RTOL * float(_f64(want).abs().max()):
                        raise failure(f"{what}: forward(x) differs from (encode(x), "
                                      f"decode(encode(x))) in {part}",
                                      "forward(x) == (z, self.decode(z)) with z = self.encode(x)",
                                      f"largest difference in {part} {fmt(err)}",
                                      "forward must return z = self.encode(x) and "
                                      "self.decode(z): the grader evaluates encode on the images "
                                      "and decode on the codes only")


# ---------------------------------------------------------------------------------------------
# The trained models
# ---------------------------------------------------------------------------------------------

def evaluation_data(root=None):
    """The MNIST train and test sets of the graded evaluation."""
    return mnist_sets(root)


def principal_angles(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Principal angles in degrees, increasing, between the row spaces of a (k, D) and b (m, D)."""
    qa, _ = _qr(_f64(a).T)
    qb, _ = _qr(_f64(b).T)
    cos = _svdvals(qa.T @ qb).clamp(max=1.0)
    return torch.rad2deg(torch.arccos(cos))


_DIVERGED = "the training diverged: lower the learning rate and train again"


def _linear_inputs(data) -> dict:
    _, testset, _ = data
    return {"x_test": images_and_labels(testset)[0], "x_zero": torch.zeros(1, 1, 28, 28)}


def _flat(out, rows: int, what: str) -> np.ndarray:
    out = tensor_rows(out, what, rows)
    out = _Tensor.to(_Tensor.detach(out), torch.float32).reshape(rows, -1)
    if out.shape[1] != 28 * 28:
        raise failure(f"{what}: wrong output", "784 pixel values per row",
                      f"shape {tuple(out.shape)}", "return images of shape (batch_size, 1, 28, 28)")
    return out.numpy()


def _linear_encode(models: dict, inputs: dict) -> dict:
    encode = _method(models["LinearAutoencoder"], "encode", "LinearAutoencoder")
    enc = lambda x: call(encode, x, what="trained LinearAutoencoder.encode")  # noqa: E731
    what = "trained LinearAutoencoder.encode"
    return {"z_test": apply(enc, inputs["x_test"], what), "z_zero": apply(enc, inputs["x_zero"], what)}


def _linear_codes(first: dict, data) -> dict:
    """decode's inputs: the code of a black image, 0, the unit codes e_i, the test codes."""
    z_test = checked(first, "z_test")
    z_zero = checked(first, "z_zero", 1)
    k = z_test.shape[1] if z_test.ndim == 2 else 0
    if z_zero.shape != (1, k):
        raise evidence_failure("the codes have inconsistent shapes")
    z = np.concatenate([z_zero, np.zeros((1, k)), np.eye(k), z_test]).astype(np.float32)
    return {"z": torch.from_numpy(z)}


def _linear_decode(models: dict, inputs: dict) -> dict:
    decode = _method(models["LinearAutoencoder"], "decode", "LinearAutoencoder")
    what = "trained LinearAutoencoder.decode"
    return {"xrec": np.concatenate([_flat(call(decode, z, what=what), len(z), what)
                                    for z in batches(inputs["z"], EVAL_BATCH)])}


def _linear_measure(first: dict, second: dict, data) -> dict:
    """The numbers of :func:`evaluate_linear_ae` from the recorded codes and decodings."""
    trainset, testset, _ = data
    x_train = images_and_labels(trainset)[0].reshape(len(trainset), -1)
    x_test = images_and_labels(testset)[0].reshape(len(testset), -1)
    k = checked(first, "z_test", len(x_test)).shape[1]
    out = torch.from_numpy(checked(second, "xrec", k + 2 + len(x_test))).to(torch.float64)
    cols = out[1:k + 2]
    if not bool(torch.isfinite(cols).all()):
        raise failure("trained LinearAutoencoder.decode: non-finite weights", "finite values",
                      "nan or inf", _DIVERGED)
    centred = float(out[0].abs().max()) > 1e-6  # forward(0) = decode(encode(0)): an offset?
    directions = cols[1:] - cols[:1]
    mean, comps, _, _, _ = pca_reference(x_train, k, centre=centred)
    angles = principal_angles(directions, comps)
    x64, xrec = _f64(x_test), out[k + 2:]
    proj = (x64 - mean) @ comps.T @ comps + mean
    mse = float(((xrec - x64) ** 2).sum()) / x64.numel()
    pca_mse = float(((proj - x64) ** 2).sum()) / x64.numel()
    if not math.isfinite(mse):
        raise failure("trained LinearAutoencoder on the test images: non-finite output",
                      "finite values", "nan or inf", _DIVERGED)
    return {"max_angle": float(angles.max()), "mean_angle": float(angles.mean()),
            "linear_mse": mse, "pca_mse": pca_mse, "error_ratio": mse / pca_mse,
            "centred": centred}


def _sparse_inputs(data) -> dict:
    return {"x_test": images_and_labels(data[1])[0]}


def _sparse_encode(models: dict, inputs: dict) -> dict:
    """First stage: ``encode`` of the test images, the hidden activations as a plain array."""
    encode = _method(models["SparseAutoencoder"], "encode", "SparseAutoencoder")
    what = "trained SparseAutoencoder.encode on the test images"
    zs = []
    for x in batches(inputs["x_test"], EVAL_BATCH):
        z = tensor_rows(call(encode, x, what=what), what, len(x), hint=(
            "encode must return the hidden activations, (batch_size, n_hidden)"))
        zs.append(_Tensor.to(_Tensor.detach(z), torch.float32).numpy())
    return {"z": np.concatenate(zs)}


def _sparse_codes(first: dict, data) -> dict:
    """decode's inputs, made by the grader: the codes of the test images, checked."""
    z = checked(first, "z")
    if not np.isfinite(z).all():
        raise failure("trained SparseAutoencoder.encode on the test images: non-finite values",
                      "finite values", "nan or inf", _DIVERGED)
    return {"z": torch.from_numpy(np.ascontiguousarray(z, dtype=np.float32))}


def _sparse_decode(models: dict, inputs: dict) -> dict:
    """Second stage: ``decode`` of the grader's codes only, as plain arrays of 784 pixels."""
    decode = _method(models["SparseAutoencoder"], "decode", "SparseAutoencoder")
    what = "trained SparseAutoencoder.decode on the codes of the test images"
    return {"xrec": np.concatenate([_flat(call(decode, z, what=what), len(z), what)
                                    for z in batches(inputs["z"], EVAL_BATCH)])}


def _readout(z: torch.Tensor, x: torch.Tensor) -> float:
    """The share of the variance of the images ``x`` (N, 784) that a least-squares read-out of
    their codes ``z`` (N, H), with an intercept, explains: fitted on the even-numbered rows,
    measured on the odd-numbered ones (float64)."""
    zz = torch.cat([z, torch.ones(len(z), 1, dtype=z.dtype)], 1)
    fit, held = slice(0, None, 2), slice(1, None, 2)
    w = torch.linalg.lstsq(zz[fit], x[fit]).solution
    residual = float(((zz[held] @ w - x[held]) ** 2).sum())
    total = float(((x[held] - x[fit].mean(0)) ** 2).sum())
    return 1.0 - residual / total if total > 0 else 0.0


def _sparse_measure(first: dict, second: dict, data) -> dict:
    """Average activation, share of activations below LOW_ACTIVATION, test MSE per pixel of the
    reconstructions from the codes, and how much of the images the codes carry."""
    x_test = _f64(images_and_labels(data[1])[0].reshape(len(data[1]), -1))
    z = torch.from_numpy(checked(first, "z", len(x_test))).to(torch.float64)
    xrec = torch.from_numpy(checked(second, "xrec", len(x_test))).to(torch.float64)
    if not (bool(torch.isfinite(z).all()) and bool(torch.isfinite(xrec).all())):
        raise failure("trained SparseAutoencoder on the test images: non-finite output",
                      "finite values", "nan or inf", _DIVERGED)
    rho_hat = z.mean(0)
    return {"activation_mean": float(z.mean()), "low_share": float((z < LOW_ACTIVATION).double().mean()),
            "sparse_mse": float(((xrec - x_test) ** 2).sum()) / x_test.numel(),
            "dead_units": int((rho_hat < 1e-3).sum()), "max_unit_activation": float(rho_hat.max()),
            "code_readout": _readout(z, x_test)}


#: The saved linear autoencoder: encode on the test images (and a black image), decode (in a
#: process of its own during grading) on codes only: the unit codes give its directions.
LINEAR = Evaluation(
    name="linear", what="linear autoencoder", bars="linear",
    data=lambda trainset=None, testset=None: mnist_evaluation(trainset, testset, "linear autoencoder"),
    inputs=_linear_inputs,
    first=Stage(("LinearAutoencoder",), _linear_encode, {"z_test": "x_test", "z_zero": "x_zero"}),
    between=_linear_codes,
    second=Stage(("LinearAutoencoder",), _linear_decode, {"xrec": "z"}),
    measure=_linear_measure, codes=Codes(("z_test", "z_zero"), NOTEBOOK.n_components))
#: The saved sparse autoencoder: encode on the test images; decode (in a process of its own
#: during grading) on the codes only, of the notebook's n_hidden units.
SPARSE = Evaluation(
    name="sparse", what="sparse autoencoder", bars="linear",
    data=lambda trainset=None, testset=None: mnist_evaluation(
        testset if trainset is None else trainset, testset, "sparse autoencoder"),
    inputs=_sparse_inputs,
    first=Stage(("SparseAutoencoder",), _sparse_encode, {"z": "x_test"}),
    between=_sparse_codes,
    second=Stage(("SparseAutoencoder",), _sparse_decode, {"xrec": "z"}),
    measure=_sparse_measure,
    codes=Codes(("z",), NOTEBOOK.model_for(SPARSE_PATH).size, "n_hidden"))
EVALUATIONS = (LINEAR, SPARSE)


def evaluate_linear_ae(model, trainset, testset) -> dict[str, float]:
    """How close a trained linear AE is to PCA.

    The decoder's directions are decode(e_i) - decode(0) for the unit codes e_i. A model with an
    offset is compared with PCA of the training images (centred); a model without any offset
    (forward(0) == 0, e.g. ``bias=False`` throughout) with the top subspace of the uncentred
    images, the best a linear map of rank k can do. Returns the largest and the mean principal
    angle (degrees) between the two subspaces, the test MSE per pixel of the model and of the
    projection on the reference subspace, and their ratio.
    """
    return run(LINEAR, {"LinearAutoencoder": model}, (trainset, testset, None))


def evaluate_sparse_ae(model, testset) -> dict[str, float]:
    """Average activation, share of activations below LOW_ACTIVATION and test MSE per pixel."""
    return run(SPARSE, {"SparseAutoencoder": model}, (testset, testset, None))


def evaluate_linear(linear_ae, sparse_ae, trainset, testset) -> dict[str, float]:
    """Every graded number of the notebook (``python -m autograder calibrate linear``)."""
    return {**evaluate_linear_ae(linear_ae, trainset, testset), **evaluate_sparse_ae(sparse_ae, testset)}


def load_trained_linear(LinearAutoencoder, n_components: int, path: str = LINEAR_PATH):
    """Build LinearAutoencoder(n_components) and load the saved weights."""
    (model,) = load_models("linear autoencoder", n_components,
                           (LinearAutoencoder, "LinearAutoencoder", path))
    return model


def load_trained_sparse(SparseAutoencoder, n_hidden: int, path: str = SPARSE_PATH):
    """Build SparseAutoencoder(n_hidden) and load the saved weights."""
    (model,) = load_models("sparse autoencoder", n_hidden, (SparseAutoencoder, "SparseAutoencoder", path))
    return model


def _linear_result(LinearAutoencoder, n_components, trainset, testset, path):
    result = results(LINEAR, n_components, ((LinearAutoencoder, "LinearAutoencoder", path),),
                     (trainset, testset))
    return result, result["bars"]


_TRAIN_LINEAR = ("train longer (the directions with nearly equal variance are learned last), "
                 "check that the loss compares forward(x) with x, and save the weights after "
                 "training")


def check_trained_linear_subspace(LinearAutoencoder, n_components: int, *, trainset=None,
                                  testset=None, path: str = LINEAR_PATH) -> None:
    """The saved decoder spans the top-n_components PCA subspace (largest principal angle)."""
    from .thresholds import required

    result, bars = _linear_result(LinearAutoencoder, n_components, trainset, testset, path)
    reference = ("PCA of the training images" if result["centred"] else
                 "the top singular subspace of the uncentred training images (your model has "
                 "no offset)")
    if result["max_angle"] > bars["max_angle"]:
        raise failure(f"largest principal angle between the span of the trained decoder and "
                      f"{reference}, n_components = {n_components}: too large",
                      required(bars["max_angle"], bars["reference_angle"], ".1f", "<=") + " degrees",
                      f"{result['max_angle']:.1f} degrees (mean {result['mean_angle']:.1f})",
                      untrained_first(result, "max_angle", _TRAIN_LINEAR, ".1f"))
    print(f"largest principal angle to the PCA subspace {result['max_angle']:.1f} degrees "
          f"(required <= {bars['max_angle']:.1f})")


def check_trained_linear_error(LinearAutoencoder, n_components: int, *, trainset=None,
                               testset=None, path: str = LINEAR_PATH) -> None:
    """The saved linear AE's test error is within a calibrated factor of PCA's."""
    from .thresholds import required

    result, bars = _linear_result(LinearAutoencoder, n_components, trainset, testset, path)
    if result["error_ratio"] > bars["error_ratio"]:
        raise failure(f"test reconstruction error of the trained linear autoencoder divided by "
                      f"that of PCA with {n_components} components: too large",
                      required(bars["error_ratio"], bars["reference_ratio"], ".3f", "<="),
                      f"{result['error_ratio']:.3f} (MSE {fmt(result['linear_mse'])} vs PCA "
                      f"{fmt(result['pca_mse'])})",
                      untrained_first(result, "error_ratio", _TRAIN_LINEAR))
    print(f"test MSE {fmt(result['linear_mse'])} = {result['error_ratio']:.3f} x PCA's "
          f"{fmt(result['pca_mse'])} (required <= {bars['error_ratio']:.3f} x)")


def _sparse_result(SparseAutoencoder, n_hidden, testset, path):
    result = results(SPARSE, n_hidden, ((SparseAutoencoder, "SparseAutoencoder", path),),
                     (None, testset))
    return result, result["bars"]


_TRAIN_SPARSE = ("train with the loss reconstruction + sparsity_weight * kl_sparsity(rho, z) "
                 "with rho = 0.05, for all the epochs, and save the weights after training")


def _require_codes(result: dict, what: str) -> None:
    """The activations carry the test images (:data:`READOUT_MIN`): the statistics of codes
    that do not depend on the image say nothing of a sparse code."""
    got = result["code_readout"]
    if got < READOUT_MIN:
        raise failure(f"{what}: the hidden activations do not carry the test images",
                      f"a least-squares read-out of the test images from their activations that "
                      f"explains >= {READOUT_MIN:.0%} of their variance (reference about 57%)",
                      f"{got:.1%}",
                      "encode must compute the activations from the image x (e.g. "
                      "torch.sigmoid(self.encoder(x.flatten(1)))), and decode must reconstruct "
                      "the image from them: activations that are the same for every image, or "
                      "unrelated to it, are no code, whatever their average")


def check_trained_sparse_activation(SparseAutoencoder, n_hidden: int, *, testset=None,
                                    path: str = SPARSE_PATH) -> None:
    """The saved sparse AE's average activation on the test images is near rho = 0.05."""
    result, bars = _sparse_result(SparseAutoencoder, n_hidden, testset, path)
    _require_codes(result, "average hidden activation of the trained sparse autoencoder")
    got = result["activation_mean"]
    low, high = bars["activation_min"], bars["activation_max"]
    if not low <= got <= high:
        hint = (untrained_first(result, "activation_mean", _TRAIN_SPARSE) if got > high else
                f"the activations are almost all 0 ({result['dead_units']} of {n_hidden} units "
                f"never fire): the KL penalty pushes rho_hat towards rho from below too; check "
                f"kl_sparsity and train again")
        raise failure(f"average hidden activation of the trained sparse autoencoder on the test "
                      f"images (target rho = {SPARSITY_TARGET})",
                      f"between {low:.3f} and {high:.3f}" + (
                          "" if bars["reference_activation"] is None else
                          f" (reference about {bars['reference_activation']:.3f})"),
                      f"{got:.3f}", hint)
    print(f"average activation {got:.3f} (required {low:.3f} to {high:.3f}, rho = {SPARSITY_TARGET})")


def check_trained_sparse_share(SparseAutoencoder, n_hidden: int, *, testset=None,
                               path: str = SPARSE_PATH) -> None:
    """Most activations of the saved sparse AE are below 0.1, far more than a plain AE's."""
    from .thresholds import required

    result, bars = _sparse_result(SparseAutoencoder, n_hidden, testset, path)
    _require_codes(result, "share of the trained sparse autoencoder's low activations")
    got = result["low_share"]
    if got < bars["low_share"]:
        raise failure(f"share of the trained sparse autoencoder's activations below "
                      f"{LOW_ACTIVATION} on the test images: too small (a plain autoencoder of "
                      f"the same size has about {bars['plain_share']:.2f})",
                      required(bars["low_share"], bars["reference_share"]), f"{got:.3f}",
                      untrained_first(result, "low_share", _TRAIN_SPARSE))
    print(f"share of activations below {LOW_ACTIVATION}: {got:.3f} (required >= "
          f"{bars['low_share']:.3f}; a plain autoencoder about {bars['plain_share']:.2f})")


def check_trained_sparse_error(SparseAutoencoder, n_hidden: int, *, testset=None,
                               path: str = SPARSE_PATH) -> None:
    """The saved sparse AE reconstructs the test images with an MSE under the bar."""
    from .thresholds import required

    result, bars = _sparse_result(SparseAutoencoder, n_hidden, testset, path)
    got = result["sparse_mse"]
    if got > bars["sparse_mse"]:
        raise failure("reconstruction error of the trained sparse autoencoder on the test "
                      "images (mean over pixels)",
                      required(bars["sparse_mse"], bars["reference_sparse_mse"], ".4f", "<="),
                      fmt(got), untrained_first(
                          result, "sparse_mse", "train longer; check that the reconstruction term "
                          "compares xrec with x and that the sparsity weight is not much larger "
                          "than the notebook's", ".4f"))
    print(f"test MSE {fmt(got)} (required <= {bars['sparse_mse']:.4f})")


# Decided by the judge on the recorded calls during grading (``recorded``).
check_pca = replayable("linear.check_pca")(check_pca)
check_l1_penalty = replayable("linear.check_l1_penalty")(check_l1_penalty)
check_kl_sparsity = replayable("linear.check_kl_sparsity")(check_kl_sparsity)

# A failed check shows the student their own call and the message, no frame of the grader.
for _name in ("check_pca", "check_linear_autoencoder", "check_l1_penalty", "check_kl_sparsity",
              "check_sparse_autoencoder", "check_trained_linear_subspace",
              "check_trained_linear_error", "check_trained_sparse_activation",
              "check_trained_sparse_share", "check_trained_sparse_error"):
    globals()[_name] = student_facing(globals()[_name])
del _name
