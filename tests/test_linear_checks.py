"""Tests of the checks of bestiary/linear.ipynb: the solution passes, correct alternatives pass,
and each named mistake fails with the hint that names it."""
from __future__ import annotations

import json
import math
import re

import nbformat
import pytest
import torch
from conftest import COURSE_ROOT, definitions
from torch import nn
from torch.distributions import Bernoulli, kl_divergence

import autograder.checks.linear as checks
from autograder.checks.core import CheckFailure, NotImplementedYet
from autograder.checks.thresholds import THRESHOLDS
from autograder.manifest import notebook

SOURCE = COURSE_ROOT / "solutions" / "bestiary" / "linear.ipynb"


@pytest.fixture(scope="module")
def solution():
    return definitions(SOURCE)


def test_solution_notebook_passes_every_check(solution):
    """Do the solution's definitions pass every check, with the hidden tests' seeds?"""
    for seed in (0, 1, 2):
        checks.check_pca(solution["pca"], seed=seed)
        checks.check_l1_penalty(solution["l1_penalty"], seed=seed)
        checks.check_kl_sparsity(solution["kl_sparsity"], seed=seed)
    checks.check_linear_autoencoder(solution["LinearAutoencoder"])
    checks.check_linear_autoencoder(solution["LinearAutoencoder"], seed=1, n_components_list=(1, 6, 32),
                                    batch_sizes=(2, 17))
    checks.check_sparse_autoencoder(solution["SparseAutoencoder"])
    checks.check_sparse_autoencoder(solution["SparseAutoencoder"], seed=1, n_hidden_list=(5, 100),
                                    batch_sizes=(2, 9))


# ---------------------------------------------------------------------------------------------
# pca
# ---------------------------------------------------------------------------------------------

def pca_svd(X, k):
    mean = X.mean(0)
    _, S, Vh = torch.linalg.svd(X - mean, full_matrices=False)
    return mean, Vh[:k], S[:k] ** 2 / X.shape[0]


def pca_eigh(X, k):
    mean = X.mean(0)
    Xc = X - mean
    values, vectors = torch.linalg.eigh(Xc.T @ Xc / (X.shape[0] - 1))
    order = torch.argsort(values, descending=True)[:k]
    return mean, vectors[:, order].T, values[order]


def pca_lowrank(X, k):
    U, S, V = torch.pca_lowrank(X, q=k, center=True)
    return X.mean(0), V.T, S ** 2 / (X.shape[0] - 1)


def pca_float64(X, k):
    mean, comps, var = pca_svd(X.double(), k)
    return mean, comps, var


def pca_flip_sign(X, k):
    mean, comps, var = pca_svd(X, k)
    return mean, -comps, var


@pytest.mark.parametrize("fn", [pca_svd, pca_eigh, pca_lowrank, pca_float64, pca_flip_sign])
def test_alternative_pca_passes(fn):
    """Do SVD, eigh with reordering, torch.pca_lowrank, float64 and flipped signs all pass?"""
    for seed in (0, 1, 2):
        checks.check_pca(fn, seed=seed)


def pca_not_centred(X, k):
    _, S, Vh = torch.linalg.svd(X, full_matrices=False)
    return X.mean(0), Vh[:k], S[:k] ** 2 / X.shape[0]


def pca_columns(X, k):
    mean, comps, var = pca_svd(X, k)
    return mean, comps.T, var


def pca_eigh_unordered(X, k):
    mean = X.mean(0)
    values, vectors = torch.linalg.eigh((X - mean).T @ (X - mean) / X.shape[0])
    return mean, vectors[:, :k].T, values[:k]


def pca_increasing(X, k):
    mean, comps, var = pca_svd(X, k)
    return mean, comps.flip(0), var.flip(0)


def pca_singular_values(X, k):
    mean = X.mean(0)
    _, S, Vh = torch.linalg.svd(X - mean, full_matrices=False)
    return mean, Vh[:k], S[:k]


def pca_squares(X, k):
    mean = X.mean(0)
    _, S, Vh = torch.linalg.svd(X - mean, full_matrices=False)
    return mean, Vh[:k], S[:k] ** 2


def pca_in_place(X, k):
    mean = X.mean(0)
    X -= mean
    return pca_svd(X + mean, k)


def pca_scaled(X, k):
    mean = X.mean(0)
    _, S, Vh = torch.linalg.svd(X - mean, full_matrices=False)
    return mean, S[:k, None] * Vh[:k], S[:k] ** 2 / X.shape[0]


def pca_all_rows(X, k):
    mean = X.mean(0)
    _, S, Vh = torch.linalg.svd(X - mean, full_matrices=False)
    return mean, Vh, S ** 2 / X.shape[0]


def pca_no_mean(X, k):
    _, comps, var = pca_svd(X, k)
    return torch.zeros(X.shape[1]), comps, var


def pca_stub(X, k):
    raise NotImplementedError()


@pytest.mark.parametrize("fn, hint", [
    (pca_not_centred, "not centred"),
    (pca_columns, "components must be ROWS"),
    (pca_eigh_unordered, "SMALLEST variance"),
    (pca_increasing, "DECREASING variance"),
    (pca_singular_values, "these are the singular values S"),
    (pca_squares, "squared singular values"),
    (pca_in_place, "in-place operations"),
    (pca_scaled, "scaled by the singular values"),
    (pca_all_rows, "keep only the first n_components"),
    (pca_no_mean, r"X.mean\(dim=0\)"),
], ids=lambda v: v.__name__ if callable(v) else "")
def test_wrong_pca_is_named(fn, hint):
    """Does each classic PCA mistake fail with the hint that names it?"""
    with pytest.raises(CheckFailure, match=hint):
        checks.check_pca(fn)


def test_pca_stub_reads_not_implemented_yet():
    """Does the untouched stub read as "not implemented yet"?"""
    with pytest.raises(NotImplementedYet, match="not implemented yet"):
        checks.check_pca(pca_stub)


def test_pca_message_has_four_parts():
    """Does a failed pca check say what was tried, expected, got, and give a hint?"""
    with pytest.raises(CheckFailure) as info:
        checks.check_pca(pca_squares)
    text = str(info.value)
    assert "pca(X, n_components=3)" in text and "(40, 12)" in text
    assert "\n  expected " in text and "\n  got      " in text and "\n  hint: " in text


# ---------------------------------------------------------------------------------------------
# LinearAutoencoder
# ---------------------------------------------------------------------------------------------

class LinearAE(nn.Module):
    def __init__(self, n_components, bias=True):
        super().__init__()
        self.enc = nn.Linear(784, n_components, bias=bias)
        self.dec = nn.Linear(n_components, 784, bias=bias)

    def encode(self, x):
        return self.enc(x.flatten(1))

    def decode(self, z):
        return self.dec(z).reshape(-1, 1, 28, 28)

    def forward(self, x):
        return self.decode(self.encode(x))


class NoBiasAE(LinearAE):
    def __init__(self, n_components):
        super().__init__(n_components, bias=False)


class CentringAE(NoBiasAE):
    """Linear maps around a stored mean image: affine, without nn.Linear biases."""

    def __init__(self, n_components):
        super().__init__(n_components)
        self.register_buffer("mean", torch.full((784,), 0.13))

    def encode(self, x):
        return self.enc(x.flatten(1) - self.mean)

    def decode(self, z):
        return (self.dec(z) + self.mean).reshape(-1, 1, 28, 28)


class ReluAE(LinearAE):
    def encode(self, x):
        return torch.relu(self.enc(x.flatten(1)))


class SigmoidOutputAE(LinearAE):
    def decode(self, z):
        return torch.sigmoid(self.dec(z)).reshape(-1, 1, 28, 28)


class Hardcoded10AE(LinearAE):
    def __init__(self, n_components):
        super().__init__(10)


class ForwardEncodesOnlyAE(LinearAE):
    def forward(self, x):
        return self.dec(self.enc(x.flatten(1))).reshape(-1, 1, 28, 28) * 2


class NoDecodeAE(nn.Module):
    def __init__(self, n_components):
        super().__init__()
        self.enc = nn.Linear(784, n_components)

    def encode(self, x):
        return self.enc(x.flatten(1))


class StubAE(nn.Module):
    def __init__(self, n_components):
        super().__init__()
        raise NotImplementedError()


@pytest.mark.parametrize("cls", [LinearAE, NoBiasAE, CentringAE])
def test_alternative_linear_autoencoder_passes(cls):
    """Do an AE with biases, one with bias=False and one centring with a stored mean pass?"""
    checks.check_linear_autoencoder(cls)
    checks.check_linear_autoencoder(cls, seed=1, n_components_list=(1, 6, 32), batch_sizes=(2, 17))


@pytest.mark.parametrize("cls, hint", [
    (ReluAE, r"has no nonlinearity: encode must be one affine map"),
    (SigmoidOutputAE, r"has no nonlinearity: decode must be one affine map.*as after a ReLU or a sigmoid"),
    (Hardcoded10AE, "the code has 10 columns for n_components=2"),
    (ForwardEncodesOnlyAE, r"forward must return self.decode\(self.encode\(x\)\)"),
    (NoDecodeAE, "no method decode"),
], ids=lambda v: v.__name__ if isinstance(v, type) else "")
def test_wrong_linear_autoencoder_is_named(cls, hint):
    """Does each wrong linear AE fail with the hint that names its mistake?"""
    with pytest.raises(CheckFailure, match=hint):
        checks.check_linear_autoencoder(cls)


def test_linear_autoencoder_stub_reads_not_implemented_yet():
    """Does the untouched class read as "not implemented yet"?"""
    with pytest.raises(NotImplementedYet):
        checks.check_linear_autoencoder(StubAE)


# ---------------------------------------------------------------------------------------------
# l1_penalty and kl_sparsity
# ---------------------------------------------------------------------------------------------

def l1(z):
    return z.abs().sum(1).mean()


def l1_float64(z):
    return l1(z.double())


def l1_norm(z):
    return torch.linalg.vector_norm(z, ord=1, dim=1).mean()


@pytest.mark.parametrize("fn", [l1, l1_float64, l1_norm])
def test_alternative_l1_passes(fn):
    """Do equivalent L1 penalties pass?"""
    for seed in (0, 1):
        checks.check_l1_penalty(fn, seed=seed)


@pytest.mark.parametrize("fn, hint", [
    (lambda z: z.abs().mean(), "average over the units instead of summing"),
    (lambda z: z.abs().sum(), "sum over the batch instead of averaging"),
    (lambda z: z.sum(1).mean(), "forget the absolute value"),
    (lambda z: (z ** 2).sum(1).mean(), "squared L2 norm"),
    (lambda z: z.abs().sum(1), "missing a mean over the batch"),
    (lambda z: float(z.abs().sum(1).mean()), "not .item()"),
    (lambda z: z.abs().sum(1).mean().detach(), "not differentiable"),
], ids=["unit_mean", "batch_sum", "no_abs", "squares", "per_sample", "python_float", "detached"])
def test_wrong_l1_is_named(fn, hint):
    """Does each wrong L1 penalty fail with the hint that names its mistake?"""
    with pytest.raises(CheckFailure, match=hint):
        checks.check_l1_penalty(fn)


def kl(rho, z):
    rho_hat = z.mean(0)
    return (rho * torch.log(rho / rho_hat) + (1 - rho) * torch.log((1 - rho) / (1 - rho_hat))).sum()


def kl_distributions(rho, z):
    rho_hat = z.mean(0)
    return kl_divergence(Bernoulli(probs=torch.full_like(rho_hat, rho)), Bernoulli(probs=rho_hat)).sum()


def kl_clamped(rho, z):
    rho_hat = z.mean(0).clamp(1e-7, 1 - 1e-7)
    return kl(rho, rho_hat[None])


def kl_float64(rho, z):
    return kl(rho, z.double())


@pytest.mark.parametrize("fn", [kl, kl_distributions, kl_clamped, kl_float64])
def test_alternative_kl_passes(fn):
    """Do equivalent KL penalties (torch.distributions, a clamped rho_hat, float64) pass?"""
    for seed in (0, 1, 2):
        checks.check_kl_sparsity(fn, seed=seed)


def kl_terms(rho, rho_hat):
    return rho * torch.log(rho / rho_hat) + (1 - rho) * torch.log((1 - rho) / (1 - rho_hat))


@pytest.mark.parametrize("fn, hint", [
    (lambda rho, z: kl_terms(rho, z).sum(1).mean(), "each sample's activation z\\[i, j\\] as rho_hat"),
    (lambda rho, z: kl_terms(rho, z).sum(), "each sample's activation"),
    (lambda rho, z: (z.mean(0) * torch.log(z.mean(0) / rho)
                     + (1 - z.mean(0)) * torch.log((1 - z.mean(0)) / (1 - rho))).sum(),
     "arguments of the KL swapped"),
    (lambda rho, z: (rho * torch.log(rho / z.mean(0))).sum(), r"\(1 - rho\) term missing"),
    (lambda rho, z: kl_terms(rho, z.mean(0)).mean(), "average over the hidden units"),
    (lambda rho, z: kl_terms(rho, z.mean(0)), "reduce to a single number"),
], ids=["per_sample_mean", "per_sample_sum", "swapped", "one_minus_missing", "unit_mean", "vector"])
def test_wrong_kl_is_named(fn, hint):
    """Does each wrong KL penalty fail with the hint that names its mistake?"""
    with pytest.raises(CheckFailure, match=hint):
        checks.check_kl_sparsity(fn)


def test_kl_hand_value():
    """Is the value the check works out by hand the one torch.distributions gives?"""
    value = 2 * (0.05 * math.log(0.1) + 0.95 * math.log(1.9))
    assert value == pytest.approx(float(kl_distributions(0.05, torch.full((4, 2), 0.5))), rel=1e-6)
    assert value == pytest.approx(0.989264, abs=1e-6)


# ---------------------------------------------------------------------------------------------
# SparseAutoencoder
# ---------------------------------------------------------------------------------------------

class SparseAE(nn.Module):
    def __init__(self, n_hidden):
        super().__init__()
        self.enc = nn.Linear(784, n_hidden)
        self.dec = nn.Linear(n_hidden, 784)

    def encode(self, x):
        return torch.sigmoid(self.enc(x.flatten(1)))

    def decode(self, z):
        return self.dec(z).reshape(-1, 1, 28, 28)

    def forward(self, x):
        z = self.encode(x)
        return z, self.decode(z)


class ReluSparseAE(SparseAE):
    def encode(self, x):
        return torch.relu(self.enc(x.flatten(1)))


class SwappedSparseAE(SparseAE):
    def forward(self, x):
        z, xrec = super().forward(x)
        return xrec, z


class FlatSparseAE(SparseAE):
    def forward(self, x):
        z, xrec = super().forward(x)
        return z, xrec.flatten(1)


class ForwardOnlySparseAE(nn.Module):
    """The tuple (z, xrec) from forward alone, without encode and decode."""

    def __init__(self, n_hidden):
        super().__init__()
        self.enc = nn.Linear(784, n_hidden)
        self.dec = nn.Linear(n_hidden, 784)

    def forward(self, x):
        z = torch.sigmoid(self.enc(x.flatten(1)))
        return z, self.dec(z).reshape(-1, 1, 28, 28)


class OwnPathSparseAE(SparseAE):
    """forward's reconstruction is not decode's (here: half of it is the input itself)."""

    def forward(self, x):
        z = self.encode(x)
        return z, 0.5 * (x + self.decode(z))


def test_alternative_sparse_autoencoder_passes():
    """Does a linear-output sparse AE pass?"""
    checks.check_sparse_autoencoder(SparseAE)


@pytest.mark.parametrize("cls, hint", [
    (ReluSparseAE, "apply torch.sigmoid to the hidden layer"),
    (SwappedSparseAE, "the hidden activations first"),
    (FlatSparseAE, r"reshape the flat output to \(batch_size, 1, 28, 28\)"),
    (ForwardOnlySparseAE, "define encode inside the class"),
    (OwnPathSparseAE, r"forward must return z = self.encode\(x\) and self.decode\(z\)"),
], ids=["relu", "swapped", "flat", "forward_only", "own_path"])
def test_wrong_sparse_autoencoder_is_named(cls, hint):
    """Does each wrong sparse AE fail with the hint that names its mistake?"""
    with pytest.raises(CheckFailure, match=hint):
        checks.check_sparse_autoencoder(cls)


# ---------------------------------------------------------------------------------------------
# The trained-model checks, on models built by hand
# ---------------------------------------------------------------------------------------------

K = 6


@pytest.fixture(scope="module")
def data():
    return checks.evaluation_data()


def _pca_ae(trainset, centred=True):
    x = trainset.x.flatten(1).double()
    mean = x.mean(0) if centred else torch.zeros(784, dtype=torch.float64)
    _, _, vh = torch.linalg.svd(x - mean, full_matrices=False)
    model = LinearAE(K, bias=centred)
    with torch.no_grad():
        # an arbitrary invertible mixing A of the principal basis: the AE need not be orthogonal
        a = torch.eye(K, dtype=torch.float64) + 0.3 * torch.ones(K, K, dtype=torch.float64)
        model.enc.weight.copy_(torch.linalg.inv(a) @ vh[:K])
        model.dec.weight.copy_(vh[:K].T @ a)
        if centred:
            model.enc.bias.copy_(-(torch.linalg.inv(a) @ vh[:K] @ mean))
            model.dec.bias.copy_(mean)
    return model


@pytest.mark.slow
@pytest.mark.parametrize("centred", [True, False], ids=["with_bias", "bias_false"])
def test_pca_weights_pass_the_trained_linear_checks(data, tmp_path, centred, capsys):
    """Does a linear AE set to PCA (any basis; with or without biases) get angle 0 and ratio 1?"""
    trainset, testset = data
    model = _pca_ae(trainset, centred)
    result = checks.evaluate_linear_ae(model, trainset, testset)
    assert result["centred"] is centred
    assert result["max_angle"] < 0.1 and result["error_ratio"] == pytest.approx(1.0, abs=1e-4)
    path = tmp_path / "linear_ae.pth"
    torch.save(model.state_dict(), path)
    cls = LinearAE if centred else NoBiasAE
    checks.check_trained_linear_subspace(cls, K, trainset=trainset, testset=testset, path=str(path))
    checks.check_trained_linear_error(cls, K, trainset=trainset, testset=testset, path=str(path))
    assert "required <= 30.0" in capsys.readouterr().out


def test_untrained_linear_ae_fails_with_numbers(data, tmp_path):
    """Does a random linear AE fail both trained checks with got / required / reference?"""
    trainset, testset = data
    torch.manual_seed(0)
    path = tmp_path / "linear_ae.pth"
    torch.save(LinearAE(K).state_dict(), path)
    with pytest.raises(CheckFailure, match=r"too large\n  expected <= 30.0 \(reference about .*\) "
                                           r"degrees\n  got      8\d\.\d degrees"):
        checks.check_trained_linear_subspace(LinearAE, K, trainset=trainset, testset=testset,
                                             path=str(path))
    with pytest.raises(CheckFailure, match="train longer"):
        checks.check_trained_linear_error(LinearAE, K, trainset=trainset, testset=testset, path=str(path))


def test_principal_angles_of_known_subspaces():
    """Are the principal angles of two planes at a known angle what geometry says?"""
    a = torch.tensor([[1.0, 0, 0, 0], [0, 1.0, 0, 0]])
    t = math.radians(30)
    b = torch.tensor([[1.0, 0, 0, 0], [0, math.cos(t), math.sin(t), 0]]) * 3
    angles = checks.principal_angles(a, b)
    assert angles.tolist() == pytest.approx([0.0, 30.0], abs=1e-4)


H = 64  # the notebook's n_hidden (the manifest's), the width of every graded code


class PcaSparseAE(nn.Module):
    """Hand-made: the top-H principal coefficients of the image, scaled down around 0.05 (every
    activation near 0.05, all of them carrying the image); decode inverts that exactly."""

    def __init__(self, n_hidden):
        super().__init__()
        self.mean = nn.Parameter(torch.zeros(784))
        self.basis = nn.Parameter(torch.zeros(n_hidden, 784))

    def encode(self, x):
        return 0.05 + 1e-3 * (x.flatten(1) - self.mean) @ self.basis.T

    def decode(self, z):
        return ((z - 0.05) / 1e-3 @ self.basis + self.mean).reshape(-1, 1, 28, 28)

    def forward(self, x):
        z = self.encode(x)
        return z, self.decode(z)


class ConstantCodeAE(PcaSparseAE):
    """The trick of a one-process evaluation: z = 0.05 for every unit and every image, and
    forward's reconstruction is its input; decode can only return the mean image."""

    def encode(self, x):
        return torch.full((len(x), self.basis.shape[0]), 0.05) + 0 * self.mean.sum()

    def decode(self, z):
        return self.mean.expand(len(z), 784).reshape(-1, 1, 28, 28)

    def forward(self, x):
        return self.encode(x), x


def _pca_sparse(model, trainset):
    x = trainset.x.flatten(1).double()
    _, _, vh = torch.linalg.svd(x - x.mean(0), full_matrices=False)
    with torch.no_grad():
        model.mean.copy_(x.mean(0))
        model.basis.copy_(vh[:H])
    return model


def test_sparse_evaluation_and_messages(data, tmp_path, capsys):
    """Does the sparse evaluation measure activations, errors and how much of the images the
    codes carry, and do the checks pass or fail them with their numbers?"""
    trainset, testset = data
    model = _pca_sparse(PcaSparseAE(H), trainset)
    result = checks.evaluate_sparse_ae(model, testset)
    assert result["activation_mean"] == pytest.approx(0.05, abs=1e-3) and result["low_share"] == 1.0
    assert result["code_readout"] > 0.8 and result["sparse_mse"] < 0.02, result
    path = tmp_path / "sparse_ae.pth"
    torch.save(model.state_dict(), path)
    for check in (checks.check_trained_sparse_activation, checks.check_trained_sparse_share,
                  checks.check_trained_sparse_error):
        check(PcaSparseAE, H, testset=testset, path=str(path))
    assert "average activation 0.050" in capsys.readouterr().out
    torch.manual_seed(0)
    torch.save(SparseAE(H).state_dict(), path)
    with pytest.raises(CheckFailure, match=r"average hidden activation.*\n  expected between"):
        checks.check_trained_sparse_activation(SparseAE, H, testset=testset, path=str(path))
    with pytest.raises(CheckFailure, match=r"a plain autoencoder of the same size has about"):
        checks.check_trained_sparse_share(SparseAE, H, testset=testset, path=str(path))


def test_constant_codes_and_an_identity_forward_lose_every_sparse_cell(data, tmp_path):
    """Do codes that are the same for every image (average 0.05, all below 0.1) fail both
    activation cells, saying that they carry nothing of the images, and does a forward that
    returns its input gain nothing, now that decode reconstructs from the codes alone?"""
    trainset, testset = data
    model = _pca_sparse(ConstantCodeAE(H), trainset)
    result = checks.evaluate_sparse_ae(model, testset)
    assert result["activation_mean"] == pytest.approx(0.05) and result["low_share"] == 1.0
    assert result["code_readout"] <= 0.0
    expected_mse = float(((testset.x - trainset.x.mean(0)) ** 2).mean())
    assert result["sparse_mse"] == pytest.approx(expected_mse, rel=1e-4)
    path = tmp_path / "sparse_ae.pth"
    torch.save(model.state_dict(), path)
    for check in (checks.check_trained_sparse_activation, checks.check_trained_sparse_share):
        with pytest.raises(CheckFailure, match=r"the hidden activations do not carry the test "
                                               r"images\n  expected a least-squares read-out .* "
                                               r">= 10%.*\n  got      -?0\.0%"):
            check(ConstantCodeAE, H, testset=testset, path=str(path))
    with pytest.raises(CheckFailure, match=r"reconstruction error of the trained sparse autoencoder"):
        checks.check_trained_sparse_error(ConstantCodeAE, H, testset=testset, path=str(path))


def test_sparse_codes_of_another_width_lose_every_sparse_cell(data, tmp_path):
    """Does a sparse AE whose codes are not n_hidden = 64 wide (the manifest's, whatever the
    test cell passes) lose its three trained cells with a message that says so?"""
    _, testset = data
    torch.manual_seed(0)
    path = tmp_path / "sparse_ae.pth"
    for n in (8, 784):
        torch.save(SparseAE(n).state_dict(), path)
        for check in (checks.check_trained_sparse_activation, checks.check_trained_sparse_share,
                      checks.check_trained_sparse_error):
            with pytest.raises(CheckFailure, match=rf"the codes have {n} columns; the notebook's "
                                                   rf"code size is n_hidden = 64"):
                check(SparseAE, n, testset=testset, path=str(path))


def test_trained_checks_without_weights(data, tmp_path):
    """Does a missing weight file fail with a message that names it?"""
    trainset, testset = data
    with pytest.raises(CheckFailure, match="loading the trained linear autoencoder"):
        checks.check_trained_linear_error(LinearAE, K, trainset=trainset, testset=testset,
                                          path=str(tmp_path / "missing.pth"))
    with pytest.raises(CheckFailure, match="loading the trained sparse autoencoder"):
        checks.check_trained_sparse_share(SparseAE, H, testset=testset, path=str(tmp_path / "missing.pth"))


def test_trained_checks_refuse_an_unknown_source(tmp_path):
    """Is a test set of unknown source refused rather than graded with the lenient bars?"""
    fake = torch.utils.data.TensorDataset(torch.rand(10, 1, 28, 28), torch.zeros(10))
    torch.save(SparseAE(8).state_dict(), tmp_path / "s.pth")
    with pytest.raises(CheckFailure, match="data source of testset is unknown"):
        checks.check_trained_sparse_error(SparseAE, 8, testset=fake, path=str(tmp_path / "s.pth"))


# ---------------------------------------------------------------------------------------------
# Bars, manifest and notebook agree
# ---------------------------------------------------------------------------------------------

def test_thresholds_cover_both_sources_and_are_not_stricter_on_mnist():
    """Are there bars for both data sources, with full MNIST no stricter than the embedded data?"""
    emb, full = THRESHOLDS["embedded"]["linear"], THRESHOLDS["mnist"]["linear"]
    assert full["max_angle"] >= emb["max_angle"] and full["error_ratio"] >= emb["error_ratio"]
    assert full["low_share"] <= emb["low_share"] and full["sparse_mse"] >= emb["sparse_mse"]
    assert full["activation_min"] <= emb["activation_min"] <= emb["activation_max"] <= full["activation_max"]


def test_bars_sit_between_reference_and_baselines():
    """Does every bar lie between the worst calibrated reference run and the best baseline?"""
    folder = COURSE_ROOT / "docs" / "calibration"
    ref = json.loads((folder / "linear-embedded.json").read_text())
    plain = json.loads((folder / "linear-embedded-sparsity_weight=0.0.json").read_text())
    bars = THRESHOLDS["embedded"]["linear"]
    assert ref["max_angle_reference_max"] < bars["max_angle"] < ref["max_angle_untrained_min"]
    assert ref["error_ratio_reference_max"] < bars["error_ratio"] < ref["error_ratio_untrained_min"]
    assert bars["activation_min"] < ref["activation_mean_reference_min"]
    assert ref["activation_mean_reference_max"] < bars["activation_max"] < min(
        ref["activation_mean_untrained_min"], plain["activation_mean_reference_min"])
    assert max(ref["low_share_untrained_max"], plain["low_share_reference_max"]) < bars["low_share"] \
        < ref["low_share_reference_min"]
    assert ref["sparse_mse_reference_max"] < bars["sparse_mse"] < ref["sparse_mse_untrained_min"]


def test_points_match_the_manifest():
    """Do the grade cells of the source notebook carry the manifest's points?"""
    nb = nbformat.read(SOURCE, as_version=4)
    points = {c.metadata.nbgrader["grade_id"]: c.metadata.nbgrader["points"] for c in nb.cells
              if c.metadata.get("nbgrader", {}).get("grade")}
    assert points == dict(notebook("linear", "bestiary").points)


def test_notebook_states_the_current_bars():
    """Does the notebook state the bars that the checks apply?"""
    text = "\n".join(c.source for c in nbformat.read(SOURCE, as_version=4).cells)
    bars = THRESHOLDS["embedded"]["linear"]
    assert f"at most {bars['max_angle']:g} degrees" in text
    assert f"at most {bars['error_ratio']:g}" in text
    assert f"between **{bars['activation_min']:g} and {bars['activation_max']:g}**" in text
    assert f"at least **{bars['low_share']:.2f}**" in text
    assert f"at most **{bars['sparse_mse']:.3f}**" in text
    assert re.search(r"n_components = 6\b", text)
