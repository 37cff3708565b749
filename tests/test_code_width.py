"""Does every graded code have exactly the notebook's code size (the manifest's n_components,
n_hidden for the sparse autoencoder), whatever the settings cell or the test cell says, and does
the grader decide it where it collects the first stage's outputs, before any decoder sees them?

An encoder whose code is the image itself (784 columns), or a hand-made feature wider than the
bottleneck, carries untrained weights over the probe and reconstruction bars (docs/security.md).
The end-to-end tests grade such submissions with real nbgrader (tests/test_tamper_e2e.py,
tests/test_bestiary_e2e.py).
"""
from __future__ import annotations

import importlib

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from autograder.checks import ae, dae, evidence, linear
from autograder.checks.core import CheckFailure
from autograder.checks.evaluation import check_code_width
from autograder.grading import judged
from autograder.manifest import check_modules, notebook

#: The first stage's outputs that are codes, by evaluation, with the setting that sizes them
#: and its value in the manifest. The classifiers' evaluation returns logits: no code.
EXPECTED = {
    "ae": (("z_train", "z_test"), "n_components", notebook("ae").n_components),
    "dae": (("z_train", "z_test"), "n_components", notebook("dae").n_components),
    "vae": (("z_mean_train", "z_mean", "z_logvar"), "n_components", notebook("vae").n_components),
    "linear": (("z_test", "z_zero"), "n_components", notebook("linear").n_components),
    "sparse": (("z",), "n_hidden", notebook("linear").model_for("sparse_ae.pth").size),
    "latent": (("z_mean", "z_logvar"), "n_components", notebook("latent").n_components),
    "transfer_swap": (("z",), "n_components", notebook("transfer").n_components),
    "transfer_classifiers": None,
}


def _evaluations() -> dict:
    return {e.name: e for m in check_modules() for e in importlib.import_module(m).EVALUATIONS}


def test_every_evaluation_declares_its_codes_at_the_manifests_size():
    """Does every trained-model evaluation of the course name the first-stage outputs that are
    codes, sized by the manifest (10, 6, 64, 2, 16), so that the grader checks their width?"""
    found = {name: None if e.codes is None else (e.codes.outputs, e.codes.setting, e.codes.size)
             for name, e in _evaluations().items()}
    assert found == EXPECTED
    for name, e in _evaluations().items():
        assert set(e.codes.outputs if e.codes else ()) <= set(e.first.rows), name


@pytest.mark.parametrize("name", [n for n, v in EXPECTED.items() if v is not None])
def test_codes_of_any_other_width_are_refused(name):
    """Does each evaluation accept codes of exactly its size and refuse one column more, one
    less, the whole image and a 3-D code, with the four-part message naming the size?"""
    evaluation = _evaluations()[name]
    outputs, setting, size = EXPECTED[name]
    check_code_width(evaluation, {key: np.zeros((7, size), np.float32) for key in outputs})
    for shape in ((7, size + 1), (7, size - 1), (7, 784), (7, size, 1)):
        first = {key: np.zeros((7, size), np.float32) for key in outputs}
        first[outputs[-1]] = np.zeros(shape, np.float32)
        with pytest.raises(CheckFailure) as info:
            check_code_width(evaluation, first)
        message = str(info.value)
        assert f"the notebook's code size is {setting} = {size}\n" in message, message
        assert f"  expected codes of shape (N, {size})\n  got      shape {shape}\n  hint: " in message
        if len(shape) == 2:
            assert f"the codes have {shape[1]} columns" in message


class PixelEncoder(nn.Module):
    """The image itself as the code, whatever n_components says."""

    def __init__(self, n_components=10):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x):
        return x.flatten(1) * self.scale


class PixelDecoder(PixelEncoder):
    """The code back as an image."""

    def forward(self, z):
        return (z * self.scale).reshape(-1, 1, 28, 28)


class PooledDAE(nn.Module):
    """A hand-made feature of 196 columns as the code (2x2 means of |x|), the input as output."""

    def __init__(self, n_components=10):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x):
        return F.avg_pool2d(x.abs(), 2).flatten(1) * self.scale, x * self.scale


class PixelLinearAE(PixelEncoder):
    def encode(self, x):
        return x.flatten(1) * self.scale

    def decode(self, z):
        return (z * self.scale).reshape(-1, 1, 28, 28)


def test_evaluations_refuse_wide_codes_in_one_process():
    """Do the image as the AE's code, a 196-column feature as the DAE's and the image as the
    linear AE's (k read from the codes once) fail the evaluation at once, as they would in a
    student's kernel?"""
    from autograder.checks.data import mnist_sets

    trainset, testset = mnist_sets()
    with pytest.raises(CheckFailure, match="the codes have 784 columns; the notebook's code size "
                                           "is n_components = 10"):
        ae.evaluate_ae(PixelEncoder(), PixelDecoder(), trainset, testset)
    with pytest.raises(CheckFailure, match="the codes have 784 columns; the notebook's code size "
                                           "is n_components = 6"):
        linear.evaluate_linear_ae(PixelLinearAE(), trainset, testset)
    train, test = dae.evaluation_data()
    with pytest.raises(CheckFailure, match="the codes have 196 columns; the notebook's code size "
                                           "is n_components = 10"):
        dae.evaluate_dae(PooledDAE(), train, test)


def test_the_grader_refuses_wide_codes_before_any_decoder(tmp_path, modes, monkeypatch):
    """Does an AE whose code is the image, graded through a test cell that passes the student's
    n_components = 784, fail both trained cells where the grader collects the first stage's
    outputs, before any second stage is asked to decode them?"""
    monkeypatch.chdir(tmp_path)
    torch.save(PixelEncoder().state_dict(), tmp_path / "ae_encoder.pth")
    torch.save(PixelDecoder().state_dict(), tmp_path / "ae_decoder.pth")
    (tmp_path / "run").mkdir()
    run = judged._Run("autograder.checks.ae", ("ae_encoder.pth", "ae_decoder.pth"), tmp_path / "run")
    run.write_inputs()
    evidence.start_producing(str(run.shared))
    with pytest.raises(evidence.Deferred):
        ae.check_trained_ae_probe(PixelEncoder, PixelDecoder, 784)
    evidence._STATE.update(mode=None)
    produced = next((run.shared / "first").glob("*.eval.npz"))
    assert dict(np.load(produced))["z_test"].shape[1] == 784  # the producer recorded them
    run.collect_first()
    assert run.requests == []  # the decoder never sees them
    run.write_metas()
    evidence.start_judging(str(run.private))
    placeholders = evidence.Placeholder("Encoder"), evidence.Placeholder("Decoder")
    for check in (ae.check_trained_ae_probe, ae.check_trained_ae_reconstruction):
        with pytest.raises(CheckFailure, match="the codes have 784 columns; the notebook's code "
                                               "size is n_components = 10"):
            check(*placeholders, 784)
