"""Do the grader's own processes stay within bounds whatever a stage returns?

Student code runs in sandboxed processes that hand back plain arrays (``.npz``), JSON and files;
the grader's clean processes read them. These tests ask whether a small archive that declares
a huge array, a settings value the judge cannot rebuild (``1e999``), or a submission folder
or stage folder that outgrows its cap becomes a failure with a message naming the limit,
instead of filling the grader's memory or disk or stopping the judge (docs/security.md). The
same cases through real ``nbgrader autograde``: tests/test_tamper_e2e.py.
"""
from __future__ import annotations

import io
import os
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import solution_namespace

from autograder.checks import ae, evidence
from autograder.checks.core import CheckFailure
from autograder.grading import judge, judged, replay
from autograder.grading.replay import ReplayError
from autograder.sandbox import MAX_JOB_DISK, MAX_WORKDIR_SIZE
from autograder.sandbox.warm import FolderTooLarge, copy_back, copy_workdir, folder_usage


def npy_member(archive: zipfile.ZipFile, name: str, shape: tuple, dtype: str = "<f4",
               body: int | None = None) -> None:
    """An .npy member whose header declares ``shape`` and whose (deflated) body is ``body``
    zero bytes (by default exactly what the header declares), written 16 MiB at a time: the
    test never holds the array it describes."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": dtype, "fortran_order": False,
                                                  "shape": shape})
    left = int(np.prod(shape)) * np.dtype(dtype).itemsize if body is None else body
    zeros = bytes(1 << 24)
    with archive.open(name, "w", force_zip64=True) as f:
        f.write(header.getvalue())
        while left > 0:
            f.write(zeros[:min(left, len(zeros))])
            left -= len(zeros)


def bomb(path: Path, shape: tuple, **kw) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        npy_member(archive, "z_test.npy", shape, **kw)
    return path


# -- 1. arrays: sizes are checked before anything is decompressed ------------------------------

def test_a_zip_bomb_is_refused_before_it_is_decompressed(tmp_path):
    """Is a 400 KB archive that inflates to a 400 MB array (10^8 float32) refused from its
    header, with a message giving the number of elements and the cap, and without the grader's
    process ever holding the array?"""
    path = bomb(tmp_path / "first.npz", (10 ** 8,))
    assert path.stat().st_size < 2_000_000
    tracemalloc.start()
    try:
        with pytest.raises(CheckFailure) as info:
            evidence.load_arrays(str(path))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 * 2 ** 20, f"the grader held {peak:,} bytes while refusing the archive"
    message = str(info.value)
    assert "the stage returned an array 'z_test' of 100,000,000 (10^8) elements" in message
    assert f"more than the grader accepts ({evidence.MAX_ELEMENTS:,})" in message


def test_a_header_of_ten_billion_elements_is_refused(tmp_path):
    """Is an array whose header declares 10^10 elements (and whose body is a few bytes)
    refused by its header, never allocated?"""
    path = bomb(tmp_path / "first.npz", (10 ** 5, 10 ** 5), body=64)
    with pytest.raises(CheckFailure, match=r"10,000,000,000 \(10\^10\) elements, more than the "
                                           r"grader accepts"):
        evidence.load_arrays(str(path))


def test_an_array_whose_size_does_not_match_its_header_is_refused(tmp_path):
    """Is an array whose stored bytes differ from what its header declares refused?"""
    path = bomb(tmp_path / "first.npz", (10,), body=100)
    with pytest.raises(CheckFailure, match="do not match its header"):
        evidence.load_arrays(str(path))


@pytest.mark.parametrize("array", [np.arange(4), np.zeros(3, dtype=np.longdouble),
                                   np.zeros(2, dtype=[("a", "f4"), ("b", "f4")])],
                         ids=["int64", "longdouble", "structured"])
def test_arrays_that_are_not_floats_are_refused(tmp_path, array):
    """Is an array of integers, of extended precision or of records refused, naming its dtype?"""
    path = tmp_path / "first.npz"
    np.savez(path, z_test=array)
    with pytest.raises(CheckFailure, match="not of floats"):
        evidence.load_arrays(str(path))


def test_too_many_arrays_are_refused(tmp_path, monkeypatch):
    """Is an archive with more arrays than the grader accepts refused from its end record?"""
    monkeypatch.setattr(evidence, "MAX_ARRAYS", 3, raising=False)
    path = tmp_path / "calls.npz"
    np.savez(path, **{f"a{i}": np.zeros(1) for i in range(4)})
    with pytest.raises(CheckFailure, match=r"4 arrays.*more than the grader accepts \(3 arrays\)"):
        evidence.load_arrays(str(path))


def test_plain_arrays_read_back_unchanged(tmp_path):
    """Control: do the arrays a stage writes (float32, float64 scalars, Fortran order) read
    back exactly?"""
    arrays = {"z": np.arange(12, dtype=np.float32).reshape(3, 4), "loss": np.float64(0.25),
              "jac": np.asfortranarray(np.arange(6.0).reshape(2, 3))}
    evidence.save_arrays(str(tmp_path / "out.npz"), arrays)
    back = evidence.load_arrays(str(tmp_path / "out.npz"))
    for key, value in arrays.items():
        assert back[key].dtype == np.asarray(value).dtype and np.array_equal(back[key], value)


def test_a_refused_stage_output_fails_its_cells_and_nothing_else(tmp_path, modes, monkeypatch):
    """When the first stage's outputs are replaced by a zip bomb, does the judge fail the
    trained-model cell with the refusal as its message (not a crash of the grader)?"""
    ns = solution_namespace("ae")
    torch.manual_seed(0)
    torch.save(ns["Encoder"](10).state_dict(), tmp_path / "ae_encoder.pth")
    torch.save(ns["Decoder"](10).state_dict(), tmp_path / "ae_decoder.pth")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "run").mkdir()
    run = judged._Run("autograder.checks.ae", ("ae_encoder.pth", "ae_decoder.pth"), tmp_path / "run")
    run.write_inputs()
    evidence.start_producing(str(run.shared))
    with pytest.raises(evidence.Deferred):
        ae.check_trained_ae_probe(ns["Encoder"], ns["Decoder"], 10)
    evidence._STATE.update(mode=None)
    npz = next((run.shared / "first").glob("*.eval.npz"))
    bomb(npz, (10 ** 8,))
    run.collect_first()
    run.write_metas()
    assert not run.requests  # nothing of the refused outputs reaches the second stage
    evidence.start_judging(str(run.private))
    with pytest.raises(CheckFailure, match=r"10\^8\) elements, more than the grader accepts"):
        ae.check_trained_ae_probe(evidence.Placeholder("Encoder"), evidence.Placeholder("Decoder"), 10)


# -- 2. settings: a value that is not a finite number ------------------------------------------

def test_settings_refuse_numbers_that_are_not_finite():
    """Does a settings cell with ``learning_rate = 1e999`` (inf) and ``n_epochs = -1e999`` keep
    its other settings and record the refused ones, rather than hand the judge an ``inf`` it
    cannot rebuild?"""
    code = replay.settings("skip_training = True\nlearning_rate = 1e999\nseed = 3\n"
                           "n_epochs = -1e999\nbatch_size = 1e999j\n")
    namespace: dict = {}
    exec(compile(code, "<settings>", "exec"), namespace)  # what every replaying process runs
    assert {k: v for k, v in namespace.items() if k != "__builtins__"} == {
        "skip_training": True, "seed": 3}
    steps = [replay.Step("student", code)]
    note = replay.unbound_note("CheckFailure: something failed", steps)
    assert "refused learning_rate = 1e999 (line 2); n_epochs = -1e999 (line 4)" in note
    assert "not a finite number" in note


def test_a_settings_line_that_fails_does_not_stop_the_judge(tmp_path, modes):
    """Does the judge run the other settings and judge every cell when one settings line
    fails (here an ``inf`` it cannot rebuild, as the old extraction wrote it)?"""
    (tmp_path / "calls").mkdir()
    job = {"checks": "autograder.checks.ae", "evidence": str(tmp_path), "calls": str(tmp_path / "calls"),
           "settings": ["n_components = 8", "learning_rate = inf\nseed = 3"],
           "cells": [{"grade_id": "uses_settings", "source": "assert n_components == 8 and seed == 3"},
                     {"grade_id": "student_code", "source": "Encoder(n_components)"}]}
    verdicts = judge.judge(job)
    assert verdicts["uses_settings"] == {"decided": True, "passed": True, "error": "", "output": ""}
    assert not verdicts["student_code"]["decided"]  # the producer's verdict counts there


# -- 3. disk: submission folders and stage folders have caps -----------------------------------

def sparse(path: Path, size: int) -> Path:
    """A file of ``size`` bytes that takes no disk."""
    with open(path, "wb") as f:
        f.truncate(size)
    return path


def test_a_submission_folder_beyond_the_cap_is_refused_before_any_copy(tmp_path):
    """Is a submission folder with a file beyond the cap next to the notebook refused, naming
    the cap and its setting, before anything is copied?"""
    work = tmp_path / "work"
    work.mkdir()
    (work / "ae.ipynb").write_text("{}")
    (work / "ae_encoder.pth").write_bytes(b"weights")
    sparse(work / "data.bin", MAX_WORKDIR_SIZE + 1)
    with pytest.raises(FolderTooLarge, match=r"more than 512 MiB.*c\.Sandbox\.max_workdir_size"):
        copy_workdir(work, tmp_path / "copy")
    assert not (tmp_path / "copy").exists()


def test_a_submission_folder_with_too_many_files_is_refused(tmp_path):
    work = tmp_path / "work"
    (work / "many").mkdir(parents=True)
    for i in range(20):
        (work / "many" / f"{i}.txt").write_text("x")
    with pytest.raises(FolderTooLarge, match=r"more than 10 files and folders"):
        copy_workdir(work, tmp_path / "copy", max_files=10)
    copy_workdir(work, tmp_path / "copy", max_files=100)  # control
    assert len(os.listdir(tmp_path / "copy" / "many")) == 20


def test_folder_usage_counts_sizes_without_following_links(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x").write_bytes(b"1" * 5000)
    sparse(tmp_path / "big", 10 ** 9)
    os.symlink("/usr", tmp_path / "link")
    size, count = folder_usage([tmp_path], max_bytes=10 ** 12, max_files=100)
    assert count == 4 and 10 ** 9 + 5000 <= size < 10 ** 9 + 20_000


def test_copy_back_keeps_to_the_cap(tmp_path):
    """Does a kernel's copy of the working directory come back only up to the cap?"""
    work, workdir = tmp_path / "work", tmp_path / "workdir"
    work.mkdir()
    workdir.mkdir()
    (work / "small.txt").write_text("kept")
    sparse(work / "huge.bin", 5000)
    left_out = copy_back(work, workdir, limit=1000)
    assert left_out == ["./huge.bin"] and (workdir / "small.txt").read_text() == "kept"
    assert not (workdir / "huge.bin").exists()


def test_a_stage_folder_beyond_the_cap_is_not_read_back(tmp_path):
    """Does the grader refuse to read back a stage's folder that holds more than the cap,
    naming the setting?"""
    sparse(tmp_path / "first.npz", MAX_JOB_DISK + 1)
    with pytest.raises(ReplayError, match=r"left more than 2 GiB.*c\.Sandbox\.max_job_disk"):
        judged._refuse_large([tmp_path], "the re-run of the tests", None)
