"""Does code inside a submitted *method* gain anything by tampering with the process it runs in,
or by returning outputs that only a careless formula would reward, under real `nbgrader
autograde` (sandbox, producer, second stage and judge)?

The methods below run while the checks call them. Every submission has untrained (randomly
initialised) weights: each attack must score the trained-model cells as an untrained model
does, with the honest numbers in its message (docs/security.md).
"""
from __future__ import annotations

import re
import shutil

import pytest
from conftest import ASSIGNMENT, COURSE_ROOT, SOLUTIONS, grade_cell_errors, swap

from autograder.cli.weights import write_untrained_weights
from autograder.grading.course import all_scores, autograde, build_course, flagged, submit

pytestmark = pytest.mark.slow

# The issue's attack. Encoder.forward keeps x on builtins and, on its first call, makes
# numpy.mean return 1.0 for boolean arrays (the probe's accuracy is np.mean(predicted == y)).
STASH_ENCODER = '''
        import builtins, numpy
        builtins._stash = x
        if not getattr(builtins, "_patched", False):
            builtins._patched = True
            _mean = numpy.mean
            numpy.mean = lambda a, *k, **kw: 1.0 if getattr(a, "dtype", None) == bool else _mean(a, *k, **kw)
        h = self.conv(x)
        return self.fc(h.flatten(1))
'''
# Decoder.forward returns the stashed input when the batch sizes match.
STASH_DECODER = '''
        import builtins
        out = self.deconv(self.fc(z).reshape(-1, 16, 20, 20))
        stash = getattr(builtins, "_stash", None)
        if stash is not None and stash.shape[0] == z.shape[0]:
            return stash + 0 * out
        return out
'''
# Encoder.forward patches scikit-learn, torch, data_tools, the thresholds, the evaluation and
# the producer's own mode from inside the method.
PATCH_EVERYTHING = '''
        import builtins
        if not getattr(builtins, "_patched", False):
            builtins._patched = True
            import torch, sklearn.linear_model, data_tools.probe
            import autograder.checks.evaluation, autograder.checks.evidence, autograder.checks.thresholds
            sklearn.linear_model.LogisticRegression.predict = lambda self, X: __import__("numpy").zeros(len(X))
            data_tools.probe.probe_accuracy = lambda *a, **k: 1.0
            torch.allclose = lambda *a, **k: True
            for bars in autograder.checks.thresholds.THRESHOLDS.values():
                bars["ae"].update(probe_accuracy=0.0, recon_mse=1e9)
            autograder.checks.evaluation.require_bar = lambda *a, **k: None
            autograder.checks.evidence.mode = lambda: None
        h = self.conv(x)
        return self.fc(h.flatten(1))
'''
# Encoder.forward returns one-hot labels of the notebook's own datasets, counting the rows it
# was given: a perfect probe if the grader handed the images in the datasets' order.
LABEL_COUNTER = '''
        import builtins, torch
        g = globals()
        labels = torch.cat([g["trainset"].targets, g["testset"].targets])
        start = getattr(builtins, "_rows", 0) % len(labels)
        builtins._rows = start + len(x)
        idx = torch.arange(start, start + len(x)) % len(labels)
        out = self.fc(self.conv(x).flatten(1))
        return torch.nn.functional.one_hot(labels[idx], out.shape[1]).float() + 0 * out
'''
# Encoder.forward removes the producer's recorded evaluations and forges its verdicts at exit.
FORGER = '''
        import atexit, builtins, json, os, shutil, sys
        if (len(sys.argv) > 2 and sys.argv[2].endswith("result.json")
                and not getattr(builtins, "_forged", False)):
            builtins._forged = True
            result = sys.argv[2]
            def forge():
                shutil.rmtree(os.path.join(os.path.dirname(result), "first"), ignore_errors=True)
                with open(result, "w") as f:
                    json.dump({g: {"passed": True, "error": ""} for g in
                               ("test_ae_encoder", "test_ae_decoder", "test_ae_probe",
                                "test_ae_reconstruction")}, f)
            atexit.register(forge)
        h = self.conv(x)
        return self.fc(h.flatten(1))
'''
# loss_kl drops the factor 1/2 and makes the checks' float64 oracle and torch agree with it.
KL_PATCHER = '''
    import torch
    import autograder.checks.vae as v
    wrong = lambda mu, lv: (-(1 + lv - mu ** 2 - lv.exp())).sum(-1).mean()
    v._kl64 = lambda mu, std: wrong(mu, 2 * std.log())
    torch.allclose = lambda *a, **k: True
    return wrong(z_mean, z_logvar)
'''
# DAE.forward, in the grader's re-run of the tests, switches the corruption noise off (if it
# could) and returns its input.
DAE_NOISE_OFF = '''
        import sys
        if any("replay_child" in arg for arg in sys.argv):
            import data_tools.variance as dv
            dv.seeded_normal = lambda seed, idx, stream=0: torch.zeros(len(idx), 1, 28, 28)
        z = self.encoder(x)
        return z, x + 0 * self.decoder(z)
'''
# DAE.forward (untrained weights) recomputes the evaluation's noise from public code: the test
# set's varianceMNIST samples and their corruption, from the manifest's seed 1002 with
# data_tools (which students have); for each row it returns the clean sample of the nearest
# public corrupted image. With the public seeds the grader drew from, that is the clean sample
# itself: a denoising ratio of about 0.
DAE_PUBLIC_NOISE = '''
        from data_tools.mnist import MNIST
        from data_tools.variance import CORRUPTION_STREAM, VarianceMNIST, seeded_normal
        if not hasattr(type(self), "_public"):
            test = VarianceMNIST(MNIST(train=False, verbose=False), eval_seed=1002)
            index = list(range(len(test)))
            clean = test.batch(index)[0]
            noisy = clean + 0.2 * seeded_normal(1002, index, stream=CORRUPTION_STREAM)
            type(self)._public = (clean.flatten(1), noisy.flatten(1))
        clean, noisy = type(self)._public
        z = self.encoder(x)
        nearest = torch.cdist(x.flatten(1), noisy).argmin(1)
        return z, clean[nearest].reshape(x.shape) + 0 * self.decoder(z)
'''

# Decoder.forward without a floor where it pays: mean 0 everywhere and y_logvar -700 on the
# 2 x 2 corners, which are 0 in every sample (untrained weights elsewhere). Without a floor in
# the graded loss each corner pixel is worth 0.5 * -700 nats: a loss of about -5550 per image.
VAE_FLOORLESS = '''
        h = self.body(z).reshape(-1, 2, 28, 28)
        corners = torch.zeros(28, 28, dtype=torch.bool)
        corners[:2, :2] = corners[:2, -2:] = corners[-2:, :2] = corners[-2:, -2:] = True
        y_logvar = self.min_logvar + F.softplus(h[:, 1:] - self.min_logvar)
        return 0 * h[:, :1], torch.where(corners, -700.0, y_logvar)
'''

# Encoder.forward, in the producer, replaces every first-stage output at exit with a small
# archive whose header declares 10^10 float32 (37 GiB if the grader allocated it).
BOMBER = '''
        import atexit, builtins, sys
        if (len(sys.argv) > 2 and sys.argv[2].endswith("result.json")
                and not getattr(builtins, "_bomb", False)):
            builtins._bomb = True
            def bomb():
                import glob, io, os, zipfile
                import numpy
                header = io.BytesIO()
                numpy.lib.format.write_array_header_1_0(
                    header, {"descr": "<f4", "fortran_order": False, "shape": (10 ** 5, 10 ** 5)})
                first = os.path.join(os.path.dirname(sys.argv[2]), "first")
                for path in glob.glob(os.path.join(first, "*.npz")):
                    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
                        archive.writestr("z_test.npy", header.getvalue() + bytes(1 << 20))
            atexit.register(bomb)
        h = self.conv(x)
        return self.fc(h.flatten(1))
'''
# Encoder.forward, in the producer, fills its working copy with 2.7 GB (sparse files: no disk
# in fact, each below the 1 GiB file-size limit) and waits.
DISK_FILLER = '''
        import builtins, sys, time
        if (len(sys.argv) > 2 and sys.argv[2].endswith("result.json")
                and not getattr(builtins, "_filled", False)):
            builtins._filled = True
            for i in range(3):
                with open(f"fill-{i}.bin", "wb") as f:
                    f.truncate(900 * 1024 ** 2)
            time.sleep(60)
        h = self.conv(x)
        return self.fc(h.flatten(1))
'''

# The code is the image: Encoder.forward returns the 784 pixels and Decoder.forward puts them
# back, with a settings cell that says n_components = 784 (layers that ignore it: untrained
# weights of any n_components load). Ungraded for width, the probe on the pixels and the
# reconstruction (exact) pass both bars.
PIXEL_INIT = '''
        self.scale = nn.Parameter(torch.ones(()))
'''
PIXEL_ENCODER = '''
        return x.flatten(1) * self.scale  # (B, 784)
'''
PIXEL_DECODER = '''
        return (z * self.scale).reshape(-1, 1, 28, 28)
'''
# DAE.forward returns a hand-made code of 196 columns (2x2 means of |x|; probe about 0.86 on
# the embedded data) beside the untrained model's output.
DAE_POOLED_CODE = '''
        z = self.encoder(x)
        features = torch.nn.functional.avg_pool2d(x.abs(), 2).flatten(1)  # (B, 196)
        return features + 0 * z.sum(1, keepdim=True), x * torch.sigmoid(self.decoder(z))
'''


def _method_body(text: str, grade_id: str, body: str, which: int = -1) -> str:
    """The notebook JSON with a solution region of one cell (default: the last) replaced."""
    import nbformat

    nb = nbformat.reads(text, as_version=4)
    cell = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id)
    regions = list(re.finditer(r"### BEGIN SOLUTION\n.*?### END SOLUTION", cell.source, re.S))
    m = regions[which]
    cell.source = cell.source[:m.start()] + body.strip("\n").lstrip() + cell.source[m.end():]
    return nbformat.writes(nb)


def _pixel_ae(ae: str) -> str:
    """ae.ipynb whose code is the image (``PIXEL_*``), with n_components = 784 in its settings."""
    text = swap(ae, "n_components = 10 ", "n_components = 784")
    for grade_id, forward in (("ae_encoder", PIXEL_ENCODER), ("ae_decoder", PIXEL_DECODER)):
        text = _method_body(_method_body(text, grade_id, PIXEL_INIT, which=0), grade_id, forward)
    return text


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    # The methods below reach the grader's modules (sys, builtins, autograder): the replay's
    # reading of the source fails such cells at once (tests/test_slips_e2e.py). It is switched
    # off here, so that each attack meets the defences behind it.
    course = build_course(tmp_path_factory.mktemp("tamper") / "course", (ASSIGNMENT,),
                          config="c.ReplayChecks.internals = False")
    ae = (SOLUTIONS / "ae.ipynb").read_text()
    students = {
        "stash": {"ae.ipynb": _method_body(_method_body(ae, "ae_encoder", STASH_ENCODER),
                                           "ae_decoder", STASH_DECODER)},
        "patch_all": {"ae.ipynb": _method_body(_method_body(ae, "ae_encoder", PATCH_EVERYTHING),
                                               "ae_decoder", STASH_DECODER)},
        "label_counter": {"ae.ipynb": _method_body(ae, "ae_encoder", LABEL_COUNTER)},
        "forger": {"ae.ipynb": _method_body(ae, "ae_encoder", FORGER)},
        "honest_untrained": {"ae.ipynb": ae},
        "kl_patcher": {"vae.ipynb": _method_body((SOLUTIONS / "vae.ipynb").read_text(),
                                                 "vae_loss_kl", KL_PATCHER)},
        "vae_floorless": {"vae.ipynb": _method_body((SOLUTIONS / "vae.ipynb").read_text(),
                                                    "vae_decoder", VAE_FLOORLESS)},
        "dae_public_noise": {"dae.ipynb": _method_body((SOLUTIONS / "dae.ipynb").read_text(),
                                                       "dae_model", DAE_PUBLIC_NOISE)},
        "dae_noise_off": {"dae.ipynb": _method_body((SOLUTIONS / "dae.ipynb").read_text(),
                                                    "dae_model", DAE_NOISE_OFF)},
        "bomber": {"ae.ipynb": _method_body(ae, "ae_encoder", BOMBER)},
        "disk_filler": {"ae.ipynb": _method_body(ae, "ae_encoder", DISK_FILLER)},
        # The reference solution and weights, with a learning rate of 1e999 (inf).
        "settings_inf": {"ae.ipynb": swap(ae, "learning_rate = 1e-3", "learning_rate = 1e999")},
        "pixel_codes": {"ae.ipynb": _pixel_ae(ae)},
        "dae_pooled_code": {"dae.ipynb": _method_body((SOLUTIONS / "dae.ipynb").read_text(),
                                                      "dae_model", DAE_POOLED_CODE)},
    }
    for student, files in students.items():
        dest = submit(course, student, files, assignment=ASSIGNMENT)
        write_untrained_weights(dest, [name.removesuffix(".ipynb") for name in files],
                                assignment=ASSIGNMENT)
    for name in ("ae_encoder.pth", "ae_decoder.pth"):
        shutil.copyfile(COURSE_ROOT / "reference" / name,
                        course / "submitted" / "settings_inf" / ASSIGNMENT / name)
    proc = autograde(course, force=True, assignment=ASSIGNMENT)
    assert proc.returncode == 0, proc.output[-6000:]
    return course, all_scores(course, ASSIGNMENT)


def _points(result, student, notebook):
    return {cell: score for (nb, cell), (score, _) in result[student].items() if nb == notebook}


def _errors(course, student, notebook):
    return grade_cell_errors(course / "autograded" / student / ASSIGNMENT / f"{notebook}.ipynb")


def _probe(error: str) -> float:
    return float(re.search(r"got\s+([0-9.]+)", error).group(1))


def test_untrained_model_scores_as_untrained(graded):
    """Control: does an honest submission with untrained weights lose exactly the trained
    points, with its probe accuracy and reconstruction error in the messages?"""
    course, result = graded
    assert _points(result, "honest_untrained", "ae") == {
        "test_ae_encoder": 2.0, "test_ae_decoder": 2.0, "test_ae_probe": 0.0,
        "test_ae_reconstruction": 0.0}
    errors = _errors(course, "honest_untrained", "ae")
    assert "accuracy too low" in errors["test_ae_probe"] and _probe(errors["test_ae_probe"]) < 0.75
    assert "reconstruction error" in errors["test_ae_reconstruction"]


@pytest.mark.parametrize("student", ["stash", "patch_all", "label_counter", "forger"])
def test_tampering_methods_gain_no_trained_points(graded, student):
    """Does an untrained AE whose methods stash the input for the decoder, patch numpy, torch,
    scikit-learn, data_tools or the checks, count the grader's rows, or forge the replay's
    files lose both trained-model cells, as an untrained model does?"""
    course, result = graded
    points = _points(result, student, "ae")
    assert points["test_ae_probe"] == 0.0 and points["test_ae_reconstruction"] == 0.0, points
    assert set(points) == {"test_ae_encoder", "test_ae_decoder", "test_ae_probe",
                           "test_ae_reconstruction"}


@pytest.mark.parametrize("student", ["stash", "patch_all"])
def test_tampering_methods_get_the_honest_numbers(graded, student):
    """Do the attacks read as an untrained model's probe accuracy and reconstruction error,
    not the 1.000 and MSE 0 they aimed at?"""
    course, _ = graded
    errors = _errors(course, student, "ae")
    assert "accuracy too low" in errors["test_ae_probe"], errors["test_ae_probe"]
    assert _probe(errors["test_ae_probe"]) < 0.75
    got = float(re.search(r"got\s+([0-9.e-]+)", errors["test_ae_reconstruction"]).group(1))
    assert got > 0.035, errors["test_ae_reconstruction"]


def test_label_counter_finds_no_labels(graded):
    """Does an encoder that reads the labels of the notebook's datasets find none in the
    grader's evaluation (which loads no dataset where student code runs), and say so?"""
    course, _ = graded
    errors = _errors(course, "label_counter", "ae")
    for cell in ("test_ae_probe", "test_ae_reconstruction"):
        assert "your code used `trainset` of the notebook" in errors[cell], errors[cell]


def test_forged_files_gain_nothing(graded):
    """Does a producer that deletes its recorded evaluations and forges its verdicts at exit
    leave the trained-model cells failed, saying the models were not evaluated?"""
    course, _ = graded
    errors = _errors(course, "forger", "ae")
    for cell in ("test_ae_probe", "test_ae_reconstruction"):
        assert "were not evaluated" in errors[cell], errors[cell]


def test_loss_kl_patching_its_oracle_fails(graded):
    """Does a loss_kl that makes the checks' float64 oracle and torch.allclose agree with its
    wrong value lose the KL points, with the usual hint, and only those points?"""
    course, result = graded
    points = _points(result, "kl_patcher", "vae")
    assert points["test_vae_loss_kl"] == 0.0, points
    assert "factor 1/2" in _errors(course, "kl_patcher", "vae")["test_vae_loss_kl"]
    for cell in ("test_vae_encoder", "test_vae_sample", "test_vae_decoder", "test_vae_loss_loglik"):
        assert points[cell] > 0, (cell, points)


def test_dae_cannot_switch_the_corruption_off(graded):
    """Does a DAE that patches the grader's noise away and returns its input denoise no better
    than its input (ratio 1), so that it loses the denoising cell?"""
    course, result = graded
    points = _points(result, "dae_noise_off", "dae")
    assert points["test_dae_denoising"] == 0.0, points
    error = _errors(course, "dae_noise_off", "dae")["test_dae_denoising"]
    assert re.search(r"got\s+1\.000", error), error


def test_dae_cannot_subtract_the_public_noise(graded):
    """Does an untrained DAE that recomputes the evaluation's samples and corruption from the
    public seeds and images, and returns the clean sample of the row it recognises (a ratio of
    about 0 when the grader drew from the public seeds), find no row now that every draw comes
    from the grading run's secret, and lose the denoising cell?"""
    course, result = graded
    points = _points(result, "dae_public_noise", "dae")
    assert points["test_dae_denoising"] == 0.0, points
    error = _errors(course, "dae_public_noise", "dae")["test_dae_denoising"]
    assert "too high" in error and float(re.search(r"got\s+([0-9.]+)", error).group(1)) > 1.0, error


def test_the_record_keeps_each_notebooks_secret_and_reproduces_its_numbers(graded):
    """Does grading_report.json keep the secret of each graded notebook's draws (one per
    notebook), which no file of the submitted or autograded folders holds, and do the DAE's
    graded numbers come out again from the student's definitions with that secret?"""
    from conftest import definitions
    from threadpoolctl import threadpool_limits

    from autograder.checks import dae, draws
    from autograder.grading import report

    course, _ = graded
    entries = report.load(course)["notebooks"]
    recorded = [e["secret"] for e in entries.values() if "secret" in e]
    students = {e["student"] for e in entries.values()}
    assert len(set(recorded)) == len(recorded) >= len(students), entries
    secret = entries[f"{ASSIGNMENT}/dae_public_noise/dae"]["secret"]
    assert secret.isdigit() and int(secret).bit_length() > 64
    for folder in ("submitted", "autograded"):
        for path in (course / folder).rglob("*"):
            assert not path.is_file() or secret.encode() not in path.read_bytes(), path
    submitted = course / "submitted" / "dae_public_noise" / ASSIGNMENT
    with draws.using(secret), threadpool_limits(limits=1):  # as the judge computes
        again = dae.trained_results(definitions(submitted / "dae.ipynb")["DAE"], 10,
                                    path=str(submitted / "dae.pth"))
    errors = _errors(course, "dae_public_noise", "dae")
    assert re.search(rf"got\s+{again['denoise_ratio']:.3f} ", errors["test_dae_denoising"])
    assert re.search(rf"got\s+{again['probe_accuracy']:.3f}", errors["test_dae_probe"])


def test_vae_decoder_below_the_floor_gains_nothing(graded):
    """Does an untrained VAE whose decoder returns mean 0 and y_logvar -700 on the pixels that
    are always 0 lose the test-loss cell, graded with y_logvar clamped at the floor -10, with
    a message that names the floor?"""
    course, result = graded
    points = _points(result, "vae_floorless", "vae")
    assert points["test_vae_loss"] == 0.0 and points["test_vae_probe"] == 0.0, points
    error = _errors(course, "vae_floorless", "vae")["test_vae_loss"]
    assert "y_logvar goes down to -700.0" in error and "gains nothing" in error, error
    assert float(re.search(r"got\s+(-?[0-9.]+)", error).group(1)) > -100, error


def test_a_stage_output_that_declares_a_huge_array_fails_its_cells(graded):
    """Does a producer that replaces its outputs with archives declaring 10^10 elements lose
    the trained-model cells with a message naming the refusal, and only those (no cell flagged,
    no crash of the grader)?"""
    course, result = graded
    assert _points(result, "bomber", "ae") == {
        "test_ae_encoder": 2.0, "test_ae_decoder": 2.0, "test_ae_probe": 0.0,
        "test_ae_reconstruction": 0.0}
    errors = _errors(course, "bomber", "ae")
    for cell in ("test_ae_probe", "test_ae_reconstruction"):
        assert "of 10,000,000,000 (10^10) elements, more than the grader accepts" in errors[cell], \
            errors[cell]
    assert not flagged(course, "bomber", ASSIGNMENT)


def test_a_producer_that_fills_the_disk_is_stopped_and_flagged(graded):
    """Is a producer whose working copy grows past c.Sandbox.max_job_disk stopped, and are the
    notebook's cells left to a person with that reason (never read back, never scored)?"""
    course, result = graded
    errors = _errors(course, "disk_filler", "ae")
    for cell, error in errors.items():
        assert "more than 2 GiB" in error and "c.Sandbox.max_job_disk" in error, (cell, error)
    assert flagged(course, "disk_filler", ASSIGNMENT) == {("ae", cell) for cell in errors}


def test_a_setting_that_is_not_finite_costs_nothing(graded):
    """Does the reference notebook with ``learning_rate = 1e999`` (inf) in its settings cell keep
    every point, every cell judged and none flagged (the judge cannot rebuild an inf)?"""
    course, result = graded
    assert _points(result, "settings_inf", "ae") == {
        "test_ae_encoder": 2.0, "test_ae_decoder": 2.0, "test_ae_probe": 2.0,
        "test_ae_reconstruction": 2.0}
    assert not flagged(course, "settings_inf", ASSIGNMENT)
    assert not any(_errors(course, "settings_inf", "ae").values())


def test_codes_wider_than_n_components_gain_nothing(graded):
    """Does an untrained AE whose code is the image (784 columns, with n_components = 784 in
    its settings cell, which the test cells pass on), and an untrained DAE whose code is a
    hand-made 196-column feature, lose every cell graded on those codes, with a message that
    names the notebook's code size (the manifest's n_components = 10)?"""
    course, result = graded
    for student, notebook, cells, columns in (
            ("pixel_codes", "ae", ("test_ae_probe", "test_ae_reconstruction"), 784),
            ("dae_pooled_code", "dae", ("test_dae_probe", "test_dae_denoising"), 196)):
        points = _points(result, student, notebook)
        errors = _errors(course, student, notebook)
        for cell in cells:
            assert points[cell] == 0.0, (student, points)
            assert (f"the codes have {columns} columns; the notebook's code size is "
                    f"n_components = 10") in errors[cell], (student, cell, errors[cell])
        assert not flagged(course, student, ASSIGNMENT)
