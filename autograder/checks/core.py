"""Building blocks shared by every check: the failure type, message formatting and
coarse-to-fine validation of what a student's code returned.

A check fails with a :class:`CheckFailure` whose message has four parts (docs/notebooks.md):
what was tried, what was expected, what came out, and a hint tied to a common mistake.
"""
from __future__ import annotations

import contextlib
import functools
import linecache
import math
import os
import sys
import traceback

import torch

from ..errors import CheckFailure, NotImplementedYet  # noqa: F401  (re-exported)
from .layout import wrap_message

_environ = os.environ
#: ``evidence.mode``, set by ``evidence`` when it is imported (an own reference: a method that
#: rebinds ``evidence.mode`` changes nothing here).
_grading_mode = None

# Own references, taken at import time, so that a notebook that later replaces
# these attributes cannot change what the checks compute.
_Tensor = torch.Tensor
_isfinite = torch.isfinite
_float64 = torch.float64
_fork_rng = torch.random.fork_rng
_manual_seed = torch.manual_seed
_get_num_threads = torch.get_num_threads
_set_num_threads = torch.set_num_threads


def failure(tried: str, expected: str | None = None, got: str | None = None,
            hint: str | None = None) -> CheckFailure:
    """Build a four-part failure message (what was tried, expected, got, hint)."""
    lines = [tried]
    if expected is not None:
        lines.append(f"  expected {expected}")
    if got is not None:
        lines.append(f"  got      {got}")
    if hint:
        lines.append(f"  hint: {hint}")
    return CheckFailure("\n".join(lines))


#: The one line a student sees of a failed check's own frame.
_RAISE_SOURCE = "raise failure from None  # the message below says what to change\n"


def _grader_decides() -> bool:
    """Whether this is the notebook's kernel while nbgrader grades it. There only the grader's
    re-run of the test cells (``autograder.grading.judged``) decides them, so a check stops at
    once instead of running a second time for nothing (``ReplayChecks`` puts the grader's
    verdict in the cell; docs/performance.md). Under ``nbgrader validate``, in a student's own
    run and in the grader's processes, the checks run."""
    if _environ.get("NBGRADER_EXECUTION") != "autograde":
        return False
    if _grading_mode is None:
        from . import evidence  # noqa: F401  (sets _grading_mode)
    return _grading_mode() is None


def _shown_by_ipython() -> bool:
    """Does an IPython shell run in this process (a notebook's kernel, as under ``nbgrader
    validate``), which shows a failure to a reader? The grader's processes and the tests have
    none: there a message keeps one line per part."""
    get_ipython = getattr(sys.modules.get("IPython"), "get_ipython", None)
    return get_ipython is not None and get_ipython() is not None


def student_facing(check):
    """Show a student only their own call when ``check`` fails.

    A :class:`CheckFailure` leaves ``check`` with its traceback cut at this wrapper, whose frame
    IPython (and pytest) leave out (``__tracebackhide__``), and is raised again from a frame
    that holds no code of the grader and is named after the check (``File <check_encoder>:1``):
    IPython always shows the frame an exception was raised in. The student sees the line of
    their cell that called the check, and the message; in a notebook's kernel it is laid out so
    that ``nbgrader validate`` cuts none of its lines (``layout.wrap_message``). Any other
    exception (a bug in the grader) keeps its full traceback.
    """
    filename = f"<{check.__name__}>"
    raiser = compile(_RAISE_SOURCE, filename, "exec")
    linecache.cache[filename] = (len(_RAISE_SOURCE), None, [_RAISE_SOURCE], filename)

    @functools.wraps(check)
    def wrapper(*args, **kwargs):
        __tracebackhide__ = True  # noqa: F841  (read by IPython and pytest)
        if _grader_decides():
            from .evidence import Deferred

            raise Deferred("decided by the grader's re-run of this cell")
        try:
            return check(*args, **kwargs)
        except CheckFailure as exc:
            caught = exc.with_traceback(None)
            if _shown_by_ipython():
                caught.args = (wrap_message(str(caught), type(caught).__name__),)
        exec(raiser, {"failure": caught})

    return wrapper


def _student_frame(exc: BaseException) -> str:
    """The innermost traceback frame that is not library code, as 'line N: code'."""
    replayed = getattr(exc, "student_frame", None)  # a call replayed by the judge
    if isinstance(replayed, str):
        return replayed
    frames = traceback.extract_tb(exc.__traceback__)
    for frame in reversed(frames):
        name = frame.filename
        if "site-packages" in name or "/autograder/" in name or name.startswith("<frozen"):
            continue
        line = (frame.line or "").strip()
        where = "your code" if name.startswith("<ipython-input") or "ipykernel" in name \
            else name
        return f" (in {where}, line {frame.lineno}: {line})" if line else ""
    return ""


def call(fn, *args, what: str, **kwargs):
    """Call student code; turn a stub or a crash into a readable CheckFailure."""
    __tracebackhide__ = True  # noqa: F841
    try:
        return fn(*args, **kwargs)
    except NotImplementedError:
        raise NotImplementedYet(
            f"{what}: not implemented yet\n"
            f"  hint: replace `raise NotImplementedError()` with your implementation"
        ) from None
    except CheckFailure:
        raise
    except Exception as exc:  # any crash in student code becomes a message, not a traceback
        msg = str(exc).strip().splitlines()
        first = msg[0] if msg else ""
        raise failure(
            f"{what}: raised {type(exc).__name__}{_student_frame(exc)}",
            got=first[:300] or type(exc).__name__,
            hint=_crash_hint(exc),
        ) from None


def _crash_hint(exc: Exception) -> str:
    text = str(exc)
    if "mat1 and mat2 shapes cannot be multiplied" in text:
        return ("a Linear layer's in_features does not match the flattened size; "
                "print the shape after each layer, e.g. (B, 16, 7, 7) flattens to 16*7*7")
    if "view size is not compatible" in text:
        return "use .reshape(...) or .flatten(1) instead of .view(...) on a non-contiguous tensor"
    if "Expected more than 1 value per channel" in text:
        return "BatchNorm needs batch_size > 1 in train mode; evaluation runs in eval() mode"
    return "run the cell that defines it on a small input and read the full traceback"


def require_tensor(value, what: str) -> torch.Tensor:
    """The value is a real torch.Tensor (not a subclass, tuple, array or look-alike)."""
    __tracebackhide__ = True  # noqa: F841
    if type(value) is not _Tensor:
        if isinstance(value, (tuple, list)):
            hint = (f"return a single tensor, not a {type(value).__name__} of "
                    f"{len(value)} items")
        elif isinstance(value, _Tensor):
            hint = "return a plain torch.Tensor (not a Parameter or Tensor subclass)"
        else:
            hint = "compute the result with torch operations and return the tensor"
        raise failure(f"{what}: wrong return type", "a torch.Tensor",
                      f"{type(value).__module__}.{type(value).__qualname__}", hint)
    return value


def require_dtype(t: torch.Tensor, dtype: torch.dtype, what: str) -> None:
    """The tensor has the given dtype."""
    __tracebackhide__ = True  # noqa: F841
    if t.dtype != dtype:
        raise failure(f"{what}: wrong dtype", str(dtype), str(t.dtype),
                      "keep the computation in float32 (no .double(), no numpy round trip)")


def require_shape(t: torch.Tensor, shape: tuple, what: str, hint: str | None = None) -> None:
    """The tensor has exactly the given shape."""
    __tracebackhide__ = True  # noqa: F841
    if tuple(t.shape) != tuple(shape):
        raise failure(f"{what}: wrong shape", f"shape {tuple(shape)}",
                      f"shape {tuple(t.shape)}", hint)


def require_finite(t: torch.Tensor, what: str, hint: str | None = None) -> None:
    """All entries are finite."""
    __tracebackhide__ = True  # noqa: F841
    finite = _isfinite(t.detach())
    if not bool(finite.all()):
        n_bad = int((~finite).sum())
        idx = tuple(int(i) for i in (~finite).nonzero()[0])
        raise failure(f"{what}: non-finite values", "finite values",
                      f"{n_bad} of {t.numel()} entries are nan/inf (first at index {idx})",
                      hint or "look for log(0), division by zero or exp of a large number")


def fmt(x: float) -> str:
    """A number for a message: 6 significant digits."""
    return f"{x:.6g}"


def worst_element(got: torch.Tensor, expected: torch.Tensor) -> str:
    """Describe the largest absolute error between two tensors of one shape."""
    err = (got.detach().to(_float64) - expected.detach().to(_float64)).abs()
    flat = int(err.reshape(-1).argmax())
    idx = tuple(int(i) for i in torch.unravel_index(torch.tensor(flat), err.shape)) \
        if err.dim() else ()
    g = float(got.detach().reshape(-1)[flat]) if got.dim() else float(got)
    e = float(expected.detach().reshape(-1)[flat]) if expected.dim() else float(expected)
    return f"worst at index {idx}: expected {fmt(e)}, got {fmt(g)} (largest error {fmt(float(err.max()))})"


def close(a: float, b: float, rtol: float, atol: float) -> bool:
    """Scalar closeness with the checks' own arithmetic (|a - b| <= atol + rtol |b|)."""
    return math.isfinite(a) and abs(a - b) <= atol + rtol * abs(b)


def f64(t: torch.Tensor) -> torch.Tensor:
    """A detached float64 copy, through the Tensor class itself (not instance attributes)."""
    return _Tensor.to(_Tensor.detach(t), _float64)


def shape_str(shape) -> str:
    """A shape for a message: ``(3, 1, 28, 28)``."""
    return str(tuple(int(s) for s in shape))


def require_callable(fn, what: str) -> None:
    """``fn`` can be called (a function or a class, not the result of calling one)."""
    if not callable(fn):
        raise failure(f"{what}: not callable", "a function",
                      f"{type(fn).__module__}.{type(fn).__qualname__}",
                      "pass the function (or class) itself, not the result of calling it")


@contextlib.contextmanager
def isolated_rng(seed: int):
    """Seed torch's global generator inside, restore the caller's random state afterwards.

    A check's verdict then does not depend on what the notebook ran before, and running it does
    not change what the notebook draws next. The checks work on small tensors, for which one
    thread is fastest; the caller's thread count is restored afterwards.
    """
    threads = _get_num_threads()
    _set_num_threads(1)
    try:
        with _fork_rng(devices=[]):
            _manual_seed(seed)
            yield
    finally:
        _set_num_threads(threads)
