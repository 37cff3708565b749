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
from . import cache
from .core import call, failure, fmt, student_facing
from .data import mnist_evaluation, mnist_sets
from .modules import (
    BATCH_SIZES,
    N_COMPONENTS,
    Spec,
    build,
    check_module,
    code,
    code_input,
    image,
    image_input,
    load_weights,
)
from .thresholds import graded_line, required, source_name, threshold

NOTEBOOK = notebook("ae", "autoencoders")
ENCODER_PATH, DECODER_PATH = NOTEBOOK.weights

ENCODER = Spec("Encoder", "x", image_input, (code("z"),))
DECODER = Spec("Decoder", "z", code_input, (image("xrec"),))


def evaluation_data(root=None):
    """The MNIST train and test sets of the graded evaluation."""
    return mnist_sets(root)


@student_facing
def check_encoder(Encoder, *, seed: int = 0, batch_sizes=BATCH_SIZES,
                  n_components_list=N_COMPONENTS) -> None:
    """Encoder(n_components) maps (B, 1, 28, 28) images to (B, n_components) float32 codes."""
    check_module(Encoder, ENCODER, seed=seed, batch_sizes=batch_sizes,
                 n_components_list=n_components_list)


@student_facing
def check_decoder(Decoder, *, seed: int = 0, batch_sizes=BATCH_SIZES,
                  n_components_list=N_COMPONENTS) -> None:
    """Decoder(n_components) maps (B, n_components) codes to (B, 1, 28, 28) float32 images."""
    check_module(Decoder, DECODER, seed=seed, batch_sizes=batch_sizes,
                 n_components_list=n_components_list)


def _mode_layers(*models) -> bool:
    """Do the models hold layers that act differently in train and eval mode?"""
    kinds = (torch.nn.modules.batchnorm._BatchNorm, torch.nn.Dropout, torch.nn.Dropout2d)
    return any(isinstance(m, kinds) for model in models for m in model.modules())


def evaluate_ae(encoder, decoder, trainset, testset, *, train_mode: bool = False) -> dict[str, float]:
    """Probe accuracy of the codes and reconstruction MSE of the trained models.

    The models are put in eval() mode first (``train_mode=True``: left in train mode, for a
    hint). Besides ``probe_accuracy`` and ``recon_mse``, the dict holds ``logit_mse``, the MSE
    of ``sigmoid(xrec)`` (what a decoder that returns logits would reach with a sigmoid), and
    ``sum_to_one``, whether every reconstruction sums to 1 over its pixels (a softmax).
    """
    from data_tools.probe import encode, probe_accuracy

    encoder.train(train_mode)
    decoder.train(train_mode)
    enc = lambda x: call(encoder, x, what="encoder")  # noqa: E731
    with torch.no_grad():
        z_train, y_train = encode(enc, trainset)
        z_test, y_test = encode(enc, testset)
    if not (np.isfinite(z_train).all() and np.isfinite(z_test).all()):
        raise failure("trained encoder on the MNIST images: non-finite codes",
                      "finite codes", "nan or inf",
                      "the training diverged: lower the learning rate and train again")
    accuracy = probe_accuracy(z_train, y_train, z_test, y_test)
    total = total_logit = 0.0
    count = 0
    sum_to_one = True
    with torch.no_grad():
        for x, _ in torch.utils.data.DataLoader(testset, batch_size=500):
            xrec = call(decoder, call(encoder, x, what="encoder"), what="decoder")
            if not isinstance(xrec, torch.Tensor) or xrec.shape != x.shape:
                raise failure("trained decoder on the codes of test images: wrong output",
                              f"a tensor of shape {tuple(x.shape)}",
                              f"{type(xrec).__name__} of shape {tuple(getattr(xrec, 'shape', ()))}",
                              "Decoder.forward must return the images, (batch_size, 1, 28, 28)")
            xrec = xrec.double()
            total += float(((xrec - x.double()) ** 2).sum())
            total_logit += float(((torch.sigmoid(xrec) - x.double()) ** 2).sum())
            sums = xrec.flatten(1).sum(1)
            sum_to_one = sum_to_one and bool(((sums - 1).abs() < 1e-3).all()) \
                and bool((xrec >= 0).all())
            count += x.numel()
    return {"probe_accuracy": accuracy, "recon_mse": total / count,
            "logit_mse": total_logit / count, "sum_to_one": sum_to_one}


def load_trained(Encoder, Decoder, n_components: int, encoder_path: str = ENCODER_PATH,
                 decoder_path: str = DECODER_PATH):
    """Build Encoder and Decoder and load the saved weights; a problem becomes a CheckFailure."""
    __tracebackhide__ = True  # noqa: F841
    encoder = build(Encoder, n_components, "Encoder")
    decoder = build(Decoder, n_components, "Decoder")
    load_weights("autoencoder", (encoder, encoder_path), (decoder, decoder_path))
    return encoder, decoder


def trained_results(Encoder, Decoder, n_components: int, *, trainset=None, testset=None,
                    encoder_path: str = ENCODER_PATH, decoder_path: str = DECODER_PATH) -> dict:
    """The graded numbers of the saved models (evaluated once per process, see ``cache``).

    Returns the dict of :func:`evaluate_ae` with ``source`` (the data source's threshold key)
    and ``bars`` (its thresholds) added. The models are evaluated in eval() mode.
    """
    __tracebackhide__ = True  # noqa: F841
    given = (trainset, testset)
    trainset, testset, source_key = mnist_evaluation(trainset, testset, "autoencoder")

    def compute():
        encoder, decoder = load_trained(Encoder, Decoder, n_components, encoder_path, decoder_path)
        result = evaluate_ae(encoder, decoder, trainset, testset)
        result["mode_layers"] = _mode_layers(encoder, decoder)
        return result

    result = cache.evaluation((Encoder, Decoder, *given), ("ae", n_components, source_key),
                              (encoder_path, decoder_path), compute)
    result["source"], result["bars"] = source_key, threshold(source_key, "ae")
    return result


def _train_mode_result(Encoder, Decoder, n_components, trainset, testset, encoder_path,
                       decoder_path) -> dict:
    encoder, decoder = load_trained(Encoder, Decoder, n_components, encoder_path, decoder_path)
    trainset, testset, _ = mnist_evaluation(trainset, testset, "autoencoder")
    return evaluate_ae(encoder, decoder, trainset, testset, train_mode=True)


EVAL_MODE_HINT = ("in train mode your models pass this bar, but the grader evaluates them in "
                  "eval() mode (it calls .eval() itself, as every evaluation should), where "
                  "BatchNorm uses the running statistics it collected during training and "
                  "Dropout is off: train in train() mode (call .train() before the loop, and "
                  "again after any .eval() inside it), and use nn.Dropout rather than "
                  "F.dropout without training=self.training")


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


def report_trained(Encoder, Decoder, n_components: int, *, trainset=None, testset=None,
                   encoder_path: str = ENCODER_PATH, decoder_path: str = DECODER_PATH) -> dict:
    """Print every graded number of the saved models beside its bar (never fails a bar)."""
    __tracebackhide__ = True  # noqa: F841
    result = trained_results(Encoder, Decoder, n_components, trainset=trainset, testset=testset,
                             encoder_path=encoder_path, decoder_path=decoder_path)
    print(probe_line(result))
    print(mse_line(result))
    return result


@student_facing
def check_trained_ae_probe(Encoder, Decoder, n_components: int, *, trainset=None, testset=None,
                           encoder_path: str = ENCODER_PATH,
                           decoder_path: str = DECODER_PATH) -> None:
    """A linear probe on the saved encoder's test codes passes the accuracy bar (eval mode)."""
    result = trained_results(Encoder, Decoder, n_components, trainset=trainset, testset=testset,
                             encoder_path=encoder_path, decoder_path=decoder_path)
    bars, acc = result["bars"], result["probe_accuracy"]
    if acc < bars["probe_accuracy"]:
        hint = ("train longer or with a larger learning rate, check that the training loop "
                "updates the encoder, and save the weights after training")
        if result["mode_layers"]:
            train = _train_mode_result(Encoder, Decoder, n_components, trainset, testset,
                                       encoder_path, decoder_path)
            if train["probe_accuracy"] >= bars["probe_accuracy"]:
                hint = f"{EVAL_MODE_HINT} (train mode: {train['probe_accuracy']:.3f})"
        raise failure(
            "linear probe on the trained encoder's test codes (models in eval() mode, "
            f"{source_name(result['source'])}): accuracy too low",
            required(bars["probe_accuracy"], bars["reference_accuracy"]), f"{acc:.3f}", hint)
    print(probe_line(result))


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


@student_facing
def check_trained_ae_reconstruction(Encoder, Decoder, n_components: int, *, trainset=None,
                                    testset=None, encoder_path: str = ENCODER_PATH,
                                    decoder_path: str = DECODER_PATH) -> None:
    """The saved autoencoder reconstructs the test images within the MSE bar (eval mode)."""
    result = trained_results(Encoder, Decoder, n_components, trainset=trainset, testset=testset,
                             encoder_path=encoder_path, decoder_path=decoder_path)
    bars, mse = result["bars"], result["recon_mse"]
    if mse > bars["recon_mse"]:
        hint = _mse_hint(result, bars["recon_mse"])
        if result["mode_layers"] and "train longer" in hint:
            train = _train_mode_result(Encoder, Decoder, n_components, trainset, testset,
                                       encoder_path, decoder_path)
            if train["recon_mse"] <= bars["recon_mse"]:
                hint = f"{EVAL_MODE_HINT} (train mode: {train['recon_mse']:.4f})"
        raise failure(
            "reconstruction error of the trained autoencoder on the test images (mean over "
            f"pixels, models in eval() mode, {source_name(result['source'])})",
            required(bars["recon_mse"], bars["reference_mse"], ".4f", "<="), fmt(mse), hint)
    print(mse_line(result))


@student_facing
def check_trained_ae(Encoder, Decoder, n_components: int, *, encoder_path: str = ENCODER_PATH,
                     decoder_path: str = DECODER_PATH, trainset=None, testset=None) -> None:
    """Both bars of the saved autoencoder: the probe, then the reconstruction MSE."""
    kwargs = dict(trainset=trainset, testset=testset, encoder_path=encoder_path,
                  decoder_path=decoder_path)
    check_trained_ae_probe(Encoder, Decoder, n_components, **kwargs)
    check_trained_ae_reconstruction(Encoder, Decoder, n_components, **kwargs)
