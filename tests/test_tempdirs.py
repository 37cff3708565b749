"""Folders that hold Unix sockets (kernels' IPC sockets, multiprocessing's forkserver) below a
temporary folder of any length (``autograder.tempdirs``)."""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from autograder.tempdirs import SOCKET_BASE_MAX, socket_tempdir

#: A socket's path: at most 107 bytes.
SUN_PATH_MAX = 107


def long_tmp(tmp_path: Path) -> Path:
    long = tmp_path / ("a-temporary-folder-as-long-as-a-cluster-job-s-" + "x" * SOCKET_BASE_MAX)
    long.mkdir()
    return long


def test_socket_folders_leave_a_long_temporary_folder_for_tmp(tmp_path, short_tmp, monkeypatch):
    """Below a temporary folder as long as a cluster job's TMPDIR may be, ZeroMQ fails with "File
    name too long": the folders for sockets then go to /tmp; below a short one they stay in it."""
    monkeypatch.setattr(tempfile, "tempdir", str(long_tmp(tmp_path)))
    made = Path(socket_tempdir("autograder-kernel-"))
    try:
        assert made.parent == Path("/tmp") and made.name.startswith("autograder-kernel-")
        assert len(str(made / "kernel-XXXXXXXX" / "shared" / "kernel-65535")) <= SUN_PATH_MAX
    finally:
        made.rmdir()
    monkeypatch.setattr(tempfile, "tempdir", str(short_tmp))
    assert Path(socket_tempdir("autograder-kernel-")).parent == short_tmp


FORKSERVER = """
import multiprocessing, os, sys
from autograder.tempdirs import fit_multiprocessing
fit_multiprocessing()
context = multiprocessing.get_context("forkserver")
p = context.Process(target=os.getpid)
p.start(); p.join()
print(multiprocessing.util.get_temp_dir())
sys.exit(p.exitcode)
"""


@pytest.mark.parametrize("length", ["long", "short"])
def test_a_forkserver_starts_below_a_temporary_folder_of_any_length(tmp_path, short_tmp, length):
    """multiprocessing's forkserver (the pool's workers, the judges) listens on a socket in its
    own folder: below a long TMPDIR, Python 3.11 fails with "AF_UNIX path too long"."""
    tmp = long_tmp(tmp_path) if length == "long" else short_tmp
    run = subprocess.run([sys.executable, "-c", FORKSERVER], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "TMPDIR": str(tmp)})
    assert run.returncode == 0, run.stderr
    folder = Path(run.stdout.strip())
    assert folder.parent == (Path("/tmp") if length == "long" else tmp)
    assert not folder.exists()  # removed at exit
