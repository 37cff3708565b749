"""Shared parts of the trained-model checks of every notebook.

A trained model is evaluated in **stages** (:class:`Evaluation`), so that the grader can run
each stage where no other one has run:

1. ``first`` (a :class:`Stage`): the student's models on arrays the grader hands in (the
   evaluation images), returning plain arrays (codes, denoised images, ...);
2. optionally ``between`` (the grader's code only) makes the inputs of ``second`` from the
   first stage's outputs, for instance the codes of the test images, and ``second`` runs the
   student's decoder on them: it never receives an image;
3. ``measure`` (the grader's code only) computes every graded number from those arrays and
   the grader's own data (labels, clean images).

In a notebook kernel (and in the tests) the stages run one after the other in one process
(:func:`run`). During grading they run in separate processes, and ``measure`` in a process
where no student code has run (``autograder.checks.evidence``; ``docs/security.md``).

Besides:

- :func:`load_models`: build the student's classes and load the saved weights (a problem
  becomes a CheckFailure naming it);
- :func:`results`: one evaluation per process (``cache``), with the data source and its bars;
- :func:`require_bar`: one graded number against its bar, as a four-part failure; when every
  graded number of the saved models scores like an untrained network, the hint first says to
  save after training (:func:`untrained_first`); else, when the hint is the generic one and
  the models hold layers that act differently in train mode (BatchNorm, Dropout), the models
  are evaluated once more in train mode, and if they pass there the hint says that the grader
  evaluates in eval() mode and why.
"""
from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from . import cache, draws, evidence
from .core import CheckFailure, call, failure, isolated_rng, shape_str
from .modules import build, load_weights
from .thresholds import (
    required,
    scores_like_untrained,
    source_name,
    threshold,
    untrained_range,
)

#: Layers that compute differently in train and eval mode.
MODE_LAYERS = (nn.modules.batchnorm._BatchNorm, nn.Dropout, nn.Dropout2d)
#: Images per forward pass of a trained model.
EVAL_BATCH = 500

_Tensor = torch.Tensor
_no_grad = torch.no_grad
_environ = os.environ
# Own references: a method that rebinds evidence.mode cannot switch the grading mode off.
_mode, _produce, _judged = evidence.mode, evidence.produce, evidence.judged


@dataclass(frozen=True)
class Stage:
    """One pass of the student's models over arrays the grader hands in.

    ``run(models, inputs)`` takes the built models by kind (``{"Encoder": ...}``) and the
    inputs (float32 tensors by name) and returns plain numpy arrays by name; ``rows`` maps
    each output to the input whose rows it follows (the grader may hand the rows in any
    order, and puts the outputs back in order).
    """

    models: tuple[str, ...]
    run: Callable[[dict, dict], dict]
    rows: dict


@dataclass(frozen=True)
class Codes:
    """The first stage's outputs that are codes, and the notebook's code size: each must have
    exactly ``size`` columns, the manifest's value (``setting`` names it in messages), whatever
    the student's settings cell says (:func:`check_code_width`)."""

    outputs: tuple[str, ...]
    size: int
    setting: str = "n_components"


@dataclass(frozen=True)
class Evaluation:
    """How one set of trained models is evaluated (see the module docstring).

    ``name`` is unique in the course; ``what`` names the models in messages; ``data(trainset,
    testset)`` gives ``(trainset, testset, source_key)`` (the grader's own sets where None is
    given); ``inputs(data)`` the first stage's inputs; ``between(first, data)`` the second
    stage's; ``measure(first, second, data)`` the dict of graded numbers; ``bars`` the
    thresholds' notebook key; ``seed`` the random state the stages run with; ``codes`` the
    first stage's outputs that are codes, with the notebook's code size; ``measure_first(first,
    data)``, when given, the graded numbers that the first stage's outputs alone decide (the
    probe of the codes): when the second stage fails (a decoder of the wrong shape), those
    numbers are still graded and only the others fail with the second stage's message
    (``result["second_failure"]``).
    """

    name: str
    what: str
    bars: str
    data: Callable
    inputs: Callable
    first: Stage
    measure: Callable
    between: Callable | None = None
    second: Stage | None = None
    seed: int = 0
    codes: Codes | None = None
    measure_first: Callable | None = None


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


#: The hint for saved weights that score like an untrained network (a common slip: the weights
#: saved before the training loop, i.e. the random initial ones).
UNTRAINED_HINT = "the saved weights score like an untrained network: save after training"


def untrained_first(result: dict, metric: str, hint: str, fmt: str = ".3f") -> str:
    """``hint``, led by :data:`UNTRAINED_HINT` when every graded number of ``result`` (from
    :func:`results`) scores like an untrained network (``thresholds.scores_like_untrained``)."""
    name = result.get("evaluation", "")
    if not scores_like_untrained(name, result):
        return hint
    scores = untrained_range(name, metric, fmt)
    here = f"untrained networks score {scores} here, and " if scores else ""
    return (f"{UNTRAINED_HINT}, not before the training loop ({here}every graded number of "
            f"these weights is in the untrained range); if you saved after training: {hint}")


def load_models(what: str, n_components: int, *specs) -> tuple[nn.Module, ...]:
    """Build each ``(cls, kind, path)`` as ``cls(n_components)`` and load its saved weights."""
    __tracebackhide__ = True  # noqa: F841
    models = tuple(build(cls, n_components, kind) for cls, kind, _ in specs)
    load_weights(what, *((model, path) for model, (_, _, path) in zip(models, specs)))
    return models


def images_and_labels(dataset) -> tuple[torch.Tensor, np.ndarray]:
    """Every image of ``dataset`` as one float32 tensor (N, 1, 28, 28), and its labels."""
    if hasattr(dataset, "batch"):  # VarianceMNIST: seeded samples, all at once
        x, y = dataset.batch(list(range(len(dataset))))
    elif isinstance(getattr(dataset, "x", None), _Tensor) and hasattr(dataset, "targets"):
        x, y = dataset.x, dataset.targets
    else:
        items = [dataset[i] for i in range(len(dataset))]
        x, y = torch.stack([item[0] for item in items]), torch.tensor([int(i[1]) for i in items])
    return x.to(torch.float32), np.asarray(y, dtype=np.int64)


def labels_of(dataset) -> np.ndarray:
    """The labels of ``dataset``, without building its images when it keeps them apart."""
    targets = getattr(dataset, "targets", None)
    if isinstance(targets, _Tensor):
        return np.asarray(targets, dtype=np.int64)
    return images_and_labels(dataset)[1]


def probe_codes(first: dict, data, what: str) -> float:
    """The linear-probe accuracy of the recorded codes ``z_train``/``z_test`` against the
    grader's labels; non-finite codes fail as a diverged training."""
    from data_tools.probe import probe_accuracy

    from .evidence import checked

    y_train, y_test = labels_of(data[0]), labels_of(data[1])
    z_train = checked(first, "z_train", len(y_train))
    z_test = checked(first, "z_test", len(y_test))
    if not (np.isfinite(z_train).all() and np.isfinite(z_test).all()):
        raise failure(f"{what}: non-finite codes", "finite codes", "nan or inf",
                      "the training diverged: lower the learning rate and train again")
    return probe_accuracy(z_train, y_train, z_test, y_test)


#: The judges fitted by :func:`fitted_once`, by kind and data.
_FITTED: dict = {}


def fitted_once(kind: str, x, y, fit: Callable):
    """``fit(x, y)`` (a judge the grader fits on its training images, such as a digit
    classifier), computed once per process for the same ``kind`` and data; the judge's server
    fits it before it forks any judge (``prepare_judge``), and every judge reuses it."""
    key = (kind, tuple(x.shape), float(x.sum()), int(y.sum()), float(x[::97].sum()))
    if key not in _FITTED:
        _FITTED[key] = fit(x, y)
    return _FITTED[key]


def image_inputs(data) -> dict:
    """The first stage's usual inputs: every image of the train and the test set."""
    trainset, testset, _ = data
    return {"x_train": images_and_labels(trainset)[0], "x_test": images_and_labels(testset)[0]}


def report(compute: Callable[[], dict], *lines) -> dict | None:
    """Print each graded number of ``compute()`` beside its bar (``lines``: functions of the
    result); while nbgrader grades the notebook, say where the numbers are instead."""
    try:
        result = compute()
    except evidence.Deferred:
        print("The grader evaluates the saved models in its own processes: its numbers are in "
              "the graded cells below.")
        return None
    for line in lines:
        print(line(result))
    return result


def batches(x: torch.Tensor, size: int = EVAL_BATCH):
    """``x`` in consecutive batches of at most ``size`` rows."""
    for start in range(0, len(x), size):
        yield x[start:start + size]


def tensor_rows(out, what: str, batch_size: int, shape: tuple | None = None,
                hint: str | None = None) -> torch.Tensor:
    """A trained model's output: a tensor with ``batch_size`` rows (and ``shape`` if given)."""
    __tracebackhide__ = True  # noqa: F841
    if not isinstance(out, _Tensor) or len(out.shape) == 0 or out.shape[0] != batch_size \
            or (shape is not None and tuple(out.shape) != tuple(shape)):
        got = (f"{type(out).__name__} of shape {shape_str(out.shape)}" if isinstance(out, _Tensor)
               else type(out).__qualname__)
        want = f"a tensor of shape {shape_str(shape)}" if shape is not None else \
            f"a tensor with {batch_size} rows"
        raise failure(f"{what}: wrong output", want, got, hint)
    return out


def apply(fn, x: torch.Tensor, what: str, *, flatten: bool = True) -> np.ndarray:
    """``fn`` (one output tensor per batch) over ``x`` in batches, as a float32 array."""
    outs = []
    for xb in batches(x):
        out = tensor_rows(call(fn, xb, what=what), what, len(xb))
        out = _Tensor.detach(out).to(torch.float32)
        outs.append((out.reshape(len(xb), -1) if flatten else out).numpy())
    return np.concatenate(outs) if outs else np.zeros((0, 0), np.float32)


def check_code_width(evaluation: Evaluation, first: dict) -> None:
    """Every code among the first stage's outputs ``first`` has exactly the notebook's code
    size in columns (``evaluation.codes``). The grader decides it (``grading/judged.py``) before
    any code reaches a decoder or a measure: a code as wide as the image, or a hand-made
    feature wider than the bottleneck, would carry an untrained network over the bars."""
    __tracebackhide__ = True  # noqa: F841
    codes = evaluation.codes
    for key in codes.outputs if codes is not None else ():
        shape = getattr(first.get(key), "shape", None)
        if shape is None or (len(shape) == 2 and shape[1] == codes.size):
            continue  # a missing output is refused where it is read
        setting = f"{codes.setting} = {codes.size}"
        got = (f"the codes have {shape[1]} columns" if len(shape) == 2
               else f"codes of shape {shape_str(shape)}")
        raise failure(
            f"codes of the saved {evaluation.what} ({key}): {got}; the notebook's code size is "
            f"{setting}", f"codes of shape (N, {codes.size})", f"shape {shape_str(shape)}",
            f"the grader evaluates the models at the notebook's code size, {setting}, whatever "
            f"the settings cell says: keep {setting} and return codes of exactly that width "
            f"(a wider code is no bottleneck)")


def run(evaluation: Evaluation, models: dict, data, *, train_mode: bool = False) -> dict:
    """Every stage of ``evaluation`` in this process, then ``measure``."""
    __tracebackhide__ = True  # noqa: F841
    for model in models.values():
        model.train(train_mode)
    with _no_grad(), isolated_rng(evaluation.seed):
        first = evaluation.first.run(models, evaluation.inputs(data))
        check_code_width(evaluation, first)
        second = {}
        if evaluation.second is not None:
            between = evaluation.between(first, data)
            try:
                second = evaluation.second.run(models, between)
            except CheckFailure as exc:
                if evaluation.measure_first is None:
                    raise
                return {**evaluation.measure_first(first, data),
                        "second_failure": evidence.error_record(exc)}
    return evaluation.measure(first, second, data)


def second_failed(result: dict, metric: str) -> None:
    """Raise the second stage's failure when ``metric`` needed the second stage and it failed."""
    __tracebackhide__ = True  # noqa: F841
    if metric not in result and result.get("second_failure"):
        evidence.raise_recorded(result["second_failure"])


def evidence_key(evaluation: Evaluation, n_components: int, paths: tuple) -> str:
    """The name of one evaluation's evidence (the same in every process of a grading run)."""
    text = json.dumps([evaluation.name, int(n_components), [str(p) for p in paths]])
    return f"{evaluation.name}-{hashlib.sha256(text.encode()).hexdigest()[:16]}"


def results(evaluation: Evaluation, n_components: int, specs: tuple, given: tuple = (None, None),
            *, train_mode: bool = False) -> dict:
    """The graded numbers of the saved models ``specs`` (``(cls, kind, path)`` each), computed
    once per process for the same classes, data, weight files and mode, with ``source`` (the
    data source's threshold key) and ``bars`` (its thresholds) added.

    During grading (``evidence.mode()``) the grader's own data is used whatever ``given`` is:
    in the replay the models' outputs are recorded and the check is decided later by the
    judge, which reads them here."""
    __tracebackhide__ = True  # noqa: F841
    paths = tuple(path for _, _, path in specs)
    mode = _mode()
    if mode is None and _environ.get("NBGRADER_EXECUTION") == "autograde":
        # The notebook's kernel while nbgrader grades it: these cells are scored (and their
        # numbers shown) from the grader's own evaluation (``ReplayChecks``), not from here.
        raise evidence.Deferred("evaluated by the grader")
    if mode == "produce":
        _produce(evaluation, n_components, specs)  # raises evidence.Deferred
    if mode == "judge":
        result = _judged(evaluation, n_components, paths, train_mode)
        source_key = result["source"]
    else:
        trainset, testset, source_key = evaluation.data(*given)

        def compute():
            models = load_models(evaluation.what, n_components, *specs)
            kinds = {kind: model for (_, kind, _), model in zip(specs, models)}
            result = run(evaluation, kinds, (trainset, testset, source_key), train_mode=train_mode)
            result["mode_layers"] = mode_layers(*models)
            return result

        result = cache.evaluation((*(cls for cls, _, _ in specs), *given),
                                  (evaluation.name, n_components, source_key, train_mode,
                                   draws.current()), paths,
                                  compute)
    result["source"], result["bars"] = source_key, threshold(source_key, evaluation.bars)
    result["evaluation"] = evaluation.name
    return result


def require_bar(result: dict, metric: str, *, what: str, problem: str = "", hint: str, generic: bool,
                train_mode: Callable[[], dict], op: str = ">=", fmt: str = ".3f",
                got: str | None = None, reference: str | None = None,
                models: str = "models") -> None:
    """Raise the four-part failure of ``result[metric]`` when it misses its bar."""
    __tracebackhide__ = True  # noqa: F841
    second_failed(result, metric)
    bars, value = result["bars"], result[metric]
    bar = bars[metric]
    if (value >= bar) if op == ">=" else (value <= bar):
        return
    if scores_like_untrained(result.get("evaluation", ""), result):
        hint = untrained_first(result, metric, hint, fmt)
    elif generic and result.get("mode_layers"):
        train = train_mode()[metric]
        if (train >= bar) if op == ">=" else (train <= bar):
            hint = f"{eval_mode_hint(models)} (train mode: {train:{fmt}})"
    tried = f"{what} ({models} in eval() mode, {source_name(result['source'])})"
    raise failure(f"{tried}: {problem}" if problem else tried,
                  required(bar, bars.get(reference) if reference else None, fmt, op),
                  got if got is not None else f"{value:{fmt}}", hint)


def encoder_decoder_functions(evaluation: Evaluation, encoder_path: str, decoder_path: str,
                              lines: tuple):
    """The functions of a notebook whose saved models are an ``Encoder`` and a ``Decoder`` (the
    AE and the VAE notebooks): ``load_trained``, ``trained_results``, ``report_trained``,
    ``bar_check`` (a check of one graded number) and ``run_both`` (checks one after the other).

    ``lines``: the functions that format each graded number beside its bar (for the report)."""
    def load_trained(Encoder, Decoder, n_components: int, encoder_path: str = encoder_path,
                     decoder_path: str = decoder_path):
        """Build Encoder and Decoder and load the saved weights; a problem becomes a CheckFailure."""
        __tracebackhide__ = True  # noqa: F841
        return load_models(evaluation.what, n_components, (Encoder, "Encoder", encoder_path),
                           (Decoder, "Decoder", decoder_path))

    def trained_results(Encoder, Decoder, n_components: int, *, trainset=None, testset=None,
                        encoder_path: str = encoder_path, decoder_path: str = decoder_path,
                        train_mode: bool = False) -> dict:
        """The graded numbers of the saved models (evaluated once per process, see ``cache``),
        with ``source`` and ``bars``. The models are evaluated in eval() mode
        (``train_mode=True``: in train mode, for the hint of a failed bar)."""
        __tracebackhide__ = True  # noqa: F841
        return results(evaluation, n_components, ((Encoder, "Encoder", encoder_path),
                                                  (Decoder, "Decoder", decoder_path)),
                       (trainset, testset), train_mode=train_mode)

    def report_trained(Encoder, Decoder, n_components: int, *, trainset=None, testset=None,
                       encoder_path: str = encoder_path, decoder_path: str = decoder_path) -> dict:
        """Print every graded number of the saved models beside its bar (never fails a bar)."""
        __tracebackhide__ = True  # noqa: F841
        return report(lambda: trained_results(Encoder, Decoder, n_components, trainset=trainset,
                                              testset=testset, encoder_path=encoder_path,
                                              decoder_path=decoder_path), *lines)

    def named(check, name: str, doc: str):
        check.__name__ = check.__qualname__ = name
        check.__doc__, check.__module__ = doc, f"{__package__}.{evaluation.name}"
        return check

    def bar_check(name: str, doc: str, metric: str, line, **bar):
        """The check ``name`` of the graded number ``metric`` against its bar: ``bar`` holds
        the arguments of :func:`require_bar`, each a value or a function of the result; on
        success it prints ``line(result)``."""
        def check(Encoder, Decoder, n_components: int, *, trainset=None, testset=None,
                  encoder_path: str = encoder_path, decoder_path: str = decoder_path) -> None:
            __tracebackhide__ = True  # noqa: F841
            kwargs = dict(trainset=trainset, testset=testset, encoder_path=encoder_path,
                          decoder_path=decoder_path)
            result = trained_results(Encoder, Decoder, n_components, **kwargs)
            second_failed(result, metric)
            require_bar(result, metric, **{k: v(result) if callable(v) else v for k, v in bar.items()},
                        train_mode=lambda: trained_results(Encoder, Decoder, n_components,
                                                           train_mode=True, **kwargs))
            print(line(result))
        return named(check, name, doc)

    def run_both(name: str, *checks):
        """The check ``name`` that runs ``checks`` one after the other."""
        def check_both(Encoder, Decoder, n_components: int, *, trainset=None, testset=None,
                       encoder_path: str = encoder_path, decoder_path: str = decoder_path) -> None:
            for check in checks:
                check(Encoder, Decoder, n_components, trainset=trainset, testset=testset,
                      encoder_path=encoder_path, decoder_path=decoder_path)
        return named(check_both, name, "Every bar of the saved models: " + ", then ".join(
            check.__name__ for check in checks) + ".")

    return load_trained, trained_results, report_trained, bar_check, run_both
