"""``python -m autograder <verb> [options]``: the instructor command line (autograder.cli)."""
from __future__ import annotations

import importlib
import sys

VERBS = {
    "grade": ("autograder.cli.grade", "grade every submission of an assignment in parallel (pool or Dask)"),
    "weights": ("autograder.cli.weights", "train the reference models into reference/"),
    "demo": ("autograder.cli.demo", "release, train, autograde three demo students, print points"),
    "calibrate": ("autograder.cli.calibrate", "train the reference over seeds to set the pass bars"),
    "failures": ("autograder.grading.report", "list the notebooks whose grading failed or was interrupted"),
    "report": ("autograder.cli.classreport", "an HTML page and a CSV on how a class did in an assignment"),
    "kit": ("autograder.cli.kit", "a zip per assignment to hand out (notebooks, wheel, README), a hub image recipe"),
}

USAGE = "usage: python -m autograder {" + ",".join(VERBS) + "} [--help | options]\n\n" + "\n".join(
    f"  {verb:<10} {help_}" for verb, (_, help_) in VERBS.items())


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    verb, rest = argv[0], argv[1:]
    if verb not in VERBS:
        print(f"python -m autograder: unknown command {verb!r}\n\n{USAGE}", file=sys.stderr)
        return 2
    result = importlib.import_module(VERBS[verb][0]).main(rest)
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
