"""Does `python -m autograder kit` hand students what they need and nothing of the instructor's,
and does a kit install and run in a clean venv outside the repository, without the editable
install?"""
from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import nbformat
import pytest

from autograder.cli import kit
from autograder.manifest import assignments, notebooks

ROOT = Path(__file__).resolve().parent.parent
MARKERS = ("### BEGIN SOLUTION", "### END SOLUTION", "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS")
#: The notebook the clean-venv test trains: the quickest to train of the course.
TRAINED = ("autoencoders", "ae")
#: Its epochs there: 3 instead of the notebook's 15 on the embedded data (the same as its
#: full-MNIST setting). Measured: probe 0.867 and MSE 0.0224 against the bars 0.75 and 0.035.
TRAINED_EPOCHS = 3


@pytest.fixture(scope="module")
def kits(tmp_path_factory) -> Path:
    """Every kit and the hub recipe, built by the command an instructor runs in the course."""
    out = tmp_path_factory.mktemp("kits")
    proc = subprocess.run([sys.executable, "-m", "autograder", "kit", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out


def _wheel(kits: Path) -> Path:
    (wheel,) = kits.glob("*.whl")
    return wheel


def _files(zip_path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(zip_path) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


def _secret_lines(assignment: str, name: str) -> set[str]:
    """Lines of the solution and hidden-test regions of a source notebook that appear nowhere
    else in it (long enough to be telling)."""
    secret, public = set(), set()
    for cell in nbformat.read(ROOT / "solutions" / assignment / f"{name}.ipynb", as_version=4).cells:
        text = cell.source
        for begin, end in (MARKERS[:2], MARKERS[2:]):
            for region in re.findall(re.escape(begin) + r"\n(.*?)" + re.escape(end), cell.source, re.S):
                secret.update(line.strip() for line in region.splitlines()
                              if len(line.strip()) > 12 and not line.strip().startswith("#"))
                text = text.replace(region, "")
        public.update(line.strip() for line in text.splitlines())
    return secret - public


@pytest.mark.parametrize("assignment", assignments())
def test_kit_holds_exactly_what_a_student_needs(kits, assignment):
    """Does a kit hold one folder with the released notebooks, the wheel, README.md and
    nbgrader_config.py, and nothing else?"""
    names = set(_files(kits / f"{assignment}.zip"))
    expected = {f"{assignment}/{nb.name}.ipynb" for nb in notebooks(assignment)}
    expected |= {f"{assignment}/{_wheel(kits).name}", f"{assignment}/README.md", f"{assignment}/nbgrader_config.py"}
    assert names == expected


@pytest.mark.parametrize("assignment", assignments())
def test_kit_shows_nothing_of_the_solutions_or_hidden_tests(kits, assignment):
    """Does no notebook or text of a kit hold a marker or a line of a solution or hidden-test
    region, and does no file come from solutions/, reference/, the gradebook or submissions?"""
    files = _files(kits / f"{assignment}.zip")
    secret = {nb.name: _secret_lines(assignment, nb.name) for nb in notebooks(assignment)}
    assert all(secret.values()), "no solution regions found (the check could not fail)"
    for name, content in files.items():
        assert not re.search(r"solutions/|reference/|gradebook|submitted/|autograded/|\.pth$", name), name
        if name.endswith(".whl"):
            continue
        text = content.decode()
        assert not [m for m in MARKERS if m in text], name
        stem = Path(name).stem
        lines = secret[stem] if stem in secret else set().union(*secret.values())
        leaked = sorted(line for line in lines if line in text)
        assert not leaked, f"{name}: solution or hidden-test text: {leaked[:3]}"


@pytest.mark.parametrize("assignment", assignments())
def test_kit_notebooks_are_the_release_with_the_wheel_named(kits, assignment):
    """Is each notebook of a kit the released one, but for its install line, which names the
    wheel beside it?"""
    files = _files(kits / f"{assignment}.zip")
    wheel = _wheel(kits).name
    for nb in notebooks(assignment):
        released = nbformat.read(ROOT / "assignments" / assignment / f"{nb.name}.ipynb", as_version=4)
        handed = nbformat.reads(files[f"{assignment}/{nb.name}.ipynb"].decode(), as_version=4)
        assert len(handed.cells) == len(released.cells)
        installs = [i for i, c in enumerate(released.cells) if kit.INSTALL_LINE.search(c.source)]
        assert len(installs) == 1, f"{nb.name}: install cells {installs}"
        for i, (before, after) in enumerate(zip(released.cells, handed.cells)):
            if i in installs:
                assert after.source == kit.INSTALL_LINE.sub(lambda m: m["head"] + wheel, before.source)
                assert re.search(rf"^\s*%pip install .*\s{re.escape(wheel)}$", after.source, re.M)
                after.source = before.source
            assert after == before, f"{nb.name}: cell {i} differs from the release"


def test_readme_installs_the_wheel_of_the_kit(kits):
    """Does the kit README's install command name the kit's own wheel, with the CPU builds of
    torch, and name every weight file to submit?"""
    wheel = _wheel(kits).name
    for assignment in assignments():
        readme = _files(kits / f"{assignment}.zip")[f"{assignment}/README.md"].decode()
        assert f'.venv/bin/pip install "./{wheel}[jupyter]" --extra-index-url {kit.TORCH_CPU_INDEX}' in readme
        for nb in notebooks(assignment):
            assert all(f"`{w}`" in readme for w in nb.weights), nb.name


def test_wheel_holds_every_package_and_nothing_else(kits):
    """Does the wheel hold every package and subpackage of data_tools and autograder (without
    autograder.checks every notebook fails), and nothing beside them?"""
    with zipfile.ZipFile(_wheel(kits)) as zf:
        names = zf.namelist()
    packages = {str(p.parent.relative_to(ROOT)) for top in kit.PACKAGES for p in (ROOT / top).rglob("__init__.py")}
    assert "autograder/checks" in packages
    assert {n.rsplit("/", 1)[0] for n in names if n.endswith("/__init__.py")} == packages
    assert all(n.split("/")[0] in kit.PACKAGES or ".dist-info/" in n for n in names), names


def test_hub_recipe_copies_what_is_beside_it(kits):
    """Does the hub's Dockerfile copy the requirements file and the wheel that lie beside it, and
    does the requirements file pin the grader's torch and name that wheel?"""
    hub = kits / "jupyterhub"
    wheel = _wheel(kits).name
    assert (hub / wheel).read_bytes() == _wheel(kits).read_bytes()
    assert f"COPY requirements.txt {wheel} /tmp/course/" in (hub / "Dockerfile").read_text()
    lines = [line for line in (hub / "requirements.txt").read_text().splitlines() if not line.startswith("#")]
    assert lines == [f"torch=={kit.torch_version()}", f"./{wheel}[jupyter]"]


def test_kit_refuses_a_notebook_without_its_install_line(tmp_path):
    """Does the kit refuse a released notebook that lost its install line, naming the file and
    the fix?"""
    path = tmp_path / "ae.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("import torch")]), path)
    with pytest.raises(kit.KitError, match=r"ae\.ipynb: expected one '%pip install.*make release"):
        kit.kit_notebook(path, "x.whl")


# -- a clean venv, outside the repository --------------------------------------------------------

def _venv_env(tmp: Path, venv: Path, **extra: str) -> dict:
    """The environment of a student's shell with the kit's venv first: nothing of the
    repository's (no PYTHONPATH, no MNIST_ROOT), Jupyter's and the data cache's folders new."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "VIRTUAL_ENV", "MNIST_ROOT", "NBGRADER_EXECUTION", "AUTOGRADER_SANDBOX")}
    env.update(PATH=f"{venv / 'bin'}{os.pathsep}/usr/bin{os.pathsep}/bin", PYTHONNOUSERSITE="1",
               JUPYTER_DATA_DIR=str(tmp / "jupyter-data"), JUPYTER_CONFIG_DIR=str(tmp / "jupyter-config"),
               IPYTHONDIR=str(tmp / "ipython"), AE_CACHE_DIR=str(tmp / "cache"), MPLBACKEND="Agg", **extra)
    return env


def _run(step: str, cmd: list, *, timeout: float, **kwargs) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=timeout, **kwargs)
    assert proc.returncode == 0, f"{step}: exit {proc.returncode}\n{(proc.stdout + proc.stderr)[-4000:]}"
    return proc


def _run_notebooks(venv: Path, env: dict, paths: list[Path]) -> dict[str, dict]:
    proc = _run("executing notebooks", [venv / "bin" / "python", ROOT / "tests" / "kit_run.py", *paths],
                timeout=1200, env=env)
    return {r["notebook"]: r for r in map(json.loads, proc.stdout.splitlines())}


def _solved(path: Path, assignment: str, name: str, n_epochs: int) -> None:
    """The kit notebook at ``path`` with the reference solution in its solution cells and
    ``n_epochs`` in its settings cell, written in place."""
    source = nbformat.read(ROOT / "solutions" / assignment / f"{name}.ipynb", as_version=4)
    answers = {c.metadata.nbgrader["grade_id"]: "\n".join(line for line in c.source.splitlines()
                                                            if line.strip() not in MARKERS[:2])
               for c in source.cells
               if c.metadata.get("nbgrader", {}).get("solution") and not c.metadata.nbgrader.get("grade")}
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if grade_id in answers:
            cell.source = answers.pop(grade_id)
        elif cell.cell_type == "code" and "nbgrader" not in cell.metadata and "skip_training" in cell.source:
            cell.source, n = re.subn(r"^n_epochs = .*$", f"n_epochs = {n_epochs}", cell.source, flags=re.M)
            assert n == 1, cell.source
    assert not answers, f"solution cells missing from the kit notebook: {sorted(answers)}"
    nbformat.write(nb, path)


@pytest.mark.slow
def test_kit_installs_and_runs_in_a_clean_venv(kits, tmp_path):
    """From the kits alone, in a clean venv outside the repository: does the hub image's
    requirements file install the wheel and its dependencies; does every released notebook run
    its imports and reach its first stub's visible check as NotImplementedYet; does the AE
    notebook with the solution filled in train on the embedded data and then pass `nbgrader
    validate`;
    and does a notebook's first cell install the wheel into a kernel that lacks the package?"""
    took = {}
    student = tmp_path / "student"
    for assignment in assignments():
        zipfile.ZipFile(io.BytesIO((kits / f"{assignment}.zip").read_bytes())).extractall(student)
    venv = tmp_path / "venv"
    env = _venv_env(tmp_path, venv)

    start = time.perf_counter()
    _run("python -m venv", [sys.executable, "-m", "venv", venv], timeout=120)
    # As the hub image installs (its Dockerfile), less the CPU index: pip finds the CPU build of
    # torch here; --no-compile halves the time, and Python compiles what it imports.
    _run("pip install -r requirements.txt", [venv / "bin" / "python", "-m", "pip", "install", "--quiet",
                                             "--no-compile", "-r", "requirements.txt"],
         cwd=kits / "jupyterhub", env=env, timeout=900)
    _run("the hub's data cache", [venv / "bin" / "python", "-c", kit.WARM_CACHE], env=env, timeout=120)
    assert list((tmp_path / "cache").glob("*.npz")), "the embedded subset was not cached"
    took["venv and install"] = time.perf_counter() - start

    start = time.perf_counter()
    released = [student / nb.assignment / f"{nb.name}.ipynb" for nb in notebooks()]
    for path, result in zip(released, _run_notebooks(venv, env, released).values()):
        error = result["error"]
        assert error is not None and error["ename"] == "NotImplementedYet", f"{path.name}: {result}"
        assert error["grade_id"].startswith("test_"), f"{path.name}: first error outside a test cell: {error}"
        assert "not implemented yet" in error["evalue"]
    took["release notebooks"] = time.perf_counter() - start

    # The solved notebook runs up to its last cell that saves weights (it trains there); the
    # rest (evaluation, the trained-model tests) runs in nbgrader validate, on the saved weights.
    start = time.perf_counter()
    assignment, name = TRAINED
    folder = student / assignment
    _solved(folder / f"{name}.ipynb", assignment, name, TRAINED_EPOCHS)
    solved = nbformat.read(folder / f"{name}.ipynb", as_version=4)
    last_save = max(i for i, c in enumerate(solved.cells) if "save_model(" in c.source)
    solved.cells = solved.cells[:last_save + 1]
    nbformat.write(solved, folder / f"{name}_training.ipynb")
    (result,) = _run_notebooks(venv, env, [folder / f"{name}_training.ipynb"]).values()
    assert result["error"] is None, result
    nb = next(nb for nb in notebooks(assignment) if nb.name == name)
    assert all((folder / w).is_file() for w in nb.weights)
    took["training"] = time.perf_counter() - start
    start = time.perf_counter()
    validate = _run("nbgrader validate", [venv / "bin" / "nbgrader", "validate", f"{name}.ipynb"],
                    cwd=folder, env=env, timeout=600)
    assert "Success! Your notebook passes all the tests." in validate.stdout, validate.stdout[-3000:]
    took["validate"] = time.perf_counter() - start

    # A kernel without the package (Colab): the notebook's first code cell installs the wheel
    # beside it (offline here: its dependencies are installed, PIP_NO_INDEX keeps pip off the
    # CPU index, which this machine cannot reach).
    start = time.perf_counter()
    _run("pip uninstall", [venv / "bin" / "python", "-m", "pip", "uninstall", "--yes", "autoencoders-course"],
         env=env, timeout=120)
    install_cell = nbformat.read(folder / f"{name}.ipynb", as_version=4).cells[1]
    check = nbformat.v4.new_code_cell("import autograder.checks, data_tools\nprint(autograder.__file__)")
    fresh = folder / "fresh_kernel.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[install_cell, check]), fresh)
    (result,) = _run_notebooks(venv, _venv_env(tmp_path, venv, PIP_NO_INDEX="1"), [fresh]).values()
    assert result["error"] is None, result
    printed = nbformat.read(fresh, as_version=4).cells[1].outputs[0].text
    assert printed.startswith(str(venv)), printed
    took["install cell"] = time.perf_counter() - start
    print("kit in a clean venv:", ", ".join(f"{k} {v:.0f} s" for k, v in took.items()))


@pytest.mark.slow
def test_the_repository_url_builds_the_same_packages(kits, tmp_path):
    """Does `pip install git+<repository>` (here: the committed checkout, through git) build a
    wheel with the same packages as the kit's?"""
    _run("pip wheel git+file://", [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir",
                                   tmp_path, f"git+file://{ROOT}"], timeout=300)
    (built,) = tmp_path.glob("*.whl")

    def packages(wheel: Path) -> set[str]:
        with zipfile.ZipFile(wheel) as zf:
            return {n.rsplit("/", 1)[0] for n in zf.namelist() if n.endswith("/__init__.py")}

    assert packages(built) == packages(_wheel(kits))
