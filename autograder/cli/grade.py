"""Grade every submission of an assignment in parallel, as ``nbgrader autograde`` would.

    python -m autograder grade ASSIGNMENT [--student ID ...] [--workers N | --scheduler ADDRESS]
                                          [--force] [--timeout SECONDS] [--retries N] [--batch N]

Each submission (for a large class, each batch of up to 10: ``--batch``) is a task graded in a
private temporary course by a worker (a process of a local pool, or a Dask worker with
``--scheduler``); this command alone writes the gradebook,
``autograded/`` and ``grading_report.json`` (``autograder.grading.batch``). A first run grades
everything; later runs grade only what is new or changed (``--force``: everything again).
Before any student, the reference solutions are graded with the reference weights (``make
weights``) and must get full marks. Ctrl-C stops after the submission being written; the next
run grades the rest. Exit status: 0 all graded, 1 some grading failed, 2 nothing graded (an
error before any student, e.g. the preflight).
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path

DEFAULT_TIMEOUT = 1800.0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m autograder grade", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("assignment", help="the assignment to grade (a folder of solutions/ and submitted/<student>/)")
    p.add_argument("--student", nargs="+", metavar="ID", default=None,
                   help="grade only these students (default: every student with a submission)")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--workers", type=int, default=os.cpu_count() or 1, metavar="N",
                       help="worker processes on this machine (default: the number of cores, %(default)s)")
    where.add_argument("--scheduler", metavar="ADDRESS",
                       help="grade on a Dask cluster (e.g. tcp://HOST:8786) instead of local processes")
    p.add_argument("--force", action="store_true", help="grade again what is already graded and unchanged")
    p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, metavar="SECONDS",
                   help="limit per submission, after which the attempt counts as failed "
                        "(default: %(default)g)")
    p.add_argument("--retries", type=int, default=2, metavar="N",
                   help="tries again after a dead worker or a timeout before the submission is "
                        "recorded as failed (default: %(default)s)")
    p.add_argument("--batch", type=int, default=None, metavar="N",
                   help="submissions graded per task, in one nbgrader autograde (default: up to 10, "
                        "fewer towards the end so that the workers finish together)")
    p.add_argument("--skip-preflight", action="store_true",
                   help="do not grade the reference solutions first (not recommended)")
    p.add_argument("--course", default=".", metavar="DIR",
                   help="the course directory (default: the current directory, as for nbgrader)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    from ..grading.batch import DaskRunner, GradeError, PoolRunner, grade

    args = parser().parse_args(argv)
    if args.workers < 1 or args.retries < 0 or args.timeout <= 0 or (args.batch is not None and args.batch < 1):
        parser().error("--workers and --batch must be at least 1, --retries at least 0 and --timeout positive")
    course = Path(args.course).resolve()
    stop = threading.Event()

    def interrupt(signum, frame):
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        print("\ninterrupted: finishing the submission being written (Ctrl-C again to stop at once; "
              "the next run grades the rest)", file=sys.stderr, flush=True)

    previous = signal.signal(signal.SIGINT, interrupt)
    runner = None
    try:
        runner = DaskRunner(args.scheduler) if args.scheduler else PoolRunner(args.workers)
        summary = grade(course, args.assignment, runner, students=args.student, force=args.force,
                        retries=args.retries, timeout=args.timeout, skip_preflight=args.skip_preflight,
                        progress=not args.no_progress, stop=stop, batch=args.batch)
    except GradeError as exc:
        print(f"python -m autograder grade: {exc}", file=sys.stderr)
        return 2
    finally:
        signal.signal(signal.SIGINT, previous)
        if runner is not None:
            runner.close()
    print(summary.text(args.assignment), flush=True)
    return 1 if summary.failed or summary.interrupted else 0
