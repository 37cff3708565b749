"""Tests of the MNIST download against a real HTTP server on 127.0.0.1 (started here, no internet)."""

from __future__ import annotations

import hashlib
import http.server
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from data_tools import mnist as mnist_module
from data_tools.__main__ import main as cli_main
from data_tools.download import MNIST_MD5, DownloadError, OfflineError, download_mnist
from data_tools.idx import write_idx
from data_tools.mnist import MNIST

REPO = Path(__file__).resolve().parents[1]
FILES = list(MNIST_MD5)
PROXY_VARS = ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY")


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch):
    """Requests to 127.0.0.1 must go straight to the test server, never through a proxy."""
    for name in PROXY_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("MNIST_ROOT", raising=False)


@pytest.fixture(scope="module")
def fake_files(tmp_path_factory) -> dict[str, bytes]:
    """The four .gz files of a small fake MNIST (30 train, 10 test images), as bytes."""
    directory = tmp_path_factory.mktemp("fake-mnist")
    rng = np.random.default_rng(7)
    for prefix, n in (("train", 30), ("t10k", 10)):
        write_idx(directory / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        write_idx(directory / f"{prefix}-labels-idx1-ubyte.gz", (np.arange(n) % 10).astype(np.uint8))
    return {name: (directory / name).read_bytes() for name in FILES}


@pytest.fixture(scope="module")
def checksums(fake_files) -> dict[str, str]:
    return {name: hashlib.md5(data).hexdigest() for name, data in fake_files.items()}


class Server:
    """A ThreadingHTTPServer on 127.0.0.1 serving ``routes`` (URL path -> bytes); records requests."""

    def __init__(self, routes: dict[str, bytes]):
        self.routes = routes
        self.requests: list[str] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                server.requests.append(self.path)
                if self.path.startswith("/truncated/"):
                    body = routes.get("/good/" + self.path.rsplit("/", 1)[1], b"")
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body[: len(body) // 2])
                    self.close_connection = True
                    return
                body = routes.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):  # keep the test output clean
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server(fake_files):
    """/good/ serves the files, /bad/ serves each with one byte changed, /garbage/ serves non-IDX."""
    routes = {}
    for name, data in fake_files.items():
        routes[f"/good/{name}"] = data
        corrupted = bytearray(data)
        corrupted[len(data) // 2] ^= 0xFF
        routes[f"/bad/{name}"] = bytes(corrupted)
        routes[f"/garbage/{name}"] = b"this is not an IDX file, " + name.encode()
    srv = Server(routes)
    yield srv
    srv.close()


@pytest.fixture
def closed_port_url() -> str:
    """A URL on 127.0.0.1 where nothing listens (connection refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/mnist/"


def _leftovers(root: Path) -> list[str]:
    raw = root / "MNIST" / "raw"
    return sorted(p.name for p in raw.iterdir()) if raw.is_dir() else []


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


# --------------------------------------------------------------------------- the Python API


def test_does_a_download_land_in_the_torchvision_layout_and_load(tmp_path, server, checksums, capsys):
    """Are the four verified files placed in ROOT/MNIST/raw, nothing else, and loadable by MNIST(root)?"""
    result = download_mnist(tmp_path / "root", mirrors=[server.url + "/good/"], checksums=checksums)
    raw = tmp_path / "root" / "MNIST" / "raw"
    assert result.directory == raw
    assert sorted(result.downloaded) == sorted(FILES) and result.skipped == ()
    assert _leftovers(tmp_path / "root") == sorted(FILES)
    assert all(_md5(raw / name) == checksums[name] for name in FILES)
    train = MNIST(train=True, root=tmp_path / "root", verbose=False)
    test = MNIST(train=False, root=tmp_path / "root", verbose=False)
    assert (len(train), len(test)) == (30, 10)
    assert train.source.location == str(raw)
    assert capsys.readouterr() == ("", ""), "the API prints nothing unless given a log function"


def test_are_verified_files_skipped_on_a_second_run(tmp_path, server, checksums):
    """Does a second run fetch nothing, and does a damaged file get fetched again?"""
    download_mnist(tmp_path, mirrors=[server.url + "/good/"], checksums=checksums)
    n_requests = len(server.requests)
    again = download_mnist(tmp_path, mirrors=[server.url + "/good/"], checksums=checksums)
    assert again.downloaded == () and sorted(again.skipped) == sorted(FILES)
    assert len(server.requests) == n_requests

    damaged = tmp_path / "MNIST" / "raw" / "t10k-labels-idx1-ubyte.gz"
    damaged.write_bytes(b"damaged")
    lines = []
    third = download_mnist(tmp_path, mirrors=[server.url + "/good/"], checksums=checksums, log=lines.append)
    assert third.downloaded == ("t10k-labels-idx1-ubyte.gz",)
    assert _md5(damaged) == checksums[damaged.name]
    assert any("checksum is wrong; fetching it again" in line for line in lines)


def test_is_a_corrupted_mirror_rejected_and_the_next_one_used(tmp_path, server, checksums):
    """Does a checksum mismatch on the first mirror fall through to the second, leaving no temp file?"""
    lines = []
    result = download_mnist(
        tmp_path, mirrors=[server.url + "/bad/", server.url + "/good/"], checksums=checksums, log=lines.append
    )
    assert sorted(result.downloaded) == sorted(FILES)
    assert _leftovers(tmp_path) == sorted(FILES), "no .part files may remain"
    assert all(_md5(tmp_path / "MNIST" / "raw" / n) == checksums[n] for n in FILES)
    assert sum("checksum mismatch" in line for line in lines) == 4
    assert [p for p in server.requests if p.startswith("/bad/")] == [f"/bad/{n}" for n in FILES]


def test_is_a_connection_dropped_mid_file_rejected(tmp_path, server, checksums):
    """Does a mirror that closes the connection halfway through fall through to the next one?"""
    lines = []
    download_mnist(
        tmp_path, mirrors=[server.url + "/truncated/", server.url + "/good/"], checksums=checksums, log=lines.append
    )
    assert _leftovers(tmp_path) == sorted(FILES)
    assert all(_md5(tmp_path / "MNIST" / "raw" / n) == checksums[n] for n in FILES)
    assert sum("/truncated/" in line and "failed" in line for line in lines) == 4


def test_is_a_file_with_the_right_checksum_but_not_idx_rejected(tmp_path, server):
    """Does a file matching its checksum table but not parseable as IDX get refused?"""
    table = {name: hashlib.md5(b"this is not an IDX file, " + name.encode()).hexdigest() for name in FILES}
    with pytest.raises(DownloadError, match=r"not a valid IDX file.*bad magic number"):
        download_mnist(tmp_path, mirrors=[server.url + "/garbage/"], checksums=table)
    assert _leftovers(tmp_path) == []


def test_do_all_bad_mirrors_give_a_clear_error_and_no_files(tmp_path, server, checksums):
    """With one corrupted and one missing mirror, is the error a list of both failures, with no file left?"""
    mirrors = [server.url + "/bad/", server.url + "/nowhere/"]
    with pytest.raises(DownloadError) as info:
        download_mnist(tmp_path, mirrors=mirrors, checksums=checksums)
    message = str(info.value)
    assert not isinstance(info.value, OfflineError)
    assert "could not get a verified copy of train-images-idx3-ubyte.gz" in message
    assert f"{server.url}/bad/train-images-idx3-ubyte.gz: checksum mismatch: expected MD5" in message
    assert f"{server.url}/nowhere/train-images-idx3-ubyte.gz: HTTP 404" in message
    assert list(tmp_path.iterdir()) == [], "no file, no temporary file, no empty MNIST/raw"


def test_does_an_unreachable_mirror_give_the_offline_advice(tmp_path, closed_port_url, checksums):
    """When no mirror answers, does the error say the machine seems offline and how to place files?"""
    with pytest.raises(OfflineError) as info:
        download_mnist(tmp_path / "root", mirrors=[closed_port_url], checksums=checksums, timeout=5)
    message = str(info.value)
    assert "seems to be offline" in message
    assert str(tmp_path / "root" / "MNIST" / "raw") in message
    assert "MNIST_ROOT" in message and "flat" in message
    assert all(name in message for name in FILES)
    assert not (tmp_path / "root").exists(), "directories made for the download are removed again"


def test_does_a_silent_mirror_time_out_instead_of_hanging(tmp_path, checksums):
    """Does a server that accepts connections but never answers time out and read as offline?"""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)  # connections queue up, nothing ever answers
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/"
        with pytest.raises(OfflineError, match="seems to be offline"):
            download_mnist(tmp_path, mirrors=[url], checksums=checksums, timeout=0.3)
    assert _leftovers(tmp_path) == []


def test_is_a_mix_of_unreachable_and_bad_mirrors_not_called_offline(tmp_path, server, closed_port_url, checksums):
    """If one mirror answered (badly), is the error a download failure rather than 'offline'?"""
    with pytest.raises(DownloadError, match=r"unreachable.*\n.*checksum mismatch") as info:
        download_mnist(tmp_path, mirrors=[closed_port_url, server.url + "/bad/"], checksums=checksums)
    assert not isinstance(info.value, OfflineError)


def test_are_the_canonical_checksums_those_published_for_mnist():
    """Does the default checksum table hold torchvision's published MD5s for the four files?"""
    assert MNIST_MD5 == {
        "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    }
    assert set(MNIST_MD5) == {f"{n}.gz" for pair in mnist_module.SPLIT_FILES.values() for n in pair}


# --------------------------------------------------------------------------- the command line


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in PROXY_VARS}
    return subprocess.run(
        [sys.executable, "-m", "data_tools", "download", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_does_python_m_data_tools_download_with_a_one_line_summary(tmp_path, server, checksums):
    """Does `python -m data_tools download` fall through a bad mirror and print one summary line?"""
    table = tmp_path / "md5sums"
    table.write_text("".join(f"{digest}  {name}\n" for name, digest in checksums.items()))
    root = tmp_path / "root"
    mirrors = ["--mirror", server.url + "/bad/", "--mirror", server.url + "/good/"]
    done = _cli(str(root), *mirrors, "--checksums", str(table))
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("\n") == 1
    assert done.stdout.startswith(f"MNIST ready in {root / 'MNIST' / 'raw'}: 4 downloaded, 0 already present")
    assert "checksum mismatch" in done.stderr, "progress goes to stderr"
    assert _leftovers(root) == sorted(FILES)


def test_does_the_cli_skip_a_complete_directory(tmp_path, server, checksums, capsys):
    """Does a rerun on a complete directory fetch nothing and say the files are already present?"""
    download_mnist(tmp_path, mirrors=[server.url + "/good/"], checksums=checksums)
    n_requests = len(server.requests)
    table = tmp_path / "md5sums"
    table.write_text("# name and MD5\n" + "".join(f"{d} *{n}\n" for n, d in checksums.items()))
    code = cli_main(["download", str(tmp_path), "--mirror", server.url + "/good/", "--checksums", str(table)])
    out, err = capsys.readouterr()
    assert code == 0
    assert out.startswith(f"MNIST ready in {tmp_path / 'MNIST' / 'raw'}: 0 downloaded, 4 already present")
    assert err.count("already present, checksum verified") == 4
    assert len(server.requests) == n_requests


def test_does_the_cli_report_offline_with_a_nonzero_exit(tmp_path, closed_port_url, capsys):
    """Offline, does the CLI exit non-zero with the advice on stderr and nothing on stdout?"""
    code = cli_main(["download", str(tmp_path / "root"), "--mirror", closed_port_url, "--quiet"])
    out, err = capsys.readouterr()
    assert code == 1
    assert out == ""
    assert err.startswith("error: could not reach any MNIST mirror") and "MNIST_ROOT" in err
    assert _leftovers(tmp_path / "root") == []


def test_does_the_cli_reject_files_that_fail_the_canonical_checksums(tmp_path, server, capsys):
    """Served files that are not the real MNIST fail the default checksums: exit 1, no files kept?"""
    code = cli_main(["download", str(tmp_path), "--mirror", server.url + "/good/", "--quiet"])
    out, err = capsys.readouterr()
    assert code == 1 and out == ""
    assert "checksum mismatch: expected MD5 f68b3c2dcbeaaa9fbdd348bbdeb94873" in err
    assert _leftovers(tmp_path) == []
