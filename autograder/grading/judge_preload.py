"""What the judge's server (``judged``'s forkserver) imports before it forks any judge.

Every judge needs the checks modules, scikit-learn (the linear probe), every evaluation's
data and what a checks module's ``prepare_judge(data)`` makes of it (the latent notebook's digit
classifier); loaded once here, each fork starts with them instead of loading them again
(docs/performance.md). Nothing of a student's is imported or run here.
"""
from __future__ import annotations

import gc
import importlib
import os

import autograder.checks.evidence as evidence
import autograder.grading.judge  # noqa: F401
from autograder.manifest import check_modules

#: The checks modules whose judges the server prepares (comma-separated; default: every one).
#: ``judged`` sets it to the modules of the assignment being graded.
MODULES_VARIABLE = "AUTOGRADER_JUDGE_MODULES"


def _preload() -> None:
    """Import and read, in this process, what every judge needs."""
    import sklearn.linear_model  # noqa: F401
    import sklearn.pipeline  # noqa: F401
    import sklearn.preprocessing  # noqa: F401
    import torch

    # On one thread: a pool of OpenMP threads started here would deadlock the forked judges.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        wanted = [m for m in os.environ.get(MODULES_VARIABLE, "").split(",") if m]
        for module in [m for m in check_modules() if m in wanted] if wanted else check_modules():
            checks = importlib.import_module(module)
            evaluations = getattr(checks, "EVALUATIONS", ())
            try:
                evidence.preload_data(evaluations)
                prepare = getattr(checks, "prepare_judge", None)  # e.g. a classifier to fit
                for evaluation in evaluations if prepare else ():
                    prepare(evidence.judge_data(evaluation))
            except Exception:  # noqa: BLE001 - each judge reads (and reports) the data itself
                pass
    finally:
        torch.set_num_threads(threads)


_preload()
# What was loaded here stays: the forked judges' garbage collections never walk (nor, by
# touching it, copy) it.
gc.freeze()
