"""Plots of the linear and sparse autoencoders notebook (bestiary/linear.ipynb): losses per
epoch, reconstruction error against the number of components, principal angles, histograms
of hidden activations."""
from __future__ import annotations

import numpy as np
import torch

from .plots import _plt, figure, show


def _np(values) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().double().numpy()
    return np.asarray(values, dtype=float)


@figure
def plot_epoch_losses(curves: dict, *, title: str = "loss per epoch", ylabel: str = "loss",
                      logy: bool = False):
    """One curve per name (e.g. {"train": [...], "test": [...]}), one value per epoch."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for name, values in curves.items():
        values = _np(values)
        ax.plot(np.arange(1, len(values) + 1), values, marker="o", markersize=3, label=name)
    show(fig, ax, title=title, xlabel="epoch", ylabel=ylabel, logy=logy, legend=True)


@figure
def plot_error_vs_k(pca_errors, points: dict | None = None, *,
                    title: str = "test reconstruction error against k"):
    """PCA's error for k = 1, 2, ... as a curve; ``points`` {label: (k, error)} as markers."""
    plt = _plt()
    errors = _np(pca_errors)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(np.arange(1, len(errors) + 1), errors, label="PCA, top k components")
    for label, (k, error) in (points or {}).items():
        ax.scatter([k], [float(error)], marker="x", s=80, zorder=3, label=label)
    show(fig, ax, title=title, xlabel="k (number of components)", ylabel="MSE per pixel",
         logy=True, legend=True)


@figure
def plot_angles(angles, *, title: str = "principal angles between the two subspaces"):
    """A bar per principal angle (degrees), smallest first."""
    plt = _plt()
    angles = _np(angles)
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.bar(np.arange(1, len(angles) + 1), angles)
    ax.set_ylim(0, 90)
    show(fig, ax, title=title, xlabel="principal angle number", ylabel="degrees")


@figure
def plot_activation_histograms(activations: dict, *, threshold: float = 0.1, bins: int = 50,
                               title: str = "hidden activations on the test images"):
    """Side-by-side histograms of activations in [0, 1], one panel per name, with the share
    below ``threshold`` in each panel's title."""
    plt = _plt()
    fig, axes = plt.subplots(1, len(activations), figsize=(4.5 * len(activations), 3.2),
                             squeeze=False)
    for ax, (name, values) in zip(axes[0], activations.items()):
        values = _np(values).ravel()
        ax.hist(values, bins=bins, range=(0.0, 1.0))
        ax.axvline(threshold, color="k", linestyle="--", linewidth=1)
        ax.set_yscale("log")
        ax.set_xlabel("activation")
        ax.set_title(f"{name}: {np.mean(values < threshold):.0%} below {threshold}, "
                     f"mean {values.mean():.3f}", fontsize=9)
    fig.suptitle(title)
    show(fig)
