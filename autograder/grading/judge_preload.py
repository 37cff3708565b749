"""What the judge's server (``judged``'s forkserver) imports before it forks any judge.

Every judge needs the checks modules, scikit-learn (the linear probe) and every evaluation's
data; loaded once here, each fork starts with them instead of loading them again
(docs/performance.md). Nothing of a student's is imported or run here.
"""
from __future__ import annotations

import importlib

import autograder.checks.evidence as evidence
import autograder.grading.judge  # noqa: F401
from autograder.manifest import check_modules


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
        for module in check_modules():
            evaluations = getattr(importlib.import_module(module), "EVALUATIONS", ())
            try:
                evidence.preload_data(evaluations)
            except Exception:  # noqa: BLE001 - each judge reads (and reports) the data itself
                pass
    finally:
        torch.set_num_threads(threads)


_preload()
