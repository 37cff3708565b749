"""Checks for the bottleneck autoencoder notebook (ae.ipynb).

- :func:`check_encoder` / :func:`check_decoder`: construction with ``n_components``, output
  type, dtype and shape over several batch sizes and code sizes, finite values, input
  dependence, gradients reaching the parameters.
- :func:`check_trained_ae_probe` and :func:`check_trained_ae_reconstruction` (one grade cell
  each): on the trained, loaded models in eval() mode, the linear-probe accuracy of the codes and
  the reconstruction error on the test set pass calibrated bars. Both read one evaluation per
  process (:func:`trained_results`); :func:`report_trained` prints every graded number beside
  its bar; :func:`check_trained_ae` runs both checks.
"""
from __future__ import annotations

import numpy as np
import torch

from ..manifest import notebook
from .core import call, fmt, student_facing
from .data import mnist_evaluation, mnist_sets
from .evaluation import (
    Codes,
    Evaluation,
    Stage,
    apply,
    batches,
    encoder_decoder_functions,
    image_inputs,
    images_and_labels,
    probe_codes,
    run,
    tensor_rows,
)
from .evidence import checked
from .modules import Spec, code, code_input, image, image_input, module_check
from .thresholds import graded_line

NOTEBOOK = notebook("ae", "autoencoders")
ENCODER_PATH, DECODER_PATH = NOTEBOOK.weights

ENCODER = Spec("Encoder", "x", image_input, (code("z"),))
DECODER = Spec("Decoder", "z", code_input, (image("xrec"),))


def evaluation_data(root=None):
    """The MNIST train and test sets of the graded evaluation."""
    return mnist_sets(root)


check_encoder = student_facing(module_check(
    ENCODER, "Encoder(n_components) maps (B, 1, 28, 28) images to (B, n_components) float32 codes."))
check_decoder = student_facing(module_check(
    DECODER, "Decoder(n_components) maps (B, n_components) codes to (B, 1, 28, 28) float32 images."))


def _encode(models: dict, inputs: dict) -> dict:
    encoder = models["Encoder"]
    enc = lambda x: call(encoder, x, what="encoder")  # noqa: E731
    return {"z_train": apply(enc, inputs["x_train"], "trained encoder on the MNIST images"),
            "z_test": apply(enc, inputs["x_test"], "trained encoder on the MNIST images")}


def _codes(first: dict, data) -> dict:
    return {"z": torch.from_numpy(np.ascontiguousarray(first["z_test"], dtype=np.float32))}


def _decode(models: dict, inputs: dict) -> dict:
    decoder = models["Decoder"]
    outs = []
    for z in batches(inputs["z"]):
        what = "trained decoder on the codes of test images"
        xrec = tensor_rows(call(decoder, z, what="decoder"), what, len(z), (len(z), 1, 28, 28),
                           "Decoder.forward must return the images, (batch_size, 1, 28, 28)")
        outs.append(torch.Tensor.detach(xrec).to(torch.float32).numpy())
    return {"xrec": np.concatenate(outs)}


def _measure_first(first: dict, data) -> dict:
    """What the encoder's codes decide alone: the probe accuracy."""
    return {"probe_accuracy": probe_codes(first, data, "trained encoder on the MNIST images")}


def _measure(first: dict, second: dict, data) -> dict:
    """Probe accuracy of the codes and reconstruction errors (see :func:`evaluate_ae`)."""
    accuracy = probe_codes(first, data, "trained encoder on the MNIST images")
    x_test = images_and_labels(data[1])[0]
    xrec = torch.from_numpy(checked(second, "xrec", len(x_test))).double().reshape(x_test.shape)
    x = x_test.double()
    count = x.numel()
    sums = xrec.flatten(1).sum(1)
    return {"probe_accuracy": accuracy, "recon_mse": float(((xrec - x) ** 2).sum()) / count,
            "logit_mse": float(((torch.sigmoid(xrec) - x) ** 2).sum()) / count,
            "sum_to_one": bool(((sums - 1).abs() < 1e-3).all()) and bool((xrec >= 0).all())}


#: The evaluation of the saved autoencoder: the encoder on the images, the decoder (in a
#: process of its own during grading) on the codes only, the numbers measured by the grader.
EVALUATION = Evaluation(
    name="ae", what="autoencoder", bars="ae",
    data=lambda trainset=None, testset=None: mnist_evaluation(trainset, testset, "autoencoder"),
    inputs=image_inputs,
    first=Stage(("Encoder",), _encode, {"z_train": "x_train", "z_test": "x_test"}),
    between=_codes,
    second=Stage(("Decoder",), _decode, {"xrec": "z"}),
    measure=_measure, codes=Codes(("z_train", "z_test"), NOTEBOOK.n_components),
    measure_first=_measure_first)
EVALUATIONS = (EVALUATION,)


def evaluate_ae(encoder, decoder, trainset, testset, *, train_mode: bool = False) -> dict[str, float]:
    """Probe accuracy of the codes and reconstruction MSE of the trained models.

    The models are put in eval() mode first (``train_mode=True``: left in train mode, for a
    hint). Besides ``probe_accuracy`` and ``recon_mse``, the dict holds ``logit_mse``, the MSE
    of ``sigmoid(xrec)`` (what a decoder that returns logits would reach with a sigmoid), and
    ``sum_to_one``, whether every reconstruction sums to 1 over its pixels (a softmax).
    """
    data = mnist_evaluation(trainset, testset, "autoencoder")
    return run(EVALUATION, {"Encoder": encoder, "Decoder": decoder}, data, train_mode=train_mode)


def probe_line(result: dict) -> str:
    """The graded probe accuracy beside its bar."""
    bars = result["bars"]
    return graded_line("linear probe accuracy on the test codes", result["probe_accuracy"],
                       bars["probe_accuracy"], bars["reference_accuracy"], result["source"])


def mse_line(result: dict) -> str:
    """The graded reconstruction MSE beside its bar."""
    bars = result["bars"]
    return graded_line("reconstruction MSE on the test images", result["recon_mse"],
                       bars["recon_mse"], bars["reference_mse"], result["source"], fmt=".4f",
                       op="<=")


load_trained, trained_results, report_trained, _bar_check, _run_both = encoder_decoder_functions(
    EVALUATION, ENCODER_PATH, DECODER_PATH, (probe_line, mse_line))

check_trained_ae_probe = student_facing(_bar_check(
    "check_trained_ae_probe",
    "A linear probe on the saved encoder's test codes passes the accuracy bar (eval mode).",
    "probe_accuracy", probe_line, what="linear probe on the trained encoder's test codes",
    problem="accuracy too low", reference="reference_accuracy", generic=True,
    hint="train longer or with a larger learning rate, check that the training loop updates the "
         "encoder, and save the weights after training"))


def _mse_hint(result: dict, bar: float) -> str:
    if result["sum_to_one"]:
        return ("every reconstruction sums to 1 over its pixels: the decoder returns a "
                "probability distribution over the pixels (a softmax), not pixel values; "
                "drop the softmax (end with no activation, or torch.sigmoid per pixel)")
    if result["logit_mse"] <= bar:
        return (f"with torch.sigmoid applied to the decoder's output the MSE would be "
                f"{result['logit_mse']:.4f}, which passes: the decoder returns logits (as for "
                f"BCEWithLogitsLoss), but the interface wants pixel values in [0, 1]; end "
                f"Decoder.forward with torch.sigmoid(...) (and train with nn.MSELoss or "
                f"nn.BCELoss on that output)")
    return "train longer; check that the loss compares the decoder output with the input x"


check_trained_ae_reconstruction = student_facing(_bar_check(
    "check_trained_ae_reconstruction",
    "The saved autoencoder reconstructs the test images within the MSE bar (eval mode).",
    "recon_mse", mse_line, op="<=", fmt=".4f", got=lambda result: fmt(result["recon_mse"]),
    what="reconstruction error of the trained autoencoder on the test images (mean over pixels)",
    reference="reference_mse", hint=lambda result: _mse_hint(result, result["bars"]["recon_mse"]),
    generic=lambda result: "train longer" in _mse_hint(result, result["bars"]["recon_mse"])))


#: Both bars of the saved autoencoder: the probe, then the reconstruction MSE.
check_trained_ae = student_facing(_run_both("check_trained_ae", check_trained_ae_probe,
                                            check_trained_ae_reconstruction))
