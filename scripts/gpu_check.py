"""Train each notebook on a CUDA GPU and grade the saved weights on the CPU (scripts/gpu_check.sh)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

#: The variable that holds the (first) trained model after each notebook's training cell.
TRAINED_VARIABLE = {"ae": "encoder", "dae": "dae", "vae": "encoder"}

GRADE = """
import json, sys
import torch
from autograder.grading.course import definitions
from autograder.manifest import notebook
import importlib

name, epochs_full = sys.argv[1], sys.argv[2] == "full"
assert not torch.cuda.is_available(), "the grading process must not see a GPU"
nb = notebook(name)
checks = importlib.import_module(nb.checks)
ns = definitions(f"{name}.ipynb")
classes = [ns[m.cls] for m in nb.models]
for path in nb.weights:  # CPU tensors: they load without map_location in a process without CUDA
    state = torch.load(path, weights_only=True)
    devices = {str(t.device) for t in state.values()}
    assert devices == {"cpu"}, f"{path}: tensors on {devices}"
train, test = checks.evaluation_data()
checks.report_trained(*classes, nb.n_components, trainset=train, testset=test)
if epochs_full:
    for fn in [getattr(checks, f) for f in dir(checks) if f.startswith(f"check_trained_{name}_")]:
        fn(*classes, nb.n_components, trainset=train, testset=test)
    print("every bar passes")
"""


def fail(message: str) -> None:
    print(f"gpu_check: {message}", file=sys.stderr)
    raise SystemExit(1)


def main(argv: list[str]) -> int:
    import nbformat
    import torch

    from autograder.cli.weights import execute_notebook, source_path
    from autograder.manifest import notebooks

    epochs = argv[0] if argv else "2"
    if epochs != "full" and not epochs.isdigit():
        fail(f"the argument is a number of epochs or 'full', not {epochs!r}")
    if not torch.cuda.is_available():
        fail(f"no CUDA device: torch.cuda.is_available() is False (torch {torch.__version__}, "
             f"CUDA build {torch.version.cuda or 'none'}); run this script on a machine with an "
             f"NVIDIA GPU and a CUDA build of torch (PYTHON=/path/to/python {sys.argv[0]})")
    print(f"GPU: {torch.cuda.get_device_name(0)}, torch {torch.__version__}", flush=True)
    out = ROOT / "gpu-check"
    failed = []
    for nb in notebooks("autoencoders"):
        work = out / nb.name
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        notebook = nbformat.read(source_path(nb), as_version=4)
        settings = next(i for i, c in enumerate(notebook.cells) if c.cell_type == "code"
                        and "nbgrader" not in c.metadata and "skip_training" in c.source)
        override = 'device = "cuda"\nassert torch.cuda.is_available()\n'
        if epochs != "full":
            override += f"n_epochs = {int(epochs)}\n"
        notebook.cells.insert(settings + 1, nbformat.v4.new_code_cell(override))
        training = next(i for i, c in enumerate(notebook.cells)
                        if c.metadata.get("nbgrader", {}).get("grade_id") == f"{nb.name}_training")
        notebook.cells.insert(training + 1, nbformat.v4.new_code_cell(
            f"assert next({TRAINED_VARIABLE[nb.name]}.parameters()).device.type == 'cuda', "
            f"'the training cell did not move the model to the GPU'\n"
            f"print('trained on', next({TRAINED_VARIABLE[nb.name]}.parameters()).device)"))
        nbformat.write(notebook, work / f"{nb.name}.ipynb")
        print(f"{nb.name}: training on the GPU ({epochs} epochs) ...", flush=True)
        start = time.perf_counter()
        try:
            execute_notebook(work / f"{nb.name}.ipynb", save_to=work / f"{nb.name}.executed.ipynb")
        except Exception as exc:  # noqa: BLE001 - report and go on with the other notebooks
            failed.append(nb.name)
            print(f"{nb.name}: FAILED while training: {str(exc)[-2000:]}", flush=True)
            continue
        print(f"{nb.name}: trained in {time.perf_counter() - start:.0f} s; grading on the CPU",
              flush=True)
        env = dict(os.environ, CUDA_VISIBLE_DEVICES="",
                   PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
        proc = subprocess.run([sys.executable, "-c", GRADE, nb.name, epochs], cwd=work, env=env,
                              capture_output=True, text=True)
        print(proc.stdout, end="")
        if proc.returncode != 0:
            failed.append(nb.name)
            print(f"{nb.name}: FAILED on the CPU:\n{proc.stderr[-3000:]}", flush=True)
    if failed:
        fail(f"failed: {', '.join(failed)}")
    print("gpu_check: every notebook trained on the GPU and was graded on the CPU")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
