"""The student sandbox on its own: what code inside it can see, write, reach and use.

Commands run through ``Sandbox.command`` exactly as a kernel would (same mounts, namespaces,
limits and unprivileged user), but with a short Python program instead of ipykernel; the last
tests start real kernels through ``SandboxedKernelManager``.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbformat.v4 import new_code_cell, new_notebook
from nbgrader_harness import PROBE, host_address, sandbox_processes

from autograder.sandbox import FIX, GiB, MiB, Sandbox, SandboxedKernelManager, SandboxUnavailable

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "setup_sandbox.sh"
IS_ROOT = os.geteuid() == 0
FIRST_UID = Sandbox().uid  # the uid Sandbox.command uses by default when the grader is root


@pytest.fixture
def course(tmp_path):
    """A fake course root with the files students must never see, and a working copy."""
    root = tmp_path / "course"
    for name in ["gradebook.db", "solutions/a/nb.ipynb", "submitted/bob/a/nb.ipynb", "feedback/bob/a/nb.html"]:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("secret " + name)
    work = root / "autograded" / "alice" / "a"
    work.mkdir(parents=True)
    (work / "nb.ipynb").write_text('{"hidden": "tests"}')
    (work / "weights.pth").write_bytes(b"weights")
    if IS_ROOT:
        os.chown(work, FIRST_UID, FIRST_UID)
    return root


def run(code: str, cwd: Path, *, env: dict | None = None, timeout: float = 120, **config) -> dict:
    """Run `code` (after PROBE) in the sandbox; it must print one JSON object, which is returned."""
    sandbox = Sandbox(**config)
    source = textwrap.dedent(PROBE) + textwrap.dedent(code)
    cmd = sandbox.command([sys.executable, "-c", source], cwd=str(cwd),
                          environ={**os.environ, **(env or {})})
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_sandbox_starts():
    """Can this machine start the sandbox at all (bubblewrap installed and working)?"""
    Sandbox().check()


def test_course_files_are_invisible(course):
    """Are the gradebook, the sources and other students' folders out of reach, while the working copy is not?"""
    targets = {name: str(course / name) for name in
               ["gradebook.db", "solutions/a/nb.ipynb", "submitted/bob/a/nb.ipynb", "feedback/bob/a/nb.html"]}
    targets["relative gradebook"] = "../../../gradebook.db"
    targets["own weights"] = "weights.pth"
    result = run(f"""
    targets = {targets!r}
    print(json.dumps({{k: attempt(lambda p=p: open(p, "rb").read()) for k, p in targets.items()}}))
    """, course / "autograded" / "alice" / "a", course_root=str(course))
    assert result.pop("own weights") == "ok"
    assert set(result.values()) == {"FileNotFoundError"}, result


def test_course_root_is_hidden_even_inside_a_readable_tree():
    """Does the course root stay hidden when a configured read-only path contains it?"""
    with tempfile.TemporaryDirectory() as top:  # world-readable, unlike pytest's tmp_path
        os.chmod(top, 0o755)
        course = Path(top) / "course"
        work = course / "autograded" / "alice" / "a"
        work.mkdir(parents=True)
        (course / "gradebook.db").write_text("secret")
        (Path(top) / "sibling.txt").write_text("x")
        if IS_ROOT:
            os.chown(work, FIRST_UID, FIRST_UID)
        result = run(f"""
        print(json.dumps({{"gradebook": attempt(lambda: open({str(course / 'gradebook.db')!r}).read()),
                           "sibling": attempt(lambda: open({top + '/sibling.txt'!r}).read())}}))
        """, work, course_root=str(course), read_only_paths=[top])
    assert result == {"gradebook": "FileNotFoundError", "sibling": "ok"}


@pytest.mark.skipif(not IS_ROOT, reason="only a root grader's kernel runs as another uid")
def test_private_parents_do_not_matter_but_private_paths_do(tmp_path):
    """Can the kernel's uid read a path under a parent only root can enter, but not a private path?"""
    top = tmp_path / "home"  # like a 0700 home directory holding the course and its virtualenv
    for name, mode in [("shared", 0o755), ("private", 0o700)]:
        (top / name).mkdir(parents=True)
        (top / name / "data.txt").write_text(name)
        os.chmod(top / name, mode)
    os.chmod(top, 0o700)
    work = tmp_path / "work"
    work.mkdir()
    os.chown(work, FIRST_UID, FIRST_UID)
    result = run(f"""
    print(json.dumps({{n: attempt(lambda n=n: open({str(top)!r} + "/" + n + "/data.txt").read())
                       for n in ["shared", "private"]}}))
    """, work, read_only_paths=[str(top / "shared"), str(top / "private")])
    assert result == {"shared": "ok", "private": "PermissionError"}, result
    assert Sandbox(read_only_paths=[str(top / "shared")]).unreadable() == []


@pytest.mark.skipif(not IS_ROOT, reason="only a root grader's kernel runs as another uid")
def test_private_read_only_path_names_the_fix(tmp_path):
    """Does a read-only path that the kernel's uid cannot read stop grading, naming the path and the fix?"""
    private = tmp_path / "venv"
    private.mkdir()
    os.chmod(private, 0o700)
    with pytest.raises(SandboxUnavailable, match=r"chmod -R o\+rX") as info:
        Sandbox(read_only_paths=[str(private)]).check()
    assert f"{private} (mode 0700)" in str(info.value)


def test_sanitized_notebooks_in_the_working_copy_are_unreadable(course):
    """Can student code read its own sanitized notebook, which holds the hidden tests?"""
    result = run("""
    print(json.dumps({"notebook": attempt(lambda: open("nb.ipynb").read()),
                      "replace": attempt(lambda: os.replace("weights.pth", "nb.ipynb"))}))
    """, course / "autograded" / "alice" / "a")
    assert result["notebook"] in {"PermissionError", "OSError"}
    assert result["replace"] != "ok"
    assert (course / "autograded" / "alice" / "a" / "nb.ipynb").read_text() == '{"hidden": "tests"}'


def test_only_the_working_copy_is_writable(course, tmp_path):
    """Do writes succeed in the working copy and fail everywhere else on the host?"""
    outside = tmp_path / "outside.txt"
    result = run(f"""
    def write(path):
        with open(path, "w") as f:
            f.write("x")
    print(json.dumps({{
        "working copy": attempt(lambda: write("new.txt")),
        "tmp": attempt(lambda: write("/tmp/scratch")),
        "home": attempt(lambda: write(os.path.expanduser("~/cache"))),
        "outside": attempt(lambda: write({str(outside)!r})),
        "venv": attempt(lambda: write({sys.prefix + '/owned.txt'!r})),
        "package": attempt(lambda: write({str(REPO / 'autograder' / 'owned.py')!r})),
        "usr": attempt(lambda: write("/usr/owned.txt")),
        "etc": attempt(lambda: write("/etc/owned.txt")),
    }}))
    """, course / "autograded" / "alice" / "a")
    assert result.pop("working copy") == "ok"
    assert result.pop("tmp") == "ok" and result.pop("home") == "ok"
    assert all(v in {"PermissionError", "OSError", "FileNotFoundError"} for v in result.values()), result
    assert (course / "autograded" / "alice" / "a" / "new.txt").exists()
    assert not outside.exists() and not Path("/tmp/scratch").exists()
    assert not (REPO / "autograder" / "owned.py").exists()


def test_network_is_unreachable(course):
    """Does a connection from the sandbox to a socket listening on the host ever arrive?"""
    server = socket.socket()
    server.bind(("0.0.0.0", 0))
    server.listen()
    server.settimeout(0.2)
    port = server.getsockname()[1]
    accepted = []
    stop = threading.Event()

    def accept():
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except OSError:
                pass

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    host_ip = host_address()
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()  # the listener works
        result = run(f"""
        import socket
        print(json.dumps({{ip: attempt(lambda ip=ip: socket.create_connection((ip, {port}), timeout=2))
                           for ip in ["127.0.0.1", {host_ip!r}, "1.1.1.1"]}}))
        """, course / "autograded" / "alice" / "a")
    finally:
        stop.set()
        thread.join()
        server.close()
    assert len(accepted) == 1, "only the host's own check connection may arrive"
    assert "ok" not in result.values(), result


def test_environment_is_clean(course):
    """Are the grader's environment variables (tokens, paths) kept out, and the needed ones passed?"""
    result = run("""
    import json, os
    print(json.dumps(dict(os.environ)))
    """, course / "autograded" / "alice" / "a", env={"GRADER_TOKEN": "s3cret", "NBGRADER_EXECUTION": "autograde"})
    assert "GRADER_TOKEN" not in result
    assert result["NBGRADER_EXECUTION"] == "autograde"
    assert result["MPLBACKEND"] == "Agg" and result["HOME"].startswith("/tmp")


def test_identity_and_limits(course):
    """Does the kernel run as the unprivileged uid, alone in its namespaces, under the configured limits?"""
    result = run("""
    import json, os, resource, socket
    print(json.dumps({"uid": os.getuid(), "pid": os.getpid(), "host": socket.gethostname(),
                      "as": resource.getrlimit(resource.RLIMIT_AS)[0],
                      "cpu": resource.getrlimit(resource.RLIMIT_CPU)[0],
                      "nproc": resource.getrlimit(resource.RLIMIT_NPROC)[0],
                      "fsize": resource.getrlimit(resource.RLIMIT_FSIZE)[0],
                      "processes": sorted(p for p in os.listdir("/proc") if p.isdigit())}))
    """, course / "autograded" / "alice" / "a", memory_limit=3 * GiB, cpu_time_limit=100,
        max_processes=50, max_file_size=10 * MiB)
    assert (result["as"], result["cpu"], result["nproc"], result["fsize"]) == (3 * GiB, 100, 50, 10 * MiB)
    assert result["host"] == "sandbox"
    assert result["pid"] < 10 and len(result["processes"]) <= 3, result
    if IS_ROOT:
        assert result["uid"] == FIRST_UID


def test_memory_limit_raises_memory_error(course):
    """Does an allocation far above the memory limit fail inside the cell instead of hurting the machine?"""
    result = run("""
    chunk = bytearray(256 * 1024 * 1024)          # below the limit: fine, and touched
    chunk[::4096] = b"x" * len(chunk[::4096])
    print(json.dumps({"small": "ok", "huge": attempt(lambda: bytearray(64 * 1024 ** 3))}))
    """, course / "autograded" / "alice" / "a", memory_limit=1 * GiB)
    assert result == {"small": "ok", "huge": "MemoryError"}


@pytest.mark.skipif(not IS_ROOT, reason="needs root to see the sandbox's processes")
def test_process_limit_stops_a_fork_bomb(course):
    """Does the process limit stop a fork bomb, and are all its processes gone afterwards?"""
    result = run("""
    import json, os, time
    assert os.getpid() < 10, "refusing to fork outside the sandbox"
    children = 0
    try:
        while children < 1000:
            if os.fork() == 0:
                time.sleep(60)
                os._exit(0)
            children += 1
    except OSError as e:
        print(json.dumps({"children": children, "error": type(e).__name__}))
    """, course / "autograded" / "alice" / "a", max_processes=40, timeout=60)
    assert result["error"] == "BlockingIOError" and 0 < result["children"] < 40
    assert not sandbox_processes(course)


@pytest.mark.slow
def test_course_packages_are_importable(course):
    """Can the kernel import the course packages and the scientific stack from the virtualenv?"""
    result = run("""
    import json
    import autograder, data_tools, matplotlib, mlxtend, numpy, sklearn, torch
    import matplotlib.pyplot as plt
    plt.plot([1, 2]); plt.savefig("plot.png")
    print(json.dumps({"torch": torch.__version__, "backend": matplotlib.get_backend()}))
    """, course / "autograded" / "alice" / "a")
    assert result["torch"].startswith("2.") and result["backend"].lower() == "agg"
    assert (course / "autograded" / "alice" / "a" / "plot.png").stat().st_size > 0


def test_missing_bwrap_names_the_fix():
    """Does a missing bubblewrap stop grading with a message naming the fix?"""
    with pytest.raises(SandboxUnavailable, match="not installed") as info:
        Sandbox(bwrap="/nonexistent/bwrap").check()
    assert "make setup" in str(info.value) and FIX in str(info.value)


def test_broken_bwrap_reports_its_error(tmp_path):
    """Does a bubblewrap that cannot create namespaces stop grading with its own error message?"""
    fake = tmp_path / "bwrap"
    fake.write_text("#!/bin/sh\necho 'bwrap: No permissions to creating new namespace' >&2\nexit 1\n")
    fake.chmod(0o755)
    with pytest.raises(SandboxUnavailable, match="No permissions to creating new namespace") as info:
        Sandbox(bwrap=str(fake)).check()
    assert "make setup" in str(info.value)


def test_setup_script_is_quick_when_installed():
    """Does the set-up script succeed at once when bubblewrap is installed and works?"""
    done = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "the student sandbox works" in done.stdout


@pytest.mark.skipif(not IS_ROOT, reason="needs root to run the script as another user")
def test_setup_script_explains_when_it_cannot_install():
    """Without root and without bubblewrap, does the set-up script fail saying what to do?"""
    # The script and the helper it sources are copied to a folder anyone may read, and the shell
    # starts in /: uid 65534 needs no access to the checkout, which may lie in a directory only
    # its owner can enter (mktemp -d, a home).
    with tempfile.TemporaryDirectory() as folder:
        os.chmod(folder, 0o755)
        for name in (SCRIPT.name, "install_tool.sh"):
            (Path(folder) / name).write_text((SCRIPT.parent / name).read_text())
        done = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                               "bash", str(Path(folder) / SCRIPT.name)],
                              capture_output=True, text=True, timeout=60, cwd="/",
                              env={**os.environ, "BWRAP": "/nonexistent/bwrap"})
    assert done.returncode != 0
    assert "needs root" in done.stderr and "sudo scripts/setup_sandbox.sh" in done.stderr


# -- real kernels ----------------------------------------------------------------------

def execute(cells: list[str], cwd: Path, timeout: int = 20) -> nbformat.NotebookNode:
    nb = new_notebook(cells=[new_code_cell(c) for c in cells])
    nb.metadata.kernelspec = {"name": "python3", "display_name": "Python 3", "language": "python"}
    client = NotebookClient(nb, timeout=timeout, kernel_manager_class=SandboxedKernelManager,
                            allow_errors=True, interrupt_on_timeout=True,
                            resources={"metadata": {"path": str(cwd)}})
    client.execute()
    return nb


def text(cell) -> str:
    return "".join(o.get("text", "") or f"{o.get('ename')}: {o.get('evalue')}" for o in cell.outputs)


@pytest.mark.slow
def test_kernel_is_sandboxed_interruptible_and_cleaned_up(course, monkeypatch):
    """Does a sandboxed kernel run cells, survive an interrupt, and leave no process or symlink behind?"""
    monkeypatch.setenv("NBGRADER_EXECUTION", "autograde")
    work = course / "autograded" / "alice" / "a"
    owner = os.stat(work).st_uid
    nb = execute([
        "import os; print(os.getuid(), os.getpid())",
        "import time\nwhile True: time.sleep(0.1)",
        "os.symlink('../../../gradebook.db', 'next.ipynb'); open('kept.txt', 'w').write('x'); print('after')",
    ], work, timeout=3)
    uid, pid = map(int, text(nb.cells[0]).split())
    sandbox = Sandbox()
    assert pid < 10 and (sandbox.uid <= uid < sandbox.uid + sandbox.uid_count or not IS_ROOT)
    assert "KeyboardInterrupt" in text(nb.cells[1])
    assert text(nb.cells[2]).strip() == "after"
    assert not os.path.lexists(work / "next.ipynb")
    assert (work / "kept.txt").read_text() == "x"
    assert os.stat(work).st_uid == owner
    assert not sandbox_processes(course)


@pytest.mark.slow
def test_opt_out_warns_loudly(course, monkeypatch):
    """Does AUTOGRADER_SANDBOX=off run the kernel outside the sandbox, with a warning?"""
    monkeypatch.setenv("AUTOGRADER_SANDBOX", "off")
    with pytest.warns(UserWarning, match="not isolated"):
        nb = execute(["import os; print(os.getpid())"], course / "autograded" / "alice" / "a")
    assert int(text(nb.cells[0])) > 10


def test_validate_without_sandbox_only_warns(course, monkeypatch):
    """Does `nbgrader validate` fall back (with a warning) where autograde refuses?"""
    km = SandboxedKernelManager(kernel_name="python3")
    km.sandbox.bwrap = "/nonexistent/bwrap"
    monkeypatch.setenv("NBGRADER_EXECUTION", "validate")
    assert km._use_sandbox() is False
    monkeypatch.setenv("NBGRADER_EXECUTION", "autograde")
    with pytest.raises(SandboxUnavailable):
        km._use_sandbox()
