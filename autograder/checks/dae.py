"""Checks for the denoising autoencoder notebook (dae.ipynb).

- :func:`check_dae`: ``DAE(n_components)`` is an nn.Module whose ``forward(x)`` returns the
  tuple ``(z, denoised_x)`` of float32, finite tensors of shapes (B, n_components) and
  (B, 1, 28, 28), for several batch sizes (eval mode) and code sizes; both outputs depend on
  the input; the denoised output is not the input itself; gradients reach the parameters, and
  those of the denoised output reach the encoder (the parameters that z depends on).
  A denoised output that is never negative (the gate ``sigmoid(f)`` returned instead of
  ``x * sigmoid(f)``) prints a warning naming the fix; the shapes are right, so the check passes.
- :func:`check_trained_dae_probe` and :func:`check_trained_dae_denoising` (one grade cell each):
  on the trained, loaded model in eval() mode and the seeded varianceMNIST evaluation sets, a
  linear probe on the codes passes a calibrated bar, and the denoised output is clearly closer
  to the clean varianceMNIST sample than the corrupted input is. Both read one evaluation per
  process (:func:`trained_results`); :func:`report_trained` prints every graded number beside
  its bar; :func:`check_trained_dae` runs both.

"Clean" means the varianceMNIST sample x = image * eps *before* the corruption
x_tilde = x + SIGMA_N * eps'; the denoiser can at best recover x, never the MNIST image.
"""
from __future__ import annotations

import torch

from ..manifest import notebook
from .core import call, failure, fmt, student_facing
from .data import eval_seeds, seeded_variance, variance_evaluation, variance_sets
from .evaluation import (
    Codes,
    Evaluation,
    Stage,
    apply,
    image_inputs,
    images_and_labels,
    load_models,
    probe_codes,
    report,
    require_bar,
    results,
    run,
)
from .evidence import checked
from .modules import (
    LOOKED_AGAIN,
    REINIT_SEED,
    Output,
    Spec,
    code,
    forward,
    image_hint,
    look_again,
    module_check,
    split_outputs,
)
from .thresholds import graded_line

__all__ = ["check_dae", "check_trained_dae", "check_trained_dae_probe",
           "check_trained_dae_denoising", "evaluate_dae", "evaluation_data", "load_trained",
           "report_trained", "trained_results"]

# Own references, taken at import time (a notebook may rebind the public names later).
_rand = torch.rand
_randn = torch.randn
_equal = torch.equal
_grad = torch.autograd.grad

NOTEBOOK = notebook("dae", "autoencoders")
(DAE_PATH,) = NOTEBOOK.weights
#: Standard deviation of the corruption noise in the graded evaluation (the notebook's default).
SIGMA_N = 0.2
#: Seeds of the evaluation sets (course manifest): the varianceMNIST noise of train and test
#: item i, and the corruption noise of test item i, are fixed by (seed, i). While grading, the
#: seeds are derived from these and the run's secret (``data.eval_seeds``, ``draws``).
EVAL_SEED_TRAIN, EVAL_SEED_TEST = NOTEBOOK.eval_seeds
#: Batch size of the evaluation passes.
EVAL_BATCH = 500


def noisy_images(batch_size: int, generator: torch.Generator) -> torch.Tensor:
    """Corrupted varianceMNIST-like inputs: u * eps + SIGMA_N * eps', u ~ U(0, 1), (B, 1, 28, 28)."""
    shape = (batch_size, 1, 28, 28)
    return (_rand(shape, generator=generator) * _randn(shape, generator=generator)
            + SIGMA_N * _randn(shape, generator=generator))


def _denoised_hint(n, got_shape: tuple) -> str:
    batch_size = got_shape[0] if got_shape else 0
    if got_shape == (batch_size, batch_size, 28, 28) and batch_size > 1:
        return ("a (B, 28, 28) tensor times a (B, 1, 28, 28) tensor broadcasts to (B, B, 28, 28): "
                "give the gate the channel dimension, e.g. .reshape(-1, 1, 28, 28), before "
                "multiplying it with x")
    return image_hint(got_shape)


GATE_HINT = ("forward seems to return the gate sigmoid(f) itself, which lies in (0, 1); the "
             "denoised images are the gate times the corrupted input: end forward with "
             "`denoised_x = x * torch.sigmoid(f)` and `return z, denoised_x` (and train with "
             "the loss MSE(denoised_x, x) on that output)")


def _warn_if_gate(model, n: int, gen: torch.Generator) -> None:
    """Print a warning when denoised_x is never negative although the input is signed."""
    x = noisy_images(16, gen)
    what = f"DAE(n_components={n}) on corrupted inputs x of shape {tuple(x.shape)} with negative entries"
    with torch.no_grad():
        _, denoised = split_outputs(forward(model, x, n, what), DAE_SPEC, 16, n, what)
    low, high = float(denoised.min()), float(denoised.max())
    if low < 0:
        return
    hint = GATE_HINT if high <= 1 else (
        "do not end forward with a ReLU, abs or square: varianceMNIST samples are signed; "
        "denoised_x = x * torch.sigmoid(f) keeps the sign of x")
    print(f"WARNING {what}: denoised_x is never negative\n"
          f"  expected denoised_x with the signs of x (varianceMNIST samples and their "
          f"corruption are signed)\n"
          f"  got      denoised_x in [{low:.3f}, {high:.3f}] for x in "
          f"[{float(x.min()):.3f}, {float(x.max()):.3f}]\n"
          f"  hint: {hint}\n"
          f"  (the shapes are right, so this test passes; the denoising bar of the trained "
          f"model will fail)")


def _swapped(outs, batch_size: int, n, what: str) -> None:
    z_shape, d_shape = (tuple(getattr(t, "shape", ())) for t in outs)
    if len(z_shape) == 4 and len(d_shape) == 2:
        raise failure(f"{what}: the two outputs are in the wrong order",
                      f"(z, denoised_x) with shapes ({batch_size}, n_components) and "
                      f"({batch_size}, 1, 28, 28)", f"shapes {z_shape} and {d_shape}",
                      "the order is swapped: return the code first and the denoised images "
                      "second, `return z, denoised_x`")


def _not_identity_and_trainable_codes(model, n: int, gen: torch.Generator) -> None:
    """denoised_x is not the input itself (and, as a warning, not the gate alone), and its
    gradients reach the encoder (the layers z depends on), so that training shapes the codes."""
    _warn_if_gate(model, n, gen)
    x = noisy_images(2, gen)
    what = f"DAE(n_components={n}) on x of shape {tuple(x.shape)} (eval mode)"
    with torch.no_grad():
        _, denoised = split_outputs(forward(model, x, n, what), DAE_SPEC, 2, n, what)
    if _equal(denoised, x):
        raise failure(f"{what}: denoised_x is the input x itself",
                      "the output of the decoder", "denoised_x equal to x",
                      "compute denoised_x from the code z, e.g. x * sigmoid(decoder(z))")
    model.train()
    what = f"DAE(n_components={n}) on x of shape (4, 1, 28, 28) (train mode)"
    z, denoised = split_outputs(forward(model, noisy_images(4, gen), n, what), DAE_SPEC, 4, n, what)
    params = [p for p in model.parameters() if p.requires_grad]
    if not (z.requires_grad and denoised.requires_grad and params):
        model.eval()
        return  # the gradient step of the module check names a detached output
    reach = _code_gradient(model, z, denoised, what)
    if reach == "zero":
        # Zero gradients through the code may come from a ReLU that is dead at initialisation:
        # look again on larger and negated inputs and fresh initialisations before accusing.
        wake = torch.Generator().manual_seed(REINIT_SEED)

        def probe(m, scale, left):
            x = scale * noisy_images(4, wake)
            outs = split_outputs(forward(m, x, n, what), DAE_SPEC, 4, n, what)
            return left if _code_gradient(m, *outs, what) == "reaches" else ()

        reach = "zero" if look_again(model, ("denoised_x",), probe) else "reaches"
    model.eval()
    if reach in ("zero", "cut"):
        raise failure(f"DAE(n_components={n}): denoised_x does not depend on the code z",
                      "gradients of denoised_x that reach the encoder (the layers computing z)",
                      "all zero or None" if reach == "cut" else f"all zero ({LOOKED_AGAIN})",
                      "compute denoised_x from z (decoder(z)), and do not .detach() z: "
                      "otherwise training never shapes the codes")


def _code_gradient(model, z, denoised, what: str) -> str:
    """Whether gradients of denoised_x reach the encoder (the parameters that z depends on):
    "reaches" (some is nonzero), "zero" (all zero, some not None), "cut" (all None: the encoder
    is not in the graph of denoised_x), or "" when there is no encoder to reach (z has no
    nonzero gradient, or an output is cut off from the parameters)."""
    params = [p for p in model.parameters() if p.requires_grad]
    if not (z.requires_grad and denoised.requires_grad and params):
        return ""
    z_grads = call(_grad, (z ** 2).sum(), params, retain_graph=True, allow_unused=True,
                   what=f"{what}: backward pass from z")
    encoder = [p for p, g in zip(params, z_grads) if g is not None and float(g.abs().sum()) > 0]
    if not encoder:
        return ""
    d_grads = call(_grad, (denoised ** 2).sum(), encoder, allow_unused=True,
                   what=f"{what}: backward pass from denoised_x")
    if all(g is None for g in d_grads):
        return "cut"
    return "reaches" if any(g is not None and float(g.abs().sum()) > 0 for g in d_grads) else "zero"


DAE_SPEC = Spec(
    "DAE", "x", lambda gen, b, n: noisy_images(b, gen),
    (code("z"), Output("denoised_x", lambda b, n: (b, 1, 28, 28), _denoised_hint)),
    single_hint=lambda shape: ("forward must return both the code and the denoised images: "
                               "`return z, denoised_x`"),
    inspect=_swapped, extra=_not_identity_and_trainable_codes)


check_dae = student_facing(module_check(
    DAE_SPEC, "DAE(n_components) maps (B, 1, 28, 28) inputs to (z, denoised_x), float32 tensors of "
    "shapes (B, n_components) and (B, 1, 28, 28), both depending on the input, trainable end to end."))


# --------------------------------------------------------------------------- trained model


def evaluation_data(root=None):
    """The seeded varianceMNIST train and test sets of the graded evaluation."""
    return variance_sets(NOTEBOOK.eval_seeds, root)


def _forward(model, x: torch.Tensor, what: str):
    return split_outputs(call(model, x, what=what), DAE_SPEC, len(x), None, what)


def _noisy(x: torch.Tensor, testset) -> torch.Tensor:
    """x_tilde = x + SIGMA_N * eps' of the test samples, eps' seeded by (eval_seed, index)."""
    from data_tools.variance import CORRUPTION_STREAM, seeded_normal

    return x + SIGMA_N * seeded_normal(testset.eval_seed, list(range(len(x))), stream=CORRUPTION_STREAM)


def _encode(models: dict, inputs: dict) -> dict:
    model = models["DAE"]
    enc = lambda x: _forward(model, x, "trained DAE on varianceMNIST images")[0]  # noqa: E731
    what = "trained DAE on varianceMNIST images"
    return {"z_train": apply(enc, inputs["x_train"], what), "z_test": apply(enc, inputs["x_test"], what)}


def _corrupted(first: dict, data) -> dict:
    _, testset, _ = data
    return {"x_tilde": _noisy(images_and_labels(testset)[0], testset)}


def _denoise(models: dict, inputs: dict) -> dict:
    model = models["DAE"]
    den = lambda x: _forward(model, x, "trained DAE on corrupted varianceMNIST images")[1]  # noqa: E731
    return {"denoised": apply(den, inputs["x_tilde"], "trained DAE on corrupted varianceMNIST images")}


def _measure_first(first: dict, data) -> dict:
    """What the codes of the clean samples decide alone: the probe accuracy."""
    return {"probe_accuracy": probe_codes(first, data, "trained DAE on the varianceMNIST images")}


def _measure(first: dict, second: dict, data) -> dict:
    """The numbers of :func:`evaluate_dae` from the recorded codes and denoised images."""
    accuracy = probe_codes(first, data, "trained DAE on the varianceMNIST images")
    testset = data[1]
    x = images_and_labels(testset)[0]
    d = torch.from_numpy(checked(second, "denoised", len(x))).double().reshape(len(x), -1)
    x64 = x.double().reshape(len(x), -1)
    xt = _noisy(x, testset).double().reshape(len(x), -1)
    err_denoised = float(((d - x64) ** 2).sum())
    err_noisy = float(((xt - x64) ** 2).sum())
    err_gate = float(((xt * d - x64) ** 2).sum())
    count = x64.numel()
    mse_denoised, mse_noisy = err_denoised / count, err_noisy / count
    return {"probe_accuracy": accuracy, "mse_denoised": mse_denoised, "mse_noisy": mse_noisy,
            "denoise_ratio": mse_denoised / mse_noisy, "gate_ratio": err_gate / err_noisy,
            "out_min": float(d.min()), "out_max": float(d.max())}


def _data(trainset=None, testset=None):
    return variance_evaluation(trainset, testset, NOTEBOOK.eval_seeds, "DAE")


#: The evaluation of the saved DAE: its codes of the clean samples, and (in a process of its
#: own during grading, which never sees a clean test sample) its output for the corrupted ones.
EVALUATION = Evaluation(
    name="dae", what="DAE", bars="dae", data=_data, inputs=image_inputs,
    first=Stage(("DAE",), _encode, {"z_train": "x_train", "z_test": "x_test"}),
    between=_corrupted,
    second=Stage(("DAE",), _denoise, {"denoised": "x_tilde"}),
    measure=_measure, codes=Codes(("z_train", "z_test"), NOTEBOOK.n_components),
    measure_first=_measure_first)
EVALUATIONS = (EVALUATION,)


def evaluate_dae(model, trainset, testset, *, train_mode: bool = False) -> dict[str, float]:
    """Probe accuracy of the codes and denoising errors of a trained DAE.

    Both sets are made seeded varianceMNIST sets (see ``data.seeded_variance``). The codes are those of the
    varianceMNIST samples x; the denoising errors compare, on the test set, the output for
    x_tilde = x + SIGMA_N * eps' and x_tilde itself with the clean sample x. The model is put
    in eval() mode first (``train_mode=True``: left in train mode, for a hint).

    Returns
    -------
    dict with ``probe_accuracy``, ``mse_denoised`` and ``mse_noisy`` (means over pixels), and
    ``denoise_ratio`` = mse_denoised / mse_noisy (1: no better than the input, 0: perfect);
    ``out_min`` and ``out_max``, the range of the denoised outputs, and ``gate_ratio``, the
    ratio that ``x_tilde * output`` would reach (what a model returning the gate would denoise).
    """
    train_seed, test_seed = eval_seeds(NOTEBOOK.eval_seeds)
    trainset = seeded_variance(trainset, train_seed, "trainset", "DAE")
    testset = seeded_variance(testset, test_seed, "testset", "DAE")
    return run(EVALUATION, {"DAE": model}, (trainset, testset, None), train_mode=train_mode)


def load_trained(DAE, n_components: int, path: str = DAE_PATH):
    """Build DAE(n_components) and load the saved weights; a problem becomes a CheckFailure."""
    __tracebackhide__ = True  # noqa: F841
    (model,) = load_models("DAE", n_components, (DAE, "DAE", path))
    return model


def trained_results(DAE, n_components: int, *, trainset=None, testset=None,
                    path: str = DAE_PATH, train_mode: bool = False) -> dict:
    """The graded numbers of the saved DAE (evaluated once per process, see ``cache``): the
    dict of :func:`evaluate_dae` with ``source`` and ``bars``. The model is evaluated in eval()
    mode (``train_mode=True``: in train mode, for the hint of a failed bar)."""
    __tracebackhide__ = True  # noqa: F841
    return results(EVALUATION, n_components, ((DAE, "DAE", path),), (trainset, testset),
                   train_mode=train_mode)


def probe_line(result: dict) -> str:
    """The graded probe accuracy beside its bar."""
    bars = result["bars"]
    return graded_line("linear probe accuracy on the test codes", result["probe_accuracy"],
                       bars["probe_accuracy"], bars.get("reference_accuracy"), result["source"],
                       models="model")


def denoising_line(result: dict) -> str:
    """The graded denoising error ratio beside its bar."""
    bars = result["bars"]
    return graded_line("denoising error ratio MSE(denoised, x) / MSE(x_tilde, x) on the test set",
                       result["denoise_ratio"], bars["denoise_ratio"], bars.get("reference_ratio"),
                       result["source"], op="<=", models="model")


def report_trained(DAE, n_components: int, *, trainset=None, testset=None,
                   path: str = DAE_PATH) -> dict:
    """Print every graded number of the saved DAE beside its bar (never fails a bar)."""
    __tracebackhide__ = True  # noqa: F841
    return report(lambda: trained_results(DAE, n_components, trainset=trainset, testset=testset,
                                          path=path), probe_line, denoising_line)


def _denoise_hint(result: dict, bar: float) -> str:
    ratio = result["denoise_ratio"]
    if result["out_min"] >= 0:
        if result["out_max"] <= 1 and result["gate_ratio"] <= bar:
            return (f"{GATE_HINT}; x_tilde * (your output) has the error ratio "
                    f"{result['gate_ratio']:.3f}, which passes")
        if result["out_max"] <= 1:
            return GATE_HINT
        return ("denoised_x is never negative, but varianceMNIST samples are signed: do not "
                "end forward with a ReLU, abs or square; denoised_x = x * torch.sigmoid(f)")
    if 0.9 <= ratio <= 1.1:
        return ("the output is about as noisy as the input: train on corrupted inputs, "
                "z, denoised_x = dae(corrupt(x, sigma_n)), with the loss MSE(denoised_x, x) "
                "against the clean x (not against the corrupted input)")
    if ratio > 1.1:
        return ("the output is farther from the clean sample than the noisy input: check that "
                "the loss compares denoised_x with the clean x, and train longer; the output "
                "layer x_tilde * sigmoid(...) starts close to the input")
    return "train longer (more epochs), and save the weights after training"


@student_facing
def check_trained_dae_denoising(DAE, n_components: int, *, trainset=None, testset=None,
                                path: str = DAE_PATH) -> None:
    """The saved DAE (eval mode) denoises the seeded varianceMNIST test set within the bar."""
    kwargs = dict(trainset=trainset, testset=testset, path=path)
    result = trained_results(DAE, n_components, **kwargs)
    hint = _denoise_hint(result, result["bars"]["denoise_ratio"])
    require_bar(result, "denoise_ratio", op="<=", reference="reference_ratio", models="model",
                what=f"denoising the seeded varianceMNIST test set corrupted with sigma_n = {SIGMA_N}",
                problem="MSE(denoised_x, clean x) / MSE(x_tilde, clean x) too high",
                got=(f"{result['denoise_ratio']:.3f} (MSE {fmt(result['mse_denoised'])} vs "
                     f"{fmt(result['mse_noisy'])} for the noisy input; denoised_x in "
                     f"[{result['out_min']:.3f}, {result['out_max']:.3f}])"),
                hint=hint, generic="train longer" in hint,
                train_mode=lambda: trained_results(DAE, n_components, train_mode=True, **kwargs))
    print(denoising_line(result))


@student_facing
def check_trained_dae_probe(DAE, n_components: int, *, trainset=None, testset=None,
                            path: str = DAE_PATH) -> None:
    """A linear probe on the saved DAE's codes (eval mode) passes the accuracy bar."""
    kwargs = dict(trainset=trainset, testset=testset, path=path)
    result = trained_results(DAE, n_components, **kwargs)
    no_noise = result["bars"].get("no_noise_accuracy")
    without = (f" (the same network trained without corruption scores about {no_noise:.2f})"
               if no_noise else "")
    require_bar(result, "probe_accuracy", reference="reference_accuracy", models="model",
                what="linear probe on the trained DAE's codes of the seeded varianceMNIST test set",
                problem="accuracy too low", generic=True,
                hint=("train longer, check that the model is trained on corrupt(x, sigma_n) with "
                      f"sigma_n > 0{without}, and save the weights after training; on varianceMNIST "
                      "a convolutional encoder (as suggested) learns much better codes than an MLP"),
                train_mode=lambda: trained_results(DAE, n_components, train_mode=True, **kwargs))
    print(probe_line(result))


@student_facing
def check_trained_dae(DAE, n_components: int, *, trainset=None, testset=None,
                      path: str = DAE_PATH) -> None:
    """Both bars of the saved DAE: the denoising ratio, then the probe."""
    check_trained_dae_denoising(DAE, n_components, trainset=trainset, testset=testset, path=path)
    check_trained_dae_probe(DAE, n_components, trainset=trainset, testset=testset, path=path)
