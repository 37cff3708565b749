"""Do the untrained ranges of autograder/checks/thresholds.py agree with the calibration runs
in docs/calibration/, and does the diagnosis "scores like an untrained network" tell the
untrained runs from every trained one there?"""
from __future__ import annotations

import json

import pytest
from conftest import COURSE_ROOT

from autograder.checks.thresholds import (
    THRESHOLDS,
    UNTRAINED,
    scores_like_untrained,
    untrained_band,
)

CALIBRATION = COURSE_ROOT / "docs" / "calibration"
#: Evaluation name -> (the thresholds' notebook key, the raw calibration runs).
RUNS = {"ae": ("ae", "ae-embedded"), "dae": ("dae", "dae-embedded"),
        "vae": ("vae", "vae-embedded"), "latent": ("latent", "latent-embedded"),
        "linear": ("linear", "linear-embedded"), "sparse": ("linear", "linear-embedded")}


def _runs(name: str) -> dict:
    return json.loads((CALIBRATION / f"{name}.json").read_text())


def _scored(evaluation: str, run: dict, source: str = "embedded", prefix: str = "") -> dict:
    bars = THRESHOLDS[source][RUNS[evaluation][0]]
    return {**{m: run[prefix + m] for m in UNTRAINED[evaluation]}, "bars": bars}


def test_every_untrained_range_has_its_calibration_runs():
    """Is each evaluation's untrained range, per graded number, the lowest and highest of the
    untrained runs recorded in docs/calibration/ (as rounded in the table)?"""
    assert set(UNTRAINED) == set(RUNS)
    for evaluation, ranges in UNTRAINED.items():
        runs = _runs(RUNS[evaluation][1])["untrained"]
        for metric, (low, high) in ranges.items():
            values = [run[metric] for run in runs]
            assert min(values) == pytest.approx(low, rel=1e-3, abs=6e-4), (evaluation, metric)
            assert max(values) == pytest.approx(high, rel=1e-3, abs=6e-4), (evaluation, metric)


@pytest.mark.parametrize("source", ["embedded", "mnist"])
@pytest.mark.parametrize("evaluation", sorted(RUNS))
def test_untrained_runs_score_like_untrained_and_reference_runs_do_not(evaluation, source):
    """Does every recorded untrained run score like an untrained network, and no reference run,
    on both data sources' bars?"""
    data = _runs(RUNS[evaluation][1])
    assert all(scores_like_untrained(evaluation, _scored(evaluation, run, source))
               for run in data["untrained"])
    assert not any(scores_like_untrained(evaluation, _scored(evaluation, run, source))
                   for run in data["reference"])


def test_trained_but_wrong_runs_do_not_score_like_untrained():
    """Are the calibration's trained runs that miss a bar for another reason (a DAE trained
    without corruption, a sparse AE without its penalty, beta-VAEs trained for 8 epochs) kept
    apart from untrained networks?"""
    for run in _runs("dae-embedded-sigma_n=0.0")["reference"]:
        assert not scores_like_untrained("dae", _scored("dae", run))
    for run in _runs("linear-embedded-sparsity_weight=0.0")["reference"]:
        assert not scores_like_untrained("sparse", _scored("sparse", run))
    for run in _runs("latent-embedded")["reference"]:
        for brief in ("brief1_", "brief_large_"):
            assert not scores_like_untrained("latent", _scored("latent", run, prefix=brief))


def test_band_stays_on_the_untrained_side_of_the_bar():
    """Does an untrained band widen the measured range by half its width, never reach more
    than halfway to the bar, and vanish where the bar lies inside the range?"""
    assert untrained_band(0.4, 0.6, 0.9) == pytest.approx((0.3, 0.7))
    assert untrained_band(0.4, 0.6, 0.7) == pytest.approx((0.3, 0.65))
    assert untrained_band(0.09, 0.11, 0.03) == pytest.approx((0.08, 0.12))
    assert untrained_band(0.4, 0.6, 0.5) is None
    for source in THRESHOLDS:
        for evaluation, ranges in UNTRAINED.items():
            for metric, (low, high) in ranges.items():
                bar = THRESHOLDS[source][RUNS[evaluation][0]][metric]
                band = untrained_band(low, high, bar)
                assert band is not None and not band[0] <= bar <= band[1]
                assert band[1] <= (high + bar) / 2 if bar > high else band[0] >= (low + bar) / 2
