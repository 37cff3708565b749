"""One submitted notebook's verdicts, with no metric decided where student code has run.

:func:`run_judged` runs, for one notebook (see ``autograder.checks.evidence`` and
docs/security.md):

1. here, in the grader's process: the inputs of each trained-model evaluation of the notebook
   (the evaluation images), every array's rows in a secret order; every random draw of the
   evaluation (the varianceMNIST samples, the grader's noise and codes, the row orders) comes
   from a secret drawn for this notebook (``autograder.checks.draws``), which no sandboxed
   process receives and the judge gets in its job;
2. the **producer** (``replay.run_plan``, sandboxed): the re-run of the test cells on the
   submitted definitions; the structural checks decide there, the trained-model checks run
   their first stage on those inputs, the replayable checks record their calls;
3. here: the first stage's outputs are checked (plain float arrays, the right rows, codes of
   exactly the manifest's code size) and put back in order, and the second stage's inputs
   (codes, corrupted images) are made from them by the grader's code, again in a secret order;
4. the **second stage** (``stage_child``, sandboxed): a fresh interpreter in a fresh directory
   holding only copies of the weight files taken before the producer ran, which runs the
   submitted decoder (or DAE) on those inputs only;
5. the **judge** (``judge``): a fresh fork of a clean server process that never imports student
   code, which runs the trusted test cells on the recorded outputs.
"""
from __future__ import annotations

import contextlib
import importlib
import json
import multiprocessing
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from ..checks import draws
from ..tempdirs import fit_multiprocessing
from .replay import ReplayError, Step, run_plan, trusted_imports

_CONTEXT: list = []
_DATA: dict = {}
#: The most evaluations the grader reads back from one notebook's producer (the others are
#: not evaluated): a reference run reports at most 2 (linear.ipynb's linear and sparse AEs).
MAX_RESULTS = 16


def _evaluations(checks_module: str) -> dict:
    module = importlib.import_module(checks_module)
    return {e.name: e for e in getattr(module, "EVALUATIONS", ())}


def _data(evaluation):
    """The grader's evaluation data with the draws in effect (read once per process, data
    source and secret; the data of earlier secrets is dropped)."""
    key = (evaluation.name, os.environ.get("MNIST_ROOT"), draws.current())
    if key not in _DATA:
        for old in [k for k in _DATA if k[2] != key[2]]:
            del _DATA[old]
        _DATA[key] = evaluation.data(None, None)
    return _DATA[key]


def _shuffle(arrays: dict, rng: np.random.Generator | None = None) -> tuple[dict, dict]:
    """Every array's rows in its own secret order (drawn from ``rng``), and the orders."""
    if rng is None:
        rng = np.random.default_rng(secrets.randbits(128))
    shuffled, orders = {}, {}
    for name, array in arrays.items():
        array = np.asarray(array, dtype=np.float32)
        orders[name] = rng.permutation(len(array))
        shuffled[name] = array[orders[name]]
    return shuffled, orders


def _unshuffle(array: np.ndarray, order: np.ndarray) -> np.ndarray:
    out = np.empty_like(array)
    out[order] = array
    return out


def _restore(stage, outputs: dict, orders: dict) -> dict:
    """The outputs of a stage, checked against its ``rows`` and put back in order."""
    from ..checks.evidence import checked

    return {name: _unshuffle(checked(outputs, name, len(orders[source])), orders[source])
            for name, source in stage.rows.items()}


def _tensors(arrays: dict) -> dict:
    import torch

    return {k: torch.as_tensor(np.asarray(v, dtype=np.float32)) for k, v in arrays.items()}


class _Run:
    """The files of one notebook's judged replay."""

    def __init__(self, checks_module: str, weight_files: tuple, root: Path,
                 private: Path | None = None, secret: int | None = None) -> None:
        #: The secret of this run's draws (a fresh one unless given): never written where a
        #: sandboxed process can read it; the judge gets it in its job.
        self.secret = draws.new_secret() if secret is None else secret
        self.rng = draws.rng(self.secret)
        self.checks_module = checks_module
        self.evaluations = _evaluations(checks_module)
        self.weight_files = set(weight_files)
        self.root = root
        self.shared = root / "producer"
        self.second = root / "second"
        self.private = (private or root) / "judge"
        for folder in (self.shared, self.second, self.private):
            folder.mkdir()
        os.chmod(self.shared, 0o777)
        os.chmod(self.second, 0o777)
        self.orders: dict = {}
        self.metas: dict = {}
        self.requests: list = []

    def write_inputs(self) -> None:
        from ..checks.evidence import save_arrays

        (self.shared / "inputs").mkdir()
        with draws.using(self.secret):
            for name, evaluation in self.evaluations.items():
                arrays, self.orders[name] = _shuffle(evaluation.inputs(_data(evaluation)), self.rng)
                save_arrays(str(self.shared / "inputs" / f"{name}.npz"), arrays)

    def between(self, evaluation, first: dict) -> dict:
        """The second stage's inputs, made by the grader's code with this run's draws."""
        with draws.using(self.secret):
            return evaluation.between(first, _data(evaluation))

    def keep_weights(self, workdir: Path) -> None:
        """Copies of the weight files as they are before any replay runs."""
        for name in self.weight_files:
            path = workdir / name
            if path.is_file() and not path.is_symlink():
                shutil.copyfile(path, self.second / name)

    def _meta(self, path: Path):
        """A producer's record of one evaluation, checked; None when unusable."""
        from ..checks.evaluation import evidence_key
        from ..checks.evidence import clean_error, read_json

        meta = read_json(str(path))
        if not isinstance(meta, dict) or meta.get("evaluation") not in self.evaluations:
            return None
        evaluation = self.evaluations[meta["evaluation"]]
        specs, n = meta.get("specs"), meta.get("n_components")
        kinds = {*evaluation.first.models, *(evaluation.second.models if evaluation.second else ())}
        if not (isinstance(n, int) and 0 < n <= 100_000 and isinstance(specs, list) and all(
                isinstance(s, list) and len(s) == 2 and s[0] in kinds and s[1] in self.weight_files
                for s in specs)):
            return None
        modes = meta.get("modes") if isinstance(meta.get("modes"), dict) else {}
        clean = {"key": evidence_key(evaluation, n, tuple(p for _, p in specs)),
                 "evaluation": evaluation, "n_components": n, "specs": specs,
                 "mode_layers": meta.get("mode_layers") is True,
                 "error": clean_error(meta.get("error")),
                 "modes": {m: clean_error(v) for m, v in modes.items() if m in ("eval", "train")}}
        return clean

    def collect_first(self) -> None:
        """Check, reorder and keep the first stage's outputs; prepare the second stage."""
        from ..checks.core import CheckFailure
        from ..checks.evaluation import check_code_width
        from ..checks.evidence import error_record, load_arrays, save_arrays

        folder = self.shared / "first"
        for path in sorted(folder.glob("*.json")) if folder.is_dir() else ():
            meta = self._meta(path)
            if meta is None or meta["key"] in self.metas or len(self.metas) >= MAX_RESULTS:
                continue
            self.metas[meta["key"]] = meta
            evaluation = meta["evaluation"]
            stem = path.name[:-len(".json")]
            for mode, problem in list(meta["modes"].items()):
                if problem:
                    continue
                try:
                    first = _restore(evaluation.first,
                                     load_arrays(str(folder / f"{stem}.{mode}.npz")),
                                     self.orders[evaluation.name])
                    check_code_width(evaluation, first)  # the manifest's size, not the cell's
                    save_arrays(str(self.private / f"{meta['key']}.{mode}.first.npz"), first)
                    if evaluation.second is not None:
                        inputs = self.between(evaluation, first)
                        arrays, orders = _shuffle({k: v.numpy() for k, v in inputs.items()},
                                                  self.rng)
                        rid = f"{meta['key']}.{mode}"
                        save_arrays(str(self.second / f"{rid}.in.npz"), arrays)
                        self.requests.append({"id": rid, "evaluation": evaluation.name,
                                              "n_components": meta["n_components"],
                                              "specs": meta["specs"], "train_mode": mode == "train",
                                              "orders": orders, "key": meta["key"], "mode": mode})
                except CheckFailure as exc:
                    meta["modes"][mode] = error_record(exc)

    def collect_second(self) -> None:
        from ..checks.core import CheckFailure
        from ..checks.evidence import clean_error, error_record, load_arrays, read_json, save_arrays

        for request in self.requests:
            meta, rid = self.metas[request["key"]], request["id"]
            error = self.second / f"{rid}.error.json"
            try:
                if error.exists():
                    meta.setdefault("second", {})[request["mode"]] = \
                        clean_error(read_json(str(error))) or \
                        clean_error("grading: the evaluation of the saved models failed")
                    continue
                outputs = load_arrays(str(self.second / f"{rid}.out.npz"))
                evaluation = meta["evaluation"]
                save_arrays(str(self.private / f"{rid}.second.npz"),
                            _restore(evaluation.second, outputs, request["orders"]))
            except CheckFailure as exc:
                meta.setdefault("second", {})[request["mode"]] = error_record(exc)

    def write_metas(self) -> None:
        from ..checks.evidence import write_json

        for key, meta in self.metas.items():
            write_json(str(self.private / f"{key}.json"),
                       {"mode_layers": meta["mode_layers"], "error": meta["error"],
                        "modes": meta["modes"], "second": meta.get("second", {})})

    def second_plan(self, plan: list[Step]) -> Path:
        """The setup cells and the submitted definitions: what the second stage runs."""
        steps = [{"kind": s.kind, "code": s.code, "grade_id": s.grade_id} for s in plan
                 if s.kind == "student" or (s.kind == "trusted" and not s.grade_id)
                 or s.grade_id.endswith("_setup")]
        path = self.second / "plan.json"
        path.write_text(json.dumps(steps))
        (self.second / "requests.json").write_text(json.dumps(
            [{"module": self.checks_module,
              **{k: r[k] for k in ("id", "evaluation", "n_components", "specs", "train_mode")}}
             for r in self.requests]))
        return path


def _env() -> dict:
    env = dict(os.environ, MPLBACKEND="Agg", PYTHONDONTWRITEBYTECODE="1")
    env["NBGRADER_EXECUTION"] = "autograde"
    return env


def _run_second(run: _Run, plan: list[Step], sandbox, timeout: float, warm=None) -> None:
    plan_path = run.second_plan(plan)
    args = [str(plan_path), str(run.second)]
    if warm is not None:
        done = warm.run("autograder.grading.stage_child", args, cwd=str(run.second),
                        writable=[str(run.second)], timeout=timeout, preload=trusted_imports(plan))
        returncode, output, timed_out = done.returncode, done.output, done.timed_out
    else:
        argv = [sys.executable, "-m", "autograder.grading.stage_child", *args]
        with sandbox(run.second) as wrap:
            if wrap is not None:
                argv = wrap(argv, str(run.second), str(run.second))
            try:
                proc = subprocess.run(argv, cwd=run.second, env=_env(), capture_output=True,
                                      text=True, timeout=timeout)
                returncode, output, timed_out = proc.returncode, proc.stderr or proc.stdout, False
            except subprocess.TimeoutExpired:
                returncode, output, timed_out = -9, "", True
    if timed_out:
        raise ReplayError(f"the evaluation of the saved models took longer than {timeout:.0f} s")
    if returncode != 0:
        tail = output.strip().splitlines()[-3:]
        raise ReplayError(f"the evaluation of the saved models failed (exit code "
                          f"{returncode}): {' | '.join(tail)[:500]}")


def _context(checks_module: str):
    """The judges' forkserver, started on first use; it prepares the judges of the checks
    modules of ``checks_module``'s assignment (``judge_preload``)."""
    if not _CONTEXT:
        from ..manifest import NOTEBOOKS

        assignments = {nb.assignment for nb in NOTEBOOKS if nb.checks == checks_module}
        modules = dict.fromkeys(nb.checks for nb in NOTEBOOKS if nb.assignment in assignments)
        # The server inherits the environment at its start, which is the next Process.start().
        os.environ["AUTOGRADER_JUDGE_MODULES"] = ",".join(modules) or checks_module
        fit_multiprocessing()  # the forkserver's socket, below a TMPDIR of any length
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["autograder.grading.judge_preload"])
        _CONTEXT.append(context)
    return _CONTEXT[0]


@contextlib.contextmanager
def _without_main():
    """``Process.start()`` without the main script: multiprocessing re-runs the parent's main
    script in every child it starts unless that is a ``-m`` module's ``__main__``. Under the
    ``nbgrader`` console script (``nbgrader autograde``, as instructors type it) that meant
    importing all of nbgrader again in every judge: 1.7 s per notebook. A judge runs
    ``judge.main`` of an imported module and needs nothing of the main script."""
    from multiprocessing import spawn

    prepare = spawn.get_preparation_data

    def without_main(name):
        data = prepare(name)
        data.pop("init_main_from_path", None)
        data.pop("init_main_from_name", None)
        return data

    spawn.get_preparation_data = without_main
    try:
        yield
    finally:
        spawn.get_preparation_data = prepare


def run_judge(job: dict, folder: Path, timeout: float) -> dict:
    """The judge's verdicts for ``job`` (see ``autograder.grading.judge``), from a fresh fork."""
    from . import judge

    job_path, out_path = folder / "job.json", folder / "verdicts.json"
    job_path.write_text(json.dumps(job))
    process = _context(job["checks"]).Process(target=judge.main, daemon=True,
                                              args=(str(job_path), str(out_path)))
    with _without_main():
        process.start()
    os.environ.pop("AUTOGRADER_JUDGE_MODULES", None)  # read by the server at its start only
    process.join(timeout)
    if process.is_alive():
        process.kill()
        process.join()
        raise ReplayError(f"the judge took longer than {timeout:.0f} s")
    if process.exitcode != 0 or not out_path.exists():
        raise ReplayError(f"the judge failed (exit code {process.exitcode})")
    return json.loads(out_path.read_text())


def _limits(warm) -> tuple[int, int, int]:
    """``(workdir bytes, bytes, files)``: the caps on a submission folder and on what a stage
    leaves in its folders (``c.Sandbox.max_workdir_size``, ``max_job_disk``, ``max_job_files``)."""
    from ..sandbox import MAX_JOB_DISK, MAX_JOB_FILES, MAX_WORKDIR_SIZE

    sb = getattr(warm, "sandbox", None)
    if sb is None:
        return MAX_WORKDIR_SIZE, MAX_JOB_DISK, MAX_JOB_FILES
    return sb.max_workdir_size, sb.max_job_disk, sb.max_job_files


def _refuse_large(folders: list[Path], what: str, warm) -> None:
    """A :class:`ReplayError` when a stage left more in its folders than the grader reads back."""
    from ..sandbox.warm import folder_usage, size_text

    _, max_bytes, max_files = _limits(warm)
    size, count = folder_usage(folders, max_bytes=max_bytes, max_files=max_files)
    if size > max_bytes:
        raise ReplayError(f"{what} left more than {size_text(max_bytes)} in its folders, more than "
                          f"the grader reads back (c.Sandbox.max_job_disk)")
    if count > max_files:
        raise ReplayError(f"{what} left more than {max_files:,} files and folders, more than the "
                          f"grader reads back (c.Sandbox.max_job_files)")


def run_judged(plan: list[Step], source_nb, checks_module: str, weight_files: tuple,
               workdir: Path, *, timeout: float, sandbox, warm=None,
               secret: int | None = None) -> dict[str, dict]:
    """``{grade_id: {"passed", "error"}}`` of one submitted notebook (see the module docstring).

    ``sandbox(directory)`` is a context manager yielding the ``wrap`` of ``run_plan`` (or None).
    With ``warm`` (``autograder.sandbox.warm.WarmSandbox``) the producer and the second stage
    are forked from its server, each into a sandbox of its own; the producer then works on a
    copy of ``workdir``. A cell the producer did not reach has no verdict. ``secret``: the
    secret of the evaluation's draws (``autograder.checks.draws``; a fresh one if None).
    """
    with contextlib.ExitStack() as stack:
        root = Path(stack.enter_context(
            warm.directory("judged-") if warm is not None else tempfile.TemporaryDirectory(prefix="judged-")))
        private = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="judge-")))
        from ..sandbox.warm import check_workdir, copy_workdir

        workdir_limit, _, max_files = _limits(warm)
        check_workdir(workdir, workdir_limit, max_files)  # before any copy
        run = _Run(checks_module, weight_files, root, private, secret)
        run.write_inputs()
        run.keep_weights(workdir)
        written = [run.shared]
        try:
            if warm is not None and warm.can_show(str(workdir)):
                written.append(copy_workdir(workdir, root / "work", limit=workdir_limit,
                                            max_files=max_files))
                produced = run_plan(plan, workdir, timeout=timeout, directory=run.shared,
                                    warm=warm, copy=written[-1])
            else:
                with sandbox(workdir) as wrap:
                    produced = run_plan(plan, workdir, timeout=timeout, wrap=wrap,
                                        directory=run.shared)
        finally:  # a process stopped for its files fails with that reason
            _refuse_large(written, "the re-run of the tests", warm)
        run.collect_first()
        if run.requests:
            try:
                _run_second(run, plan, sandbox, timeout, warm)
            finally:
                _refuse_large([run.second], "the evaluation of the saved models", warm)
            run.collect_second()
        run.write_metas()
        cells = [{"grade_id": c.metadata.nbgrader["grade_id"], "source": c.source}
                 for c in source_nb.cells
                 if c.cell_type == "code" and c.metadata.get("nbgrader", {}).get("grade")]
        job = {"checks": checks_module, "cells": cells, "evidence": str(run.private),
               "calls": str(run.shared / "calls"), "secret": run.secret,
               "settings": [s.code for s in plan if s.kind in ("trusted", "student") and not s.grade_id]}
        judged = run_judge(job, run.private, timeout)
    verdicts = {}
    for grade_id, produced_verdict in produced.items():
        verdict = judged.get(grade_id)
        if isinstance(verdict, dict) and verdict.get("decided"):
            verdicts[grade_id] = {"passed": bool(verdict["passed"]), "error": str(verdict["error"]),
                                  "output": str(verdict.get("output", ""))}
        else:
            verdicts[grade_id] = produced_verdict
    return verdicts
