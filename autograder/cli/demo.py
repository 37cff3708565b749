"""The grading demo: release, train the reference models, autograde three demo students in a
copy of the course, and print their points per test cell.

    python -m autograder demo [--workdir DIR] [--assignment NAME ...] [--course DIR]   # make demo

The course whose solutions and reference weights it uses is the current directory (``--course``
names another), as for nbgrader; the demo course is built apart from it, in ``COURSE/demo``.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from ..grading.course import (
    COURSE_ROOT,
    RELEASE,
    AutogradeRun,
    all_scores,
    autograde_command,
    build_course,
    nbgrader_env,
    submit,
)
from ..manifest import assignments, notebooks
from .weights import reference_dir, source_path, train_weights, write_untrained_weights

DEMO_STUDENTS = {
    "reference": "the solution notebooks with their trained weights",
    "untouched": "the release notebooks as handed out, no weights",
    "untrained": "the solution code with randomly initialised weights",
}


def demo(workdir: Path, names: tuple[str, ...] | None = None, course: Path = COURSE_ROOT) -> None:
    """Release, train, submit three demo students, autograde, print points per cell."""
    names = names or assignments()
    train_weights([f"{nb.assignment}/{nb.name}" for a in names for nb in notebooks(a)], course=course)
    build_course(workdir, names, course=course)
    print(f"demo course in {workdir}")
    weights = reference_dir(course)
    for assignment in names:
        release = workdir / RELEASE / assignment
        for nb in notebooks(assignment):
            solution = source_path(nb, course)
            submit(workdir, "untouched", {f"{nb.name}.ipynb": release / f"{nb.name}.ipynb"}, assignment)
            submit(workdir, "reference", {f"{nb.name}.ipynb": solution,
                                          **{w: weights / w for w in nb.weights}}, assignment)
            dest = submit(workdir, "untrained", {f"{nb.name}.ipynb": solution}, assignment)
            write_untrained_weights(dest, [nb.name], assignment=assignment)
        print(f"nbgrader autograde {assignment}: grading {len(DEMO_STUDENTS)} submissions ...", flush=True)
        start = time.perf_counter()
        run = autograde_with_progress(workdir, assignment)
        took = time.perf_counter() - start
        print(f"nbgrader autograde {assignment}: {len(DEMO_STUDENTS)} submissions in {took:.0f} s "
              f"({took / len(DEMO_STUDENTS):.0f} s per submission)")
        if run.returncode:
            print(run.output[-6000:])
        order = [nb.name for nb in notebooks(assignment)]
        rows = [(student, nb, cell, score, max_score)
                for student, cells in all_scores(workdir, assignment).items() if student in DEMO_STUDENTS
                for (nb, cell), (score, max_score) in cells.items()]
        rows.sort(key=lambda r: (list(DEMO_STUDENTS).index(r[0]), order.index(r[1])))
        _print_table(rows, DEMO_STUDENTS)
    print(next_steps(workdir, names))


def autograde_with_progress(workdir: Path, assignment: str) -> AutogradeRun:
    """``nbgrader autograde --force`` on every demo student, printing each notebook as it starts."""
    start = time.monotonic()
    lines = []
    with subprocess.Popen(autograde_command(workdir, force=True, assignment=assignment), cwd=workdir,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          env=nbgrader_env()) as proc:
        for line in proc.stdout:
            lines.append(line)
            if "] Autograding " in line:
                where = Path(line.split("] Autograding ", 1)[1].strip())
                print(f"  {where.parent.parent.name}: {where.name}", flush=True)
    return AutogradeRun(proc.returncode, "".join(lines), time.monotonic() - start)


def next_steps(workdir: Path, names: tuple[str, ...]) -> str:
    """What to do with the demo course: where it is, and the commands that continue from there."""
    bin_dir = Path(sys.executable).parent
    try:
        shown = os.path.relpath(workdir)
    except ValueError:
        shown = str(workdir)
    example = names[0]
    return "\n".join([
        "",
        f"The demo course is a separate nbgrader course in {workdir}",
        "(its own gradebook.db, submitted/, autograded/); the repository root is left as it was.",
        "Continue there:",
        "",
        f"  cd {shown}",
        f"  export PATH={bin_dir}:$PATH",
        f"  nbgrader generate_feedback {example}    # HTML per student in feedback/<student>/{example}/",
        "  nbgrader export                             # grades.csv, one row per student and assignment",
        "  jupyter lab                                 # Nbgrader > Formgrader: scores, manual grading",
        "  python -m autograder failures               # notebooks whose grading failed",
        "",
    ])


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m autograder demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--course", type=Path, default=Path("."), metavar="DIR",
                        help="the course whose solutions and reference weights are used "
                             "(default: the current directory)")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="where the demo course is built (default: COURSE/demo)")
    parser.add_argument("--assignment", action="append", choices=assignments(),
                        help="grade only this assignment (repeatable; default: all)")
    args = parser.parse_args(argv)
    course = args.course.resolve()
    demo((args.workdir or course / "demo").resolve(), tuple(args.assignment) if args.assignment else None,
         course)
    return 0
