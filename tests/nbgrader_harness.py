"""Test helpers: the course harness of ``autograder.grading.course`` (the same one the
instructor commands use), and checks around the sandbox."""
from __future__ import annotations

import os
import socket
import time
from pathlib import Path

from autograder.grading.course import (  # noqa: F401
    AutogradeRun,
    add_cell,
    all_scores,
    assignment_of,
    autograde,
    autograde_command,
    build_course,
    cell_source,
    definitions,
    fill,
    flagged,
    grade_cell,
    grade_cell_errors,
    graded,
    make_course,
    markdown,
    nbgrader,
    nbgrader_env,
    notebook,
    outputs,
    release,
    report,
    scores,
    solution_cell,
    submit,
)

# -- checks around the sandbox -------------------------------------------------------------

#: Code that defines ``attempt(fn)``: "ok", or the name of the exception ``fn`` raised (the
#: start of a probe of what code in the sandbox may do; the probe prints JSON).
PROBE = """import json, os
def attempt(fn):
    try:
        fn()
        return "ok"
    except Exception as e:
        return type(e).__name__
"""


def sandbox_processes(under: Path, wait: float = 10) -> list[str]:
    """Command lines of processes whose working directory is inside `under` (e.g. a course),
    after waiting up to `wait` seconds for them to end. Needs root to see other users' processes."""
    under = os.path.realpath(under)
    deadline = time.monotonic() + wait
    while True:
        found = []
        for entry in Path("/proc").iterdir():
            try:
                if entry.name.isdigit() and os.path.realpath(entry / "cwd").startswith(under + "/"):
                    found.append((entry / "cmdline").read_bytes().replace(b"\0", b" ").decode())
            except OSError:
                continue
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def host_address() -> str:
    """This machine's address on its default route (no packet is sent), else its hostname's."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))
            return s.getsockname()[0]
        except OSError:
            return socket.gethostbyname(socket.gethostname())
