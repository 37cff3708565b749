"""A job that runs a Python source string: ``main(code, *args)`` executes ``code`` with
``sys.argv`` set to ``args``. Used by the sandbox's own tests to run arbitrary code in a warm
sandbox (``autograder.sandbox.warm``), as a student's code would run there."""
from __future__ import annotations

import sys


def main(code: str, *args: str) -> None:
    sys.argv = ["run_code", *args]
    exec(compile(code, "<job>", "exec"), {"__name__": "__main__"})  # noqa: S102
