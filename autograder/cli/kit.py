"""Student kits: what an instructor hands out, and a JupyterHub image with the course installed.

    python -m autograder kit [ASSIGNMENT ...] [--course DIR] [--out DIR] [--wheel-url URL]

For each assignment (default: every assignment of the course manifest), ``OUT/ASSIGNMENT.zip``
holds one folder, ``ASSIGNMENT/``, with exactly

- the released notebooks (``assignments/ASSIGNMENT/``, as ``make release`` generated them),
  whose first code cell names this kit's wheel on its ``%pip install`` line (or ``--wheel-url``);
- the course package's wheel (``data_tools`` and ``autograder``, every subpackage);
- ``README.md`` for students: the install line, Colab, a Jupyter kernel, what to submit;
- ``nbgrader_config.py`` with the course's time limit per cell, for ``nbgrader validate``;

and nothing of ``solutions/``, ``reference/``, the hidden tests or the gradebook: the zip is
built from that list, never from a folder. ``OUT/jupyterhub/`` holds a single-user image's
``Dockerfile`` and ``requirements.txt`` beside the wheel (docs/jupyterhub.md). The wheel is
built from a copy of the packages' sources (``pip wheel --no-build-isolation``; setuptools
comes with the ``grader`` extra), so nothing else of the course directory can reach it.

Exit status: 0 the kits were written, 2 they could not be (the message says why and what to do).
"""
from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from importlib import metadata
from pathlib import Path

import nbformat

from ..manifest import assignments, notebooks

#: What goes into the wheel: the packages and the files their build reads.
PACKAGES = ("data_tools", "autograder")
BUILD_FILES = ("pyproject.toml", "README.md")
#: Where the CPU builds of PyTorch are (a plain ``torch`` from PyPI on Linux is the CUDA build).
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
#: The ``%pip install ... TARGET`` line of a notebook's install cell; TARGET is the wheel.
INSTALL_LINE = re.compile(r"^(?P<head>[ \t]*%pip install\b.*?[ \t])(?P<target>\S+\.whl)[ \t]*$", re.M)
#: The course's limits per cell that ``nbgrader validate`` needs from ``nbgrader_config.py``.
EXECUTE_LIMITS = re.compile(r"^c\.Execute\.\w*timeout = .*$", re.M)
#: Parses the embedded MNIST subset once into the cache (``AE_CACHE_DIR``) of a hub image.
WARM_CACHE = "from data_tools import load_mnist_arrays; load_mnist_arrays(train=True)"
#: Where a hub image keeps that cache, readable by every user.
HUB_CACHE_DIR = "/opt/autoencoders-course/cache"
#: The hub image's base (any image of the Jupyter Docker Stacks with Python 3.10 or newer).
HUB_BASE_IMAGE = "quay.io/jupyter/minimal-notebook:python-3.11"
ZIP_DATE = (2020, 1, 1, 0, 0, 0)  # fixed, so that the same inputs give the same zip


class KitError(RuntimeError):
    """A kit could not be built; the message names the file and the fix."""


def require_course(course: Path) -> None:
    """Raise :class:`KitError` unless ``course`` holds what the wheel is built from."""
    missing = [name for name in (*BUILD_FILES, *PACKAGES) if not (course / name).exists()]
    if missing:
        raise KitError(f"{course} is not the course repository: {', '.join(missing)} missing there "
                       f"(run in the repository root, or name it with --course DIR)")


def build_wheel(course: Path, out: Path) -> Path:
    """The course package's wheel, built from a copy of its sources into ``out``."""
    require_course(course)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="kit-wheel-") as tmp:
        src = Path(tmp) / "src"
        src.mkdir()
        for name in BUILD_FILES:
            shutil.copy2(course / name, src / name)
        for name in PACKAGES:
            shutil.copytree(course / name, src / name,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"))
        built = Path(tmp) / "dist"
        proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                               "--no-build-isolation", "--wheel-dir", str(built), str(src)],
                              capture_output=True, text=True)
        wheels = sorted(built.glob("*.whl"))
        if proc.returncode != 0 or len(wheels) != 1:
            raise KitError(f"building the wheel failed (pip wheel exited {proc.returncode}); setuptools "
                           f"comes with the grader extra (make setup):\n{(proc.stdout + proc.stderr)[-2000:]}")
        wheel = out / wheels[0].name
        shutil.copy2(wheels[0], wheel)
    return wheel


def kit_notebook(path: Path, target: str) -> nbformat.NotebookNode:
    """The released notebook at ``path`` with its install cell's ``%pip`` line naming
    ``target`` (the wheel's file name or address)."""
    nb = nbformat.read(path, as_version=4)
    found = 0
    for cell in nb.cells:
        if cell.cell_type == "code" and "nbgrader" not in cell.metadata:
            cell.source, n = INSTALL_LINE.subn(lambda m: m["head"] + target, cell.source)
            found += n
    if found != 1:
        raise KitError(f"{path}: expected one '%pip install ... <wheel>.whl' line in a plain code cell "
                       f"(the notebook's install cell), found {found}; edit solutions/ and run make release")
    return nb


def validate_config(course: Path) -> str:
    """``nbgrader_config.py`` for a kit: the course's limits per cell, so that a student's
    ``nbgrader validate`` gives a cell the time the grader gives it (nbgrader's default is 30 s)."""
    limits = EXECUTE_LIMITS.findall((course / "nbgrader_config.py").read_text())
    return "\n".join(["# nbgrader validate in this folder: the course's time limits per cell.",
                      "c = get_config()  # noqa: F821", *limits, ""])


def student_readme(assignment: str, wheel: str, wheel_url: str | None = None) -> str:
    """The kit's README: set-up in three commands, Colab, a kernel for another Jupyter, what to
    submit. ``wheel_url``: the address the notebooks' install cell names, if not the file."""
    nbs = notebooks(assignment)
    names = ", ".join(f"`{nb.name}.ipynb`" for nb in nbs)
    rows = "\n".join(
        f"| `{nb.name}.ipynb` | {', '.join(f'`{w}`' for w in nb.weights)} |"
        + (f" {', '.join(f'`{w}`' for w in nb.extra_files)} |" if nb.extra_files else " |")
        for nb in nbs)
    colab = (f"upload a notebook (File > Upload notebook) and run it: its first code cell installs the "
             f"course package from {wheel_url}." if wheel_url else
             f"upload a notebook (File > Upload notebook) and `{wheel}` (the Files pane on the\nleft), "
             f"then run the notebook: its first code cell installs the wheel.")
    return f"""# Autoencoders course: `{assignment}`

This folder holds the notebooks ({names}); the course package, `{wheel}`, which is
what the notebooks import (`data_tools` for data, plots and saving weights, `autograder` for
the checks); and `nbgrader_config.py`, which `nbgrader validate` reads.

## Set up, once (Python 3.10 or newer)

In this folder:

```bash
python -m venv .venv
.venv/bin/pip install "./{wheel}[jupyter]" --extra-index-url {TORCH_CPU_INDEX}
.venv/bin/jupyter lab
```

On Windows write `.venv\\Scripts\\pip` and `.venv\\Scripts\\jupyter`. The `--extra-index-url`
takes the CPU build of PyTorch: on Linux a plain `pip install torch` takes the CUDA build
(several GB); on macOS and Windows it changes nothing. With an NVIDIA GPU and its drivers,
leave it out and the notebooks train on the GPU (`device` in the settings cell). `[jupyter]`
adds Jupyter Lab and `nbgrader validate`.

**In a Jupyter or VS Code you already have**: install without `[jupyter]`, make the venv's
kernel visible, and pick the kernel "Autoencoders course" in the notebook:

```bash
.venv/bin/python -m ipykernel install --user --name autoencoders-course --display-name "Autoencoders course"
```

**On Colab**: {colab} For a GPU:
Runtime > Change runtime type. Files on Colab vanish with the runtime: download your
notebook and weight files before you leave.

**On the course's JupyterHub** everything is installed: open the notebooks there.

## Work

Write code only in the cells that say `# YOUR CODE HERE` (remove the `raise
NotImplementedError()`), and keep the class and function names and signatures: the grader
calls them. Cells with `checks.check_...` calls are tests; a check says what it tried, what it
expected, what came out, and a hint. `not implemented yet` means that a stub is still there.
The grader runs more of the same checks (other seeds and shapes) than the visible ones.
Training runs on a laptop's CPU in a few minutes per notebook; the training cell saves the
weights next to the notebook (set `skip_training = True` in the settings cell to load them
instead of training again).

## Before you submit

Run every notebook from top to bottom, then check each one in this folder, for example:

```bash
.venv/bin/nbgrader validate {nbs[0].name}.ipynb
```

It runs the notebook as the grader does (loading your saved weights instead of training) and
reports every visible test that fails, the bars of your trained models included.

## Submit

Each notebook **with** its weight files, saved next to it:

| notebook | weight files (graded) | optional (plots only) |
| --- | --- | --- |
{rows}
"""


def _zip(zip_path: Path, files: dict[str, bytes]) -> None:
    """Write ``files`` (name in the zip -> content) to ``zip_path``, with fixed dates."""
    tmp = zip_path.with_suffix(".zip.tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
        for name in sorted(files):
            info = zipfile.ZipInfo(name, ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, files[name])
    tmp.replace(zip_path)


def write_kit(course: Path, assignment: str, wheel: Path, out: Path, target: str | None = None) -> Path:
    """``out/ASSIGNMENT.zip``: the released notebooks, the wheel, README.md, nbgrader_config.py."""
    release = course / "assignments" / assignment
    files = {}
    for nb in notebooks(assignment):
        path = release / f"{nb.name}.ipynb"
        if not path.is_file():
            raise KitError(f"{path} is missing: release the assignment first (make release)")
        text = nbformat.writes(kit_notebook(path, target or wheel.name)) + "\n"
        files[f"{assignment}/{path.name}"] = text.encode()
    files[f"{assignment}/{wheel.name}"] = wheel.read_bytes()
    files[f"{assignment}/README.md"] = student_readme(assignment, wheel.name, target).encode()
    files[f"{assignment}/nbgrader_config.py"] = validate_config(course).encode()
    zip_path = out / f"{assignment}.zip"
    _zip(zip_path, files)
    return zip_path


def torch_version() -> str:
    """The torch release that grading runs on (this environment's, without ``+cpu``)."""
    return metadata.version("torch").split("+")[0]


def hub_requirements(wheel: str) -> str:
    return f"""# The course's Python packages for a JupyterHub single-user image (the Dockerfile beside
# this file; docs/jupyterhub.md). Install from this folder, with the CPU builds of PyTorch:
#   pip install --extra-index-url {TORCH_CPU_INDEX} -r requirements.txt
# torch: the release the grader runs on. [jupyter]: nbgrader, for nbgrader validate.
torch=={torch_version()}
./{wheel}[jupyter]
"""


def hub_dockerfile(wheel: str) -> str:
    return f"""# A JupyterHub single-user image for the autoencoders course: the course package (data_tools,
# autograder), the CPU build of PyTorch, Jupyter Lab with nbgrader, and the embedded MNIST
# subset parsed into a cache that every user reads (docs/jupyterhub.md). In this folder:
#   docker build -t autoencoders-course-notebook .
#   docker build --build-arg FULL_MNIST=1 -t autoencoders-course-notebook .   # and full MNIST
# FULL_MNIST=1 fetches full MNIST into /coursedata while the image is built (internet needed
# then, never at run time); the notebooks then use it and its bars, so grade with it too.
ARG BASE_IMAGE={HUB_BASE_IMAGE}
FROM ${{BASE_IMAGE}}
ARG FULL_MNIST=0
COPY requirements.txt {wheel} /tmp/course/
RUN cd /tmp/course \\
 && pip install --no-cache-dir --extra-index-url {TORCH_CPU_INDEX} -r requirements.txt \\
 && rm -rf /tmp/course
USER root
ENV AE_CACHE_DIR={HUB_CACHE_DIR}
RUN python -c "{WARM_CACHE}" \\
 && chmod -R a+rX {HUB_CACHE_DIR} \\
 && if [ "$FULL_MNIST" = 1 ]; then python -m data_tools download /coursedata \\
    && chmod -R a+rX /coursedata; fi
USER ${{NB_UID}}
"""


def write_jupyterhub(wheel: Path, out: Path) -> Path:
    """``out/jupyterhub/``: Dockerfile, requirements.txt and the wheel, ready for docker build."""
    hub = out / "jupyterhub"
    shutil.rmtree(hub, ignore_errors=True)
    hub.mkdir(parents=True)
    shutil.copy2(wheel, hub / wheel.name)
    (hub / "requirements.txt").write_text(hub_requirements(wheel.name))
    (hub / "Dockerfile").write_text(hub_dockerfile(wheel.name))
    return hub


def build_kits(course: Path, out: Path, names: list[str] | None = None,
               wheel_url: str | None = None) -> list[Path]:
    """Every kit of ``names`` (default: all assignments) and the hub recipe; returns the paths."""
    require_course(course)
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.whl"):
        old.unlink()
    wheel = build_wheel(course, out)
    target = f"{wheel_url.rstrip('/')}/{wheel.name}" if wheel_url else None
    written = [wheel]
    written += [write_kit(course, name, wheel, out, target) for name in (names or assignments())]
    written.append(write_jupyterhub(wheel, out))
    return written


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m autograder kit", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("assignments", nargs="*", metavar="ASSIGNMENT",
                   help=f"the assignments to make kits of (default: all: {', '.join(assignments())})")
    p.add_argument("--course", type=Path, default=Path("."), metavar="DIR",
                   help="the course directory, the repository root (default: the current directory)")
    p.add_argument("--out", type=Path, default=None, metavar="DIR",
                   help="where the kits go (default: COURSE/kits)")
    p.add_argument("--wheel-url", default=None, metavar="URL",
                   help="the address of a folder where you will put the wheel: the notebooks' install line "
                        "then names URL/<wheel> instead of the file beside them (default: the file)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    unknown = sorted(set(args.assignments) - set(assignments()))
    if unknown:
        parser().error(f"unknown assignment {', '.join(unknown)}; the course has {', '.join(assignments())}")
    course = args.course.resolve()
    out = (args.out or course / "kits").resolve()
    try:
        written = build_kits(course, out, args.assignments or None, args.wheel_url)
    except KitError as exc:
        print(f"python -m autograder kit: {exc}", file=sys.stderr)
        return 2
    for path in written:
        size = (sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.is_dir()
                else path.stat().st_size)
        print(f"{path}  ({size / 1024:,.0f} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
