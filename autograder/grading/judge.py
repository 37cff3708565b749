"""The judge of a replay: decides the test cells from recorded outputs, in a fresh process that
never imports or runs student code.

The grader (``autograder.grading.judged``) starts it as a fork of a clean server process
(``multiprocessing``'s forkserver, which imported this module and nothing of a student), with a
job file it wrote itself:

- ``checks``: the notebook's checks module; ``settings``: the literal settings of the notebook
  (the source's, then the student's, as the replay runs them);
- ``cells``: the *trusted* source of every test cell (from the source notebook);
- ``evidence``: the directory of the trained-model outputs, written by the grader after it
  checked and reordered them; ``calls``: the directory of the replayable checks' recorded calls;
- ``secret``: the secret the grader drew for this notebook (``autograder.checks.draws``): the
  judge's own evaluation data and draws are made with it, as the stages' inputs were.

Each test cell runs with ``checks`` and the settings defined and every other name (the
student's classes and functions, the notebook's datasets) bound to a
``evidence.Placeholder``. A trained-model check measures the recorded outputs; a replayable
check re-runs its body on the recorded calls. A cell that needs the student's code itself
(a structural check) touches a placeholder: it is not decided here, and keeps the verdict of
the process that ran it. The result is ``{grade_id: {"decided", "passed", "error", "output"}}``.
"""
from __future__ import annotations

import ast
import builtins
import contextlib
import importlib
import io
import json
import os
import sys

import autograder.checks.draws as draws
import autograder.checks.evidence as evidence
import autograder.checks.recorded as recorded


class _Names(dict):
    """A cell's local names: what the cell assigns, else the notebook's globals, else a
    placeholder for a name of the student's namespace."""

    def __init__(self, globals_: dict) -> None:
        super().__init__()
        self._globals = globals_

    def __missing__(self, key):
        if key in self._globals:
            return self._globals[key]
        if hasattr(builtins, key):
            return getattr(builtins, key)
        return evidence.Placeholder(key)


def _run_settings(code: str, namespace: dict) -> None:
    """The settings ``code``, statement by statement: a statement that fails (say, a setting
    whose value the judge cannot rebuild) leaves its name unbound, or bound to the source's
    value, and the other settings and every cell are still judged."""
    try:
        statements = ast.parse(code).body
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return
    for statement in statements:
        with contextlib.suppress(Exception):
            exec(compile(ast.Module([statement], []), "<settings>", "exec"), namespace)


def judge(job: dict) -> dict:
    """The verdicts of one notebook's test cells (see the module docstring), with the draws of
    the job's ``secret``."""
    with draws.using(job.get("secret")):
        return _judge(job)


def _judge(job: dict) -> dict:
    evidence.start_judging(job["evidence"])
    recorded.start_judging(job["calls"])
    namespace: dict = {"__name__": "__main__", "checks": importlib.import_module(job["checks"])}
    for code in job["settings"]:
        _run_settings(code, namespace)
    names = _Names(namespace)
    verdicts = {}
    for cell in job["cells"]:
        grade_id = cell["grade_id"]
        evidence.set_cell(grade_id)
        out = io.StringIO()
        verdict = {"decided": True, "passed": True, "error": ""}
        try:
            code = compile(cell["source"], f"<test {grade_id}>", "exec")
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
                exec(code, namespace, names)
        except evidence.NeedsProducer:
            verdict = {"decided": False, "passed": False, "error": ""}
        except BaseException as exc:  # noqa: BLE001 - every failure is a verdict
            first = str(exc).strip()
            verdict = {"decided": True, "passed": False, "error": f"{type(exc).__name__}: {first}"}
        if verdict["decided"]:
            verdict["error"] = verdict["error"] or recorded.unused(grade_id)
            verdict["passed"] = verdict["passed"] and not verdict["error"]
        verdict["output"] = out.getvalue()[-4000:]
        verdicts[grade_id] = verdict
    return verdicts


def main(job_path: str, out_path: str) -> None:
    """Read the job, judge on one thread, write the verdicts (atomically).

    One thread for torch and for the BLAS of the probe's fit: a verdict near its bar must not
    depend on how many cores the grading machine has or on how grading is laid out (one
    ``nbgrader autograde``, a pool whose workers share the cores, Dask workers elsewhere)."""
    import torch
    from threadpoolctl import threadpool_limits

    with open(job_path) as f:
        job = json.load(f)
    torch.set_num_threads(1)
    with threadpool_limits(limits=1):
        verdicts = judge(job)
    with open(out_path + ".tmp", "w") as f:
        json.dump(verdicts, f)
    os.replace(out_path + ".tmp", out_path)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
