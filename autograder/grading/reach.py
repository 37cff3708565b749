"""Which of a submission's definitions reach the grader's internals.

A definition that returns the grader's own answer (``checks._kl64(...)``, an oracle found
through ``sys.modules`` or ``importlib``) would pass every comparison with that answer. The
notebook's ``checks`` shows only the checks its cells call (``autograder.<notebook>``, the
manifest's ``api``); this module reads the submitted source, in the grader's process, and names
every top-level definition whose code reaches further: a name, an attribute, a string or an
import from the lists below, or a call of another definition that does. Every test cell that
uses such a definition earns none of its points, with a message that names the line
(``autograder.grading.preprocessors.ReplayChecks``).

This is a list of doors, not a proof: code that builds an attribute's name at run time
(``getattr(obj, "s" + "ys")``) is not found here (docs/security.md).
"""
from __future__ import annotations

import ast
from dataclasses import dataclass

# Names through which code reaches modules, frames and the interpreter's state.
NAMES = frozenset({
    "checks", "autograder", "importlib", "sys", "builtins", "__builtins__", "__import__",
    "globals", "locals", "vars", "eval", "exec", "compile", "breakpoint", "__loader__",
    "__spec__", "gc", "inspect", "ctypes",
})
# Attributes that lead from any object to modules, frames or globals.
ATTRIBUTES = frozenset({
    "sys", "__globals__", "__builtins__", "__subclasses__", "__import__", "f_globals",
    "f_locals", "f_back", "f_builtins", "gi_frame", "cr_frame", "ag_frame", "tb_frame",
    "__closure__", "__code__", "_getframe", "__loader__", "__spec__", "import_module",
    "get_objects", "get_referrers", "get_referents", "currentframe", "attrgetter",
    "methodcaller",
})
# ``X.modules`` is ``sys.modules`` when it is indexed or searched (``self.modules()``, the
# layers of an nn.Module, is a call and is fine).
_MODULES_LOOKUPS = frozenset({"get", "values", "items", "keys", "pop", "setdefault", "copy"})
# Modules whose import inside a function leads to the grader (top-level imports of anything
# but the allowed packages are not re-run at all).
MODULES = frozenset({"autograder", "importlib", "sys", "builtins", "gc", "inspect", "ctypes"})


@dataclass(frozen=True)
class Reach:
    """Where a definition reaches the grader's internals."""

    name: str     # the definition (class or function)
    where: str    # "cell <grade_id>, line <n>"
    what: str     # the code that reaches (``checks._kl64``), or the definition it calls


def _doors(node: ast.AST) -> list[tuple[int, str]]:
    """``(line, what)`` of every door in ``node``, in the order they are written."""
    found: list[tuple[int, int, str]] = []
    parents: dict[ast.AST, ast.AST] = {}
    for parent in ast.walk(node):
        for child in ast.iter_child_nodes(parent):
            parents[child] = parent
    for n in ast.walk(node):
        line, col = getattr(n, "lineno", 0), getattr(n, "col_offset", 0)
        if isinstance(n, ast.Name) and n.id in NAMES:
            found.append((line, col, n.id))
        elif isinstance(n, ast.Attribute):
            parent = parents.get(n)
            if n.attr in ATTRIBUTES:
                found.append((line, col, f".{n.attr}"))
            elif n.attr == "modules" and (
                    isinstance(parent, ast.Subscript) and parent.value is n
                    or isinstance(parent, ast.Attribute) and parent.attr in _MODULES_LOOKUPS):
                found.append((line, col, ".modules"))
        elif isinstance(n, ast.Constant) and isinstance(n.value, str) and (
                n.value in NAMES or n.value in ATTRIBUTES or "autograder" in n.value):
            found.append((line, col, repr(n.value)))
        elif isinstance(n, ast.Import):
            found += [(line, col, f"import {a.name}") for a in n.names
                      if a.name.split(".")[0] in MODULES]
        elif isinstance(n, ast.ImportFrom) and (n.module or "").split(".")[0] in MODULES:
            found.append((line, col, f"from {n.module} import ..."))
    return [(line, what) for line, _, what in sorted(found)]


def _defined(node: ast.stmt) -> str | None:
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return node.name
    if isinstance(node, (ast.Assign, ast.AnnAssign)):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        names = [t.id for t in targets if isinstance(t, ast.Name)]
        return names[0] if names else None
    return None


def reaching(cells: list[tuple[str, list[ast.stmt]]]) -> dict[str, Reach]:
    """``{definition: Reach}`` for the top-level definitions of ``cells`` (``(where,
    statements)``: the statements the replay keeps of each submitted cell, with the cell's
    line numbers, in notebook order) that reach the grader's internals, directly or by using
    another such definition."""
    found: dict[str, Reach] = {}
    uses: dict[str, tuple[str, set[str]]] = {}
    for where, statements in cells:
        for node in statements:
            name = _defined(node)
            if name is None:
                continue
            doors = _doors(node)
            if doors:
                line, what = doors[0]
                found[name] = Reach(name, f"{where}, line {line}", what)
            else:
                found.pop(name, None)  # redefined without a door
            uses[name] = (where, {n.id for n in ast.walk(node) if isinstance(n, ast.Name)})
    changed = True
    while changed:  # a definition that uses one that reaches, reaches too
        changed = False
        for name, (where, names) in uses.items():
            if name in found:
                continue
            via = sorted(names & set(found) - {name})
            if via:
                found[name] = Reach(name, where, f"it uses {via[0]}, which {_says(found[via[0]])}")
                changed = True
    return found


def _says(reach: Reach) -> str:
    return f"reaches the grader's internals ({reach.where}: {reach.what})"


def message(reach: Reach) -> str:
    """The failure of a test cell that uses ``reach.name``."""
    return (f"{reach.name} {_says(reach)}. A definition must compute its results itself: code "
            "that uses the grader's checks, modules or the interpreter's internals (checks, "
            "autograder, sys, importlib, globals, ...) earns none of this cell's points.\n"
            f"  hint: remove that code from {reach.name}; only the checks call the grader.")


def used_by(test_source: str, found: dict[str, Reach]) -> Reach | None:
    """The first definition of ``found`` that a test cell's source uses, or None."""
    try:
        tree = ast.parse(test_source)
    except SyntaxError:
        return None
    for n in ast.walk(tree):
        if isinstance(n, ast.Name) and n.id in found:
            return found[n.id]
    return None
