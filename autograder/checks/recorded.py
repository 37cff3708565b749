"""Checks of functions (a loss, ``sample``, ``pca``) that the judge re-runs on recorded calls.

A student's function is called by its check on inputs the check draws from a seeded generator,
and the check compares every output with a float64 oracle. In the grader's producer
(``evidence.mode() == "produce"``) the decorated check runs as usual, but the student's
function is wrapped in a recorder that keeps, for every call, a digest of its inputs, its
output (type, dtype, values) and the Jacobian of the output with respect to the inputs that
require gradients. In the judge the same check body runs again, this time on a
:class:`Replayer` that returns the recorded outputs (with the recorded gradients) for the
same inputs: every oracle and every comparison is computed in the judge, where no student
code runs, so a function that patches what it will be compared with gains nothing. A
recorded call whose inputs differ from the judge's is a failure, never a pass.

In a notebook kernel (local mode) a decorated check is the plain check.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os

import numpy as np
import torch

from . import evidence
from .core import CheckFailure, NotImplementedYet

_Tensor = torch.Tensor
_float64 = torch.float64
_grad = torch.autograd.grad
_asarray = np.asarray
_dumps = json.dumps
_open = open
_join = os.path.join
_sha256 = hashlib.sha256
_isinstance = isinstance
_type = type
_str = str
_BaseException = BaseException
_mode = evidence.mode

#: Float dtypes a recorded tensor may have.
FLOAT_DTYPES = ("float16", "bfloat16", "float32", "float64")
#: Integer dtypes a recorded tensor may have (indices; their values travel as float64, exact
#: below 2**53). Any other dtype is recorded as "other".
INT_DTYPES = ("int64", "int32", "int16", "int8", "uint8")
_EXACT = 2.0 ** 53
#: The largest output whose Jacobian is kept (numel of output times numel of the inputs).
MAX_JACOBIAN = 1 << 20

_STATE: dict = {"count": 0, "entries": None, "dir": None, "used": {}}


def digest(args) -> str:
    """A digest of a call's arguments (tensors by dtype, shape and exact values)."""
    h = _sha256()
    for a in args:
        if _isinstance(a, _Tensor):
            t = _Tensor.to(_Tensor.detach(a), _float64).contiguous()
            h.update(f"T{a.dtype}{tuple(a.shape)}{bool(a.requires_grad)};".encode())
            h.update(t.numpy().tobytes())
        else:
            h.update(f"O{_type(a).__name__}:{a!r};".encode())
    return h.hexdigest()


def _array(t: torch.Tensor) -> np.ndarray:
    return _Tensor.to(_Tensor.detach(t), _float64).numpy().copy()


class _CallLog:
    """The recorded calls of one student function during one check."""

    def __init__(self) -> None:
        self.calls: list[dict] = []
        self.arrays: dict[str, np.ndarray] = {}

    def key(self) -> str:
        return f"a{len(self.arrays)}"

    def describe(self, value, args, depth: int = 0) -> dict:
        if _isinstance(value, _Tensor):
            dtype = _str(value.dtype).removeprefix("torch.")
            values = _array(value) if dtype in FLOAT_DTYPES + INT_DTYPES else None
            if values is None or (dtype in INT_DTYPES and values.size
                                  and float(np.abs(values).max()) >= _EXACT):
                return {"kind": "other", "module": "torch", "qualname": f"Tensor[{dtype}]"}
            key = self.key()
            self.arrays[key] = values
            desc = {"kind": "tensor", "dtype": dtype, "key": key,
                    "requires_grad": bool(value.requires_grad), "jac": []}
            if _type(value) is not _Tensor:
                desc["subclass"] = [_type(value).__module__, _type(value).__qualname__]
            if value.requires_grad:
                desc["jac"] = self._jacobian(value, args)
            return desc
        if _isinstance(value, (tuple, list)) and depth == 0:
            return {"kind": "sequence", "type": _type(value).__name__,
                    "items": [self.describe(v, args, 1) for v in value[:8]], "len": len(value)}
        desc = {"kind": "other", "module": _str(_type(value).__module__),
                "qualname": _str(_type(value).__qualname__)}
        if _isinstance(value, (int, float)) and not _isinstance(value, bool):
            desc["number"] = float(value)
        return desc

    def _jacobian(self, value: torch.Tensor, args) -> list:
        leaves = [(i, a) for i, a in enumerate(args) if _isinstance(a, _Tensor) and a.requires_grad]
        jac: list = [None] * len(args)
        if not leaves or value.numel() * sum(a.numel() for _, a in leaves) > MAX_JACOBIAN:
            return jac
        flat = value.reshape(-1)
        rows = {i: [] for i, _ in leaves}
        for k in range(flat.numel()):
            grads = _grad(flat[k], [a for _, a in leaves], retain_graph=True, allow_unused=True)
            for (i, _a), g in zip(leaves, grads):
                rows[i].append(None if g is None else _array(g).reshape(-1))
        for i, a in leaves:
            if all(r is None for r in rows[i]):
                continue
            key = self.key()
            self.arrays[key] = np.stack([np.zeros(a.numel()) if r is None else r for r in rows[i]])
            jac[i] = key
        return jac


def _recording(fn, log: _CallLog):
    """``fn`` that records every call in ``log`` (produce mode)."""
    @functools.wraps(fn, assigned=("__name__", "__qualname__", "__doc__"))
    def recorded(*args, **kwargs):
        entry = {"digest": digest(args)}
        log.calls.append(entry)
        try:
            value = fn(*args, **kwargs)
        except _BaseException as exc:
            from .core import _student_frame
            entry["raised"] = {"type": _type(exc).__name__, "message": _str(exc)[:2000],
                               "frame": _student_frame(exc),
                               "not_implemented": _isinstance(exc, NotImplementedError),
                               "check_failure": _isinstance(exc, CheckFailure)}
            raise
        try:
            entry["value"] = log.describe(value, args)
        except Exception as exc:  # noqa: BLE001 - an output we cannot record fails the check
            entry["value"] = {"kind": "other", "module": "unrecordable",
                              "qualname": _type(exc).__name__}
        return value
    return recorded


def _module_like(qualname: str, fn):
    """An nn.Module named ``qualname`` whose ``sample`` is ``fn`` (what ``check_sample`` takes)."""
    cls = type(str(qualname), (torch.nn.Module,), {"__module__": "__main__"})
    module = cls()
    object.__setattr__(module, "sample", fn)
    return module


def _write(entry: dict, arrays: dict) -> None:
    folder = _join(evidence.directory(), "calls")
    os.makedirs(folder, exist_ok=True)
    _STATE["count"] += 1
    name = f"e{_STATE['count']:04d}.npz"
    evidence.save_arrays(_join(folder, name), arrays)
    with _open(_join(folder, "entries.jsonl"), "a") as f:
        f.write(_dumps(dict(entry, cell=evidence.cell(), arrays=name)) + "\n")


def replayable(check_id: str, *, method: str | None = None):
    """A check of a function that the judge can re-run on recorded calls.

    The decorated body is ``body(target, **kwargs)``, ``target`` being the student's function
    (or, with ``method``, an nn.Module whose ``method`` the body calls).
    """
    def deco(body):
        @functools.wraps(body)
        def check(target, **kwargs):
            mode = _mode()
            if mode == "judge":
                return _replay(check_id, body, kwargs)
            if mode != "produce":
                return body(target, **kwargs)
            log = _CallLog()
            if method is not None and _isinstance(target, torch.nn.Module) \
                    and callable(getattr(target, method, None)):
                qualname = _type(target).__qualname__
                wrapped = _module_like(qualname, _recording(getattr(target, method), log))
            elif callable(target) and not _isinstance(target, (type, torch.nn.Module)):
                qualname, wrapped = None, _recording(target, log)
            else:
                qualname, wrapped = "", target  # not a function: the body fails as it should
            error = None
            try:
                body(wrapped, **kwargs)
            except _BaseException as exc:
                error = {"type": _type(exc).__name__, "message": _str(exc).strip()}
                raise
            finally:
                _write({"check": check_id, "qualname": qualname, "calls": log.calls,
                        "producer_error": error}, log.arrays)
        check.check_id = check_id
        return check
    return deco


def record_failure(check_id: str, exc: BaseException) -> None:
    """Produce mode: ``check_id`` failed before it could call the student's function (say, the
    class it samples from cannot be built); the judge raises the same failure."""
    if _mode() == "produce":
        _write({"check": check_id, "qualname": "", "calls": [],
                "producer_error": {"type": _type(exc).__name__, "message": _str(exc).strip()}}, {})


# -- judge mode ------------------------------------------------------------------------------

def start_judging(directory: str) -> None:
    """Judge mode: the recorded calls are in ``directory`` (written by the producer)."""
    _STATE.update(dir=directory, entries=None, used={})


def _entries() -> list[dict]:
    if _STATE["entries"] is None:
        entries = []
        path = _join(_STATE["dir"], "entries.jsonl")
        text = ""
        if os.path.isfile(path) and not os.path.islink(path) \
                and os.path.getsize(path) <= evidence.MAX_JSON_BYTES:
            with _open(path) as f:
                text = f.read()
        for line in text.splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                entry = None
            entries.append(entry if _isinstance(entry, dict) else {})
        _STATE["entries"] = entries
    return _STATE["entries"]


def _replay(check_id: str, body, kwargs: dict) -> None:
    """Run ``body`` on the next recorded calls of the current cell."""
    grade_id = evidence.cell()
    mine = [e for e in _entries() if e.get("cell") == grade_id]
    used = _STATE["used"].get(grade_id, 0)
    _STATE["used"][grade_id] = used + 1
    if used >= len(mine):
        raise evidence.evidence_failure("the calls of this check were not recorded (the re-run "
                                        "of the tests stopped before it)")
    entry = mine[used]
    if entry.get("check") != check_id:
        raise evidence.evidence_failure(f"expected the recorded calls of {check_id}")
    name = entry.get("arrays")
    if not _isinstance(name, str) or os.path.basename(name) != name:
        raise evidence.evidence_failure("the recorded outputs are missing")
    arrays = evidence.load_arrays(_join(_STATE["dir"], name))
    calls = entry.get("calls")
    if not _isinstance(calls, list):
        raise evidence.evidence_failure("the recorded calls are missing")
    qualname = entry.get("qualname")
    if qualname == "":  # not a function: the check failed before any call
        error = entry.get("producer_error")
        if not _isinstance(error, dict):
            raise evidence.evidence_failure("the check was given no function to call")
        message = _str(error.get("message", ""))
        raise NotImplementedYet(message) if error.get("type") == "NotImplementedYet" \
            else CheckFailure(message)
    replayer = Replayer(calls, arrays)
    target = _module_like(str(qualname), replayer) if qualname else replayer
    body(target, **kwargs)
    if not replayer.finished():
        raise evidence.evidence_failure("more calls were recorded than the tests make")


def unused(grade_id: str) -> str:
    """An error when the producer recorded more checks for a cell than the judge ran."""
    recorded_checks = sum(1 for e in _entries() if e.get("cell") == grade_id) \
        if _STATE["dir"] else 0
    if recorded_checks > _STATE["used"].get(grade_id, 0):
        return ("CheckFailure: grading: more checks were recorded for this cell than its tests "
                "make")
    return ""


class Replayer:
    """Stands in for a student function: returns the recorded outputs, call by call, after
    checking that each call has the recorded inputs."""

    def __init__(self, calls: list, arrays) -> None:
        self.calls = calls
        self.arrays = arrays
        self.index = 0

    def __call__(self, *args, **kwargs):
        if self.index >= len(self.calls):
            raise evidence.evidence_failure("the recorded outputs end before the tests do")
        call = self.calls[self.index]
        self.index += 1
        if not _isinstance(call, dict) or call.get("digest") != digest(args):
            raise evidence.evidence_failure("a recorded output does not belong to the grader's "
                                            "inputs")
        raised = call.get("raised")
        if _isinstance(raised, dict):
            _raise_recorded(raised)
        return self._value(call.get("value"), args, 0)

    def _value(self, desc, args, depth):
        if not _isinstance(desc, dict):
            raise evidence.evidence_failure("a recorded output is malformed")
        kind = desc.get("kind")
        if kind == "tensor":
            return self._tensor(desc, args)
        if kind == "sequence" and depth == 0:
            items = [self._value(d, args, 1) for d in desc.get("items", [])]
            n = int(desc.get("len", len(items)))
            items += [None] * max(0, min(n, 64) - len(items))
            return list(items) if desc.get("type") == "list" else tuple(items)
        if kind == "other":
            cls = type(str(desc.get("qualname", "object")).rsplit(".", 1)[-1], (), {
                "__module__": str(desc.get("module", "builtins")),
                "__qualname__": str(desc.get("qualname", "object"))})
            return cls()
        raise evidence.evidence_failure("a recorded output is malformed")

    def _tensor(self, desc, args):
        dtype = desc.get("dtype")
        if dtype not in FLOAT_DTYPES + INT_DTYPES:
            raise evidence.evidence_failure("a recorded output has an unknown dtype")
        values = evidence.checked(self.arrays, desc.get("key")) if np.ndim(
            self.arrays.get(desc.get("key"), 0)) else self._scalar(desc.get("key"))
        if dtype in INT_DTYPES:
            if not (np.isfinite(values).all() and (values == np.round(values)).all()
                    and (np.abs(values) < _EXACT).all()) or desc.get("requires_grad"):
                raise evidence.evidence_failure("a recorded integer output is malformed")
            return torch.tensor(values.astype(np.int64), dtype=getattr(torch, dtype))
        value = torch.tensor(values, dtype=getattr(torch, dtype))
        if desc.get("requires_grad"):
            terms = []
            for i, key in enumerate((desc.get("jac") or [])[: len(args)]):
                a = args[i]
                if key is None or not (_isinstance(a, _Tensor) and a.requires_grad):
                    continue
                m = evidence.checked(self.arrays, key, value.numel())
                if m.shape != (value.numel(), a.numel()):
                    raise evidence.evidence_failure("a recorded gradient has the wrong shape")
                j = torch.tensor(m, dtype=value.dtype)
                terms.append((j @ (a - a.detach()).reshape(-1).to(value.dtype)).reshape(value.shape))
            value = value + sum(terms) if terms else value.requires_grad_(True)
        sub = desc.get("subclass")
        if _isinstance(sub, list) and len(sub) == 2:
            cls = type(str(sub[1]).rsplit(".", 1)[-1], (_Tensor,), {
                "__module__": str(sub[0]), "__qualname__": str(sub[1])})
            value = _Tensor._make_subclass(cls, value.detach(), bool(desc.get("requires_grad")))
        return value

    def _scalar(self, key):
        a = self.arrays.get(key)
        if not _isinstance(a, np.ndarray) or a.dtype.kind != "f":
            raise evidence.evidence_failure(f"the output {key!r} is missing")
        return a

    def finished(self) -> bool:
        return self.index == len(self.calls)


def _raise_recorded(raised: dict):
    message = str(raised.get("message", ""))
    if raised.get("not_implemented"):
        raise NotImplementedError(message)
    if raised.get("check_failure"):
        raise CheckFailure(message)
    name = str(raised.get("type", "Exception"))
    if not name.isidentifier():
        name = "Exception"
    exc = type(name, (Exception,), {})(message)
    exc.student_frame = str(raised.get("frame", ""))
    raise exc


__all__ = ["Replayer", "digest", "record_failure", "replayable", "start_judging", "unused"]
