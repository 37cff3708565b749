"""Do the plots of the linear notebook draw what they promise, returning nothing (so that
Jupyter does not show a figure twice)?"""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from data_tools.linear_plots import plot_activation_histograms, plot_angles, plot_epoch_losses, plot_error_vs_k

pytestmark = pytest.mark.usefixtures("figures")


def test_epoch_losses_one_line_per_curve_against_epochs():
    """Does plot_epoch_losses draw each named curve over epochs 1..n?"""
    assert plot_epoch_losses({"train": [3.0, 2.0, 1.0], "test": torch.tensor([3.5, 2.5, 1.5])}) is None
    ax = plt.gcf().axes[0]
    assert [line.get_label() for line in ax.lines] == ["train", "test"]
    assert list(ax.lines[0].get_xdata()) == [1, 2, 3] and ax.get_xlabel() == "epoch"


def test_error_vs_k_curve_and_points():
    """Does plot_error_vs_k draw PCA's curve over k = 1.. and a marker per point?"""
    plot_error_vs_k([0.1, 0.05, 0.03], {"linear AE, k = 2": (2, 0.051)})
    ax = plt.gcf().axes[0]
    assert list(ax.lines[0].get_xdata()) == [1, 2, 3]
    assert ax.collections[0].get_offsets().tolist() == [[2.0, 0.051]]


def test_angles_one_bar_each_in_degrees():
    """Does plot_angles draw one bar per angle on a 0-90 degree axis?"""
    plot_angles(torch.tensor([1.0, 5.0, 30.0]))
    ax = plt.gcf().axes[0]
    assert [p.get_height() for p in ax.patches] == pytest.approx([1.0, 5.0, 30.0])
    assert ax.get_ylim() == (0.0, 90.0)


def test_activation_histograms_state_the_share_below_the_threshold():
    """Does each histogram panel state its share of activations below the threshold?"""
    sparse = np.r_[np.full(90, 0.01), np.full(10, 0.9)]
    plot_activation_histograms({"sparse": sparse, "plain": np.full(100, 0.5)}, threshold=0.1)
    titles = [ax.get_title() for ax in plt.gcf().axes]
    assert titles[0].startswith("sparse: 90% below 0.1") and titles[1].startswith("plain: 0% below 0.1")
