"""Checks for the transfer notebook of the bestiary (``transfer.ipynb``): pretraining an encoder
for a classifier trained on few labels, and one shared encoder with two decoders that swaps the
style of digits (the FaceSwap architecture on digits).

Every check is ``check_<property>(obj, *, seed=0)``: it builds its own seeded inputs, returns
None on success and raises :class:`~autograder.checks.core.CheckFailure` on the first problem,
coarse to fine. Checks seed torch's global generator themselves and restore the caller's random
state and thread count afterwards (``core.isolated_rng``).

What each check guarantees
--------------------------
check_few_label_subset(few_label_subset)
    ``few_label_subset(labels, n_per_class, seed)`` returns a 1-d int64 tensor of distinct
    indices into ``labels`` with exactly ``n_per_class`` of each class present; the same indices
    for the same seed (whatever the global random state) and different ones for different seeds;
    and, over ``UNIFORM_N_SEEDS`` seeds, every ``n_per_class``-subset of a class is drawn equally
    often: a chi-square test per class of the subset frequencies, at a false-alarm rate of at
    most ``UNIFORM_ALPHA`` = 1e-6 for a correct implementation (see the constants). Named
    mistakes: sampling with replacement, positions within the class instead of positions in
    ``labels``, n_per_class in all instead of per class, the first n of each class, an
    unseeded generator, a non-uniform draw.
check_encoder(Encoder), check_decoder(Decoder)
    Shapes, dtype, finite values, input dependence and gradients, as in the AE notebook.
check_classifier(Classifier, Encoder)
    ``Classifier(encoder, n_components, n_classes=10)`` is an nn.Module whose forward maps
    (B, 1, 28, 28) to logits (B, n_classes) (not probabilities); it uses the encoder it was given
    (its output changes when that encoder's weights change) and registers it as a submodule (its
    weights are the classifier's, saved and fine-tuned with it); gradients reach the head, and
    reach the encoder unless the encoder was frozen with ``requires_grad_(False)``.
check_swap_autoencoder(SwapAutoencoder)
    ``SwapAutoencoder(n_components)`` has the modules ``encoder``, ``decoder_a`` and
    ``decoder_b`` (two different decoders); ``forward(x, "a")`` is ``decoder_a(encoder(x))`` and
    ``forward(x, "b")`` is ``decoder_b(encoder(x))``, both (B, 1, 28, 28): one encoder serves both
    domains; ``swap(x)`` is ``decoder_b(encoder(x))``; gradients of each domain's output reach the
    shared encoder and that domain's decoder.
check_trained_pretrained / check_trained_gain (Encoder, Classifier, n_components)
    The saved classifiers (the manifest's two ``Classifier`` weight files) load into
    ``Classifier(Encoder(n_components), n_components)``; on the MNIST test set the pretrained
    one's accuracy passes the calibrated bar, and it beats the scratch one by the calibrated
    margin (``EVALUATION_CLASSIFIERS``: the classifiers' logits of the test images are plain
    arrays; the accuracies are measured by the grader against its own labels).
check_trained_swap_digit / check_trained_swap_style (SwapAutoencoder, n_components)
    The saved SwapAutoencoder loads; every plain MNIST test image is encoded by ``encoder``
    (first stage), and ``decoder_b`` and ``decoder_a`` decode those codes only (second stage):
    ``EVALUATION_SWAP``. A digit judge (a ridge-regression classifier on 14x14 pixels, fitted
    by the grader on the training images in both styles) reads the source digit in a
    calibrated share of the swaps; a style judge (the same, plain versus bold training images)
    calls a calibrated share of them bold while the digit judge still reads their digit (a grey
    blur, which an untrained decoder makes, looks "bold" to a style judge alone). Both judges
    are deterministic and fitted once per process (in the judge's server during grading).

``check_few_label_subset`` is replayable (``autograder.checks.recorded``): during grading the
student's function is called in the grader's re-run of the tests and every comparison is made
by the judge on the recorded calls. The trained-model numbers are measured where no student code
ran (``autograder.checks.evaluation``, docs/security.md).
"""
from __future__ import annotations

import itertools
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..manifest import notebook
from .core import call, failure, fmt, require_tensor, student_facing
from .core import isolated_rng as _isolated_rng
from .core import require_callable as _require_callable
from .data import mnist_evaluation, mnist_sets
from .evaluation import (
    Codes,
    Evaluation,
    Stage,
    batches,
    fitted_once,
    images_and_labels,
    labels_of,
    load_models,
    require_bar,
    results,
    run,
    tensor_rows,
)
from .evidence import checked
from .modules import (
    Spec,
    build,
    check_tensor_output,
    code,
    code_input,
    image,
    image_hint,
    image_input,
    images,
    module_check,
    require_class,
)
from .recorded import replayable
from .thresholds import graded_line

__all__ = [
    "check_few_label_subset", "check_encoder", "check_decoder", "check_classifier",
    "check_swap_autoencoder", "check_trained_pretrained", "check_trained_gain",
    "check_trained_swap_digit", "check_trained_swap_style", "evaluate_transfer",
    "evaluation_data", "classifier_results", "swap_results", "judges", "EVALUATION_CLASSIFIERS",
    "EVALUATION_SWAP", "EVALUATIONS",
]

# Own references, taken at import time (a notebook may rebind the public names later).
_Tensor = torch.Tensor
_int64 = torch.int64
_float32 = torch.float32
_float64 = torch.float64
_gammaincc = torch.special.gammaincc

NOTEBOOK = notebook("transfer", "bestiary")
PRETRAIN_PATH, PRETRAINED_PATH, SCRATCH_PATH, SWAP_PATH = NOTEBOOK.weights

# ---------------------------------------------------------------------------------------------
# Constants
# ---------------------------------------------------------------------------------------------

#: check_few_label_subset: the label vector of the structural checks has these class sizes
#: (classes 0..9), in a seeded random order.
SUBSET_CLASS_SIZES = (20, 21, 22, 23, 24, 25, 26, 27, 28, 29)
SUBSET_N_PER_CLASS = 3
#: How many seeds the "different for different seeds" check tries: all of them must give
#: other subsets than the first. A correct implementation gives one class the same subset
#: for two seeds with probability 1/C(20, 3) = 1/1140 at most, so all ten classes at once with
#: probability below 1e-30 per pair.
SUBSET_OTHER_SEEDS = 3
#: The uniformity test: classes of these sizes, UNIFORM_N_PER_CLASS drawn from each, over
#: UNIFORM_N_SEEDS seeds (consecutive seeds). Drawn uniformly without replacement, each of the
#: C(m, n) subsets of a class of size m has probability 1 / C(m, n) for every seed; the seeds
#: give independent draws, so the subset counts of a class are multinomial and Pearson's
#: statistic is chi-square with C(m, n) - 1 degrees of freedom (expected counts are at least
#: UNIFORM_N_SEEDS / 15 = 200, where the chi-square approximation is accurate far into the
#: tail). A class fails when its p-value is below UNIFORM_ALPHA / (number of classes); by the
#: union bound a correct implementation fails with probability at most UNIFORM_ALPHA = 1e-6.
UNIFORM_CLASS_SIZES = (4, 5, 6)
UNIFORM_N_PER_CLASS = 2
UNIFORM_N_SEEDS = 3000
UNIFORM_ALPHA = 1e-6

#: Sizes tried by the module checks.
N_COMPONENTS = (2, 16)
BATCH_SIZES = (1, 5)
N_CLASSES = (10, 3)
#: Scale of the perturbation added to the encoder's weights (and tolerance of "unchanged").
PERTURB_SCALE = 0.5
#: Outputs of the same computation done two ways agree within this tolerance.
SAME_ATOL = 1e-5

#: The judges see at most this many training images per style (a seeded, fixed subset), so
#: that full MNIST does not make them the slowest step of grading.
JUDGE_MAX_TRAIN = 10_000
JUDGE_SEED = 0
#: Regularisation of the judges' ridge regressions (on pixels in [0, 1], 196 features).
JUDGE_RIDGE = 1.0

# ---------------------------------------------------------------------------------------------
# few_label_subset
# ---------------------------------------------------------------------------------------------


def _shuffled_labels(sizes, gen: torch.Generator) -> torch.Tensor:
    """Labels 0..len(sizes)-1 with sizes[c] copies of class c, in a random order."""
    labels = torch.cat([torch.full((m,), c, dtype=_int64) for c, m in enumerate(sizes)])
    return labels[torch.randperm(len(labels), generator=gen)]


def _subset(fn, labels: torch.Tensor, n: int, seed: int, what: str) -> torch.Tensor:
    """One call, validated: a 1-d int64 tensor of distinct valid indices, n of each class."""
    out = call(fn, labels.clone(), n, seed, what=what)
    if isinstance(out, (list, tuple)) or type(out).__name__ == "ndarray":
        raise failure(f"{what}: wrong return type", "a torch.Tensor of dtype int64 (a LongTensor)",
                      type(out).__qualname__,
                      "convert the indices with torch.as_tensor(indices, dtype=torch.long)")
    out = require_tensor(out, what)
    n_classes = len(labels.unique())
    if out.dtype != _int64:
        raise failure(f"{what}: wrong dtype", "torch.int64 (a LongTensor of indices)", str(out.dtype),
                      "indices are integers: torch.nonzero and torch.randperm give int64; "
                      "convert with .long()")
    if out.dim() != 1:
        raise failure(f"{what}: wrong shape", f"a 1-d tensor of {n * n_classes} indices",
                      f"shape {tuple(out.shape)}",
                      "join the indices of the classes with torch.cat (not torch.stack), and "
                      "flatten the result of torch.nonzero")
    if len(out) and (int(out.min()) < 0 or int(out.max()) >= len(labels)):
        raise failure(f"{what}: indices out of range", f"indices in 0..{len(labels) - 1}",
                      f"min {int(out.min())}, max {int(out.max())}",
                      "return positions in `labels`, e.g. torch.nonzero(labels == c) gives them")
    values = out.tolist()
    if len(set(values)) != len(values):
        dup = next(v for v in values if values.count(v) > 1)
        largest = max(int((labels == c).sum()) for c in labels.unique().tolist())
        if max(values) < largest and len(out) == n * n_classes:
            hint = ("return positions in `labels` (e.g. members[chosen] with members = "
                    "torch.nonzero(labels == c).flatten()), not positions within the class")
        else:
            hint = ("you sample with replacement: draw without replacement, e.g. the first "
                    "n_per_class of torch.randperm(len(members), generator=g)")
        raise failure(f"{what}: repeated indices", "distinct indices",
                      f"index {dup} appears {values.count(dup)} times", hint)
    classes = labels.unique().tolist()
    counts = {c: int((labels[out] == c).sum()) for c in classes}
    if any(k != n for k in counts.values()):
        if len(out) == n:
            hint = "n_per_class is per class: draw n_per_class indices from EACH class and join them"
        else:
            hint = ("select the members of each class with labels == c, draw n_per_class of them, "
                    "and return their positions in `labels` (not positions within the class)")
        raise failure(f"{what}: wrong number of indices per class",
                      f"exactly {n} of each class {classes}",
                      ", ".join(f"class {c}: {k}" for c, k in counts.items()), hint)
    return out


def _first_n(labels: torch.Tensor, n: int) -> list[int]:
    return sorted(i for c in labels.unique().tolist()
                  for i in torch.nonzero(labels == c).flatten()[:n].tolist())


def check_few_label_subset(few_label_subset, *, seed: int = 0, n_per_class: int = SUBSET_N_PER_CLASS,
                           uniform_seeds: int = UNIFORM_N_SEEDS) -> None:
    """few_label_subset draws n_per_class distinct indices of each class, uniformly, seeded."""
    _require_callable(few_label_subset, "few_label_subset")
    with _isolated_rng(seed):
        gen = torch.Generator().manual_seed(seed)
        labels = _shuffled_labels(SUBSET_CLASS_SIZES, gen)
        desc = (f"labels of {len(labels)} images in 10 classes ({min(SUBSET_CLASS_SIZES)} to "
                f"{max(SUBSET_CLASS_SIZES)} each, in a random order)")
        what = f"few_label_subset({desc}, n_per_class={n_per_class}, seed={{}})"
        s0 = seed + 100
        first = _subset(few_label_subset, labels, n_per_class, s0, what.format(s0))
        # The same seed gives the same subset, whatever the global random state.
        torch.manual_seed(seed + 12345)
        again = _subset(few_label_subset, labels, n_per_class, s0, what.format(s0) + ", called again")
        if sorted(first.tolist()) != sorted(again.tolist()):
            raise failure(f"{what.format(s0)}, called twice: different indices",
                          "the same indices for the same seed",
                          f"{len(set(first.tolist()) ^ set(again.tolist())) // 2} of {len(first)} "
                          f"indices differ",
                          "the generator is not seeded with `seed`: draw from "
                          "torch.Generator().manual_seed(seed) (or np.random.default_rng(seed)) "
                          "instead of the global random state")
        # Different seeds give different subsets.
        for s in range(s0 + 1, s0 + 1 + SUBSET_OTHER_SEEDS):
            other = _subset(few_label_subset, labels, n_per_class, s, what.format(s))
            if sorted(other.tolist()) == sorted(first.tolist()):
                if sorted(first.tolist()) == _first_n(labels, n_per_class):
                    hint = ("these are the first n_per_class images of each class: draw them at "
                            "random, with a generator seeded with `seed`")
                else:
                    hint = "the seed is ignored: seed the generator with the `seed` argument"
                raise failure(f"few_label_subset with seeds {s0} and {s}: the same indices",
                              "different indices for different seeds", "identical subsets", hint)
        _check_uniform(few_label_subset, seed, uniform_seeds)


def _check_uniform(fn, seed: int, n_seeds: int) -> None:
    """Every n-subset of a class is drawn equally often over n_seeds seeds (chi-square test)."""
    gen = torch.Generator().manual_seed(seed + 1)
    labels = _shuffled_labels(UNIFORM_CLASS_SIZES, gen)
    n = UNIFORM_N_PER_CLASS
    members = {c: torch.nonzero(labels == c).flatten().tolist() for c in range(len(UNIFORM_CLASS_SIZES))}
    counts: dict = {c: {} for c in members}
    what = (f"few_label_subset(labels of {len(labels)} images in classes of sizes "
            f"{', '.join(map(str, UNIFORM_CLASS_SIZES))}, n_per_class={n}, seed={{}})")
    start = seed * n_seeds + 1000
    for s in range(start, start + n_seeds):
        out = _subset(fn, labels, n, s, what.format(s)).tolist()
        for c, m in members.items():
            key = tuple(sorted(i for i in out if i in m))
            counts[c][key] = counts[c].get(key, 0) + 1
    alpha = UNIFORM_ALPHA / len(members)
    for c, m in members.items():
        n_subsets = math.comb(len(m), n)
        expected = n_seeds / n_subsets
        observed = [counts[c].get(tuple(sorted(key)), 0) for key in itertools.combinations(m, n)]
        stat = sum((o - expected) ** 2 / expected for o in observed)
        df = n_subsets - 1
        p = float(_gammaincc(torch.tensor(df / 2, dtype=_float64), torch.tensor(stat / 2, dtype=_float64)))
        if p < alpha:
            position = _position_bias(m, counts[c], n_seeds, n)
            raise failure(
                f"{what.format(f'{start}..{start + n_seeds - 1}')}: the {n}-subsets of class {c} "
                f"(size {len(m)}) are not drawn uniformly",
                f"each of the {n_subsets} subsets about {expected:.0f} times "
                f"(chi-square test, false-alarm rate {UNIFORM_ALPHA:g})",
                f"counts from {min(observed)} to {max(observed)} (chi-square {stat:.1f} on {df} "
                f"degrees of freedom, p = {p:.2g}){position}",
                "draw uniformly without replacement within each class, e.g. "
                "members[torch.randperm(len(members), generator=g)[:n_per_class]]; a random "
                "start with a block of neighbours, or weights that favour some images, is not "
                "uniform")


def _position_bias(members, counts, n_seeds, n) -> str:
    """'; its image number i (of m, in dataset order) is drawn in x% of the seeds (expected y%)'."""
    freq = {i: sum(k for key, k in counts.items() if i in key) / n_seeds for i in members}
    worst = max(members, key=lambda i: abs(freq[i] - n / len(members)))
    rank = members.index(worst)
    return (f"; its image number {rank + 1} (of {len(members)}, in dataset order) is drawn in "
            f"{100 * freq[worst]:.0f}% of the seeds (expected {100 * n / len(members):.0f}%)")


# ---------------------------------------------------------------------------------------------
# Encoder, Decoder
# ---------------------------------------------------------------------------------------------

ENCODER = Spec("Encoder", "x", image_input, (code("z"),))
DECODER = Spec("Decoder", "z", code_input, (image("xrec"),))

check_encoder = module_check(
    ENCODER, "Encoder(n_components) maps (B, 1, 28, 28) images to (B, n_components) float32 codes.",
    n_components_list=N_COMPONENTS)
check_decoder = module_check(
    DECODER, "Decoder(n_components) maps (B, n_components) codes to (B, 1, 28, 28) float32 images.",
    n_components_list=N_COMPONENTS)


# ---------------------------------------------------------------------------------------------
# Classifier
# ---------------------------------------------------------------------------------------------

def _build_classifier(Classifier, encoder, n: int, n_classes: int | None) -> nn.Module:
    args = (encoder, n) if n_classes is None else (encoder, n, n_classes)
    shown = f"Classifier(encoder, n_components={n}" + ("" if n_classes is None else
                                                        f", n_classes={n_classes}") + ")"
    clf = call(Classifier, *args, what=shown)
    if not isinstance(clf, nn.Module):
        raise failure(f"{shown}: not an nn.Module", "an instance of a subclass of torch.nn.Module",
                      type(clf).__name__, "derive the class from nn.Module and call super().__init__()")
    return clf


def _logits_hint(got_shape: tuple, batch: int, n: int, k: int) -> str:
    if len(got_shape) == 2 and got_shape[1] == n and n != k:
        return ("these are the codes: put a head on top of the encoder, e.g. "
                "nn.Linear(n_components, n_classes)")
    if len(got_shape) == 2 and got_shape[0] == batch:
        return "the head's output size must be n_classes (the grader also builds n_classes=3)"
    if len(got_shape) == 1:
        return "return the logits of every class, shape (batch_size, n_classes), not the predicted class"
    return "the output must be the logits, shape (batch_size, n_classes)"


def check_classifier(Classifier, Encoder, *, seed: int = 0, n_components_list=N_COMPONENTS,
                     batch_sizes=BATCH_SIZES, n_classes_list=N_CLASSES) -> None:
    """Classifier(encoder, n_components, n_classes) gives logits, uses and registers the encoder
    it was given, and passes gradients to its head (and to the encoder unless it is frozen)."""
    require_class(Classifier, "Classifier")
    require_class(Encoder, "Encoder")
    with _isolated_rng(seed):
        gen = torch.Generator().manual_seed(seed)
        for n in n_components_list:
            for k in n_classes_list:
                encoder = build(Encoder, n, "Encoder")
                clf = _build_classifier(Classifier, encoder, n, None if k == 10 else k)
                name = f"Classifier(Encoder({n}), {n}" + ("" if k == 10 else f", n_classes={k}") + ")"
                clf.eval()
                for b in batch_sizes:
                    x = images(b, gen)
                    what = f"{name} on x of shape {tuple(x.shape)} (eval mode)"
                    with torch.no_grad():
                        out = call(clf, x, what=what)
                    shape = tuple(getattr(out, "shape", ()))
                    check_tensor_output(out, (b, k), what, _logits_hint(shape, b, n, k))
                _check_logits(clf, images(4, gen), name)
                _check_uses_encoder(clf, encoder, images(3, gen), name)
                _check_classifier_gradients(clf, encoder, images(4, gen), k, gen, name)


def _check_logits(clf, x, name: str) -> None:
    with torch.no_grad():
        out = call(clf, x, what=f"{name} (eval mode)")
    o = _Tensor.to(out.detach(), _float64)
    if bool((o >= 0).all()) and bool(((o.sum(1) - 1).abs() < 1e-4).all()):
        raise failure(f"{name} on 4 random images: the rows are probabilities (they sum to 1)",
                      "logits: unnormalized scores, one per class", "softmax outputs",
                      "return the logits without softmax: nn.CrossEntropyLoss (F.cross_entropy) "
                      "applies log-softmax itself, and a softmax before it slows training down")


def _check_uses_encoder(clf, encoder, x, name: str) -> None:
    with torch.no_grad():
        before = call(clf, x, what=f"{name} (eval mode)").clone()
        gen = torch.Generator().manual_seed(7)
        saved = {k: v.clone() for k, v in encoder.state_dict().items()}
        for p in encoder.parameters():
            p.add_(PERTURB_SCALE * torch.randn(p.shape, generator=gen))
        after = call(clf, x, what=f"{name} after changing the encoder's weights")
        encoder.load_state_dict(saved)
    if float((after - before).abs().max()) <= SAME_ATOL:
        raise failure(f"{name}: the output does not change when the weights of the encoder "
                      f"passed to Classifier change", "an output computed by the given encoder",
                      "the same output",
                      "use the encoder you are given: keep it (self.encoder = encoder) and apply it "
                      "in forward; do not build a new Encoder(n_components) or copy the given one")
    own = {id(p) for p in clf.parameters()}
    if not all(id(p) in own for p in encoder.parameters()):
        raise failure(f"{name}: the encoder's weights are not among the classifier's parameters",
                      "the encoder registered as a submodule", "an unregistered encoder",
                      "store it as an attribute of the module (self.encoder = encoder), not in a "
                      "plain list or dict: otherwise it is neither saved with the classifier nor "
                      "fine-tuned")


def _check_classifier_gradients(clf, encoder, x, k: int, gen, name: str) -> None:
    clf.train()
    enc_ids = {id(p) for p in encoder.parameters()}
    head = [p for p in clf.parameters() if id(p) not in enc_ids and p.requires_grad]
    if not head:
        raise failure(f"{name}: the head has no trainable parameters",
                      "a head with parameters on top of the encoder (e.g. nn.Linear)",
                      "no parameters besides the encoder's",
                      "add a layer that maps the code to n_classes logits: "
                      "nn.Linear(n_components, n_classes)")
    y = torch.randint(0, k, (len(x),), generator=gen)
    out = call(clf, x, what=f"{name} (train mode)")
    loss = F.cross_entropy(out, y)
    clf.zero_grad()
    if not loss.requires_grad:
        raise failure(f"{name}: the output is cut off from the parameters",
                      "an output that requires grad", "requires_grad=False",
                      "do not use .detach(), .numpy(), .data or torch.no_grad() in forward")
    loss.backward()

    def reached(params):
        return any(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in params)

    if not reached(head):
        raise failure(f"{name}: gradients do not reach the head", "non-zero gradients",
                      "all gradients of the head are zero or None",
                      "compute the logits from the head's layers in forward")
    trainable = [p for p in encoder.parameters() if p.requires_grad]
    if trainable and not reached(trainable):
        raise failure(f"{name}: gradients do not reach the encoder", "non-zero gradients "
                      "(or an encoder frozen with requires_grad_(False))",
                      "all gradients of the encoder are zero or None",
                      "forward detaches the code (.detach(), torch.no_grad()), so the encoder can "
                      "never be fine-tuned; to train only the head, freeze the encoder with "
                      "encoder.requires_grad_(False), or give the optimizer only the head's "
                      "parameters")
    clf.zero_grad()
    clf.eval()


# ---------------------------------------------------------------------------------------------
# SwapAutoencoder
# ---------------------------------------------------------------------------------------------

_PARTS = ("encoder", "decoder_a", "decoder_b")


def check_swap_autoencoder(SwapAutoencoder, *, seed: int = 0, n_components_list=N_COMPONENTS,
                           batch_sizes=BATCH_SIZES) -> None:
    """SwapAutoencoder(n): a shared encoder, decoder_a for "a", decoder_b for "b" and for swap."""
    require_class(SwapAutoencoder, "SwapAutoencoder")
    with _isolated_rng(seed):
        gen = torch.Generator().manual_seed(seed)
        for n in n_components_list:
            model = build(SwapAutoencoder, n, "SwapAutoencoder")
            name = f"SwapAutoencoder({n})"
            for part in _PARTS:
                if not isinstance(getattr(model, part, None), nn.Module):
                    raise failure(f"{name}: no module `{part}`",
                                  "the attributes encoder, decoder_a and decoder_b (nn.Modules)",
                                  f"{part} is {type(getattr(model, part, None)).__name__}",
                                  "create self.encoder = Encoder(n_components), self.decoder_a = "
                                  "Decoder(n_components) and self.decoder_b = Decoder(n_components) "
                                  "in __init__")
            if model.decoder_a is model.decoder_b:
                raise failure(f"{name}: decoder_a and decoder_b are the same module",
                              "two decoders, one per domain", "one decoder under two names",
                              "build Decoder(n_components) twice")
            model.eval()
            for b in batch_sizes:
                _check_domains(model, images(b, gen), name)
            _check_swap_gradients(model, images(4, gen), name)


def _forward(model, x, domain: str, name: str):
    what = f"{name}.forward(x, {domain!r}) on x of shape {tuple(x.shape)}"
    with torch.no_grad():
        out = call(model, x, domain, what=what)
    shape = tuple(getattr(out, "shape", ()))
    return check_tensor_output(out, tuple(x.shape), what, image_hint(shape))


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    return tuple(a.shape) == tuple(b.shape) and float((a - b).abs().max()) <= SAME_ATOL


def _diff(got: torch.Tensor, expected: torch.Tensor) -> str:
    err = float((got.detach() - expected.detach()).abs().max()) if got.shape == expected.shape else math.inf
    return f"an output that differs by up to {fmt(err)}"


def _check_domains(model, x, name: str) -> None:
    out_a = _forward(model, x, "a", name)
    out_b = _forward(model, x, "b", name)
    with torch.no_grad():
        z = call(model.encoder, x, what=f"{name}.encoder on x of shape {tuple(x.shape)}")
        via_a = call(model.decoder_a, z, what=f"{name}.decoder_a")
        via_b = call(model.decoder_b, z, what=f"{name}.decoder_b")
        swapped = call(model.swap, x, what=f"{name}.swap(x) on x of shape {tuple(x.shape)}")
    shape = tuple(getattr(swapped, "shape", ()))
    check_tensor_output(swapped, tuple(x.shape), f"{name}.swap(x)", image_hint(shape))
    tried = f"{name} on x of shape {tuple(x.shape)} (eval mode)"
    for domain, out, mine, other in (("a", out_a, via_a, via_b), ("b", out_b, via_b, via_a)):
        if _same(out, mine):
            continue
        if _same(out_a, out_b):
            hint = "forward ignores `domain`: use decoder_a for 'a' and decoder_b for 'b'"
        elif _same(out, other):
            hint = (f"forward(x, {domain!r}) decodes with the other domain's decoder: "
                    f"domain {domain!r} is decoder_{domain}")
        else:
            hint = (f"domain {domain!r} does not go through self.encoder and decoder_{domain}: the "
                    f"encoder must be shared (one set of parameters serves both domains), not one "
                    f"encoder per domain")
        raise failure(f"{tried}: forward(x, {domain!r}) is not decoder_{domain}(encoder(x))",
                      f"decoder_{domain}(encoder(x))", _diff(out, mine), hint)
    if not _same(swapped, via_b):
        hint = ("swap decodes with decoder_a: the swap encodes an image of A and decodes it with "
                "decoder_b" if _same(swapped, via_a) else
                "swap(x_a) must be decoder_b(encoder(x_a)), with the shared encoder")
        raise failure(f"{tried}: swap(x) is not decoder_b(encoder(x))", "decoder_b(encoder(x))",
                      _diff(swapped, via_b), hint)


def _check_swap_gradients(model, x, name: str) -> None:
    model.train()
    parts = {p: [q for q in getattr(model, p).parameters() if q.requires_grad] for p in _PARTS}
    for part, params in parts.items():
        if not params:
            raise failure(f"{name}.{part}: has no trainable parameters", "layers with parameters",
                          f"{part}.parameters() is empty",
                          "create the layers in __init__ as attributes (e.g. nn.Sequential)")
    for domain in ("a", "b"):
        what = f"{name}.forward(x, {domain!r}) in train mode"
        out = call(model, x, domain, what=what)
        model.zero_grad()
        if not getattr(out, "requires_grad", False):
            raise failure(f"{what}: the output is cut off from the parameters",
                          "an output that requires grad", "requires_grad=False",
                          "do not use .detach(), .numpy(), .data or torch.no_grad() in forward")
        (out ** 2).sum().backward()
        for part in ("encoder", f"decoder_{domain}"):
            if not any(q.grad is not None and float(q.grad.abs().sum()) > 0 for q in parts[part]):
                raise failure(f"{what}: gradients do not reach {part}", "non-zero gradients",
                              "all zero or None",
                              "do not use .detach(), .numpy(), .data or torch.no_grad() in forward")
    model.zero_grad()
    model.eval()


# ---------------------------------------------------------------------------------------------
# The trained models, evaluated in stages (``autograder.checks.evaluation``):
#   classifiers: first: the two classifiers' logits of the test images (plain arrays);
#                measure: test accuracies and the gain, against the grader's labels.
#   swap:        first: ``encoder`` of the plain test images -> codes (plain arrays);
#                between: the codes; second: ``decoder_b`` and ``decoder_a`` on the codes only;
#                measure: the digit and style judges on the decoded images.
# ---------------------------------------------------------------------------------------------

def evaluation_data(root=None):
    """The MNIST train and test sets of the graded evaluation."""
    return mnist_sets(root)


_DIVERGED = "the training diverged or the weights are broken: lower the learning rate and train again"
_PRETRAINED, _SCRATCH = "pretrained Classifier", "scratch Classifier"
_WHAT_LOGITS = "trained {} on the MNIST test images"
_WHAT_ENCODE = "trained SwapAutoencoder.encoder on the MNIST test images"
_WHAT_DECODE = "trained SwapAutoencoder.{} on the codes of the test images"


def _test_images(data) -> dict:
    """The first stage's inputs: every (plain) test image."""
    return {"x_test": images_and_labels(data[1])[0]}


def _rows(fn, x: torch.Tensor, what: str, width: int | None, hint: str) -> np.ndarray:
    """``fn`` over ``x`` in batches: float32 tensors of (batch, width) rows, as one array."""
    outs = []
    for xb in batches(x):
        out = call(fn, _Tensor.clone(xb), what=what)
        shape = None if width is None else (len(xb), width)
        out = tensor_rows(out, what, len(xb), shape, hint)
        if out.dtype != _float32:
            raise failure(f"{what}: wrong dtype", "torch.float32", str(out.dtype),
                          "keep the model in float32 (no .double() or .half())")
        outs.append(np.array(_Tensor.numpy(_Tensor.cpu(_Tensor.detach(out))), dtype=np.float32))
    return np.concatenate(outs) if outs else np.zeros((0, width or 0), np.float32)


def _logits(models: dict, inputs: dict) -> dict:
    """First stage of the classifiers: the logits of both on the test images."""
    hint = "Classifier.forward must return the logits, (batch_size, n_classes) with n_classes = 10"
    return {f"{key}_logits": _rows(models[kind], inputs["x_test"], _WHAT_LOGITS.format(kind), 10, hint)
            for key, kind in (("pretrained", _PRETRAINED), ("scratch", _SCRATCH))}


def _finite(array: np.ndarray, what: str) -> np.ndarray:
    if not np.isfinite(array).all():
        raise failure(f"{what}: non-finite values", "finite values", "nan or inf", _DIVERGED)
    return array


def _measure_classifiers(first: dict, second: dict, data) -> dict:
    """Test accuracy of both classifiers (argmax of the logits against the grader's labels), and
    the gain of the pretrained one over the one trained from scratch."""
    y = labels_of(data[1])
    acc = {}
    for key, kind in (("pretrained", _PRETRAINED), ("scratch", _SCRATCH)):
        logits = _finite(checked(first, f"{key}_logits", len(y)), _WHAT_LOGITS.format(kind))
        if logits.ndim != 2 or logits.shape[1] != 10:
            raise failure(f"{_WHAT_LOGITS.format(kind)}: wrong output", "logits of shape (N, 10)",
                          f"shape {logits.shape}", "n_classes is 10")
        acc[key] = float((logits.argmax(1) == y).mean())
    return {"pretrained_accuracy": acc["pretrained"], "scratch_accuracy": acc["scratch"],
            "gain": acc["pretrained"] - acc["scratch"]}


def _swap_part(model, name: str):
    part = getattr(model, name, None)
    if not isinstance(part, nn.Module):
        raise failure(f"trained SwapAutoencoder: no module `{name}`", f"an nn.Module {name}",
                      type(part).__name__, "keep the attributes encoder, decoder_a and decoder_b")
    return part


def _encode(models: dict, inputs: dict) -> dict:
    """First stage of the swap: the shared encoder's codes of the plain test images."""
    encoder = _swap_part(models["SwapAutoencoder"], "encoder")
    return {"z": _rows(encoder, inputs["x_test"], _WHAT_ENCODE, None,
                       "the encoder must return codes of shape (batch_size, n_components)")}


def _codes(first: dict, data) -> dict:
    """The second stage's inputs, made by the grader: the codes, checked."""
    z = _finite(checked(first, "z"), _WHAT_ENCODE)
    if z.ndim != 2:
        raise failure(f"{_WHAT_ENCODE}: wrong output", "codes of shape (N, n_components)",
                      f"shape {z.shape}", "the encoder must return (batch_size, n_components)")
    return {"z": torch.from_numpy(np.ascontiguousarray(z, dtype=np.float32))}


def _decode(models: dict, inputs: dict) -> dict:
    """Second stage of the swap: ``decoder_b`` (the swaps) and ``decoder_a`` (the
    reconstructions) on the grader's codes only, as plain float32 arrays."""
    model = models["SwapAutoencoder"]
    out = {}
    for key, part in (("swap", "decoder_b"), ("recon_a", "decoder_a")):
        decoder = _swap_part(model, part)
        what = _WHAT_DECODE.format(part)
        z = inputs["z"]
        out[key] = _rows(decoder, z, what, None,
                         "the decoder must return images (batch_size, 1, 28, 28)").reshape(len(z), -1)
    return out


def _pool(x: torch.Tensor) -> np.ndarray:
    """The judges' features: 14x14 average-pooled pixels, clipped to [0, 1]."""
    return F.avg_pool2d(_Tensor.to(x, _float32).clamp(0, 1), 2).flatten(1).double().numpy()


def _fit_judges(x, y):
    from sklearn.linear_model import RidgeClassifier

    from data_tools.styles import bold

    plain, thick = _pool(x), _pool(bold(x))
    features = np.concatenate([plain, thick])
    digits = np.concatenate([y, y])
    styles = np.concatenate([np.zeros(len(plain)), np.ones(len(thick))])
    digit = RidgeClassifier(alpha=JUDGE_RIDGE).fit(features, digits)
    style = RidgeClassifier(alpha=JUDGE_RIDGE).fit(features, styles)
    return digit, style


def judges(trainset):
    """The digit judge and the style judge, fitted on ``trainset`` (once per process and data).

    Both are ridge-regression classifiers (closed form: deterministic and fast) on 14x14
    average-pooled pixels, fitted on (at most ``JUDGE_MAX_TRAIN``, a seeded subset of) the
    training images in both styles, plain and bold. The digit judge predicts the digit; the style
    judge predicts 1 for bold, 0 for plain.
    """
    x, y = images_and_labels(trainset)
    if len(x) > JUDGE_MAX_TRAIN:
        idx = np.sort(np.random.default_rng(JUDGE_SEED).choice(len(x), JUDGE_MAX_TRAIN, replace=False))
        x, y = x[torch.from_numpy(idx)], y[idx]
    return fitted_once("transfer judges", x, y, _fit_judges)


def judge(images_, labels, trainset) -> dict[str, float]:
    """Shares of ``images_`` (N, 1, 28, 28) whose digit the digit judge reads as ``labels``
    ("digit"), that the style judge calls bold ("bold"), and both at once ("bold_digit")."""
    digit, style = judges(trainset)
    features = _pool(torch.as_tensor(images_).reshape(-1, 1, 28, 28))
    right = digit.predict(features) == np.asarray(labels)
    thick = style.predict(features) == 1
    return {"digit": float(np.mean(right)), "bold": float(np.mean(thick)),
            "bold_digit": float(np.mean(right & thick))}


def _measure_swap(first: dict, second: dict, data) -> dict:
    """The judges on the swaps (decoder B) and on decoder A's reconstructions of the codes of
    the test images: ``swap_digit`` (the digit kept), ``swap_bold`` (bold and the digit kept),
    ``swap_bold_any`` (bold), ``recon_a_digit``, ``recon_a_bold``."""
    trainset, testset, _ = data
    y = labels_of(testset)
    scores = {}
    for key, part in (("swap", "decoder_b"), ("recon_a", "decoder_a")):
        out = _finite(checked(second, key, len(y)), _WHAT_DECODE.format(part))
        if out.shape[1:] != (28 * 28,):
            raise failure(f"{_WHAT_DECODE.format(part)}: wrong output", "images (N, 1, 28, 28)",
                          f"{out.shape[1]} values per image", image_hint(()))
        scores[key] = judge(torch.from_numpy(out).reshape(-1, 1, 28, 28), y, trainset)
    return {"swap_digit": scores["swap"]["digit"], "swap_bold": scores["swap"]["bold_digit"],
            "swap_bold_any": scores["swap"]["bold"], "recon_a_digit": scores["recon_a"]["digit"],
            "recon_a_bold": scores["recon_a"]["bold_digit"]}


def _data(trainset=None, testset=None):
    return mnist_evaluation(trainset, testset, "transfer models")


def prepare_judge(data) -> None:
    """In the judge's server, before it forks any judge (``grading/judge_preload.py``): fit the
    two judges on the evaluation's training images once, instead of once per judge."""
    judges(data[0])


#: The two few-label classifiers: their logits of the test images; accuracies measured by the
#: grader.
EVALUATION_CLASSIFIERS = Evaluation(
    name="transfer_classifiers", what="few-label classifiers", bars="transfer", data=_data,
    inputs=_test_images,
    first=Stage((_PRETRAINED, _SCRATCH), _logits,
                {"pretrained_logits": "x_test", "scratch_logits": "x_test"}),
    measure=_measure_classifiers)
#: The swap autoencoder: the encoder on the test images; the decoders (in a process of their own
#: during grading) on the codes only; the judges where no student code ran.
EVALUATION_SWAP = Evaluation(
    name="transfer_swap", what="SwapAutoencoder", bars="transfer", data=_data, inputs=_test_images,
    first=Stage(("SwapAutoencoder",), _encode, {"z": "x_test"}),
    between=_codes,
    second=Stage(("SwapAutoencoder",), _decode, {"swap": "z", "recon_a": "z"}),
    measure=_measure_swap, codes=Codes(("z",), NOTEBOOK.n_components))
EVALUATIONS = (EVALUATION_CLASSIFIERS, EVALUATION_SWAP)


_FACTORIES: dict = {}


def _classifier_class(Encoder, Classifier):
    """``n -> Classifier(Encoder(n), n)``, one function per pair of classes (so that the
    evaluation of the same classes is computed once per process, see ``cache``). Keyed by
    identity: in the judge the two names are placeholders, which must not be hashed."""
    key = (id(Encoder), id(Classifier))
    hit = _FACTORIES.get(key)
    if hit is not None and hit[0] is Encoder and hit[1] is Classifier:
        return hit[2]

    def build_classifier(n_components):
        encoder = build(Encoder, n_components, "Encoder")
        return _build_classifier(Classifier, encoder, n_components, None)
    build_classifier.__qualname__ = build_classifier.__name__ = "Classifier"
    if len(_FACTORIES) > 8:
        _FACTORIES.clear()
    _FACTORIES[key] = (Encoder, Classifier, build_classifier)
    return build_classifier


def classifier_results(Encoder, Classifier, n_components: int, *, trainset=None, testset=None,
                       pretrained_path: str = PRETRAINED_PATH, scratch_path: str = SCRATCH_PATH,
                       train_mode: bool = False) -> dict:
    """The graded numbers of the saved classifiers (``Classifier(Encoder(n), n)`` each),
    evaluated once per process, with ``source`` and ``bars``."""
    __tracebackhide__ = True  # noqa: F841
    factory = _classifier_class(Encoder, Classifier)
    return results(EVALUATION_CLASSIFIERS, n_components,
                   ((factory, _PRETRAINED, pretrained_path), (factory, _SCRATCH, scratch_path)),
                   (trainset, testset), train_mode=train_mode)


def swap_results(SwapAutoencoder, n_components: int, *, trainset=None, testset=None,
                 path: str = SWAP_PATH, train_mode: bool = False) -> dict:
    """The graded numbers of the saved SwapAutoencoder, evaluated once per process, with
    ``source`` and ``bars``."""
    __tracebackhide__ = True  # noqa: F841
    return results(EVALUATION_SWAP, n_components, ((SwapAutoencoder, "SwapAutoencoder", path),),
                   (trainset, testset), train_mode=train_mode)


def evaluate_transfer(encoder, pretrained, scratch, swap, trainset, testset) -> dict[str, float]:
    """Every graded number of the notebook's trained models (the stages of both evaluations in
    this process), and the judges' baselines (calibration): on the plain test images themselves
    (``identity_*``: no swap at all) and on their bold versions (``bold_*``: a perfect swap).
    ``encoder`` (the pretrained autoencoder's) is not graded by itself."""
    from data_tools.styles import bold

    data = (trainset, testset, None)
    result = {**run(EVALUATION_CLASSIFIERS, {_PRETRAINED: pretrained, _SCRATCH: scratch}, data),
              **run(EVALUATION_SWAP, {"SwapAutoencoder": swap}, data)}
    x, y = images_and_labels(testset)
    ident, perfect = judge(x, y, trainset), judge(bold(x), y, trainset)
    result.update(identity_digit=ident["digit"], identity_bold=ident["bold_digit"],
                  bold_digit=perfect["digit"], bold_bold=perfect["bold_digit"])
    return result


#: Correct alternatives of the solution, as edits of its source (``(solution text, other
#: text)``): calibrated with ``python -m autograder calibrate transfer --variant NAME`` and
#: graded in tests/test_bestiary_e2e.py. ``mlp``: MLP encoders and decoders instead of
#: convolutional ones; ``frozen``: both classifiers on frozen encoders (only the heads learn).
_MLP = (
    ("""            nn.Conv2d(1, 16, kernel_size=3, stride=2, padding=1), nn.ReLU(),   # (B, 16, 14, 14)
            nn.Conv2d(16, 32, kernel_size=3, stride=2, padding=1), nn.ReLU(),  # (B, 32, 7, 7)
            nn.Flatten(),                                                      # (B, 1568)
            nn.Linear(32 * 7 * 7, n_components),                               # (B, n_components)""",
     "            nn.Flatten(), nn.Linear(28 * 28, 256), nn.ReLU(), nn.Linear(256, n_components),"),
    ("""            nn.Linear(n_components, 32 * 7 * 7), nn.ReLU(),                    # (B, 1568)
            nn.Unflatten(1, (32, 7, 7)),                                       # (B, 32, 7, 7)
            nn.ConvTranspose2d(32, 16, kernel_size=4, stride=2, padding=1), nn.ReLU(),  # (B, 16, 14, 14)
            nn.ConvTranspose2d(16, 1, kernel_size=4, stride=2, padding=1),     # (B, 1, 28, 28)
            nn.Sigmoid(),                                                      # pixels in [0, 1]""",
     "            nn.Linear(n_components, 256), nn.ReLU(), nn.Linear(256, 28 * 28), nn.Sigmoid(),\n"
     "            nn.Unflatten(1, (1, 28, 28)),"),
)
_FROZEN = (("    classifier.to(device).train()\n",
            "    classifier.to(device).train()\n"
            "    classifier.encoder.requires_grad_(False)  # frozen: only the head learns\n"),)
VARIANTS = {"mlp": _MLP, "frozen": _FROZEN, "mlp_frozen": _MLP + _FROZEN}


#: Calibration only: the classifiers of ``evaluate_baselines``, trained like the notebook's
#: (full-batch Adam on the n_labels images per class of the seed, the notebook's steps; the head
#: at ALTERNATIVE_LR).
ALTERNATIVE_STEPS = 300
ALTERNATIVE_LR = 2e-3


def evaluate_baselines(workdir, trainset, testset) -> dict[str, float]:
    """Calibration only: what the notebook's comparison gives with other choices, from the run's
    pretrained encoder (``PRETRAIN_PATH``) and the labels ``few_label_subset`` of the source notebook draws
    with the run's seed: ``frozen_*``, both encoders frozen (the pretrained one and a fresh
    one) under the notebook's head, and their gain; ``full_rate_*``, a fresh encoder trained
    at the head's rate instead of a tenth of it (a stronger baseline than the notebook's), and
    the gain of the run's pretrained classifier over it."""
    import contextlib
    import io
    import json
    import re
    from pathlib import Path

    from data_tools.utils import load_model

    from ..grading.course import definitions

    workdir = Path(workdir)
    run = workdir / f"{NOTEBOOK.name}.ipynb"  # the notebook of the run (a variant's, edited)
    ns = definitions(run)
    cells = json.loads(run.read_text())["cells"]
    text = next("".join(c["source"]) for c in cells if c["cell_type"] == "code"
                and re.search(r"^seed = \d+", "".join(c["source"]), re.M))
    seed = int(re.search(r"^seed = (\d+)", text, re.M).group(1))
    n_labels = int(re.search(r"^n_labels = (\d+)", text, re.M).group(1))
    n = NOTEBOOK.n_components
    Encoder, Classifier = ns["Encoder"], ns["Classifier"]
    x_train, y_train = images_and_labels(trainset)
    idx = ns["few_label_subset"](torch.as_tensor(y_train), n_labels, seed)
    x, y = x_train[idx], torch.as_tensor(y_train)[idx]
    x_test, y_test = images_and_labels(testset)

    def loaded(model, path):
        with contextlib.redirect_stdout(io.StringIO()):
            return load_model(model, workdir / path)

    def accuracy(clf) -> float:
        clf.eval()
        with torch.no_grad():
            return float((clf(x_test).argmax(1).numpy() == y_test).mean())

    def train(clf, encoder_lr: float) -> float:
        body = [p for p in clf.encoder.parameters() if p.requires_grad]
        ids = {id(p) for p in clf.encoder.parameters()}
        head = [p for p in clf.parameters() if id(p) not in ids]
        groups = [{"params": head, "lr": ALTERNATIVE_LR}] + (
            [{"params": body, "lr": encoder_lr}] if body and encoder_lr else [])
        optimizer = torch.optim.Adam(groups)
        clf.train()
        for _ in range(ALTERNATIVE_STEPS):
            loss = F.cross_entropy(clf(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        return accuracy(clf)

    pretrained = accuracy(loaded(Classifier(Encoder(n), n), PRETRAINED_PATH))
    with _isolated_rng(1000 + seed):
        frozen = {name: train(Classifier(encoder.requires_grad_(False), n), 0.0) for name, encoder in
                  (("pretrained", loaded(Encoder(n), PRETRAIN_PATH)), ("scratch", Encoder(n)))}
        full_rate = train(Classifier(Encoder(n), n), ALTERNATIVE_LR)
    return {"frozen_pretrained_accuracy": frozen["pretrained"],
            "frozen_scratch_accuracy": frozen["scratch"],
            "frozen_gain": frozen["pretrained"] - frozen["scratch"],
            "full_rate_accuracy": full_rate, "gain_over_full_rate": pretrained - full_rate}


def load_trained(Encoder, Classifier, SwapAutoencoder, n_components: int):
    """Every saved model of the notebook, loaded: (encoder, pretrained, scratch, swap)."""
    __tracebackhide__ = True  # noqa: F841
    factory = _classifier_class(Encoder, Classifier)
    return load_models("transfer models", n_components, (Encoder, "Encoder", PRETRAIN_PATH),
                       (factory, _PRETRAINED, PRETRAINED_PATH), (factory, _SCRATCH, SCRATCH_PATH),
                       (SwapAutoencoder, "SwapAutoencoder", SWAP_PATH))


def pretrained_line(result: dict) -> str:
    bars = result["bars"]
    return graded_line("test accuracy of the pretrained few-label classifier",
                       result["pretrained_accuracy"], bars["pretrained_accuracy"],
                       bars.get("reference_pretrained"), result["source"])


def gain_line(result: dict) -> str:
    bars = result["bars"]
    return (graded_line("test accuracy of the classifier from scratch", result["scratch_accuracy"],
                        bars["scratch_accuracy"], bars.get("reference_scratch"), result["source"])
            + "\n" + graded_line("gain of pretraining (pretrained minus scratch test accuracy)",
                        result["gain"], bars["gain"], bars.get("reference_gain"), result["source"])
            + f"; pretrained {result['pretrained_accuracy']:.3f}, scratch "
              f"{result['scratch_accuracy']:.3f}")


def swap_digit_line(result: dict) -> str:
    bars = result["bars"]
    return graded_line("swapped test digits that keep their digit", result["swap_digit"],
                       bars["swap_digit"], bars.get("reference_swap_digit"), result["source"],
                       models="model")


def swap_style_line(result: dict) -> str:
    bars = result["bars"]
    return graded_line("swapped test digits in style B (bold, digit kept)", result["swap_bold"],
                       bars["swap_bold"], bars.get("reference_swap_bold"), result["source"],
                       models="model")


_CLASSIFIER_HINT = ("train the classifier on the few labels until its training loss is small, "
                    "start it from the pretrained encoder (a copy of the autoencoder's trained "
                    f"encoder weights, {PRETRAIN_PATH}), and save it as {{path}} after training")


def check_trained_pretrained(Encoder, Classifier, n_components: int, *, trainset=None,
                             testset=None, pretrained_path: str = PRETRAINED_PATH,
                             scratch_path: str = SCRATCH_PATH) -> None:
    """The pretrained few-label classifier's test accuracy passes the calibrated bar."""
    kwargs = dict(trainset=trainset, testset=testset, pretrained_path=pretrained_path,
                  scratch_path=scratch_path)
    result = classifier_results(Encoder, Classifier, n_components, **kwargs)
    require_bar(result, "pretrained_accuracy", reference="reference_pretrained",
                what=f"test accuracy of the pretrained few-label classifier ({pretrained_path})",
                problem="too low", hint=_CLASSIFIER_HINT.format(path=pretrained_path), generic=True,
                train_mode=lambda: classifier_results(Encoder, Classifier, n_components,
                                                       train_mode=True, **kwargs))
    print(pretrained_line(result))


def check_trained_gain(Encoder, Classifier, n_components: int, *, trainset=None, testset=None,
                       pretrained_path: str = PRETRAINED_PATH, scratch_path: str = SCRATCH_PATH) -> None:
    """The pretrained classifier beats the one trained from scratch by the calibrated margin."""
    kwargs = dict(trainset=trainset, testset=testset, pretrained_path=pretrained_path,
                  scratch_path=scratch_path)
    result = classifier_results(Encoder, Classifier, n_components, **kwargs)
    # A gain over a classifier that was never trained means nothing: the comparison needs both.
    require_bar(result, "scratch_accuracy", reference="reference_scratch",
                what=f"test accuracy of the classifier trained from scratch ({scratch_path}), "
                     f"the baseline of the gain",
                problem="too low for a trained classifier",
                hint="train the classifier from scratch too, on the same labels with the same "
                     f"budget as the pretrained one, and save it as {scratch_path} after training",
                generic=True, train_mode=lambda: classifier_results(Encoder, Classifier, n_components,
                                                                    train_mode=True, **kwargs))
    bar = result["bars"]["gain"]
    if result["gain"] < -max(bar, 0.02):
        hint = ("the classifier from scratch is the better one: are the two files swapped? "
                f"{pretrained_path} must start from the pretrained encoder, {scratch_path} "
                "from a fresh Encoder(n_components)")
    elif result["pretrained_accuracy"] < 0.2:
        hint = ("the pretrained classifier is at chance: save it after training, and build it "
                f"on the encoder loaded from {PRETRAIN_PATH}")
    else:
        hint = ("train both on the same labels (few_label_subset with the same seed) with the "
                "same budget; start the pretrained one from a copy of the autoencoder's TRAINED "
                f"encoder (load {PRETRAIN_PATH} after pretraining, not a fresh Encoder), "
                "fine-tune it gently (a smaller learning rate for the encoder than for the head) "
                "or keep it frozen (an MLP encoder keeps its pretraining only when frozen), and "
                "put a normalisation (nn.LayerNorm) before the linear head")
    require_bar(result, "gain", reference="reference_gain",
                what="test accuracy of the pretrained classifier minus that of the classifier "
                     "trained from scratch on the same labels",
                problem="too small a gain",
                got=f"{result['gain']:.3f} (pretrained {result['pretrained_accuracy']:.3f}, "
                    f"scratch {result['scratch_accuracy']:.3f})",
                hint=hint, generic=False, train_mode=lambda: result)
    print(gain_line(result))


def check_trained_swap_digit(SwapAutoencoder, n_components: int, *, trainset=None, testset=None,
                             path: str = SWAP_PATH) -> None:
    """Swapped test digits keep their identity for a calibrated share of the images."""
    kwargs = dict(trainset=trainset, testset=testset, path=path)
    result = swap_results(SwapAutoencoder, n_components, **kwargs)
    require_bar(result, "swap_digit", reference="reference_swap_digit", models="model",
                what="swaps of the MNIST test images into style B (decoder_b on the codes): share "
                     "whose digit the grader's digit judge reads as the source digit",
                problem="too low",
                got=f"{result['swap_digit']:.3f} (decoder A's reconstructions: "
                    f"{result['recon_a_digit']:.3f})",
                hint="train longer; check that both domains go through the one shared encoder, "
                     "that each decoder reconstructs the clean image of its own domain from a "
                     f"corrupted input, and that {path} is saved after training",
                generic=True, train_mode=lambda: swap_results(SwapAutoencoder, n_components,
                                                              train_mode=True, **kwargs))
    print(swap_digit_line(result))


def check_trained_swap_style(SwapAutoencoder, n_components: int, *, trainset=None, testset=None,
                             path: str = SWAP_PATH) -> None:
    """Swapped test digits are judged bold (style B) for a calibrated share of the images."""
    kwargs = dict(trainset=trainset, testset=testset, path=path)
    result = swap_results(SwapAutoencoder, n_components, **kwargs)
    if result["recon_a_bold"] >= result["bars"]["swap_bold"] > result["swap_bold"]:
        hint = ("decoder A draws the digits bold and decoder B does not: are the domains "
                "swapped in training? decoder_a learns the plain images of domain_a, decoder_b "
                "the bold images of domain_b")
    else:
        hint = ("decoder_b must be trained on the bold images of domain B only and decoder_a "
                "on the plain images of A only; corrupt the inputs so that the code cannot "
                "carry the stroke width (jitter_strokes and noise), train longer, and save "
                f"{path} after training")
    require_bar(result, "swap_bold", reference="reference_swap_bold", models="model",
                what="swaps of the MNIST test images into style B (decoder_b on the codes): share "
                     "that the grader's style judge calls bold AND whose digit the digit judge "
                     "reads correctly",
                problem="too low",
                got=f"{result['swap_bold']:.3f} (bold whatever the digit: "
                    f"{result['swap_bold_any']:.3f}; decoder A's reconstructions: "
                    f"{result['recon_a_bold']:.3f})",
                hint=hint, generic=True,
                train_mode=lambda: swap_results(SwapAutoencoder, n_components, train_mode=True,
                                                **kwargs))
    print(swap_style_line(result))


# Decided by the judge on the recorded calls during grading (``recorded``).
check_few_label_subset = replayable("transfer.check_few_label_subset")(check_few_label_subset)

# A failed check shows the student their own call and the message, no frame of the grader.
for _name in ("check_few_label_subset", "check_encoder", "check_decoder", "check_classifier",
              "check_swap_autoencoder", "check_trained_pretrained", "check_trained_gain",
              "check_trained_swap_digit", "check_trained_swap_style"):
    globals()[_name] = student_facing(globals()[_name])
del _name
