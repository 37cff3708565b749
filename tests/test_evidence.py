"""Do the checks decide the same when their metrics are judged from recorded outputs as when
they run in one process, and does the judge refuse outputs that do not belong to its inputs?

These tests run the producer, the second stage and the judge of ``autograder.grading.judged``
in this process, one after the other (the end-to-end tests run them as the grader does, in
separate sandboxed processes: tests/test_tamper_e2e.py).
"""
from __future__ import annotations

import importlib
import json

import numpy as np
import pytest
import torch
from conftest import COURSE_ROOT, SOLUTIONS, finish_staged, solution_namespace, start_staged

from autograder.checks import ae, evidence, recorded, vae
from autograder.checks.core import CheckFailure
from autograder.checks.evaluation import evidence_key
from autograder.grading import judged


def kl_right(z_mean, z_logvar):
    return (-0.5 * (1 + z_logvar - z_mean ** 2 - z_logvar.exp())).sum(-1).mean()


def kl_no_half(z_mean, z_logvar):
    return (-(1 + z_logvar - z_mean ** 2 - z_logvar.exp())).sum(-1).mean()


def _record(tmp_path, check, fn, seed=1):
    """Run ``check`` in produce mode; return the producer's exception (or None)."""
    evidence._STATE.update(mode="produce", dir=str(tmp_path))
    evidence.set_cell("cell")
    try:
        check(fn, seed=seed)
    except CheckFailure as exc:
        return exc
    finally:
        evidence._STATE.update(mode=None)
    return None


def _replay(tmp_path, check, seed=1, edit=None):
    if edit is not None:
        path = tmp_path / "calls" / "entries.jsonl"
        entries = [json.loads(line) for line in path.read_text().splitlines()]
        path.write_text("".join(json.dumps(edit(e)) + "\n" for e in entries))
    evidence._STATE.update(mode="judge")
    recorded.start_judging(str(tmp_path / "calls"))
    evidence.set_cell("cell")
    check(None, seed=seed)


def test_correct_loss_passes_when_replayed(tmp_path, modes):
    """Does a correct loss_kl pass when the judge replays its recorded calls?"""
    assert _record(tmp_path, vae.check_loss_kl, kl_right) is None
    _replay(tmp_path, vae.check_loss_kl)
    assert recorded.unused("cell") == ""


def test_wrong_loss_fails_with_the_same_message_when_replayed(tmp_path, modes):
    """Does the judge name the same mistake (the factor 1/2) as the check in one process?"""
    local = _record(tmp_path, vae.check_loss_kl, kl_no_half)
    assert local is not None and "1/2" in str(local)
    with pytest.raises(CheckFailure) as judged_exc:
        _replay(tmp_path, vae.check_loss_kl)
    assert str(judged_exc.value) == str(local)


def test_outputs_for_other_inputs_are_refused(tmp_path, modes):
    """Does a recorded call whose inputs are not the judge's (another seed) fail, not pass?"""
    assert _record(tmp_path, vae.check_loss_kl, kl_right, seed=1) is None
    with pytest.raises(CheckFailure, match="does not belong to the grader's inputs"):
        _replay(tmp_path, vae.check_loss_kl, seed=2)


def test_forged_check_id_is_refused(tmp_path, modes):
    """Does an entry recorded for another check fail the cell?"""
    assert _record(tmp_path, vae.check_loss_kl, kl_right) is None
    with pytest.raises(CheckFailure, match="expected the recorded calls"):
        _replay(tmp_path, vae.check_loss_kl, edit=lambda e: dict(e, check="vae.check_loss_loglik"))


def test_missing_calls_fail(tmp_path, modes):
    """Does a check with no recorded calls (the producer stopped, or deleted them) fail?"""
    with pytest.raises(CheckFailure, match="were not recorded"):
        _replay(tmp_path, vae.check_loss_kl)


def test_placeholder_needs_the_producer():
    """Does every use of a name of the student's namespace in the judge defer to the producer?"""
    p = evidence.Placeholder("Encoder")
    for use in (lambda: p(3), lambda: p.sample, lambda: len(p), lambda: p + 1, lambda: int(p)):
        with pytest.raises(evidence.NeedsProducer):
            use()


def test_shuffle_round_trip():
    """Does putting a stage's outputs back in order undo the secret order of its inputs?"""
    x = np.arange(20, dtype=np.float32).reshape(10, 2)
    shuffled, orders = judged._shuffle({"x": x})
    assert not np.array_equal(shuffled["x"], x) or len(x) < 2
    np.testing.assert_array_equal(judged._unshuffle(shuffled["x"] * 2, orders["x"]), x * 2)


@pytest.fixture
def ae_weights(tmp_path):
    """Untrained AE weights (random: the numbers need not pass, only agree)."""
    ns = solution_namespace("ae")
    torch.manual_seed(0)
    torch.save(ns["Encoder"](10).state_dict(), tmp_path / "ae_encoder.pth")
    torch.save(ns["Decoder"](10).state_dict(), tmp_path / "ae_decoder.pth")
    return ns, tmp_path


def test_staged_evaluation_gives_the_local_numbers(ae_weights, modes, monkeypatch):
    """Do the producer, the second stage (on shuffled codes) and the judge, run one after the
    other, give the numbers and verdicts of the same checks run in one process?"""
    ns, work = ae_weights
    monkeypatch.chdir(work)
    local = ae.trained_results(ns["Encoder"], ns["Decoder"], 10)

    run = start_staged("autograder.checks.ae", ("ae_encoder.pth", "ae_decoder.pth"), work)
    with pytest.raises(evidence.Deferred):
        ae.check_trained_ae_probe(ns["Encoder"], ns["Decoder"], 10)
    verdicts = finish_staged(run, SOLUTIONS / "ae.ipynb", "autograder.checks.ae")
    assert [r["evaluation"] for r in run.requests] == ["ae"]
    key = evidence_key(ae.EVALUATION, 10, ("ae_encoder.pth", "ae_decoder.pth"))
    assert (run.private / f"{key}.eval.second.npz").exists()
    assert not verdicts["test_ae_encoder"]["decided"]  # structural: the producer decides
    assert verdicts["test_ae_probe"]["decided"] and not verdicts["test_ae_probe"]["passed"]
    judged_result = evidence.judged(ae.EVALUATION, 10, ("ae_encoder.pth", "ae_decoder.pth"), False)
    for metric in ("probe_accuracy", "recon_mse", "logit_mse", "sum_to_one"):
        assert judged_result[metric] == pytest.approx(local[metric], rel=1e-6), metric
    assert f"got      {local['probe_accuracy']:.3f}" in verdicts["test_ae_probe"]["error"]


def test_judge_refuses_outputs_with_the_wrong_rows(ae_weights, modes, monkeypatch):
    """Does a first stage that returns fewer codes than images make the evaluation fail (not
    crash, not pass)?"""
    ns, work = ae_weights
    monkeypatch.chdir(work)
    (work / "run").mkdir()
    run = judged._Run("autograder.checks.ae", ("ae_encoder.pth", "ae_decoder.pth"), work / "run")
    run.write_inputs()
    evidence.start_producing(str(run.shared))
    with pytest.raises(evidence.Deferred):
        ae.check_trained_ae_probe(ns["Encoder"], ns["Decoder"], 10)
    evidence._STATE.update(mode=None)
    first = run.shared / "first"
    npz = next(first.glob("*.eval.npz"))
    arrays = dict(np.load(npz))
    arrays["z_test"] = arrays["z_test"][:5]
    np.savez(npz, **arrays)
    run.collect_first()
    run.write_metas()
    evidence.start_judging(str(run.private))
    with pytest.raises(CheckFailure, match="rows"):
        ae.check_trained_ae_probe(evidence.Placeholder("Encoder"), evidence.Placeholder("Decoder"), 10)


def _judge_in_fork(queue):
    import torch

    from autograder.checks import evaluation, evidence, latent
    from data_tools.probe import probe_accuracy

    fitted_in_server = [key[0] for key in evaluation._FITTED].count("latent digit classifier") == 1
    x = torch.randn(2000, 784) @ torch.randn(784, 200)  # a parallel region in the fork
    z, y = np.random.default_rng(0).normal(size=(600, 4)), np.arange(600) % 10
    classifier = latent.digit_classifier(evidence.judge_data(latent.EVALUATION)[0])
    digits = classifier.predict(np.zeros((3, 784)))
    queue.put((sorted(evidence._PRELOADED), float(x.std()) > 0, probe_accuracy(z, y, z, y),
               fitted_in_server and len(digits) == 3))


@pytest.mark.slow
def test_judges_forked_from_the_preloaded_server_compute_without_hanging():
    """Does the judge's server read every evaluation's data before it forks, and can a judge
    forked from it still run torch in parallel, fit the probe and use the digit classifier the
    server fitted (a pool of OpenMP threads started in the server would deadlock it)?"""
    import multiprocessing

    from autograder.manifest import check_modules

    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["autograder.grading.judge_preload"])
    expected = sorted(e.name for m in check_modules()
                      for e in getattr(importlib.import_module(m), "EVALUATIONS", ()))
    for _ in range(2):
        queue = context.Queue()
        process = context.Process(target=_judge_in_fork, args=(queue,))
        process.start()
        process.join(120)
        alive = process.is_alive()
        if alive:
            process.kill()
        assert not alive, "a judge forked from the preloaded server hung"
        preloaded, computed, accuracy, classified = queue.get(timeout=5)
        assert preloaded == expected and computed and 0.0 <= accuracy <= 1.0 and classified


@pytest.mark.slow
def test_a_judge_started_under_a_console_script_does_not_run_the_script_again(tmp_path):
    """Under ``nbgrader autograde`` (a console script, not ``python -m``), does a judge start
    without multiprocessing running the grader's main script again in it (which imported all
    of nbgrader in every judge: 1.7 s per notebook)? The script here marks every run of itself
    under multiprocessing's name for it, ``__mp_main__``. And does the judge compute on one
    thread (torch and BLAS), whatever the machine's cores?"""
    import subprocess
    import sys

    marker, evidence_dir = tmp_path / "script-ran-again", tmp_path / "evidence"
    evidence_dir.mkdir()
    script = tmp_path / "grader_script.py"
    script.write_text(f'''
import json, sys
from pathlib import Path
if __name__ == "__mp_main__":
    Path({str(marker)!r}).write_text("the judge ran the main script again")
THREADS = ("import torch, threadpoolctl; assert torch.get_num_threads() == 1; "
           "assert all(p['num_threads'] == 1 for p in threadpoolctl.threadpool_info()); ")
if __name__ == "__main__":
    sys.path.insert(0, {str(COURSE_ROOT)!r})
    from autograder.grading.judged import run_judge
    job = {{"checks": "autograder.checks.ae", "settings": ["n = 2"],
           "cells": [{{"grade_id": "t", "source": THREADS + "assert n == 2; print('judged')"}}],
           "evidence": {str(evidence_dir)!r}, "calls": {str(evidence_dir)!r}}}
    print(json.dumps(run_judge(job, Path({str(tmp_path)!r}), 120)))
''')
    run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300,
                         cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    verdict = json.loads(run.stdout.strip().splitlines()[-1])["t"]
    assert verdict["passed"] and verdict["output"].strip() == "judged"
    assert not marker.exists(), marker.read_text()
