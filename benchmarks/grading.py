"""Grading throughput: stock nbgrader against ours, sequential, on a process pool and on Dask.

    python benchmarks/grading.py [--students N] [--workers W] [--assignment NAME]
                                 [--modes stock,sequential,pool,cluster] [--batch K]

Builds one course in a temporary directory with N students who cycle through the reference
(the solution notebooks with the reference weights of ``make weights``), the solutions with
untrained weights, and the untouched release, then grades a copy of it per mode and prints one
table (seconds in all, seconds per submission, students per hour, ratio to our sequential run):

- ``stock``: plain ``nbgrader autograde`` with none of this course's grading pipeline (no
  sandbox, no re-run, no judge); its kernels run the checks as a student's own run does. The
  anchor: what nbgrader costs without the isolation.
- ``sequential``: ``nbgrader autograde`` with the course's configuration (``nbgrader_config.py``).
- ``pool``: ``python -m autograder grade --workers W`` (``--batch K`` when given; otherwise the
  command picks the batch size).
- ``cluster``: the same command on a Dask ``LocalCluster`` of W worker processes
  (``--scheduler``).

Our three modes must give the same scores (the run fails otherwise). docs/performance.md has
the measured table.
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

#: The stock anchor's configuration: nbgrader's defaults, and kernels that run the checks as
#: under ``nbgrader validate`` (our checks leave every verdict to the grader's re-run when they
#: see NBGRADER_EXECUTION=autograde, and stock nbgrader has no re-run).
STOCK_CONFIG = '''
import os
from jupyter_client.manager import KernelManager


class ChecksRunKernelManager(KernelManager):
    async def _async_pre_start_kernel(self, **kw):
        cmd, kw = await super()._async_pre_start_kernel(**kw)
        kw["env"] = {**kw.get("env", os.environ), "NBGRADER_EXECUTION": "validate"}
        return cmd, kw


c = get_config()  # noqa: F821
c.CourseDirectory.course_id = "autoencoders"
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "assignments"
c.Execute.timeout = 300
c.Execute.kernel_manager_class = ChecksRunKernelManager
'''


def build(tmp: Path, assignment: str, students: int) -> Path:
    from autograder.cli.weights import reference_weights, write_untrained_weights
    from autograder.grading.course import build_course, submit
    from autograder.manifest import notebooks

    nbs = notebooks(assignment)
    course = build_course(tmp / "course", (assignment,))
    for i in range(students):
        kind = ("reference", "untrained", "untouched")[i % 3]
        source = ROOT / "solutions" if kind != "untouched" else course / "assignments"
        files: dict = {f"{nb.name}.ipynb": source / assignment / f"{nb.name}.ipynb" for nb in nbs}
        if kind == "reference":
            for nb in nbs:
                folder = reference_weights(nb.name, assignment)
                files.update({w: folder / w for w in (*nb.weights, *nb.extra_files)})
        dest = submit(course, f"{kind}{i:03d}", files, assignment=assignment)
        if kind == "untrained":
            write_untrained_weights(dest, [nb.name for nb in nbs], assignment=assignment)
    return course


def run_mode(mode: str, course: Path, assignment: str, workers: int, batch: int | None = None) -> float:
    from autograder.grading.course import autograde, nbgrader_env

    if mode == "stock":
        (course / "nbgrader_config.py").write_text(STOCK_CONFIG)
    start = time.perf_counter()
    if mode in ("stock", "sequential"):
        proc = autograde(course, force=True, assignment=assignment, wall_timeout=7200)
        ok, output = proc.returncode == 0, proc.output
    else:
        cmd = [sys.executable, "-m", "autograder", "grade", assignment, "--course", str(course),
               "--skip-preflight", "--no-progress", "--force"]
        if batch:
            cmd += ["--batch", str(batch)]
        cluster = None
        if mode == "cluster":
            from distributed import LocalCluster

            cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                   host="127.0.0.1", dashboard_address=None)
            cmd += ["--scheduler", cluster.scheduler_address]
        else:
            cmd += ["--workers", str(workers)]
        try:
            proc = subprocess.run(cmd, cwd=course, env=nbgrader_env(), capture_output=True,
                                  text=True, timeout=7200)
        finally:
            if cluster is not None:
                cluster.close()
        ok, output = proc.returncode in (0, 1), proc.stdout + proc.stderr
    seconds = time.perf_counter() - start
    if not ok:
        raise SystemExit(f"{mode}: grading failed:\n{output[-4000:]}")
    return seconds


def main(argv: list[str] | None = None) -> int:
    from autograder.grading.course import all_scores

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=6)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--assignment", default="autoencoders")
    parser.add_argument("--modes", default="stock,sequential,pool,cluster")
    parser.add_argument("--batch", type=int, default=None, help="submissions per task of pool and cluster")
    args = parser.parse_args(argv)
    modes = args.modes.split(",")
    rows, scores = [], {}
    with tempfile.TemporaryDirectory(prefix="bench-grading-") as tmp:
        base = build(Path(tmp), args.assignment, args.students)
        for mode in modes:
            course = Path(tmp) / mode
            shutil.copytree(base, course, symlinks=True)
            seconds = run_mode(mode, course, args.assignment, args.workers, args.batch)
            scores[mode] = {s: sum(p for p, _ in cells.values())
                            for s, cells in all_scores(course, args.assignment).items()}
            rows.append((mode, seconds))
            print(f"{mode}: {seconds:.1f} s, points {dict(sorted(scores[mode].items()))}", flush=True)
    ours = [m for m in modes if m != "stock"]
    if any(scores[m] != scores[ours[0]] for m in ours):
        print("our modes disagree on the scores", file=sys.stderr)
        return 1
    sequential = dict(rows).get("sequential")
    print(f"\n{args.students} submissions of {args.assignment}, {args.workers} workers")
    print("| mode | seconds | per submission | students per hour | vs sequential |")
    print("| --- | --- | --- | --- | --- |")
    for mode, seconds in rows:
        ratio = f"{sequential / seconds:.2f}x" if sequential else ""
        print(f"| {mode} | {seconds:.1f} | {seconds / args.students:.1f} | "
              f"{3600 * args.students / seconds:.0f} | {ratio} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
