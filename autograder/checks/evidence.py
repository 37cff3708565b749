"""Checks that decide nothing in a process where student code has run.

Every check process is in one of three modes (:func:`mode`):

- **local** (the default: a notebook kernel, the tests): a check calls the student's code and
  decides, as a student expects.
- **produce** (the grader's re-run of the tests, ``autograder.grading.replay_child``): the
  structural checks decide as in local mode, but a trained-model check only runs the first
  stage of its :class:`~autograder.checks.evaluation.Evaluation` on the inputs the grader
  handed in (read before any student code ran), writes the outputs as plain arrays, and
  stops with :class:`Deferred`; the replayable checks of functions record every call
  (``autograder.checks.recorded``).
- **judge** (``autograder.grading.judge``: a fresh process that never imports student code):
  the trusted source of each test cell runs with the student's names bound to
  :class:`Placeholder` objects. A trained-model check reads the arrays of both stages (the
  second ran in its own process on codes only) and measures them; a replayable check re-runs
  its body on the recorded calls. A check that needs the student's code itself touches a
  placeholder, which raises :class:`NeedsProducer`: that cell keeps the producer's verdict.

Arrays travel as ``.npz`` files read with ``allow_pickle=False``; the judge accepts only float
arrays of the expected rows (:func:`checked`). See docs/security.md.
"""
from __future__ import annotations

import json
import os

import numpy as np
import torch

from .core import CheckFailure, failure

# Own references, taken before any student code runs in this process.
_np_load = np.load
_np_savez = np.savez
_np_asarray = np.asarray
_from_numpy = torch.from_numpy
_json_dumps = json.dumps
_json_loads = json.loads
_open = open
_replace = os.replace
_path_join = os.path.join
_isinstance = isinstance
_BaseException = BaseException
_str = str

#: The largest array (elements) and file (bytes) the grader reads back from a check process.
MAX_ELEMENTS = 80_000_000
MAX_FILE_BYTES = 400_000_000

_STATE: dict = {"mode": None, "dir": None, "inputs": {}, "produced": set(), "cell": "", "judged": {},
                "data": {}}


class Deferred(BaseException):  # noqa: N818 - not an error: the judge decides this check
    """Produce mode: the check's outputs are recorded, its verdict is the judge's."""


class NeedsProducer(BaseException):  # noqa: N818 - not an error: a structural check
    """Judge mode: the check needs the student's code, so the producer's verdict counts."""


class Placeholder:
    """Stands for a name of the student's namespace in the judge, which has none of it."""

    __slots__ = ("_name",)

    def __init__(self, name: str) -> None:
        object.__setattr__(self, "_name", name)

    def _needs(self, *_args, **_kwargs):
        raise NeedsProducer(object.__getattribute__(self, "_name"))

    __call__ = __getattr__ = __iter__ = __len__ = __bool__ = __index__ = __int__ = __float__ = _needs
    __getitem__ = __setattr__ = __eq__ = __lt__ = __gt__ = __add__ = __mul__ = __hash__ = _needs

    def __repr__(self) -> str:
        return f"<the student's {object.__getattribute__(self, '_name')}>"


def mode() -> str | None:
    """"produce", "judge", or None (local)."""
    return _STATE["mode"]


def set_cell(grade_id: str) -> None:
    """The test cell whose checks run next."""
    _STATE["cell"] = grade_id


def cell() -> str:
    return _STATE["cell"]


def directory() -> str:
    return _STATE["dir"]


# -- arrays ------------------------------------------------------------------------------------

def save_arrays(path: str, arrays: dict) -> None:
    """Write plain arrays as one .npz file (atomically)."""
    with _open(path + ".tmp", "wb") as f:
        _np_savez(f, **{k: _np_asarray(v) for k, v in arrays.items()})
    _replace(path + ".tmp", path)


def load_arrays(path: str) -> dict[str, np.ndarray]:
    """The arrays of an .npz file written by a check process: never pickles, never a link,
    bounded in size; a problem becomes a failure naming it."""
    try:
        if os.path.islink(path) or not os.path.isfile(path):
            raise OSError("not a plain file")
        if os.path.getsize(path) > MAX_FILE_BYTES:
            raise OSError("too large")
        with _np_load(path, allow_pickle=False) as data:
            arrays = {}
            for key in data.files:
                header = data[key]
                if header.size > MAX_ELEMENTS:
                    raise OSError(f"array {key} too large")
                arrays[key] = header
            return arrays
    except Exception as exc:  # noqa: BLE001 - whatever is wrong, the outputs are unusable
        raise evidence_failure(f"unreadable outputs {os.path.basename(path)} "
                               f"({type(exc).__name__}: {exc})") from None


def checked(arrays: dict, key: str, rows: int | None = None) -> np.ndarray:
    """``arrays[key]``: a float array (with ``rows`` rows when given)."""
    a = arrays.get(key)
    if not _isinstance(a, np.ndarray):
        raise evidence_failure(f"the output {key!r} is missing")
    if a.dtype.kind != "f" or a.ndim == 0:
        raise evidence_failure(f"the output {key!r} is not an array of floats ({a.dtype})")
    if rows is not None and a.shape[0] != rows:
        raise evidence_failure(f"the output {key!r} has {a.shape[0]} rows, expected {rows}")
    return a


def evidence_failure(problem: str) -> CheckFailure:
    return failure(f"grading: {problem}", hint="the grader evaluates the outputs your code "
                   "returns for its own inputs; code that changes the grader's files or state "
                   "only loses points")


def error_record(exc: BaseException) -> dict:
    """A check's failure as plain data: its type's name and its message."""
    return {"type": type(exc).__name__, "message": _str(exc)}


def clean_error(record, limit: int = 8000):
    """A failure record read from a check process, reduced to plain strings ("" for none)."""
    if not record:
        return ""
    if _isinstance(record, dict):
        kind = record.get("type")
        return {"type": kind if kind in ("CheckFailure", "NotImplementedYet") else "CheckFailure",
                "message": _str(record.get("message", ""))[:limit]}
    return {"type": "CheckFailure", "message": _str(record)[:limit]}


def raise_recorded(record) -> None:
    """Raise the failure a check process recorded (a CheckFailure or NotImplementedYet)."""
    from .core import NotImplementedYet

    record = clean_error(record) or {"type": "CheckFailure", "message": "grading: failed"}
    raise (NotImplementedYet if record["type"] == "NotImplementedYet" else CheckFailure)(
        record["message"])


def write_json(path: str, value) -> None:
    with _open(path + ".tmp", "w") as f:
        f.write(_json_dumps(value))
    _replace(path + ".tmp", path)


def read_json(path: str, default=None):
    """A small JSON file written by a check process, or ``default`` when unusable."""
    try:
        if os.path.islink(path) or os.path.getsize(path) > 10_000_000:
            return default
        with _open(path) as f:
            return _json_loads(f.read())
    except (OSError, ValueError):
        return default


# -- produce mode ----------------------------------------------------------------------------

def start_producing(directory: str) -> None:
    """Produce mode, with the inputs the grader wrote to ``directory/inputs`` read now."""
    _STATE.update(mode="produce", dir=directory, produced=set())
    inputs = {}
    folder = _path_join(directory, "inputs")
    for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else ():
        if name.endswith(".npz"):
            inputs[name[:-4]] = {k: _from_numpy(np.array(v, dtype=np.float32))
                                 for k, v in load_arrays(_path_join(folder, name)).items()}
    _STATE["inputs"] = inputs
    os.makedirs(_path_join(directory, "first"), exist_ok=True)


def produce(evaluation, n_components: int, specs: tuple) -> None:
    """Run the first stage of ``evaluation`` on the grader's inputs and record its outputs
    (in eval mode, and in train mode too when the models have layers that differ); then
    raise :class:`Deferred`."""
    from .evaluation import evidence_key, load_models, mode_layers

    paths = tuple(path for _, _, path in specs)
    key = evidence_key(evaluation, n_components, paths)
    if key in _STATE["produced"]:
        raise Deferred(key)
    _STATE["produced"].add(key)
    folder = _path_join(_STATE["dir"], "first")
    meta = {"evaluation": evaluation.name, "n_components": int(n_components),
            "specs": [[kind, _str(path)] for _, kind, path in specs], "modes": {}}
    try:
        inputs = _STATE["inputs"].get(evaluation.name)
        if inputs is None:
            raise evidence_failure(f"no inputs for the evaluation {evaluation.name!r}")
        models = load_models(evaluation.what, n_components, *specs)
        kinds = {kind: model for (_, kind, _), model in zip(specs, models)}
        meta["mode_layers"] = bool(mode_layers(*models))
        for train_mode in (False, True) if meta["mode_layers"] else (False,):
            name = "train" if train_mode else "eval"
            for model in models:
                model.train(train_mode)
            try:
                from .core import isolated_rng

                with torch.no_grad(), isolated_rng(evaluation.seed):
                    outputs = evaluation.first.run(kinds, inputs)
                save_arrays(_path_join(folder, f"{key}.{name}.npz"), outputs)
                meta["modes"][name] = ""
            except CheckFailure as exc:
                meta["modes"][name] = error_record(exc)
    except CheckFailure as exc:
        meta["error"] = error_record(exc)
    except NeedsProducer as exc:  # student code used a name of the notebook's data cells
        meta["error"] = {"type": "CheckFailure", "message": (
            f"evaluating the saved {evaluation.what}: your code used `{exc}` of the notebook, "
            f"which the grader's evaluation does not provide\n  hint: compute the outputs from "
            f"the method's arguments only")}
    write_json(_path_join(folder, f"{key}.json"), meta)
    raise Deferred(key)


# -- judge mode ------------------------------------------------------------------------------

def start_judging(directory: str) -> None:
    """Judge mode: the trained-model outputs are in ``directory`` (written by the grader)."""
    _STATE.update(mode="judge", dir=directory, data={}, judged={})


def judge_data(evaluation):
    """The judge's own evaluation data of ``evaluation`` (read once per process)."""
    data = _STATE["data"].get(evaluation.name)
    if data is None:
        data = _STATE["data"][evaluation.name] = evaluation.data(None, None)
    return data


def judged(evaluation, n_components: int, paths: tuple, train_mode: bool) -> dict:
    """Judge mode: the graded numbers of one evaluation, measured from the recorded outputs."""
    from .evaluation import evidence_key

    key = evidence_key(evaluation, n_components, paths)
    name = "train" if train_mode else "eval"
    done = _STATE.setdefault("judged", {})
    if (key, name) in done:  # one measure per evaluation, however many cells read it
        return dict(done[key, name])
    folder = _STATE["dir"]
    meta = read_json(_path_join(folder, f"{key}.json"))
    if not _isinstance(meta, dict):
        raise evidence_failure("the saved models were not evaluated (the re-run of the tests "
                               "stopped before this check, or recorded nothing for it)")
    if meta.get("error"):
        raise_recorded(meta["error"])
    problem = meta.get("modes", {}).get(name)
    if problem is None:
        raise evidence_failure(f"the saved models were not evaluated in {name} mode")
    if problem:
        raise_recorded(problem)
    first = load_arrays(_path_join(folder, f"{key}.{name}.first.npz"))
    second = {}
    if evaluation.second is not None:
        second = load_arrays(_path_join(folder, f"{key}.{name}.second.npz"))
    data = judge_data(evaluation)
    try:
        result = dict(evaluation.measure(first, second, data))
    except CheckFailure:
        raise
    except Exception as exc:  # noqa: BLE001 - outputs the measure cannot use
        raise evidence_failure(f"the outputs of the saved models cannot be measured "
                               f"({type(exc).__name__}: {exc})") from None
    result["mode_layers"] = bool(meta.get("mode_layers"))
    result["source"] = data[2]
    done[key, name] = result
    return dict(result)
