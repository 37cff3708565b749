"""Does the replay keep only the submitted definitions, and score test cells from a fresh
process that the notebook's state cannot reach?"""
from __future__ import annotations

import nbformat
import pytest
import torch
from conftest import SOLUTIONS

from autograder.grading.replay import Step, build_plan, definitions, run_plan, settings


@pytest.mark.parametrize("statement", [
    "torch.allclose = lambda *a, **k: True",
    "x = setattr(torch, 'allclose', None)",
    "import builtins; builtins.print = None",
    "import evil_module",
    "from . import sibling",
    "for i in range(3): pass",
    "train(encoder)",
    "y = nn.modules.module.register_module_forward_hook(print)",
    "z = [f() for f in hooks]",
    "@register\ndef f(): pass",
    "def f(x=exec('1')): pass",
])
def test_top_level_statements_are_dropped(statement):
    """Is every statement that could act at definition time left out?"""
    code, dropped = definitions(statement)
    assert code.strip() == "", code
    assert dropped and dropped[0] in (1, 2)


def test_definitions_are_kept():
    """Are classes, functions, allowed imports and layer constants kept as written?"""
    source = ("import torch\nimport torch.nn as nn\nfrom torch.nn import functional as F\n"
              "HIDDEN = 2 * 64\nACT = nn.ReLU()\n"
              "class Encoder(nn.Module):\n    SIZE = 3\n    def forward(self, x):\n"
              "        return x\n    @staticmethod\n    def helper(n=HIDDEN):\n        return n\n")
    code, dropped = definitions(source)
    assert dropped == []
    namespace: dict = {}
    exec(code, namespace)
    assert namespace["HIDDEN"] == 128 and namespace["Encoder"].helper() == 128


def test_class_body_statements_are_filtered():
    """Is code in a class body that runs at class creation left out, the methods kept?"""
    code, dropped = definitions("class A:\n    torch.x = 1\n    def f(self):\n        return 1\n")
    assert "torch.x" not in code and "def f" in code and dropped == [2]


def test_settings_keep_only_literal_constants():
    """Are only known settings with literal values taken from the student's settings cell?"""
    text = settings("skip_training = False\nn_components = 5\nseed = int('3')\nevil = 1\n"
                    "learning_rate = -1e-3")
    assert text.splitlines() == ["skip_training = False", "n_components = 5",
                                 "learning_rate = -0.001"]


def test_plan_of_the_ae_solution():
    """Does the AE plan hold the trusted cells, the student's definitions and every test cell?"""
    nb = nbformat.read(SOLUTIONS / "ae.ipynb", as_version=4)
    plan = build_plan(nb, nb)
    kinds = [(s.kind, s.grade_id) for s in plan]
    assert ("test", "test_ae_encoder") in kinds and ("test", "test_ae_probe") in kinds
    assert ("trusted", "ae_setup") in kinds and ("student", "ae_encoder") in kinds
    training = next(s for s in plan if s.grade_id == "ae_training")
    assert "optimizer" not in training.code  # the training loop is not replayed


@pytest.mark.slow
def test_patch_in_a_solution_cell_does_not_reach_the_checks(tmp_path):
    """Does a top-level patch of torch.allclose in a solution cell stay out of the replay, and
    does a passing test cell's verdict carry what it printed?"""
    steps = [
        Step("student", "import torch\ntorch.allclose = lambda *a, **k: True"),
        Step("test", "import torch\nassert not torch.allclose(torch.zeros(1), torch.ones(1))\n"
                     "print('checked')", "t1"),
        Step("test", "raise AssertionError('expected failure')", "t2"),
    ]
    plan = [Step(s.kind, definitions(s.code)[0] if s.kind == "student" else s.code, s.grade_id)
            for s in steps]
    verdicts = run_plan(plan, tmp_path)
    assert verdicts["t1"] == {"passed": True, "error": "", "output": "checked\n"}
    assert verdicts["t2"] == {"passed": False, "error": "AssertionError: expected failure",
                              "output": ""}


def _ae_with(cells: dict[str, str] = {}, added: tuple = ()):  # noqa: B006 - read only
    """The AE solution notebook with solution cells replaced and student cells added."""
    from autograder.grading.course import add_cell, fill

    nb = fill(nbformat.read(SOLUTIONS / "ae.ipynb", as_version=4), cells)
    for after, source in reversed(added):
        nb = add_cell(nb, after, source)
    return nb


def _bound(plan) -> dict:
    """What the student's steps and the settings bind, run as the replay runs them."""
    namespace: dict = {}
    exec("import torch\nimport torch.nn as nn", namespace)
    for step in plan:
        if step.kind == "student" or (step.kind == "trusted" and not step.grade_id):
            try:
                exec(step.code, namespace)
            except Exception:  # noqa: BLE001, S110
                pass
    return namespace


def test_device_and_computed_settings_are_bound():
    """Is `device` bound to the grading CPU, and a setting the cell computes (n_epochs from the
    data source) bound to its value, in the settings the replay and the judge run?"""
    nb = nbformat.read(SOLUTIONS / "ae.ipynb", as_version=4)
    (settings_step,) = [s for s in build_plan(nb, nb) if s.kind == "trusted" and not s.grade_id]
    namespace: dict = {}
    exec(settings_step.code, namespace)
    assert namespace["device"] == "cpu"
    assert isinstance(namespace["n_epochs"], int) and namespace["seed"] == 0


def test_a_students_own_cells_are_bound_where_they_stand():
    """Are the imports, constants and helpers of a cell the student added bound before the
    solution cells below it (and its other statements left out, each name recorded)?"""
    own = ("import numpy as np\nimport copy\nSCALE = 2\n\ndef helper(x):\n    return x * SCALE\n\n"
           "print('hello')\ndata = np.zeros(3)\nLATE = data\n")
    encoder = ("class Encoder(nn.Module):\n    def __init__(self, n_components):\n"
               "        super().__init__()\n        self.f = nn.Linear(784, n_components)\n\n"
               "    def forward(self, x):\n        return helper(self.f(x.flatten(1).to(device)))\n")
    plan = build_plan(nbformat.read(SOLUTIONS / "ae.ipynb", as_version=4),
                      _ae_with({"ae_encoder": encoder}, (("ae_setup", own),)))
    order = [s.grade_id for s in plan]
    first_added = next(i for i, s in enumerate(plan) if s.code == "import numpy as np")
    assert plan[first_added].grade_id.startswith("added-")
    assert order.index("ae_setup") < first_added < order.index("ae_encoder")
    namespace = _bound(plan)
    assert namespace["SCALE"] == 2 and "copy" in namespace and "data" not in namespace
    out = namespace["Encoder"](3)(torch.ones(2, 1, 28, 28))
    assert out.shape == (2, 3)
    unbound = dict(pair for s in plan for pair in s.unbound)
    assert "data" in unbound and "print" not in unbound


def test_a_name_left_out_is_explained():
    """Does a NameError for a name that a left-out statement sets say which statement, and
    does a NameError for any other name get no such note?"""
    from autograder.grading.replay import unbound_note

    own = "pixel_mean = float(trainset.x.mean())\n"
    plan = build_plan(nbformat.read(SOLUTIONS / "ae.ipynb", as_version=4),
                      _ae_with(added=(("ae_data", own),)))
    note = unbound_note("CheckFailure: raised NameError: name 'pixel_mean' is not defined", plan)
    assert "'pixel_mean' is set by a top-level statement that the grader does not re-run" in note
    assert "line 1: pixel_mean = float(trainset.x.mean())" in note
    assert unbound_note("NameError: name 'other' is not defined", plan) == ""


def test_student_device_assignments_are_left_out():
    """Does a `device = "cuda"` in the student's code leave the grader's device as it is?"""
    own = 'device = "cuda"\nSIZE = 3\n'
    plan = build_plan(nbformat.read(SOLUTIONS / "ae.ipynb", as_version=4),
                      _ae_with(added=(("ae_setup", own),)))
    namespace = _bound(plan)
    assert namespace["device"] == "cpu" and namespace["SIZE"] == 3
