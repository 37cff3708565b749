"""varianceMNIST and the Gaussian corruption of the denoising autoencoder.

varianceMNIST turns every clean MNIST image x (values in [0, 1]) into a random image x * eps,
eps ~ N(0, 1) drawn independently for every pixel. The digit is no longer in the pixel values,
whose mean is 0 everywhere, but in their variance: pixel j has variance x_j^2. Background
pixels (x_j = 0) are exactly 0 in every sample, stroke pixels are N(0, x_j^2).

Two kinds of noise must not be confused:

- the *data* noise eps, which makes a varianceMNIST sample out of a clean MNIST image
  (:class:`VarianceMNIST`);
- the *corruption* noise of the denoising autoencoder, x_tilde = x + sigma_n * eps', added to a
  varianceMNIST sample x (:func:`corrupt`).

:class:`VarianceMNIST` draws fresh data noise at every access (an infinite data set of finitely
many shapes), from torch's global random state, so ``seed_everything`` makes training
repeatable. With ``eval_seed`` set, the noise of item ``i`` comes from its own numpy
generator seeded with ``(eval_seed, i)``: every access, every run and every machine sees the
same samples, which is what grading needs.
"""
from __future__ import annotations

import operator

import numpy as np
import torch
from torch.utils.data import Dataset

from .plots import figure

__all__ = ["VarianceMNIST", "corrupt", "plot_variance_samples", "seeded_normal"]

#: Shape of one image.
IMAGE_SHAPE = (1, 28, 28)
#: Stream numbers of :func:`seeded_normal`: the data noise of varianceMNIST, and the
#: corruption noise that the grader adds to a seeded sample.
DATA_STREAM = 0
CORRUPTION_STREAM = 1


def seeded_normal(seed: int, indices, *, stream: int = DATA_STREAM,
                  shape: tuple = IMAGE_SHAPE) -> torch.Tensor:
    """Standard-normal noise, one array of ``shape`` per index, fixed by ``(seed, index, stream)``.

    Each item gets its own numpy PCG64 generator seeded through ``SeedSequence((seed, index,
    stream))``, so an item's noise does not depend on which other items are drawn, in what
    order, or on the machine.

    Parameters
    ----------
    seed : int
        A non-negative integer.
    indices : sequence of int
        Non-negative item indices.
    stream : int
        Separates independent noises of one item (``DATA_STREAM``, ``CORRUPTION_STREAM``).
    shape : tuple of int
        Shape of the noise of one item.

    Returns
    -------
    eps : Tensor of float32, shape (len(indices), *shape)
    """
    out = np.empty((len(indices), *shape), dtype=np.float32)
    for row, index in enumerate(indices):
        sequence = np.random.SeedSequence((int(seed), int(index), int(stream)))
        out[row] = np.random.Generator(np.random.PCG64(sequence)).standard_normal(
            shape, dtype=np.float32)
    return torch.from_numpy(out)


def _clean_images(base_dataset) -> torch.Tensor:
    """All images of ``base_dataset`` as float32 (N, 1, 28, 28): its ``.x`` or stacked items."""
    x = getattr(base_dataset, "x", None)
    if not isinstance(x, torch.Tensor):
        items = [base_dataset[i][0] for i in range(len(base_dataset))]
        if not items:
            raise ValueError("VarianceMNIST: the base dataset is empty")
        x = torch.stack([torch.as_tensor(item, dtype=torch.float32) for item in items])
    x = x.detach().to(torch.float32)
    if x.dim() == 3:  # (N, 28, 28)
        x = x.unsqueeze(1)
    if tuple(x.shape[1:]) != IMAGE_SHAPE:
        raise ValueError(f"VarianceMNIST: expected images of shape (N, 1, 28, 28), "
                         f"found {tuple(x.shape)}")
    return x


def _targets(base_dataset) -> torch.Tensor:
    targets = getattr(base_dataset, "targets", None)
    if targets is None:
        targets = [int(base_dataset[i][1]) for i in range(len(base_dataset))]
    return torch.as_tensor(targets, dtype=torch.int64).reshape(-1)


class VarianceMNIST(Dataset):
    """varianceMNIST over an MNIST dataset: item i is ``(x_i * eps, label_i)``.

    Parameters
    ----------
    base_dataset : Dataset of (x, label) pairs
        Clean images in [0, 1], e.g. ``MNIST(train=True)`` (the embedded subset or full MNIST).
        Its ``.x`` (N, 1, 28, 28) and ``.targets`` are used when present.
    eval_seed : int, optional
        None (training): fresh noise eps ~ N(0, 1) per pixel at every access, from torch's global
        random state. An integer (evaluation): the noise of item i is fixed by
        ``(eval_seed, i)``, identical on every access, run and machine.

    Attributes
    ----------
    std : Tensor of float32, shape (N, 1, 28, 28)
        The clean images. They are the per-pixel standard deviations of the samples.
    targets : Tensor of int64, shape (N,)
    source : Source or None
        The base dataset's source (``source.threshold_key`` selects the grading bars).

    Notes
    -----
    ``DataLoader(dataset, batch_size=..., shuffle=True)`` works and fetches each batch in one
    vectorized step (``__getitems__``); ``batch(indices)`` does the same directly.
    """

    def __init__(self, base_dataset, *, eval_seed: int | None = None):
        if eval_seed is not None:
            eval_seed = operator.index(eval_seed)
            if eval_seed < 0:
                raise ValueError(f"VarianceMNIST: eval_seed must be a non-negative integer, "
                                 f"got {eval_seed}")
        self.base = base_dataset
        self.eval_seed = eval_seed
        self.std = _clean_images(base_dataset)
        self.targets = _targets(base_dataset)
        if len(self.targets) != len(self.std):
            raise ValueError(f"VarianceMNIST: {len(self.std)} images but "
                             f"{len(self.targets)} labels")
        self.source = getattr(base_dataset, "source", None)

    def __len__(self) -> int:
        return len(self.targets)

    def _index(self, index) -> int:
        i = operator.index(index)
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"VarianceMNIST index {i} out of range for {n} items")
        return i % n

    def noise(self, indices) -> torch.Tensor:
        """The data noise eps for ``indices``, shape (len(indices), 1, 28, 28)."""
        if self.eval_seed is None:
            return torch.randn(len(indices), *IMAGE_SHAPE)
        return seeded_normal(self.eval_seed, indices, stream=DATA_STREAM)

    def batch(self, indices) -> tuple[torch.Tensor, torch.Tensor]:
        """Samples and labels of several items at once.

        Parameters
        ----------
        indices : sequence of int or 1-d Tensor

        Returns
        -------
        x : Tensor of float32, shape (len(indices), 1, 28, 28)
        labels : Tensor of int64, shape (len(indices),)
        """
        if isinstance(indices, torch.Tensor):
            indices = indices.reshape(-1).tolist()
        idx = [self._index(i) for i in indices]
        where = torch.as_tensor(idx, dtype=torch.int64)
        return self.std[where] * self.noise(idx), self.targets[where]

    def __getitem__(self, index):
        """Return ``(x, label)``: x float32 (1, 28, 28), label a python int 0..9."""
        x, labels = self.batch([index])
        return x[0], int(labels[0])

    def __getitems__(self, indices):
        """A list of ``(x, label)`` pairs, drawn in one step (used by DataLoader)."""
        x, labels = self.batch(indices)
        return list(zip(x.unbind(0), labels.tolist()))

    def __repr__(self) -> str:
        noise = ("fresh noise at every access" if self.eval_seed is None
                 else f"seeded noise, eval_seed={self.eval_seed}")
        where = f" from {self.source.describe()}" if self.source is not None else ""
        return f"VarianceMNIST({len(self):,} shapes{where}, {noise})"


def corrupt(x: torch.Tensor, sigma_n: float = 0.2, generator: torch.Generator | None = None
            ) -> torch.Tensor:
    """Corrupt with additive Gaussian noise: x_tilde = x + sigma_n * eps, eps ~ N(0, 1).

    Parameters
    ----------
    x : Tensor, shape (batch_size, 1, 28, 28)
        A batch of (varianceMNIST) images.
    sigma_n : float
        Standard deviation of the corruption noise (not a variance).
    generator : torch.Generator, optional
        Source of the noise; torch's global random state if None.

    Returns
    -------
    x_tilde : Tensor, same shape, dtype and device as x
    """
    sigma_n = float(sigma_n)
    if not sigma_n >= 0.0:
        raise ValueError(f"corrupt: sigma_n is a standard deviation and must be >= 0, "
                         f"got {sigma_n}")
    eps = torch.randn(x.shape, generator=generator, dtype=x.dtype)
    return x + sigma_n * eps.to(x.device)


@figure
def plot_variance_samples(dataset: VarianceMNIST, *, n: int = 10, n_draws: int = 3,
                          title: str | None = "varianceMNIST"):
    """Show n clean shapes (the per-pixel standard deviations) and n_draws samples of each.

    The first row is gray (values in [0, 1]); the sample rows use a diverging colormap with a
    range symmetric around 0, shared by all sample rows, since samples are negative as often as
    positive.
    """
    import matplotlib.pyplot as plt

    n = min(n, len(dataset))
    idx = list(range(n))
    std = dataset.std[:n, 0].numpy()
    draws = [dataset.batch(idx)[0][:, 0].numpy() for _ in range(n_draws)]
    bound = max(float(np.abs(np.stack(draws)).max()), 1e-6) if draws else 1.0
    fig, axes = plt.subplots(1 + n_draws, n, figsize=(n * 0.9, (1 + n_draws) * 0.95 + 0.4),
                             squeeze=False)
    for col in range(n):
        axes[0, col].imshow(std[col], cmap="gray", vmin=0.0, vmax=1.0)
        for r, draw in enumerate(draws, start=1):
            axes[r, col].imshow(draw[col], cmap="bwr", vmin=-bound, vmax=bound)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0, 0].set_ylabel("std", fontsize=8)
    for r in range(1, 1 + n_draws):
        axes[r, 0].set_ylabel(f"draw {r}", fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    plt.show()  # nothing is returned, so that Jupyter does not show the figure twice
