"""Does varianceMNIST behave as specified, and do the DAE checks accept the reference and every
correct architecture while rejecting each plausible wrong implementation with a hint that names
the mistake?"""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conftest import solution_namespace
from corpus.variants import VARIANTS
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import autograder.checks.dae as checks
from autograder import CheckFailure, NotImplementedYet
from data_tools.variance import CORRUPTION_STREAM, DATA_STREAM, VarianceMNIST, corrupt, seeded_normal

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def DAE():
    return solution_namespace("dae")["DAE"]


def fake_mnist(n: int = 20, seed: int = 0) -> TensorDataset:
    """A small MNIST look-alike without .x or .targets: images in [0, 1] with a zero border."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.zeros(n, 1, 28, 28)
    x[:, :, 6:22, 6:22] = torch.rand(n, 1, 16, 16, generator=gen)
    return TensorDataset(x, torch.arange(n) % 10)


# --------------------------------------------------------------------------- varianceMNIST


def test_fresh_noise_at_every_access():
    """Does a training-mode VarianceMNIST draw new noise each time an item is read?"""
    data = VarianceMNIST(fake_mnist())
    (a, la), (b, lb) = data[3], data[3]
    assert a.shape == (1, 28, 28) and a.dtype == torch.float32
    assert la == lb == 3 and isinstance(la, int)
    assert not torch.equal(a, b)
    background = data.std[3] == 0
    assert background.any() and (a[background] == 0).all() and (b[background] == 0).all()


def test_samples_are_the_image_times_noise():
    """Is a sample exactly std * eps, with seed_everything-style global seeding repeatable?"""
    data = VarianceMNIST(fake_mnist())
    torch.manual_seed(5)
    x, _ = data.batch([0, 1])
    torch.manual_seed(5)
    eps = torch.randn(2, 1, 28, 28)
    assert torch.equal(x, data.std[:2] * eps)


def test_pixel_statistics_mean_zero_variance_x_squared():
    """Over many draws of one image, is each pixel's mean about 0 and its variance about x^2?"""
    data = VarianceMNIST(fake_mnist(n=2))
    torch.manual_seed(0)
    n = 4000
    x, _ = data.batch([1] * n)
    std = data.std[1]
    stroke = std > 0.05
    mean, var = x.mean(0), x.var(0)
    # mean of n draws of N(0, s^2): standard error s / sqrt(n); 6 standard errors
    assert (mean[stroke].abs() <= 6 * std[stroke] / n ** 0.5).all()
    # sample variance / s^2 has standard error sqrt(2 / n) ~ 0.022
    ratio = var[stroke] / std[stroke] ** 2
    assert (ratio - 1).abs().max() < 0.15
    assert (x[:, ~stroke & (std == 0)] == 0).all()


def test_seeded_set_is_fixed_and_independent_of_access_order():
    """With eval_seed, are items identical across accesses, instances, batch and item paths?"""
    base = fake_mnist()
    a = VarianceMNIST(base, eval_seed=7)
    b = VarianceMNIST(base, eval_seed=7)
    c = VarianceMNIST(base, eval_seed=8)
    torch.manual_seed(0)
    first = a[4][0]
    torch.manual_seed(1)
    assert torch.equal(first, a[4][0]) and torch.equal(first, b[4][0])
    assert torch.equal(a.batch([9, 4, 2])[0][1], first)
    assert torch.equal(a[-16][0], first)  # 20 items: -16 is item 4
    assert not torch.equal(first, c[4][0])
    assert not torch.equal(first, a[5][0] * a.std[4] / a.std[5].clamp_min(1e-9))


@pytest.mark.slow
def test_seeded_set_is_identical_in_another_process():
    """Does a fresh Python process draw the very same seeded samples (grading on another machine)?"""
    code = (f"import torch, sys; sys.path.insert(0, {str(REPO)!r})\n"
            "from data_tools.variance import seeded_normal\n"
            "print(repr(seeded_normal(1002, [0, 17, 999])[:, 0, 10, 10:14].tolist()))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    here = seeded_normal(1002, [0, 17, 999])[:, 0, 10, 10:14].tolist()
    assert out.stdout.strip() == repr(here)


def test_seeded_noise_is_standard_normal_and_streams_differ():
    """Is the per-index seeded noise N(0, 1), and are the data and corruption streams different?"""
    eps = seeded_normal(3, range(200), stream=DATA_STREAM)
    assert eps.shape == (200, 1, 28, 28) and eps.dtype == torch.float32
    assert abs(float(eps.mean())) < 0.01 and abs(float(eps.std()) - 1) < 0.01
    other = seeded_normal(3, range(200), stream=CORRUPTION_STREAM)
    assert abs(float((eps * other).mean())) < 0.01


def test_dataloader_over_variance_mnist():
    """Does a DataLoader batch a VarianceMNIST (shuffled, fresh noise; seeded, reproducible)?"""
    data = VarianceMNIST(fake_mnist(n=10))
    batches = list(DataLoader(data, batch_size=4, shuffle=True))
    assert [tuple(x.shape) for x, _ in batches] == [(4, 1, 28, 28), (4, 1, 28, 28), (2, 1, 28, 28)]
    assert all(y.dtype == torch.int64 for _, y in batches)
    seeded = VarianceMNIST(fake_mnist(n=10), eval_seed=0)
    x, y = next(iter(DataLoader(seeded, batch_size=10)))
    assert torch.equal(x, seeded.batch(range(10))[0]) and y.tolist() == list(range(10))


def test_wraps_the_embedded_mnist():
    """Does VarianceMNIST work over the course's MNIST and keep its source (for the bars)?"""
    from data_tools.mnist import MNIST

    base = MNIST(train=False, verbose=False)
    data = VarianceMNIST(base, eval_seed=checks.EVAL_SEED_TEST)
    assert len(data) == len(base) and data.source is base.source
    assert torch.equal(data.std, base.x) and torch.equal(data.targets, base.targets)
    assert "seeded noise" in repr(data)


def test_rejects_bad_arguments():
    """Are a negative eval_seed, an out-of-range index and non-image data refused clearly?"""
    with pytest.raises(ValueError, match="non-negative"):
        VarianceMNIST(fake_mnist(), eval_seed=-1)
    with pytest.raises(IndexError, match="out of range"):
        VarianceMNIST(fake_mnist(n=5))[5]
    with pytest.raises(ValueError, match=r"\(N, 1, 28, 28\)"):
        VarianceMNIST(TensorDataset(torch.zeros(3, 1, 14, 14), torch.zeros(3)))


def test_corrupt_adds_gaussian_noise_of_std_sigma_n():
    """Does corrupt(x, sigma_n) add N(0, sigma_n^2) noise, reproducibly with a generator?"""
    x = torch.rand(200, 1, 28, 28)
    x_tilde = corrupt(x, 0.3, generator=torch.Generator().manual_seed(0))
    assert x_tilde.shape == x.shape and x_tilde.dtype == x.dtype
    noise = x_tilde - x
    assert abs(float(noise.mean())) < 0.01 and abs(float(noise.std()) - 0.3) < 0.01
    again = corrupt(x, 0.3, generator=torch.Generator().manual_seed(0))
    assert torch.equal(x_tilde, again)
    assert torch.equal(corrupt(x, 0.0), x)
    assert abs(float((corrupt(x) - x).std()) - 0.2) < 0.01  # default sigma_n = 0.2
    with pytest.raises(ValueError, match="standard deviation"):
        corrupt(x, -0.1)


# --------------------------------------------------------------------------- check_dae: correct


def test_reference_passes(DAE):
    """Does the solution notebook's DAE pass every check, hidden ones too?"""
    checks.check_dae(DAE)
    checks.check_dae(DAE, seed=1, n_components_list=(3, 5, 32), batch_sizes=(1, 2, 17))


class MLPDAE(nn.Module):
    def __init__(self, n_components=10):
        super().__init__()
        self.encoder = nn.Sequential(nn.Flatten(), nn.Linear(784, 64), nn.Tanh(),
                                     nn.Linear(64, n_components))
        self.decoder = nn.Sequential(nn.Linear(n_components, 64), nn.Tanh(), nn.Linear(64, 784))

    def forward(self, x):
        z = self.encoder(x)
        gate = torch.sigmoid(self.decoder(z)).view(-1, 1, 28, 28)
        return z, x * gate


class BatchNormConvDAE(nn.Module):
    """Conv encoder with BatchNorm, ungated decoder output, returns a list."""

    def __init__(self, n_components=10):
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(1, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8),
                                  nn.ReLU())
        self.code = nn.Sequential(nn.Flatten(), nn.Linear(8 * 14 * 14, 32), nn.BatchNorm1d(32),
                                  nn.ReLU(), nn.Linear(32, n_components))
        self.decode = nn.Sequential(nn.Linear(n_components, 8 * 14 * 14), nn.ReLU(),
                                    nn.Unflatten(1, (8, 14, 14)),
                                    nn.ConvTranspose2d(8, 1, 4, stride=2, padding=1))

    def forward(self, x):
        z = self.code(self.conv(x))
        return [z, self.decode(z)]


class SkipDAE(nn.Module):
    """Gate computed from the code and the input together (a skip connection)."""

    def __init__(self, n_components=10):
        super().__init__()
        self.encoder = nn.Sequential(nn.Flatten(), nn.Linear(784, 32), nn.ReLU(),
                                     nn.Linear(32, n_components))
        self.decoder = nn.Linear(n_components, 784)
        self.mix = nn.Conv2d(2, 1, 3, padding=1)

    def forward(self, x):
        z = self.encoder(x)
        f = self.decoder(z).reshape(x.shape)
        return z, x * torch.sigmoid(self.mix(torch.cat([f, x ** 2], dim=1)))


@pytest.mark.parametrize("model", [MLPDAE, BatchNormConvDAE, SkipDAE])
def test_alternative_architectures_pass(model):
    """Does a DAE of another architecture (MLP, BatchNorm conv, skip connection) keep full marks?"""
    checks.check_dae(model)
    checks.check_dae(model, seed=1, n_components_list=(3, 5, 32), batch_sizes=(1, 2, 17))


# --------------------------------------------------------------------------- check_dae: mistakes


def mutant(DAE, forward=None, init=None):
    """A subclass of the reference DAE with another forward and/or __init__."""
    namespace = {}
    if forward is not None:
        namespace["forward"] = forward
    if init is not None:
        namespace["__init__"] = init
    return type("DAE", (DAE,), namespace)


def _swapped(self, x):
    z = self.encoder(x)
    return x * torch.sigmoid(self.decoder(z)), z


def _single_tensor(self, x):
    return x * torch.sigmoid(self.decoder(self.encoder(x)))


def _constant_input(self, x):
    x = torch.zeros_like(x)
    z = self.encoder(x)
    return z, torch.sigmoid(self.decoder(z))


def _non_finite(self, x):
    z = self.encoder(x)
    return z, x * torch.sigmoid(self.decoder(z)) / 0.0


def _identity(self, x):
    return self.encoder(x), x


def _broadcast(self, x):
    z = self.encoder(x)
    gate = torch.sigmoid(self.decoder(z)).reshape(-1, 28, 28)
    return z, x * gate


def _detached_code(self, x):
    z = self.encoder(x)
    return z, x * torch.sigmoid(self.decoder(z.detach()))


def _stub(self, x):
    raise NotImplementedError()


def _three_items(self, x):
    z = self.encoder(x)
    return z, x * torch.sigmoid(self.decoder(z)), z


MISTAKES = {
    "swapped tuple": (_swapped, "order is swapped"),
    "single tensor": (_single_tensor, "return both the code and the denoised images"),
    "three items": (_three_items, "a tuple of 3 items"),
    "constant input": (_constant_input, "not from a stored or constant tensor"),
    "non-finite output": (_non_finite, "non-finite values"),
    "identity output": (_identity, "denoised_x is the input x itself"),
    "broadcast gate": (_broadcast, r"broadcasts to \(B, B, 28, 28\)"),
    "detached code": (_detached_code, "denoised_x does not depend on the code z"),
}


@pytest.mark.parametrize("name", list(MISTAKES))
def test_mistake_is_caught_with_its_hint(DAE, name):
    """Does each wrong forward fail check_dae with the hint that names its mistake?"""
    forward, hint = MISTAKES[name]
    with pytest.raises(CheckFailure, match=hint):
        checks.check_dae(mutant(DAE, forward=forward))


def test_hard_coded_n_components_is_caught(DAE):
    """Does a DAE that ignores n_components fail with the 'fixed number' hint?"""
    def init(self, n_components=10):
        DAE.__init__(self, 10)

    with pytest.raises(CheckFailure, match="instead of a fixed number"):
        checks.check_dae(mutant(DAE, init=init))


def test_hidden_sizes_catch_a_code_of_size_two_or_ten_only(DAE):
    """Does the hidden check catch a DAE that only works for the visible code sizes 2 and 10?"""
    def init(self, n_components=10):
        DAE.__init__(self, n_components if n_components in (2, 10) else 10)

    lucky = mutant(DAE, init=init)
    checks.check_dae(lucky)
    with pytest.raises(CheckFailure, match="n_components=3"):
        checks.check_dae(lucky, seed=1, n_components_list=(3, 5, 32), batch_sizes=(1, 2, 17))


def test_stub_reads_as_not_implemented(DAE):
    """Does the untouched stub read as 'not implemented yet', not as a crash?"""
    with pytest.raises(NotImplementedYet, match="not implemented yet"):
        checks.check_dae(mutant(DAE, forward=_stub))

    def init(self, n_components=10):
        nn.Module.__init__(self)
        raise NotImplementedError()

    with pytest.raises(NotImplementedYet, match="not implemented yet"):
        checks.check_dae(mutant(DAE, init=init))


def test_crash_in_forward_names_the_line(DAE):
    """Does a shape error inside forward become a message with the crash hint?"""
    def forward(self, x):
        return self.encoder(x.flatten(1)), x

    with pytest.raises(CheckFailure, match="raised RuntimeError"):
        checks.check_dae(mutant(DAE, forward=forward))


# --------------------------------------------------------------------------- trained-model check


def _tiny_set(n=40, source=True):
    from data_tools.mnist import Source

    base = fake_mnist(n=n)
    if source:
        base.source = Source("embedded", "a test set", "argument")
    return VarianceMNIST(base, eval_seed=1), VarianceMNIST(base, eval_seed=2)


def test_trained_check_refuses_data_of_unknown_source(DAE, tmp_path):
    """Does the trained check refuse, naming it, data whose source it cannot tell, instead of
    grading it against the lenient bars of the embedded data?"""
    from data_tools.utils import save_model

    torch.manual_seed(0)
    save_model(DAE(10), tmp_path / "dae.pth")
    train, test = _tiny_set(source=False)
    with pytest.raises(CheckFailure, match="the data source of testset is unknown"):
        checks.check_trained_dae(DAE, 10, trainset=train, testset=test, path=str(tmp_path / "dae.pth"))


def test_evaluate_dae_numbers_are_deterministic_and_sane(DAE):
    """Does evaluate_dae give the same numbers twice, for unseeded inputs too, with the noisy
    input's error about sigma_n^2?"""
    torch.manual_seed(0)
    model = DAE(10)
    train, test = _tiny_set()
    first = checks.evaluate_dae(model, train, test)
    assert checks.evaluate_dae(model, train, test) == first
    # unseeded sets, and plain image datasets, are evaluated with the grading seeds
    unseeded = checks.evaluate_dae(model, VarianceMNIST(train.base), VarianceMNIST(test.base))
    assert checks.evaluate_dae(model, VarianceMNIST(train.base), VarianceMNIST(test.base)) == unseeded
    assert checks.evaluate_dae(model, train.base, test.base) == unseeded
    assert abs(first["mse_noisy"] - checks.SIGMA_N ** 2) < 0.004
    assert first["denoise_ratio"] == pytest.approx(first["mse_denoised"] / first["mse_noisy"])
    assert 0.0 <= first["probe_accuracy"] <= 1.0


def test_perfect_denoiser_scores_ratio_zero_and_identity_one(DAE):
    """Is the denoising ratio 0 for an oracle denoiser and about 1 for the identity?"""
    train, test = _tiny_set()

    class Identity(nn.Module):
        def forward(self, x):
            return x.flatten(1)[:, :10], x

    class Zero(nn.Module):
        def forward(self, x):
            return x.flatten(1)[:, :10], torch.zeros_like(x)

    identity = checks.evaluate_dae(Identity(), train, test)
    assert identity["denoise_ratio"] == pytest.approx(1.0)
    zero = checks.evaluate_dae(Zero(), train, test)
    # E[x^2] / sigma_n^2 for the fake images (uniform on a 16 x 16 square)
    expected = float((test.std ** 2).mean()) / checks.SIGMA_N ** 2
    assert zero["denoise_ratio"] == pytest.approx(expected, rel=0.1)


def test_trained_check_messages(DAE, tmp_path, monkeypatch):
    """Does check_trained_dae report missing weights, and a failed bar as got / required / hint?"""
    from data_tools.utils import save_model

    train, test = _tiny_set()
    with pytest.raises(CheckFailure, match="no saved weights"):
        checks.check_trained_dae(DAE, 10, trainset=train, testset=test,
                                 path=str(tmp_path / "dae.pth"))
    torch.manual_seed(0)
    save_model(DAE(10), tmp_path / "dae.pth")
    with pytest.raises(CheckFailure, match=r"too high\n  expected <= 0\.\d+ \(reference about") as info:
        checks.check_trained_dae(DAE, 10, trainset=train, testset=test,
                                 path=str(tmp_path / "dae.pth"))
    assert "hint: " in str(info.value)
    # a model that denoises but whose codes say nothing: the probe bar fails
    from autograder.checks import evaluation, thresholds

    bars = {**thresholds.threshold("embedded", "dae"), "denoise_ratio": 10.0, "probe_accuracy": 1.01}
    monkeypatch.setattr(evaluation, "threshold", lambda key, nb: bars)
    with pytest.raises(CheckFailure, match=r"accuracy too low\n  expected >= 1\.010") as info:
        checks.check_trained_dae(DAE, 10, trainset=train, testset=test,
                                 path=str(tmp_path / "dae.pth"))
    assert "sigma_n > 0" in str(info.value)


def test_trained_check_rejects_wrong_weights(DAE, tmp_path):
    """Do weights of another architecture fail as a CheckFailure naming the file?"""
    torch.save(MLPDAE(10).state_dict(), tmp_path / "dae.pth")
    with pytest.raises(CheckFailure, match="do not fit this DAE"):
        checks.load_trained(DAE, 10, path=str(tmp_path / "dae.pth"))


@pytest.mark.slow
def test_dae_trained_without_corruption_fails(DAE, tmp_path, monkeypatch):
    """Does the reference DAE trained without corruption (sigma_n = 0, a plain autoencoder on
    varianceMNIST) fail the probe bar, and the trained check with the 'corrupted inputs' hint?

    A short run (3 epochs); docs/calibration.md (DAE) has the full-length runs over 5 seeds."""
    from data_tools import mnist as mnist_module
    from data_tools.utils import save_model, seed_everything

    monkeypatch.delenv("MNIST_ROOT", raising=False)
    monkeypatch.setattr(mnist_module, "COURSEDATA", tmp_path / "no-coursedata")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small convolutions: one thread is as fast, and robust to load
    try:
        seed_everything(0)
        train_eval, test_eval = checks.evaluation_data()
        trainset = VarianceMNIST(train_eval.base)
        model = DAE(10)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        model.train()
        for _ in range(3):
            for x, _ in DataLoader(trainset, batch_size=32, shuffle=True):
                _, denoised_x = model(corrupt(x, 0.0))
                loss = ((denoised_x - x) ** 2).mean()
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
        result = checks.evaluate_dae(model, train_eval, test_eval)
    finally:
        torch.set_num_threads(threads)
    from autograder.checks.thresholds import threshold

    bars = threshold("embedded", "dae")
    assert result["probe_accuracy"] < bars["probe_accuracy"] - 0.2, result
    assert result["denoise_ratio"] > 0.9, result
    save_model(model, tmp_path / "dae.pth")
    with pytest.raises(CheckFailure, match="train on corrupted inputs"):
        checks.check_trained_dae(DAE, 10, trainset=train_eval, testset=test_eval,
                                 path=str(tmp_path / "dae.pth"))


def test_check_leaves_the_global_random_state_alone(DAE):
    """Does running check_dae leave torch's global random state as it found it?"""
    torch.manual_seed(3)
    before = torch.random.get_rng_state()
    checks.check_dae(DAE, n_components_list=(2,), batch_sizes=(1,))
    assert torch.equal(torch.random.get_rng_state(), before)


# --------------------------------------------------------------------------- the gate mistake


def _returns_gate(self, x):
    z = self.encoder(x)
    return z, torch.sigmoid(self.decoder(z))


def test_module_check_warns_when_forward_returns_the_gate(DAE, capsys):
    """Does check_dae pass a DAE whose forward returns the gate sigmoid(f) (its shapes are
    right) but print a warning that names the gate and the exact fix?"""
    checks.check_dae(mutant(DAE, forward=_returns_gate), n_components_list=(2,), batch_sizes=(1,))
    out = capsys.readouterr().out
    assert "WARNING" in out and "denoised_x is never negative" in out
    assert "seems to return the gate sigmoid(f) itself" in out
    assert "`denoised_x = x * torch.sigmoid(f)` and `return z, denoised_x`" in out


def test_module_check_is_quiet_for_the_reference(DAE, capsys):
    """Does the reference DAE pass check_dae without a warning?"""
    checks.check_dae(DAE, n_components_list=(2,), batch_sizes=(1,))
    assert "WARNING" not in capsys.readouterr().out


class SquareGate(nn.Module):
    """Returns a gate: 1 on the square where the fake images live, 0 elsewhere. The gate times
    the noisy input would be a good denoiser (error ratio 256 / 784)."""

    def __init__(self, n_components=10):
        super().__init__()
        self.w = nn.Parameter(torch.ones(()))

    def forward(self, x):
        gate = torch.zeros_like(x)
        gate[:, :, 6:22, 6:22] = 1.0
        return x.flatten(1)[:, :10] * self.w, gate * self.w


def test_trained_check_names_the_gate_and_its_fix(tmp_path):
    """Does the denoising check fail a model that returns a gate, saying that x_tilde times its
    output would pass and what to return instead, while the probe check reads the same
    evaluation?"""
    from data_tools.utils import save_model

    save_model(SquareGate(), tmp_path / "dae.pth")
    train, test = _tiny_set()
    result = checks.trained_results(SquareGate, 10, trainset=train, testset=test,
                                    path=str(tmp_path / "dae.pth"))
    assert result["out_min"] == 0.0 and result["out_max"] == 1.0
    assert result["gate_ratio"] == pytest.approx(256 / 784, rel=0.15)
    with pytest.raises(CheckFailure, match="too high") as info:
        checks.check_trained_dae_denoising(SquareGate, 10, trainset=train, testset=test,
                                           path=str(tmp_path / "dae.pth"))
    text = str(info.value)
    assert "seems to return the gate sigmoid(f) itself" in text and "which passes" in text
    assert "denoised_x = x * torch.sigmoid(f)" in text and "got      " in text


def test_trained_checks_share_one_evaluation(DAE, tmp_path):
    """Do the probe and denoising checks of one saved model evaluate it once, and again only
    when the weight file changes?"""
    from data_tools.utils import save_model

    calls = []

    class Counting(SquareGate):
        def forward(self, x):
            calls.append(len(x))
            return super().forward(x)

    path = str(tmp_path / "dae.pth")
    save_model(Counting(), path)
    train, test = _tiny_set()
    kwargs = dict(trainset=train, testset=test, path=path)
    checks.trained_results(Counting, 10, **kwargs)
    once = len(calls)
    with pytest.raises(CheckFailure):
        checks.check_trained_dae_denoising(Counting, 10, **kwargs)
    checks.report_trained(Counting, 10, **kwargs)
    assert len(calls) == once > 0
    model = Counting()
    model.w.data.fill_(2.0)
    save_model(model, path)
    checks.trained_results(Counting, 10, **kwargs)
    assert len(calls) == 2 * once


# --------------------------------------------------------------------------- dead units, unused layers


def words(phrase: str) -> str:
    """A regex for ``phrase`` that also matches it broken over the lines of a wrapped message."""
    return r"\s+".join(re.escape(word) for word in phrase.split())


def variant(name: str):
    """The DAE class defined by the cell of the fairness corpus's variant ``name``."""
    namespace = {"torch": torch, "nn": nn, "F": F}
    exec(VARIANTS[name].cell, namespace)
    return namespace["DAE"]


def test_returning_the_gate_after_a_dead_relu_keeps_the_module_points(capsys):
    """Does a DAE whose decoder ends in ReLU -> BatchNorm2d(1) and whose forward returns the gate
    (issue 27: its last ReLU is dead at initialisation) pass check_dae, visible and hidden,
    with the gate warning, instead of being told that denoised_x does not depend on x?"""
    model = variant("dae_gate_after_batchnorm")
    checks.check_dae(model)
    checks.check_dae(model, seed=1, n_components_list=(3, 5, 32), batch_sizes=(1, 2, 17))
    assert "seems to return the gate sigmoid(f) itself" in capsys.readouterr().out


def test_a_gated_dae_with_a_dead_relu_passes(capsys):
    """Does the same DAE with the gate applied, x * sigmoid(BN(ReLU(...))), pass check_dae,
    without the warning, instead of being told that denoised_x does not depend on z?"""
    model = variant("dae_gated_after_batchnorm")
    checks.check_dae(model)
    checks.check_dae(model, seed=1, n_components_list=(3, 5, 32), batch_sizes=(1, 2, 17))
    assert "WARNING" not in capsys.readouterr().out


def _learned_denoised(self, x):
    z = self.encoder(x)
    return z, self.decoder[-1].bias.view(1, 1, 1, 1).expand(x.shape[0], 1, 28, 28)


def _zeros_denoised(self, x):
    return self.encoder(x), torch.zeros_like(x)


def _batch_size_only(self, x):
    z = self.encoder(torch.ones(x.shape[0], 1, 28, 28))
    return z, torch.sigmoid(self.decoder(z))


def _dead_forever(self, x):
    z = self.encoder(x)
    return z, torch.relu(-self.decoder(z).abs())


@pytest.mark.parametrize("forward, name", [
    (_constant_input, "z does not depend on x"),
    (_batch_size_only, "z does not depend on x"),
    (_learned_denoised, "denoised_x does not depend on x"),
    (_zeros_denoised, "denoised_x does not depend on x"),
    (_dead_forever, "denoised_x does not depend on x"),
], ids=["constant input", "batch size only", "learned parameter", "zeros", "dead forever"])
def test_a_dae_that_ignores_its_input_still_fails(DAE, forward, name):
    """Does a DAE whose output really ignores x (a learned parameter, zeros, x used for its batch
    size only, a ReLU that no input wakes) still fail with the same message after the second
    look at larger and negated inputs and fresh initialisations?"""
    with pytest.raises(CheckFailure, match=words(f"{name}: the same output for two different "
                                                 "inputs")) as info:
        checks.check_dae(mutant(DAE, forward=forward))
    text = " ".join(str(info.value).split())
    assert "(also for inputs scaled by -1, 10, -10, 100, -100 and for 3 fresh" in text


def _code_times_zero(self, x):
    z = self.encoder(x)
    return z, x * torch.sigmoid(self.decoder(z * 0.0))


def test_zero_gradients_through_the_code_still_fail(DAE):
    """Does a DAE whose denoised_x gets no gradient through z for any input (z times 0) still
    fail with 'does not depend on the code z'?"""
    with pytest.raises(CheckFailure, match=words("denoised_x does not depend on the code z")) as info:
        checks.check_dae(mutant(DAE, forward=_code_times_zero))
    assert "all zero (also for inputs scaled by" in " ".join(str(info.value).split())


def test_a_forgotten_output_layer_is_named():
    """Does a DAE that defines a 1x1 output convolution but never calls it fail the shape step
    with a hint that names the layer?"""
    with pytest.raises(CheckFailure, match=words("denoised_x: wrong shape")) as info:
        checks.check_dae(variant("dae_forgotten_output_conv"))
    text = " ".join(str(info.value).split())
    assert "got shape (1, 16, 28, 28)" in text
    assert ("hint: self.out (Conv2d) is never used in forward: its parameters got no gradient "
            "(apply it in forward, or delete it)") in text


def _skips_last_layers(self, x):
    z = self.encoder(x)
    return z, self.decoder[:-1](z)


def test_skipped_sequential_layers_are_named(DAE):
    """Does a DAE whose forward skips the last ConvTranspose2d of its decoder name it?"""
    with pytest.raises(CheckFailure, match=words("denoised_x: wrong shape")) as info:
        checks.check_dae(mutant(DAE, forward=_skips_last_layers))
    assert ("self.decoder.7 (ConvTranspose2d) is never used in forward"
            in " ".join(str(info.value).split()))
