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

Arrays travel as ``.npz`` files that are never unpickled; the grader reads an array only after
its size and dtype (the archive's record, the .npy header) are within bounds
(:func:`load_arrays`), and the judge accepts only float arrays of the expected rows
(:func:`checked`). See docs/security.md.
"""
from __future__ import annotations

import json
import math
import os
import struct
import zipfile

import numpy as np
import torch

from . import core as _core
from .core import CheckFailure, failure
from .draws import current as _secret

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
_ZipFile = zipfile.ZipFile
_unpack = struct.unpack
_read_magic = np.lib.format.read_magic
_npy_headers = {(1, 0): np.lib.format.read_array_header_1_0,
                (2, 0): np.lib.format.read_array_header_2_0}
_np_empty = np.empty
_prod = math.prod

# What the grader reads back from a check process is bounded *before* it is read: an .npz is
# a zip archive, and a few kilobytes of deflated zeros declare gigabytes of array.

#: The largest array (elements) that travels between the grader and a check process. The
#: largest that does so legitimately is the training images the grader hands to the producer
#: on full MNIST, 60,000 x 784 = 47,040,000 float32 (measured with the reference solutions:
#: on the embedded data the largest is 4,000 x 784 = 3,136,000); a stage returns less: the
#: codes of those images, n_components wide, or 10,000 test images x 784 pixels.
MAX_ELEMENTS = 60_000 * 784
#: The largest .npz file (bytes, on disk and declared uncompressed in all): twice the largest
#: legitimate one, the inputs the grader writes on full MNIST (70,000 images x 784 float32,
#: 219.5 MB); a stage's outputs are smaller.
MAX_FILE_BYTES = 400_000_000
#: The most arrays one .npz may hold: the most a reference run writes is 3,005 (the recorded
#: calls of check_few_label_subset, whose uniformity test draws 3,000 subsets).
MAX_ARRAYS = 20_000
#: The dtypes an array may have: the stages return float32, the recorded calls float64.
ARRAY_DTYPES = ("float16", "float32", "float64")
#: The largest JSON file (bytes) read back from a check process: a record of one evaluation
#: or of a stage's failure is a few kilobytes, all recorded calls of a notebook at most 0.8 MB.
MAX_JSON_BYTES = 16_000_000

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


_core._grading_mode = mode


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


class _Refused(Exception):  # noqa: N818 - a reason, not a bug
    """Outputs the grader does not read, with the reason shown to the student."""


def load_arrays(path: str) -> dict[str, np.ndarray]:
    """The arrays of an .npz file written by a check process: never pickles, never a link,
    bounded in size *before* anything is decompressed; a problem becomes a failure naming it.

    The file's size, the number of its arrays (from the archive's end record, before the
    directory is parsed), each array's dtype and shape (its .npy header) and the size the
    archive declares for it, and their sum, are checked against :data:`MAX_FILE_BYTES`,
    :data:`MAX_ARRAYS`, :data:`ARRAY_DTYPES` and :data:`MAX_ELEMENTS`; then exactly the
    declared bytes are read (``zipfile`` inflates no more than a member's declared size).
    """
    try:
        if os.path.islink(path) or not os.path.isfile(path):
            raise _Refused("not a plain file")
        size = os.path.getsize(path)
        if size > MAX_FILE_BYTES:
            raise _Refused(f"a file of {size:,} bytes, more than the grader accepts "
                           f"({MAX_FILE_BYTES:,})")
        with _open(path, "rb") as f:
            _check_directory(f, size)
            with _ZipFile(f) as archive:
                members = archive.infolist()
                if len(members) > MAX_ARRAYS:
                    raise _Refused(f"{len(members):,} arrays, more than the grader accepts "
                                   f"({MAX_ARRAYS:,})")
                headers = {}
                for member in members:
                    key = member.filename[:-4]
                    if not member.filename.endswith(".npy") or not key or key in headers:
                        raise _Refused(f"an unexpected member {member.filename[:80]!r}")
                    with archive.open(member) as stream:
                        headers[key] = _read_header(stream, member.file_size, key)
                declared = sum(m.file_size for m in members)
                if declared > MAX_FILE_BYTES:
                    raise _Refused(f"arrays of {declared:,} bytes in all, more than the grader "
                                   f"accepts ({MAX_FILE_BYTES:,})")
                arrays = {}
                for member, (key, header) in zip(members, headers.items()):
                    with archive.open(member) as stream:
                        arrays[key] = _read_data(stream, key, *header)
                return arrays
    except _Refused as exc:
        raise evidence_failure(f"the outputs {os.path.basename(path)} were refused: the stage "
                               f"returned {exc}") from None
    except Exception as exc:  # noqa: BLE001 - whatever is wrong, the outputs are unusable
        raise evidence_failure(f"unreadable outputs {os.path.basename(path)} "
                               f"({type(exc).__name__}: {exc})") from None


def _check_directory(f, size: int) -> None:
    """Refuse an archive whose end record declares more members, or a larger directory, than
    :data:`MAX_ARRAYS` allow (``zipfile`` would parse all of it into memory), or a zip64 one
    (never needed below those bounds). The record is found as ``zipfile`` finds it."""
    tail = min(size, 22 + 65_535)
    f.seek(size - tail)
    data = f.read(tail)
    at = len(data) - 22 if data[-22:-18] == b"PK\x05\x06" else data.rfind(b"PK\x05\x06")
    if at < 0 or len(data) - at < 22:
        raise _Refused("a file that is not an .npz archive")
    entries, directory = _unpack("<HI", data[at + 10:at + 16])
    zip64 = (at >= 20 and data[at - 20:at - 16] == b"PK\x06\x07") or \
        (at < 20 and size > tail)  # the locator would lie before what was read: refuse
    if zip64 or entries > MAX_ARRAYS or directory > MAX_ARRAYS * 256:
        raise _Refused(f"an archive of {entries:,} arrays (directory of {directory:,} bytes), "
                       f"more than the grader accepts ({MAX_ARRAYS:,} arrays)")
    f.seek(0)


def _count(n: int) -> str:
    """``n`` for a message: digits with separators, and a power of ten when it is one."""
    text = f"{n:,}"
    exponent = len(_str(n)) - 1
    return f"{text} (10^{exponent})" if n >= 10 ** 6 and n == 10 ** exponent else text


def _read_header(stream, stored: int, key: str) -> tuple:
    """``(offset, shape, fortran_order, dtype)`` of an array of an archive (``stored`` bytes
    once inflated), refused unless it is a float array within :data:`MAX_ELEMENTS` whose size
    matches its header; nothing past the header is read."""
    try:
        version = _read_magic(stream)
        shape, fortran, dtype = _npy_headers[version](stream)
    except (KeyError, ValueError) as exc:
        raise _Refused(f"an array {key!r} without a valid .npy header ({exc})") from None
    if dtype.name not in ARRAY_DTYPES or dtype.hasobject:
        raise _Refused(f"an array {key!r} of {dtype}, not of floats ({', '.join(ARRAY_DTYPES)})")
    if len(shape) > 8 or not all(_isinstance(n, int) and n >= 0 for n in shape):
        raise _Refused(f"an array {key!r} of shape {shape!r:.80}")
    elements = _prod(shape)
    if elements > MAX_ELEMENTS:
        raise _Refused(f"an array {key!r} of {_count(elements)} elements, more than the grader "
                       f"accepts ({MAX_ELEMENTS:,})")
    offset = stream.tell()
    if offset + elements * dtype.itemsize != stored:
        raise _Refused(f"an array {key!r} whose {stored:,} bytes do not match its header "
                       f"({_str(dtype)}, shape {shape})")
    return offset, shape, fortran, dtype


def _read_data(stream, key: str, offset: int, shape: tuple, fortran: bool, dtype) -> np.ndarray:
    """The data of an array whose header :func:`_read_header` accepted: exactly its bytes."""
    stream.seek(offset)
    elements = _prod(shape)
    nbytes = elements * dtype.itemsize
    array = _np_empty(elements, dtype=dtype)
    view = memoryview(array).cast("B")
    done = 0
    while done < nbytes:
        n = stream.readinto(view[done:done + (1 << 24)])  # 16 MiB at a time
        if not n:
            raise _Refused(f"an array {key!r} that ends before its {nbytes:,} bytes")
        done += n
    return array.reshape(shape[::-1]).T if fortran else array.reshape(shape)


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
        if os.path.islink(path) or os.path.getsize(path) > MAX_JSON_BYTES:
            return default
        with _open(path) as f:
            return _json_loads(f.read(MAX_JSON_BYTES + 1))
    except (OSError, ValueError, RecursionError):
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


#: Evaluation data read by the judge's server before it forks any judge (``preload_data``).
_PRELOADED: dict = {}


def preload_data(evaluations) -> None:
    """Read the evaluation data of ``evaluations`` now: the judge's server calls it once, so
    that each judge forked from it starts with the data instead of reading it again."""
    for evaluation in evaluations:
        if evaluation.name not in _PRELOADED:
            _PRELOADED[evaluation.name] = evaluation.data(None, None)


def judge_data(evaluation):
    """The judge's own evaluation data of ``evaluation`` (read once per process), drawn with
    the grading run's secret (``draws``): the server's preloaded data, read before any secret
    was set, serves only a judge without one."""
    data = _STATE["data"].get(evaluation.name)
    if data is None and _secret() is None:
        data = _PRELOADED.get(evaluation.name)
    if data is None:
        data = evaluation.data(None, None)
    _STATE["data"][evaluation.name] = data
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
    second, failed = {}, (meta.get("second") or {}).get(name)
    if failed and evaluation.measure_first is None:
        raise_recorded(failed)
    if evaluation.second is not None and not failed:
        second = load_arrays(_path_join(folder, f"{key}.{name}.second.npz"))
    data = judge_data(evaluation)
    try:
        if failed:  # the second stage failed: grade what the first stage decides alone
            result = {**evaluation.measure_first(first, data), "second_failure": failed}
        else:
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
