"""What the course notebooks import: MNIST and varianceMNIST data, seeding, saving and loading weights,
plots, encoding a dataset and the linear probe.

Names are imported lazily (PEP 562), so that `python -m data_tools download` and the IDX
tools start without loading torch, scikit-learn or matplotlib.
"""
from importlib import import_module

_EXPORTS = {
    "mnist": ["MNIST", "MNISTSourceError", "Source", "load_mnist_arrays", "find_source",
              "COURSEDATA"],
    "idx": ["IDXError", "read_idx", "write_idx"],
    "download": ["download_mnist", "DownloadError", "OfflineError"],
    "plots": ["plot_bars", "plot_code_scatters", "plot_curves", "plot_embeddings", "plot_images",
              "plot_latent_maps", "plot_loss", "plot_losses", "plot_rows"],
    "lit": ["EpochHistory", "quiet_lightning"],
    "probe": ["encode", "probe_accuracy"],
    "styles": ["ImageSet", "bold", "jitter_strokes", "thin", "two_domains"],
    "training": ["dataset_loss"],
    "variance": ["VarianceMNIST", "corrupt", "plot_variance_samples", "seeded_normal"],
    "utils": ["WeightsError", "load_model", "resolve_skip_training", "running_under_grader",
              "save_model", "seed_everything"],
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_WHERE)


def __getattr__(name):
    if name in _WHERE:
        value = getattr(import_module(f".{_WHERE[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'data_tools' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
