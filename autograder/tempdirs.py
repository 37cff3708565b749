"""Temporary folders that hold Unix sockets.

A Unix socket's path has at most 107 bytes. Kernels talk to the grader over sockets (ZeroMQ's
IPC transport) and multiprocessing's forkserver listens on one, each in a folder made below the
temporary folder. A long ``TMPDIR`` (a cluster job's, for example) makes those paths too long:
ZeroMQ fails with "File name too long", multiprocessing with "AF_UNIX path too long". The
folders that hold sockets are then made in ``/tmp`` instead (they are small); everything else
stays in ``TMPDIR``. Python 3.13 and later do the same for multiprocessing themselves.
"""
from __future__ import annotations

import os
import shutil
import tempfile

#: Longest temporary folder in which folders that hold sockets are made: below it come up to 65
#: more bytes (``autograder-warm-XXXXXXXX/kernel-XXXXXXXX/shared/kernel-NNNNN``, the warm
#: sandbox's kernels).
SOCKET_BASE_MAX = 40


def socket_base() -> str:
    """The temporary folder, or ``/tmp`` when the temporary folder's path is too long."""
    base = tempfile.gettempdir()
    if len(base) > SOCKET_BASE_MAX and os.path.isdir("/tmp") and os.access("/tmp", os.W_OK | os.X_OK):
        return "/tmp"
    return base


def socket_tempdir(prefix: str) -> str:
    """``tempfile.mkdtemp(prefix=prefix)`` for a folder that will hold Unix sockets."""
    return tempfile.mkdtemp(prefix=prefix, dir=socket_base())


def fit_multiprocessing() -> None:
    """Before multiprocessing starts a forkserver in this process: its folder (``pymp-*``, where
    the forkserver's socket is) in :func:`socket_base`, removed at exit as multiprocessing
    removes its own. Nothing to do when the temporary folder is short, or already chosen."""
    from multiprocessing import process, util

    config = process.current_process()._config
    if config.get("tempdir") is not None or socket_base() == tempfile.gettempdir():
        return
    folder = socket_tempdir("pymp-")
    util.Finalize(None, shutil.rmtree, args=(folder, True), exitpriority=-100)
    config["tempdir"] = folder
