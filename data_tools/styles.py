"""Two styles of MNIST digits for the FaceSwap-style notebook (``transfer.ipynb``).

Domain A is plain MNIST; domain B is *bold* MNIST: every image passed through a 3x3 maximum
filter, which thickens each stroke by one pixel on every side. :func:`two_domains` splits one
MNIST dataset into the two domains from **disjoint** sets of images, so that no image of A has
its bold twin in B: the two training sets are unpaired, as two people's faces are.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

__all__ = ["ImageSet", "bold", "jitter_strokes", "thin", "two_domains"]

#: Seed of the split into the two domains (a numpy PCG64 stream, the same on every machine).
DOMAIN_SPLIT_SEED = 20240611


def bold(x: torch.Tensor) -> torch.Tensor:
    """Bold strokes: a 3x3 maximum filter (each pixel becomes the largest of its 3x3 neighbours).

    Parameters
    ----------
    x : Tensor, shape (batch_size, 1, 28, 28) or (1, 28, 28)
        Images with values in [0, 1].

    Returns
    -------
    Tensor, the shape of x
        The bold images; the background stays 0 away from the strokes.
    """
    single = x.dim() == 3
    batch = x.unsqueeze(0) if single else x
    if batch.dim() != 4:
        raise ValueError(f"bold: expected images of shape (B, 1, 28, 28) or (1, 28, 28), "
                         f"got {tuple(x.shape)}")
    out = F.max_pool2d(batch, kernel_size=3, stride=1, padding=1)
    return out[0] if single else out


def thin(x: torch.Tensor) -> torch.Tensor:
    """Thin strokes: a 3x3 minimum filter (the opposite of :func:`bold`); same shapes."""
    return -bold(-x)


def jitter_strokes(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Change the stroke width of each image at random: thinner, unchanged or bolder.

    Each image of the batch independently, with probability 1/3 each: :func:`thin`, unchanged,
    :func:`bold`. As a corruption of an autoencoder's input it hides the stroke width from the
    encoder, so that the code carries the digit's shape but not its style.

    Parameters
    ----------
    x : Tensor, shape (batch_size, 1, 28, 28)
    generator : torch.Generator, optional
        Draws the choices (default: torch's global random state).
    """
    if x.dim() != 4:
        raise ValueError(f"jitter_strokes: expected images of shape (B, 1, 28, 28), got {tuple(x.shape)}")
    choice = torch.randint(0, 3, (len(x), 1, 1, 1), generator=generator, device="cpu").to(x.device)
    return torch.where(choice == 0, thin(x), torch.where(choice == 2, bold(x), x))


class ImageSet(Dataset):
    """A dataset of ``(x, label)`` pairs held in memory, with the source of its images.

    Attributes
    ----------
    x : Tensor of float32, shape (N, 1, 28, 28)
    targets : Tensor of int64, shape (N,)
    indices : Tensor of int64, shape (N,)
        The positions of the images in the dataset they were taken from.
    source : Source or None
        Where the underlying MNIST came from (``source.threshold_key`` selects grading bars).
    style : str
        ``"plain"`` or ``"bold"``.
    """

    def __init__(self, x: torch.Tensor, targets: torch.Tensor, indices: torch.Tensor, source,
                 style: str):
        if len(x) != len(targets) or len(x) != len(indices):
            raise ValueError(f"ImageSet: {len(x)} images, {len(targets)} labels and "
                             f"{len(indices)} indices")
        self.x, self.targets, self.indices = x, targets, indices
        self.source, self.style = source, style

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index):
        return self.x[index], int(self.targets[index])

    def __repr__(self) -> str:
        return f"ImageSet({len(self):,} {self.style} images)"


def two_domains(dataset, *, seed: int = DOMAIN_SPLIT_SEED) -> tuple[ImageSet, ImageSet]:
    """Split an MNIST dataset into domain A (plain) and domain B (bold) from disjoint images.

    Each class is halved at random (fixed by ``seed``): one half stays plain (A), the other half
    is made bold (B). Every image goes to exactly one domain.

    Parameters
    ----------
    dataset : MNIST
        Anything with ``.x`` (N, 1, 28, 28) in [0, 1] and ``.targets`` (N,).

    Returns
    -------
    domain_a, domain_b : ImageSet
    """
    x = torch.as_tensor(dataset.x, dtype=torch.float32)
    targets = torch.as_tensor(dataset.targets, dtype=torch.int64)
    labels = targets.numpy()
    rng = np.random.Generator(np.random.PCG64(seed))
    a, b = [], []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        members = members[np.argsort(rng.random(len(members)), kind="stable")]
        half = len(members) // 2
        a.append(members[:half])
        b.append(members[half:])
    a_idx = torch.from_numpy(np.sort(np.concatenate(a)))
    b_idx = torch.from_numpy(np.sort(np.concatenate(b)))
    source = getattr(dataset, "source", None)
    domain_a = ImageSet(x[a_idx], targets[a_idx], a_idx, source, "plain")
    domain_b = ImageSet(bold(x[b_idx]), targets[b_idx], b_idx, source, "bold")
    return domain_a, domain_b
