"""The fresh interpreter of a replay (see autograder.grading.replay): runs the plan, writes
verdicts.

It is the *producer* of ``autograder.checks.evidence``: before any student code runs it reads
the inputs the grader wrote next to the plan; the structural checks decide here, the
trained-model and replayable checks only record outputs, which the judge decides on.

The checks modules of every notebook of the course manifest are imported before any student
code runs, so they hold their own references to the functions they use.
"""
from __future__ import annotations

import contextlib
import importlib
import io
import json
import os
import sys

import autograder  # noqa: F401  (imported first: its modules bind their references now)
import autograder.checks.core
import autograder.checks.evidence
from autograder.manifest import check_modules

for _module in check_modules():
    importlib.import_module(_module)

_dumps = json.dumps
_open = open
_replace = os.replace
_CheckFailure = autograder.checks.core.CheckFailure
_BaseException = BaseException
_type = type
_str = str
_start_producing = autograder.checks.evidence.start_producing
_set_cell = autograder.checks.evidence.set_cell
_Placeholder = autograder.checks.evidence.Placeholder


def _write(path: str, verdicts: dict) -> None:
    tmp = path + ".tmp"
    with _open(tmp, "w") as f:
        f.write(_dumps(verdicts))
    _replace(tmp, path)


def _assigned(code: str) -> list[str]:
    """The names a cell assigns at top level."""
    import ast

    names = []
    for node in ast.parse(code).body:
        targets = node.targets if isinstance(node, ast.Assign) else \
            [node.target] if isinstance(node, ast.AnnAssign) else []
        for target in targets:
            names += [n.id for n in ast.walk(target) if isinstance(n, ast.Name)]
    return names


def main(plan_path: str, result_path: str) -> None:
    with _open(plan_path) as f:
        steps = json.load(f)
    namespace: dict = {"__name__": "__main__"}
    verdicts: dict = {}
    sink = io.StringIO()
    _start_producing(os.path.dirname(os.path.abspath(result_path)))
    for step in steps:
        if step["kind"] == "test":
            _set_cell(step["grade_id"])
        if step["kind"] == "trusted" and step.get("grade_id", "").endswith("_data"):
            # The notebook's datasets: the checks evaluate on the inputs the grader handed in,
            # so this process loads no data (and holds no label) and plots nothing.
            for name in _assigned(step["code"]):
                namespace.setdefault(name, _Placeholder(name))
            continue
        try:
            code = compile(step["code"], f"<{step['kind']} {step.get('grade_id', '')}>", "exec")
            with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
                exec(code, namespace)
        except _BaseException as exc:  # noqa: BLE001 - every failure is a verdict
            if step["kind"] == "test":
                first = _str(exc).strip()
                verdicts[step["grade_id"]] = {"passed": False,
                                              "error": f"{_type(exc).__name__}: {first}"}
        else:
            if step["kind"] == "test":
                verdicts[step["grade_id"]] = {"passed": True, "error": ""}
        if step["kind"] == "test":
            _write(result_path, verdicts)
    _write(result_path, verdicts)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
