"""Is assignments/ exactly what nbgrader generates from solutions/, with no solution or
hidden-test text in it?"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from autograder.grading.course import nbgrader_env
from autograder.manifest import assignments, notebooks

ROOT = Path(__file__).resolve().parent.parent
#: The notebooks every assignment must hold (pinned, so that a vanished notebook fails).
EXPECTED = {
    "autoencoders": ["ae.ipynb", "dae.ipynb", "vae.ipynb"],
    "bestiary": ["latent.ipynb", "linear.ipynb", "transfer.ipynb"],  # sorted
}
NOTEBOOKS = [(a, name) for a in sorted(EXPECTED) for name in EXPECTED[a]]
MARKERS = ("### BEGIN SOLUTION", "### END SOLUTION", "### BEGIN HIDDEN TESTS",
           "### END HIDDEN TESTS")


def _regions(source: str, begin: str, end: str) -> list[str]:
    return re.findall(re.escape(begin) + r"\n(.*?)" + re.escape(end), source, re.S)


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory) -> Path:
    course = tmp_path_factory.mktemp("course")
    shutil.copy(ROOT / "nbgrader_config.py", course)
    shutil.copytree(ROOT / "solutions", course / "solutions",
                    ignore=shutil.ignore_patterns("*.pth", ".ipynb_checkpoints"))
    for assignment in sorted(EXPECTED):
        proc = subprocess.run([str(Path(sys.executable).with_name("nbgrader")), "generate_assignment",
                               assignment, "--force", "--no-db"], cwd=course,
                              capture_output=True, text=True, env=nbgrader_env())
        assert proc.returncode == 0, proc.stdout + proc.stderr
    return course / "assignments"


@pytest.mark.parametrize("assignment", sorted(EXPECTED))
def test_there_are_notebooks(assignment):
    """Does each assignment hold exactly the source and release notebooks it should, those of
    the course manifest?"""
    expected = EXPECTED[assignment]
    assert sorted(p.name for p in (ROOT / "solutions" / assignment).glob("*.ipynb")) == expected
    assert sorted(p.name for p in (ROOT / "assignments" / assignment).glob("*.ipynb")) == expected
    assert sorted(f"{nb.name}.ipynb" for nb in notebooks(assignment)) == expected


def test_every_assignment_is_pinned():
    """Is every assignment of the course manifest in the pinned list?"""
    assert sorted(assignments()) == sorted(EXPECTED)


@pytest.mark.slow
@pytest.mark.parametrize("assignment, name", NOTEBOOKS)
def test_release_is_regenerated(assignment, name, regenerated):
    """Is the committed release identical to a fresh `nbgrader generate_assignment`?"""
    fresh = json.loads((regenerated / assignment / name).read_text())
    committed_path = ROOT / "assignments" / assignment / name
    assert committed_path.exists(), f"{committed_path} is missing: run `make release`"
    committed = json.loads(committed_path.read_text())
    assert committed == fresh, (f"{assignment}/{name}: assignments/ differs from what solutions/ "
                                f"generates; edit solutions/ only and run `make release`")


@pytest.mark.parametrize("assignment, name", NOTEBOOKS)
def test_no_solution_or_hidden_text_leaks(assignment, name):
    """Does no line of a solution or hidden-test region appear in the release?"""
    source = nbformat.read(ROOT / "solutions" / assignment / name, as_version=4)
    release_text = "\n".join(c.source for c in nbformat.read(ROOT / "assignments" / assignment / name,
                                                             as_version=4).cells)
    for marker in MARKERS:
        assert marker not in release_text, f"{name}: marker {marker!r} in the release"
    secret_lines, public_text = set(), []
    for cell in source.cells:
        public = cell.source
        for begin, end in (MARKERS[:2], MARKERS[2:]):
            for region in _regions(cell.source, begin, end):
                secret_lines.update(line.strip() for line in region.splitlines()
                                    if len(line.strip()) > 12 and not line.strip().startswith("#"))
                public = public.replace(region, "")
        public_text.append(public)
    # A line that the source also shows outside any region (e.g. in an evaluation cell)
    # is not a secret.
    public_lines = {line.strip() for line in "\n".join(public_text).splitlines()}
    secret_lines -= public_lines
    assert secret_lines, f"{name}: no solution regions found (the check could not fail)"
    leaked = sorted(line for line in secret_lines if line in release_text)
    assert not leaked, f"{name}: solution/hidden text in the release: {leaked[:5]}"


@pytest.mark.parametrize("assignment, name", NOTEBOOKS)
def test_markers_are_balanced(assignment, name):
    """Is every BEGIN marker of the source closed by its END marker in the same cell?"""
    for i, cell in enumerate(nbformat.read(ROOT / "solutions" / assignment / name, as_version=4).cells):
        lines = [line.strip() for line in cell.source.splitlines()]
        for begin, end in (MARKERS[:2], MARKERS[2:]):
            depth = 0
            for line in lines:
                depth += (line == begin) - (line == end)
                assert depth in (0, 1), f"{name} cell {i}: nested or unmatched {begin!r}"
            assert depth == 0, f"{name} cell {i}: {begin!r} without {end!r}"
