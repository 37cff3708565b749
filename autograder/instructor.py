"""Instructor tooling: train the reference weights and run the grading demo.

    python -m autograder.instructor weights [NOTEBOOK ...]   # make weights
    python -m autograder.instructor demo                       # make demo
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nbformat

COURSE_ROOT = Path(__file__).resolve().parent.parent
ASSIGNMENT = "autoencoders"
NOTEBOOKS = ("ae", "dae", "vae")
# The weights each notebook saves next to itself.
WEIGHTS = {
    "ae": ("ae_encoder.pth", "ae_decoder.pth"),
    "dae": ("dae.pth",),
    "vae": ("vae_encoder.pth", "vae_decoder.pth"),
}


def available_notebooks(course: Path = COURSE_ROOT) -> list[str]:
    """The notebooks of the assignment that exist in solutions/, in course order."""
    src = course / "solutions" / ASSIGNMENT
    return [n for n in NOTEBOOKS if (src / f"{n}.ipynb").exists()]


def execute_notebook(path: Path, *, timeout: int = 1800, env: dict | None = None,
                     save_to: Path | None = None) -> nbformat.NotebookNode:
    """Run a notebook top to bottom in its own directory with a fresh kernel (training mode).

    Raises nbclient's CellExecutionError, naming the cell, when a cell fails.
    """
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    run_env = dict(os.environ if env is None else env)
    run_env.pop("NBGRADER_EXECUTION", None)  # training mode
    run_env.setdefault("MPLBACKEND", "Agg")
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    old = {k: os.environ.get(k) for k in run_env}
    os.environ.update(run_env)  # the kernel inherits the environment of this process
    try:
        client.execute()
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    if save_to is not None:
        nbformat.write(nb, save_to)
    return nb


def reference_dir(course: Path = COURSE_ROOT) -> Path:
    """Where `make weights` keeps the reference weights and executed notebooks.

    Not inside solutions/: nbgrader copies every non-notebook file of the source folder into
    the release and over each submission when autograding.
    """
    return Path(os.environ.get("AUTOGRADER_REFERENCE_DIR", course / "reference"))


def train_weights(names: list[str] | None = None, course: Path = COURSE_ROOT,
                  force: bool = False) -> dict[str, float]:
    """Execute solution notebooks in training mode; returns the seconds each took.

    Each notebook runs in a copy inside :func:`reference_dir`, so its weights land there.
    """
    src = course / "solutions" / ASSIGNMENT
    out = reference_dir(course)
    out.mkdir(parents=True, exist_ok=True)
    took = {}
    for name in names or available_notebooks(course):
        files = [out / w for w in WEIGHTS[name]]
        if not force and all(f.exists() for f in files):
            print(f"{name}: weights present ({', '.join(f.name for f in files)}); "
                  f"use --force to retrain")
            continue
        print(f"{name}: training the reference model by executing {name}.ipynb ...", flush=True)
        start = time.perf_counter()
        shutil.copy(src / f"{name}.ipynb", out / f"{name}.ipynb")
        execute_notebook(out / f"{name}.ipynb", save_to=out / f"{name}.executed.ipynb")
        took[name] = time.perf_counter() - start
        print(f"{name}: trained and saved in {took[name]:.0f} s", flush=True)
    return took


def nbgrader_env() -> dict:
    """The environment for nbgrader commands: the venv's scripts (alembic) on PATH."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def _nbgrader(course: Path, *args: str) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("nbgrader")
    return subprocess.run([str(exe), *args], cwd=course, capture_output=True, text=True,
                          env=nbgrader_env())


def build_course(workdir: Path, course: Path = COURSE_ROOT) -> Path:
    """A fresh copy of the course (config and solutions) in ``workdir``, release generated."""
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    shutil.copy(course / "nbgrader_config.py", workdir)
    shutil.copytree(course / "solutions", workdir / "solutions",
                    ignore=shutil.ignore_patterns("*.pth", ".ipynb_checkpoints"))
    proc = _nbgrader(workdir, "generate_assignment", ASSIGNMENT, "--force")
    if proc.returncode:
        raise RuntimeError(f"nbgrader generate_assignment failed:\n{proc.stdout}{proc.stderr}")
    return workdir


def submit(course: Path, student: str, files: dict[str, Path | bytes | str]) -> Path:
    """Place a submission: ``files`` maps a file name to a path to copy or to its content."""
    dest = course / "submitted" / student / ASSIGNMENT
    dest.mkdir(parents=True, exist_ok=True)
    for name, what in files.items():
        if isinstance(what, Path):
            shutil.copy(what, dest / name)
        elif isinstance(what, bytes):
            (dest / name).write_bytes(what)
        else:
            (dest / name).write_text(what)
    return dest


def autograde(course: Path, *students: str) -> subprocess.CompletedProcess:
    """Run the real `nbgrader autograde` on the course (all students, or those named)."""
    args = ["autograde", ASSIGNMENT, "--force"]
    for student in students:
        args += ["--student", student]
    return _nbgrader(course, *args)


def scores(course: Path) -> dict[str, dict[tuple[str, str], tuple[float, float]]]:
    """Points per student and (notebook, grade cell), from the course's gradebook."""
    from nbgrader.api import Gradebook

    result: dict[str, dict[tuple[str, str], tuple[float, float]]] = {}
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}", course_id=ASSIGNMENT) as gb:
        for sub in gb.assignment_submissions(ASSIGNMENT):
            cells = result.setdefault(sub.student_id, {})
            for nb in sub.notebooks:
                for grade in nb.grades:
                    cells[(nb.name, grade.name)] = (grade.score, grade.max_score)
    return result


DEMO_STUDENTS = {
    "reference": "the solution notebooks with their trained weights",
    "untouched": "the release notebooks as handed out, no weights",
    "untrained": "the solution code with randomly initialised weights",
}


def demo(workdir: Path) -> None:
    """Release, train, submit three demo students, autograde, print points per cell."""
    names = available_notebooks()
    train_weights(names)
    build_course(workdir)
    print(f"demo course in {workdir}")
    release = workdir / "assignments" / ASSIGNMENT
    solutions = COURSE_ROOT / "solutions" / ASSIGNMENT
    weights = reference_dir()
    for name in names:
        submit(workdir, "untouched", {f"{name}.ipynb": release / f"{name}.ipynb"})
        ref = {f"{name}.ipynb": solutions / f"{name}.ipynb"}
        ref.update({w: weights / w for w in WEIGHTS[name]})
        submit(workdir, "reference", ref)
        dest = submit(workdir, "untrained", {f"{name}.ipynb": solutions / f"{name}.ipynb"})
        write_untrained_weights(dest, [name])
    start = time.perf_counter()
    proc = autograde(workdir)
    print(f"nbgrader autograde: {len(DEMO_STUDENTS)} submissions in "
          f"{time.perf_counter() - start:.0f} s")
    if proc.returncode:
        print(proc.stdout[-3000:], proc.stderr[-3000:])
    rows = [(student, nb, cell, score, max_score)
            for student, cells in scores(workdir).items() if student in DEMO_STUDENTS
            for (nb, cell), (score, max_score) in cells.items()]
    rows.sort(key=lambda r: (list(DEMO_STUDENTS).index(r[0]), NOTEBOOKS.index(r[1])))
    _print_table(rows, DEMO_STUDENTS)


def write_untrained_weights(dest: Path, names: list[str], seed: int = 0) -> None:
    """Save freshly initialised models of the notebooks in ``dest`` under the weight names."""
    import torch

    from data_tools.utils import save_model
    for name in names:
        ns = _class_namespace(dest / f"{name}.ipynb")
        torch.manual_seed(seed)
        for f in WEIGHTS[name]:
            save_model(_model_for(ns, f), dest / f)


def _class_namespace(path: Path) -> dict:
    """Execute only the class and function definitions of a notebook's solution cells."""
    import ast

    nb = nbformat.read(path, as_version=4)
    ns: dict = {}
    exec("import torch\nimport torch.nn as nn\nimport torch.nn.functional as F", ns)
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if cell.cell_type != "code" or not meta.get("solution"):
            continue
        tree = ast.parse(cell.source)
        tree.body = [n for n in tree.body if isinstance(n, (ast.ClassDef, ast.FunctionDef,
                                                             ast.Import, ast.ImportFrom))]
        exec(compile(tree, str(path), "exec"), ns)
    return ns


def _model_for(ns: dict, filename: str):
    n_components = 10
    if filename == "dae.pth":
        return ns["DAE"](n_components)
    cls = "Encoder" if "encoder" in filename else "Decoder"
    return ns[cls](n_components)


def _print_table(rows, students) -> None:
    width = max(len(r[2]) for r in rows) if rows else 10
    print(f"\n{'student':<11} {'notebook':<8} {'grade cell':<{width}} points")
    total: dict[str, list[float]] = {}
    for student, nb, cell, score, max_score in rows:
        print(f"{student:<11} {nb:<8} {cell:<{width}} {score:g} / {max_score:g}")
        t = total.setdefault(student, [0.0, 0.0])
        t[0] += score
        t[1] += max_score
    print()
    for student, (got, out_of) in total.items():
        print(f"{student:<11} total {got:g} / {out_of:g}   ({students[student]})")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m autograder.instructor", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    w = sub.add_parser("weights", help="train the reference weights (solutions/autoencoders/*.pth)")
    w.add_argument("notebooks", nargs="*", choices=[[], *NOTEBOOKS], default=[])
    w.add_argument("--force", action="store_true", help="retrain even if the weights exist")
    d = sub.add_parser("demo", help="release, train, autograde demo submissions, print the points")
    d.add_argument("--workdir", type=Path, default=COURSE_ROOT / "demo")
    args = parser.parse_args(argv)
    if args.command == "weights":
        train_weights(args.notebooks or None, force=args.force)
    else:
        demo(args.workdir)


if __name__ == "__main__":
    main()
