"""Do the random draws of a graded evaluation come from the grading run's secret, which no
sandboxed process sees, while a notebook run keeps the public seeds?

(``autograder.checks.draws``; the end-to-end test is the crafted DAE of
tests/test_tamper_e2e.py, which recomputes the public noise and subtracts it.)
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import SOLUTIONS, finish_staged, solution_namespace, start_staged

from autograder.checks import dae, draws, evidence, latent, vae
from autograder.checks.evaluation import evidence_key

#: Two secrets as the grader draws them (128 bits), fixed so that a failure repeats.
SECRET_A, SECRET_B = 0xC3477E02F4E89FB3D83061289352741B, 0x7BF071CFD076364764CFC7FFDD7F72E6


def _corrupted_test_set() -> torch.Tensor:
    """The DAE's corrupted test images as the grader makes them, with the draws in effect."""
    return dae._corrupted({}, dae._data())["x_tilde"]


def _draws_of_every_notebook() -> dict[str, torch.Tensor]:
    """Every random quantity of the DAE's, the VAE's and the latent notebook's evaluations."""
    trainset, testset, _ = dae._data()
    mu = np.zeros((len(testset), 10), np.float32)
    latent_codes = latent._codes({"z_mean": mu[:, :2], "z_logvar": mu[:, :2]}, None)
    return {"train samples": trainset.batch(range(20))[0], "test samples": testset.batch(range(20))[0],
            "corruption": _corrupted_test_set(),
            "vae eps": vae._draws({"z_mean": mu, "z_logvar": mu})[2],
            "latent eps": latent_codes["z"], "prior codes": latent_codes["z_prior"],
            "row order": torch.from_numpy(draws.rng(draws.current() or 0).permutation(50))}


def test_a_notebook_run_keeps_the_public_seeds():
    """Without a secret (a notebook kernel, nbgrader validate), are the evaluation sets, the
    corruption, the VAE's eps and the prior codes those of the public seeds, as before?"""
    from data_tools.variance import CORRUPTION_STREAM, seeded_normal

    assert draws.current() is None
    trainset, testset = dae.evaluation_data()
    assert (trainset.eval_seed, testset.eval_seed) == (1001, 1002) == tuple(dae.NOTEBOOK.eval_seeds)
    x = testset.batch(range(len(testset)))[0]
    index = list(range(len(testset)))
    public = x + dae.SIGMA_N * seeded_normal(1002, index, stream=CORRUPTION_STREAM)
    torch.testing.assert_close(_corrupted_test_set(), public, rtol=0, atol=0)
    mu = np.zeros((7, 10), np.float32)
    eps = torch.randn(7, 10, generator=torch.Generator().manual_seed(vae.EVAL_Z_SEED), dtype=torch.float64)
    torch.testing.assert_close(vae._draws({"z_mean": mu, "z_logvar": mu})[2], eps, rtol=0, atol=0)
    prior = torch.randn(latent.N_SAMPLES, 2, generator=torch.Generator().manual_seed(latent.SAMPLE_SEED))
    torch.testing.assert_close(latent.prior_codes(2), prior, rtol=0, atol=0)


def test_two_secrets_draw_differently_and_one_secret_draws_the_same_again():
    """Do two grading runs (two secrets) draw different samples, noise, codes and row orders,
    and does the same secret (the one recorded for the instructor) draw exactly the same?"""
    public = _draws_of_every_notebook()
    with draws.using(SECRET_A):
        first = _draws_of_every_notebook()
    with draws.using(SECRET_B):
        other = _draws_of_every_notebook()
    with draws.using(str(SECRET_A)):  # as grading_report.json records it
        again = _draws_of_every_notebook()
    assert draws.current() is None
    for name, value in first.items():
        torch.testing.assert_close(again[name], value, rtol=0, atol=0, msg=name)
        assert not torch.equal(value, other[name]), name
        if name != "row order":
            assert not torch.equal(value, public[name]), name


def test_secrets_are_fresh_and_well_formed():
    """Is every secret a fresh 128-bit number, and is a malformed one refused?"""
    secrets_ = {draws.new_secret() for _ in range(50)}
    assert len(secrets_) == 50 and max(secrets_).bit_length() > 120
    for bad in (-1, 1.5, "0x12"):
        with pytest.raises((ValueError, TypeError)):
            with draws.using(bad):
                pass


@pytest.fixture
def untrained_dae(tmp_path, monkeypatch):
    ns = solution_namespace("dae")
    torch.manual_seed(0)
    torch.save(ns["DAE"](10).state_dict(), tmp_path / "dae.pth")
    monkeypatch.chdir(tmp_path)
    return ns, tmp_path


def test_the_secret_is_in_no_file_a_sandboxed_process_reads(untrained_dae, modes):
    """Do the producer's inputs and the second stage's inputs and requests (everything a
    sandboxed process of the evaluation reads) hold neither the secret nor a seed derived from
    it, and are the corrupted images the second stage gets none of the public ones?"""
    ns, work = untrained_dae
    run = start_staged("autograder.checks.dae", ("dae.pth",), work, secret=SECRET_A)
    with pytest.raises(evidence.Deferred):
        dae.check_trained_dae_denoising(ns["DAE"], 10)
    evidence._STATE.update(mode=None)
    run.collect_first()
    run.second_plan([])
    with draws.using(SECRET_A):
        seeds = [draws.seed(s, stream) for s in (0, 1001, 1002, 1234)
                 for stream in (draws.VARIANCE, draws.LATENT_EPS, draws.PRIOR)]
    needles = [str(SECRET_A).encode(), f"{SECRET_A:x}".encode(),
               SECRET_A.to_bytes(16, "little"), SECRET_A.to_bytes(16, "big"),
               *(str(s).encode() for s in seeds), *(s.to_bytes(8, "little") for s in seeds)]
    files = [p for folder in (run.shared, run.second) for p in folder.rglob("*") if p.is_file()]
    assert any(p.name.endswith(".in.npz") for p in files) and any(p.parent.name == "inputs" for p in files)
    for path in files:
        content = path.read_bytes()
        assert not any(needle in content for needle in needles), path
    handed = evidence.load_arrays(str(next(run.second.glob("*.in.npz"))))["x_tilde"]
    public = _corrupted_test_set().reshape(len(handed), -1)
    assert float(torch.cdist(torch.from_numpy(handed).reshape(len(handed), -1), public).min()) > 1.0


def test_the_judge_measures_with_the_runs_secret(untrained_dae, modes):
    """Do the producer, the second stage and the judge of one run (one secret) give the numbers
    of one process drawing with that secret, and other numbers than the public draws?"""
    ns, work = untrained_dae
    with draws.using(SECRET_B):
        local = dae.trained_results(ns["DAE"], 10)
    public = dae.trained_results(ns["DAE"], 10)
    run = start_staged("autograder.checks.dae", ("dae.pth",), work, secret=SECRET_B)
    evidence.set_cell("test_dae_denoising")
    with pytest.raises(evidence.Deferred):
        dae.check_trained_dae_denoising(ns["DAE"], 10)
    verdicts = finish_staged(run, SOLUTIONS / "dae.ipynb", "autograder.checks.dae")
    assert verdicts["test_dae_denoising"]["decided"]
    judged = evidence.judged(dae.EVALUATION, 10, ("dae.pth",), False)
    assert (run.private / f"{evidence_key(dae.EVALUATION, 10, ('dae.pth',))}.eval.second.npz").exists()
    for metric in ("probe_accuracy", "mse_denoised", "mse_noisy", "denoise_ratio"):
        assert judged[metric] == pytest.approx(local[metric], rel=1e-6), metric
    assert judged["mse_noisy"] != pytest.approx(public["mse_noisy"], rel=1e-9)


def test_the_course_record_keeps_the_secret_a_batch_worker_drew(tmp_path):
    """Does the driver of ``python -m autograder grade`` hand on the secret a worker recorded
    for a notebook, and does the course's grading report keep it (as decimal digits)?"""
    import json

    import nbformat

    from autograder.grading import report
    from autograder.grading.batch import UseExecuted

    nbformat.write(nbformat.v4.new_notebook(), tmp_path / "dae.ipynb")
    (tmp_path / "dae.json").write_text("[]")
    (tmp_path / "report.json").write_text(json.dumps({"dae": {"status": "ok", "secret": str(SECRET_A)}}))
    _, resources = UseExecuted(directory=str(tmp_path)).preprocess(
        nbformat.v4.new_notebook(), {"nbgrader": {"notebook": "dae"}})
    assert resources["autograder"] == {"failures": [], "secret": str(SECRET_A)}
    report.record(tmp_path, "autoencoders", "s", "dae", "ok", [], secret=resources["autograder"]["secret"])
    report.record(tmp_path, "autoencoders", "s", "ae", "ok", [])
    entries = report.load(tmp_path)["notebooks"]
    assert entries["autoencoders/s/dae"]["secret"] == str(SECRET_A)
    assert "secret" not in entries["autoencoders/s/ae"]


def test_a_recorded_secret_can_be_given_to_grade_again():
    """Does ReplayChecks take a recorded secret (decimal digits) to draw the same evaluation
    noise again, and refuse anything else with a message saying what it needs?"""
    import pytest
    from traitlets import TraitError

    from autograder.grading.preprocessors import ReplayChecks

    assert ReplayChecks(secret=" 123456789 ").secret == "123456789"
    with pytest.raises(TraitError, match="must be decimal digits"):
        ReplayChecks(secret="0xdeadbeef")
