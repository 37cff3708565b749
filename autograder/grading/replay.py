"""Re-run a notebook's test cells on the submitted definitions, in a fresh process.

A student's notebook runs in the same kernel as the test cells, so code in it can patch
what the tests rely on (``torch.allclose``, the check functions, ``builtins``). The points
must not depend on that state. :func:`build_plan` assembles a program from two sources:

- from the **source** notebook (trusted, read from ``solutions/``): the read-only cells
  (imports, data, loading of the weights) and the test cells with their hidden tests;
- from the **submission**: only the *definitions* of its solution cells (imports of known
  packages, classes and functions, constant assignments) and the constants of the settings
  cell. Every other top-level statement (training loops, patches of other modules, calls) is
  dropped, so nothing the student's cells do at top level runs before the checks.

:func:`run_plan` executes the program in a new Python interpreter (in the grading sandbox
when one is configured) that imports the checks before any student code, and returns one
verdict per test cell. In that process the trained-model and replayable checks only record
outputs: ``autograder.grading.judged`` runs the rest of the evaluation and a judge that never
runs student code, and the ``ReplayChecks`` preprocessor (``autograder.grading.preprocessors``)
makes the combined verdicts the ones nbgrader scores.
"""
from __future__ import annotations

import ast
import contextlib
import json
import math
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..manifest import settings_names

# Top-level packages a solution cell may import. Importing runs the imported module's code,
# so a module shipped with the submission must not be importable this way.
ALLOWED_IMPORTS = frozenset({
    "torch", "numpy", "math", "collections", "functools", "itertools", "typing",
    "dataclasses", "data_tools", "tqdm", "sklearn", "scipy", "matplotlib", "random",
    "statistics", "operator", "abc", "enum", "copy", "warnings", "lightning",
})
# Decorators that only mark methods.
ALLOWED_DECORATORS = frozenset({"staticmethod", "classmethod", "property"})
# Names a settings constant may take: the settings of every notebook of the course manifest.
SETTINGS_NAMES = settings_names()
# Replay cells: read-only cells of the source that test cells depend on, by grade_id suffix.
REPLAY_SUFFIXES = ("_setup", "_data")
DEFAULT_TIMEOUT = 600


class ReplayError(RuntimeError):
    """The replay could not run (not: a check failed)."""


# Calls allowed in a constant assignment: constructors of layers and plain builtins, which
# change no global state (``act = nn.ReLU()``, ``sizes = list(range(3))``).
# Layer classes are allowed only one level down (``nn.Linear``), so that module-level
# functions with global effects (``nn.modules.module.register_module_forward_hook``) are not.
_LAYER = re.compile(r"^(nn|torch\.nn)\.[A-Z]\w*$|^(F|math)\.\w+$")
ALLOWED_CALLS = frozenset({"int", "float", "bool", "str", "tuple", "list", "dict", "range",
                           "len", "min", "max", "abs", "round", "sum", "zip", "enumerate"})
_UNSAFE = (ast.Lambda, ast.NamedExpr, ast.Await, ast.Yield, ast.YieldFrom, ast.ListComp,
           ast.SetComp, ast.DictComp, ast.GeneratorExp, ast.Subscript, ast.Starred)


def _has_call(node: ast.AST) -> bool:
    """Does evaluating ``node`` call anything beyond layer constructors and plain builtins?"""
    for n in ast.walk(node):
        if isinstance(n, _UNSAFE):
            return True
        if isinstance(n, ast.Call):
            name = _dotted(n.func) or ""
            if not (name in ALLOWED_CALLS or _LAYER.match(name)):
                return True
    return False


def _dotted(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return f"{base}.{node.attr}" if base else None
    return None


def _safe_assign(node: ast.stmt) -> bool:
    if isinstance(node, ast.Assign):
        targets, value = node.targets, node.value
    elif isinstance(node, ast.AnnAssign):
        targets, value = [node.target], node.value
        if value is None:
            return True
    else:
        return False
    return all(isinstance(t, ast.Name) for t in targets) and not _has_call(value)


def _safe_function(node: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    args = node.args
    defaults = [*args.defaults, *[d for d in args.kw_defaults if d is not None]]
    annotations = [a.annotation for a in [*args.posonlyargs, *args.args, *args.kwonlyargs]
                   if a.annotation is not None]
    if node.returns is not None:
        annotations.append(node.returns)
    return (all(_dotted(d) in ALLOWED_DECORATORS for d in node.decorator_list)
            and not any(_has_call(d) for d in [*defaults, *annotations]))


def _sanitize_body(body: list[ast.stmt], in_class: bool) -> tuple[list[ast.stmt], list[ast.stmt]]:
    kept, dropped = [], []
    for node in body:
        ok = False
        if isinstance(node, ast.Import) and not in_class:
            allowed = [a for a in node.names if a.name.split(".")[0] in ALLOWED_IMPORTS]
            ok = len(allowed) == len(node.names)
            if allowed and not ok:  # keep the allowed part of `import torch, evil`
                kept.append(ast.Import(names=allowed, lineno=node.lineno, col_offset=0))
        elif isinstance(node, ast.ImportFrom) and not in_class:
            ok = node.level == 0 and (node.module or "").split(".")[0] in ALLOWED_IMPORTS
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            ok = _safe_function(node)
        elif isinstance(node, ast.ClassDef):
            ok = (not node.decorator_list and not node.keywords
                  and all(_dotted(b) is not None for b in node.bases))
            if ok:
                node.body, inner = _sanitize_body(node.body, in_class=True)
                dropped += inner
                if not node.body:
                    node.body = [ast.Pass()]
        elif isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            ok = True  # a docstring
        elif isinstance(node, ast.Pass):
            ok = True
        else:
            ok = _safe_assign(node)
        if ok:
            kept.append(node)
        else:
            dropped.append(node)
    return kept, dropped


def definitions(source: str) -> tuple[str, list[int]]:
    """The definitions of a solution cell, and the line numbers of the dropped statements.

    A cell that does not parse gives no definitions (the kernel run shows the syntax error).
    """
    code, dropped = _definitions(source)
    return code, [node.lineno for node in dropped]


def _kept(source: str, leave_out: frozenset[str] = frozenset()
          ) -> tuple[list[ast.stmt], list[ast.stmt]]:
    """The top-level statements of a cell that the replay keeps and those it drops, with the
    cell's line numbers; assignments to the names ``leave_out`` are left out silently (the
    settings that the plan binds itself). A cell that does not parse keeps nothing."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return [], []
    body = [node for node in tree.body if not (leave_out and _assigns_only(node, leave_out))]
    return _sanitize_body(body, in_class=False)


def kept_statements(source: str) -> list[ast.stmt]:
    """The top-level statements of a cell that the replay keeps, with the cell's line numbers."""
    return _kept(source)[0]


def _definitions(source: str, leave_out: frozenset[str] = frozenset()
                 ) -> tuple[str, list[ast.stmt]]:
    """The kept code of a cell and its dropped top-level statements (see :func:`_kept`)."""
    kept, dropped = _kept(source, leave_out)
    return ast.unparse(ast.Module(kept, [])), dropped


def _assigns_only(node: ast.stmt, names: frozenset[str]) -> bool:
    """Does ``node`` assign nothing but some of ``names``?"""
    bound = _bound_names(node)
    return isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)) and bool(bound) \
        and set(bound) <= names


def _bound_names(node: ast.stmt) -> list[str]:
    """The global names a top-level statement binds."""
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return [node.name]
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        return [(a.asname or a.name.split(".")[0]) for a in node.names if a.name != "*"]
    targets: list[ast.AST] = []
    if isinstance(node, ast.Assign):
        targets = node.targets
    elif isinstance(node, (ast.AnnAssign, ast.AugAssign)):
        targets = [node.target]
    elif isinstance(node, (ast.For, ast.AsyncFor)):
        targets = [node.target]
    elif isinstance(node, (ast.With, ast.AsyncWith)):
        targets = [item.optional_vars for item in node.items if item.optional_vars is not None]
    names = []
    for target in targets:
        names += [n.id for n in ast.walk(target) if isinstance(n, ast.Name)]
    if isinstance(node, (ast.If, ast.Try, ast.While, ast.For, ast.AsyncFor, ast.With, ast.AsyncWith)):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.stmt):
                names += _bound_names(child)
    return list(dict.fromkeys(names))


def _unbound(source: str, dropped: list[ast.stmt], where: str) -> tuple[tuple[str, str], ...]:
    """``(name, where it was set)`` for every global name that a dropped statement binds."""
    lines = source.splitlines()
    found = []
    for node in dropped:
        text = lines[node.lineno - 1].strip() if 0 < node.lineno <= len(lines) else ""
        for name in _bound_names(node):
            found.append((name, f"{where}, line {node.lineno}: {text[:60]}"))
    return tuple(found)


# Marks a setting left out of the plan as a comment line of its settings step (see ``settings``).
_REFUSED = "# refused, not a finite number: "


def settings(source: str) -> str:
    """The known settings (literal constants) assigned in the student's settings cell. A number
    that is not finite (``1e999`` is inf) is left out, and recorded as a comment line that
    :func:`unbound_note` reads."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return ""
    lines = []
    for node in tree.body:
        if (isinstance(node, ast.Assign) and len(node.targets) == 1
                and isinstance(node.targets[0], ast.Name)
                and node.targets[0].id in SETTINGS_NAMES):
            try:
                value = ast.literal_eval(node.value)
            except (ValueError, TypeError, RecursionError, MemoryError):
                continue
            if isinstance(value, float) and not math.isfinite(value):
                text = " ".join((ast.get_source_segment(source, node) or "").split())
                lines.append(f"{_REFUSED}{text[:80]} (line {node.lineno})")
            elif isinstance(value, (bool, int, float)):
                lines.append(f"{node.targets[0].id} = {value!r}")
    return "\n".join(lines)


# The device every replaying process runs the student's definitions on (``device`` of the
# settings cell: the notebooks train where they like, the grader evaluates on the CPU).
GRADING_DEVICE = "cpu"


def trusted_settings(source: str) -> str:
    """The settings cell of the source notebook as the grader binds it: its imports, and every
    constant it assigns at top level as a literal (computed ones, such as ``n_epochs`` from
    the data source, evaluated here, in the grader's process: the cell is trusted), with
    ``device`` set to the grading device."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return ""
    names = [n for node in tree.body if isinstance(node, (ast.Assign, ast.AnnAssign))
             for n in _bound_names(node)]
    namespace: dict = {}
    with contextlib.suppress(Exception):
        exec(compile(source, "<settings>", "exec"), namespace)  # noqa: S102 - trusted source
    lines = [ast.unparse(node) for node in tree.body
             if isinstance(node, (ast.Import, ast.ImportFrom))]
    for name in dict.fromkeys(names):
        value = GRADING_DEVICE if name == "device" else namespace.get(name, _MISSING)
        if value is not _MISSING and (value is None or type(value) in (bool, int, float, str)):
            lines.append(f"{name} = {value!r}")
    return "\n".join(lines)


_MISSING = object()
# Assignments to ``device`` in student code are left out: the grader binds it.
_DEVICE = frozenset({"device"})


@dataclass
class Step:
    kind: str          # "trusted", "student" or "test"
    code: str
    grade_id: str = ""
    dropped: tuple = ()  # line numbers of student statements that were left out
    # (name, where) of every name that a left-out student statement would have bound
    unbound: tuple = ()
    source: str = ""   # the submitted cell's own text (for messages with its line numbers)


def _is_settings_cell(cell) -> bool:
    return (cell.cell_type == "code" and "nbgrader" not in cell.metadata
            and "skip_training" in cell.source)


# The plan's anchor for the cells of a notebook that come before its first cell with an id.
_SETTINGS_ANCHOR = "settings"


def _added_cells(submitted_nb, leave_out: frozenset[str]) -> dict[str, list[Step]]:
    """The definitions of the code cells the student added (and of their settings cell), by
    the cell they follow: the grade_id of the last cell with one above them, or
    ``_SETTINGS_ANCHOR``. One step per kept statement, so that a statement that fails (it
    needs a value that only the dropped code computed) loses nothing else."""
    added: dict[str, list[Step]] = {}
    anchor = ""
    settings_seen = False
    for index, cell in enumerate(submitted_nb.cells, start=1):
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("grade_id"):
            anchor = meta["grade_id"]
            continue
        if cell.cell_type != "code":
            continue
        is_settings = _is_settings_cell(cell) and not settings_seen
        settings_seen = settings_seen or is_settings
        where = "your settings cell" if is_settings else f"your own cell {index} of the notebook"
        kept, dropped = _kept(cell.source, leave_out if is_settings else _DEVICE)
        steps = added.setdefault(_SETTINGS_ANCHOR if is_settings else anchor, [])
        label = f"added-{index}"
        unbound = _unbound(cell.source, dropped, where)
        for node in kept:
            steps.append(Step("student", ast.unparse(node), label, source=cell.source))
        if unbound:
            steps.append(Step("student", "", label, unbound=unbound))
    return added


def build_plan(source_nb, submitted_nb) -> list[Step]:
    """The program to replay: trusted cells from the source, definitions from the submission.

    The submission's definitions are bound where the notebook binds them when it runs top to
    bottom: those of each solution cell at that cell, those of every code cell the student
    added (imports, constants, helpers) after the cell it follows, the settings at the
    settings cell (with ``device`` as the grading device).
    """
    submitted = {}
    student_settings = ""
    for cell in submitted_nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if cell.cell_type == "code" and meta.get("solution") and not meta.get("grade"):
            submitted.setdefault(meta.get("grade_id"), cell.source)
        elif _is_settings_cell(cell) and not student_settings:
            student_settings = settings(cell.source)
    source_settings = next((c.source for c in source_nb.cells if _is_settings_cell(c)), "")
    bound_by_settings = frozenset(
        n for node in _parse(source_settings) for n in _bound_names(node)) | {"device"}
    added = _added_cells(submitted_nb, bound_by_settings)
    steps = [*added.pop("", [])]
    for cell in source_nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        grade_id = meta.get("grade_id", "")
        if cell.cell_type != "code":
            steps += added.pop(grade_id, []) if grade_id else []
            continue
        if _is_settings_cell(cell):
            steps.append(Step("trusted", trusted_settings(cell.source)))
            if student_settings:
                steps.append(Step("student", student_settings))
            steps += added.pop(_SETTINGS_ANCHOR, [])
        elif meta.get("grade"):
            steps.append(Step("test", cell.source, grade_id))
        elif meta.get("solution"):
            source = submitted.get(grade_id, "")
            code, dropped = _definitions(source, _DEVICE)
            steps.append(Step("student", code, grade_id, tuple(n.lineno for n in dropped),
                              _unbound(source, dropped, f"cell {grade_id}"), source))
        elif meta.get("locked") and grade_id.endswith(REPLAY_SUFFIXES):
            steps.append(Step("trusted", cell.source, grade_id))
        if grade_id:
            steps += added.pop(grade_id, [])
    for rest in added.values():  # after cells the source does not have
        steps += rest
    return steps


def _parse(source: str) -> list[ast.stmt]:
    try:
        return ast.parse(source).body
    except SyntaxError:
        return []


def internals_verdicts(steps: list[Step], verdicts: dict[str, dict]) -> dict[str, dict]:
    """Failed verdicts for the test cells (of ``verdicts``) that use a submitted definition
    that reaches the grader's internals (``autograder.grading.reach``), whatever they scored."""
    from .reach import message, reaching, used_by

    def where(step: Step) -> str:
        if step.grade_id.startswith("added-"):
            return f"your own cell {step.grade_id.removeprefix('added-')} of the notebook"
        return f"cell {step.grade_id}" if step.grade_id else "your settings cell"

    cells = dict.fromkeys((where(s), s.source) for s in steps if s.kind == "student" and s.source)
    found = reaching([(place, kept_statements(source)) for place, source in cells])
    failed = {}
    for step in steps:
        reach = used_by(step.code, found) if found and step.kind == "test" else None
        if reach is not None and step.grade_id in verdicts:
            failed[step.grade_id] = {"passed": False, "output": "",
                                     "error": f"CheckFailure: {message(reach)}"}
    return failed


def unbound_note(error: str, steps: list[Step]) -> str:
    """A line for a ``NameError`` in ``error`` whose name the student's code sets in a
    statement that the grader does not re-run, else for the settings it refused (or ``""``)."""
    where = {name: place for step in steps for name, place in step.unbound}
    for name in re.findall(r"name '(\w+)' is not defined", error):
        if name in where:
            return (f"note: '{name}' is set by a top-level statement that the grader does not "
                    f"re-run ({where[name]}). The grader re-runs only imports of known packages, "
                    "classes, functions and constant values; compute it inside the function or "
                    "class that uses it, or make it a constant.")
    refused = [line.removeprefix(_REFUSED) for step in steps if step.kind == "student"
               and not step.grade_id for line in step.code.splitlines() if line.startswith(_REFUSED)]
    if refused:
        return (f"note: the grader refused {'; '.join(refused)} of your settings cell: not a "
                "finite number (inf or nan); the tests ran with the notebook's own value")
    return ""


def trusted_imports(steps: list[Step]) -> tuple[str, ...]:
    """The modules the trusted cells of a plan import (what a warm sandbox may import ahead)."""
    found: list[str] = []
    for step in steps:
        if step.kind != "trusted":
            continue
        try:
            tree = ast.parse(step.code)
        except SyntaxError:
            continue
        for node in tree.body:
            if isinstance(node, ast.Import):
                found += [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                found.append(node.module)
    return tuple(dict.fromkeys(found))


def run_plan(steps: list[Step], workdir: Path, *, timeout: float = DEFAULT_TIMEOUT,
             wrap=None, directory: Path | None = None, warm=None,
             copy: Path | None = None) -> dict[str, dict]:
    """Execute the plan in a fresh interpreter with ``workdir`` as working directory.

    ``wrap(argv, cwd, shared_dir) -> argv`` puts the command into the sandbox; with ``warm``
    (an ``autograder.sandbox.warm.WarmSandbox``; ``directory`` and ``copy``, a copy of
    ``workdir`` that the process sees at ``workdir``'s path, lie under its staging root) the
    process is forked, sandboxed, from its pre-imported server instead. ``directory``
    (writable by the interpreter; a temporary one by default) receives the plan, the verdicts
    and what the checks record (``autograder.checks.evidence``), and holds the inputs the
    grader wrote for them. Returns ``{grade_id: {"passed": bool, "error": str, "output": str}}`` for every
    test step that ran: the verdicts of the process that ran student code, in which the
    trained-model and replayable checks decide nothing (``autograder.grading.judged``).
    """
    with contextlib.ExitStack() as stack:
        if directory is None:
            directory = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="replay-")))
            os.chmod(directory, 0o777)
        tmp = Path(directory)
        plan = tmp / "plan.json"
        plan.write_text(json.dumps([{"kind": s.kind, "code": s.code, "grade_id": s.grade_id}
                                    for s in steps]))
        os.chmod(plan, 0o644)
        result = tmp / "result.json"
        if warm is not None:
            done = warm.run("autograder.grading.replay_child", [str(plan), str(result)],
                            cwd=str(workdir), writable=[str(tmp)], binds={str(workdir): str(copy)},
                            timeout=timeout, preload=trusted_imports(steps))
            returncode, output, timed_out = done.returncode, done.output, done.timed_out
        else:
            argv = [sys.executable, "-m", "autograder.grading.replay_child", str(plan), str(result)]
            if wrap is not None:
                argv = wrap(argv, str(workdir), str(tmp))
            env = dict(os.environ, MPLBACKEND="Agg", PYTHONDONTWRITEBYTECODE="1")
            env["NBGRADER_EXECUTION"] = "autograde"
            try:
                proc = subprocess.run(argv, cwd=workdir, env=env, capture_output=True, text=True,
                                      timeout=timeout)
                returncode, output, timed_out = proc.returncode, proc.stderr or proc.stdout, False
            except subprocess.TimeoutExpired:
                returncode, output, timed_out = -9, "", True
        if timed_out:
            raise ReplayError(f"the re-run of the tests took longer than {timeout:.0f} s")
        if not result.exists() or result.is_symlink():
            tail = output.strip().splitlines()[-3:]
            raise ReplayError(f"the re-run of the tests ended without a result "
                              f"(exit code {returncode}): {' | '.join(tail)[:500]}")
        with open(result) as f:  # at most 50 MB, however large the file
            verdicts = json.loads(f.read(50_000_000))
    if not isinstance(verdicts, dict):
        raise ReplayError("the re-run of the tests wrote a malformed result")
    return {str(k): {"passed": v.get("passed") is True, "error": str(v.get("error", ""))[:20000],
                     "output": str(v.get("output", ""))[-4000:]}
            for k, v in verdicts.items() if isinstance(v, dict)}
