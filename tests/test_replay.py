"""Does the replay keep only the submitted definitions, and score test cells from a fresh
process that the notebook's state cannot reach?"""
from __future__ import annotations

import nbformat
import pytest
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
