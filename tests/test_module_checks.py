"""Does the generic module check (autograder/checks/modules.py) look twice before it accuses a
model of ignoring its input (units dead at initialisation), and name the layers that forward
never uses when a shape or gradient step fails, for every notebook that uses it?"""
from __future__ import annotations

import contextlib
import io
import re

import pytest
import torch
from torch import nn

from autograder import CheckFailure, dae
from autograder.checks import vae
from autograder.checks.modules import reinitialised


def words(phrase: str) -> str:
    """A regex for ``phrase`` that also matches it broken over the lines of a wrapped message."""
    return r"\s+".join(re.escape(word) for word in phrase.split())


class DeadHeadsEncoder(nn.Module):
    """A VAE encoder with ReLU heads shifted by -5: both all zero at initialisation for inputs
    of the usual size, so z_mean and z_logvar look identical."""

    def __init__(self, n_components):
        super().__init__()
        self.hidden = nn.Linear(784, 64)
        self.mean = nn.Linear(64, n_components)
        self.logvar = nn.Linear(64, n_components)

    def forward(self, x):
        h = torch.relu(self.hidden(x.flatten(1)))
        return torch.relu(self.mean(h) - 5.0), torch.relu(self.logvar(h) - 5.0)


def test_vae_heads_dead_at_initialisation_pass():
    """Does a VAE encoder whose two heads are dead at initialisation pass, instead of being
    told that z_mean and z_logvar are identical?"""
    vae.check_encoder(DeadHeadsEncoder)


class SharedHeadEncoder(DeadHeadsEncoder):
    def forward(self, x):
        z = self.mean(torch.relu(self.hidden(x.flatten(1))))
        return z, z


def test_identical_heads_still_fail():
    """Does an encoder that returns one head twice still fail as identical?"""
    with pytest.raises(CheckFailure, match=words("z_mean and z_logvar are identical")):
        vae.check_encoder(SharedHeadEncoder)


class UnusedLogvarDecoder(nn.Module):
    """A VAE decoder with a y_logvar layer that forward never calls."""

    def __init__(self, n_components):
        super().__init__()
        self.mean = nn.Linear(n_components, 784)
        self.logvar = nn.Linear(n_components, 784)

    def forward(self, z):
        y_mean = self.mean(z).view(-1, 1, 28, 28)
        return y_mean, torch.zeros_like(y_mean)


class DetachedLogvarDecoder(UnusedLogvarDecoder):
    def forward(self, z):
        y_mean = self.mean(z).view(-1, 1, 28, 28)
        return y_mean, self.logvar(z).detach().view(-1, 1, 28, 28).clamp(min=-6.0)


@pytest.mark.parametrize("decoder, note", [
    (UnusedLogvarDecoder, "self.logvar (Linear) is never used in forward: its parameters got "
                          "no gradient (apply it in forward, or delete it)"),
    (DetachedLogvarDecoder, "self.logvar (Linear) is called in forward but its parameters got "
                            "no gradient: its result never reaches the outputs"),
], ids=["never called", "detached"])
def test_a_failed_gradient_step_names_the_layer_without_gradient(decoder, note):
    """Does a y_logvar cut off from the parameters name the layer meant to compute it, and say
    whether forward never calls it or calls it and cuts its result off?"""
    with pytest.raises(CheckFailure, match=words("y_logvar does not depend on the model's "
                                                 "parameters")) as info:
        vae.check_decoder(decoder)
    assert f"hint: {note}; do not use .detach()" in " ".join(str(info.value).split())


def test_reinitialised_copies_leave_the_model_alone():
    """Does a fresh initialisation for the second look draw new parameters in a copy, in the
    same mode, leaving the model and the caller's random state as they were?"""
    model = DeadHeadsEncoder(2).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    state = torch.random.get_rng_state()
    fresh = reinitialised(model, 0)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert fresh is not model and not fresh.training
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    assert not torch.equal(fresh.mean.weight, model.mean.weight)
    again = reinitialised(model, 0)
    assert torch.equal(again.mean.weight, fresh.mean.weight)


def test_the_second_look_leaves_the_random_state_alone():
    """Does check_dae on a model that needs the second look leave torch's global random state
    as it found it?"""
    from corpus.variants import VARIANTS

    namespace = {"torch": torch, "nn": nn}
    exec(VARIANTS["dae_gated_after_batchnorm"].cell, namespace)
    torch.manual_seed(3)
    before = torch.random.get_rng_state()
    with contextlib.redirect_stdout(io.StringIO()):
        dae.check_dae(namespace["DAE"], n_components_list=(2,), batch_sizes=(1,))
    assert torch.equal(torch.random.get_rng_state(), before)


def test_corpus_variants_fit_their_notebooks():
    """Does every variant of tests/corpus/variants.py replace a solution cell of its notebook
    with a cell that compiles and has no nbgrader markers, and list points for exactly that
    notebook's grade cells, none above the cell's own?"""
    import json

    from conftest import SOLUTIONS
    from corpus.variants import KNOWN_GAPS, MESSAGES, VARIANTS

    for name, v in VARIANTS.items():
        cells = json.loads((SOLUTIONS / f"{v.notebook}.ipynb").read_text())["cells"]
        meta = {c["metadata"]["nbgrader"]["grade_id"]: c["metadata"]["nbgrader"]
                for c in cells if "nbgrader" in c["metadata"]}
        assert meta[v.grade_id]["solution"], name
        graded = {k: m["points"] for k, m in meta.items() if m.get("grade")}
        assert set(v.points) == set(graded), name
        assert all(0 <= v.points[k] <= graded[k] for k in graded), name
        assert v.weights in ("reference", "untrained") and v.provenance, name
        assert "### BEGIN" not in v.cell and "### END" not in v.cell, name
        compile(v.cell, name, "exec")
    assert set(MESSAGES) <= set(VARIANTS) and set(KNOWN_GAPS) <= set(VARIANTS)
