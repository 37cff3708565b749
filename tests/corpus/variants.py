"""Students' versions of solution cells of the autoencoders assignment, with the points each
must get: dead units at initialisation that once made a structural check accuse a correct model
("does not depend on x"), and layers that forward never uses (issue 27, items 2 and 4b).

Each :class:`Variant` replaces one solution cell (``grade_id``, from the cell's
``metadata.nbgrader.grade_id``) of ``solutions/autoencoders/<notebook>.ipynb`` with ``cell``, a
complete cell as a student submits it (no nbgrader markers). ``points`` are the points of every
grade cell of that notebook when it is graded through nbgrader with ``weights``:

- ``"reference"``: the reference weights (``reference/``), moved by position into the student's
  parameters (the variant's layers hold the same tensors in the same order as the solution's);
- ``"untrained"``: the student's classes freshly initialised and saved before training (for
  variants whose parameters differ from the solution's); the trained-model cells then score 0
  whatever the code, and only the structural cells say something about the code.

The fast unit tests (``tests/test_ae_checks.py``, ``tests/test_dae_checks.py``) run the classes
of these cells through the structural checks directly.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Variant:
    """One student's version of one solution cell, and the points the notebook must get."""

    notebook: str             # "ae" or "dae" (solutions/autoencoders/<notebook>.ipynb)
    grade_id: str             # the solution cell it replaces
    cell: str                 # the full new source of that cell
    points: dict[str, float]  # grade_id of each grade cell -> expected points
    weights: str              # "reference" or "untrained" (see the module docstring)
    provenance: str           # where it comes from, and what it exercises


_DAE_GATE_AFTER_BATCHNORM = '''\
class DAE(nn.Module):
    def __init__(self, n_components=10):
        """Denoising autoencoder with a bottleneck code and a gated output layer.

        Parameters
        ----------
        n_components : int
            Size of the code z.
        """
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
            nn.ConvTranspose2d(16, 1, kernel_size=4, stride=2, padding=1), nn.ReLU(),
            nn.BatchNorm2d(1),
        )

    def forward(self, x):
        """
        Parameters
        ----------
        x : Tensor, shape (batch_size, 1, 28, 28)
            Corrupted input images.

        Returns
        -------
        z : Tensor, shape (batch_size, n_components)
            Codes.
        denoised_x : Tensor, shape (batch_size, 1, 28, 28)
            Denoised images.
        """
        z = self.encoder(x)
        denoised_x = torch.sigmoid(self.decoder(z))
        return z, denoised_x
'''

_DAE_GATED_AFTER_BATCHNORM = _DAE_GATE_AFTER_BATCHNORM.replace(
    "denoised_x = torch.sigmoid(self.decoder(z))", "denoised_x = x * torch.sigmoid(self.decoder(z))")

_DAE_FORGOTTEN_OUTPUT_CONV = '''\
class DAE(nn.Module):
    def __init__(self, n_components=10):
        """Denoising autoencoder with a bottleneck code and a gated output layer.

        Parameters
        ----------
        n_components : int
            Size of the code z.
        """
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
            nn.ConvTranspose2d(16, 16, kernel_size=4, stride=2, padding=1), nn.ReLU(),
        )
        self.out = nn.Conv2d(16, 1, kernel_size=1)  # 16 channels -> the gate logits

    def forward(self, x):
        """
        Parameters
        ----------
        x : Tensor, shape (batch_size, 1, 28, 28)
            Corrupted input images.

        Returns
        -------
        z : Tensor, shape (batch_size, n_components)
            Codes.
        denoised_x : Tensor, shape (batch_size, 1, 28, 28)
            Denoised images.
        """
        z = self.encoder(x)
        f = self.decoder(z)
        denoised_x = x * torch.sigmoid(f)
        return z, denoised_x
'''

_AE_DECODER_RELU_DARK_START = '''\
class Decoder(nn.Module):
    def __init__(self, n_components):
        """Decoder that mirrors the encoder.

        Parameters
        ----------
        n_components : int
            Size of the code.
        """
        super().__init__()
        self.fc = nn.Sequential(
            nn.Linear(n_components, 250), nn.ReLU(),
            nn.Linear(250, 16 * 20 * 20), nn.ReLU(),
        )
        self.deconv = nn.Sequential(
            nn.ConvTranspose2d(16, 6, kernel_size=5), nn.ReLU(),
            nn.ConvTranspose2d(6, 1, kernel_size=5), nn.ReLU(),  # pixels are never negative
        )
        nn.init.constant_(self.deconv[2].bias, -0.5)  # start from a dark (zero) background

    def forward(self, z):
        """
        Parameters
        ----------
        z : Tensor, shape (batch_size, n_components)
            Codes.

        Returns
        -------
        xrec : Tensor, shape (batch_size, 1, 28, 28)
            Reconstructed images.
        """
        h = self.fc(z).reshape(-1, 16, 20, 20)
        return self.deconv(h)
'''

_AE_DECODER_FORGOTTEN_LAST_LAYER = '''\
class Decoder(nn.Module):
    def __init__(self, n_components):
        """Decoder that mirrors the encoder.

        Parameters
        ----------
        n_components : int
            Size of the code.
        """
        super().__init__()
        self.fc1 = nn.Linear(n_components, 250)
        self.fc2 = nn.Linear(250, 16 * 20 * 20)
        self.deconv1 = nn.ConvTranspose2d(16, 6, kernel_size=5)
        self.deconv2 = nn.ConvTranspose2d(6, 1, kernel_size=5)

    def forward(self, z):
        """
        Parameters
        ----------
        z : Tensor, shape (batch_size, n_components)
            Codes.

        Returns
        -------
        xrec : Tensor, shape (batch_size, 1, 28, 28)
            Reconstructed images.
        """
        h = F.relu(self.fc1(z))
        h = F.relu(self.fc2(h)).view(-1, 16, 20, 20)
        xrec = F.relu(self.deconv1(h))
        return xrec
'''

_AE_DECODER_FORGOTTEN_OUTPUT_LAYER = '''\
class Decoder(nn.Module):
    def __init__(self, n_components):
        """Decoder that mirrors the encoder.

        Parameters
        ----------
        n_components : int
            Size of the code.
        """
        super().__init__()
        self.fc = nn.Sequential(
            nn.Linear(n_components, 250), nn.ReLU(),
            nn.Linear(250, 16 * 20 * 20), nn.ReLU(),
        )
        self.deconv = nn.Sequential(nn.ConvTranspose2d(16, 6, kernel_size=5), nn.ReLU())
        self.out = nn.ConvTranspose2d(6, 1, kernel_size=5)

    def forward(self, z):
        """
        Parameters
        ----------
        z : Tensor, shape (batch_size, n_components)
            Codes.

        Returns
        -------
        xrec : Tensor, shape (batch_size, 1, 28, 28)
            Reconstructed images.
        """
        h = self.fc(z).reshape(-1, 16, 20, 20)
        return self.deconv(h)
'''

VARIANTS: dict[str, Variant] = {
    "dae_gate_after_batchnorm": Variant(
        notebook="dae", grade_id="dae_model", cell=_DAE_GATE_AFTER_BATCHNORM,
        points={"test_dae": 3, "test_dae_probe": 0, "test_dae_denoising": 0},
        weights="untrained",
        provenance=("issue 27 item 2, reconstructed from a real submission's description: the "
                    "decoder ends in ReLU -> BatchNorm2d(1) and forward returns the gate; the "
                    "last ReLU is dead at initialisation, which was read as 'denoised_x does "
                    "not depend on x'; returning the gate costs only the denoising cell (and "
                    "gets the gate warning)")),
    "dae_gated_after_batchnorm": Variant(
        notebook="dae", grade_id="dae_model", cell=_DAE_GATED_AFTER_BATCHNORM,
        points={"test_dae": 3, "test_dae_probe": 0, "test_dae_denoising": 0},
        weights="untrained",
        provenance=("the same submission with the gate applied, x * sigmoid(BN(ReLU(...))): "
                    "correct code whose dead last ReLU was read as 'denoised_x does not depend "
                    "on the code z' (no gradient reaches the encoder at initialisation)")),
    "dae_forgotten_output_conv": Variant(
        notebook="dae", grade_id="dae_model", cell=_DAE_FORGOTTEN_OUTPUT_CONV,
        points={"test_dae": 0, "test_dae_probe": 0, "test_dae_denoising": 0},
        weights="untrained",
        provenance=("issue 27 item 4b, constructed: a 1x1 output convolution defined in "
                    "__init__ and never called, so the gate has 16 channels; the wrong shape of "
                    "denoised_x must name self.out (Conv2d) as never used in forward")),
    "ae_decoder_relu_dark_start": Variant(
        notebook="ae", grade_id="ae_decoder", cell=_AE_DECODER_RELU_DARK_START,
        points={"test_ae_encoder": 2, "test_ae_decoder": 2, "test_ae_probe": 2,
                "test_ae_reconstruction": 2},
        weights="reference",
        provenance=("issue 27 item 2, constructed in the style of the solution: ReLU as the "
                    "last activation and a negative output bias (a dark start), dead for every "
                    "code of the usual size at initialisation; correct code, full marks")),
    "ae_decoder_forgotten_last_layer": Variant(
        notebook="ae", grade_id="ae_decoder", cell=_AE_DECODER_FORGOTTEN_LAST_LAYER,
        points={"test_ae_encoder": 2, "test_ae_decoder": 0, "test_ae_probe": 2,
                "test_ae_reconstruction": 0},
        weights="reference",
        provenance=("issue 27 item 4b, constructed in the common one-attribute-per-layer style: "
                    "forward stops after deconv1, so xrec is (B, 6, 24, 24); the shape failure "
                    "must name self.deconv2 (ConvTranspose2d) as never used in forward")),
    "ae_decoder_forgotten_output_layer": Variant(
        notebook="ae", grade_id="ae_decoder", cell=_AE_DECODER_FORGOTTEN_OUTPUT_LAYER,
        points={"test_ae_encoder": 2, "test_ae_decoder": 0, "test_ae_probe": 2,
                "test_ae_reconstruction": 0},
        weights="reference",
        provenance=("issue 27 item 4b, constructed: the output layer kept apart from the "
                    "Sequential (self.out) and never called; the shape failure must name "
                    "self.out (ConvTranspose2d) as never used in forward")),
}

#: The phrase the message of each failing structural cell must contain (per variant, per cell),
#: once the lines of the message, which the checks wrap, are joined again.
MESSAGES: dict[str, dict[str, str]] = {
    "dae_forgotten_output_conv": {"test_dae": "self.out (Conv2d) is never used in forward"},
    "ae_decoder_forgotten_last_layer": {
        "test_ae_decoder": "self.deconv2 (ConvTranspose2d) is never used in forward"},
    "ae_decoder_forgotten_output_layer": {
        "test_ae_decoder": "self.out (ConvTranspose2d) is never used in forward"},
}

#: Where the grader does not yet give what ``points`` says, and why (``points`` keeps what is
#: fair: a real bug loses exactly its cells); the fairness test marks them as expected failures.
KNOWN_GAPS: dict[str, str] = {}
