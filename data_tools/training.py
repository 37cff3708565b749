"""Helpers of the training cells: the test-set loss of an epoch."""
from __future__ import annotations

from collections.abc import Callable

import torch


def dataset_loss(loss_fn: Callable[[torch.Tensor], torch.Tensor], dataset, *models: torch.nn.Module,
              device: str | torch.device = "cpu", batch_size: int = 500) -> float:
    """The mean of ``loss_fn(x)`` over the batches of ``dataset`` (weighted by batch size).

    The ``models`` are put in eval() mode for the pass (BatchNorm uses its running statistics,
    Dropout is off) and back in the mode each was in afterwards; no gradients are computed.

    Parameters
    ----------
    loss_fn : callable
        Maps a batch x, shape (batch_size, 1, 28, 28) on ``device``, to a scalar loss tensor.
    dataset : torch Dataset of (x, label) pairs, e.g. the test set
    *models : the networks that ``loss_fn`` uses
    device : where the batches go, the device the models are on

    Returns
    -------
    float
        The loss per batch element, averaged over the whole dataset.
    """
    modes = [m.training for m in models]
    for m in models:
        m.eval()
    total, count = 0.0, 0
    try:
        with torch.no_grad():
            loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False)
            for x, _ in loader:
                x = x.to(device)
                total += float(loss_fn(x)) * len(x)
                count += len(x)
    finally:
        for m, mode in zip(models, modes):
            m.train(mode)
    if count == 0:
        raise ValueError("dataset_loss: the dataset is empty")
    return total / count
