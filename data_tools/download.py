"""Fetch full MNIST for machines with internet access: ``python -m data_tools download ROOT``.

The four ``.gz`` files go to ``ROOT/MNIST/raw/`` (torchvision's layout), where
``MNIST(root=ROOT)`` or ``MNIST_ROOT=ROOT`` finds them. Each file is tried on the mirrors in
turn, checked against its MD5 checksum, parsed as IDX, and only then moved into place; a file
already present with the right checksum is not fetched again. Nothing in the course calls this
at run time.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import socket
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from .idx import IDXError, read_idx

__all__ = [
    "MNIST_MIRRORS",
    "MNIST_MD5",
    "DownloadError",
    "OfflineError",
    "DownloadResult",
    "download_mnist",
]

#: Mirrors tried in turn (torchvision's list).
MNIST_MIRRORS: tuple[str, ...] = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)

#: MD5 checksum of each file, as published with torchvision's MNIST.
MNIST_MD5: dict[str, str] = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}

DEFAULT_TIMEOUT = 30.0  # seconds, per connection attempt and per read
_CHUNK = 1 << 16
_USER_AGENT = "autoencoders-course-data-tools"


class DownloadError(RuntimeError):
    """No mirror delivered a verified copy of a file."""


class OfflineError(DownloadError):
    """No mirror could be reached at all: the machine seems to be offline."""


@dataclass(frozen=True)
class DownloadResult:
    """What ``download_mnist`` did.

    Attributes
    ----------
    directory : Path
        ``ROOT/MNIST/raw``, holding all files.
    downloaded : tuple of str
        Names fetched now.
    skipped : tuple of str
        Names already present with the right checksum.
    """

    directory: Path
    downloaded: tuple[str, ...]
    skipped: tuple[str, ...]


def _md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _url(mirror: str, name: str) -> str:
    return mirror if mirror.endswith(name) else mirror.rstrip("/") + "/" + name


def _is_unreachable(err: BaseException) -> bool:
    """True when the server could not be reached (as opposed to answering badly)."""
    if isinstance(err, urllib.error.HTTPError):
        return False
    if isinstance(err, urllib.error.URLError):
        return True
    return isinstance(err, (ConnectionError, socket.timeout, TimeoutError, socket.gaierror))


def offline_message(root, mirrors: Sequence[str]) -> str:
    """The advice printed when no mirror can be reached."""
    names = " ".join(MNIST_MD5)
    return (
        f"could not reach any MNIST mirror ({', '.join(mirrors)}): this machine seems to be offline.\n"
        "To use full MNIST here, copy the four files\n"
        f"  {names}\n"
        f"from a machine that has them into {Path(root) / 'MNIST' / 'raw'} (or into any directory, "
        "flat), and pass that directory as root= or set MNIST_ROOT to it.\n"
        "Without them the course uses its embedded 5,000-image MNIST subset, which needs no download."
    )


def _fetch(url: str, dest: Path, expected_md5: str, timeout: float) -> None:
    """Download ``url`` to ``dest`` via a temporary file beside it; verify before moving."""
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        digest = hashlib.md5()
        request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(request, timeout=timeout) as response:
            os.fchmod(out.fileno(), 0o644)
            for chunk in iter(lambda: response.read(_CHUNK), b""):
                digest.update(chunk)
                out.write(chunk)
        got = digest.hexdigest()
        if got != expected_md5:
            raise DownloadError(f"checksum mismatch: expected MD5 {expected_md5}, got {got}")
        read_idx(tmp)  # raises IDXError if the content is not a valid IDX file
        os.replace(tmp, dest)
    finally:
        try:
            tmp.unlink()
        except FileNotFoundError:
            pass


def download_mnist(
    root,
    *,
    mirrors: Sequence[str] = MNIST_MIRRORS,
    checksums: Mapping[str, str] = MNIST_MD5,
    timeout: float = DEFAULT_TIMEOUT,
    log: Callable[[str], None] | None = None,
) -> DownloadResult:
    """Fetch the MNIST files into ``ROOT/MNIST/raw``.

    Parameters
    ----------
    root : str or os.PathLike
        The root; created if needed. The files land in ``root/MNIST/raw``.
    mirrors : sequence of str
        Base URLs tried in turn for each file.
    checksums : mapping of str to str
        File name -> expected MD5 (hex). Its keys are the files fetched.
    timeout : float
        Seconds for each connection attempt and read.
    log : callable, optional
        Called with one progress line per file.

    Returns
    -------
    DownloadResult

    Raises
    ------
    OfflineError
        If no mirror could be reached for a file.
    DownloadError
        If every mirror failed for a file (unreachable, HTTP error, checksum mismatch, not IDX).
        The message lists each mirror's failure. No partial file is left behind.
    """
    if not mirrors:
        raise ValueError("no mirrors given")
    say = log or (lambda line: None)
    directory = Path(os.path.expanduser(os.fspath(root))) / "MNIST" / "raw"
    created = [d for d in (directory, directory.parent, directory.parent.parent) if not d.exists()]
    directory.mkdir(parents=True, exist_ok=True)
    try:
        return _download_all(directory, mirrors, checksums, timeout, say, root)
    except BaseException:
        for d in created:  # innermost first; only directories this call made and left empty
            try:
                d.rmdir()
            except OSError:
                break
        raise


def _download_all(directory: Path, mirrors, checksums, timeout, say, root) -> DownloadResult:
    downloaded, skipped = [], []
    for name, expected in checksums.items():
        dest = directory / name
        if dest.is_file():
            if _md5(dest) == expected:
                skipped.append(name)
                say(f"{name}: already present, checksum verified")
                continue
            say(f"{name}: present but its checksum is wrong; fetching it again")
        failures: list[tuple[str, BaseException]] = []
        for mirror in mirrors:
            url = _url(mirror, name)
            try:
                _fetch(url, dest, expected, timeout)
            except (OSError, http.client.HTTPException, DownloadError, IDXError, ValueError) as err:
                failures.append((url, err))
                say(f"{name}: {url} failed: {_reason(err)}")
                continue
            downloaded.append(name)
            say(f"{name}: fetched from {url}")
            break
        else:
            if all(_is_unreachable(err) for _, err in failures):
                raise OfflineError(offline_message(root, mirrors))
            details = "\n".join(f"  {url}: {_reason(err)}" for url, err in failures)
            raise DownloadError(f"could not get a verified copy of {name}; every mirror failed:\n{details}")
    return DownloadResult(directory, tuple(downloaded), tuple(skipped))


def _reason(err: BaseException) -> str:
    if isinstance(err, urllib.error.HTTPError):
        return f"HTTP {err.code} {err.reason}"
    if isinstance(err, urllib.error.URLError):
        return f"unreachable ({err.reason})"
    if isinstance(err, IDXError):
        return f"not a valid IDX file ({err})"
    if isinstance(err, http.client.IncompleteRead):
        return f"connection closed after {len(err.partial):,} bytes"
    return str(err) or type(err).__name__
