"""Do the slips real students make cost only the points of what they break, with a hint that
says exactly what to change, under real `nbgrader autograde` (one call for every student)? And
does real `nbgrader validate` fail a submission that misses a trained-model bar?

Each crafted student is a solution notebook with one slip, submitted with weights that such a
student would have saved: a DAE whose forward returns the gate, trained by a loop that
multiplies it with the noisy input, has exactly the reference DAE's weights; an encoder
trained with the log standard deviation convention throughout has the reference weights with
its log-variance head halved; a decoder that returns logits or a softmax over the pixels keeps
the reference weights.
"""
from __future__ import annotations

import subprocess
import sys

import nbformat
import pytest
import torch
from conftest import (
    ASSIGNMENT,
    SOLUTIONS,
    WEIGHTS,
    errors,
    points,
    reference_weights,
    solution_namespace,
    swap,
)

from autograder.checks import ae as ae_checks
from autograder.checks.evaluation import UNTRAINED_HINT
from autograder.cli.weights import write_untrained_weights
from autograder.errors import CheckFailure
from autograder.grading.course import (
    all_scores,
    autograde,
    build_course,
    fill,
    graded,
    nbgrader_env,
    outputs,
    release,
    submit,
)

pytestmark = pytest.mark.slow

AE_FULL = {"test_ae_encoder": 2.0, "test_ae_decoder": 2.0, "test_ae_probe": 2.0,
           "test_ae_reconstruction": 2.0}
DAE_FULL = {"test_dae": 3.0, "test_dae_probe": 2.0, "test_dae_denoising": 2.0}
VAE_FULL = {"test_vae_encoder": 1.0, "test_vae_sample": 2.0, "test_vae_loss_kl": 2.0,
            "test_vae_decoder": 2.0, "test_vae_loss_loglik": 2.0, "test_vae_probe": 2.0,
            "test_vae_loss": 2.0}

# The DAE's forward returns the gate; its loop forms the denoised image outside the model.
DAE_OUTPUT = ("        denoised_x = x * torch.sigmoid(logits)\n"
              "        return z, denoised_x\n")
DAE_GATE_OUTPUT = ("        gate = torch.sigmoid(logits)\n"
                   "        return z, gate\n")
DAE_LOOP = ("            z, denoised_x = dae(x_tilde)\n"
            "            loss = loss_fn(denoised_x, x)     # compare with the clean sample\n")
DAE_GATE_LOOP = ("            z, gate = dae(x_tilde)\n"
                 "            loss = loss_fn(gate * x_tilde, x)\n")
# The VAE encoder's second output is used as a log standard deviation throughout.
VAE_SAMPLE = "return z_mean + torch.exp(0.5 * z_logvar) * eps"
VAE_SAMPLE_LOGSTD = "return z_mean + torch.exp(z_logvar) * eps"
VAE_KL = "kl = 0.5 * (torch.exp(z_logvar) + z_mean ** 2 - 1.0 - z_logvar)"
VAE_KL_LOGSTD = "kl = 0.5 * (torch.exp(2 * z_logvar) + z_mean ** 2 - 1.0) - z_logvar"
# The AE decoder's last line, and two slips: logits (as for BCEWithLogitsLoss), a softmax.
AE_OUTPUT = "        return self.deconv(h)                    # -> (B, 1, 28, 28)"
AE_LOGITS = "        return torch.logit(self.deconv(h).clamp(1e-3, 1 - 1e-3))"
AE_SOFTMAX = "        return F.softmax(self.deconv(h).flatten(1), dim=1).reshape(-1, 1, 28, 28)"


def _state(path):
    return torch.load(path, weights_only=True)


@pytest.fixture(scope="module")
def graded_course(tmp_path_factory):
    ae_w, dae_w, vae_w = (reference_weights(n) for n in ("ae", "dae", "vae"))
    tmp = tmp_path_factory.mktemp("slips")
    course = build_course(tmp / "course", (ASSIGNMENT,))
    ae, dae, vae = ((SOLUTIONS / f"{n}.ipynb").read_text() for n in ("ae", "dae", "vae"))
    ae_weights = {w: ae_w / w for w in WEIGHTS["ae"]}

    gate = swap(swap(dae, DAE_OUTPUT, DAE_GATE_OUTPUT), DAE_LOOP, DAE_GATE_LOOP)
    submit(course, "dae_gate", {"dae.ipynb": gate, "dae.pth": dae_w / "dae.pth"})

    logstd = swap(swap(vae, VAE_SAMPLE, VAE_SAMPLE_LOGSTD), VAE_KL, VAE_KL_LOGSTD)
    encoder = _state(vae_w / "vae_encoder.pth")
    for key in ("logvar_head.weight", "logvar_head.bias"):
        encoder[key] = 0.5 * encoder[key]  # log sigma = log(sigma^2) / 2
    dest = submit(course, "vae_logstd", {"vae.ipynb": logstd,
                                         "vae_decoder.pth": vae_w / "vae_decoder.pth"})
    torch.save(encoder, dest / "vae_encoder.pth")

    stale = _state(vae_w / "vae_encoder.pth")
    bn = [k[: -len(".running_mean")] for k in stale if k.endswith(".running_mean")]
    assert bn, "the reference encoder has a BatchNorm layer"
    for prefix in bn:
        stale[f"{prefix}.running_mean"].zero_()
        stale[f"{prefix}.running_var"].fill_(1.0)
    dest = submit(course, "vae_bn_stats", {"vae.ipynb": vae,
                                           "vae_decoder.pth": vae_w / "vae_decoder.pth"})
    torch.save(stale, dest / "vae_encoder.pth")

    submit(course, "ae_logits", {"ae.ipynb": swap(ae, AE_OUTPUT, AE_LOGITS), **ae_weights})
    submit(course, "ae_softmax", {"ae.ipynb": swap(ae, AE_OUTPUT, AE_SOFTMAX), **ae_weights})
    submit(course, "reference", {"ae.ipynb": ae, **ae_weights, "dae.ipynb": dae,
                                 "dae.pth": dae_w / "dae.pth", "vae.ipynb": vae,
                                 **{w: vae_w / w for w in WEIGHTS["vae"]}})
    proc = autograde(course, force=True)  # one nbgrader call for every student
    assert proc.returncode == 0, proc.output[-6000:]
    return course, all_scores(course)


def test_reference_keeps_full_marks(graded_course):
    """Does the reference still get every point of every notebook?"""
    course, result = graded_course
    assert points(result, "reference", "ae") == AE_FULL
    assert points(result, "reference", "dae") == DAE_FULL
    assert points(result, "reference", "vae") == VAE_FULL


def test_dae_returning_the_gate_loses_only_the_denoising_points(graded_course):
    """Does a DAE whose forward returns the gate sigmoid(f), trained by a loop that multiplies it
    with the noisy input, keep the shape and probe points, lose the denoising points with a hint
    naming the gate and the fix, and get a warning in the visible module test?"""
    course, result = graded_course
    assert points(result, "dae_gate", "dae") == {**DAE_FULL, "test_dae_denoising": 0.0}
    error = errors(course, "dae_gate", "dae")["test_dae_denoising"]
    assert "seems to return the gate sigmoid(f) itself" in error, error
    assert "denoised_x = x * torch.sigmoid(f)" in error and "which passes" in error, error
    shown = outputs(graded(course, "dae_gate", "dae"), "test_dae")
    assert "WARNING" in shown and "denoised_x is never negative" in shown, shown
    assert "return z, denoised_x" in shown


def test_log_std_encoder_loses_only_the_pieces_it_breaks(graded_course):
    """Does a VAE that treats z_logvar as a log standard deviation throughout lose the sample
    and KL points, each with a hint naming the log standard deviation, and keep the others?"""
    course, result = graded_course
    got = points(result, "vae_logstd", "vae")
    assert got == {**VAE_FULL, "test_vae_sample": 0.0, "test_vae_loss_kl": 0.0}, \
        errors(course, "vae_logstd", "vae")
    found = errors(course, "vae_logstd", "vae")
    assert "standard deviation" in found["test_vae_sample"], found["test_vae_sample"]
    assert "log standard deviation" in found["test_vae_loss_kl"], found["test_vae_loss_kl"]


def test_stale_batchnorm_statistics_are_named(graded_course):
    """Does an encoder whose BatchNorm running statistics were never collected lose the trained
    points that eval() mode breaks, with a hint that the grader evaluates in eval() mode while
    train mode would pass, and keep every module point?"""
    course, result = graded_course
    got = points(result, "vae_bn_stats", "vae")
    lost = {cell for cell, score in got.items() if score < VAE_FULL[cell]}
    assert lost and lost <= {"test_vae_probe", "test_vae_loss"}, got
    found = errors(course, "vae_bn_stats", "vae")
    for cell in lost:
        assert "eval() mode" in found[cell] and "in train mode your models pass" in found[cell], \
            found[cell]


@pytest.mark.parametrize("student, hint", [
    ("ae_logits", "the decoder returns logits"),
    ("ae_softmax", "every reconstruction sums to 1"),
])
def test_decoder_output_slips_lose_only_the_reconstruction_points(graded_course, student, hint):
    """Does a decoder that returns logits, or a softmax over the pixels, instead of pixel values
    lose only the reconstruction points, with a hint naming it?"""
    course, result = graded_course
    assert points(result, student, "ae") == {**AE_FULL, "test_ae_reconstruction": 0.0}
    assert hint in errors(course, student, "ae")["test_ae_reconstruction"]


def _validate(folder, name):
    return subprocess.run([sys.executable, "-m", "nbgrader", "validate", f"{name}.ipynb"],
                          cwd=folder, capture_output=True, text=True, timeout=900,
                          env=nbgrader_env())


def _check_failures(text: str) -> list[list[str]]:
    """The lines of each check's message in the error reports of `nbgrader validate`: from the
    line 'CheckFailure: ...' to the end of its report."""
    messages: list[list[str]] = []
    current = None
    for line in text.splitlines():
        if line.strip().startswith("CheckFailure: "):
            current = [line]
            messages.append(current)
        elif current is not None and line.strip() and not line.startswith("="):
            current.append(line)
        else:
            current = None
    return messages


def _words(text: str) -> str:
    return " ".join(text.split())


def test_validate_fails_a_missed_bar_and_passes_the_reference(graded_course, tmp_path):
    """Does real `nbgrader validate` on a student's completed release notebook fail when the
    saved model misses a trained-model bar, naming the bar, show each message whole (no line
    cut, the hint to save after training for weights that score like an untrained network),
    and succeed with the reference weights?"""
    course, _ = graded_course
    solution = nbformat.read(SOLUTIONS / "ae.ipynb", as_version=4)
    answers = {c.metadata.nbgrader["grade_id"]: c.source for c in solution.cells
               if c.metadata.get("nbgrader", {}).get("solution")}
    student_nb = fill(release(course, "ae"), answers)
    for folder in ("untrained", "trained"):
        (tmp_path / folder).mkdir()
        nbformat.write(student_nb, tmp_path / folder / "ae.ipynb")
    write_untrained_weights(tmp_path / "untrained", ["ae"])
    for w in WEIGHTS["ae"]:
        (tmp_path / "trained" / w).write_bytes((reference_weights("ae") / w).read_bytes())

    missed = _validate(tmp_path / "untrained", "ae")
    text = missed.stdout + missed.stderr
    assert "VALIDATION FAILED" in text, text[-3000:]
    # nbgrader validate shortens long lines: the short lines of both messages are there.
    assert "expected >= 0.750" in text and "expected <= 0.0350" in text, text[-3000:]
    assert "the message below says what to change" in text
    shown = _check_failures(missed.stdout)
    assert len(shown) == 2, text[-3000:]
    assert not [line for lines in shown for line in lines if line.endswith("...")], shown
    assert all(f"hint: {UNTRAINED_HINT}" in _words(" ".join(lines)) for lines in shown), shown
    # Each message in full, as the check gives it here, with its hint to save after training.
    ns = solution_namespace("ae")
    paths = {f"{kind}_path": str(tmp_path / "untrained" / w)
             for kind, w in zip(("encoder", "decoder"), WEIGHTS["ae"])}
    for check in (ae_checks.check_trained_ae_probe, ae_checks.check_trained_ae_reconstruction):
        with pytest.raises(CheckFailure) as info:
            check(ns["Encoder"], ns["Decoder"], 10, **paths)
        assert f"\n  hint: {UNTRAINED_HINT}" in str(info.value)
        assert _words(f"CheckFailure: {info.value}") in [_words(" ".join(s)) for s in shown], shown
    passed = _validate(tmp_path / "trained", "ae")
    text = passed.stdout + passed.stderr
    assert "Success! Your notebook passes all the tests." in text, text[-3000:]
