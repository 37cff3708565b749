"""Calibrate the pass bars of the trained-model checks.

For each seed, the reference solution notebook is executed in training mode (the seed
changed in its settings cell) and the trained models are evaluated exactly as the grader
evaluates them; untrained (random-init) models are evaluated over the same seeds. The
results go to docs/calibration/<notebook>-<source>.json, from which docs/calibration.md
is written by hand. The course is the current directory (``--course DIR``: another), as for
nbgrader.

    python -m autograder calibrate ae --seeds 0 1 2 3 4
    python -m autograder calibrate dae --seeds 0 1 2 3 4 --set sigma_n=0.0

``--set NAME=VALUE`` changes a further line ``NAME = ...`` of the settings cell (e.g. a
baseline trained without corruption); its results go to
docs/calibration/<notebook>-<source>-<NAME>=<VALUE>.json.

``--variant NAME`` trains a correct alternative of the solution instead (another architecture,
frozen encoders): the edits ``VARIANTS[NAME]`` of the notebook's checks module, each
``(solution text, other text)``; its results go to
docs/calibration/<notebook>-<source>-variant=<NAME>.json.

    python -m autograder calibrate transfer --seeds 0 1 2 3 4 --variant mlp

``--secrets S ...`` trains nothing: it evaluates the reference weights (``make weights``, in
``reference/``) and an untrained model (``torch.manual_seed(0)``) with the public draws and with
the draws of each secret (``autograder.checks.draws``: what grading draws for a notebook), to
show that the graded numbers stay inside their bars whatever the grader draws; the results go
to docs/calibration/<notebook>-<source>-secrets.json.

    python -m autograder calibrate dae --secrets 1 2 3 4 5 6 7 8
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import json
import re
import statistics
import tempfile
import time
from pathlib import Path

import nbformat
import torch

from ..grading.course import COURSE_ROOT, definitions
from ..manifest import NOTEBOOKS, Notebook, notebook
from .weights import source_path, train_without_tests


def _checks(nb: Notebook):
    return importlib.import_module(nb.checks)


def _evaluate(nb: Notebook, ns: dict, workdir: Path | None, n_components: int, data) -> dict:
    """Evaluate trained (weights in workdir) or untrained (workdir None) models."""
    from data_tools.utils import load_model

    models = []
    for m in nb.models:
        model = m.build(ns, n_components)
        if workdir is not None:
            with contextlib.redirect_stdout(io.StringIO()):
                load_model(model, workdir / m.weights)
        models.append(model.eval())
    return getattr(_checks(nb), f"evaluate_{nb.name}")(*models, *data)


def _set(source: str, name: str, value: str) -> str:
    """The settings cell with the line ``name = ...`` replaced by ``name = value``."""
    pattern = rf"^{re.escape(name)} = [^#\n]*"
    if not re.search(pattern, source, flags=re.M):
        raise SystemExit(f"--set {name}={value}: no line '{name} = ...' in the settings cell")
    return re.sub(pattern, f"{name} = {value}  ", source, flags=re.M)


def variant_edits(nb: Notebook, variant: str) -> tuple:
    """The edits of a correct alternative of the notebook's solution (its checks module's
    ``VARIANTS``)."""
    variants = getattr(_checks(nb), "VARIANTS", {})
    if variant not in variants:
        raise SystemExit(f"--variant {variant}: {nb.name} has the variants {sorted(variants) or 'none'}")
    return variants[variant]


def apply_edits(nb, edits) -> None:
    """Replace each ``old`` by ``new`` in the cells of ``nb``; each ``old`` must occur exactly
    once in the notebook (ValueError otherwise)."""
    for old, new in edits:
        found = sum(c.source.count(old) for c in nb.cells)
        if found != 1:
            raise ValueError(f"an edit's text occurs {found} times in the notebook, not once: {old[:80]!r}")
        for cell in nb.cells:
            cell.source = cell.source.replace(old, new)


def calibrate(name: str, seeds: list[int], n_components: int | None = None,
              overrides: dict[str, str] | None = None, assignment: str | None = None,
              variant: str | None = None, course: Path = COURSE_ROOT) -> dict:
    nb_entry = notebook(name, assignment)
    n_components = n_components or nb_entry.n_components
    src = source_path(nb_entry, course)
    edits = variant_edits(nb_entry, variant) if variant else ()
    if edits:
        edited = nbformat.read(src, as_version=4)
        try:
            apply_edits(edited, edits)
        except ValueError as exc:
            raise SystemExit(f"--variant {variant}: {exc}") from None
        variant_dir = tempfile.TemporaryDirectory()
        src = Path(variant_dir.name) / src.name
        nbformat.write(edited, src)
    ns = definitions(src)
    data = _checks(nb_entry).evaluation_data()
    source = data[-1].source
    runs, untrained = [], []
    for seed in seeds:
        with tempfile.TemporaryDirectory() as tmp:
            nb = nbformat.read(src, as_version=4)
            settings = next(c for c in nb.cells if c.cell_type == "code"
                            and re.search(r"^seed = \d+", c.source, re.M))
            settings.source = re.sub(r"^seed = \d+", f"seed = {seed}", settings.source, flags=re.M)
            for key, value in (overrides or {}).items():
                settings.source = _set(settings.source, key, value)
            start = time.perf_counter()
            train_without_tests(nb, Path(tmp) / f"{name}.ipynb")
            seconds = time.perf_counter() - start
            result = _evaluate(nb_entry, ns, Path(tmp), n_components, data)
            # Further baselines trained by the same notebook run (e.g. the plain autoencoder of
            # latent.ipynb), when the checks module knows how to evaluate them.
            baselines = getattr(_checks(nb_entry), "evaluate_baselines", None)
            if baselines is not None:
                result.update(baselines(Path(tmp), *data))
        result.update(seed=seed, notebook_seconds=round(seconds, 1))
        runs.append(result)
        print(f"{name} seed {seed}: {result}", flush=True)
        torch.manual_seed(seed)
        u = _evaluate(nb_entry, ns, None, n_components, data)
        u.update(seed=seed)
        untrained.append(u)
        print(f"{name} untrained seed {seed}: {u}", flush=True)
    summary = {"notebook": name, "source": source.threshold_key, "source_location": source.location,
               "n_components": n_components, "seeds": seeds, "reference": runs,
               "untrained": untrained, "torch": torch.__version__,
               "overrides": overrides or {}}
    for key in runs[0]:
        if key in ("seed", "notebook_seconds"):
            continue
        values = [r[key] for r in runs]
        summary[f"{key}_reference_min"] = min(values)
        summary[f"{key}_reference_max"] = max(values)
        summary[f"{key}_reference_median"] = statistics.median(values)
        uv = [u[key] for u in untrained if key in u]
        if uv:
            summary[f"{key}_untrained_min"] = min(uv)
            summary[f"{key}_untrained_max"] = max(uv)
    suffix = "".join(f"-{k}={v}" for k, v in (overrides or {}).items())
    if variant:
        suffix += f"-variant={variant}"
        summary["variant"] = variant
    out = course / "docs" / "calibration" / f"{name}-{source.threshold_key}{suffix}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"wrote {out}")
    return summary


def across_secrets(name: str, secrets: list[int], assignment: str | None = None,
                   course: Path = COURSE_ROOT) -> dict:
    """The graded numbers of the reference weights and of an untrained model, with the public
    draws and with those of each of ``secrets`` (see the module docstring)."""
    from ..checks import draws
    from .weights import reference_dir

    nb_entry = notebook(name, assignment)
    ns = definitions(source_path(nb_entry, course))
    runs = []
    for secret in (None, *secrets):
        with draws.using(secret):
            data = _checks(nb_entry).evaluation_data()
            result = _evaluate(nb_entry, ns, reference_dir(course), nb_entry.n_components, data)
            torch.manual_seed(0)
            untrained = _evaluate(nb_entry, ns, None, nb_entry.n_components, data)
        runs.append({"secret": "public" if secret is None else str(secret), "reference": result,
                     "untrained": untrained})
        print(f"{name} draws of secret {runs[-1]['secret']}: {result}; untrained: {untrained}",
              flush=True)
    source = data[-1].source
    summary = {"notebook": name, "source": source.threshold_key, "n_components": nb_entry.n_components,
               "secrets": [str(s) for s in secrets], "runs": runs, "torch": torch.__version__}
    for key, value in runs[0]["reference"].items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            values = [r["reference"][key] for r in runs[1:]]
            summary[f"{key}_secrets_min"], summary[f"{key}_secrets_max"] = min(values), max(values)
    out = course / "docs" / "calibration" / f"{name}-{source.threshold_key}-secrets.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"wrote {out}")
    return summary


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m autograder calibrate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("notebook", choices=sorted({nb.name for nb in NOTEBOOKS}))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--secrets", type=int, nargs="+", default=None, metavar="S",
                        help="evaluate the reference weights with the draws of these secrets "
                             "instead of training (default: off)")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="NAME=VALUE", help="change a line of the settings cell")
    parser.add_argument("--variant", default=None, metavar="NAME",
                        help="train a correct alternative of the solution (VARIANTS of the checks module)")
    parser.add_argument("--course", type=Path, default=Path("."), metavar="DIR",
                        help="the course directory: its solutions/ are trained, its docs/calibration/ "
                             "written (default: the current directory)")
    args = parser.parse_args(argv)
    course = args.course.resolve()
    overrides = dict(item.split("=", 1) for item in args.overrides)
    if args.secrets:
        across_secrets(args.notebook, args.secrets, course=course)
        return 0
    calibrate(args.notebook, args.seeds, overrides=overrides, variant=args.variant, course=course)
    return 0
