"""The course's autograder, laid out by what it does.

- ``autograder.manifest``: the course's facts (notebooks, classes, weight files, seeds, points);
- ``autograder.checks``: the check functions that test cells call, one module per notebook
  (``from autograder import ae as checks`` in a notebook shows the names of
  ``autograder.checks.ae`` that the notebook uses, its ``api`` in the manifest), with the
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


_FACADES: dict = {}


def __getattr__(name: str):
    """``autograder.<notebook>`` is what a notebook sees of its checks module (manifest): a
    module holding only the names of the notebook's ``api``, so that no definition reaches
    the grader's oracles or references through ``checks``. The grader's own processes import
    ``autograder.checks.<notebook>`` itself."""
    import importlib
    import types

    if name.startswith("__"):
        raise AttributeError(name)
    if name in _FACADES:
        return _FACADES[name]
    manifest = importlib.import_module(f"{__name__}.manifest")
    found = {nb.name: nb for nb in manifest.NOTEBOOKS}
    if name not in found:
        raise AttributeError(f"module 'autograder' has no attribute {name!r}")
    module = importlib.import_module(found[name].checks)
    facade = types.ModuleType(f"{__name__}.{name}", module.__doc__)
    for attr in found[name].api:
        setattr(facade, attr, getattr(module, attr))
    facade.__all__ = list(found[name].api)
    _FACADES[name] = facade
    return facade
