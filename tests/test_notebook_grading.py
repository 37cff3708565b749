"""Do the source notebooks grade as the course says: points as in the manifest, one grade cell
per trained-model bar run in the visible part, the bars stated in every notebook, epochs that
follow the data, one training thread, and training code that runs on a given device?"""
from __future__ import annotations

import re

import nbformat
import numpy as np
import pytest
import torch
from conftest import SOLUTIONS

from autograder.checks.thresholds import EPOCHS, THRESHOLDS
from autograder.manifest import notebooks

NAMES = [nb.name for nb in notebooks("autoencoders")]
#: The total points of each notebook, as before the trained-model points were split.
TOTALS = {"ae": 8.0, "dae": 7.0, "vae": 13.0}
#: Each trained-model grade cell: the one check it calls.
TRAINED_CELLS = {
    "ae": {"test_ae_probe": "check_trained_ae_probe",
           "test_ae_reconstruction": "check_trained_ae_reconstruction"},
    "dae": {"test_dae_probe": "check_trained_dae_probe",
            "test_dae_denoising": "check_trained_dae_denoising"},
    "vae": {"test_vae_probe": "check_trained_vae_probe", "test_vae_loss": "check_trained_vae_loss"},
}
#: The bars each notebook must state, as written in its markdown (thresholds.py key, format).
BARS = {
    "ae": (("probe_accuracy", "≥ {:.2f}"), ("recon_mse", "≤ {:.3f}")),
    "dae": (("probe_accuracy", "≥ {:.2f}"), ("denoise_ratio", "≤ {:.2f}")),
    "vae": (("probe_accuracy", "≥ {:.2f}"), ("loss", "≤ {:.0f}")),
}


def _nb(name):
    return nbformat.read(SOLUTIONS / f"{name}.ipynb", as_version=4)


def _grade_cells(nb):
    return {c.metadata.nbgrader["grade_id"]: c for c in nb.cells
            if c.metadata.get("nbgrader", {}).get("grade")}


def _settings(nb):
    (cell,) = [c for c in nb.cells if c.cell_type == "code" and "nbgrader" not in c.metadata
               and "skip_training" in c.source]
    return cell.source


def _cell(nb, grade_id):
    (cell,) = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id]
    return cell.source


@pytest.mark.parametrize("name", NAMES)
def test_manifest_points_are_the_notebooks(name):
    """Are the manifest's points exactly the grade cells and points of the source notebook?"""
    (entry,) = [nb for nb in notebooks("autoencoders") if nb.name == name]
    cells = {gid: float(c.metadata.nbgrader["points"]) for gid, c in _grade_cells(_nb(name)).items()}
    assert cells == {gid: float(p) for gid, p in entry.points.items()}
    assert entry.total_points == TOTALS[name]


@pytest.mark.parametrize("name", NAMES)
def test_each_trained_bar_has_its_own_visible_cell(name):
    """Does every trained-model property have its own grade cell, worth 2 points, whose one
    check runs in the visible part (so that `nbgrader validate` sees it)?"""
    cells = _grade_cells(_nb(name))
    for grade_id, check in TRAINED_CELLS[name].items():
        source = cells[grade_id].source
        visible = source.split("### BEGIN HIDDEN TESTS")[0]
        assert f"checks.{check}(" in visible, (grade_id, source)
        assert len(re.findall(r"check_trained_\w+\(", source)) == 1, source
        assert cells[grade_id].metadata.nbgrader["points"] == 2
    others = [gid for gid, c in cells.items() if gid not in TRAINED_CELLS[name]]
    assert all("check_trained" not in cells[gid].source for gid in others)


@pytest.mark.parametrize("name", NAMES)
def test_every_bar_is_stated_in_the_notebook(name):
    """Does the notebook's markdown state each bar of each data source as thresholds.py has it,
    and do its evaluation and intro cells say how the points split?"""
    nb = _nb(name)
    text = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    for source in ("embedded", "mnist"):
        bars = THRESHOLDS[source][name]
        for key, form in BARS[name]:
            assert form.format(bars[key]) in text, (source, key, form.format(bars[key]))
        ref = bars["reference_accuracy"]
        assert f"about {ref:.2f}" in text, (source, ref)
    assert f"({TOTALS[name]:.0f} points)" in text
    assert "costs only its" in text
    assert "nbgrader validate" in text


@pytest.mark.parametrize("name", NAMES)
def test_epochs_follow_the_data(name, tmp_path, monkeypatch):
    """Does the settings cell pick the calibrated epochs for the embedded data, and fewer for
    full MNIST (a directory holding the four MNIST files)?"""
    from data_tools import mnist as mnist_module
    from data_tools.idx import write_idx

    source = _settings(_nb(name))
    assert "device = \"cuda\" if torch.cuda.is_available() else \"cpu\"" in source
    monkeypatch.delenv("MNIST_ROOT", raising=False)
    monkeypatch.setattr(mnist_module, "COURSEDATA", tmp_path / "no-coursedata")
    ns: dict = {}
    exec(source, ns)
    assert ns["n_epochs"] == EPOCHS["embedded"][name]
    for split, n in (("train", 60), ("t10k", 10)):
        write_idx(tmp_path / f"{split}-images-idx3-ubyte", np.zeros((n, 28, 28), np.uint8))
        write_idx(tmp_path / f"{split}-labels-idx1-ubyte", np.zeros(n, np.uint8))
    monkeypatch.setenv("MNIST_ROOT", str(tmp_path))
    ns = {}
    exec(source, ns)
    assert ns["n_epochs"] == EPOCHS["mnist"][name] < EPOCHS["embedded"][name]


@pytest.mark.parametrize("name", NAMES)
def test_setup_trains_on_one_thread(name):
    """Does every notebook's setup cell set one training thread (docs/calibration.md)?"""
    assert "torch.set_num_threads(1)" in _cell(_nb(name), f"{name}_setup")


# -- the training cells on a given device ---------------------------------------------------

def _small_sets(name):
    from torch.utils.data import Subset

    from data_tools import MNIST
    from data_tools.variance import VarianceMNIST

    train, test = MNIST(train=True, verbose=False), MNIST(train=False, verbose=False)
    if name != "ae":
        train, test = VarianceMNIST(train), VarianceMNIST(test, eval_seed=1002)
    return Subset(train, range(128)), Subset(test, range(64))


@pytest.mark.parametrize("name", NAMES)
def test_training_cell_runs_on_the_given_device(name, tmp_path, monkeypatch):
    """Does the solution's training cell, run with device = "cpu" set explicitly and one epoch
    on a small set, train, record a finite test loss per epoch, and save CPU weights that the
    grader's loader reads?"""
    import matplotlib

    from autograder.grading.course import definitions
    from autograder.manifest import notebook

    matplotlib.use("Agg")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("NBGRADER_EXECUTION", raising=False)
    nb = _nb(name)
    ns = definitions(nb)
    threads = torch.get_num_threads()
    try:
        exec(_settings(nb), ns)
        exec(_cell(nb, f"{name}_setup"), ns)
        trainset, testset = _small_sets(name)
        ns.update(device="cpu", n_epochs=1, trainset=trainset, testset=testset,
                  skip_training=False)
        exec(_cell(nb, f"{name}_training"), ns)
    finally:
        torch.set_num_threads(threads)
    assert len(ns["test_losses"]) == 1 and np.isfinite(ns["test_losses"][0])
    entry = notebook(name)
    for model in entry.models:
        state = torch.load(tmp_path / model.weights, weights_only=True)
        assert {t.device.type for t in state.values()} == {"cpu"}
        ns["load_model"](model.build(ns, entry.n_components), tmp_path / model.weights)


def test_dataset_loss_restores_modes_and_averages():
    """Does dataset_loss average over every element, in eval mode, and restore each model's mode?"""
    from torch.utils.data import TensorDataset

    from data_tools import dataset_loss

    x = torch.arange(10, dtype=torch.float32).reshape(10, 1, 1, 1)
    data = TensorDataset(x, torch.zeros(10))
    net = torch.nn.Sequential(torch.nn.Dropout(0.5))
    other = torch.nn.Linear(1, 1).eval()
    seen = []
    loss = dataset_loss(lambda b: (seen.append(net.training) or net(b)).mean(), data, net, other,
                        batch_size=3)
    assert loss == pytest.approx(4.5)  # the mean of 0..9: Dropout is off in eval mode
    assert seen == [False] * 4 and net.training and not other.training


@pytest.mark.skipif(not torch.cuda.is_available(),
                    reason="needs a CUDA device; scripts/gpu_check.sh checks this on a GPU machine")
def test_save_model_moves_cuda_weights_to_the_cpu(tmp_path):
    """Does save_model save a CUDA model's weights as CPU tensors, leaving the model on the GPU?"""
    from data_tools import save_model

    model = torch.nn.Linear(3, 2).to("cuda")
    save_model(model, tmp_path / "w.pth")
    state = torch.load(tmp_path / "w.pth", weights_only=True)
    assert {t.device.type for t in state.values()} == {"cpu"}
    assert next(model.parameters()).device.type == "cuda"


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA device")
def test_gpu_check_fails_clearly_without_cuda(course_root):
    """Does scripts/gpu_check.sh stop at once, saying why, where no CUDA device exists?"""
    import subprocess
    import sys

    proc = subprocess.run(["bash", "scripts/gpu_check.sh"], cwd=course_root, capture_output=True,
                          text=True, timeout=300, env={"PATH": "/usr/bin:/bin", "PYTHON": sys.executable})
    assert proc.returncode == 1
    assert "gpu_check: no CUDA device: torch.cuda.is_available() is False" in proc.stderr
