"""Tests of the VAE checks: the reference passes, alternative correct implementations pass,
and each known-wrong implementation fails with the hint that names its mistake."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from conftest import solution_namespace
from torch import nn
from torch.distributions import Normal, kl_divergence

from autograder.checks.core import CheckFailure, NotImplementedYet
from autograder.checks.vae import (
    MIN_LOGVAR_ALLOWED,
    check_decoder,
    check_encoder,
    check_loss_kl,
    check_loss_loglik,
    check_sample,
)

# ---------------------------------------------------------------------------------------------
# The reference: the solution notebook's own definitions, extracted as the replay extracts a
# submission's (no second copy of the solution here)
# ---------------------------------------------------------------------------------------------

MIN_LOGVAR = math.log(1e-3)
_SOLUTION = solution_namespace("vae")
Encoder = _SOLUTION["Encoder"]
Decoder = _SOLUTION["Decoder"]
loss_kl = _SOLUTION["loss_kl"]
loss_loglik = _SOLUTION["loss_loglik"]


# ---------------------------------------------------------------------------------------------
# Alternative correct implementations
# ---------------------------------------------------------------------------------------------

def kl_distributions(z_mean, z_logvar):
    q = Normal(z_mean, torch.exp(0.5 * z_logvar))
    p = Normal(torch.zeros_like(z_mean), torch.ones_like(z_mean))
    return kl_divergence(q, p).sum(-1).mean()


def kl_float64(z_mean, z_logvar):
    return loss_kl(z_mean.double(), z_logvar.double())


def loglik_distributions(y_mean, y_logvar, x):
    return -Normal(y_mean, torch.exp(0.5 * y_logvar)).log_prob(x).flatten(1).sum(1).mean()


def loglik_with_constant(y_mean, y_logvar, x):
    per_pixel = 0.5 * (math.log(2 * math.pi) + y_logvar + (x - y_mean) ** 2 / y_logvar.exp())
    return per_pixel.sum() / x.shape[0]


def sample_rsample(z_mean, z_logvar):
    return Normal(z_mean, torch.exp(0.5 * z_logvar)).rsample()


def sample_sqrt(z_mean, z_logvar):
    return z_mean + torch.sqrt(torch.exp(z_logvar)) * torch.randn(z_mean.shape)


class EncoderMLP(nn.Module):
    def __init__(self, n_components):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(784, 128), nn.Tanh(),
                                 nn.Linear(128, 2 * n_components))

    def forward(self, x):
        z_mean, z_logvar = self.net(x).chunk(2, dim=1)
        return z_mean, z_logvar

    def sample(self, z_mean, z_logvar):
        return sample_rsample(z_mean, z_logvar)


class DecoderConvClamp(nn.Module):
    """Transposed convolutions and a hard clamp floor at log(1e-4)."""

    def __init__(self, n_components):
        super().__init__()
        self.fc = nn.Linear(n_components, 16 * 7 * 7)
        self.up = nn.Sequential(
            nn.ConvTranspose2d(16, 8, 4, stride=2, padding=1), nn.ReLU(),  # (B, 8, 14, 14)
            nn.ConvTranspose2d(8, 2, 4, stride=2, padding=1),             # (B, 2, 28, 28)
        )

    def forward(self, z):
        h = self.up(F.relu(self.fc(z)).view(-1, 16, 7, 7))
        return torch.sigmoid(h[:, :1]), h[:, 1:].clamp(min=math.log(1e-4))


class DecoderTanhFloor(nn.Module):
    """A bounded log-variance, 5 * tanh(.) in [-5, 5], is a floor too."""

    def __init__(self, n_components):
        super().__init__()
        self.mean = nn.Linear(n_components, 784)
        self.logvar = nn.Linear(n_components, 784)

    def forward(self, z):
        return (self.mean(z).view(-1, 1, 28, 28),
                5 * torch.tanh(self.logvar(z)).view(-1, 1, 28, 28))


# ---------------------------------------------------------------------------------------------
# Wrong implementations: loss_kl
# ---------------------------------------------------------------------------------------------

def kl_no_half(z_mean, z_logvar):
    return (torch.exp(z_logvar) + z_mean ** 2 - 1 - z_logvar).sum(1).mean()


def kl_batch_sum(z_mean, z_logvar):
    return 0.5 * (torch.exp(z_logvar) + z_mean ** 2 - 1 - z_logvar).sum()


def kl_mean_all(z_mean, z_logvar):
    return 0.5 * (torch.exp(z_logvar) + z_mean ** 2 - 1 - z_logvar).mean()


def kl_flipped(z_mean, z_logvar):
    return -loss_kl(z_mean, z_logvar)


def kl_std_as_var(z_mean, z_logvar):
    std = torch.exp(0.5 * z_logvar)
    return 0.5 * (std + z_mean ** 2 - 1 - torch.log(std)).sum(1).mean()


def kl_logvar_as_logstd(z_mean, z_logvar):
    q = Normal(z_mean, torch.exp(z_logvar))   # passes the variance where the std belongs
    return kl_divergence(q, Normal(0.0, 1.0)).sum(-1).mean()


def kl_per_sample(z_mean, z_logvar):
    return 0.5 * (torch.exp(z_logvar) + z_mean ** 2 - 1 - z_logvar).sum(1)


def kl_no_minus_one(z_mean, z_logvar):
    return 0.5 * (torch.exp(z_logvar) + z_mean ** 2 - z_logvar).sum(1).mean()


def kl_mean_not_squared(z_mean, z_logvar):
    return 0.5 * (torch.exp(z_logvar) + z_mean.abs() * z_mean - 1 - z_logvar).sum(1).mean()


def kl_item(z_mean, z_logvar):
    return loss_kl(z_mean, z_logvar).item()


def kl_detached_logvar(z_mean, z_logvar):
    return 0.5 * (torch.exp(z_logvar.detach()) + z_mean ** 2 - 1 - z_logvar.detach()).sum(1).mean()


def kl_numpy(z_mean, z_logvar):
    return loss_kl(z_mean, z_logvar).detach().numpy()


def kl_half_precision(z_mean, z_logvar):
    return loss_kl(z_mean, z_logvar).half()


def kl_no_half_batch_sum(z_mean, z_logvar):
    return (torch.exp(z_logvar) + z_mean ** 2 - 1 - z_logvar).sum()


class AlwaysEqual:
    def __eq__(self, other):
        return True

    def __float__(self):
        return 0.0


def kl_always_equal(z_mean, z_logvar):
    return AlwaysEqual()


class SneakyTensor(torch.Tensor):
    pass


def kl_subclass(z_mean, z_logvar):
    return loss_kl(z_mean, z_logvar).as_subclass(SneakyTensor)


def stub(*args):
    raise NotImplementedError()


# ---------------------------------------------------------------------------------------------
# Wrong implementations: loss_loglik
# ---------------------------------------------------------------------------------------------

def ll_no_half(y_mean, y_logvar, x):
    return (y_logvar + (x - y_mean) ** 2 / torch.exp(y_logvar)).sum(dim=(1, 2, 3)).mean()


def ll_batch_sum(y_mean, y_logvar, x):
    return 0.5 * (y_logvar + (x - y_mean) ** 2 / torch.exp(y_logvar)).sum()


def ll_pixel_mean(y_mean, y_logvar, x):
    return 0.5 * (y_logvar + (x - y_mean) ** 2 / torch.exp(y_logvar)).mean()


def ll_flipped(y_mean, y_logvar, x):
    return -loss_loglik(y_mean, y_logvar, x)


def ll_flipped_with_constant(y_mean, y_logvar, x):
    return -loglik_with_constant(y_mean, y_logvar, x)


def ll_logvar_as_logstd(y_mean, y_logvar, x):
    return -Normal(y_mean, torch.exp(y_logvar)).log_prob(x).flatten(1).sum(1).mean()


def ll_logvar_as_var(y_mean, y_logvar, x):
    return 0.5 * (torch.log(y_logvar) + (x - y_mean) ** 2 / y_logvar).sum(dim=(1, 2, 3)).mean()


def ll_divide_by_logvar(y_mean, y_logvar, x):
    return 0.5 * (y_logvar + (x - y_mean) ** 2 / y_logvar).sum(dim=(1, 2, 3)).mean()


def ll_std_as_var(y_mean, y_logvar, x):
    return -Normal(y_mean, torch.exp(0.25 * y_logvar)).log_prob(x).flatten(1).sum(1).mean()


def ll_per_sample(y_mean, y_logvar, x):
    return 0.5 * (y_logvar + (x - y_mean) ** 2 / torch.exp(y_logvar)).sum(dim=(1, 2, 3))


def ll_no_half_with_constant(y_mean, y_logvar, x):
    return (math.log(2 * math.pi) + y_logvar + (x - y_mean) ** 2 / y_logvar.exp()).sum() \
        / x.shape[0]


def ll_detached_mean(y_mean, y_logvar, x):
    return loss_loglik(y_mean.detach(), y_logvar, x)


# ---------------------------------------------------------------------------------------------
# Wrong implementations: sample
# ---------------------------------------------------------------------------------------------

def sample_torch_normal(z_mean, z_logvar):
    return torch.normal(z_mean, torch.exp(0.5 * z_logvar))


def sample_distribution_sample(z_mean, z_logvar):
    return Normal(z_mean, torch.exp(0.5 * z_logvar)).sample()


def sample_detached(z_mean, z_logvar):
    return z_mean.detach() + torch.exp(0.5 * z_logvar.detach()) * torch.randn_like(z_mean)


def sample_detached_std(z_mean, z_logvar):
    return z_mean + torch.exp(0.5 * z_logvar).detach() * torch.randn_like(z_mean)


def sample_fixed_eps(z_mean, z_logvar):
    g = torch.Generator().manual_seed(0)
    return z_mean + torch.exp(0.5 * z_logvar) * torch.randn(z_mean.shape, generator=g)


def sample_reseeds_global(z_mean, z_logvar):
    torch.manual_seed(123)
    return z_mean + torch.exp(0.5 * z_logvar) * torch.randn_like(z_mean)


def sample_logvar_as_logstd(z_mean, z_logvar):
    return z_mean + torch.exp(z_logvar) * torch.randn_like(z_mean)


def sample_uniform(z_mean, z_logvar):
    return z_mean + torch.exp(0.5 * z_logvar) * torch.rand_like(z_mean)


def sample_without_mean(z_mean, z_logvar):
    return torch.exp(0.5 * z_logvar) * torch.randn_like(z_mean)


def sample_unscaled(z_mean, z_logvar):
    return z_mean + torch.randn_like(z_mean)


def sample_mean_only(z_mean, z_logvar):
    return z_mean


def sample_shared_over_rows(z_mean, z_logvar):
    return z_mean + torch.exp(0.5 * z_logvar) * torch.randn(z_mean.shape[1])


def sample_shared_over_columns(z_mean, z_logvar):
    return z_mean + torch.exp(0.5 * z_logvar) * torch.randn(z_mean.shape[0], 1)


def sample_float64(z_mean, z_logvar):
    return (z_mean + torch.exp(0.5 * z_logvar) * torch.randn_like(z_mean)).double()


# ---------------------------------------------------------------------------------------------
# Wrong implementations: Encoder / Decoder
# ---------------------------------------------------------------------------------------------

class EncoderHardcoded10(EncoderMLP):
    def __init__(self, n_components):
        super().__init__(10)


class EncoderSingleTensor(EncoderMLP):
    def forward(self, x):
        return self.net(x)


class EncoderMeanOnly(Encoder):
    def forward(self, x):
        return self.mean_head(self.body(x))


class EncoderSameHead(Encoder):
    def forward(self, x):
        h = self.body(x)
        return self.mean_head(h), self.mean_head(h)


class EncoderConstantLogvar(Encoder):
    def forward(self, x):
        z_mean, _ = super().forward(x)
        return z_mean, torch.zeros_like(z_mean)


class EncoderThreeOutputs(Encoder):
    def forward(self, x):
        z_mean, z_logvar = super().forward(x)
        return z_mean, z_logvar, self.sample(z_mean, z_logvar)


class EncoderNotModule:
    def __init__(self, n_components):
        self.n_components = n_components


class EncoderStub(nn.Module):
    def __init__(self, n_components):
        super().__init__()

    def forward(self, x):
        raise NotImplementedError()


class DecoderNoFloor(Decoder):
    def forward(self, z):
        h = self.body(z).view(-1, 2, 28, 28)
        return h[:, :1], h[:, 1:]


class DecoderLowFloor(Decoder):
    """A floor at log(1e-6) = -13.8 is below the allowed minimum."""

    def forward(self, z):
        h = self.body(z).view(-1, 2, 28, 28)
        return h[:, :1], h[:, 1:].clamp(min=math.log(1e-6))


class DecoderSwapped(Decoder):
    def forward(self, z):
        h = self.body(z).view(-1, 2, 28, 28)
        return h[:, 1:].clamp(min=MIN_LOGVAR), h[:, :1]


class DecoderSingleTensor(Decoder):
    def forward(self, z):
        return super().forward(z)[0]


class DecoderStacked(Decoder):
    def forward(self, z):
        return torch.cat(super().forward(z), dim=1)


class DecoderFlat(Decoder):
    def forward(self, z):
        y_mean, y_logvar = super().forward(z)
        return y_mean.flatten(1), y_logvar.flatten(1)


class DecoderHardcoded10(Decoder):
    def __init__(self, n_components):
        super().__init__(10)


class DecoderDetachedLogvar(Decoder):
    def forward(self, z):
        y_mean, y_logvar = super().forward(z)
        return y_mean, y_logvar.detach()


# ---------------------------------------------------------------------------------------------
# The reference and the alternatives pass
# ---------------------------------------------------------------------------------------------

def test_reference_passes_every_check():
    """Does the reference implementation pass every VAE check?"""
    check_loss_kl(loss_kl)
    check_loss_loglik(loss_loglik)
    check_sample(Encoder(n_components=10))
    check_encoder(Encoder)
    check_decoder(Decoder)


@pytest.mark.parametrize("fn", [kl_distributions, kl_float64], ids=lambda f: f.__name__)
def test_alternative_kl_passes(fn):
    """Does a correct loss_kl written differently (torch.distributions, float64) pass?"""
    check_loss_kl(fn)


@pytest.mark.parametrize("fn", [loglik_distributions, loglik_with_constant],
                         ids=lambda f: f.__name__)
def test_alternative_loglik_passes(fn):
    """Does a correct loss_loglik pass with and without the constant 0.5*D*log(2*pi)?"""
    check_loss_loglik(fn)


@pytest.mark.parametrize("obj", [sample_rsample, sample_sqrt, EncoderMLP(3)],
                         ids=["rsample", "sqrt_exp", "encoder_with_rsample"])
def test_alternative_sample_passes(obj):
    """Does sample pass when written with Normal(...).rsample() or sqrt(exp(z_logvar))?"""
    check_sample(obj)


def test_alternative_encoder_passes():
    """Does an MLP encoder with one head split in two pass as well as the conv reference?"""
    check_encoder(EncoderMLP)


@pytest.mark.parametrize("cls", [DecoderConvClamp, DecoderTanhFloor], ids=lambda c: c.__name__)
def test_alternative_decoder_passes(cls):
    """Does a decoder with another architecture and a hard clamp or a tanh-bounded floor pass?"""
    check_decoder(cls)


@pytest.mark.parametrize("seed", range(30))
def test_sample_check_rarely_rejects_a_correct_sample(seed):
    """Does a correct sample pass check_sample for 30 seeds (its false-alarm bound is 1e-6)?"""
    check_sample(sample_rsample if seed % 2 else Encoder(n_components=2), seed=seed)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_other_seeds_pass(seed):
    """Do the reference loss functions pass with other seeds (as hidden tests use them)?"""
    check_loss_kl(loss_kl, seed=seed)
    check_loss_kl(kl_distributions, seed=seed)
    check_loss_loglik(loss_loglik, seed=seed)
    check_loss_loglik(loglik_with_constant, seed=seed)


def test_models_pass_with_another_seed():
    """Do the reference Encoder and Decoder pass with another seed?"""
    check_encoder(Encoder, seed=1)
    check_decoder(Decoder, seed=1)


def test_checks_restore_the_global_state():
    """Does running a check leave the notebook's random state and thread count untouched?"""
    torch.manual_seed(7)
    before, threads = torch.get_rng_state(), torch.get_num_threads()
    check_sample(sample_rsample)
    check_encoder(EncoderMLP)
    with pytest.raises(CheckFailure):
        check_decoder(DecoderNoFloor)
    assert torch.equal(torch.get_rng_state(), before)
    assert torch.get_num_threads() == threads


def test_sample_check_derivation_numbers():
    """Is the documented false-alarm bound of check_sample below 1e-6?"""
    from autograder.checks import sampling
    n_elements = sampling.SAMPLE_ROWS * sampling.SAMPLE_COLS
    n_stats = 2 * n_elements + n_elements * (n_elements - 1) // 2
    tail = math.erfc(sampling.SAMPLE_Z_BOUND / math.sqrt(2))   # two-sided P(|N(0,1)| > bound)
    assert n_stats == 90
    assert n_stats * tail < 1e-6 / 5
    assert sampling.SAMPLE_N_DRAWS >= 20_000


def test_min_logvar_allowed_admits_the_reference_floor():
    """Is the reference floor log(1e-3) inside the allowed range, and log(1e-6) outside?"""
    assert math.log(1e-6) < MIN_LOGVAR_ALLOWED <= math.log(1e-4) < MIN_LOGVAR


# ---------------------------------------------------------------------------------------------
# Wrong implementations fail with the right hint
# ---------------------------------------------------------------------------------------------

KL_MUTANTS = [
    (kl_no_half, r"2x too large - did you drop the factor 1/2"),
    (kl_batch_sum, r"sum over the batch instead of averaging"),
    (kl_mean_all, r"average over the latent dimensions instead of summing"),
    (kl_flipped, r"negative value(.|\n)*is the sign flipped"),
    (kl_std_as_var, r"standard deviation exp\(0\.5\*z_logvar\) where the variance"),
    (kl_logvar_as_logstd, r"log-variance, not a log standard deviation"),
    (kl_per_sample, r"per-sample vector instead of a scalar - missing a mean over the batch"),
    (kl_no_minus_one, r"forget the -1 term"),
    (kl_mean_not_squared, r"not symmetric in the mean(.|\n)*square z_mean"),
    (kl_item, r"not \.item\(\)"),
    (kl_detached_logvar, r"gradient with respect to z_logvar(.|\n)*detached"),
    (kl_numpy, r"wrong return type(.|\n)*numpy"),
    (kl_half_precision, r"wrong dtype"),
    (kl_no_half_batch_sum, r"factor 1/2\? did you sum over the batch"),
    (kl_always_equal, r"wrong return type(.|\n)*AlwaysEqual"),
    (kl_subclass, r"wrong return type(.|\n)*Tensor subclass"),
]


@pytest.mark.parametrize("fn, hint", KL_MUTANTS, ids=[f.__name__ for f, _ in KL_MUTANTS])
def test_wrong_kl_is_named(fn, hint):
    """Does check_loss_kl reject this wrong loss_kl with a hint naming the mistake?"""
    with pytest.raises(CheckFailure, match=hint):
        check_loss_kl(fn)


LOGLIK_MUTANTS = [
    (ll_no_half, r"2x too large - did you drop the factor 1/2"),
    (ll_batch_sum, r"sum over the batch instead of averaging"),
    (ll_pixel_mean, r"average over the pixels instead of summing"),
    (ll_flipped, r"sign flipped\? loss_loglik is the NEGATIVE"),
    (ll_flipped_with_constant, r"sign flipped\? loss_loglik is the NEGATIVE"),
    (ll_logvar_as_logstd, r"log-variance, not a log standard deviation"),
    (ll_logvar_as_var, r"non-finite value(.|\n)*the variance is exp\(y_logvar\)"),
    (ll_divide_by_logvar, r"non-finite(.|\n)*dividing by y_logvar"),
    (ll_std_as_var, r"standard deviation exp\(0\.5\*y_logvar\) where the variance"),
    (ll_per_sample, r"per-sample vector instead of a scalar"),
    (ll_no_half_with_constant, r"factor 1/2"),
    (ll_detached_mean, r"no gradient reaches y_mean(.|\n)*detached"),
]


@pytest.mark.parametrize("fn, hint", LOGLIK_MUTANTS, ids=[f.__name__ for f, _ in LOGLIK_MUTANTS])
def test_wrong_loglik_is_named(fn, hint):
    """Does check_loss_loglik reject this wrong loss_loglik with a hint naming the mistake?"""
    with pytest.raises(CheckFailure, match=hint):
        check_loss_loglik(fn)


SAMPLE_MUTANTS = [
    (sample_torch_normal, r"wrong gradient with respect to z_mean(.|\n)*reparameterization"),
    (sample_distribution_sample, r"not differentiable(.|\n)*reparameterization trick"),
    (sample_detached, r"not differentiable(.|\n)*reparameterization trick"),
    (sample_detached_std, r"gradient with respect to z_logvar(.|\n)*reparameterization"),
    (sample_fixed_eps, r"identical(.|\n)*fresh noise on every call"),
    (sample_reseeds_global, r"identical(.|\n)*fresh noise on every call"),
    (sample_logvar_as_logstd, r"wrong standard deviation(.|\n)*not a log standard deviation"),
    (sample_uniform, r"wrong standard deviation(.|\n)*not uniform"),
    (sample_unscaled, r"standard deviation of z is 1"),
    (sample_without_mean, r"wrong mean(.|\n)*the mean of z is 0, not z_mean"),
    (sample_mean_only, r"z is just z_mean"),
    (sample_shared_over_rows, r"shared by all rows"),
    (sample_shared_over_columns, r"correlated(.|\n)*one independent eps per element"),
    (sample_float64, r"wrong dtype"),
]


@pytest.mark.parametrize("fn, hint", SAMPLE_MUTANTS, ids=[f.__name__ for f, _ in SAMPLE_MUTANTS])
def test_wrong_sample_is_named(fn, hint):
    """Does check_sample reject this wrong sample with a hint naming the mistake?"""
    with pytest.raises(CheckFailure, match=hint):
        check_sample(fn)


ENCODER_MUTANTS = [
    (EncoderHardcoded10, r"n_components is not honoured: 10 columns for n_components=2"),
    (EncoderSingleTensor, r"single tensor(.|\n)*tuple \(z_mean, z_logvar\)"),
    (EncoderMeanOnly, r"single tensor(.|\n)*tuple \(z_mean, z_logvar\)"),
    (EncoderThreeOutputs, r"tuple of 3 items(.|\n)*exactly two tensors"),
    (EncoderSameHead, r"z_mean and z_logvar are identical"),
    (EncoderConstantLogvar, r"z_logvar does not depend on the model's parameters"),
    (EncoderNotModule, r"not a torch module"),
]


@pytest.mark.parametrize("cls, hint", ENCODER_MUTANTS,
                         ids=[c.__name__ for c, _ in ENCODER_MUTANTS])
def test_wrong_encoder_is_named(cls, hint):
    """Does check_encoder reject this wrong Encoder with a hint naming the mistake?"""
    with pytest.raises(CheckFailure, match=hint):
        check_encoder(cls)


DECODER_MUTANTS = [
    (DecoderNoFloor, r"floor does not hold(.|\n)*y_logvar needs a floor"),
    (DecoderLowFloor, r"floor does not hold(.|\n)*floor at -13.8155 is too low"),
    (DecoderSwapped, r"the order is \(y_mean, y_logvar\)"),
    (DecoderSingleTensor, r"single tensor(.|\n)*tuple \(y_mean, y_logvar\)"),
    (DecoderStacked, r"stacked on the channel axis"),
    (DecoderFlat, r"reshape to \(batch_size, 1, 28, 28\)"),
    (DecoderHardcoded10, r"n_components is not honoured"),
    (DecoderDetachedLogvar, r"y_logvar does not depend on the model's parameters"),
]


@pytest.mark.parametrize("cls, hint", DECODER_MUTANTS,
                         ids=[c.__name__ for c, _ in DECODER_MUTANTS])
def test_wrong_decoder_is_named(cls, hint):
    """Does check_decoder reject this wrong Decoder with a hint naming the mistake?"""
    with pytest.raises(CheckFailure, match=hint):
        check_decoder(cls)


# ---------------------------------------------------------------------------------------------
# Messages
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("check, obj", [
    (check_loss_kl, stub), (check_loss_loglik, stub), (check_sample, stub),
    (check_encoder, EncoderStub), (check_decoder, EncoderStub),
], ids=["loss_kl", "loss_loglik", "sample", "encoder", "decoder"])
def test_stub_reads_not_implemented_yet(check, obj):
    """Does an untouched stub read as "not implemented yet" rather than a crash?"""
    with pytest.raises(NotImplementedYet, match="not implemented yet"):
        check(obj)


def test_kl_message_has_four_parts():
    """Does a wrong KL value say what was tried, expected, got, and a hint, with numbers?"""
    with pytest.raises(CheckFailure) as info:
        check_loss_kl(kl_no_half)
    lines = str(info.value).splitlines()
    assert lines[0] == ("loss_kl: wrong value for z_mean=0, z_logvar=log 2, shape (3, 2)")
    assert lines[1].startswith("  expected 0.306853")
    assert lines[2] == "  got      0.613706"
    assert lines[3] == "  hint: exactly 2x too large - did you drop the factor 1/2?"
    assert "{" not in str(info.value)


def test_batch_sum_names_the_factor():
    """Does a sum over the batch report the exact factor (the batch size)?"""
    with pytest.raises(CheckFailure, match=r"exactly 3x too large - did you sum over the batch"):
        check_loss_kl(kl_batch_sum)


def test_sample_message_names_the_worst_element():
    """Does a wrong standard deviation report one element, its expected value and the bound?"""
    with pytest.raises(CheckFailure) as info:
        check_sample(sample_logvar_as_logstd)
    text = str(info.value)
    assert "at element (" in text and "allowed +-" in text and "20000 draws" in text


def test_passing_an_instance_or_class_is_explained():
    """Does passing Encoder(10) to check_encoder, or the class to check_sample, get a hint?"""
    with pytest.raises(CheckFailure, match="pass the class itself"):
        check_encoder(Encoder(10))
    with pytest.raises(CheckFailure, match=r"pass an instance"):
        check_sample(Encoder)
    with pytest.raises(CheckFailure, match="not callable"):
        check_loss_kl(loss_kl(torch.zeros(2, 2), torch.zeros(2, 2)))


# ---------------------------------------------------------------------------------------------
# The solution notebook's own definitions
# ---------------------------------------------------------------------------------------------

import autograder.checks.vae as vae  # noqa: E402
from autograder.checks.thresholds import THRESHOLDS  # noqa: E402


@pytest.fixture(scope="module")
def solution():
    return solution_namespace("vae")


def test_solution_notebook_passes_every_check(solution):
    """Do the solution notebook's definitions pass every check, with the hidden tests' seeds?"""
    for seed in (0, 1, 2):
        check_loss_kl(solution["loss_kl"], seed=seed)
        check_loss_loglik(solution["loss_loglik"], seed=seed)
        vae.check_encoder_sample(solution["Encoder"], seed=seed)
    for seed in (0, 1):
        check_encoder(solution["Encoder"], seed=seed)
        check_decoder(solution["Decoder"], seed=seed)


# ---------------------------------------------------------------------------------------------
# check_encoder_sample: check_sample on a class
# ---------------------------------------------------------------------------------------------

class EncoderInitStub(nn.Module):
    def __init__(self, n_components):
        super().__init__()
        raise NotImplementedError()


class EncoderSampleStub(Encoder):
    def sample(self, z_mean, z_logvar):
        raise NotImplementedError()


class EncoderSampleLogstd(Encoder):
    def sample(self, z_mean, z_logvar):
        return z_mean + torch.exp(z_logvar) * torch.randn_like(z_mean)


def test_encoder_sample_takes_the_class():
    """Does check_encoder_sample build the Encoder itself and pass a correct sample method?"""
    vae.check_encoder_sample(Encoder)
    vae.check_encoder_sample(EncoderMLP, seed=3)


@pytest.mark.parametrize("cls", [EncoderInitStub, EncoderSampleStub],
                         ids=["init_stub", "sample_stub"])
def test_encoder_sample_stub_reads_not_implemented_yet(cls):
    """Does an unfinished __init__ or sample read as "not implemented yet", not a crash?"""
    with pytest.raises(NotImplementedYet, match="not implemented yet"):
        vae.check_encoder_sample(cls)


def test_encoder_sample_names_the_mistake():
    """Does a sample method with exp(z_logvar) as the standard deviation get check_sample's hint?"""
    with pytest.raises(CheckFailure, match="not a log standard deviation"):
        vae.check_encoder_sample(EncoderSampleLogstd)


def test_encoder_sample_explains_an_instance():
    """Does passing Encoder(2) instead of the class get a hint?"""
    with pytest.raises(CheckFailure, match="pass the class itself"):
        vae.check_encoder_sample(Encoder(2))


# ---------------------------------------------------------------------------------------------
# The trained-model checks, on a small data set with a known answer
# ---------------------------------------------------------------------------------------------

class BlockMNIST(torch.utils.data.Dataset):
    """An MNIST look-alike: image i is a bright 7x7 block in the cell of its label (cells of a
    4x4 grid, row-major), values in [0.5, 1], zero elsewhere."""

    def __init__(self, n: int, seed: int = 0):
        from data_tools.mnist import Source

        gen = torch.Generator().manual_seed(seed)
        self.source = Source("embedded", "a test set", "argument")  # graded with the embedded bars
        self.targets = torch.arange(n) % 10
        self.x = torch.zeros(n, 1, 28, 28)
        for i, k in enumerate(self.targets.tolist()):
            r, c = divmod(k, 4)
            self.x[i, 0, 7 * r:7 * r + 7, 7 * c:7 * c + 7] = 0.5 + 0.5 * torch.rand(7, 7,
                                                                                   generator=gen)

    def __len__(self):
        return len(self.targets)

    def __getitem__(self, i):
        return self.x[i], int(self.targets[i])


#: E[s^2] for s ~ U(0.5, 1): the variance of a block pixel of BlockMNIST in varianceMNIST.
BLOCK_VAR = (1.0 - 0.125) / 3 / 0.5


class BlockEncoder(nn.Module):
    """z_mean: the mean of x**2 in each of the ten cells (a code that names the label), with
    a small variance, so that a sampled z keeps the label."""

    def __init__(self, n_components=10):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))
        self.logvar = -12.0

    def forward(self, x):
        cells = F.avg_pool2d(x ** 2, 7).flatten(1)[:, :10]        # (B, 10)
        z_mean = self.scale * cells
        return z_mean, torch.full_like(z_mean, self.logvar)

    def sample(self, z_mean, z_logvar):
        raise AssertionError("the evaluation must not call the student's sample")


class ZeroEncoder(BlockEncoder):
    """q(z | x) = N(0, exp(logvar)) whatever x: the codes carry nothing."""

    def __init__(self, n_components=10, logvar=0.0):
        super().__init__(n_components)
        self.logvar = logvar

    def forward(self, x):
        z_mean = self.scale * torch.zeros(x.shape[0], 10)
        return z_mean, torch.full_like(z_mean, self.logvar)


class NoiseEncoder(BlockEncoder):
    """z_mean is random, unrelated to x."""

    def forward(self, x):
        z_mean = 3.0 * torch.randn(x.shape[0], 10) * self.scale
        return z_mean, torch.zeros_like(z_mean)


class NanEncoder(BlockEncoder):
    def forward(self, x):
        z_mean, z_logvar = super().forward(x)
        return z_mean * float("nan"), z_logvar


class ConstantDecoder(nn.Module):
    """y_mean = 0 and y_logvar = a constant, whatever z."""

    def __init__(self, n_components=10, logvar=0.0):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))
        self.logvar = logvar

    def forward(self, z):
        y_mean = self.scale * torch.zeros(z.shape[0], 1, 28, 28)
        return y_mean, torch.full_like(y_mean, self.logvar)


class ZDecoder(ConstantDecoder):
    """y_logvar of every pixel is the first coordinate of z: the loss depends on the draw of z."""

    def forward(self, z):
        y_mean = self.scale * torch.zeros(z.shape[0], 1, 28, 28)
        return y_mean, z[:, :1, None, None].expand(-1, 1, 28, 28).clone()


class FloorDecoder(ConstantDecoder):
    """y_logvar at the floor log(1e-3) everywhere: right on the background only."""

    def __init__(self, n_components=10):
        super().__init__(n_components, logvar=math.log(1e-3))


class BlockDecoder(ConstantDecoder):
    """The right variance in the cell with the largest code, the floor log(1e-3) elsewhere."""

    def forward(self, z):
        k = z.argmax(1)                                            # (B,)
        mask = torch.zeros(z.shape[0], 1, 4, 4)
        mask.view(z.shape[0], 16)[torch.arange(z.shape[0]), k] = 1.0
        mask = F.interpolate(mask, scale_factor=7, mode="nearest")  # (B, 1, 28, 28)
        y_logvar = torch.where(mask > 0, math.log(BLOCK_VAR), math.log(1e-3))
        return self.scale * torch.zeros_like(y_logvar), y_logvar


@pytest.fixture(scope="module")
def block_data():
    from data_tools.variance import VarianceMNIST

    train, test = BlockMNIST(200, seed=0), BlockMNIST(100, seed=1)
    return (VarianceMNIST(train, eval_seed=vae.EVAL_SEED_TRAIN),
            VarianceMNIST(test, eval_seed=vae.EVAL_SEED_TEST))


def _test_images(testset):
    x, _ = testset.batch(range(len(testset)))
    return x.double()


def test_evaluate_loss_matches_closed_form(block_data):
    """With q = N(0, 2 I) and p(x | z) = N(0, I), is the loss n/2 (1 - log 2) + sum x^2 / 2?"""
    trainset, testset = block_data
    result = vae.evaluate_vae(ZeroEncoder(logvar=math.log(2.0)), ConstantDecoder(logvar=0.0),
                              trainset, testset)
    x = _test_images(testset)
    lv = float(torch.tensor(math.log(2.0)))                 # log 2 as the float32 encoder has it
    kl = 10 * 0.5 * (math.exp(lv) - 1.0 - lv)
    nll = float(0.5 * (x ** 2).flatten(1).sum(1).mean())
    assert result["kl"] == pytest.approx(kl, rel=1e-9)
    assert result["nll"] == pytest.approx(nll, rel=1e-9)
    assert result["loss"] == pytest.approx(kl + nll, rel=1e-9)
    assert result["min_y_logvar"] == 0.0


def test_evaluate_draws_z_with_its_own_seed(block_data):
    """Is z = z_mean + exp(0.5 z_logvar) eps with eps from EVAL_Z_SEED, one row per test image,
    without calling the student's sample?"""
    trainset, testset = block_data
    result = vae.evaluate_vae(ZeroEncoder(logvar=0.0), ZDecoder(), trainset, testset)
    eps = torch.randn(len(testset), 10, generator=torch.Generator().manual_seed(vae.EVAL_Z_SEED),
                      dtype=torch.float64)
    lv = eps[:, :1].float().double()                                  # y_logvar per image
    x2 = (_test_images(testset) ** 2).flatten(1).sum(1, keepdim=True)
    nll = float((0.5 * (784 * lv + x2 * torch.exp(-lv))).mean())
    assert result["nll"] == pytest.approx(nll, rel=1e-6)


def test_evaluate_is_repeatable_and_seeds_the_data(block_data):
    """Does the evaluation give the same numbers twice, and for unseeded or plain data sets?"""
    from data_tools.variance import VarianceMNIST

    trainset, testset = block_data
    first = vae.evaluate_vae(BlockEncoder(), BlockDecoder(), trainset, testset)
    again = vae.evaluate_vae(BlockEncoder(), BlockDecoder(), trainset, testset)
    unseeded = vae.evaluate_vae(BlockEncoder(), BlockDecoder(), VarianceMNIST(trainset.base),
                                testset.base)
    assert first == again == unseeded


def test_trained_check_passes_a_good_model(block_data, tmp_path, capsys):
    """Does a model that knows the data pass, with one line per graded number: got, passes,
    required and the data source?"""
    from data_tools.utils import save_model

    save_model(BlockEncoder(), tmp_path / "enc.pth")
    save_model(BlockDecoder(), tmp_path / "dec.pth")
    capsys.readouterr()
    vae.check_trained_vae(BlockEncoder, BlockDecoder, 10, trainset=block_data[0],
                          testset=block_data[1], encoder_path=tmp_path / "enc.pth",
                          decoder_path=tmp_path / "dec.pth")
    out = capsys.readouterr().out
    probe, loss = out.splitlines()
    assert probe.startswith("linear probe accuracy on z_mean of the test samples: 1.000, passes: "
                            "required >= 0.700 (reference about 0.792) on the embedded data")
    assert probe.endswith("models in eval() mode")
    assert loss.startswith("test loss per image (KL + NLL): ") and ", passes: required <= " in loss


def _check(tmp_path, Encoder_, Decoder_, data, check=None):
    from data_tools.utils import save_model

    save_model(Encoder_(), tmp_path / "enc.pth")
    save_model(Decoder_(), tmp_path / "dec.pth")
    (check or vae.check_trained_vae)(Encoder_, Decoder_, 10, trainset=data[0], testset=data[1],
                                     encoder_path=tmp_path / "enc.pth",
                                     decoder_path=tmp_path / "dec.pth")


TRAINED_FAILURES = [
    (ZeroEncoder, BlockDecoder, r"accuracy too low\n  expected >= 0\.\d+ \(reference about "
                                r"0\.\d+\)\n  got      0\.\d+\n  hint: .*posterior collapse"),
    (NoiseEncoder, BlockDecoder, r"accuracy too low(.|\n)*hint: train longer"),
    (BlockEncoder, ConstantDecoder, r"negative ELBO(.|\n)*too high\n  expected <= -\d+\.0 "
                                    r"\(reference about -\d+\.\d\)\n  got      \d+\.\d \(KL "
                                    r"(.|\n)*smallest y_logvar on the test set is 0\.00(.|\n)*"
                                    r"lower the floor"),
    (BlockEncoder, FloorDecoder,
     r"negative ELBO(.|\n)*hint: train longer; check that the training loss is loss_kl"),
    (NanEncoder, BlockDecoder, r"z_mean has non-finite values(.|\n)*training diverged"),
]


@pytest.mark.parametrize("enc, dec, message", TRAINED_FAILURES,
                         ids=["collapse", "noise_codes", "high_floor", "untrained_decoder",
                              "diverged"])
def test_trained_check_names_the_problem(block_data, tmp_path, enc, dec, message):
    """Does check_trained_vae fail a bad model with got / required / reference and a hint
    that fits the numbers?"""
    with pytest.raises(CheckFailure, match=message):
        _check(tmp_path, enc, dec, block_data)


def test_trained_check_without_weights(tmp_path, block_data):
    """Does a missing weights file read as a loading problem with a hint, not a crash?"""
    with pytest.raises(CheckFailure, match="loading the trained VAE: no saved weights"):
        vae.check_trained_vae(BlockEncoder, BlockDecoder, 10, trainset=block_data[0],
                              testset=block_data[1], encoder_path=tmp_path / "missing.pth")


def test_trained_check_stub_reads_not_implemented_yet(block_data):
    """Does an untouched Encoder stub read as "not implemented yet" in the trained check?"""
    with pytest.raises(NotImplementedYet, match="not implemented yet"):
        vae.check_trained_vae(EncoderInitStub, BlockDecoder, 10, trainset=block_data[0],
                              testset=block_data[1])


def test_thresholds_cover_both_sources():
    """Are there VAE bars for both data sources, with the course's probe bar on full MNIST, and
    does each embedded bar lie on the safe side of its reference value?"""
    assert THRESHOLDS["mnist"]["vae"]["probe_accuracy"] == 0.80
    embedded = THRESHOLDS["embedded"]["vae"]
    assert embedded["probe_accuracy"] < embedded["reference_accuracy"]
    assert embedded["loss"] > embedded["reference_loss"]


def test_evaluation_data_is_seeded():
    """Are the default evaluation sets varianceMNIST with the documented seeds?"""
    trainset, testset = vae.evaluation_data()
    assert (trainset.eval_seed, testset.eval_seed) == (vae.EVAL_SEED_TRAIN, vae.EVAL_SEED_TEST)
    assert testset.source is not None and len(trainset) > len(testset)


def test_trained_check_unreadable_weights(tmp_path, block_data):
    """Does a weights path that cannot be read (here a directory) read as a loading problem?"""
    with pytest.raises(CheckFailure, match="loading the trained VAE: could not read"):
        vae.check_trained_vae(BlockEncoder, BlockDecoder, 10, trainset=block_data[0],
                              testset=block_data[1], encoder_path=tmp_path)


def test_notebook_states_the_current_bars():
    """Does the notebook's table tell students, per data source, the bars that
    autograder/checks/thresholds.py holds?"""
    import nbformat
    from conftest import SOLUTIONS

    nb = nbformat.read(SOLUTIONS / "vae.ipynb", as_version=4)
    rows = [line for c in nb.cells if c.cell_type == "markdown" for line in c.source.splitlines()
            if line.startswith("| ")]
    for source, label in (("embedded", "| embedded, "), ("mnist", "| full MNIST, ")):
        bars = THRESHOLDS[source]["vae"]
        (row,) = [r for r in rows if r.startswith(label)]
        assert f"≥ {bars['probe_accuracy']:.2f}" in row and f"≤ {bars['loss']:.0f}" in row, row


class HugeNegativeDecoder(ConstantDecoder):
    """y_logvar = -5000 everywhere: exp(0.5 * y_logvar) underflows to 0 (no floor)."""

    def __init__(self, n_components=10):
        super().__init__(n_components, logvar=-5000.0)


class HugePositiveDecoder(ConstantDecoder):
    """y_logvar = 1e38 everywhere: exp(0.5 * y_logvar) overflows to inf."""

    def __init__(self, n_components=10):
        super().__init__(n_components, logvar=1e38)


def test_trained_check_extreme_logvar_is_a_message(block_data, tmp_path):
    """Does a decoder whose y_logvar overflows exp() fail with a message, not a crash in
    torch.distributions, and one whose y_logvar would underflow it get the floor's hint?"""
    with pytest.raises(CheckFailure, match=r"non-finite value(.|\n)*overflows"):
        _check(tmp_path, BlockEncoder, HugePositiveDecoder, block_data)
    with pytest.raises(CheckFailure, match=r"too high(.|\n)*y_logvar goes down to -5000\.0"
                                           r"(.|\n)*gains nothing"):
        _check(tmp_path, BlockEncoder, HugeNegativeDecoder, block_data)


#: Pixels that are 0 in every BlockMNIST image (its bottom row of cells is never used): the
#: 2 x 2 bottom corners.
ZERO_CORNERS = torch.zeros(28, 28, dtype=torch.bool)
ZERO_CORNERS[26:, :2] = ZERO_CORNERS[26:, 26:] = True


class CornerDecoder(ConstantDecoder):
    """y_mean = 0; y_logvar = -700 on the pixels that are always 0, 0 elsewhere: a decoder
    without a floor that cashes in the zero-variance background with untrained weights."""

    def forward(self, z):
        y_mean = self.scale * torch.zeros(z.shape[0], 1, 28, 28)
        return y_mean, torch.where(ZERO_CORNERS, -700.0, 0.0).expand_as(y_mean).clone()


def test_graded_loss_applies_the_floor(block_data, tmp_path):
    """Does the graded loss clamp y_logvar at the documented floor, so that -700 on the
    always-zero corners counts as -10 there, and does the loss check then fail and say so?"""
    trainset, testset = block_data
    assert not _test_images(testset)[:, 0, ZERO_CORNERS].any()
    result = vae.evaluate_vae(ZeroEncoder(logvar=0.0), CornerDecoder(), trainset, testset)
    x2 = float(0.5 * (_test_images(testset) ** 2).flatten(1).sum(1).mean())
    n_corners = int(ZERO_CORNERS.sum())
    assert result["nll"] == pytest.approx(x2 + 0.5 * vae.MIN_LOGVAR_ALLOWED * n_corners, rel=1e-9)
    assert result["min_y_logvar"] == -700.0
    bar = THRESHOLDS["embedded"]["vae"]["loss"]
    assert x2 - 0.5 * 700.0 * n_corners < bar < result["loss"]  # passes only without the floor
    with pytest.raises(CheckFailure, match=r"too high(.|\n)*y_logvar goes down to -700\.0(.|\n)*"
                                           r"clamped at -10, so a lower log-variance gains nothing"):
        _check(tmp_path, ZeroEncoder, CornerDecoder, block_data, vae.check_trained_vae_loss)


def test_graded_loss_keeps_a_decoder_at_the_floor(block_data):
    """Is a decoder whose y_logvar is exactly the floor -10 graded on its own numbers?"""
    trainset, testset = block_data
    result = vae.evaluate_vae(ZeroEncoder(logvar=0.0), ConstantDecoder(logvar=-10.0),
                              trainset, testset)
    x = _test_images(testset)
    nll = float((0.5 * (784 * -10.0 + (x ** 2).flatten(1).sum(1) * math.exp(10.0))).mean())
    assert result["nll"] == pytest.approx(nll, rel=1e-9)
    assert result["min_y_logvar"] == -10.0
