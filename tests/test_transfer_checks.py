"""Do the transfer checks pass the reference and correct alternatives, name each known mistake,
and grade the trained models in stages (the producer, the second stage and the judge) with the
numbers of one process?"""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import COURSE_ROOT, finish_staged, start_staged
from torch import nn

from autograder.checks import evidence, recorded, transfer
from autograder.checks.core import CheckFailure, NotImplementedYet
from autograder.checks.transfer import (
    check_classifier,
    check_decoder,
    check_encoder,
    check_few_label_subset,
    check_swap_autoencoder,
)
from autograder.grading.course import definitions

SOURCE = COURSE_ROOT / "solutions" / "bestiary" / "transfer.ipynb"
# Fewer seeds for the uniformity test in these tests: still a chi-square test with expected
# counts of at least 600 / 15 = 40, and the same false-alarm rate.
FAST_SEEDS = 600


# ---------------------------------------------------------------------------------------------
# Reference implementations and correct alternatives
# ---------------------------------------------------------------------------------------------


def few_label_subset(labels, n_per_class, seed):
    g = torch.Generator().manual_seed(seed)
    chosen = []
    for c in torch.unique(labels):
        members = torch.nonzero(labels == c).flatten()
        chosen.append(members[torch.randperm(len(members), generator=g)[:n_per_class]])
    return torch.cat(chosen)


def few_label_subset_numpy(labels, n_per_class, seed):
    rng = np.random.default_rng(seed)
    y = np.asarray(labels)
    picked = [rng.choice(np.flatnonzero(y == c), n_per_class, replace=False) for c in np.unique(y)]
    return torch.as_tensor(np.concatenate(picked), dtype=torch.long)


def few_label_subset_global_seed(labels, n_per_class, seed):
    torch.manual_seed(seed)
    out = [torch.nonzero(labels == c).flatten() for c in torch.unique(labels)]
    return torch.cat([m[torch.randperm(len(m))[:n_per_class]] for m in out]).sort().values


class ConvEncoder(nn.Module):
    def __init__(self, n_components):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(1, 8, 3, stride=2, padding=1), nn.ReLU(), nn.Flatten(),
                                 nn.Linear(8 * 14 * 14, n_components))

    def forward(self, x):
        return self.net(x)


class MLPEncoder(nn.Module):
    def __init__(self, n_components):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(784, 64), nn.ReLU(), nn.Linear(64, n_components))

    def forward(self, x):
        return self.net(x)


class Decoder(nn.Module):
    def __init__(self, n_components):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(n_components, 64), nn.ReLU(), nn.Linear(64, 784),
                                 nn.Sigmoid(), nn.Unflatten(1, (1, 28, 28)))

    def forward(self, z):
        return self.net(z)


class Classifier(nn.Module):
    def __init__(self, encoder, n_components, n_classes=10):
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(n_components, n_classes)

    def forward(self, x):
        return self.head(self.encoder(x))


class FrozenClassifier(Classifier):
    """A frozen encoder with a linear head (a correct alternative)."""

    def __init__(self, encoder, n_components, n_classes=10):
        super().__init__(encoder, n_components, n_classes)
        self.encoder.requires_grad_(False)


class MLPHeadClassifier(nn.Module):
    """A two-layer head, other attribute names, log-softmax output (correct alternatives)."""

    def __init__(self, encoder, n_components, n_classes=10):
        super().__init__()
        self.features = encoder
        self.mlp = nn.Sequential(nn.Linear(n_components, 32), nn.ReLU(), nn.Linear(32, n_classes))

    def forward(self, x):
        return torch.log_softmax(self.mlp(self.features(x)), dim=1)


class SwapAutoencoder(nn.Module):
    def __init__(self, n_components):
        super().__init__()
        self.encoder = MLPEncoder(n_components)
        self.decoder_a = Decoder(n_components)
        self.decoder_b = Decoder(n_components)

    def forward(self, x, domain):
        decoder = self.decoder_a if domain == "a" else self.decoder_b
        return decoder(self.encoder(x))

    def swap(self, x_a):
        return self.decoder_b(self.encoder(x_a))


class ConvSwapAutoencoder(SwapAutoencoder):
    def __init__(self, n_components):
        super().__init__(n_components)
        self.encoder = ConvEncoder(n_components)


# ---------------------------------------------------------------------------------------------
# few_label_subset
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("fn", [few_label_subset, few_label_subset_numpy,
                                few_label_subset_global_seed])
def test_correct_subsets_pass(fn):
    """Do correct few_label_subset implementations (torch, numpy, seeded global state) pass?"""
    check_few_label_subset(fn, uniform_seeds=FAST_SEEDS)


def test_hidden_variant_passes():
    """Does the reference pass the hidden variant (10 per class, other seeds)?"""
    check_few_label_subset(few_label_subset, seed=1, n_per_class=10, uniform_seeds=FAST_SEEDS)


def test_subset_check_leaves_the_global_random_state_alone():
    """Does the check restore torch's global random state?"""
    torch.manual_seed(3)
    expected = torch.rand(3)
    torch.manual_seed(3)
    check_few_label_subset(few_label_subset, uniform_seeds=300)
    assert torch.equal(torch.rand(3), expected)


def with_replacement(labels, n_per_class, seed):
    g = torch.Generator().manual_seed(seed)
    out = []
    for c in torch.unique(labels):
        members = torch.nonzero(labels == c).flatten()
        out.append(members[torch.randint(0, len(members), (n_per_class,), generator=g)])
    return torch.cat(out)


def first_n(labels, n_per_class, seed):
    return torch.cat([torch.nonzero(labels == c).flatten()[:n_per_class] for c in torch.unique(labels)])


def unseeded(labels, n_per_class, seed):
    return torch.cat([m[torch.randperm(len(m))[:n_per_class]]
                      for m in (torch.nonzero(labels == c).flatten() for c in torch.unique(labels))])


def contiguous_block(labels, n_per_class, seed):
    g = torch.Generator().manual_seed(seed)
    out = []
    for c in torch.unique(labels):
        members = torch.nonzero(labels == c).flatten()
        start = int(torch.randint(0, len(members) - n_per_class + 1, (1,), generator=g))
        out.append(members[start:start + n_per_class])
    return torch.cat(out)


def positions_within_class(labels, n_per_class, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.cat([torch.randperm(int((labels == c).sum()), generator=g)[:n_per_class]
                      for c in torch.unique(labels)])


def total_not_per_class(labels, n_per_class, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randperm(len(labels), generator=g)[:n_per_class]


def as_numpy(labels, n_per_class, seed):
    return few_label_subset_numpy(labels, n_per_class, seed).numpy()


def as_float(labels, n_per_class, seed):
    return few_label_subset(labels, n_per_class, seed).float()


def stacked(labels, n_per_class, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.stack([m[torch.randperm(len(m), generator=g)[:n_per_class]]
                        for m in (torch.nonzero(labels == c).flatten() for c in torch.unique(labels))])


def stub(labels, n_per_class, seed):
    raise NotImplementedError()


@pytest.mark.parametrize("fn, hint", [
    (with_replacement, "you sample with replacement"),
    (first_n, "first n_per_class images of each class"),
    (unseeded, "not seeded with `seed`"),
    (contiguous_block, "not drawn uniformly"),
    (positions_within_class, "not positions within the class"),
    (total_not_per_class, "n_per_class is per class"),
    (as_numpy, "torch.as_tensor"),
    (as_float, "int64"),
    (stacked, "torch.cat"),
])
def test_subset_mistakes_are_named(fn, hint):
    """Does each known mistake in few_label_subset fail with the hint that names it?"""
    with pytest.raises(CheckFailure, match=hint):
        check_few_label_subset(fn, uniform_seeds=FAST_SEEDS)


def test_subset_stub_reads_not_implemented():
    """Does the untouched stub read 'not implemented yet'?"""
    with pytest.raises(NotImplementedYet, match="not implemented yet"):
        check_few_label_subset(stub)


def test_uniformity_failure_states_the_test():
    """Does the uniformity failure say what was expected, with the chi-square numbers?"""
    with pytest.raises(CheckFailure) as info:
        check_few_label_subset(contiguous_block, uniform_seeds=FAST_SEEDS)
    text = str(info.value)
    assert "false-alarm rate 1e-06" in text and "chi-square" in text and "p = " in text


# ---------------------------------------------------------------------------------------------
# Encoder and Decoder
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("Encoder", [ConvEncoder, MLPEncoder])
def test_encoders_pass(Encoder):
    """Do convolutional and MLP encoders pass?"""
    check_encoder(Encoder)


def test_decoder_passes_and_fixed_width_fails():
    """Does the decoder pass, and a code width fixed at 16 fail with the n_components hint?"""
    check_decoder(Decoder)

    class Fixed(MLPEncoder):
        def __init__(self, n_components):
            super().__init__(16)

    with pytest.raises(CheckFailure, match="use n_components in the last layer"):
        check_encoder(Fixed)


# ---------------------------------------------------------------------------------------------
# Classifier
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("Classifier_, Encoder", [
    (Classifier, ConvEncoder), (Classifier, MLPEncoder), (FrozenClassifier, ConvEncoder),
    (MLPHeadClassifier, MLPEncoder)])
def test_correct_classifiers_pass(Classifier_, Encoder):
    """Do fine-tuned and frozen encoders, linear and MLP heads, conv and MLP encoders pass?"""
    check_classifier(Classifier_, Encoder)


class OwnEncoder(Classifier):
    def __init__(self, encoder, n_components, n_classes=10):
        super().__init__(MLPEncoder(n_components), n_components, n_classes)


class CopiedEncoder(Classifier):
    def __init__(self, encoder, n_components, n_classes=10):
        super().__init__(copy.deepcopy(encoder), n_components, n_classes)


class Unregistered(nn.Module):
    def __init__(self, encoder, n_components, n_classes=10):
        super().__init__()
        self.parts = [encoder]
        self.head = nn.Linear(n_components, n_classes)

    def forward(self, x):
        return self.head(self.parts[0](x))


class Detached(Classifier):
    def forward(self, x):
        return self.head(self.encoder(x).detach())


class Softmax(Classifier):
    def forward(self, x):
        return torch.softmax(super().forward(x), dim=1)


class NoHead(Classifier):
    def forward(self, x):
        return self.encoder(x)


class FixedTen(nn.Module):
    def __init__(self, encoder, n_components, n_classes=10):
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(n_components, 10)

    def forward(self, x):
        return self.head(self.encoder(x))


class StubClassifier(nn.Module):
    def __init__(self, encoder, n_components, n_classes=10):
        super().__init__()
        raise NotImplementedError()


@pytest.mark.parametrize("Classifier_, hint", [
    (OwnEncoder, "use the encoder you are given"),
    (CopiedEncoder, "do not build a new Encoder"),
    (Unregistered, "not in a plain list or dict"),
    (Detached, "forward detaches the code"),
    (Softmax, "without softmax"),
    (NoHead, "put a head on top of the encoder"),
    (FixedTen, "output size must be n_classes"),
])
def test_classifier_mistakes_are_named(Classifier_, hint):
    """Does each known mistake in Classifier fail with the hint that names it?"""
    with pytest.raises(CheckFailure, match=hint):
        check_classifier(Classifier_, ConvEncoder)


def test_classifier_stub_reads_not_implemented():
    """Does the untouched Classifier read 'not implemented yet'?"""
    with pytest.raises(NotImplementedYet, match="not implemented yet"):
        check_classifier(StubClassifier, ConvEncoder)


# ---------------------------------------------------------------------------------------------
# SwapAutoencoder
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("cls", [SwapAutoencoder, ConvSwapAutoencoder])
def test_correct_swap_autoencoders_pass(cls):
    """Do swap autoencoders with MLP and convolutional encoders pass?"""
    check_swap_autoencoder(cls)


class SwapUsesA(SwapAutoencoder):
    def swap(self, x_a):
        return self.decoder_a(self.encoder(x_a))


class TwoEncoders(SwapAutoencoder):
    def __init__(self, n_components):
        super().__init__(n_components)
        self.encoder_b = MLPEncoder(n_components)

    def forward(self, x, domain):
        if domain == "a":
            return self.decoder_a(self.encoder(x))
        return self.decoder_b(self.encoder_b(x))


class IgnoresDomain(SwapAutoencoder):
    def forward(self, x, domain):
        return self.decoder_a(self.encoder(x))


class DomainsSwapped(SwapAutoencoder):
    def forward(self, x, domain):
        return super().forward(x, "b" if domain == "a" else "a")


class OneDecoder(SwapAutoencoder):
    def __init__(self, n_components):
        super().__init__(n_components)
        self.decoder_b = self.decoder_a


class NoDecoderB(nn.Module):
    def __init__(self, n_components):
        super().__init__()
        self.encoder = MLPEncoder(n_components)
        self.decoder_a = Decoder(n_components)
        self.decoder = Decoder(n_components)

    def forward(self, x, domain):
        return (self.decoder_a if domain == "a" else self.decoder)(self.encoder(x))

    def swap(self, x_a):
        return self.decoder(self.encoder(x_a))


@pytest.mark.parametrize("cls, hint", [
    (SwapUsesA, "swap decodes with decoder_a"),
    (TwoEncoders, "the encoder must be shared"),
    (IgnoresDomain, "forward ignores `domain`"),
    (DomainsSwapped, "the other domain's decoder"),
    (OneDecoder, "build Decoder\\(n_components\\) twice"),
    (NoDecoderB, "self.decoder_b = Decoder"),
])
def test_swap_mistakes_are_named(cls, hint):
    """Does each known mistake in SwapAutoencoder fail with the hint that names it?"""
    with pytest.raises(CheckFailure, match=hint):
        check_swap_autoencoder(cls)


# ---------------------------------------------------------------------------------------------
# few_label_subset, replayed: the judge decides on the recorded calls (integer outputs)
# ---------------------------------------------------------------------------------------------

def _record_and_replay(tmp_path, fn):
    """The check in produce mode on ``fn``, then in judge mode on the recorded calls: the two
    exceptions (None for a pass)."""
    evidence._STATE.update(mode="produce", dir=str(tmp_path))
    evidence.set_cell("cell")
    produced = judged = None
    try:
        check_few_label_subset(fn, uniform_seeds=FAST_SEEDS)
    except (CheckFailure, NotImplementedYet) as exc:
        produced = exc
    evidence._STATE.update(mode="judge")
    recorded.start_judging(str(tmp_path / "calls"))
    evidence.set_cell("cell")
    try:
        check_few_label_subset(None, uniform_seeds=FAST_SEEDS)
    except (CheckFailure, NotImplementedYet) as exc:
        judged = exc
    return produced, judged


@pytest.mark.parametrize("fn", [few_label_subset, few_label_subset_numpy])
def test_correct_subsets_pass_when_replayed(tmp_path, modes, fn):
    """Does the judge pass a correct few_label_subset on its recorded int64 outputs, with every
    recorded call used?"""
    produced, judged = _record_and_replay(tmp_path, fn)
    assert produced is None and judged is None, (produced, judged)
    assert recorded.unused("cell") == ""


@pytest.mark.parametrize("fn, hint", [
    (with_replacement, "you sample with replacement"),
    (first_n, "first n_per_class images of each class"),
    (unseeded, "not seeded with `seed`"),
    (contiguous_block, "not drawn uniformly"),
    (as_numpy, "torch.as_tensor"),
    (as_float, "int64"),
    (stacked, "torch.cat"),
])
def test_subset_mistakes_get_the_same_message_when_replayed(tmp_path, modes, fn, hint):
    """Does the judge, on the recorded calls alone, name the same mistake with the same message
    as the check in one process?"""
    produced, judged = _record_and_replay(tmp_path, fn)
    assert judged is not None and hint in str(judged)
    assert str(judged) == str(produced)


def test_an_edited_recorded_index_is_not_a_pass(tmp_path, modes):
    """Does a recorded output whose indices were changed after the call (a repeated index
    written into the calls file) fail in the judge, never pass?"""
    evidence._STATE.update(mode="produce", dir=str(tmp_path))
    evidence.set_cell("cell")
    check_few_label_subset(few_label_subset, uniform_seeds=FAST_SEEDS)
    import glob

    for path in glob.glob(str(tmp_path / "calls" / "*.npz")):
        arrays = dict(np.load(path))
        first = sorted(arrays)[0]
        arrays[first] = np.full_like(arrays[first], 0.5)  # not an index
        np.savez(path, **arrays)
    evidence._STATE.update(mode="judge")
    recorded.start_judging(str(tmp_path / "calls"))
    evidence.set_cell("cell")
    with pytest.raises(CheckFailure, match="grading: a recorded integer output is malformed"):
        check_few_label_subset(None, uniform_seeds=FAST_SEEDS)


# ---------------------------------------------------------------------------------------------
# The trained models
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def solution() -> dict:
    """The solution notebook's definitions, extracted as the replay extracts a submission's."""
    return definitions(SOURCE)


class PixelEncoder(nn.Module):
    """The image itself as the code (784 numbers), whatever n_components says."""

    def __init__(self, n_components):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x):
        return x.flatten(1) * self.scale


class PixelDecoder(nn.Module):
    """The code back as an image, bold (a 3x3 maximum filter) when ``bold``."""

    def __init__(self, bold: bool):
        super().__init__()
        self.bold = bold
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, z):
        x = z.reshape(-1, 1, 28, 28) * self.scale
        return F.max_pool2d(x, 3, stride=1, padding=1) if self.bold else x


def _pixel_swap(bold_a: bool, bold_b: bool):
    class PixelSwap(nn.Module):
        def __init__(self, n_components):
            super().__init__()
            self.encoder = PixelEncoder(n_components)
            self.decoder_a = PixelDecoder(bold_a)
            self.decoder_b = PixelDecoder(bold_b)

        def forward(self, x, domain):
            return (self.decoder_a if domain == "a" else self.decoder_b)(self.encoder(x))

        def swap(self, x_a):
            return self.decoder_b(self.encoder(x_a))
    return PixelSwap


def _saved(tmp_path, model, name="swap_ae.pth"):
    from data_tools.utils import save_model

    path = tmp_path / name
    save_model(model, path)
    return str(path)


@pytest.fixture
def pixel_codes(monkeypatch):
    """The swap evaluation with codes as wide as the image: the judges and their hints, tested
    on ideal images, which no code of n_components = 16 numbers carries (the grader refuses
    such codes: test_a_code_as_wide_as_the_image_loses_both_swap_cells)."""
    import dataclasses

    from autograder.checks.evaluation import Codes

    monkeypatch.setattr(transfer, "EVALUATION_SWAP", dataclasses.replace(
        transfer.EVALUATION_SWAP, codes=Codes(("z",), 28 * 28)))


def test_a_code_as_wide_as_the_image_loses_both_swap_cells(tmp_path):
    """Does a swap whose code is the image itself (784 columns) and whose decoder B is the bold
    filter, untrained, lose both swap cells with a message naming the code size, even when the
    test cell passes n_components = 784?"""
    cls = _pixel_swap(False, True)
    path = _saved(tmp_path, cls(16))
    for n in (16, 784):
        for check in (transfer.check_trained_swap_digit, transfer.check_trained_swap_style):
            with pytest.raises(CheckFailure, match=r"the codes have 784 columns; the notebook's "
                                                   r"code size is n_components = 16"):
                check(cls, n, path=path)


@pytest.mark.slow  # evaluates saved models: the grader's judges, a full pass
def test_a_perfect_swap_passes_both_swap_bars(tmp_path, pixel_codes):
    """Does a swap that is the bold filter itself (decoder B = bold(x), decoder A = x) keep the
    digit and look bold for the judges, above both bars?"""
    cls = _pixel_swap(False, True)
    path = _saved(tmp_path, cls(16))
    result = transfer.swap_results(cls, 16, path=path)
    assert result["swap_digit"] >= result["bars"]["swap_digit"]
    assert result["swap_bold"] >= result["bars"]["swap_bold"]
    assert result["recon_a_bold"] < 0.1  # plain digits are not bold
    transfer.check_trained_swap_digit(cls, 16, path=path)
    transfer.check_trained_swap_style(cls, 16, path=path)


@pytest.mark.slow  # evaluates saved models: the grader's judges, a full pass
@pytest.mark.parametrize("bold_a, bold_b, hint", [
    (False, False, "decoder_b must be trained on the bold images of domain B only"),
    (True, False, "are the domains swapped in training"),
])
def test_swaps_that_stay_plain_fail_the_style_bar(tmp_path, bold_a, bold_b, hint, pixel_codes):
    """Does a decoder B that draws plain digits fail the style bar (with the hint that names the
    domains swapped when decoder A is the bold one), while it keeps the digit?"""
    cls = _pixel_swap(bold_a, bold_b)
    path = _saved(tmp_path, cls(16))
    transfer.check_trained_swap_digit(cls, 16, path=path)
    with pytest.raises(CheckFailure, match="style judge") as info:
        transfer.check_trained_swap_style(cls, 16, path=path)
    assert hint in str(info.value)


@pytest.mark.slow  # evaluates saved models: the grader's judges, a full pass
def test_untrained_swap_fails_both_bars(solution, tmp_path):
    """Do untrained weights of the solution's SwapAutoencoder fail both swap bars with hints?"""
    torch.manual_seed(0)
    path = _saved(tmp_path, solution["SwapAutoencoder"](16))
    with pytest.raises(CheckFailure, match="digit judge") as digit:
        transfer.check_trained_swap_digit(solution["SwapAutoencoder"], 16, path=path)
    assert "train longer" in str(digit.value)
    with pytest.raises(CheckFailure, match="style judge"):
        transfer.check_trained_swap_style(solution["SwapAutoencoder"], 16, path=path)


class LinearEncoder(nn.Module):
    def __init__(self, n_components):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(784, n_components))

    def forward(self, x):
        return self.net(x)


@pytest.fixture(scope="module")
def classifiers(tmp_path_factory):
    """A classifier trained on every training label (well above the bars), one trained on 10
    labels per class, and an untrained one, saved; the few-label notebook's classifiers are
    trained in the end-to-end tests."""
    from data_tools.utils import save_model

    folder = tmp_path_factory.mktemp("classifiers")
    trainset, _ = transfer.evaluation_data()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small matrices: one thread is fastest on a shared machine
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            models = {name: Classifier(LinearEncoder(16), 16) for name in ("trained", "few", "untrained")}
            few = few_label_subset(trainset.targets, 10, 0)
            for name, (x, y) in (("trained", (trainset.x, trainset.targets)),
                                 ("few", (trainset.x[few], trainset.targets[few]))):
                optimizer = torch.optim.Adam(models[name].parameters(), lr=1e-2)
                for _ in range(150):
                    loss = F.cross_entropy(models[name](x), y)
                    optimizer.zero_grad()
                    loss.backward()
                    optimizer.step()
    finally:
        torch.set_num_threads(threads)
    for name, model in models.items():
        save_model(model, folder / f"{name}.pth")
    return {name: str(folder / f"{name}.pth") for name in models}


@pytest.mark.slow  # evaluates saved models: the grader's judges, a full pass
def test_a_clear_gain_passes_and_is_measured_from_the_logits(classifiers):
    """Does a classifier trained on every label against one trained on 10 per class pass both
    classifier bars, with the accuracies measured by the grader (equal to a direct count)?"""
    _, testset = transfer.evaluation_data()
    result = transfer.classifier_results(LinearEncoder, Classifier, 16,
                                         pretrained_path=classifiers["trained"],
                                         scratch_path=classifiers["few"])
    model = Classifier(LinearEncoder(16), 16)
    model.load_state_dict(torch.load(classifiers["trained"], weights_only=True))
    with torch.no_grad():
        direct = float((model.eval()(testset.x).argmax(1) == testset.targets).float().mean())
    assert result["pretrained_accuracy"] == pytest.approx(direct)
    assert result["gain"] == pytest.approx(result["pretrained_accuracy"] - result["scratch_accuracy"])
    transfer.check_trained_pretrained(LinearEncoder, Classifier, 16,
                                      pretrained_path=classifiers["trained"],
                                      scratch_path=classifiers["few"])
    transfer.check_trained_gain(LinearEncoder, Classifier, 16, pretrained_path=classifiers["trained"],
                                scratch_path=classifiers["few"])


@pytest.mark.slow  # evaluates saved models: the grader's judges, a full pass
def test_an_untrained_scratch_classifier_is_no_baseline(classifiers):
    """Does a scratch classifier that was never trained (a large but empty gain) fail the gain
    cell with the hint to train it too?"""
    with pytest.raises(CheckFailure, match="the baseline of the gain") as info:
        transfer.check_trained_gain(LinearEncoder, Classifier, 16, pretrained_path=classifiers["trained"],
                                    scratch_path=classifiers["untrained"])
    assert "train the classifier from scratch too" in str(info.value)


@pytest.mark.slow  # evaluates saved models: the grader's judges, a full pass
def test_swapped_classifier_files_are_named(classifiers):
    """Does a scratch classifier that beats the pretrained one (the two files swapped) fail the
    gain bar with the hint that names the swap, and an untrained pretrained one the accuracy bar?"""
    kwargs = dict(pretrained_path=classifiers["untrained"], scratch_path=classifiers["trained"])
    with pytest.raises(CheckFailure, match="are the two files swapped"):
        transfer.check_trained_gain(LinearEncoder, Classifier, 16, **kwargs)
    with pytest.raises(CheckFailure, match="pretrained few-label classifier") as info:
        transfer.check_trained_pretrained(LinearEncoder, Classifier, 16, **kwargs)
    assert "too low" in str(info.value) and "pretrain_encoder.pth" in str(info.value)


@pytest.mark.slow  # evaluates saved models: the grader's judges, a full pass
def test_equal_classifiers_have_no_gain(classifiers):
    """Does the same classifier saved as both files (no pretraining at all) fail the gain bar
    with the hint about starting from the trained encoder?"""
    path = classifiers["trained"]
    with pytest.raises(CheckFailure, match="too small a gain") as info:
        transfer.check_trained_gain(LinearEncoder, Classifier, 16, pretrained_path=path,
                                    scratch_path=path)
    assert "TRAINED" in str(info.value) and "got      0.000" in str(info.value)


@pytest.mark.slow  # evaluates saved models: the grader's judges, a full pass
def test_a_missing_classifier_file_is_named(tmp_path, classifiers):
    """Does a missing weight file fail with a message that names it?"""
    with pytest.raises(CheckFailure, match="fewlabel_missing.pth"):
        transfer.check_trained_gain(LinearEncoder, Classifier, 16,
                                    pretrained_path=str(tmp_path / "fewlabel_missing.pth"),
                                    scratch_path=classifiers["trained"])


@pytest.mark.slow  # evaluates saved models: the grader's judges, a full pass
def test_logits_of_the_wrong_width_are_refused(tmp_path, classifiers):
    """Does a classifier built with a head of 3 classes (logits (N, 3)) fail with the shape it
    must have?"""
    from data_tools.utils import save_model

    class ThreeClasses(Classifier):
        def __init__(self, encoder, n_components, n_classes=10):
            super().__init__(encoder, n_components, 3)

    path = tmp_path / "three.pth"
    save_model(ThreeClasses(LinearEncoder(16), 16), path)
    with pytest.raises(CheckFailure, match=r"\(batch_size, n_classes\) with n_classes = 10"):
        transfer.check_trained_pretrained(LinearEncoder, ThreeClasses, 16, pretrained_path=str(path),
                                          scratch_path=str(path))


def test_measure_refuses_outputs_of_the_wrong_rows():
    """Does the measure refuse logits with fewer rows than the test set (evidence of another
    computation), naming the rows?"""
    trainset, testset = transfer.evaluation_data()
    first = {"pretrained_logits": np.zeros((3, 10), np.float32),
             "scratch_logits": np.zeros((3, 10), np.float32)}
    with pytest.raises(CheckFailure, match="rows"):
        transfer.EVALUATION_CLASSIFIERS.measure(first, {}, (trainset, testset, None))


@pytest.mark.slow  # evaluates saved models: the grader's judges, a full pass
def test_staged_grading_gives_the_local_numbers_and_verdicts(solution, tmp_path, monkeypatch, modes):
    """Run as the grader runs them (the producer on the grader's inputs, the decoders in the
    second stage on shuffled codes, the judge on the recorded outputs and calls), do the
    trained-model checks give the numbers of one process, few_label_subset the judge's verdict,
    and do the structural cells stay with the producer?"""
    from autograder.checks.evaluation import evidence_key
    from data_tools.utils import save_model

    monkeypatch.chdir(tmp_path)
    names = transfer.NOTEBOOK.weights
    torch.manual_seed(0)
    ns = solution
    save_model(ns["Encoder"](16), names[0])
    save_model(ns["Classifier"](ns["Encoder"](16), 16), names[1])
    save_model(ns["Classifier"](ns["Encoder"](16), 16), names[2])
    save_model(ns["SwapAutoencoder"](16), names[3])
    local = {**transfer.classifier_results(ns["Encoder"], ns["Classifier"], 16),
             **transfer.swap_results(ns["SwapAutoencoder"], 16)}

    run = start_staged("autograder.checks.transfer", names, tmp_path)
    evidence.set_cell("test_transfer_few_label_subset")
    transfer.check_few_label_subset(ns["few_label_subset"])
    transfer.check_few_label_subset(ns["few_label_subset"], seed=1, n_per_class=10, uniform_seeds=1500)
    for cell, check, args in (
            ("test_transfer_pretrained", transfer.check_trained_pretrained, (ns["Encoder"], ns["Classifier"])),
            ("test_transfer_gain", transfer.check_trained_gain, (ns["Encoder"], ns["Classifier"])),
            ("test_transfer_swap_digit", transfer.check_trained_swap_digit, (ns["SwapAutoencoder"],)),
            ("test_transfer_swap_style", transfer.check_trained_swap_style, (ns["SwapAutoencoder"],))):
        evidence.set_cell(cell)
        with pytest.raises(evidence.Deferred):
            check(*args, 16)
    verdicts = finish_staged(run, SOURCE, "autograder.checks.transfer")
    assert [r["evaluation"] for r in run.requests] == ["transfer_swap"]
    key = evidence_key(transfer.EVALUATION_SWAP, 16, (names[3],))
    assert (run.private / f"{key}.eval.second.npz").exists()
    for structural in ("test_transfer_encoder_decoder", "test_transfer_classifier", "test_transfer_swap_ae"):
        assert not verdicts[structural]["decided"], structural
    assert verdicts["test_transfer_few_label_subset"]["decided"]
    assert verdicts["test_transfer_few_label_subset"]["passed"], verdicts["test_transfer_few_label_subset"]
    for cell, words in (("test_transfer_pretrained", "too low"), ("test_transfer_gain", "baseline of the gain"),
                        ("test_transfer_swap_digit", "digit judge"),
                        ("test_transfer_swap_style", "style judge")):
        assert verdicts[cell]["decided"] and not verdicts[cell]["passed"], cell
        assert words in verdicts[cell]["error"], verdicts[cell]["error"]
    result = {**evidence.judged(transfer.EVALUATION_CLASSIFIERS, 16, names[1:3], False),
              **evidence.judged(transfer.EVALUATION_SWAP, 16, (names[3],), False)}
    for metric in ("pretrained_accuracy", "scratch_accuracy", "gain", "swap_digit", "swap_bold",
                   "recon_a_digit"):
        assert result[metric] == pytest.approx(local[metric], abs=1e-9), metric


@pytest.mark.parametrize("variant", sorted(transfer.VARIANTS))
def test_calibrated_variants_apply_to_the_solution(variant, tmp_path):
    """Does each calibrated alternative (MLP networks, frozen encoders) edit the solution in
    exactly one place per edit, and do its networks pass the structural checks?"""
    import nbformat

    from autograder.cli.calibrate import apply_edits

    nb = nbformat.read(SOURCE, as_version=4)
    apply_edits(nb, transfer.VARIANTS[variant])
    nbformat.write(nb, tmp_path / "transfer.ipynb")
    ns = definitions(tmp_path / "transfer.ipynb")
    check_encoder(ns["Encoder"])
    check_decoder(ns["Decoder"])
    check_classifier(ns["Classifier"], ns["Encoder"])
    check_swap_autoencoder(ns["SwapAutoencoder"])
    mlp = not any(isinstance(m, nn.Conv2d) for m in ns["Encoder"](16).modules())
    assert mlp == variant.startswith("mlp")
    assert ("requires_grad_(False)" in nb.cells[[c.metadata.get("nbgrader", {}).get("grade_id")
                                                  for c in nb.cells].index("transfer_fewlabel")].source
            ) == variant.endswith("frozen")
