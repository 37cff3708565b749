"""Do the AE checks accept the reference and every correct architecture, and reject each
plausible wrong implementation with a hint that names the mistake?"""
from __future__ import annotations

import re

import pytest
import torch
import torch.nn.functional as F
from corpus.variants import VARIANTS
from torch import nn

import autograder.checks.ae as checks
from autograder import CheckFailure, NotImplementedYet


def test_reference_passes(ae_solution):
    """Does the solution notebook's Encoder/Decoder pass every shape check, hidden ones too?"""
    checks.check_encoder(ae_solution["Encoder"])
    checks.check_decoder(ae_solution["Decoder"])
    checks.check_encoder(ae_solution["Encoder"], seed=1, n_components_list=(3, 5, 32),
                         batch_sizes=(1, 2, 17))


class MLPEncoder(nn.Module):
    def __init__(self, n_components):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(784, 64), nn.Tanh(),
                                 nn.Linear(64, n_components))

    def forward(self, x):
        return self.net(x)


class MLPDecoder(nn.Module):
    def __init__(self, n_components):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(n_components, 64), nn.Tanh(), nn.Linear(64, 784),
                                 nn.Sigmoid())

    def forward(self, z):
        return self.net(z).view(-1, 1, 28, 28)


class BatchNormEncoder(nn.Module):
    def __init__(self, n_components):
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(1, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8),
                                  nn.ReLU())
        self.fc = nn.Sequential(nn.Linear(8 * 14 * 14, 32), nn.BatchNorm1d(32), nn.ReLU(),
                                nn.Linear(32, n_components))

    def forward(self, x):
        return self.fc(self.conv(x).flatten(1))


@pytest.mark.parametrize("encoder", [MLPEncoder, BatchNormEncoder])
def test_alternative_encoders_pass(encoder):
    """Does an encoder of another architecture (MLP, BatchNorm) keep full marks?"""
    checks.check_encoder(encoder)
    checks.check_encoder(encoder, seed=1, n_components_list=(3, 5, 32), batch_sizes=(1, 2, 17))


def test_alternative_decoder_passes():
    """Does an MLP decoder with a sigmoid output keep full marks?"""
    checks.check_decoder(MLPDecoder)


class Hardcoded10(MLPEncoder):
    def __init__(self, n_components):
        super().__init__(10)


class FlatDecoder(MLPDecoder):
    def forward(self, z):
        return self.net(z)


class DetachedEncoder(MLPEncoder):
    def forward(self, x):
        return self.net(x).detach()


class ConstantEncoder(MLPEncoder):
    def forward(self, x):
        return self.net(torch.zeros_like(x))


class TupleEncoder(MLPEncoder):
    def forward(self, x):
        z = self.net(x)
        return z, z


class DoubleEncoder(MLPEncoder):
    def forward(self, x):
        return self.net(x).double()


class NanEncoder(MLPEncoder):
    def forward(self, x):
        return self.net(x) * float("nan")


class StubEncoder(nn.Module):
    def __init__(self, n_components):
        super().__init__()
        raise NotImplementedError()


class NoParamsEncoder(nn.Module):
    def __init__(self, n_components):
        super().__init__()
        self.n = n_components

    def forward(self, x):
        return x.flatten(1)[:, : self.n] * 1.0


class WrongLinearEncoder(nn.Module):
    def __init__(self, n_components):
        super().__init__()
        self.conv = nn.Conv2d(1, 6, 5)
        self.fc = nn.Linear(6 * 28 * 28, n_components)  # forgot that the conv shrinks the image

    def forward(self, x):
        return self.fc(self.conv(x).flatten(1))


@pytest.mark.parametrize("broken, hint", [
    (Hardcoded10, "n_components=2: use n_components in the last layer"),
    (DetachedEncoder, "cut off from the parameters"),
    (ConstantEncoder, "same output for two different inputs"),
    (TupleEncoder, "return a single tensor, not a tuple"),
    (DoubleEncoder, "wrong dtype"),
    (NanEncoder, "non-finite values"),
    (NoParamsEncoder, "no trainable parameters"),
    (WrongLinearEncoder, "in_features does not match the flattened size"),
])
def test_broken_encoder_is_caught(broken, hint):
    """Is each wrong encoder rejected with a hint that names its mistake?"""
    with pytest.raises(CheckFailure, match=hint):
        checks.check_encoder(broken)


def test_flat_decoder_is_caught():
    """Does a decoder that forgets to reshape get told to reshape to (B, 1, 28, 28)?"""
    with pytest.raises(CheckFailure, match=r"reshape the flat output to \(batch_size, 1, 28, 28\)"):
        checks.check_decoder(FlatDecoder)


def test_stub_reads_not_implemented():
    """Does an untouched stub read as 'not implemented yet', not as a crash?"""
    with pytest.raises(NotImplementedYet, match="not implemented yet"):
        checks.check_encoder(StubEncoder)


def test_failure_message_has_four_parts():
    """Does a failure say what was tried, what was expected, what came out, and a hint?"""
    with pytest.raises(CheckFailure) as info:
        checks.check_encoder(Hardcoded10)
    text = str(info.value)
    assert text.startswith("Encoder(n_components=2) on x of shape (1, 1, 28, 28) (eval mode): wrong shape")
    assert "expected shape (1, 2)" in text
    assert "got      shape (1, 10)" in text
    assert "hint:" in text


def test_untrained_weights_fail_trained_check(ae_solution, tmp_path, monkeypatch):
    """Do freshly initialised weights fail the trained-model bars (with the probe hint)?"""
    from data_tools.utils import save_model

    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
    save_model(ae_solution["Encoder"](10), "ae_encoder.pth")
    save_model(ae_solution["Decoder"](10), "ae_decoder.pth")
    with pytest.raises(CheckFailure, match="accuracy too low|reconstruction error"):
        checks.check_trained_ae(ae_solution["Encoder"], ae_solution["Decoder"], 10)


def _saved(models: dict, folder) -> dict:
    """Save ``{weight file: model}`` in ``folder``; the trained checks' path arguments."""
    from data_tools.utils import save_model

    for filename, model in models.items():
        save_model(model, folder / filename)
    return dict(encoder_path=str(folder / checks.ENCODER_PATH),
                decoder_path=str(folder / checks.DECODER_PATH))


def _untrained() -> dict:
    """The solution's Encoder and Decoder freshly initialised, by weight file (seed 0)."""
    from conftest import ASSIGNMENT, SOLUTIONS

    from autograder.cli.weights import untrained_models
    from autograder.manifest import notebook

    return untrained_models(notebook("ae", ASSIGNMENT), SOLUTIONS / "ae.ipynb")


def test_weights_saved_before_training_are_told_to_save_after_training(ae_solution, tmp_path):
    """Do the initial weights (a save before the training loop) fail both bars with the hint
    that they score like an untrained network, before "train longer"?"""
    from autograder.checks.evaluation import UNTRAINED_HINT

    paths = _saved(_untrained(), tmp_path)
    for check in (checks.check_trained_ae_probe, checks.check_trained_ae_reconstruction):
        with pytest.raises(CheckFailure) as info:
            check(ae_solution["Encoder"], ae_solution["Decoder"], 10, **paths)
        hint = str(info.value).split("\n  hint: ")[1]
        assert hint.startswith(UNTRAINED_HINT + ", not before the training loop")
        assert "train longer" in hint


def test_partly_trained_weights_are_told_to_train_longer(ae_solution, tmp_path):
    """Does an autoencoder trained for ten steps (out of the untrained range, far above the
    MSE bar) fail the reconstruction bar with "train longer", not with the untrained hint?"""
    from autograder.checks.data import mnist_sets
    from autograder.checks.evaluation import UNTRAINED_HINT

    models = _untrained()
    encoder, decoder = models[checks.ENCODER_PATH], models[checks.DECODER_PATH]
    x = mnist_sets()[0].x[:320]
    optimizer = torch.optim.Adam([*encoder.parameters(), *decoder.parameters()], 1e-3)
    for batch in x.split(32):
        loss = ((decoder(encoder(batch)) - batch) ** 2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    paths = _saved(models, tmp_path)
    with pytest.raises(CheckFailure, match="hint: train longer") as info:
        checks.check_trained_ae_reconstruction(ae_solution["Encoder"], ae_solution["Decoder"],
                                               10, **paths)
    assert UNTRAINED_HINT not in str(info.value)


def test_missing_weights_say_train_first(ae_solution, tmp_path, monkeypatch):
    """Does a missing .pth tell the student to train and save first?"""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CheckFailure, match="train the model and save it first"):
        checks.load_trained(ae_solution["Encoder"], ae_solution["Decoder"], 10)


def test_weights_of_other_architecture_list_keys(ae_solution, tmp_path, monkeypatch):
    """Does a .pth of another architecture list missing and unexpected keys?"""
    from data_tools.utils import save_model

    monkeypatch.chdir(tmp_path)
    save_model(MLPEncoder(10), "ae_encoder.pth")
    save_model(MLPDecoder(10), "ae_decoder.pth")
    with pytest.raises(CheckFailure, match=r"missing keys: conv\.0\.weight.*\n.*unexpected keys: net"):
        checks.load_trained(ae_solution["Encoder"], ae_solution["Decoder"], 10)


@pytest.mark.parametrize("check, obj", [("check_encoder", "Encoder"), ("check_decoder", "Decoder")])
def test_checks_leave_the_random_state_alone(ae_solution, check, obj):
    """Does a module check leave the notebook's random state (and thread count) as it found it?"""
    torch.manual_seed(123)
    threads = torch.get_num_threads()
    expected = torch.rand(3)
    torch.manual_seed(123)
    getattr(checks, check)(ae_solution[obj])
    assert torch.equal(torch.rand(3), expected)
    assert torch.get_num_threads() == threads


# --------------------------------------------------------------------------- trained-model slips

class CellEncoder(nn.Module):
    """The mean of each of the first ten 7 x 7 cells: the label of a CellMNIST image."""

    def __init__(self, n_components=10):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x):
        return self.scale * torch.nn.functional.avg_pool2d(x, 7).flatten(1)[:, :10]


class CellDecoder(nn.Module):
    """Fills each cell with its code: a perfect reconstruction of a CellMNIST image."""

    def __init__(self, n_components=10):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, z):
        grid = torch.cat([z, torch.zeros(len(z), 6)], 1).reshape(-1, 1, 4, 4)
        return self.scale * grid.repeat_interleave(7, 2).repeat_interleave(7, 3)


class LogitDecoder(CellDecoder):
    """Returns logits of the pixel values (as a decoder trained with BCEWithLogitsLoss does)."""

    def forward(self, z):
        return torch.logit(super().forward(z).clamp(1e-3, 1 - 1e-3))


class SoftmaxDecoder(CellDecoder):
    """Returns a softmax over the pixels: a probability distribution, not pixel values."""

    def forward(self, z):
        return torch.softmax(super().forward(z).flatten(1), dim=1).reshape(-1, 1, 28, 28)


def cell_mnist(n: int, seed: int):
    """Images that are one 7 x 7 cell (the label's) at a random intensity, from the embedded source."""
    from torch.utils.data import TensorDataset

    from data_tools.mnist import Source

    gen = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 10
    x = torch.zeros(n, 1, 28, 28)
    for i, k in enumerate(labels.tolist()):
        r, c = divmod(k, 4)
        x[i, 0, 7 * r:7 * r + 7, 7 * c:7 * c + 7] = 0.5 + 0.5 * torch.rand((), generator=gen)
    data = TensorDataset(x, labels)
    data.source = Source("embedded", "a test set", "argument")
    return data


@pytest.mark.parametrize("decoder, hint", [
    (LogitDecoder, "the decoder returns logits"),
    (SoftmaxDecoder, "every reconstruction sums to 1 over its pixels"),
])
def test_decoder_output_slips_are_named(tmp_path, decoder, hint):
    """Does a decoder that returns logits, or a softmax over the pixels, fail the reconstruction
    check with a hint naming it, while the probe check passes on the same codes?"""
    from data_tools.utils import save_model

    paths = dict(encoder_path=str(tmp_path / "e.pth"), decoder_path=str(tmp_path / "d.pth"))
    save_model(CellEncoder(), paths["encoder_path"])
    save_model(decoder(), paths["decoder_path"])
    sets = dict(trainset=cell_mnist(100, 0), testset=cell_mnist(50, 1))
    checks.check_trained_ae_probe(CellEncoder, decoder, 10, **sets, **paths)
    with pytest.raises(CheckFailure, match="reconstruction error") as info:
        checks.check_trained_ae_reconstruction(CellEncoder, decoder, 10, **sets, **paths)
    assert hint in str(info.value)


def test_a_good_model_prints_each_number_beside_its_bar(tmp_path, capsys):
    """Does a perfect autoencoder pass both checks, each printing its number, 'passes', its bar,
    the data source and eval() mode?"""
    from data_tools.utils import save_model

    paths = dict(encoder_path=str(tmp_path / "e.pth"), decoder_path=str(tmp_path / "d.pth"))
    save_model(CellEncoder(), paths["encoder_path"])
    save_model(CellDecoder(), paths["decoder_path"])
    sets = dict(trainset=cell_mnist(100, 0), testset=cell_mnist(50, 1))
    capsys.readouterr()
    checks.check_trained_ae_probe(CellEncoder, CellDecoder, 10, **sets, **paths)
    checks.check_trained_ae_reconstruction(CellEncoder, CellDecoder, 10, **sets, **paths)
    probe, mse = capsys.readouterr().out.splitlines()
    assert probe.startswith("linear probe accuracy on the test codes: 1.000, passes: required "
                            ">= 0.750 (reference about 0.888) on the embedded data")
    assert mse.startswith("reconstruction MSE on the test images: 0.0000, passes: required "
                          "<= 0.0350") and mse.endswith("models in eval() mode")


# --------------------------------------------------------------------------- dead units, unused layers

def words(phrase: str) -> str:
    """A regex for ``phrase`` that also matches it broken over the lines of a wrapped message."""
    return r"\s+".join(re.escape(word) for word in phrase.split())


def variant(name: str, cls: str):
    """The class ``cls`` defined by the cell of the fairness corpus's variant ``name``."""
    namespace = {"torch": torch, "nn": nn, "F": F}
    exec(VARIANTS[name].cell, namespace)
    return namespace[cls]


class DeadBiasEncoder(nn.Module):
    """A ReLU on the code whose bias starts at -2: every unit is dead at initialisation for
    images in [0, 1]."""

    def __init__(self, n_components):
        super().__init__()
        self.fc = nn.Linear(784, n_components)
        nn.init.constant_(self.fc.bias, -2.0)

    def forward(self, x):
        return torch.relu(self.fc(x.flatten(1)))


class DeadBiasDecoder(nn.Module):
    """A ReLU output whose bias starts at -3: dead at initialisation for codes ~ N(0, I)."""

    def __init__(self, n_components):
        super().__init__()
        self.hidden = nn.Linear(n_components, 64)
        self.out = nn.Linear(64, 784)
        nn.init.constant_(self.out.bias, -3.0)

    def forward(self, z):
        return torch.relu(self.out(torch.tanh(self.hidden(z)))).view(-1, 1, 28, 28)


class ReLUOutputDecoder(nn.Module):
    """The solution's decoder with a ReLU as the last activation (pixels are never negative)."""

    def __init__(self, n_components):
        super().__init__()
        self.fc = nn.Sequential(nn.Linear(n_components, 250), nn.ReLU(),
                                nn.Linear(250, 16 * 20 * 20), nn.ReLU())
        self.deconv = nn.Sequential(nn.ConvTranspose2d(16, 6, kernel_size=5), nn.ReLU(),
                                    nn.ConvTranspose2d(6, 1, kernel_size=5), nn.ReLU())

    def forward(self, z):
        return self.deconv(self.fc(z).reshape(-1, 16, 20, 20))


@pytest.mark.parametrize("model, check, seed", [
    (variant("ae_decoder_relu_dark_start", "Decoder"), checks.check_decoder, 0),
    (DeadBiasDecoder, checks.check_decoder, 0),
    (ReLUOutputDecoder, checks.check_decoder, 3),  # its gradients are all zero in train mode
    (DeadBiasEncoder, checks.check_encoder, 0),
], ids=["relu dark start", "dead bias decoder", "relu output", "dead bias encoder"])
def test_units_dead_at_initialisation_pass(model, check, seed):
    """Does a correct module whose ReLUs are all dead at initialisation (a negative bias, a ReLU
    as the last activation) keep its points, instead of being told that its output does not
    depend on its input or that no gradient reaches its parameters?"""
    check(model, seed=seed)
    check(model, seed=seed + 1, n_components_list=(3, 5, 32), batch_sizes=(1, 2, 17))


class ZerosEncoder(MLPEncoder):
    def forward(self, x):
        return torch.zeros(x.shape[0], self.net[-1].out_features)


class LearnedCodeEncoder(MLPEncoder):
    def forward(self, x):
        return self.net[-1].bias.expand(x.shape[0], -1)


class BatchSizeOnlyEncoder(MLPEncoder):
    def forward(self, x):
        return self.net(torch.ones(x.shape[0], 1, 28, 28))


class DeadForeverEncoder(MLPEncoder):
    """A ReLU of a negative number: zero for every input and every initialisation."""

    def forward(self, x):
        return torch.relu(-self.net(x).abs())


class ZerosDecoder(MLPDecoder):
    def forward(self, z):
        return torch.zeros(z.shape[0], 1, 28, 28)


class LearnedImageDecoder(MLPDecoder):
    def forward(self, z):
        return self.net[2].bias.view(1, 1, 28, 28).expand(z.shape[0], -1, -1, -1)


class BatchSizeOnlyDecoder(MLPDecoder):
    def forward(self, z):
        return self.net(torch.ones_like(z)).view(-1, 1, 28, 28)


@pytest.mark.parametrize("broken, check, name", [
    (ConstantEncoder, checks.check_encoder, "z does not depend on x"),
    (ZerosEncoder, checks.check_encoder, "z does not depend on x"),
    (LearnedCodeEncoder, checks.check_encoder, "z does not depend on x"),
    (BatchSizeOnlyEncoder, checks.check_encoder, "z does not depend on x"),
    (DeadForeverEncoder, checks.check_encoder, "z does not depend on x"),
    (ZerosDecoder, checks.check_decoder, "xrec does not depend on z"),
    (LearnedImageDecoder, checks.check_decoder, "xrec does not depend on z"),
    (BatchSizeOnlyDecoder, checks.check_decoder, "xrec does not depend on z"),
])
def test_a_module_that_ignores_its_input_still_fails(broken, check, name):
    """Does a module that really ignores its input (a constant, zeros, a learned parameter, the
    input used for its batch size only, a ReLU that no input wakes) still fail, after looking
    again at larger and negated inputs and fresh initialisations?"""
    with pytest.raises(CheckFailure, match=words(f"{name}: the same output for two different "
                                                 "inputs")) as info:
        check(broken)
    text = " ".join(str(info.value).split())
    assert "also for inputs scaled by -1, 10, -10, 100, -100 and for 3 fresh initialisations" in text
    assert "not from a stored or constant tensor" in text


class ZeroGradientDecoder(MLPDecoder):
    """An output that depends on z but passes no gradient: zero for every input."""

    def forward(self, z):
        h = self.net(z).view(-1, 1, 28, 28)
        return h * 0.0 + h.detach()


def test_zero_gradients_for_every_input_still_fail():
    """Does a decoder whose gradients are zero for every input and initialisation still fail
    the gradient step?"""
    with pytest.raises(CheckFailure, match=words("gradients from xrec do not reach the "
                                                 "parameters")) as info:
        checks.check_decoder(ZeroGradientDecoder)
    assert "all zero (also for inputs scaled by" in " ".join(str(info.value).split())


class SlicedDecoder(nn.Module):
    """The solution's decoder whose forward stops before the last ConvTranspose2d."""

    def __init__(self, n_components):
        super().__init__()
        self.fc = nn.Sequential(nn.Linear(n_components, 250), nn.ReLU(),
                                nn.Linear(250, 16 * 20 * 20), nn.ReLU())
        self.deconv = nn.Sequential(nn.ConvTranspose2d(16, 6, kernel_size=5), nn.ReLU(),
                                    nn.ConvTranspose2d(6, 1, kernel_size=5))

    def forward(self, z):
        return self.deconv[:2](self.fc(z).reshape(-1, 16, 20, 20))


class UnusedLinearDecoder(nn.Module):
    def __init__(self, n_components):
        super().__init__()
        self.fc1 = nn.Linear(n_components, 256)
        self.fc2 = nn.Linear(256, 784)

    def forward(self, z):
        return torch.relu(self.fc1(z)).view(-1, 1, 16, 16)


@pytest.mark.parametrize("decoder, layer", [
    (variant("ae_decoder_forgotten_last_layer", "Decoder"), "self.deconv2 (ConvTranspose2d)"),
    (variant("ae_decoder_forgotten_output_layer", "Decoder"), "self.out (ConvTranspose2d)"),
    (SlicedDecoder, "self.deconv.2 (ConvTranspose2d)"),
    (UnusedLinearDecoder, "self.fc2 (Linear)"),
], ids=["separate attributes", "output layer apart", "sliced sequential", "mlp"])
def test_a_skipped_layer_is_named_with_the_wrong_shape(decoder, layer):
    """Does a decoder that defines its last layer but never calls it fail the shape step with a
    hint that names that layer, its parameters having got no gradient?"""
    with pytest.raises(CheckFailure, match=words("wrong shape")) as info:
        checks.check_decoder(decoder)
    text = " ".join(str(info.value).split())
    assert (f"hint: {layer} is never used in forward: its parameters got no gradient (apply it "
            f"in forward, or delete it); ") in text


def test_a_wrong_shape_names_no_layer_when_every_layer_is_used():
    """Does a wrong shape with every layer in use keep its usual hint alone?"""
    with pytest.raises(CheckFailure) as info:
        checks.check_decoder(FlatDecoder)
    assert "never used" not in str(info.value) and "got no gradient" not in str(info.value)


def test_a_decoder_of_the_wrong_shape_costs_only_the_reconstruction(ae_solution, tmp_path):
    """Does a decoder whose output has the wrong shape fail the reconstruction bar with the
    decoder's message, while the probe, which needs only the encoder's codes, is graded on
    the codes (here: an untrained encoder's, so with the probe's own message)?"""
    class ShortDecoder(ae_solution["Decoder"]):
        def forward(self, z):
            return super().forward(z)[:, :, :20, :20]  # (B, 1, 20, 20)

    paths = _saved(_untrained(), tmp_path)
    encoder = ae_solution["Encoder"]
    with pytest.raises(CheckFailure, match="accuracy too low") as info:
        checks.check_trained_ae_probe(encoder, ShortDecoder, 10, **paths)
    assert "wrong output" not in str(info.value)
    with pytest.raises(CheckFailure, match="trained decoder on the codes of test images: wrong output"):
        checks.check_trained_ae_reconstruction(encoder, ShortDecoder, 10, **paths)
