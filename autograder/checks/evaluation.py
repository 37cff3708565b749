"""Shared parts of the trained-model checks of every notebook.

- :func:`load_models`: build the student's classes and load the saved weights (a problem
  becomes a CheckFailure naming it);
- :func:`results`: one evaluation per process (``cache``), with the data source and its bars;
- :func:`require_bar`: one graded number against its bar, as a four-part failure; when the
  hint is the generic one and the models hold layers that act differently in train mode
  (BatchNorm, Dropout), the models are evaluated once more in train mode, and if they pass
  there the hint says that the grader evaluates in eval() mode and why.
"""
from __future__ import annotations

from collections.abc import Callable

from torch import nn

from . import cache
from .core import failure
from .modules import build, load_weights
from .thresholds import required, source_name, threshold

#: Layers that compute differently in train and eval mode.
MODE_LAYERS = (nn.modules.batchnorm._BatchNorm, nn.Dropout, nn.Dropout2d)


def mode_layers(*models) -> bool:
    """Do the models hold layers that act differently in train and eval mode?"""
    return any(isinstance(m, MODE_LAYERS) for model in models for m in model.modules())


def eval_mode_hint(models: str = "models") -> str:
    """The hint for models that pass a bar in train mode only."""
    them, pass_ = ("them", "pass") if models == "models" else ("it", "passes")
    return (f"in train mode your {models} {pass_} this bar, but the grader evaluates {them} in "
            "eval() mode (it calls .eval() itself, as every evaluation should), where "
            "BatchNorm uses the running statistics it collected during training and "
            "Dropout is off: train in train() mode (call .train() before the loop, and "
            "again after any .eval() inside it), and use nn.Dropout rather than "
            "F.dropout without training=self.training")


def load_models(what: str, n_components: int, *specs) -> tuple[nn.Module, ...]:
    """Build each ``(cls, kind, path)`` as ``cls(n_components)`` and load its saved weights."""
    __tracebackhide__ = True  # noqa: F841
    models = tuple(build(cls, n_components, kind) for cls, kind, _ in specs)
    load_weights(what, *((model, path) for model, (_, _, path) in zip(models, specs)))
    return models


def results(name: str, classes: tuple, given: tuple, key: tuple, paths: tuple, source_key: str,
            compute: Callable[[], dict]) -> dict:
    """The graded numbers of the saved models of notebook ``name``, computed once per process
    for the same classes, data, weight files and ``key``, with ``source`` (the data source's
    threshold key) and ``bars`` (its thresholds) added."""
    __tracebackhide__ = True  # noqa: F841
    result = cache.evaluation((*classes, *given), (name, *key), paths, compute)
    result["source"], result["bars"] = source_key, threshold(source_key, name)
    return result


def require_bar(result: dict, metric: str, *, what: str, problem: str = "", hint: str, generic: bool,
                train_mode: Callable[[], dict], op: str = ">=", fmt: str = ".3f",
                got: str | None = None, reference: str | None = None,
                models: str = "models") -> None:
    """Raise the four-part failure of ``result[metric]`` when it misses its bar."""
    __tracebackhide__ = True  # noqa: F841
    bars, value = result["bars"], result[metric]
    bar = bars[metric]
    if (value >= bar) if op == ">=" else (value <= bar):
        return
    if generic and result.get("mode_layers"):
        train = train_mode()[metric]
        if (train >= bar) if op == ">=" else (train <= bar):
            hint = f"{eval_mode_hint(models)} (train mode: {train:{fmt}})"
    tried = f"{what} ({models} in eval() mode, {source_name(result['source'])})"
    raise failure(f"{tried}: {problem}" if problem else tried,
                  required(bar, bars.get(reference) if reference else None, fmt, op),
                  got if got is not None else f"{value:{fmt}}", hint)
