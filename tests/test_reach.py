"""Does the replay's reading of a submission name every definition that reaches the grader's
internals (its checks' oracles and references, modules, frames), and only those?"""
from __future__ import annotations

import pytest

from autograder.grading.reach import message, reaching, used_by
from autograder.grading.replay import Step, internals_verdicts, kept_statements


def _reaching(cells):
    """:func:`reaching` of ``(where, source)`` pairs, each read as the replay keeps it."""
    return reaching([(where, kept_statements(source)) for where, source in cells])


KL = "def loss_kl(z_mean, z_logvar):\n    return {}\n"


@pytest.mark.parametrize("body", [
    "checks._kl64(z_mean, z_logvar)",                                   # the notebook's checks
    "__import__('autograder.checks.vae')._kl64(z_mean, z_logvar)",
    "torch.sys.modules['autograder.checks.vae']._kl64(z_mean, z_logvar)",
    "getattr(torch, 'sys').modules.get('x')",
    "globals()['checks']._kl64(z_mean, z_logvar)",
    "vars(torch)['sys']",
    "(lambda: 0).__globals__['checks']",
    "[c for c in object.__subclasses__()]",
    "operator.attrgetter('sys')(torch)",
])
def test_a_door_to_the_grader_is_found(body):
    """Does a loss_kl that reaches the grader's code through the checks, sys.modules, globals,
    __import__, getattr with a literal name or a function's globals get named, with its line?"""
    found = _reaching([("cell vae_loss_kl", KL.format(body))])
    assert set(found) == {"loss_kl"}
    assert found["loss_kl"].where == "cell vae_loss_kl, line 2"


@pytest.mark.parametrize("source", [
    "def loss_kl(z_mean, z_logvar):\n    import sys\n    return sys.modules['x']\n",
    "def loss_kl(z_mean, z_logvar):\n    import importlib\n    return importlib.import_module('x')\n",
    "def loss_kl(z_mean, z_logvar):\n    from autograder.checks import vae\n    return vae._kl64(z_mean, z_logvar)\n",
    "def pca(x, k):\n    return checks.pca_reference(x, k)\n",
    "def beta_vae_loss(*args):\n    return checks._oracle(*args)\n",
])
def test_imports_and_the_issues_cases_are_found(source):
    """Are imports of the grader's and the interpreter's modules inside a function found, and
    the three answers borrowed from the checks (pca_reference, _oracle, _kl64)?"""
    assert len(_reaching([("cell c", source)])) == 1


def test_a_definition_that_uses_one_that_reaches_reaches_too():
    """Does a class that calls a helper whose code reaches the grader get named, through the
    helper, while an unrelated definition does not?"""
    helpers = "def _grader():\n    return globals()['checks']\n"
    encoder = ("class Encoder(nn.Module):\n    def forward(self, x):\n"
               "        return _grader().thing(x)\n")
    found = _reaching([("your own cell 4 of the notebook", helpers), ("cell ae_encoder", encoder),
                      ("cell ae_decoder", "class Decoder(nn.Module):\n    pass\n")])
    assert set(found) == {"_grader", "Encoder"}
    assert "it uses _grader, which reaches the grader's internals" in found["Encoder"].what
    assert "your own cell 4 of the notebook, line 2: globals" in found["Encoder"].what


@pytest.mark.parametrize("source", [
    "class E(nn.Module):\n    def f(self):\n        for m in self.modules():\n            pass\n",
    "class E(nn.Module):\n    def __init__(self, act='ReLU'):\n        self.act = getattr(nn, act)()\n",
    "def f(x):\n    return isinstance(x, nn.modules.conv.Conv2d)\n",
    "def f(x):\n    return x.system + len('systematic')\n",
    "def pca(x, k):\n    import numpy as np\n    return np.linalg.svd(x)\n",
])
def test_ordinary_code_is_not_accused(source):
    """Are self.modules(), getattr(nn, name), nn.modules.<layer>, names that merely contain a
    door and an allowed import inside a function left alone?"""
    assert _reaching([("cell c", source)]) == {}


def test_the_cells_that_use_it_fail_with_the_reason():
    """Does every test cell that uses a reaching definition fail with the message, whatever
    the replay said, and do the other cells keep their verdicts?"""
    kl, loglik = (KL.format("checks._kl64(z_mean, z_logvar)"),
                  "def loss_loglik(y_mean, y_logvar, x):\n    return 0\n")
    steps = [Step("student", kl, "vae_loss_kl", source=kl),
             Step("student", loglik, "vae_loss_loglik", source=loglik),
             Step("test", "checks.check_loss_kl(loss_kl)", "test_vae_loss_kl"),
             Step("test", "checks.check_loss_loglik(loss_loglik)", "test_vae_loss_loglik")]
    passed = {"passed": True, "error": "", "output": ""}
    verdicts = {"test_vae_loss_kl": passed, "test_vae_loss_loglik": passed}
    failed = internals_verdicts(steps, verdicts)
    assert set(failed) == {"test_vae_loss_kl"} and not failed["test_vae_loss_kl"]["passed"]
    error = failed["test_vae_loss_kl"]["error"]
    assert error.startswith("CheckFailure: loss_kl reaches the grader's internals "
                            "(cell vae_loss_kl, line 2: checks)")
    assert "earns none of this cell's points" in error
    assert used_by("checks.check_loss_kl(loss_kl)", _reaching([("c", KL.format("checks.x"))]))
    assert "hint:" in message(next(iter(_reaching([("c", KL.format("sys"))]).values())))
