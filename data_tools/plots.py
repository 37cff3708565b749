"""Plots for the notebooks: image grids, t-SNE of codes, loss curves."""
from __future__ import annotations

import functools
import os

import numpy as np
import torch

#: Set to ``draw`` (the sandbox passes it on) to have ``nbgrader autograde`` draw the figures.
FIGURES_VARIABLE = "AUTOGRADER_FIGURES"


def drawing_figures() -> bool:
    """False while ``nbgrader autograde`` runs the notebook, unless ``AUTOGRADER_FIGURES=draw``.

    No grade depends on a figure (the grader's re-run decides every test cell), and a figure
    grid costs up to a second or two of CPU to build and render: about two thirds of the kernel's
    time of a graded notebook (docs/performance.md). The student's own run and ``nbgrader
    validate`` draw every figure.
    """
    return (os.environ.get("NBGRADER_EXECUTION") != "autograde"
            or os.environ.get(FIGURES_VARIABLE) == "draw")


def figure(function):
    """A plot helper that, while grading (:func:`drawing_figures`), prints one line instead."""
    @functools.wraps(function)
    def plot(*args, **kwargs):
        if drawing_figures():
            return function(*args, **kwargs)
        print(f"[{function.__name__}: no figure while nbgrader autograde grades the notebook; "
              f"run the notebook to see it]")
        return None

    return plot


def _plt():
    import matplotlib.pyplot as plt  # imported lazily: nothing heavy runs at import time
    return plt


def show(fig, ax=None, *, title: str | None = None, xlabel: str | None = None,
         ylabel: str | None = None, logy: bool = False, legend: bool = False) -> None:
    """Finish a figure (labels, log scale, legend and title of ``ax``) and show it.

    Nothing is returned, so that Jupyter does not show the figure twice.
    """
    if ax is not None:
        if xlabel is not None:
            ax.set_xlabel(xlabel)
        if ylabel is not None:
            ax.set_ylabel(ylabel)
        if logy:
            ax.set_yscale("log")
        if legend:
            ax.legend()
        if title is not None:
            ax.set_title(title)
    fig.tight_layout()
    _plt().show()


def _as_images(images) -> np.ndarray:
    if isinstance(images, torch.Tensor):
        images = images.detach().cpu().float().numpy()
    images = np.asarray(images, dtype=np.float32)
    if images.ndim == 4:  # (B, 1, 28, 28)
        images = images[:, 0]
    if images.ndim == 2:  # (B, 784)
        images = images.reshape(len(images), 28, 28)
    return images


@figure
def plot_images(images, *, ncol: int = 10, title: str | None = None,
                cmap: str = "gray", symmetric: bool = False, row_titles=None,
                vmin: float | None = None, vmax: float | None = None):
    """Show images in a grid.

    Parameters
    ----------
    images : Tensor or ndarray, shape (n, 1, 28, 28), (n, 28, 28) or (n, 784)
    symmetric : bool
        Use a diverging colormap with a range symmetric around 0, for images that can be
        negative (varianceMNIST, noise). Otherwise ``cmap`` with the data's range.
    row_titles : list of str, optional
        A label for each row, e.g. ["input", "reconstruction"].
    """
    plt = _plt()
    images = _as_images(images)
    n = len(images)
    nrow = max(1, int(np.ceil(n / ncol)))
    if symmetric:
        cmap = "bwr" if cmap == "gray" else cmap
        bound = float(np.abs(images).max()) or 1.0
        vmin, vmax = -bound, bound
    fig, axes = plt.subplots(nrow, ncol, figsize=(ncol * 0.9, nrow * 0.95 + (0.4 if title else 0)),
                             squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.set_xticks([])
        ax.set_yticks([])
        if i < n:
            ax.imshow(images[i], cmap=cmap, vmin=vmin, vmax=vmax)
        else:
            ax.axis("off")
    if row_titles:
        for r, label in enumerate(row_titles[:nrow]):
            axes[r, 0].set_ylabel(label, fontsize=8)
    if title:
        fig.suptitle(title)
    show(fig)


@figure
def plot_rows(rows: dict, *, n: int = 10, symmetric: bool = False, title: str | None = None):
    """Show several aligned rows of images, e.g. {"input": x, "reconstruction": xrec}."""
    stacked = np.concatenate([_as_images(v)[:n] for v in rows.values()])
    return plot_images(stacked, ncol=n, symmetric=symmetric, title=title,
                       row_titles=list(rows.keys()))


# Points in a t-SNE plot: enough to see the clusters; fewer when nbgrader validates the
# notebook (under `nbgrader autograde` no figure is drawn at all: drawing_figures).
TSNE_POINTS = 1500
TSNE_POINTS_GRADING = 500


@figure
def plot_embeddings(codes, labels, *, max_points: int | None = None, seed: int = 0,
                    title: str = "t-SNE of the codes"):
    """Scatter a 2-d t-SNE embedding of ``codes``, coloured by digit label.

    At most ``max_points`` codes (a seeded, fixed subset; default 1,500, or 500 under the
    grader) are embedded, so the plot stays fast on a laptop. Codes that are already 2-d are
    plotted as they are. Under ``nbgrader validate`` the codes are projected on their first two
    principal components instead of t-SNE's seconds (the title says so); under ``nbgrader
    autograde`` nothing is drawn (:func:`drawing_figures`).
    """
    from .utils import running_under_grader

    grading = running_under_grader()
    if max_points is None:
        max_points = TSNE_POINTS_GRADING if grading else TSNE_POINTS
    plt = _plt()
    codes = np.asarray(codes, dtype=np.float64)
    labels = np.asarray(labels)
    if len(codes) > max_points:
        idx = np.sort(np.random.default_rng(seed).choice(len(codes), max_points, replace=False))
        codes, labels = codes[idx], labels[idx]
    if codes.shape[1] == 2:
        xy = codes
        title = title.replace("t-SNE of the codes", "the 2-d codes")
    elif grading:
        centred = codes - codes.mean(0)
        xy = centred @ np.linalg.svd(centred, full_matrices=False)[2][:2].T
        title = title.replace("t-SNE of the codes", "the codes' first two principal components "
                              "(t-SNE is left out while grading)")
    else:
        from sklearn.manifold import TSNE
        xy = TSNE(n_components=2, init="pca", random_state=seed,
                  perplexity=min(30.0, (len(codes) - 1) / 3)).fit_transform(codes)
    fig, ax = plt.subplots(figsize=(6.5, 6))
    scatter = ax.scatter(xy[:, 0], xy[:, 1], c=labels, cmap="tab10", s=6, vmin=-0.5, vmax=9.5)
    fig.colorbar(scatter, ax=ax, ticks=range(10), label="digit")
    ax.set_xticks([])
    ax.set_yticks([])
    show(fig, ax, title=title)


@figure
def plot_loss(losses, *, title: str = "training loss", ylabel: str = "loss",
              logy: bool = False):
    """Plot one value per step or epoch; a dict plots several named curves."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    curves = losses if isinstance(losses, dict) else {ylabel: losses}
    for name, values in curves.items():
        ax.plot(np.arange(1, len(values) + 1), np.asarray(values, dtype=float), label=name)
    show(fig, ax, title=title, xlabel="step", ylabel=ylabel, logy=logy, legend=len(curves) > 1)


@figure
def plot_latent_maps(maps: dict, n: int, *, extents: dict | None = None, title: str | None = None):
    """Side by side, one tiled n x n grid of decoded images per entry of ``maps``.

    ``maps[name]`` holds n * n images decoded from a grid of 2-d codes whose first
    coordinate varies slowest; it is drawn along the horizontal axis, the second coordinate
    upwards, so that the map lies like a scatter plot of the codes. ``extents[name]`` =
    (x_min, x_max, y_min, y_max) labels the axes with the codes' coordinates.
    """
    plt = _plt()
    fig, axes = plt.subplots(1, len(maps), figsize=(4.6 * len(maps), 4.8), squeeze=False)
    for ax, (name, images) in zip(axes[0], maps.items()):
        ax.imshow(latent_map_picture(images, n), cmap="gray", vmin=0.0, vmax=1.0,
                  extent=(extents or {}).get(name))
        ax.set_title(name)
        if (extents or {}).get(name) is None:
            ax.set_xticks([])
            ax.set_yticks([])
        else:
            ax.set_xlabel("z[0]")
            ax.set_ylabel("z[1]")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    plt.show()  # nothing is returned, so that Jupyter does not show the figure twice


def latent_map_picture(images, n: int) -> np.ndarray:
    """The (n * 28, n * 28) picture of a latent map: image k = (i, j) = (k // n, k % n) of a
    grid whose first coordinate varies slowest goes to column i and, counted from the bottom,
    row j (the first coordinate to the right, the second upwards, as in a scatter plot)."""
    images = _as_images(images)
    if len(images) != n * n:
        raise ValueError(f"latent map: {len(images)} images cannot fill an {n} x {n} grid")
    tiles = images.reshape(n, n, 28, 28).transpose(1, 0, 2, 3)[::-1]  # [row from top, column]
    return tiles.transpose(0, 2, 1, 3).reshape(n * 28, n * 28)


@figure
def plot_code_scatters(panels: dict, *, title: str | None = None):
    """Side by side scatters of 2-d codes coloured by digit: ``panels[name] = (codes, labels)``."""
    plt = _plt()
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 4.6), squeeze=False)
    for ax, (name, (codes, labels)) in zip(axes[0], panels.items()):
        codes = np.asarray(codes, dtype=np.float64)
        scatter = ax.scatter(codes[:, 0], codes[:, 1], c=np.asarray(labels), cmap="tab10", s=5,
                             vmin=-0.5, vmax=9.5)
        ax.set_title(name)
        ax.set_xlabel("z[0]")
        ax.set_ylabel("z[1]")
    fig.colorbar(scatter, ax=list(axes[0]), ticks=range(10), label="digit")
    if title:
        fig.suptitle(title)
    plt.show()  # nothing is returned, so that Jupyter does not show the figure twice


@figure
def plot_bars(values: dict, *, xlabel: str = "", ylabel: str = "", title: str | None = None):
    """Grouped bars: ``values[name]`` is one sequence of numbers per group (e.g. per beta)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    k = len(values)
    width = 0.8 / max(k, 1)
    for i, (name, seq) in enumerate(values.items()):
        seq = np.asarray(seq, dtype=float)
        ax.bar(np.arange(len(seq)) + (i - (k - 1) / 2) * width, seq, width=width, label=name)
        ax.set_xticks(np.arange(len(seq)))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if k > 1:
        ax.legend()
    if title:
        ax.set_title(title)
    fig.tight_layout()
    plt.show()  # nothing is returned, so that Jupyter does not show the figure twice


@figure
def plot_losses(train_losses, test_losses, *, title: str = "loss", ylabel: str = "loss",
                logy: bool = False):
    """The training loss per mini-batch and the test loss per epoch, against epochs.

    ``train_losses`` holds one value per mini-batch of every epoch, ``test_losses`` one value
    per epoch (measured at the end of it); the test curve may be empty.
    """
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    train = np.asarray(train_losses, dtype=float)
    n_epochs = len(test_losses) or 1
    steps = np.arange(1, len(train) + 1) * (n_epochs / max(len(train), 1))
    ax.plot(steps, train, label="training (per mini-batch)", alpha=0.6)
    if len(test_losses):
        epochs = np.arange(1, len(test_losses) + 1)
        ax.plot(epochs, np.asarray(test_losses, dtype=float), "o-", label="test (per epoch)")
    show(fig, ax, title=title, xlabel="epoch", ylabel=ylabel, logy=logy, legend=True)


@figure
def plot_curves(xs, curves: dict, *, xlabel: str, ylabel: str, title: str | None = None,
                logx: bool = False, marker: str | None = None):
    """Named curves against common x values, e.g. test accuracy against labels per class.

    ``curves`` maps a name to its y values, one per x value of ``xs``.
    """
    plt = _plt()
    xs = np.asarray(xs, dtype=float)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for name, values in curves.items():
        values = np.asarray(values, dtype=float)
        if len(values) != len(xs):
            raise ValueError(f"plot_curves: curve {name!r} has {len(values)} values for "
                             f"{len(xs)} x values")
        ax.plot(xs, values, label=name, marker=marker)
    if logx:
        ax.set_xscale("log")
        ax.set_xticks(xs)
        ax.set_xticklabels([f"{x:g}" for x in xs])
    show(fig, ax, title=title, xlabel=xlabel, ylabel=ylabel, legend=len(curves) > 1)
