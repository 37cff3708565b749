"""Hostile, broken and crashing submissions through the real ``nbgrader autograde``.

One throw-away course with a toy notebook (``square`` plus a visible and a hidden test), many
crafted submissions, and a single autograde call for all of them (kernel starts dominate the
run time). Each test then reads the gradebook, the autograded notebooks and the grading report.
The table in ``docs/reliability.md`` is generated from this run: ``test_reliability_table``
fails when it is out of date; ``UPDATE_RELIABILITY_DOC=1`` rewrites it.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
import pytest
from nbgrader_harness import (
    PROBE,
    add_cell,
    autograde,
    autograde_command,
    fill,
    flagged,
    grade_cell,
    graded,
    host_address,
    make_course,
    markdown,
    nbgrader_env,
    notebook,
    outputs,
    release,
    report,
    sandbox_processes,
    scores,
    solution_cell,
    submit,
)

from autograder.grading.report import INTERRUPTED, failures
from autograder.grading.report import main as report_main

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "reliability.md"
TIMEOUT = 5  # per-cell time limit for these tests (the course's own is 300 s)

SQUARE = "def square(x):\n    return x * x"
WRONG = "def square(x):\n    return x + x"
FULL = {"test_square": 1.0, "test_hidden": 2.0}
ZERO = {"test_square": 0.0, "test_hidden": 0.0}


def toy_source():
    return notebook(
        markdown("# Toy assignment\nImplement `square`."),
        solution_cell("def square(x):\n    ### BEGIN SOLUTION\n    return x * x\n    ### END SOLUTION", "square"),
        grade_cell("assert square(3) == 9", "test_square", 1),
        grade_cell("assert square(-2) == 4\n### BEGIN HIDDEN TESTS\nassert square(12) == 144\n"
                   "### END HIDDEN TESTS", "test_hidden", 2),
    )


# -- crafted submissions -------------------------------------------------------------------

def tamper(nb, grade_id: str, change: Callable):
    nb = nbformat.from_dict(nb)
    for cell in nb.cells:
        if cell.metadata.get("nbgrader", {}).get("grade_id") == grade_id:
            change(cell)
    return nb


def without(nb, grade_id: str):
    nb = nbformat.from_dict(nb)
    nb.cells = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") != grade_id]
    return nb


def neutered(**metadata):
    """Make a test cell pass trivially and change its nbgrader metadata."""
    def change(cell):
        cell.source = "pass"
        cell.metadata.nbgrader.update(metadata)
    return change


def stripped(cell):
    cell.source = "pass"
    del cell.metadata["nbgrader"]


MEMORY_BOMB = '''import numpy as np
huge = None
try:
    huge = bytearray(64 * 1024 ** 3)
except MemoryError:
    print("64 GiB at once: MemoryError")
chunks = []
try:
    while True:
        chunks.append(np.empty(1024 ** 3, dtype=np.uint8))
finally:
    print("stopped below 7 GiB:", len(chunks) < 7)
    del chunks
'''

STUBBORN_LOOP = "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n    pass"

FORK_BOMB = '''import os
if os.getpid() > 100 or os.getuid() == 0:
    raise SystemExit("refusing to run a fork bomb outside the sandbox")
while True:
    os.fork()
'''

NOISY_SQUARE = '''import sys, warnings
from tqdm import tqdm

def square(x):
    warnings.warn("square() is being graded", UserWarning)
    for _ in tqdm(range(3), desc="squaring"):
        pass
    print("progress: done", file=sys.stderr)
    return x * x
'''


def read_probe(course: Path) -> str:
    targets = {
        "gradebook.db": str(course / "gradebook.db"),
        "gradebook.db (relative)": "../../../gradebook.db",
        "solutions/ (hidden tests)": str(course / "solutions" / "toy" / "toy.ipynb"),
        "own sanitized notebook": "toy.ipynb",
        "nbgrader_config.py": str(course / "nbgrader_config.py"),
        "another student's submission": str(course / "submitted" / "a_honest" / "toy" / "toy.ipynb"),
        "another student's autograded notebook": str(course / "autograded" / "a_honest" / "toy" / "toy.ipynb"),
    }
    return PROBE + f'''targets = {targets!r}
found = {{k: attempt(lambda p=p: open(p, "rb").read()) for k, p in targets.items()}}
print("READ", json.dumps(found, sort_keys=True))
print("LISTING", json.dumps(sorted(os.listdir({str(course)!r}))))
'''


def write_probe(course: Path) -> str:
    targets = {
        "gradebook.db": str(course / "gradebook.db"),
        "nbgrader_config.py": str(course / "nbgrader_config.py"),
        "solutions/": str(course / "solutions" / "toy" / "toy.ipynb"),
        "another student's submission": str(course / "submitted" / "a_honest" / "toy" / "toy.ipynb"),
        "another student's autograded notebook": str(course / "autograded" / "a_honest" / "toy" / "toy.ipynb"),
    }
    return PROBE + f'''def append(path):
    with open(path, "ab") as f:
        f.write(b"pwned")
targets = {targets!r}
done = {{k: attempt(lambda p=p: append(p)) for k, p in targets.items()}}
done["new file in the course root"] = attempt(lambda: append({str(course / "pwned.txt")!r}))
done["scratch file in the working copy"] = attempt(lambda: append("scratch.txt"))
done["symlink toy_next.ipynb -> gradebook.db"] = attempt(
    lambda: os.symlink({str(course / "gradebook.db")!r}, "toy_next.ipynb"))
print("WRITE", json.dumps(done, sort_keys=True))
'''


def network_probe(port: int, host_ip: str) -> str:
    return PROBE + f'''import socket
found = {{ip: attempt(lambda ip=ip: socket.create_connection((ip, {port}), timeout=2).close())
         for ip in ["127.0.0.1", {host_ip!r}]}}
print("NET", json.dumps(found, sort_keys=True))
'''


@dataclass
class Case:
    student: str
    does: str  # what the submission does (for the reliability table)
    build: Callable  # (ctx) -> notebook or raw text
    expect: dict = field(default_factory=lambda: dict(FULL))
    failed: str | None = None  # a phrase the report must give, or None for "graded normally"


@dataclass
class Ctx:
    course: Path
    release: nbformat.NotebookNode
    port: int
    host_ip: str

    @property
    def good(self):
        return fill(self.release, {"square": SQUARE})

    @property
    def wrong(self):
        return fill(self.release, {"square": WRONG})


CASES = [
    Case("a_honest", "correct `square`", lambda c: c.good),
    Case("wrong", "wrong `square` (x + x)", lambda c: c.wrong, ZERO),
    Case("infinite_loop", "`while True: pass` in a student cell",
         lambda c: add_cell(c.good, "square", "while True:\n    pass"),
         failed=f"did not finish within the time limit of {TIMEOUT} s"),
    Case("stubborn_loop", "infinite loop that ignores SIGINT, after the first test",
         lambda c: add_cell(c.good, "test_square", STUBBORN_LOOP),
         {"test_square": 1.0, "test_hidden": 0.0}, failed="did not stop when interrupted"),
    Case("memory_bomb", "allocates 64 GiB at once, then 1 GiB numpy arrays until it fails",
         lambda c: add_cell(c.good, "square", MEMORY_BOMB), failed="ran out of memory"),
    Case("os_exit", "`os._exit(1)` after the first test", lambda c: add_cell(c.good, "test_square",
         "import os\nos._exit(1)"), {"test_square": 1.0, "test_hidden": 0.0}, failed="exit status 1"),
    Case("sigkill", "`os.kill(os.getpid(), SIGKILL)` after the first test",
         lambda c: add_cell(c.good, "test_square", "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)"),
         {"test_square": 1.0, "test_hidden": 0.0}, failed="killed by SIGKILL"),
    Case("escape", "reads and writes the gradebook, sources and other students' files, "
         "plants a symlink, connects to a host socket",
         lambda c: add_cell(add_cell(add_cell(c.good, "square", network_probe(c.port, c.host_ip)),
                                     "square", write_probe(c.course)), "square", read_probe(c.course))),
    Case("bad_json", "notebook file is not valid JSON", lambda c: "{not json", ZERO, failed="not valid JSON"),
    Case("deleted_test_honest", "correct code, hidden-test cell deleted", lambda c: without(c.good, "test_hidden")),
    Case("deleted_test_wrong", "wrong code, hidden-test cell deleted", lambda c: without(c.wrong, "test_hidden"),
         ZERO),
    Case("edited_tests_wrong", "wrong code, both test cells replaced by `pass`",
         lambda c: fill(c.wrong, {"test_square": "pass", "test_hidden": "pass"}), ZERO),
    Case("metadata_points_wrong", "wrong code, test cell emptied and its points set to 100",
         lambda c: tamper(c.wrong, "test_square", neutered(points=100)), ZERO),
    Case("metadata_grade_off_wrong", "wrong code, hidden-test cell emptied and marked not graded",
         lambda c: tamper(c.wrong, "test_hidden", neutered(grade=False)), ZERO),
    Case("metadata_solution_wrong", "wrong code, hidden-test cell emptied and made an editable solution cell",
         lambda c: tamper(c.wrong, "test_hidden", neutered(solution=True, locked=False)), ZERO),
    Case("metadata_removed_wrong", "wrong code, hidden-test cell emptied and its nbgrader metadata removed",
         lambda c: tamper(c.wrong, "test_hidden", stripped), ZERO),
    Case("metadata_renamed_honest", "correct code, hidden-test cell's grade_id renamed",
         lambda c: tamper(c.good, "test_hidden", neutered(grade_id="not_a_test"))),
    Case("stderr_noise", "`square` warns, draws a tqdm bar and prints to stderr during the tests",
         lambda c: fill(c.release, {"square": NOISY_SQUARE})),
    Case("z_honest_after", "correct `square`, graded after all of the above", lambda c: c.good),
]
BY_STUDENT = {case.student: case for case in CASES}
# Graded in the same run, between the cases above (students are graded in name order), but
# outside the table: where exactly a fork bomb stops may vary from run to run.
FORK_BOMB_STUDENT = "fork_bomb"


# -- the graded course ---------------------------------------------------------------------

class Listener:
    """A TCP socket on all host interfaces that counts the connections it accepts."""

    def __init__(self):
        self.server = socket.socket()
        self.server.bind(("0.0.0.0", 0))
        self.server.listen()
        self.server.settimeout(0.2)
        self.port = self.server.getsockname()[1]
        self.accepted = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self):
        while not self._stop.is_set():
            try:
                self.server.accept()[0].close()
                self.accepted += 1
            except OSError:
                pass

    def close(self):
        self._stop.set()
        self._thread.join()
        self.server.close()


def digest(path: Path) -> tuple[str, int]:
    return hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mode


@dataclass
class Graded:
    course: Path
    run: object
    before: dict
    listener: Listener
    host_ip: str


@pytest.fixture(scope="module")
def result(tmp_path_factory) -> Graded:
    listener = Listener()
    host_ip = host_address()
    try:
        socket.create_connection(("127.0.0.1", listener.port), timeout=2).close()
        deadline = time.monotonic() + 5
        while listener.accepted < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert listener.accepted == 1, "the listener must work for the network test to mean anything"
        listener.accepted = 0
        course = make_course(tmp_path_factory.mktemp("robust"), {"toy": toy_source()})
        ctx = Ctx(course, release(course, "toy"), listener.port, host_ip)
        for case in CASES:
            submit(course, case.student, {"toy.ipynb": case.build(ctx)})
        submit(course, FORK_BOMB_STUDENT, {"toy.ipynb": add_cell(ctx.good, "test_square", FORK_BOMB)})
        before = {p: digest(course / p) for p in ["nbgrader_config.py", "solutions/toy/toy.ipynb",
                                                   "submitted/a_honest/toy/toy.ipynb"]}
        before["gradebook.db mode"] = (course / "gradebook.db").stat().st_mode
        run = autograde(course, timeout=TIMEOUT)
    finally:
        listener.close()
    return Graded(course, run, before, listener, host_ip)


def points(g: Graded, student: str) -> dict[str, float]:
    return {grade_id: score for (_, grade_id), (score, _) in scores(g.course, student).items()}


def problems(g: Graded, student: str) -> list[str]:
    return [p["reason"] for p in report(g.course)[(student, "toy")]["problems"]]


def probe(g: Graded, student: str, tag: str) -> dict:
    nb = graded(g.course, student, "toy")
    for i in range(len(nb.cells)):
        for line in outputs(nb, index=i).splitlines():
            if line.startswith(tag + " "):
                return json.loads(line[len(tag) + 1:])
    raise AssertionError(f"no {tag} line in the outputs of {student}")


# -- the tests -----------------------------------------------------------------------------

@pytest.mark.parametrize("student", [c.student for c in CASES])
def test_points_are_what_the_code_deserves(result, student):
    """Does each submission get exactly the points its code deserves, no more and no less?"""
    case = BY_STUDENT[student]
    assert points(result, student) == case.expect, result.run.output[-3000:]
    max_scores = {gid: m for (_, gid), (_, m) in scores(result.course, student).items()}
    assert max_scores == FULL


@pytest.mark.parametrize("student", [c.student for c in CASES])
def test_failures_are_reported_not_hidden(result, student):
    """Is every infrastructure failure (and only those) recorded as 'grading failed: <reason>'?"""
    case = BY_STUDENT[student]
    entry = report(result.course)[(student, "toy")]
    if case.failed is None:
        assert entry["status"] == "ok" and entry["problems"] == []
    else:
        assert entry["status"] == "failed"
        assert any(case.failed in reason for reason in problems(result, student)), problems(result, student)


def test_all_students_were_graded_in_one_run(result):
    """Did one bad notebook leave every other student graded (nbgrader only reports the bad one)?"""
    assert result.run.returncode != 0  # bad_json is reported as an error by nbgrader...
    assert "There was an error processing assignment 'toy' for student 'bad_json'" in result.run.output
    others = [c.student for c in CASES if c.student != "bad_json"] + [FORK_BOMB_STUDENT]
    assert [s for s in others if graded(result.course, s, "toy") is None] == []
    assert len(re.findall(r"There was an error processing assignment '", result.run.output)) == 1


def test_crash_keeps_earlier_cells_and_the_folder(result):
    """After the kernel died, do earlier cells keep their points, the later ones say why they
    failed, and the folder stay?"""
    for student in ["os_exit", "sigkill", "stubborn_loop"]:
        nb = graded(result.course, student, "toy")
        assert nb is not None, f"the autograded folder of {student} was deleted"
        assert "GradingFailed: grading failed: not run, because" in outputs(nb, "test_hidden")
        assert "GradingFailed" not in outputs(nb, "test_square")
        assert flagged(result.course, student) == {("toy", "test_hidden")}
    assert flagged(result.course, "a_honest") == set()


def test_report_command_lists_failures(result, capsys):
    """Does `python -m autograder.grading.report` list every failed grading with its reason?"""
    assert report_main(["--course", str(result.course)]) == 1
    printed = capsys.readouterr().out
    listed = {line.split("/")[1] for line in printed.splitlines()}
    assert listed == {c.student for c in CASES if c.failed} | {FORK_BOMB_STUDENT}
    assert "toy/os_exit/toy [test_hidden]: grading failed: not run, because the kernel died" in printed
    assert {e["student"] for e in failures(result.course)} == listed


def test_memory_bomb_hits_the_limit_inside_the_sandbox(result):
    """Did the memory bomb fail with MemoryError below the limit, leaving the kernel alive?"""
    nb = graded(result.course, "memory_bomb", "toy")
    text = "".join(outputs(nb, index=i) for i in range(len(nb.cells)))
    assert "64 GiB at once: MemoryError" in text and "stopped below 7 GiB: True" in text
    assert "the limit is 6 GiB per process" in text


def test_student_code_cannot_read_course_secrets(result):
    """Could student code read the gradebook, the hidden tests or other students' work?"""
    found = probe(result, "escape", "READ")
    assert len(found) == 7
    assert {k: v for k, v in found.items() if v == "ok"} == {}
    assert probe(result, "escape", "LISTING") == ["autograded"]  # only the path to its own copy
    nb = graded(result.course, "escape", "toy")
    student_outputs = "".join(outputs(nb, index=i) for i in range(len(nb.cells)))
    assert "square(12)" not in student_outputs


def test_student_code_cannot_write_outside_its_working_copy(result):
    """Could student code change the gradebook, the sources or other students' files, or plant a symlink?"""
    course = result.course
    done = probe(result, "escape", "WRITE")
    assert done.pop("scratch file in the working copy") == "ok"  # the probe itself worked
    assert done.pop("symlink toy_next.ipynb -> gradebook.db") == "ok"  # planted in its own copy...
    assert not os.path.lexists(course / "autograded" / "escape" / "toy" / "toy_next.ipynb")  # ...and removed
    assert {k: v for k, v in done.items() if v == "ok"} == {}
    for path, before in result.before.items():
        if path == "gradebook.db mode":
            assert (course / "gradebook.db").stat().st_mode == before
        else:
            assert digest(course / path) == before, path
    for path in [course / "gradebook.db", course / "autograded" / "a_honest" / "toy" / "toy.ipynb"]:
        assert b"pwned" not in path.read_bytes()
    assert not (course / "pwned.txt").exists()
    assert (course / "autograded" / "escape" / "toy" / "scratch.txt").exists()
    with sqlite3.connect(course / "gradebook.db") as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_student_code_cannot_reach_the_network(result):
    """Did any connection from student code reach a socket listening on the grading host?"""
    found = probe(result, "escape", "NET")
    assert set(found) == {"127.0.0.1", result.host_ip}
    assert "ok" not in found.values(), found
    assert result.listener.accepted == 0


def test_harmless_stderr_keeps_full_marks_and_stays_visible(result):
    """Do warnings and a tqdm bar in a test cell keep full marks and still show in the feedback?"""
    nb = graded(result.course, "stderr_noise", "toy")
    for grade_id in FULL:
        (cell,) = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id]
        names = [o.name for o in cell.outputs if o.output_type == "stream"]
        assert names and set(names) == {"stdout"}
        text = outputs(nb, grade_id)
        assert "square() is being graded" in text and "squaring" in text and "progress: done" in text


def test_restored_test_cells_are_run(result):
    """Are deleted or tampered test cells put back from the source and run, hidden tests included?"""
    for student in ["deleted_test_honest", "deleted_test_wrong", "metadata_removed_wrong", "metadata_renamed_honest"]:
        nb = graded(result.course, student, "toy")
        (cell,) = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "test_hidden"]
        assert "assert square(12) == 144" in cell.source
    nb = graded(result.course, "deleted_test_wrong", "toy")
    assert "AssertionError" in outputs(nb, "test_hidden")


def test_grading_twice_gives_identical_results(result):
    """Does grading the same submissions again give identical scores, messages and report entries?"""
    students = ["a_honest", "wrong", "infinite_loop", "os_exit", "memory_bomb"]

    def snapshot():
        seen = {}
        for s in students:
            nb = graded(result.course, s, "toy")
            seen[s] = (scores(result.course, s), problems(result, s),
                         [[(o.output_type, o.get("name"), o.get("ename"), o.get("evalue"), o.get("text"))
                           for o in c.get("outputs", [])] for c in nb.cells])
        return seen

    first = snapshot()
    again = autograde(result.course, *students, timeout=TIMEOUT, force=True)
    assert again.returncode == 0, again.output[-3000:]
    assert snapshot() == first


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to see the sandbox's processes")
def test_no_sandbox_process_survives(result):
    """Are all processes of the sandboxes gone once grading is over?"""
    assert sandbox_processes(result.course) == []


def test_fork_bomb_is_contained(result):
    """Does a fork bomb cost only its own remaining cells, with every later student graded normally?"""
    assert points(result, FORK_BOMB_STUDENT)["test_square"] == 1.0
    assert report(result.course)[(FORK_BOMB_STUDENT, "toy")]["status"] == "failed"
    later = [c for c in CASES if c.student > FORK_BOMB_STUDENT]
    assert later and all(points(result, c.student) == c.expect for c in later)
    if os.geteuid() == 0:
        assert sandbox_processes(result.course) == []


def test_interrupted_grading_is_completed_by_the_next_run(result):
    """After the grader is killed mid-notebook, does the next run grade what is missing, with a sound gradebook?"""
    course = result.course
    good = fill(release(course, "toy"), {"square": SQUARE})
    slow = add_cell(good, "square", "import time\nopen('started.txt', 'w').close()\ntime.sleep(3)")
    submit(course, "resume_interrupted", {"toy.ipynb": slow})
    submit(course, "resume_waiting", {"toy.ipynb": good})
    students = ("resume_interrupted", "resume_waiting")
    grader = subprocess.Popen(autograde_command(course, *students, timeout=TIMEOUT), cwd=course,
                              env=nbgrader_env(), start_new_session=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    started = course / "autograded" / "resume_interrupted" / "toy" / "started.txt"
    deadline = time.monotonic() + 120
    while not started.exists() and time.monotonic() < deadline and grader.poll() is None:
        time.sleep(0.05)
    os.killpg(grader.pid, signal.SIGKILL)
    grader.wait()
    assert started.exists(), "the grader never reached the slow cell"

    assert report(course)[("resume_interrupted", "toy")]["status"] == "running"
    assert [p["reason"] for e in failures(course) if e["student"] == "resume_interrupted"
            for p in e["problems"]] == [INTERRUPTED]
    assert scores(course, "resume_waiting") == {}

    run = autograde(course, *students, timeout=TIMEOUT)
    assert run.returncode == 0, run.output[-3000:]
    assert "was interrupted; removing" in run.output
    assert points(result, "resume_interrupted") == FULL and points(result, "resume_waiting") == FULL
    assert {report(course)[(s, "toy")]["status"] for s in students} == {"ok"}
    with sqlite3.connect(course / "gradebook.db") as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert db.execute("SELECT COUNT(*) FROM submitted_assignment JOIN student "
                          "ON student.id = submitted_assignment.student_id "
                          "WHERE student.id = 'resume_interrupted'").fetchone() == (1,)


def test_missing_sandbox_stops_grading(result):
    """Without bubblewrap, does grading refuse to run student code and say how to fix it?"""
    course = result.course
    marker = course / "RAN_WITHOUT_SANDBOX"
    nb = add_cell(fill(release(course, "toy"), {"square": SQUARE}), "square",
                  f"open({str(marker)!r}, 'w').close()")
    submit(course, "no_sandbox", {"toy.ipynb": nb})
    run = autograde(course, "no_sandbox", timeout=TIMEOUT, args=("--Sandbox.bwrap=/nonexistent/bwrap",))
    assert run.returncode != 0
    assert "bubblewrap ('/nonexistent/bwrap') is not installed" in run.output and "make setup" in run.output
    assert not marker.exists()
    assert points(result, "no_sandbox") == ZERO
    (reason,) = problems(result, "no_sandbox")
    assert reason.startswith("the student sandbox cannot start")


# -- the table in docs/reliability.md ------------------------------------------------------

BEGIN, END = "<!-- reliability-table:begin -->", "<!-- reliability-table:end -->"


def reliability_table(g: Graded) -> str:
    rows = ["| Student | Submission | What the grader did (observed) | Points |",
            "| --- | --- | --- | --- |"]
    for case in CASES:
        entry = report(g.course)[(case.student, "toy")]
        if entry["status"] == "ok":
            did = "graded normally"
        else:
            did = "; ".join(f"grading failed{' in ' + p['grade_id'] if p['grade_id'] else ''}: {p['reason']}"
                            for p in entry["problems"])
        got = points(g, case.student)
        total = f"{sum(got.values()):g}/{sum(FULL.values()):g}"
        detail = ", ".join(f"{gid} {got[gid]:g}" for gid in FULL)
        rows.append(f"| `{case.student}` | {case.does} | {did.replace('|', '/')} | {total} ({detail}) |")
    return "\n".join(rows)


def test_reliability_table(result):
    """Is the table in docs/reliability.md exactly what this run observed?"""
    table = reliability_table(result)
    text = DOC.read_text()
    start, stop = text.index(BEGIN) + len(BEGIN), text.index(END)
    if os.environ.get("UPDATE_RELIABILITY_DOC") == "1":
        DOC.write_text(text[:start] + "\n" + table + "\n" + text[stop:])
    else:
        assert text[start:stop].strip() == table, (
            "docs/reliability.md is out of date: run UPDATE_RELIABILITY_DOC=1 "
            ".venv/bin/python -m pytest tests/test_grading_robustness.py")
