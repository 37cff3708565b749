"""The tests that depend on users and file permissions, run from a copy in a private directory.

A new developer clones the repository wherever they like: often into a directory that other
users cannot enter (``mktemp -d`` makes one with mode 0700, and so are many home directories).
The sandbox tests run code as other uids (the kernel's, and uid 65534), so this is where a
dependence on the checkout's location would show.
"""
from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# What the sandbox tests need from the checkout.
NEEDED = ["autograder", "data_tools", "scripts", "tests", "pyproject.toml", "nbgrader_config.py"]
# Left out: the first imports the course packages inside the sandbox through the virtualenv's
# editable install, which points at this checkout, not at the copy (a clone with its own
# virtualenv passes it); the second runs without the sandbox.
NOT_IN_COPY = ["tests/test_sandbox.py::test_course_packages_are_importable",
               "tests/test_sandbox.py::test_opt_out_warns_loudly"]


@pytest.mark.slow
def test_permission_tests_pass_from_a_private_directory():
    """Do the sandbox tests pass from a copy of the repository inside a fresh 0700 directory?"""
    top = Path(tempfile.mkdtemp(prefix="private-checkout-"))
    try:
        assert stat.S_IMODE(top.stat().st_mode) == 0o700
        copy = top / "p"
        copy.mkdir()
        for name in NEEDED:
            src = REPO / name
            if src.is_dir():
                shutil.copytree(src, copy / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
            else:
                shutil.copy2(src, copy / name)
        env = {**os.environ, "PYTHONPATH": str(copy), "OMP_NUM_THREADS": "1"}
        where = subprocess.run([sys.executable, "-c", "import autograder; print(autograder.__file__)"],
                               cwd=copy, env=env, capture_output=True, text=True, timeout=60)
        assert where.stdout.strip() == str(copy / "autograder" / "__init__.py"), where.stderr
        # --basetemp puts the tests' own course directories under the private directory too.
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--basetemp={top / 'tmp'}",
             "tests/test_sandbox.py", *(a for test in NOT_IN_COPY for a in ("--deselect", test))],
            cwd=copy, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, (
            f"tests/test_sandbox.py from a copy in the 0700 directory {top} failed (exit {done.returncode}); "
            "a test that passes in a world-readable checkout and fails here hands a path inside the "
            "checkout to another uid (65534, or the sandbox's) that cannot enter its parents:\n"
            f"{done.stdout[-4000:]}")
        assert " passed" in done.stdout and " failed" not in done.stdout
    finally:
        shutil.rmtree(top, ignore_errors=True)
