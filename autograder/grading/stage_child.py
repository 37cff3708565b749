"""The second stage of the trained-model evaluations, in a fresh interpreter of its own.

``python -m autograder.grading.stage_child PLAN DIR``. The grader (``autograder.grading.judged``)
wrote to DIR ``requests.json`` (one request per evaluation and mode: the evaluation, the size
and weight files of the models) and, for each, the second stage's inputs (codes, corrupted
images) as ``<request>.in.npz``, rows in a secret order. This process reads every input
first, then runs the setup cells and the submitted definitions of PLAN (no data cell, no test
cell, no input image: nothing of the first stage reaches it), builds the models, loads the
weights, and writes each stage's outputs to ``<request>.out.npz``, or its failure message to
``<request>.error.json``. The grader puts the rows back in order.
"""
from __future__ import annotations

import contextlib
import importlib
import io
import json
import os
import sys

import numpy as np
import torch

import autograder  # noqa: F401  (imported first: its modules bind their references now)
import autograder.checks.core
import autograder.checks.evidence as _ev

_CheckFailure = autograder.checks.core.CheckFailure
_BaseException = BaseException
_save = _ev.save_arrays
_write_json = _ev.write_json
_join = os.path.join
_str = str
_type = type


def _evaluations(modules) -> dict:
    """The evaluations of the checks modules (imported now, before any student code)."""
    found = {}
    for module in sorted(set(modules)):
        for evaluation in getattr(importlib.import_module(module), "EVALUATIONS", ()):
            found[evaluation.name] = evaluation
    return found


def main(plan_path: str, folder: str) -> None:
    from autograder.checks.core import isolated_rng
    from autograder.checks.evaluation import load_models

    with open(plan_path) as f:
        steps = json.load(f)
    with open(_join(folder, "requests.json")) as f:
        requests = json.load(f)
    evaluations = _evaluations(r["module"] for r in requests)
    inputs = {r["id"]: {k: torch.from_numpy(np.array(v, dtype=np.float32))
                        for k, v in _ev.load_arrays(_join(folder, r["id"] + ".in.npz")).items()}
              for r in requests}
    namespace: dict = {"__name__": "__main__"}
    sink = io.StringIO()
    for step in steps:
        try:
            code = compile(step["code"], f"<{step['kind']} {step.get('grade_id', '')}>", "exec")
            with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
                exec(code, namespace)
        except _BaseException:  # noqa: BLE001, S110 - a broken cell fails the build below
            pass
    for request in requests:
        rid = request["id"]
        evaluation = evaluations[request["evaluation"]]
        try:
            specs = []
            for kind, path in request["specs"]:
                if kind not in evaluation.second.models:
                    continue
                cls = namespace.get(kind)
                if cls is None:
                    raise autograder.checks.core.failure(
                        f"trained {kind}: the class is not defined", f"a class {kind}",
                        "nothing", f"define {kind} in its solution cell")
                specs.append((cls, kind, path))
            with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
                models = load_models(evaluation.what, request["n_components"], *specs)
                for model in models:
                    model.train(bool(request["train_mode"]))
                kinds = {kind: model for (_, kind, _), model in zip(specs, models)}
                with torch.no_grad(), isolated_rng(evaluation.seed):
                    outputs = evaluation.second.run(kinds, inputs[rid])
            _save(_join(folder, rid + ".out.npz"), outputs)
        except _BaseException as exc:  # noqa: BLE001 - every failure is the request's verdict
            record = _ev.error_record(exc) if isinstance(exc, _CheckFailure) else {
                "type": "CheckFailure",
                "message": f"trained {evaluation.what}: raised {_type(exc).__name__}: {_str(exc).strip()[:500]}"}
            _write_json(_join(folder, rid + ".error.json"), record)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
