"""Does the course manifest agree with the source notebooks it describes, and does every tool
take its facts from it?"""
from __future__ import annotations

import ast
import importlib
import re
import subprocess
from pathlib import Path

import nbformat
import pytest

import autograder
from autograder import manifest
from autograder.manifest import NOTEBOOKS

ROOT = Path(__file__).resolve().parent.parent
IDS = [f"{nb.assignment}/{nb.name}" for nb in NOTEBOOKS]


def _source(nb) -> nbformat.NotebookNode:
    return nbformat.read(ROOT / "solutions" / nb.assignment / f"{nb.name}.ipynb", as_version=4)


def _settings_cell(source) -> str:
    (cell,) = [c for c in source.cells if c.cell_type == "code" and "nbgrader" not in c.metadata
               and "skip_training" in c.source]
    return cell.source


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=IDS)
def test_points_match_the_grade_cells(nb):
    """Are the manifest's points per grade cell those of the source notebook's grade cells?"""
    cells = {c.metadata.nbgrader["grade_id"]: c.metadata.nbgrader["points"]
             for c in _source(nb).cells if c.metadata.get("nbgrader", {}).get("grade")}
    assert dict(nb.points) == cells


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=IDS)
def test_weight_files_are_saved_and_loaded_by_the_notebook(nb):
    """Does the notebook save every weight file of the manifest with save_model and load it
    with load_model, into the class the manifest names, and no other file than its declared
    extra (ungraded) files?"""
    code = "\n".join(c.source for c in _source(nb).cells if c.cell_type == "code")
    saved = set(re.findall(r"save_model\([^,]+,\s*\"([^\"]+\.pth)\"", code))
    # load_model(Cls(...), "file.pth"), the arguments of Cls nested one level deep at most
    # (``Classifier(Encoder(n_components), n_components)``).
    loaded = re.findall(r"load_model\((\w+)\((?:[^()]|\([^()]*\))*\),\s*\"([^\"]+\.pth)\"", code)
    assert saved == set(nb.weights) | set(nb.extra_files)
    graded = {w: c for c, w in loaded if w not in nb.extra_files}
    assert graded == {m.weights: m.cls for m in nb.models}


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=IDS)
def test_settings_names_are_the_settings_cell(nb):
    """Are the manifest's settings names exactly the literal constants the settings cell
    assigns (the values the replay keeps; computed lines such as `device = ...` are not kept)?"""
    def literal(node) -> bool:
        try:
            ast.literal_eval(node)
        except ValueError:
            return False
        return True

    tree = ast.parse(_settings_cell(_source(nb)))
    assigned = {t.id for node in tree.body if isinstance(node, ast.Assign) and literal(node.value)
                for t in node.targets if isinstance(t, ast.Name)}
    assert assigned == set(nb.settings)


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=IDS)
def test_checks_module_is_the_notebooks(nb):
    """Does the notebook import its checks as `from autograder import <name> as checks`, and is
    that the manifest's module, which describes itself with this entry?"""
    setup = "\n".join(c.source for c in _source(nb).cells
                      if c.metadata.get("nbgrader", {}).get("grade_id", "").endswith("_setup"))
    assert f"from autograder import {nb.name} as checks" in setup
    module = importlib.import_module(nb.checks)
    facade = getattr(autograder, nb.name)
    assert module.NOTEBOOK is nb
    assert sorted(facade.__all__) == sorted(nb.api)
    assert all(getattr(facade, name) is getattr(module, name) for name in nb.api)


@pytest.mark.parametrize("nb", manifest.NOTEBOOKS, ids=lambda nb: f"{nb.assignment}/{nb.name}")
def test_checks_show_a_notebook_only_what_it_uses(nb):
    """Is a notebook's `checks` exactly the names its cells use, so that no definition reaches
    the grader's oracles or references (`pca_reference`, `_oracle`, `_kl64`) through it?"""
    import re

    used = set(re.findall(r"\bchecks\.(\w+)", "\n".join(c.source for c in _source(nb).cells)))
    assert used == set(nb.api), (sorted(used - set(nb.api)), sorted(set(nb.api) - used))
    facade = getattr(autograder, nb.name)
    public = {n for n in dir(facade) if not n.startswith("__")}
    assert public == set(nb.api)
    for internal in ("pca_reference", "_oracle", "_kl64", "evaluation_data", "thresholds"):
        assert not hasattr(facade, internal), internal


def test_lookups_name_what_is_unknown():
    """Does asking the manifest for an unknown notebook or assignment name it?"""
    with pytest.raises(KeyError, match="unknown notebook 'nope'"):
        manifest.notebook("nope")
    with pytest.raises(KeyError, match="unknown assignment 'nope'"):
        manifest.notebooks("nope")
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        autograder.nope  # noqa: B018


def test_only_the_manifest_names_a_weight_file():
    """Among the Python files of the package and the nbgrader config, does only the manifest
    name a weight file (so that a new notebook is a one-place change)?"""
    files = subprocess.run(["git", "ls-files", "autograder", "data_tools", "nbgrader_config.py"],
                           cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    weights = set(manifest.weight_files())
    naming = sorted(f for f in files if f.endswith(".py")
                    and any(w in (ROOT / f).read_text() for w in weights))
    assert naming == ["autograder/manifest.py"]


def test_nbgrader_keeps_every_weight_file_of_a_submission():
    """Does nbgrader_config.py protect every manifest weight file from being overwritten?"""
    from traitlets.config import Config

    c = Config()
    namespace = {"get_config": lambda: c, "__file__": str(ROOT / "nbgrader_config.py")}
    exec(compile((ROOT / "nbgrader_config.py").read_text(), "nbgrader_config.py", "exec"), namespace)
    assert {a: set(w) for a, w in c.Autograde.exclude_overwriting.items()} == \
        {a: set(manifest.weight_files(a)) for a in manifest.assignments()}


def test_replay_keeps_the_manifest_settings():
    """Does the replay keep exactly the settings names the manifest lists?"""
    from autograder.grading.replay import SETTINGS_NAMES

    assert SETTINGS_NAMES == manifest.settings_names()
