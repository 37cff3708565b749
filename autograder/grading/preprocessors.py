"""Small steps added to nbgrader's autograde pipeline.

``RestoreCellMetadata`` (sanitizing, before ``OverwriteCells``) resets the nbgrader metadata
of every cell whose ``grade_id`` the gradebook knows to the source's, and strips it from cells
with unknown ids. Without it a test cell whose "grade" flag a student switched off, or which
was turned into a solution cell, makes nbgrader fail the whole notebook ("Inconsistent
checksums"), and a renamed grade_id crashes it (KeyError); with it the test cell is restored
and run, so the student gets what the code deserves, no more and no less.

It also puts the hidden tests back into locked cells that the student left as released.
nbgrader records a locked cell's checksum and source *with* its hidden tests (SaveCells runs
before ClearHiddenTests), so ``OverwriteCells`` finds every released test cell "changed" and
warns ``Attribute 'checksum' for cell ... has changed!`` for honest submissions. A cell whose
source is exactly the released text gets the recorded source silently; a cell that really was
changed is left to ``OverwriteCells``, which warns and restores it.

nbgrader scores a grade cell 0 when it has *any* stderr output (``utils.determine_grade``
treats a stderr stream like an error), so a PyTorch warning or a tqdm progress bar in a
passing test cell would cost all its points. ``HarmlessStderr`` (before SaveAutoGrades)
turns those stderr streams into stdout streams: they stay visible in the feedback, and only
a real ``error`` output fails the cell.

``FlagGradingFailures`` (after SaveAutoGrades) marks the grade cells whose grading failed
(see ``execute.GradingExecute``) as needing manual grading, so that the formgrader shows them
to the instructor instead of an ordinary 0.
"""
from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat import NotebookNode
from nbgrader import utils
from nbgrader.api import Gradebook, MissingEntry
from nbgrader.preprocessors import ClearHiddenTests, NbGraderPreprocessor
from traitlets import Bool, Float, TraitError, Unicode, validate

from ..checks.draws import new_secret
from ..sandbox.warm import WarmUnavailable
from .replay import DEFAULT_TIMEOUT, build_plan, internals_verdicts, run_plan, unbound_note


class RestoreCellMetadata(NbGraderPreprocessor):
    """Reset nbgrader cell metadata to the source's; drop it from cells with unknown ids."""

    def preprocess(self, nb, resources):
        ids = resources["nbgrader"]
        with Gradebook(ids["db_url"]) as gb:
            source = gb.find_notebook(ids["notebook"], ids["assignment"])
            self.grade_cells = {c.name: c.max_score for c in source.grade_cells}
            self.solution_cells = {c.name for c in source.solution_cells}
            self.task_cells = {c.name: c.max_score for c in source.task_cells}
            self.source_cells = {c.name: (c.locked, c.cell_type) for c in source.source_cells}
            self.locked_sources = {c.name: c.source for c in source.source_cells if c.locked}
            return super().preprocess(nb, resources)

    def released_source(self, source: str) -> str:
        """A locked cell's recorded source as the release shows it (hidden tests removed)."""
        cell = NotebookNode(source=source, cell_type="code", metadata={})
        ClearHiddenTests(parent=self)._remove_hidden_test_region(cell)
        return cell.source

    def preprocess_cell(self, cell, resources, cell_index):
        meta = cell.metadata.get("nbgrader")
        if meta is None:
            return cell, resources
        grade_id = meta.get("grade_id")
        if grade_id not in self.source_cells:
            if any(meta.get(flag) for flag in ("grade", "solution", "locked", "task")):
                self.log.warning("Cell %d has nbgrader metadata for unknown id %r; treating it as a "
                                 "plain cell", cell_index, grade_id)
            del cell.metadata["nbgrader"]
            return cell, resources
        locked, cell_type = self.source_cells[grade_id]
        restored = {"grade_id": grade_id, "grade": grade_id in self.grade_cells,
                    "solution": grade_id in self.solution_cells, "locked": locked,
                    "cell_type": cell_type, "schema_version": meta.get("schema_version", 3)}
        if grade_id in self.grade_cells:
            restored["points"] = self.grade_cells[grade_id]
        if grade_id in self.task_cells:
            restored["task"] = True
            restored["points"] = self.task_cells[grade_id]
        if "checksum" in meta:
            restored["checksum"] = meta["checksum"]
        changed = sorted(k for k in set(meta) | set(restored) if meta.get(k) != restored.get(k))
        if changed:
            self.log.warning("Cell %r: restoring nbgrader metadata %s from the source", grade_id, changed)
        cell.metadata["nbgrader"] = restored
        recorded = self.locked_sources.get(grade_id)
        if recorded is not None and cell.source != recorded and cell.source == self.released_source(recorded):
            cell.source = recorded  # as released: put the hidden tests back without a warning
        return cell, resources


class HarmlessStderr(NbGraderPreprocessor):
    """Move stderr stream outputs of grade cells to stdout, so that warnings cost no points."""

    def preprocess_cell(self, cell, resources, cell_index):
        if cell.cell_type == "code" and utils.is_grade(cell):
            for output in cell.outputs:
                if output.output_type == "stream" and output.name == "stderr":
                    output.name = "stdout"
        return cell, resources


class FlagGradingFailures(NbGraderPreprocessor):
    """Mark grade cells whose grading failed as needing manual grading in the gradebook."""

    enabled = Bool(True, help="Flag grade cells whose grading failed for manual review.").tag(config=True)

    def preprocess(self, nb, resources):
        failures = resources.get("autograder", {}).get("failures", [])
        grade_ids = {cell.metadata.nbgrader["grade_id"] for cell in nb.cells if utils.is_grade(cell)}
        failed = sorted({f["grade_id"] for f in failures if f.get("grade_id") in grade_ids})
        if not failed:
            return nb, resources
        ids = resources["nbgrader"]
        with Gradebook(ids["db_url"]) as gb:
            for grade_id in failed:
                try:
                    grade = gb.find_grade(grade_id, ids["notebook"], ids["assignment"], ids["student"])
                except MissingEntry:
                    continue
                grade.needs_manual_grade = True
            gb.db.commit()
        return nb, resources


class ReplayChecks(NbGraderPreprocessor):
    """After the kernel run, score every test cell by its replay in a fresh process.

    A test cell's error output is replaced by the replay's verdict, so a submission that
    patched the checks in its kernel gains nothing, and one whose kernel state was merely
    broken loses nothing that its definitions deserve. When the replay cannot run, the
    cells are marked "grading failed" (never silently scored from the kernel run).

    The random draws of the notebook's evaluation come from a secret drawn here, for this
    notebook (``autograder.checks.draws``); it goes to ``resources["autograder"]["secret"]``,
    which ``RecordingExporter`` keeps in the notebook's entry of ``grading_report.json``.
    """

    enabled = Bool(True, help="Score test cells by a replay in a fresh process.").tag(config=True)
    timeout = Float(DEFAULT_TIMEOUT, help="Seconds the replay of one notebook may take.").tag(config=True)
    internals = Bool(True, help="Fail the test cells that use a submitted definition whose code "
                     "reaches the grader's internals (autograder.grading.reach). Off only to test "
                     "the defences behind it.").tag(config=True)
    secret = Unicode("", help="The secret of the evaluations' random draws, in decimal digits "
                     "(the one recorded in grading_report.json, to grade again with the same "
                     "draws); empty: a new secret for every notebook graded.").tag(config=True)

    @validate("secret")
    def _decimal(self, proposal):
        value = proposal["value"].strip()
        if value and not value.isdigit():
            raise TraitError(f"ReplayChecks.secret must be decimal digits (as recorded in "
                             f"grading_report.json), not {value[:40]!r}")
        return value

    def preprocess(self, nb, resources):
        from nbformat.v4 import new_output
        from nbgrader.coursedir import CourseDirectory

        ids = resources["nbgrader"]
        coursedir = CourseDirectory(config=self.config)
        source = Path(coursedir.format_path(coursedir.source_directory, ".", ids["assignment"])) \
            / f"{ids['notebook']}.ipynb"
        try:
            source_nb = nbformat.read(source, as_version=4)
        except (OSError, ValueError) as exc:
            self.log.warning("Replay skipped: cannot read the source notebook %s: %s", source, exc)
            return nb, resources
        if not source_nb.metadata.get("autograder", {}).get("replay"):
            return nb, resources  # this notebook does not opt in
        workdir = Path(resources.get("metadata", {}).get("path") or ".")
        grade_cells = [c for c in nb.cells if c.cell_type == "code"
                       and c.metadata.get("nbgrader", {}).get("grade")]
        secret = int(self.secret) if self.secret else new_secret()
        # Decimal digits: a JSON reader that reads numbers as doubles would round 128 bits.
        resources.setdefault("autograder", {})["secret"] = str(secret)
        try:
            plan = build_plan(source_nb, nb)
            verdicts = self._verdicts(plan, source_nb, ids, workdir, secret)
            if self.internals:
                verdicts.update(internals_verdicts(plan, verdicts))
            problem = None
        except Exception as exc:  # noqa: BLE001 - any failure here is a grading failure
            plan, verdicts, problem = [], {}, f"{type(exc).__name__}: {exc}"
        dropped = "; ".join(f"cell {s.grade_id}, line{'s' if len(s.dropped) > 1 else ''} "
                            f"{', '.join(map(str, s.dropped))}" for s in plan
                            if s.dropped and not s.grade_id.endswith("_training"))
        failures = resources.setdefault("autograder", {}).setdefault("failures", [])
        for cell in grade_cells:
            grade_id = cell.metadata.nbgrader["grade_id"]
            verdict = verdicts.get(grade_id)
            # A trained-model check that the kernel left to the grader's own evaluation
            # (``evaluation.results`` under autograde) is no failure of the kernel's.
            deferred = any(o.get("ename") == "Deferred" for o in cell.outputs)
            cell.outputs = [o for o in cell.outputs if o.get("ename") != "Deferred"]
            kernel_failed = any(o.output_type == "error" for o in cell.outputs)
            # The replay decides, never a value the cell displayed: nbgrader reads an
            # execute_result as partial credit, and a display hook in student code can emit one.
            cell.outputs = [o for o in cell.outputs if o.output_type != "execute_result"]
            if any(o.get("ename") == "GradingFailed" for o in cell.outputs):
                continue  # the kernel could not run this cell: it stays failed, and flagged
            if verdict is None:
                reason = problem or "the re-run of the tests stopped before this cell"
                if not any(f.get("grade_id") == grade_id for f in failures):
                    failures.append({"cell": None, "grade_id": grade_id, "reason": reason})
                if not kernel_failed:
                    cell.outputs.append(new_output(
                        "error", ename="GradingFailed", evalue=f"grading failed: {reason}",
                        traceback=[f"GradingFailed: grading failed: {reason}"]))
                continue
            cell.outputs = [o for o in cell.outputs if o.output_type != "error"]
            if verdict["passed"]:
                if deferred and verdict.get("output"):
                    cell.outputs.append(new_output("stream", name="stdout", text=verdict["output"]))
                if kernel_failed:
                    cell.outputs.append(new_output(
                        "stream", name="stdout",
                        text="[grader] this test passes when re-run on your definitions in a "
                             "fresh process; the error above came from the notebook's state\n"))
            else:
                ename, _, evalue = verdict["error"].partition(": ")
                note = unbound_note(verdict["error"], plan)
                if note:
                    evalue += f"\n  {note}"
                elif not kernel_failed and dropped:
                    evalue += ("\n  note: the grader re-runs the tests on the definitions of "
                               "your solution cells only (classes, functions, imports, "
                               f"constants); these statements were not run: {dropped}")
                cell.outputs.append(new_output("error", ename=ename, evalue=evalue,
                                               traceback=[f"{ename}: {evalue}"]))
        return nb, resources

    def _verdicts(self, plan, source_nb, ids, workdir: Path, secret: int) -> dict:
        """The replay's verdicts: judged (``judged``) for a notebook of the course manifest."""
        from ..manifest import notebook

        try:
            nb = notebook(ids["notebook"], ids["assignment"])
        except KeyError:
            nb = None
        warm = self._warm()
        try:
            if nb is None:
                if warm is not None and warm.can_show(str(workdir)):
                    from ..sandbox.warm import copy_workdir

                    with warm.directory("replay-") as root:
                        work = copy_workdir(workdir, Path(root) / "work")
                        shared = Path(root) / "shared"
                        shared.mkdir()
                        return run_plan(plan, workdir, timeout=self.timeout, directory=shared,
                                        warm=warm, copy=work)
                with self._sandbox(workdir) as wrap:
                    return run_plan(plan, workdir, timeout=self.timeout, wrap=wrap)
            from .judged import run_judged

            return run_judged(plan, source_nb, nb.checks, (*nb.weights, *nb.extra_files), workdir,
                              timeout=self.timeout, sandbox=self._sandbox, warm=warm,
                              secret=secret)
        except WarmUnavailable as exc:  # it stopped while running: the rest of the process goes cold
            from ..sandbox.warm import fail

            fail(str(exc), self.log)
            return self._verdicts(plan, source_nb, ids, workdir, secret)

    def _warm(self):
        """The warm sandbox (``autograder.sandbox.warm``) unless switched off or failed."""
        from ..sandbox import Sandbox, switched_off

        if switched_off():
            return None
        from ..sandbox.warm import available

        warm = available(Sandbox(config=self.config), self.log)
        if warm is not None and not warm.announced:
            warm.announced = True
            self.log.info("The replay's processes are forked from a warm sandbox (%s)", warm.staging)
        return warm

    def _sandbox(self, workdir: Path):
        """The sandbox the replay runs in: the same as the student kernels'."""
        import contextlib

        from ..sandbox import Sandbox, sandboxed_run, switched_off

        if switched_off():
            return contextlib.nullcontext(None)
        return sandboxed_run(Sandbox(config=self.config), str(workdir))
