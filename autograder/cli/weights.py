"""Train the reference models: execute the solution notebooks in training mode.

    python -m autograder weights [NOTEBOOK ...] [--force] [--course DIR]   # make weights

Weights and executed notebooks go to ``reference/`` (or ``AUTOGRADER_REFERENCE_DIR``), never to
``solutions/``: nbgrader would copy them into the release. Notebooks are named ``NAME`` or
``ASSIGNMENT/NAME`` (course manifest); without names, every notebook of the course. The course
is the current directory (``--course`` names another), as for nbgrader.
"""
from __future__ import annotations

import argparse
import contextlib
import fcntl
import os
import shutil
import time
from pathlib import Path

import nbformat

from ..grading.course import COURSE_ROOT, SOURCE, definitions
from ..manifest import NOTEBOOKS, Notebook, notebook


def reference_dir(course: Path = COURSE_ROOT) -> Path:
    """Where `make weights` keeps the reference weights and executed notebooks."""
    return Path(os.environ.get("AUTOGRADER_REFERENCE_DIR", course / "reference"))


@contextlib.contextmanager
def _locked(out: Path, nb: Notebook):
    """Held while the reference weights of ``nb`` are checked or trained: several processes (a
    parallel test run, two instructors' commands) then train each notebook once, and never read
    weights that are still being written; different notebooks train at the same time."""
    out.mkdir(parents=True, exist_ok=True)
    with open(out / f".training-{nb.assignment}-{nb.name}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def source_path(nb: Notebook, course: Path = COURSE_ROOT) -> Path:
    """The source (solution) notebook of a manifest entry."""
    return course / SOURCE / nb.assignment / f"{nb.name}.ipynb"


def execute_notebook(path: Path, *, timeout: int = 1800, env: dict | None = None,
                     save_to: Path | None = None, progress: str | None = None) -> nbformat.NotebookNode:
    """Run a notebook top to bottom in its own directory with a fresh kernel (training mode).

    With ``progress`` (a label), each cell is announced as it starts and the kernel's output
    (the training bar) is relayed live to stdout (:mod:`autograder.cli.progress`).
    Raises nbclient's CellExecutionError, naming the cell, when a cell fails.
    """
    from jupyter_client.manager import AsyncKernelManager
    from nbclient import NotebookClient

    from ..tempdirs import socket_tempdir
    from .progress import ProgressClient

    nb = nbformat.read(path, as_version=4)
    run_env = dict(os.environ if env is None else env)
    run_env.pop("NBGRADER_EXECUTION", None)  # training mode
    run_env.setdefault("MPLBACKEND", "Agg")
    # These small networks train fastest on one thread, and several times slower on two threads
    # of a CPU that other programs keep busy (docs/calibration.md); notebooks may still set more.
    run_env.setdefault("OMP_NUM_THREADS", "1")
    runtime = socket_tempdir("autograder-train-")  # the kernel's sockets
    # IPC sockets in a private folder: no TCP port, and no "running over TCP without encryption"
    km = AsyncKernelManager(kernel_name="python3", transport="ipc", ip=os.path.join(runtime, "kernel"),
                            connection_file=os.path.join(runtime, "connection.json"))
    kw = dict(km=km, timeout=timeout, kernel_name="python3",
              resources={"metadata": {"path": str(path.parent)}})
    client = ProgressClient(nb, label=progress, **kw) if progress else NotebookClient(nb, **kw)
    old = {k: os.environ.get(k) for k in run_env}
    os.environ.update(run_env)  # the kernel inherits the environment of this process
    try:
        client.execute()
    finally:
        # nbclient shuts down only a kernel it started itself: this one is ours to stop, or it
        # keeps running (and spending CPU) for as long as this process lives.
        if km.has_kernel:
            from jupyter_core.utils import run_sync

            run_sync(km.shutdown_kernel)(now=True)
        shutil.rmtree(runtime, ignore_errors=True)
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    if save_to is not None:
        nbformat.write(nb, save_to)
    return nb


def train_without_tests(nb: nbformat.NotebookNode, path: Path) -> None:
    """Write ``nb`` without its grade cells to ``path`` and run it there in training mode: only
    training matters, and a graded cell would stop a run whose model misses a bar."""
    nb = nbformat.from_dict(nb)
    nb.cells = [c for c in nb.cells if not c.metadata.get("nbgrader", {}).get("grade")]
    nbformat.write(nb, path)
    execute_notebook(path)


def resolve(names: list[str] | None) -> list[Notebook]:
    """Manifest entries for ``NAME`` or ``ASSIGNMENT/NAME`` (all notebooks for none)."""
    if not names:
        return list(NOTEBOOKS)
    found = []
    for name in names:
        assignment, _, short = name.rpartition("/")
        found.append(notebook(short, assignment or None))
    return found


def train_weights(names: list[str] | None = None, course: Path = COURSE_ROOT,
                  force: bool = False) -> dict[str, float]:
    """Execute solution notebooks in training mode; returns the seconds each took.

    Each notebook runs in a copy inside :func:`reference_dir`, so its weights land there.
    """
    out = reference_dir(course)
    took = {}
    for nb in resolve(names):
        with _locked(out, nb):
            _train_one(nb, out, course, force, took)
    return took


def _train_one(nb: Notebook, out: Path, course: Path, force: bool, took: dict) -> None:
    files = [out / w for w in (*nb.weights, *nb.extra_files)]
    if not force and all(f.exists() for f in files):
        print(f"{nb.name}: weights present ({', '.join(f.name for f in files)}); "
              f"use --force to retrain")
        return
    print(f"{nb.name}: training the reference model by executing {nb.name}.ipynb ...", flush=True)
    start = time.perf_counter()
    shutil.copy(source_path(nb, course), out / f"{nb.name}.ipynb")
    execute_notebook(out / f"{nb.name}.ipynb", save_to=out / f"{nb.name}.executed.ipynb",
                     progress=nb.name)
    took[nb.name] = time.perf_counter() - start
    print(f"{nb.name}: trained and saved in {took[nb.name]:.0f} s", flush=True)


def reference_weights(name: str, assignment: str | None = None) -> Path:
    """The reference weights directory, training notebook ``name`` first when any of its weight
    files (graded or extra) is missing."""
    nb = notebook(name, assignment)
    out = reference_dir()
    with _locked(out, nb):
        missing = not all((out / w).exists() for w in (*nb.weights, *nb.extra_files))
    if missing:
        train_weights([f"{nb.assignment}/{nb.name}"])
    return out


def untrained_models(nb: Notebook, source: Path, seed: int = 0) -> dict[str, object]:
    """Freshly initialised models of a notebook's classes, keyed by weight file name."""
    import torch

    ns = definitions(source)
    torch.manual_seed(seed)
    return {m.weights: m.build(ns, nb.n_components) for m in nb.models}


def write_untrained_weights(dest: Path, names: list[str], seed: int = 0,
                            assignment: str | None = None) -> None:
    """Save freshly initialised models of the notebooks in ``dest`` under the weight names."""
    from data_tools.utils import save_model

    for name in names:
        nb = notebook(name, assignment)
        for filename, model in untrained_models(nb, dest / f"{name}.ipynb", seed).items():
            save_model(model, dest / filename)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m autograder weights", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("notebooks", nargs="*", metavar="NOTEBOOK",
                        help="NAME or ASSIGNMENT/NAME (default: every notebook: "
                             f"{', '.join(f'{nb.assignment}/{nb.name}' for nb in NOTEBOOKS)})")
    parser.add_argument("--force", action="store_true", help="retrain even if the weights exist")
    parser.add_argument("--course", type=Path, default=Path("."), metavar="DIR",
                        help="the course directory: solutions/ is read, reference/ written there "
                             "(default: the current directory)")
    args = parser.parse_args(argv)
    try:
        resolve(args.notebooks)
    except KeyError as exc:
        parser.error(str(exc.args[0]))
    train_weights(args.notebooks or None, course=args.course.resolve(), force=args.force)
    return 0
