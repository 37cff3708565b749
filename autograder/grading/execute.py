"""Run a notebook for grading so that a crash costs only the cells it prevented.

nbgrader's ``Execute`` lets one dead kernel (out of memory, ``os._exit``, a kill signal)
or one cell that ignores the interrupt fail the whole notebook: nbgrader then deletes the
student's autograded folder and every score of the submission reads 0. ``GradingExecute``
instead marks the cell that was running, and every later code cell, with an error output
``GradingFailed: grading failed: <reason>``, so the earlier cells keep their grades, and
lists the failures in ``resources["autograder"]["failures"]`` for the report.
"""
from __future__ import annotations

import math
from time import monotonic

from nbclient.client import NotebookClient
from nbclient.exceptions import CellTimeoutError, DeadKernelError
from nbformat import NotebookNode
from nbgrader.preprocessors import Execute
from traitlets import Integer

from ..sandbox import SandboxUnavailable

GRADING_FAILED = "GradingFailed"
TIMEOUT_ENAME = "CellTimeoutError"


def failure_output(reason: str) -> NotebookNode:
    """An error output that reads 'GradingFailed: grading failed: <reason>'."""
    text = f"grading failed: {reason}"
    return NotebookNode(output_type="error", ename=GRADING_FAILED, evalue=text,
                        traceback=[f"\x1b[0;31m{GRADING_FAILED}\x1b[0m: {text}"])


def _grade_id(cell: NotebookNode) -> str | None:
    return cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")


def plain_counts(cell: NotebookNode) -> None:
    """Make the cell's and its results' ``execution_count`` an int >= 0 or None.

    The kernel reports them, and code in it can forge what it reports (a string of markup):
    nbconvert would then find the notebook invalid after this step and nbgrader would drop the
    student's whole autograded notebook. A prompt number grades nothing.
    """
    def plain(value):
        return value if type(value) is int and value >= 0 else None

    if "execution_count" in cell:
        cell.execution_count = plain(cell.execution_count)
    for output in cell.get("outputs", []):
        if output.get("output_type") == "execute_result":
            output.execution_count = plain(output.get("execution_count"))


def _size(n: int) -> str:
    return f"{n / 1024 ** 3:g} GiB" if n >= 1024 ** 3 else f"{n / 1024 ** 2:g} MiB"


class GradingExecute(Execute):
    """nbgrader's Execute, but a dead or unresponsive kernel fails only the cells it could not run."""

    notebook_timeout = Integer(
        1800, allow_none=True,
        help="Wall-clock budget in seconds for all cells of one notebook; the cells that "
        "would start after it is used up are failed without running. None: no budget.").tag(config=True)

    def preprocess(self, nb, resources=None, km=None):
        NotebookClient.__init__(self, nb, km)
        self.reset_execution_trackers()
        self._check_assign_resources(resources)
        self.failures: list[dict] = []
        self.km = self.create_kernel_manager() if self.km is None else self.km
        manager = self.km
        cell_timeout = self.timeout
        started = False
        try:
            with self.setup_kernel():
                info_msg = self.wait_for_reply(self.kc.kernel_info())
                self.nb.metadata["language_info"] = info_msg["content"]["language_info"]
                started = True
                self._run_cells(cell_timeout)
        except Exception as e:
            if started or isinstance(e, SandboxUnavailable) or not getattr(manager, "sandboxed", False):
                raise
            tail = getattr(manager, "last_log", "").strip()[-1000:]
            raise SandboxUnavailable(f"the kernel did not start in the sandbox ({type(e).__name__}: {e})"
                                     + (f"; its last output was:\n{tail}" if tail else "")) from e
        finally:
            self.timeout = cell_timeout
        self.set_widgets_metadata()
        self.resources.setdefault("autograder", {})["failures"] = self.failures
        return self.nb, self.resources

    def _fail(self, index: int, cell: NotebookNode, reason: str) -> None:
        cell.outputs.append(failure_output(reason))
        self.failures.append({"cell": index, "grade_id": _grade_id(cell), "reason": reason})
        self.log.error("Cell %d: grading failed: %s", index, reason)

    def _run_cells(self, cell_timeout: int | None) -> None:
        deadline = monotonic() + self.notebook_timeout if self.notebook_timeout else None
        broken = None  # why the remaining cells cannot run
        for index, cell in enumerate(self.nb.cells):
            if cell.cell_type != "code" or not cell.source.strip():
                continue
            if broken is None and deadline is not None:
                remaining = deadline - monotonic()
                if remaining < 1:
                    broken = f"the notebook used up its time budget of {self.notebook_timeout} s"
                else:
                    self.timeout = max(1, math.ceil(min(cell_timeout or math.inf, remaining)))
            if broken is not None:
                cell.outputs = []
                self._fail(index, cell, f"not run, because {broken}")
                continue
            try:
                self.preprocess_cell(cell, self.resources, index)
            except DeadKernelError:
                why = self.km.exit_description() if hasattr(self.km, "exit_description") else ""
                broken = f"the kernel died in cell [{index}]" + (f" ({why})" if why else "")
                self._fail(index, cell, broken + self._death_hint(why))
                self.shutdown_kernel = "immediate"
            except CellTimeoutError:
                broken = (f"cell [{index}] did not stop when interrupted after {self.timeout} s, "
                          "so the kernel was killed")
                self._fail(index, cell, broken)
                self.shutdown_kernel = "immediate"
            else:
                self._note_limits(index, cell)
            plain_counts(cell)

    def _note_limits(self, index: int, cell: NotebookNode) -> None:
        for output in cell.outputs:
            if output.output_type != "error":
                continue
            if output.ename == TIMEOUT_ENAME:
                self._fail(index, cell, f"this cell did not finish within the time limit of {self.timeout} s")
                return
            if output.ename.endswith("MemoryError"):  # numpy raises a subclass
                limit = getattr(getattr(self.km, "sandbox", None), "memory_limit", None)
                self._fail(index, cell, "this cell ran out of memory" +
                           (f" (the limit is {_size(limit)} per process)" if limit else ""))
                return

    def _death_hint(self, why: str) -> str:
        sandbox = getattr(self.km, "sandbox", None)
        if sandbox is None or not why.startswith("killed"):
            return ""
        if "SIGXCPU" in why:
            return f"; it used up the CPU-time limit of {sandbox.cpu_time_limit} s"
        if "SIGKILL" in why:
            return (f"; the usual causes are the memory limit ({_size(sandbox.memory_limit)} per "
                    f"process, or the machine running out of memory) and the CPU-time limit "
                    f"({sandbox.cpu_time_limit} s)")
        return ""
