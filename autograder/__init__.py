"""The course's autograder, laid out by what it does.

- ``autograder.manifest``: the course's facts (notebooks, classes, weight files, seeds, points);
- ``autograder.checks``: the check functions that test cells call, one module per notebook
  (``from autograder import ae as checks`` in a notebook is ``autograder.checks.ae``), with the
  shared building blocks (``core``, ``modules``, ``data``) and the pass bars (``thresholds``);
- ``autograder.grading``: the nbgrader pipeline (execution, replay, preprocessors, report) and
  the course harness the instructor commands and the tests share;
- ``autograder.sandbox``: the bubblewrap sandbox of student kernels and replays;
- ``autograder.cli``: ``python -m autograder weights|demo|calibrate|report``.

Submodules are imported where they are used, so that nbgrader, which reads
``nbgrader_config.py`` and so imports this package for every command, does not pay for torch.
"""
from .errors import CheckFailure, NotImplementedYet

__all__ = ["CheckFailure", "NotImplementedYet"]


def __getattr__(name: str):
    """``autograder.<notebook>`` is the checks module of that notebook (manifest)."""
    import importlib

    if name.startswith("__"):
        raise AttributeError(name)
    manifest = importlib.import_module(f"{__name__}.manifest")
    modules = {nb.name: nb.checks for nb in manifest.NOTEBOOKS}
    if name in modules:
        return importlib.import_module(modules[name])
    raise AttributeError(f"module 'autograder' has no attribute {name!r}")
