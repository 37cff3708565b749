"""Do hostile or broken submissions of the course notebooks earn no points they should not,
under real `nbgrader autograde` with the sandbox and the replay?"""
from __future__ import annotations

import io
import re
import uuid
from pathlib import Path

import pytest
import torch
from conftest import ASSIGNMENT, SOLUTIONS, WEIGHTS, errors, points, reference_weights

from autograder.cli.weights import write_untrained_weights
from autograder.grading.course import all_scores, autograde, build_course, submit

pytestmark = pytest.mark.slow

MARKER = f"pwned-{uuid.uuid4().hex}"
HOST_MARKER = Path("/tmp") / MARKER

PATCHES = """
import torch, builtins, sklearn.linear_model, autograder.checks.ae, autograder.checks.core, data_tools.probe
torch.allclose = lambda *a, **k: True
builtins.abs = lambda x: 0
sklearn.linear_model.LogisticRegression.score = lambda self, X, y: 1.0
autograder.checks.ae.check_encoder = lambda *a, **k: None
autograder.checks.ae.check_trained_ae = lambda *a, **k: None
autograder.checks.ae.check_trained_ae_probe = lambda *a, **k: None
autograder.checks.ae.check_trained_ae_reconstruction = lambda *a, **k: None
autograder.checks.core.require_shape = lambda *a, **k: None
data_tools.probe.probe_accuracy = lambda *a, **k: 1.0
_ip = get_ipython()
_ip.set_custom_exc((Exception,), lambda *a, **k: None)  # swallow every error of later cells
_ip.events.register("post_run_cell", lambda result: _ip.displayhook(2))  # "2" reads as credit
"""


class _Payload:
    """Unpickling this runs a shell command (what a malicious .pth would do)."""

    def __init__(self, *paths):
        self.paths = paths

    def __reduce__(self):
        import os
        return (os.system, (" ".join(["touch", *map(str, self.paths)]),))


def _malicious_pth(*paths) -> bytes:
    buffer = io.BytesIO()
    torch.save({"weight": _Payload(*(paths or (MARKER, HOST_MARKER)))}, buffer)
    return buffer.getvalue()


def test_malicious_pickle_payload_is_live(tmp_path):
    """Positive control: does the crafted .pth really run its command when it is loaded the
    unsafe way (weights_only=False), so that the grading test below proves something?"""
    marker = tmp_path / "payload-ran"
    torch.load(io.BytesIO(_malicious_pth(marker)), weights_only=False)
    assert marker.exists()


def _edit_cell(text: str, grade_id: str, edit) -> str:
    """The notebook JSON with the source of one cell passed through ``edit``."""
    import nbformat

    nb = nbformat.reads(text, as_version=4)
    cell = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id)
    cell.source = edit(cell.source)
    return nbformat.writes(nb)


def _replace_solution(text: str, grade_id: str, new_body: str) -> str:
    """The notebook JSON with the solution region of one cell replaced."""
    return _edit_cell(text, grade_id, lambda source: re.sub(
        r"### BEGIN SOLUTION\n.*?### END SOLUTION", new_body, source, count=1, flags=re.S))


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    ae_weights = reference_weights("ae")
    vae_weights = reference_weights("vae")
    course = build_course(tmp_path_factory.mktemp("hostile") / "course", (ASSIGNMENT,))
    ae = (SOLUTIONS / "ae.ipynb").read_text()

    patched = _edit_cell(ae.replace("nn.Linear(250, n_components),", "nn.Linear(250, 10),"),
                         "ae_encoder", lambda source: PATCHES + source)
    assert patched.count("torch.allclose = lambda") == 1
    dest = submit(course, "patcher", {"ae.ipynb": patched})
    write_untrained_weights(dest, ["ae"])

    submit(course, "no_weights", {"ae.ipynb": ae})
    submit(course, "wrong_arch", {"ae.ipynb": ae, "ae_encoder.pth": ae_weights / "ae_decoder.pth",
                                  "ae_decoder.pth": ae_weights / "ae_decoder.pth"})
    whole = (ae_weights / "ae_encoder.pth").read_bytes()
    submit(course, "truncated", {"ae.ipynb": ae, "ae_encoder.pth": whole[: len(whole) // 2],
                                 "ae_decoder.pth": ae_weights / "ae_decoder.pth"})
    submit(course, "pickle_bomb", {"ae.ipynb": ae, "ae_encoder.pth": _malicious_pth(),
                                   "ae_decoder.pth": ae_weights / "ae_decoder.pth"})

    always_equal = _replace_solution(
        (SOLUTIONS / "vae.ipynb").read_text(), "vae_loss_kl",
        "class AlwaysEqual(float):\n"
        "        def __eq__(self, other): return True\n"
        "        def __ne__(self, other): return False\n"
        "        def __ge__(self, other): return True\n"
        "        def __le__(self, other): return True\n"
        "    return AlwaysEqual(0.0)")
    submit(course, "always_equal", {"vae.ipynb": always_equal,
                                    **{w: vae_weights / w for w in WEIGHTS["vae"]}})
    vae = (SOLUTIONS / "vae.ipynb").read_text()
    for student, body in BORROWED_KL.items():
        submit(course, student, {"vae.ipynb": _replace_solution(vae, "vae_loss_kl", body),
                                 **{w: vae_weights / w for w in WEIGHTS["vae"]}})
    proc = autograde(course, force=True)
    assert proc.returncode == 0, proc.output[-6000:]
    return course, all_scores(course)


# loss_kl returns the checks' own float64 oracle, through the notebook's checks or sys.modules.
BORROWED_KL = {
    "kl_from_checks": "return checks._kl64(z_mean, torch.exp(0.5 * z_logvar)).to(z_mean.dtype)",
    "kl_from_sys_modules": (
        "import sys\n"
        "    oracle = sys.modules['autograder.checks.vae']._kl64\n"
        "    return oracle(z_mean, torch.exp(0.5 * z_logvar)).to(z_mean.dtype)"),
}


@pytest.mark.parametrize("student, door", [("kl_from_checks", "line 16: checks"),
                                           ("kl_from_sys_modules", "line 16: import sys")])
def test_the_graders_own_oracle_is_no_answer(graded, student, door):
    """Does a loss_kl that returns the checks' own oracle (through the notebook's `checks`, or
    through sys.modules) lose the KL points, with the line that reaches the grader, and keep
    every other point?"""
    course, result = graded
    got = points(result, student, "vae")
    assert got["test_vae_loss_kl"] == 0.0, got
    assert all(score == max_score for (nb, cell), (score, max_score) in result[student].items()
               if nb == "vae" and cell != "test_vae_loss_kl"), result[student]
    error = errors(course, student, "vae")["test_vae_loss_kl"]
    assert "loss_kl reaches the grader's internals" in error and door in error, error
    assert "earns none of this cell's points" in error


def test_patched_checks_earn_nothing(graded):
    """Do top-level patches of torch.allclose, builtins, sklearn and the checks, a hook that
    swallows errors and one that shows a number after each cell (partial credit) gain no point?"""
    course, result = graded
    assert points(result, "patcher", "ae") == {
        "test_ae_encoder": 0.0, "test_ae_decoder": 2.0, "test_ae_probe": 0.0,
        "test_ae_reconstruction": 0.0}
    found = errors(course, "patcher", "ae")
    assert "use n_components in the last layer" in found["test_ae_encoder"]
    assert "accuracy too low" in found["test_ae_probe"]
    assert "reconstruction error" in found["test_ae_reconstruction"]


@pytest.mark.parametrize("student, message", [
    ("no_weights", "train the model and save it first"),
    ("wrong_arch", "missing keys"),
    ("truncated", "corrupt, truncated"),
    ("pickle_bomb", "corrupt, truncated, or not a state_dict"),
])
def test_bad_weights_lose_only_trained_points(graded, student, message):
    """Does a missing, foreign, truncated or malicious .pth cost exactly the trained points,
    with a message naming the problem?"""
    course, result = graded
    assert points(result, student, "ae") == {
        "test_ae_encoder": 2.0, "test_ae_decoder": 2.0, "test_ae_probe": 0.0,
        "test_ae_reconstruction": 0.0}
    found = errors(course, student, "ae")
    assert message in found["test_ae_probe"] and message in found["test_ae_reconstruction"]


def test_malicious_pickle_never_runs(graded):
    """Does the payload of a malicious .pth never run, neither in the sandbox nor outside?"""
    course, _ = graded
    assert not HOST_MARKER.exists()
    assert not list(course.rglob(MARKER))


def test_always_equal_object_from_loss_kl_fails(graded):
    """Does an object whose == is always True lose the KL points, and only those?"""
    course, result = graded
    got = points(result, "always_equal", "vae")
    assert got["test_vae_loss_kl"] == 0.0
    assert all(score == max_score for (nb, cell), (score, max_score) in result["always_equal"].items()
               if nb == "vae" and cell != "test_vae_loss_kl"), result["always_equal"]
    assert "wrong return type" in errors(course, "always_equal", "vae")["test_vae_loss_kl"]
