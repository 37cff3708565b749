"""Students' code for the first assignment (ae, dae, vae), written in the styles that public
student solutions of this exercise use (2020 to 2024), the classic PyTorch examples, and
other styles a correct solution may take. Each entry names where its pattern comes from.

The code here is written for this corpus: it follows the patterns, not the text, of its
sources.
"""
from __future__ import annotations

from .entry import Entry

STUDENT_SOLUTIONS = "public student solutions of this exercise (2020-2024)"

AE_ENCODER_DEVICE = '''\
class Encoder(nn.Module):
    def __init__(self, n_components):
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(1, 6, kernel_size=5), nn.ReLU(),
            nn.Conv2d(6, 16, kernel_size=5), nn.ReLU(),
        )
        self.fc = nn.Sequential(
            nn.Linear(16 * 20 * 20, 250), nn.ReLU(),
            nn.Linear(250, n_components),
        )

    def forward(self, x):
        x = x.to(device)
        h = self.conv(x)
        return self.fc(h.view(h.size(0), -1))
'''

AE_DECODER_DEVICE = '''\
class Decoder(nn.Module):
    def __init__(self, n_components):
        super().__init__()
        self.fc = nn.Sequential(
            nn.Linear(n_components, 250), nn.ReLU(),
            nn.Linear(250, 16 * 20 * 20), nn.ReLU(),
        )
        self.deconv = nn.Sequential(
            nn.ConvTranspose2d(16, 6, kernel_size=5), nn.ReLU(),
            nn.ConvTranspose2d(6, 1, kernel_size=5),
        )

    def forward(self, z):
        z = z.to(device)
        h = self.fc(z).view(-1, 16, 20, 20)
        return self.deconv(h)
'''

AE_ENCODER_EXPLICIT = '''\
class Encoder(nn.Module):
    def __init__(self, n_components):
        hidden = 250  # code before super().__init__()
        super(Encoder, self).__init__()
        self.conv1 = nn.Conv2d(1, 6, 5)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 20 * 20, hidden)
        self.fc2 = nn.Linear(hidden, n_components)

    def forward(self, x):
        x = F.relu(self.conv1(x))
        x = F.relu(self.conv2(x))
        x = x.view(-1, 16 * 20 * 20)
        x = F.relu(self.fc1(x))
        return self.fc2(x)
'''

AE_DECODER_EXPLICIT = '''\
class Decoder(nn.Module):
    def __init__(self, n_components):
        super(Decoder, self).__init__()
        self.fc1 = nn.Linear(n_components, 250)
        self.fc2 = nn.Linear(250, 16 * 20 * 20)
        self.unflatten = nn.Unflatten(1, (16, 20, 20))
        self.deconv1 = nn.ConvTranspose2d(16, 6, 5)
        self.deconv2 = nn.ConvTranspose2d(6, 1, 5)

    def forward(self, z):
        h = F.relu(self.fc2(F.relu(self.fc1(z))))
        h = F.relu(self.deconv1(self.unflatten(h)))
        return self.deconv2(h)
'''

AE_OWN_CELL = '''\
import copy

import numpy as np

CONV_SHAPE = (16, 20, 20)  # the encoder's feature maps
HIDDEN = 250


def conv_block(c_in, c_out):
    """A 5x5 convolution and its ReLU."""
    return nn.Sequential(nn.Conv2d(c_in, c_out, kernel_size=5), nn.ReLU())
'''

AE_ENCODER_HELPERS = '''\
class Encoder(nn.Module):
    def __init__(self, n_components):
        super().__init__()
        self.conv = nn.Sequential(conv_block(1, 6), conv_block(6, 16))
        n_flat = int(np.prod(CONV_SHAPE))
        self.fc = nn.Sequential(nn.Linear(n_flat, HIDDEN), nn.ReLU(),
                                nn.Linear(HIDDEN, n_components))

    def forward(self, x):
        return self.fc(torch.flatten(self.conv(x), start_dim=1))
'''

AE_DECODER_HELPERS = '''\
class Decoder(nn.Module):
    def __init__(self, n_components):
        super().__init__()
        act = nn.ReLU()
        self.fc = nn.Sequential(nn.Linear(n_components, HIDDEN), copy.deepcopy(act),
                                nn.Linear(HIDDEN, int(np.prod(CONV_SHAPE))), copy.deepcopy(act))
        self.deconv = nn.Sequential(nn.ConvTranspose2d(16, 6, kernel_size=5), nn.ReLU(),
                                    nn.ConvTranspose2d(6, 1, kernel_size=5))

    def forward(self, z):
        return self.deconv(self.fc(z).reshape(-1, *CONV_SHAPE))
'''

AE_DATA_MEAN_CELL = '''\
pixel_mean = float(trainset.x.mean())  # computed from the data, at top level
print("mean pixel value:", pixel_mean)
'''

AE_ENCODER_DATA_MEAN = AE_ENCODER_DEVICE.replace("x = x.to(device)", "x = x - pixel_mean")

DAE_DEVICE = '''\
class DAE(nn.Module):
    def __init__(self, n_components=10):
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Conv2d(1, 16, kernel_size=3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(16, 32, kernel_size=3, stride=2, padding=1), nn.ReLU(),
            nn.Flatten(),
            nn.Linear(32 * 7 * 7, 128), nn.ReLU(),
            nn.Linear(128, n_components),
        )
        self.decoder = nn.Sequential(
            nn.Linear(n_components, 128), nn.ReLU(),
            nn.Linear(128, 32 * 7 * 7), nn.ReLU(),
            nn.Unflatten(1, (32, 7, 7)),
            nn.ConvTranspose2d(32, 16, kernel_size=4, stride=2, padding=1), nn.ReLU(),
            nn.ConvTranspose2d(16, 1, kernel_size=4, stride=2, padding=1),
        )

    def forward(self, x):
        x = x.to(device)
        z = self.encoder(x)
        gate = torch.sigmoid(self.decoder(z)).to(device)
        return z, gate * x
'''

VAE_ENCODER_DEVICE = '''\
class Encoder(nn.Module):
    def __init__(self, n_components):
        super(Encoder, self).__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 8, kernel_size=5, stride=2), nn.BatchNorm2d(8), nn.ReLU(),
            nn.Conv2d(8, 16, kernel_size=5, stride=2), nn.ReLU(),
            nn.Flatten(),
            nn.Linear(16 * 4 * 4, 64), nn.ReLU(),
        )
        self.mean_head = nn.Linear(64, n_components)
        self.logvar_head = nn.Linear(64, n_components)

    def forward(self, x):
        h = self.body(x.to(device))
        return self.mean_head(h), self.logvar_head(h)

    def sample(self, z_mean, z_logvar):
        std = torch.exp(0.5 * z_logvar)
        eps = torch.randn(z_mean.size()).to(device)
        return z_mean + eps * std
'''

VAE_LOSS_KL_DEVICE = '''\
def loss_kl(z_mean, z_logvar):
    kl = -0.5 * torch.sum(1 + z_logvar - z_mean.pow(2) - z_logvar.exp(), dim=1)
    return kl.mean().to(device)
'''

VAE_OWN_CELL = '''\
import numpy as np

LOG_2PI = 1.8378770664093453  # log(2 pi)
'''

VAE_LOSS_LOGLIK_NUMPY = '''\
def loss_loglik(y_mean, y_logvar, x):
    x = x.to(device)
    var = torch.exp(y_logvar)
    nll = 0.5 * (LOG_2PI + y_logvar + (x - y_mean) ** 2 / var)  # with the constant
    assert np.isfinite(nll.detach().sum().item())
    return torch.sum(nll) / x.shape[0]
'''

VAE_SAMPLE_NO_VARIANCE = VAE_ENCODER_DEVICE.replace("return z_mean + eps * std",
                                                    "return z_mean + eps")

VAE_LOSS_LOGLIK_2PI_ONCE = '''\
import math


def loss_loglik(y_mean, y_logvar, x):
    nll = 0.5 * (y_logvar + (x - y_mean) ** 2 * torch.exp(-y_logvar))
    return nll.sum(dim=(1, 2, 3)).mean() + 0.5 * math.log(2 * math.pi)  # once, not per pixel
'''

ENTRIES = (
    Entry("ae_device_in_forward", "ae", STUDENT_SOLUTIONS,
          "`.to(device)` inside forward (device from the settings cell); view(size(0), -1)",
          cells={"ae_encoder": AE_ENCODER_DEVICE, "ae_decoder": AE_DECODER_DEVICE}),
    Entry("ae_explicit_layers", "ae", "the classic PyTorch examples (LeNet-style layers)",
          "explicit layers and F.relu, super(Class, self).__init__(), code before "
          "super().__init__(), view and nn.Unflatten",
          cells={"ae_encoder": AE_ENCODER_EXPLICIT, "ae_decoder": AE_DECODER_EXPLICIT}),
    Entry("ae_own_cell_helpers", "ae", STUDENT_SOLUTIONS,
          "`import numpy as np`, `import copy`, constants and a helper function in a cell of "
          "the student's own above the classes",
          cells={"ae_encoder": AE_ENCODER_HELPERS, "ae_decoder": AE_DECODER_HELPERS},
          added=(("ae_setup", AE_OWN_CELL),)),
    Entry("ae_saved_before_training", "ae", STUDENT_SOLUTIONS,
          "correct classes whose weights were saved before the training loop: the trained "
          "cells say so",
          weights="untrained", lost=("test_ae_probe", "test_ae_reconstruction"),
          messages={"test_ae_probe": "score like an untrained network"}),
    Entry("ae_top_level_data_value", "ae", STUDENT_SOLUTIONS,
          "a value computed from the data at top level (not re-run by the grader) used in "
          "forward: the cells say which statement was not re-run",
          cells={"ae_encoder": AE_ENCODER_DATA_MEAN}, added=(("ae_data", AE_DATA_MEAN_CELL),),
          lost=("test_ae_encoder", "test_ae_probe", "test_ae_reconstruction"),
          messages={"test_ae_encoder": "'pixel_mean' is set by a top-level statement that the "
                                       "grader does not re-run",
                    "test_ae_probe": "'pixel_mean' is set by a top-level statement"},
          correct=False),
    Entry("dae_device_in_forward", "dae", STUDENT_SOLUTIONS,
          "`.to(device)` inside forward, the gate multiplied after the model's last layer",
          cells={"dae_model": DAE_DEVICE}),
    Entry("vae_device_everywhere", "vae", STUDENT_SOLUTIONS,
          "`.to(device)` in forward, sample and the losses; numpy and a constant from the "
          "student's own cell; the log-likelihood with the 2 pi constant per pixel",
          cells={"vae_encoder": VAE_ENCODER_DEVICE, "vae_loss_kl": VAE_LOSS_KL_DEVICE,
                 "vae_loss_loglik": VAE_LOSS_LOGLIK_NUMPY},
          added=(("vae_setup", VAE_OWN_CELL),)),
    Entry("vae_sample_ignores_variance", "vae", STUDENT_SOLUTIONS,
          "a real bug: sample returns z_mean + eps, ignoring the variance",
          cells={"vae_encoder": VAE_SAMPLE_NO_VARIANCE}, lost=("test_vae_sample",),
          correct=False),
    Entry("vae_loglik_2pi_once_per_batch", "vae", STUDENT_SOLUTIONS,
          "a real bug: the log(2 pi) constant added once per batch, not once per pixel",
          cells={"vae_loss_loglik": VAE_LOSS_LOGLIK_2PI_ONCE}, lost=("test_vae_loss_loglik",),
          correct=False),
)
