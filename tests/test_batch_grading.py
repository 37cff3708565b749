"""``python -m autograder grade``: parallel grading that leaves the course as ``nbgrader autograde`` does.

One toy course (a notebook that imports data_tools; the real pipeline: sandbox, nbgrader) with
three students: alice (right, with a timestamp), bob (wrong) and carol (whose kernel dies, so her
cells are flagged for manual grading). It is graded once by plain ``nbgrader autograde``, the
anchor; every other way of grading a copy of it must leave the same gradebook rows and
autograded notebooks: a process pool, a real ``dask scheduler`` with two ``dask worker``
processes, a ``LocalCluster``, a real PostgreSQL gradebook, a run whose driver was killed.
"""
from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import nbformat
import pytest

from autograder.grading import batch
from autograder.grading.course import (
    autograde,
    fill,
    grade_cell,
    make_course,
    markdown,
    nbgrader,
    nbgrader_env,
    notebook,
    release,
    solution_cell,
    submit,
)
from autograder.grading.report import load

ASSIGNMENT = "toy"
RIGHT = "import data_tools\n\ndef square(x):\n    return x * x"
WRONG = "import data_tools\n\ndef square(x):\n    return x + x"
DIES = "import os\nos._exit(1)"
STUDENTS = ("alice", "bob", "carol")
VENV_BIN = Path(sys.executable).parent


def toy_source():
    return notebook(
        markdown("# Toy assignment\nImplement `square`."),
        solution_cell("import data_tools\n\ndef square(x):\n    ### BEGIN SOLUTION\n    return x * x\n"
                      "    ### END SOLUTION", "square"),
        grade_cell("assert square(3) == 9", "test_square", 1),
        grade_cell("assert square(-2) == 4\n### BEGIN HIDDEN TESTS\nassert square(12) == 144\n"
                   "### END HIDDEN TESTS", "test_hidden", 2),
    )


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    """The toy course with three submissions, never graded (tests grade copies of it)."""
    course = make_course(tmp_path_factory.mktemp("batch"), {ASSIGNMENT: toy_source()})
    released = release(course, ASSIGNMENT)
    submit(course, "alice", {"toy.ipynb": fill(released, {"square": RIGHT}),
                             "timestamp.txt": "2024-03-01 10:00:00.000000 UTC"})
    submit(course, "bob", {"toy.ipynb": fill(released, {"square": WRONG})})
    submit(course, "carol", {"toy.ipynb": fill(released, {"square": DIES})})
    return course


def copy_course(base: Path, tmp_path: Path, name: str = "course") -> Path:
    dest = tmp_path / name
    shutil.copytree(base, dest)
    return dest


def gradebook_rows(db_url: str, assignment: str = ASSIGNMENT) -> dict:
    """Everything nbgrader records about the submissions, without database ids."""
    from nbgrader.api import Gradebook

    rows = {}
    with Gradebook(db_url) as gb:
        for sub in gb.assignment_submissions(assignment):
            rows[sub.student_id] = {
                "timestamp": str(sub.timestamp), "late": sub.total_seconds_late,
                "notebooks": {nb.name: {
                    "grades": {g.name: (g.auto_score, g.manual_score, g.extra_credit, g.needs_manual_grade)
                               for g in nb.grades},
                    "comments": {c.name: (c.auto_comment, c.manual_comment) for c in nb.comments},
                    "flagged": nb.flagged} for nb in sub.notebooks}}
    return rows


def sqlite(course: Path) -> str:
    return f"sqlite:///{course / 'gradebook.db'}"


def autograded(course: Path) -> dict:
    """The autograded files: notebooks as (cell source, outputs), other files as bytes."""
    root = course / "autograded"
    files = {}
    for path in sorted(root.rglob("*")) if root.is_dir() else []:
        if path.is_file():
            rel = path.relative_to(root).as_posix()
            if path.suffix == ".ipynb":
                nb = nbformat.read(path, as_version=4)
                files[rel] = [(c.source, c.get("outputs")) for c in nb.cells]
            else:
                files[rel] = path.read_bytes()
    return files


@pytest.fixture(scope="module")
def anchor(base, tmp_path_factory) -> dict:
    """Plain ``nbgrader autograde`` of a copy: the gradebook rows and autograded files."""
    course = copy_course(base, tmp_path_factory.mktemp("sequential"))
    run = autograde(course)
    rows = gradebook_rows(sqlite(course))
    assert set(rows) == set(STUDENTS), run.output[-3000:]
    return {"rows": rows, "files": autograded(course), "seconds": run.seconds, "course": course}


def grade_cli(course: Path, *args: str, timeout: float = 600, tmp: Path | None = None
              ) -> subprocess.CompletedProcess:
    """``python -m autograder grade``; with ``tmp``, its temporary folders go there (TMPDIR)."""
    env = {} if tmp is None else {"TMPDIR": str(tmp), "AUTOGRADER_TEMPLATE_DIR": str(batch.template_cache())}
    return subprocess.run([sys.executable, "-m", "autograder", "grade", ASSIGNMENT, "--course", str(course),
                           "--no-progress", *args], capture_output=True, text=True, timeout=timeout,
                          env=nbgrader_env(env))


def assert_left_nothing(tmp: Path, seconds: float = 20) -> None:
    """Nothing of the run is left in its temporary folder: the grading processes' folders, the
    warm sandboxes' staging folders, the kernels' folders (an orphaned grading process cleans up
    within seconds of its worker's death)."""
    deadline = time.monotonic() + seconds
    while (left := sorted(p.name for p in tmp.iterdir())) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert left == [], left


def submissions(course: Path) -> dict:
    return load(course).get("submissions", {})


def assert_same_as_anchor(course: Path, anchor: dict, db_url: str | None = None, students=STUDENTS):
    rows = gradebook_rows(db_url or sqlite(course))
    assert rows == {s: anchor["rows"][s] for s in students}
    files = autograded(course)
    assert files == {k: v for k, v in anchor["files"].items() if k.split("/")[0] in students}


# -- the anchor itself ----------------------------------------------------------------------

@pytest.mark.slow
def test_anchor_grades_as_intended(anchor):
    """Does the toy course grade as designed: alice full, bob partial, carol flagged?"""
    rows = anchor["rows"]
    alice = rows["alice"]["notebooks"]["toy"]["grades"]
    bob = rows["bob"]["notebooks"]["toy"]["grades"]
    carol = rows["carol"]["notebooks"]["toy"]["grades"]
    assert alice == {"test_square": (1.0, None, None, False), "test_hidden": (2.0, None, None, False)}
    assert bob["test_square"][0] == 0 and bob["test_hidden"][0] == 0
    assert all(g[3] for g in carol.values())  # needs manual grading
    assert rows["alice"]["timestamp"].startswith("2024-03-01 10:00:00")


# -- the process pool ---------------------------------------------------------------------------

@pytest.mark.slow
def test_pool_matches_nbgrader_and_reruns_only_what_changed(base, anchor, tmp_path):
    """Does the pool leave nbgrader's gradebook and files, skip unchanged submissions on a re-run,
    regrade a changed one, and regrade with --force? Its temporary folder has a path as long as a
    cluster job's may be, too long for the kernels' sockets below it."""
    course = copy_course(base, tmp_path)
    tmp = tmp_path / "a-temporary-folder-whose-path-is-as-long-as-a-cluster-job-s-may-be"
    tmp.mkdir()
    assert len(str(tmp)) + 60 > 107
    run = grade_cli(course, "--workers", "2", tmp=tmp)
    assert run.returncode == 0, run.stdout + run.stderr
    assert_left_nothing(tmp)
    assert "preflight: full marks" in run.stdout
    assert "3 graded, 0 unchanged (skipped), 0 failed" in run.stdout
    assert_same_as_anchor(course, anchor)
    records = submissions(course)
    assert {k: v["status"] for k, v in records.items()} == {f"toy/{s}": "graded" for s in STUDENTS}
    assert all(v["attempts"] == 1 and v["seconds"] > 0 and v["error"] is None for v in records.values())
    # the notebook entries that `python -m autograder failures` reads
    assert load(course)["notebooks"]["toy/carol/toy"]["status"] == "failed"
    assert load(course)["notebooks"]["toy/alice/toy"]["status"] == "ok"

    again = grade_cli(course, "--workers", "2")
    assert again.returncode == 0 and "0 graded, 3 unchanged (skipped)" in again.stdout, again.stdout
    assert "preflight" not in again.stdout  # nothing to grade, nothing to check

    released = release(course, ASSIGNMENT)
    submit(course, "bob", {"toy.ipynb": fill(released, {"square": RIGHT})})
    changed = grade_cli(course, "--workers", "2", "--skip-preflight")
    assert "1 graded, 2 unchanged (skipped)" in changed.stdout, changed.stdout + changed.stderr
    assert gradebook_rows(sqlite(course))["bob"]["notebooks"]["toy"]["grades"]["test_hidden"][0] == 2.0
    assert submissions(course)["toy/bob"]["key"] != records["toy/bob"]["key"]

    forced = grade_cli(course, "--workers", "1", "--skip-preflight", "--force", "--student", "alice")
    assert "1 graded, 0 unchanged (skipped)" in forced.stdout, forced.stdout + forced.stderr
    assert submissions(course)["toy/alice"]["finished"] >= records["toy/alice"]["finished"]
    assert gradebook_rows(sqlite(course))["alice"] == anchor["rows"]["alice"]


@pytest.mark.slow
def test_batches_match_nbgrader(base, anchor, tmp_path):
    """Graded three to a task (one nbgrader, one warm sandbox, one judges' server for all three),
    does the class get nbgrader's gradebook and files, with one record per student?"""
    course = copy_course(base, tmp_path)
    run = grade_cli(course, "--workers", "1", "--batch", "3", "--skip-preflight")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "3 graded, 0 unchanged (skipped), 0 failed" in run.stdout
    assert_same_as_anchor(course, anchor)
    records = submissions(course)
    assert {k: (v["status"], v["attempts"]) for k, v in records.items()} == {
        f"toy/{s}": ("graded", 1) for s in STUDENTS}
    assert len({v["worker"] for v in records.values()}) == 1


def kill_batches(stop: threading.Event, killed: list) -> None:
    """SIGKILL the worker of every batch (a private course with several students)."""
    kill_parents(lambda students: len(students) > 1, stop, killed)


@pytest.mark.slow
def test_a_batch_whose_worker_dies_is_graded_again_one_by_one(base, anchor, tmp_path):
    """When the worker of a batch dies, are its students graded again one at a time (and those
    attempts, not the batch's, counted), ending as nbgrader would have graded them?"""
    course = copy_course(base, tmp_path)
    stop, killed = threading.Event(), []
    killer = threading.Thread(target=kill_batches, args=(stop, killed), daemon=True)
    killer.start()
    try:
        run = grade_cli(course, "--workers", "1", "--batch", "3", "--skip-preflight", "--retries", "0")
    finally:
        stop.set()
        killer.join()
    assert run.returncode == 0, run.stdout + run.stderr
    assert len(killed) == 1 and "3 graded, 0 unchanged (skipped), 0 failed" in run.stdout
    assert_same_as_anchor(course, anchor)
    assert {k: v["attempts"] for k, v in submissions(course).items()} == {f"toy/{s}": 1 for s in STUDENTS}


def test_preflight_names_nbgrader_s_error_when_no_notebook_was_autograded():
    """When nbgrader could not grade the reference's notebook at all (no autograded notebook, no
    error in a cell), does the preflight's message carry the error nbgrader logged?"""
    log = ("[AutogradeApp | ERROR] There was a problem\n    Traceback (most recent call last):\n"
           "      File \"execute.py\", line 69, in preprocess\n"
           "    autograder.sandbox.SandboxUnavailable: the kernel did not start in the sandbox "
           "(ZMQError: File name too long)\n[AutogradeApp | WARNING] Removing failed assignment\n")
    result = {"status": "graded", "scores": [["toy", "test_square", 0.0, 1.0, False]], "log": log}
    assert batch.first_failure(result) == (
        "toy [test_square]: 0 of 1 point(s): SandboxUnavailable: the kernel did not start in the "
        "sandbox (ZMQError: File name too long)")
    assert batch.first_failure({**result, "log": "no traceback"}).endswith("no error output")


def test_batch_sizes_leave_every_worker_several_tasks():
    assert batch.batch_sizes(1, 2) == [1]
    assert batch.batch_sizes(4, 2) == [1, 1, 1, 1]
    assert batch.batch_sizes(12, 2) == [3, 2, 1, 1, 1, 1, 1, 1, 1]
    for n, workers in ((24, 2), (60, 2), (2000, 2), (2000, 16), (7, 64)):
        sizes = batch.batch_sizes(n, workers)
        assert sum(sizes) == n and max(sizes) <= batch.MAX_BATCH
        assert sizes == sorted(sizes, reverse=True) and sizes[-1] == 1  # shrinking to single ones
        assert len(sizes) >= min(n, 3 * workers)  # every worker gets several tasks
    tasks = [{"student": s, "key": s * 2, "assignment": "a"} for s in "abcde"]
    grouped = batch.batches(tasks, 2)
    assert [t.get("student") for t in grouped] == ["a, b", "c, d", "e"]
    assert [len(t["batch"]) for t in grouped[:2]] == [2, 2] and "batch" not in grouped[2]
    assert batch.batches(tasks, 1) == tasks
    assert [t.get("student") for t in batch.batches(tasks, [3, 1, 1])] == ["a, b, c", "d", "e"]


def test_a_pool_worker_computes_on_its_share_of_the_cores(monkeypatch):
    """Does each worker of a pool get OMP_NUM_THREADS = cores / workers for its nbgrader (and so
    for its kernels, re-runs and judges), unless the instructor set OMP_NUM_THREADS?"""
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    cores = os.cpu_count() or 1
    assert batch.PoolRunner(2).threads == max(1, cores // 2)
    assert batch.PoolRunner(4 * cores).threads == 1
    assert batch.worker_env(3)["OMP_NUM_THREADS"] == "3"
    assert "OMP_NUM_THREADS" not in batch.worker_env(None)
    monkeypatch.setenv("OMP_NUM_THREADS", "7")
    assert batch.worker_env(3)["OMP_NUM_THREADS"] == "7"


# -- Dask ----------------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def dask_cluster():
    """A real `dask scheduler` and two `dask worker` processes on 127.0.0.1."""
    from distributed import Client

    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    dask = str(VENV_BIN / "dask")
    env = nbgrader_env({"OMP_NUM_THREADS": "1"})
    procs = [subprocess.Popen([dask, "scheduler", "--host", "127.0.0.1", "--port", str(port),
                               "--dashboard-address", ":0"], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)]
    try:
        for _ in range(2):
            procs.append(subprocess.Popen([dask, "worker", address, "--nthreads", "1", "--host", "127.0.0.1",
                                           "--dashboard-address", ":0"], env=env, stdout=subprocess.DEVNULL,
                                          stderr=subprocess.DEVNULL, start_new_session=True))
        with Client(address, timeout="60s") as client:
            client.wait_for_workers(2, timeout=120)
        yield address
    finally:
        for proc in reversed(procs):
            os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


@pytest.mark.slow
def test_dask_scheduler_and_workers_match_nbgrader(base, anchor, tmp_path, dask_cluster):
    """Do a real dask scheduler and two dask worker processes grade like nbgrader?"""
    course = copy_course(base, tmp_path)
    run = grade_cli(course, "--scheduler", dask_cluster, "--skip-preflight", "--student", "alice", "carol")
    assert run.returncode == 0, run.stdout + run.stderr
    assert_same_as_anchor(course, anchor, students=("alice", "carol"))
    records = submissions(course)
    assert {v["status"] for v in records.values()} == {"graded"}
    assert all(v["worker"] and v["attempts"] == 1 for v in records.values())


@pytest.mark.slow
def test_local_cluster_matches_nbgrader(base, anchor, tmp_path):
    """Does a LocalCluster of worker processes, driven in-process, grade like nbgrader?"""
    from distributed import Client, LocalCluster

    course = copy_course(base, tmp_path)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster, Client(cluster) as client:
        runner = batch.DaskRunner(client)
        summary = batch.grade(course, ASSIGNMENT, runner, students=["bob"], skip_preflight=True,
                              progress=False)
        runner.close()
    assert summary.graded == ["bob"] and summary.failed == []
    assert_same_as_anchor(course, anchor, students=("bob",))


# -- PostgreSQL ---------------------------------------------------------------------------------

@pytest.fixture
def postgres():
    """A PostgreSQL server of its own (Debian's package) on 127.0.0.1; yields a database URL."""
    import psycopg2

    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    assert found, "PostgreSQL is not installed: run make setup (scripts/setup_postgres.sh)"
    bindir = Path(found[-1]).parent
    tmp = Path(tempfile.mkdtemp(prefix="autograder-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:  # initdb refuses root: the server runs as the postgres user
        user = pwd.getpwnam("postgres")
        os.chown(tmp, user.pw_uid, user.pw_gid)
        as_user = ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--init-groups"]
    port = free_port()
    server = None
    try:
        subprocess.run([*as_user, str(bindir / "initdb"), "-D", str(tmp / "data"), "-A", "trust",
                        "-U", "postgres"], check=True, capture_output=True, timeout=120)
        server = subprocess.Popen([*as_user, str(bindir / "postgres"), "-D", str(tmp / "data"),
                                   "-h", "127.0.0.1", "-p", str(port), "-k", str(tmp)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(300):
            try:
                conn = psycopg2.connect(host="127.0.0.1", port=port, user="postgres", dbname="postgres")
                break
            except psycopg2.OperationalError:
                assert server.poll() is None, "the PostgreSQL server stopped while starting"
                time.sleep(0.1)
        else:
            raise AssertionError("the PostgreSQL server did not accept connections within 30 s")
        conn.autocommit = True
        conn.cursor().execute("CREATE DATABASE gradebook")
        conn.close()
        # SQLAlchemy 2.1 reads a plain postgresql:// as psycopg 3; the course installs psycopg2
        yield f"postgresql+psycopg2://postgres@127.0.0.1:{port}/gradebook"
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=60)
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.mark.slow
def test_postgresql_gradebook_gets_the_same_rows(base, anchor, tmp_path, postgres):
    """With db_url on a real PostgreSQL server, does the pool write the rows nbgrader writes?"""
    course = copy_course(base, tmp_path)
    (course / "gradebook.db").unlink()
    with open(course / "nbgrader_config.py", "a") as f:
        f.write(f"\nc.CourseDirectory.db_url = {postgres!r}\n")
    run = nbgrader(course, "generate_assignment", ASSIGNMENT, "--force")
    assert run.returncode == 0, run.stdout + run.stderr
    graded = grade_cli(course, "--workers", "2", "--skip-preflight", "--student", "alice", "carol")
    assert graded.returncode == 0, graded.stdout + graded.stderr
    assert not (course / "gradebook.db").exists()  # nothing went to SQLite
    assert_same_as_anchor(course, anchor, db_url=postgres, students=("alice", "carol"))


# -- failures and interruptions --------------------------------------------------------------------

def kill_parents(matches, stop: threading.Event, killed: list) -> None:
    """SIGKILL the parent (the worker) of every grading process (``autograde_server``) that
    runs nbgrader in a worker's private course (``autograder-task-*/course``; never another
    test's ``nbgrader autograde``) whose submitted students ``matches``."""
    while not stop.is_set():
        for proc in Path("/proc").iterdir():
            try:
                cmd = (proc / "cmdline").read_bytes().split(b"\0")
                cwd = Path(os.readlink(proc / "cwd"))
                if (b"autograder.grading.autograde_server" in cmd and "/autograder-task-" in str(cwd)
                        and (cwd / "gradebook.db").exists()
                        and matches(sorted(p.name for p in (cwd / "submitted").iterdir()))):
                    ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
                    # a pool worker (forked by multiprocessing's forkserver), never the process
                    # that adopted an orphaned grading process while it cleans up
                    parent = Path(f"/proc/{ppid}/cmdline").read_bytes()
                    if ppid not in killed and b"multiprocessing" in parent:
                        os.kill(ppid, signal.SIGKILL)
                        killed.append(ppid)
            except (OSError, ValueError, IndexError):
                continue
        time.sleep(0.05)


def kill_workers_of(student: str, stop: threading.Event, killed: list) -> None:
    """SIGKILL the worker process while it grades STUDENT alone."""
    kill_parents(lambda students: students == [student], stop, killed)


@pytest.mark.slow
def test_a_submission_past_the_time_limit_fails_alone_and_the_next_ones_are_graded(base, anchor, tmp_path,
                                                                                   short_tmp):
    """Does ``--timeout`` stop a submission that hangs (its grading process is killed), record
    it as failed with the limit in the message, and grade the next students with a fresh
    grading process exactly as nbgrader grades them?"""
    course = copy_course(base, tmp_path)
    hangs = fill(release(course, ASSIGNMENT), {"square": "import time\ntime.sleep(900)"})
    submit(course, "aaron", {"toy.ipynb": hangs})
    run = grade_cli(course, "--workers", "1", "--batch", "1", "--retries", "0", "--timeout", "45",
                    "--skip-preflight", "--student", "aaron", "alice", "bob", tmp=short_tmp)
    assert run.returncode == 1, run.stdout + run.stderr
    assert_left_nothing(short_tmp)
    assert "2 graded, 0 unchanged (skipped), 1 failed" in run.stdout, run.stdout
    record = submissions(course)["toy/aaron"]
    assert record["status"] == "failed" and "grading took longer than the limit of 45 s" in record["error"]
    rows = gradebook_rows(sqlite(course))
    assert {s: rows[s] for s in ("alice", "bob")} == {s: anchor["rows"][s] for s in ("alice", "bob")}
    assert all(g[0] == 0.0 and g[3] for g in rows["aaron"]["notebooks"]["toy"]["grades"].values())


@pytest.mark.slow
def test_killed_worker_is_retried_then_failed_for_that_student_only(base, anchor, tmp_path, short_tmp):
    """Is a submission whose worker is killed at every attempt retried, then recorded as failed
    and flagged for manual grading, while the other student is graded normally?"""
    course = copy_course(base, tmp_path)
    stop, killed = threading.Event(), []
    killer = threading.Thread(target=kill_workers_of, args=("bob", stop, killed), daemon=True)
    killer.start()
    try:
        run = grade_cli(course, "--workers", "2", "--retries", "1", "--skip-preflight",
                        "--student", "alice", "bob", tmp=short_tmp)
    finally:
        stop.set()
        killer.join()
    assert run.returncode == 1, run.stdout + run.stderr
    assert_left_nothing(short_tmp)
    assert "1 graded, 0 unchanged (skipped), 1 failed" in run.stdout and "grading failed for: bob" in run.stdout
    assert len(killed) == 2  # the first attempt and one retry
    record = submissions(course)["toy/bob"]
    assert record["status"] == "failed" and record["attempts"] == 2
    assert "the worker process died" in record["error"]
    rows = gradebook_rows(sqlite(course))
    assert rows["alice"] == anchor["rows"]["alice"]
    assert {k: (g[0], g[3]) for k, g in rows["bob"]["notebooks"]["toy"]["grades"].items()} == {
        "test_square": (0.0, True), "test_hidden": (0.0, True)}
    nb = nbformat.read(course / "autograded" / "bob" / "toy" / "toy.ipynb", as_version=4)
    errors = [o.evalue for c in nb.cells for o in c.get("outputs", []) if o.output_type == "error"]
    assert len(errors) == 2 and all(e.startswith("grading failed: the worker process died") for e in errors)
    failures = subprocess.run([sys.executable, "-m", "autograder", "failures", "--course", str(course)],
                              capture_output=True, text=True)
    assert "toy/bob/toy [test_hidden]: grading failed: the worker process died" in failures.stdout


@pytest.mark.slow
def test_driver_killed_while_writing_then_rerun_completes(base, anchor, tmp_path):
    """After a SIGKILL of the command while it writes a student, does the next run leave exactly
    nbgrader's gradebook?"""
    course = copy_course(base, tmp_path)
    cmd = [sys.executable, "-m", "autograder", "grade", ASSIGNMENT, "--course", str(course), "--no-progress",
           "--workers", "1", "--skip-preflight", "--student", "alice", "carol"]
    driver = subprocess.Popen(cmd, env=nbgrader_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and driver.poll() is None:
            if any(v["status"] == "writing" for v in submissions(course).values()):
                break
            time.sleep(0.01)
        driver.send_signal(signal.SIGKILL)
    finally:
        driver.wait()
        os.killpg(driver.pid, signal.SIGKILL)  # its workers
    written = [k for k, v in submissions(course).items() if v["status"] == "writing"]
    assert written, "the command ended before writing any student"
    run = grade_cli(course, "--workers", "2", "--skip-preflight", "--student", "alice", "carol")
    assert run.returncode == 0, run.stdout + run.stderr
    assert_same_as_anchor(course, anchor, students=("alice", "carol"))
    assert {v["status"] for v in submissions(course).values()} == {"graded"}


# -- preflight -------------------------------------------------------------------------------------

@pytest.mark.slow
def test_preflight_refuses_a_sandbox_without_data_tools(base, tmp_path):
    """When the sandbox cannot import data_tools, do `grade` and plain `nbgrader autograde`
    refuse before any gradebook row exists, naming the cause?"""
    course = copy_course(base, tmp_path)
    with open(course / "nbgrader_config.py", "a") as f:
        f.write('\nc.Sandbox.packages = ["autograder"]  # data_tools no longer shown in the sandbox\n')
    run = grade_cli(course, "--workers", "1")
    assert run.returncode == 2, run.stdout + run.stderr
    assert "preflight: the reference solutions of 'toy' do not get full marks" in run.stderr
    assert "No module named 'data_tools'" in run.stderr
    assert gradebook_rows(sqlite(course)) == {} and not (course / "autograded").exists()

    plain = autograde(course)
    assert plain.returncode != 0
    assert "the sandboxed Python cannot import the course packages" in plain.output
    assert "No module named 'data_tools'" in plain.output and "No submission was touched" in plain.output
    assert gradebook_rows(sqlite(course)) == {} and not (course / "autograded").exists()


@pytest.fixture
def unreleased(tmp_path) -> Path:
    """A course folder with the toy source and two submissions, never released (no nbgrader run)."""
    course = tmp_path / "course"
    (course / "solutions" / ASSIGNMENT).mkdir(parents=True)
    (course / "nbgrader_config.py").write_text((Path(__file__).parents[1] / "nbgrader_config.py").read_text())
    nbformat.write(toy_source(), course / "solutions" / ASSIGNMENT / "toy.ipynb")
    submit(course, "alice", {"toy.ipynb": toy_source(), "timestamp.txt": "2024-03-01 10:00:00.000000 UTC"})
    submit(course, "bob", {"toy.ipynb": toy_source()})
    return course


@pytest.mark.slow
def test_grade_rejects_an_unknown_student(unreleased):
    """Does `grade --student` name a student without a submission, before grading anyone?"""
    run = grade_cli(unreleased, "--student", "mallory", "--skip-preflight")
    assert run.returncode == 2
    assert "no submission of 'toy' for mallory" in run.stderr
    assert not (unreleased / "autograded").exists() and not (unreleased / "grading_report.json").exists()


@pytest.mark.slow
def test_grade_refuses_an_unreleased_assignment(unreleased):
    """Does `grade` on an assignment never released stop with the command that fixes it?"""
    run = grade_cli(unreleased, "--skip-preflight")
    assert run.returncode == 2
    assert "was never released" in run.stderr and "nbgrader generate_assignment toy" in run.stderr
    assert not (unreleased / "autograded").exists() and not (unreleased / "grading_report.json").exists()


def test_task_key_follows_the_submission_and_the_grader(unreleased):
    """Does the task key change with a submitted file or the grader's version, and only then?"""
    definition = batch.grading_definition(unreleased, ASSIGNMENT)
    version = batch.grader_version(definition)
    files = batch.submission_files(unreleased, ASSIGNMENT, "alice")
    assert set(files) == {"toy.ipynb", "timestamp.txt"}
    key = batch.make_task(ASSIGNMENT, "alice", files, definition, version)["key"]
    assert batch.make_task(ASSIGNMENT, "alice", dict(files), definition, version)["key"] == key
    changed = {**files, "timestamp.txt": b"2024-03-02 10:00:00.000000 UTC"}
    assert batch.make_task(ASSIGNMENT, "alice", changed, definition, version)["key"] != key
    other = {**definition, "config": definition["config"] + "\n# changed\n"}
    assert batch.grader_version(other) != version
