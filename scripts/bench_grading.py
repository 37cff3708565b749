"""Time `nbgrader autograde` of a class of identical submissions (docs/performance.md).

    python scripts/bench_grading.py [--students N] [--assignment NAME] [--untrained] [--config LINE]

Builds a fresh copy of the course in a temporary directory, submits the solution notebooks of
the assignment for N students with the reference weights (``reference/``, trained when missing;
``--untrained``: freshly initialised weights), grades them all with one `nbgrader autograde`,
checks that every submission got the points it should, and prints the wall time in total, per
submission and per notebook, as one JSON line. ``--config`` adds a line to the copy's
``nbgrader_config.py`` (e.g. ``"c.Sandbox.warm = False"``, to time the replay without the warm
sandbox).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> int:
    from autograder.cli.weights import reference_weights, write_untrained_weights
    from autograder.grading.course import all_scores, autograde, build_course, submit
    from autograder.manifest import notebooks

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=2)
    parser.add_argument("--assignment", default="autoencoders")
    parser.add_argument("--untrained", action="store_true")
    parser.add_argument("--config", action="append", default=[],
                        help="a line added to the course's nbgrader_config.py")
    args = parser.parse_args(argv)
    nbs = notebooks(args.assignment)
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        course = build_course(Path(tmp) / "course", (args.assignment,), config="\n".join(args.config))
        for i in range(args.students):
            files = {f"{nb.name}.ipynb": (ROOT / "solutions" / args.assignment / f"{nb.name}.ipynb")
                     for nb in nbs}
            if not args.untrained:
                for nb in nbs:
                    folder = reference_weights(nb.name, args.assignment)
                    files.update({w: folder / w for w in (*nb.weights, *nb.extra_files)})
            dest = submit(course, f"student{i:03d}", files, assignment=args.assignment)
            if args.untrained:
                write_untrained_weights(dest, [nb.name for nb in nbs], assignment=args.assignment)
        start = time.perf_counter()
        proc = autograde(course, force=True, assignment=args.assignment)
        seconds = time.perf_counter() - start
        if proc.returncode != 0:
            print(proc.output[-4000:], file=sys.stderr)
            return 1
        scores = all_scores(course, args.assignment)
        expected = sum(nb.total_points for nb in nbs)
        got = sorted(sum(s for s, _ in cells.values()) for cells in scores.values())
        if not args.untrained and got != [expected] * args.students:
            print(f"unexpected scores {got} (expected {expected} each)", file=sys.stderr)
            return 1
    print(json.dumps({"assignment": args.assignment, "students": args.students, "config": args.config,
                      "notebooks": len(nbs), "seconds": round(seconds, 1),
                      "per_submission": round(seconds / args.students, 1),
                      "per_notebook": round(seconds / (args.students * len(nbs)), 1)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
