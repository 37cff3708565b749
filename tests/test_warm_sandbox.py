"""The warm sandbox (``autograder.sandbox.warm``): jobs forked from one pre-imported server in a
real bubblewrap sandbox must be as isolated from each other, from the server and from the host
as processes that each got a fresh bwrap.

Every test runs real jobs through one real server (``autograder.sandbox.zygote``); the jobs run
code through ``autograder.sandbox.run_code``, as a student's code would run in them.
"""
from __future__ import annotations

import json
import os
import tempfile
import textwrap
import time
from pathlib import Path

import pytest
from nbgrader_harness import PROBE

from autograder.sandbox import MiB, Sandbox
from autograder.sandbox.warm import TIMED_OUT_STATUS, WarmSandbox, copy_workdir

IS_ROOT = os.geteuid() == 0


@pytest.fixture(scope="module")
def warm():
    server = WarmSandbox(Sandbox(memory_limit=4096 * MiB))
    yield server
    server.close()


def job(warm: WarmSandbox, code: str, *, name: str = "job-", timeout: float = 60, files=None,
        writable_extra: tuple = ()) -> tuple[object, Path, dict]:
    """Run ``code`` (after PROBE) in a fresh job directory; returns (result, dir, last JSON line)."""
    folder = Path(tempfile.mkdtemp(prefix=name, dir=warm.staging))
    for rel, content in (files or {}).items():
        (folder / rel).write_text(content)
    source = textwrap.dedent(PROBE) + textwrap.dedent(code)
    result = warm.run("autograder.sandbox.run_code", [source], cwd=str(folder),
                      writable=[str(folder), *writable_extra], timeout=timeout)
    lines = [ln for ln in result.output.strip().splitlines() if ln.startswith("{")]
    return result, folder, (json.loads(lines[-1]) if lines else {})


@pytest.mark.slow
def test_a_job_runs_in_its_own_directory_and_its_writes_stay_there(warm):
    result, folder, seen = job(warm, """
        open("out.txt", "w").write("written")
        print(json.dumps({"cwd": os.getcwd(), "files": sorted(os.listdir("."))}))
    """, files={"given.txt": "input"})
    assert result.returncode == 0, result.output
    assert seen == {"cwd": str(folder), "files": ["given.txt", "out.txt"]}
    assert (folder / "out.txt").read_text() == "written"


@pytest.mark.slow
def test_a_job_sees_neither_other_jobs_nor_the_servers_files(warm):
    other = Path(tempfile.mkdtemp(prefix="other-", dir=warm.staging))
    (other / "secret.txt").write_text("another student's file")
    result, folder, seen = job(warm, f"""
        staging = {warm.staging!r}
        print(json.dumps({{
            "staging": sorted(os.listdir(staging)),
            "other": attempt(lambda: open({str(other / "secret.txt")!r}).read()),
            "logs": attempt(lambda: os.listdir(os.path.join(staging, ".logs"))),
            "tmp": sorted(os.listdir("/tmp")),
        }}))
    """)
    assert result.returncode == 0, result.output
    assert seen["staging"] == [folder.name]  # only its own directory, not `other` or `.logs`
    assert seen["other"] == "FileNotFoundError" and seen["logs"] == "FileNotFoundError"
    assert "home" in seen["tmp"]


@pytest.mark.slow
def test_a_job_is_alone_in_its_pid_and_network_namespaces_without_privileges(warm):
    result, _, seen = job(warm, """
        import socket
        status = dict(line.split(":", 1) for line in open("/proc/self/status").read().splitlines())
        print(json.dumps({
            "pid": os.getpid(),
            "processes": sorted(p for p in os.listdir("/proc") if p.isdigit()),
            "interfaces": [name for _, name in socket.if_nameindex()],
            "uid": os.getuid(),
            "cap_eff": status["CapEff"].strip(), "cap_prm": status["CapPrm"].strip(),
            "no_new_privs": status["NoNewPrivs"].strip(),
            "setuid0": attempt(lambda: os.setuid(0)),
            "init": attempt(lambda: open("/proc/1/mem", "rb").read(1)),
            "mount": attempt(lambda: __import__("ctypes").CDLL(None, use_errno=True).mount(
                b"tmpfs", b"/tmp", b"tmpfs", 0, None) == 0 or 1 / 0),
            "connect": attempt(lambda: socket.create_connection(("192.0.2.1", 9), timeout=2)),
        }))
    """)
    assert result.returncode == 0, result.output
    assert seen["pid"] == 2 and seen["processes"] == ["1", "2"]  # its init; no server, no other job
    assert seen["interfaces"] == ["lo"] and seen["connect"] == "OSError"
    assert seen["cap_eff"] == seen["cap_prm"] == "0000000000000000"
    assert seen["no_new_privs"] == "1"
    # EPERM as root; EINVAL in a user namespace, where uid 0 is not even mapped
    assert seen["setuid0"] in ("PermissionError", "OSError") and seen["mount"] == "ZeroDivisionError"
    assert seen["init"] == "PermissionError"  # its init is not its to inspect
    if IS_ROOT:
        sandbox = Sandbox()
        assert sandbox.uid <= seen["uid"] < sandbox.uid + sandbox.uid_count


@pytest.mark.slow
def test_what_one_job_changes_does_not_reach_the_next(warm):
    patch, _, _ = job(warm, """
        import torch, numpy
        torch.allclose = lambda *a, **k: True
        numpy.mean = lambda *a, **k: 0.0
        open("/tmp/left-behind", "w").write("x")
        open("/dev/shm/left-behind", "w").write("x")
        print(json.dumps({}))
    """)
    assert patch.returncode == 0, patch.output
    result, _, seen = job(warm, """
        import torch, numpy
        print(json.dumps({
            "allclose": bool(torch.allclose(torch.zeros(2), torch.ones(2))),
            "mean": float(numpy.mean([1.0, 3.0])),
            "tmp": os.path.exists("/tmp/left-behind"), "shm": os.path.exists("/dev/shm/left-behind"),
        }))
    """)
    assert result.returncode == 0, result.output
    assert seen == {"allclose": False, "mean": 2.0, "tmp": False, "shm": False}


@pytest.mark.slow
def test_processes_a_job_leaves_behind_end_with_it(warm):
    result, folder, _ = job(warm, """
        import subprocess, sys
        subprocess.Popen([sys.executable, "-c",
                          "import time; time.sleep(1.5); open('late.txt', 'w').write('still alive')"],
                         start_new_session=True)
        print(json.dumps({}))
    """)
    assert result.returncode == 0, result.output
    time.sleep(3)
    assert not (folder / "late.txt").exists()


@pytest.mark.slow
def test_a_job_past_its_time_limit_is_killed_and_the_server_goes_on(warm):
    start = time.monotonic()
    result, _, _ = job(warm, "import time\nwhile True: time.sleep(1)\n", timeout=2)
    assert result.timed_out and result.returncode == TIMED_OUT_STATUS
    assert time.monotonic() - start < 30
    after, _, seen = job(warm, "print(json.dumps({'alive': True}))")
    assert after.returncode == 0 and seen == {"alive": True}


@pytest.mark.slow
def test_a_crash_or_exit_status_is_the_jobs_own(warm):
    crashed, _, _ = job(warm, "import ctypes\nctypes.string_at(0)")  # a segmentation fault
    assert crashed.returncode == -11 and not crashed.timed_out
    killed, _, _ = job(warm, "import signal\nos.kill(os.getpid(), signal.SIGKILL)")
    assert killed.returncode == -9  # as in a fresh bwrap: the job is not its namespace's init
    exited, _, _ = job(warm, "raise SystemExit(3)")
    assert exited.returncode == 3
    failed, _, _ = job(warm, "raise ValueError('broken job')")
    assert failed.returncode == 1 and "ValueError: broken job" in failed.output


@pytest.mark.slow
def test_the_memory_limit_applies_to_a_job(warm):
    result, _, seen = job(warm, """
        def allocate():
            block = bytearray(5 * 1024 ** 3)
        print(json.dumps({"allocate": attempt(allocate)}))
    """)
    assert result.returncode == 0, result.output
    assert seen == {"allocate": "MemoryError"}


@pytest.mark.slow
def test_a_job_whose_files_outgrow_the_disk_cap_is_stopped(warm):
    """Is a job whose folders hold more than c.Sandbox.max_job_disk stopped within a second
    or so, with the reason in its output, and does the next job run? (Sparse files: the
    test's 2.7 GB take no disk.)"""
    start = time.monotonic()
    result, _, _ = job(warm, """
        import time
        for i in range(3):
            with open(f"fill-{i}.bin", "wb") as f:
                f.truncate(900 * 1024 ** 2)  # below the 1 GiB file-size limit each
        time.sleep(60)
    """, timeout=120)
    assert result.returncode == -9 and not result.timed_out, result.output
    assert "stopped: its files took more than 2 GiB of disk (c.Sandbox.max_job_disk)" in result.output
    assert time.monotonic() - start < 30
    after, _, seen = job(warm, "print(json.dumps({'alive': True}))")
    assert after.returncode == 0 and seen == {"alive": True}


@pytest.mark.slow
def test_a_job_cannot_name_a_writable_directory_outside_the_staging_root(warm, tmp_path):
    result, _, _ = job(warm, "print(json.dumps({}))", writable_extra=(str(tmp_path),))
    assert result.returncode == 125
    assert "is not a job directory of the warm sandbox" in result.output


@pytest.mark.slow
def test_read_only_paths_under_tmp_stay_visible_and_read_only(tmp_path):
    """A checkout (virtualenv, course packages) or data under /tmp: does a job, whose /tmp is a
    fresh tmpfs, still see them, read-only?"""
    shared = tmp_path / "ro"
    shared.mkdir()
    (shared / "data.txt").write_text("course data")
    assert str(tmp_path).startswith("/tmp/")
    server = WarmSandbox(Sandbox(read_only_paths=[str(shared)]))
    try:
        folder = Path(tempfile.mkdtemp(dir=server.staging))
        source = textwrap.dedent(PROBE) + textwrap.dedent(f"""
            print(json.dumps({{"read": open({str(shared / "data.txt")!r}).read(),
                               "write": attempt(lambda: open({str(shared / "data.txt")!r}, "a").write("x")),
                               "create": attempt(lambda: open({str(shared / "new.txt")!r}, "w").write("x"))}}))
        """)
        result = server.run("autograder.sandbox.run_code", [source], cwd=str(folder),
                            writable=[str(folder)], timeout=60)
        assert result.returncode == 0, result.output
        seen = json.loads(result.output.strip().splitlines()[-1])
        assert seen["read"] == "course data"
        assert seen["write"] in ("OSError", "PermissionError") and seen["create"] in ("OSError", "PermissionError")
        assert (shared / "data.txt").read_text() == "course data" and not (shared / "new.txt").exists()
    finally:
        server.close()


@pytest.mark.slow
def test_a_working_copy_appears_at_its_own_path_in_an_otherwise_empty_course(tmp_path):
    """A kernel or producer works on a copy of ``autograded/<student>/<assignment>``: does it
    see the copy where the original is, and nothing else of the course or of other students
    (not even the folder another student's job was shown in)?"""
    course = tmp_path / "course"
    (course / "gradebook.db").parent.mkdir(parents=True)
    (course / "gradebook.db").write_text("secret")
    server = WarmSandbox(Sandbox(course_root=str(course)))
    try:
        assert not server.can_show(str(tmp_path / "elsewhere"))
        for student in ("alice", "bob"):
            workdir = course / "autograded" / student / "a"
            workdir.mkdir(parents=True)
            (workdir / "weights.pth").write_bytes(b"w")
            assert server.can_show(str(workdir))
            copy = copy_workdir(workdir, Path(tempfile.mkdtemp(dir=server.staging)) / "work")
            source = textwrap.dedent(PROBE) + textwrap.dedent(f"""
                open("scratch.txt", "w").write("x")
                print(json.dumps({{"cwd": os.getcwd(), "here": sorted(os.listdir(".")),
                                   "course": sorted(os.listdir({str(course)!r})),
                                   "students": sorted(os.listdir({str(course / "autograded")!r})),
                                   "gradebook": attempt(lambda: open({str(course / "gradebook.db")!r}).read())}}))
            """)
            result = server.run("autograder.sandbox.run_code", [source], cwd=str(workdir), writable=[],
                                binds={str(workdir): str(copy)}, timeout=60)
            assert result.returncode == 0, result.output
            assert json.loads(result.output.strip().splitlines()[-1]) == {
                "cwd": str(workdir), "here": ["scratch.txt", "weights.pth"], "course": ["autograded"],
                "students": [student], "gradebook": "FileNotFoundError"}
            assert (copy / "scratch.txt").exists() and not (workdir / "scratch.txt").exists()
    finally:
        server.close()


def test_a_working_copy_is_copied_without_notebooks_or_links(tmp_path):
    work = tmp_path / "work"
    (work / "sub").mkdir(parents=True)
    (work / "weights.pth").write_bytes(b"w")
    (work / "sub" / "extra.txt").write_text("e")
    (work / "nb.ipynb").write_text("{hidden tests}")
    (work / "link").symlink_to("/etc/passwd")
    (work / "dirlink").symlink_to(tmp_path)
    copy = copy_workdir(work, tmp_path / "copy")
    assert sorted(str(p.relative_to(copy)) for p in copy.rglob("*")) == ["sub", "sub/extra.txt", "weights.pth"]


@pytest.mark.slow
def test_grading_with_and_without_the_warm_sandbox_gives_the_same_grades(tmp_path):
    """Through real ``nbgrader autograde``: do the course's notebooks get the same points and the
    same messages when the replay's processes are forked from the warm sandbox as when each
    gets a fresh bwrap (``--Sandbox.warm=False``)?"""
    from conftest import ASSIGNMENT, SOLUTIONS, grade_cell_errors

    from autograder.cli.weights import write_untrained_weights
    from autograder.grading.course import all_scores, autograde, build_course, submit

    course = build_course(tmp_path / "course", (ASSIGNMENT,))
    dest = submit(course, "untrained", {"ae.ipynb": SOLUTIONS / "ae.ipynb",
                                        "dae.ipynb": SOLUTIONS / "dae.ipynb"}, assignment=ASSIGNMENT)
    write_untrained_weights(dest, ["ae", "dae"], assignment=ASSIGNMENT)
    outcomes = {}
    same_draws = "--ReplayChecks.secret=20261207"  # both runs draw the same evaluation noise
    for mode, args in (("warm", (same_draws,)), ("cold", (same_draws, "--Sandbox.warm=False"))):
        run = autograde(course, force=True, args=args, assignment=ASSIGNMENT)
        assert run.returncode == 0, run.output[-4000:]
        assert ("forked from a warm sandbox" in run.output) == (mode == "warm"), run.output[-3000:]
        assert "warm sandbox is not available" not in run.output
        folder = course / "autograded" / "untrained" / ASSIGNMENT
        outcomes[mode] = (all_scores(course, ASSIGNMENT),
                          {nb: grade_cell_errors(folder / f"{nb}.ipynb") for nb in ("ae", "dae")})
    warm_scores, warm_errors = outcomes["warm"]
    assert warm_scores == outcomes["cold"][0]
    assert warm_errors == outcomes["cold"][1]
    points = {cell: score for (_, cell), (score, _) in warm_scores["untrained"].items()}
    assert points["test_ae_encoder"] == 2.0 and points["test_ae_probe"] == 0.0  # structural yes, trained no
    assert "accuracy too low" in warm_errors["ae"]["test_ae_probe"]
