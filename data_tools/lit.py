"""Small companions for training with PyTorch Lightning in the notebooks.

- :func:`quiet_lightning` turns off Lightning's informational banners ("GPU available: ...",
  tips), and the warnings about Lightning's own use of torch internals, which say nothing a
  student needs; other warnings and errors still show, and so does the progress bar.
- :class:`EpochHistory` records the epoch means of the logged training and validation losses,
  for a plot of both curves after ``trainer.fit``.

Lightning is imported when these are used, not when ``data_tools`` is.
"""
from __future__ import annotations

import logging

_LOGGERS = ("lightning", "lightning.pytorch", "lightning.fabric", "pytorch_lightning",
            "lightning_fabric")


#: Warnings about Lightning's own use of torch internals (newer torch releases deprecate what
#: it calls): nothing a student can act on.
_INTERNAL_WARNINGS = (r"`isinstance\(treespec, LeafSpec\)` is deprecated",)


def quiet_lightning(level: int = logging.WARNING) -> None:
    """Show only Lightning's messages at ``level`` and above (warnings by default), without
    the warnings about Lightning's own use of torch internals."""
    import warnings

    for name in _LOGGERS:
        logging.getLogger(name).setLevel(level)
    for message in _INTERNAL_WARNINGS:
        warnings.filterwarnings("ignore", message=message)


def _callback_base():
    import lightning

    return lightning.Callback


class EpochHistory(_callback_base()):
    """A callback that keeps the epoch values of logged metrics (default: train_loss, val_loss).

    ``history.curves()`` is a dict name -> list of floats, one per epoch, ready for
    ``plot_loss``. Log the metrics with ``on_epoch=True`` (the default in validation_step).
    """

    def __init__(self, names=("train_loss", "val_loss")):
        super().__init__()
        self.names = tuple(names)
        self.values = {name: [] for name in self.names}

    def _record(self, trainer, names) -> None:
        if trainer.sanity_checking:
            return
        for name in names:
            value = trainer.callback_metrics.get(name)
            if value is not None:
                self.values[name].append(float(value))

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self._record(trainer, [n for n in self.names if not n.startswith("val")])

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        self._record(trainer, [n for n in self.names if n.startswith("val")])

    def curves(self) -> dict[str, list[float]]:
        return {name: list(values) for name, values in self.values.items() if values}
