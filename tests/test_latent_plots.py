"""Do the plot helpers of the latent-space notebook lay out the latent map like a scatter plot,
and do they draw without error?"""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from data_tools.plots import latent_map_picture, plot_bars, plot_code_scatters, plot_latent_maps  # noqa: E402


def _marked(n):
    """n * n images, image k filled with the value k."""
    return torch.arange(n * n, dtype=torch.float32)[:, None, None, None].expand(n * n, 1, 28, 28)


def test_latent_map_orientation():
    """Is grid point (i, j) (first coordinate slowest) drawn at column i, row j from the bottom?"""
    n = 3
    picture = latent_map_picture(_marked(n), n)
    assert picture.shape == (n * 28, n * 28)
    for i in range(n):
        for j in range(n):
            row_from_top = n - 1 - j
            tile = picture[row_from_top * 28:(row_from_top + 1) * 28, i * 28:(i + 1) * 28]
            assert np.all(tile == i * n + j), (i, j)


def test_latent_map_rejects_a_wrong_count():
    """Does a number of images that is not n * n raise a clear error?"""
    with pytest.raises(ValueError, match="cannot fill"):
        latent_map_picture(_marked(3)[:8], 3)


def test_plots_draw():
    """Do the side-by-side plots draw (and return nothing, so Jupyter shows them once)?"""
    codes = np.random.default_rng(0).normal(size=(50, 2))
    labels = np.arange(50) % 10
    assert plot_code_scatters({"a": (codes, labels), "b": (codes, labels)}) is None
    assert plot_latent_maps({"a": _marked(2) / 3, "b": _marked(2) / 3}, 2,
                            extents={"a": (-1, 1, -1, 1)}) is None
    assert plot_bars({"beta = 1": [1.0, 2.0], "beta = 4": [0.5, 0.1]}) is None
