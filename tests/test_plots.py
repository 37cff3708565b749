"""Do the plot helpers draw what they promise, quickly, without returning a figure that
Jupyter would show a second time?"""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from data_tools import plot_embeddings, plot_images, plot_loss, plot_rows

pytestmark = pytest.mark.usefixtures("figures")


def _images_drawn() -> list:
    return [im for ax in plt.gcf().axes for im in ax.get_images()]


def test_plot_images_draws_each_image_in_a_grid():
    """Does a grid of 12 images in rows of 5 draw 12 images on 15 axes, returning nothing?"""
    assert plot_images(torch.rand(12, 1, 28, 28), ncol=5) is None
    assert len(plt.gcf().axes) == 15
    assert len(_images_drawn()) == 12


def test_symmetric_range_for_signed_images():
    """Are negative images shown with a diverging colormap and a range symmetric about 0?"""
    x = torch.randn(4, 1, 28, 28) * 3
    plot_images(x, ncol=4, symmetric=True)
    image = _images_drawn()[0]
    low, high = image.get_clim()
    assert low == pytest.approx(-high) and high == pytest.approx(float(x.abs().max()))
    assert image.get_cmap().name == "bwr"


def test_plot_rows_labels_each_row():
    """Does plot_rows put the rows one under the other with their names?"""
    plot_rows({"input": torch.rand(3, 1, 28, 28), "output": torch.rand(3, 1, 28, 28)}, n=3)
    labels = [ax.get_ylabel() for ax in plt.gcf().axes if ax.get_ylabel()]
    assert labels == ["input", "output"] and len(_images_drawn()) == 6


def test_plot_embeddings_bounds_the_points():
    """Does the t-SNE plot embed at most max_points codes, coloured by label?"""
    codes = np.random.default_rng(0).normal(size=(400, 5))
    plot_embeddings(codes, np.arange(400) % 10, max_points=120)
    scatter = plt.gcf().axes[0].collections[0]
    assert len(scatter.get_offsets()) == 120


def test_plot_embeddings_under_the_grader_projects_instead_of_tsne(monkeypatch):
    """Under the grader, does the embedding plot show the first two principal components of the
    codes (500 of them), saying so, rather than spend seconds on t-SNE?"""
    import sklearn.manifold

    monkeypatch.setenv("NBGRADER_EXECUTION", "validate")
    monkeypatch.setattr(sklearn.manifold, "TSNE", None)  # t-SNE would fail here
    codes = np.random.default_rng(0).normal(size=(800, 5)) * np.array([5.0, 3.0, 1.0, 1.0, 1.0])
    plot_embeddings(codes, np.arange(800) % 10)
    ax = plt.gcf().axes[0]
    xy = ax.collections[0].get_offsets()
    assert len(xy) == 500 and "principal components" in ax.get_title()
    assert np.std(xy[:, 0]) > np.std(xy[:, 1]) > 1.5  # the two directions of largest variance


def test_plot_loss_draws_named_curves():
    """Does plot_loss draw one line per named curve with its values?"""
    plot_loss({"KL": [3, 2, 1], "NLL": [5, 4, 3, 2]})
    lines = plt.gcf().axes[0].get_lines()
    assert [len(line.get_xdata()) for line in lines] == [3, 4]


def test_plot_curves_draws_one_line_per_curve():
    """Does plot_curves draw each named curve through its points, with a log x axis on request?"""
    from data_tools import plot_curves

    assert plot_curves([1, 3, 10], {"a": [0.1, 0.5, 0.9], "b": [0.2, 0.3, 0.4]}, xlabel="n",
                       ylabel="accuracy", logx=True, marker="o") is None
    ax = plt.gcf().axes[0]
    lines = ax.get_lines()
    assert [line.get_label() for line in lines] == ["a", "b"]
    assert list(lines[0].get_ydata()) == [0.1, 0.5, 0.9]
    assert ax.get_xscale() == "log"


def test_plot_curves_rejects_a_curve_of_the_wrong_length():
    """Does a curve with fewer values than x values get an error naming the curve?"""
    from data_tools import plot_curves

    with pytest.raises(ValueError, match="curve 'a' has 2 values for 3 x values"):
        plot_curves([1, 2, 3], {"a": [0.1, 0.2]}, xlabel="x", ylabel="y")


def test_autograde_draws_no_figure_unless_asked(monkeypatch, capsys):
    """While ``nbgrader autograde`` runs a notebook (no grade depends on a figure), does every
    plot helper print one line that says so instead of drawing, and draw again with
    ``AUTOGRADER_FIGURES=draw``, under ``validate`` and in the student's own run?"""
    import data_tools
    from data_tools import linear_plots, variance

    helpers = [getattr(data_tools.plots, n) for n in dir(data_tools.plots) if n.startswith("plot_")]
    helpers += [getattr(linear_plots, n) for n in dir(linear_plots) if n.startswith("plot_")]
    helpers += [variance.plot_variance_samples]
    monkeypatch.setenv("NBGRADER_EXECUTION", "autograde")
    for helper in helpers:  # arguments that would fail if the helper drew anything
        assert helper(None, None) is None
    assert plt.get_fignums() == []
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(helpers) == 14
    assert all("no figure while nbgrader autograde grades" in line for line in lines)
    images = np.zeros((3, 784))
    for environ in ({"AUTOGRADER_FIGURES": "draw"}, {"NBGRADER_EXECUTION": "validate"},
                    {"NBGRADER_EXECUTION": ""}):
        for name, value in environ.items():
            monkeypatch.setenv(name, value)
        data_tools.plot_rows({"input": images, "output": images}, n=3)
        assert len(_images_drawn()) == 6
        plt.close("all")
        monkeypatch.delenv("AUTOGRADER_FIGURES", raising=False)
