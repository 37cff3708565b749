"""Checks for the bottleneck autoencoder notebook (ae.ipynb).

- :func:`check_encoder` / :func:`check_decoder`: construction with ``n_components``, output
  type, dtype and shape over several batch sizes and code sizes, finite values, input
  dependence, gradients reaching the parameters.
- :func:`check_trained_ae`: on the trained, loaded models, the linear-probe accuracy of the
  codes and the reconstruction error on the test set pass calibrated bars.
"""
from __future__ import annotations

import numpy as np
import torch

from ..manifest import notebook
from .core import call, failure, fmt
from .data import mnist_evaluation, mnist_sets
from .modules import (BATCH_SIZES, N_COMPONENTS, Spec, build, check_module, code, code_input, image,
                      image_input, load_weights)
from .thresholds import required, threshold

NOTEBOOK = notebook("ae", "autoencoders")
ENCODER_PATH, DECODER_PATH = NOTEBOOK.weights

ENCODER = Spec("Encoder", "x", image_input, (code("z"),))
DECODER = Spec("Decoder", "z", code_input, (image("xrec"),))


def evaluation_data(root=None):
    """The MNIST train and test sets of the graded evaluation."""
    return mnist_sets(root)


def check_encoder(Encoder, *, seed: int = 0, batch_sizes=BATCH_SIZES,
                  n_components_list=N_COMPONENTS) -> None:
    """Encoder(n_components) maps (B, 1, 28, 28) images to (B, n_components) float32 codes."""
    check_module(Encoder, ENCODER, seed=seed, batch_sizes=batch_sizes,
                 n_components_list=n_components_list)


def check_decoder(Decoder, *, seed: int = 0, batch_sizes=BATCH_SIZES,
                  n_components_list=N_COMPONENTS) -> None:
    """Decoder(n_components) maps (B, n_components) codes to (B, 1, 28, 28) float32 images."""
    check_module(Decoder, DECODER, seed=seed, batch_sizes=batch_sizes,
                 n_components_list=n_components_list)


def evaluate_ae(encoder, decoder, trainset, testset) -> dict[str, float]:
    """Probe accuracy of the codes and reconstruction MSE of the trained models."""
    from data_tools.probe import encode, probe_accuracy

    encoder.eval()
    decoder.eval()
    enc = lambda x: call(encoder, x, what="encoder")  # noqa: E731
    z_train, y_train = encode(enc, trainset)
    z_test, y_test = encode(enc, testset)
    if not (np.isfinite(z_train).all() and np.isfinite(z_test).all()):
        raise failure("trained encoder on the MNIST images: non-finite codes",
                      "finite codes", "nan or inf",
                      "the training diverged: lower the learning rate and train again")
    accuracy = probe_accuracy(z_train, y_train, z_test, y_test)
    total, count = 0.0, 0
    with torch.no_grad():
        for x, _ in torch.utils.data.DataLoader(testset, batch_size=500):
            xrec = call(decoder, call(encoder, x, what="encoder"), what="decoder")
            total += float(((xrec - x) ** 2).sum())
            count += x.numel()
    return {"probe_accuracy": accuracy, "recon_mse": total / count}


def load_trained(Encoder, Decoder, n_components: int, encoder_path: str = ENCODER_PATH,
                 decoder_path: str = DECODER_PATH):
    """Build Encoder and Decoder and load the saved weights; a problem becomes a CheckFailure."""
    encoder = build(Encoder, n_components, "Encoder")
    decoder = build(Decoder, n_components, "Decoder")
    load_weights("autoencoder", (encoder, encoder_path), (decoder, decoder_path))
    return encoder, decoder


def check_trained_ae(Encoder, Decoder, n_components: int, *, encoder_path: str = ENCODER_PATH,
                     decoder_path: str = DECODER_PATH, trainset=None, testset=None) -> None:
    """The saved encoder's codes pass the probe bar and its reconstructions the MSE bar."""
    encoder, decoder = load_trained(Encoder, Decoder, n_components, encoder_path, decoder_path)
    trainset, testset, source_key = mnist_evaluation(trainset, testset, "autoencoder")
    bars = threshold(source_key, "ae")
    result = evaluate_ae(encoder, decoder, trainset, testset)
    acc, mse = result["probe_accuracy"], result["recon_mse"]
    if acc < bars["probe_accuracy"]:
        raise failure(
            "linear probe on the trained encoder's test codes: accuracy too low",
            required(bars["probe_accuracy"], bars["reference_accuracy"]),
            f"{acc:.3f}",
            "train longer or with a larger learning rate, check that the training loop "
            "updates the encoder, and save the weights after training")
    if mse > bars["recon_mse"]:
        raise failure(
            "reconstruction error of the trained autoencoder on the test set (mean over pixels)",
            required(bars["recon_mse"], bars["reference_mse"], ".4f", "<="),
            fmt(mse),
            "train longer; check that the loss compares the decoder output with the input x")
    print(f"probe accuracy {acc:.3f} (required >= {bars['probe_accuracy']:.3f}), "
          f"reconstruction MSE {fmt(mse)} (required <= {fmt(bars['recon_mse'])})")
