"""Does a student's script run in the instructor's browser? Real nbgrader, Jupyter server, Chromium.

A hostile submission displays a ``<script>``, an ``<img onerror>``, a JavaScript output, a PNG
whose width metadata carries an ``onerror`` handler (nbconvert writes it into the ``<img>`` tag
unquoted) and a markdown cell with raw HTML, next to honest outputs (text, a matplotlib PNG, an HTML table). It
is graded with ``nbgrader autograde`` and ``nbgrader generate_feedback``; its formgrader page,
served by a real Jupyter server with formgrader on 127.0.0.1, and its feedback HTML are opened in
headless Chromium. Each payload, if it ran, would mark the page (an element ``pwned-N``) and
create ``pwned-N.txt`` in the course through the Jupyter contents API, with the page's own
session and XSRF token. A control student, whose autograded notebook is replaced by the same
notebook executed without the sanitizer, shows that the payloads do run when nothing stops them.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell
from nbgrader_harness import (
    autograde,
    grade_cell,
    make_course,
    markdown,
    nbgrader_env,
    notebook,
    release,
    scores,
    solution_cell,
    submit,
)

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
TOKEN = "sanitize-test-token"

pytestmark = pytest.mark.slow


def payload(n: int) -> str:
    """JavaScript that marks the page and writes pwned-<n>.txt through the Jupyter API, base64'd."""
    js = f"""
    window.top.PWNED_BY_STUDENT = {n};
    var m = document.createElement('div'); m.id = 'pwned-{n}'; document.body.appendChild(m);
    var x = (document.cookie.match(/_xsrf=([^;]+)/) || [])[1] || '';
    fetch('/api/contents/pwned-{n}.txt', {{method: 'PUT', credentials: 'same-origin',
        headers: {{'X-XSRFToken': x, 'Content-Type': 'application/json'}},
        body: JSON.stringify({{type: 'file', format: 'text', content: 'pwned'}})}});
    """
    return f"eval(atob('{base64.b64encode(js.encode()).decode()}'))"


HOSTILE_CELLS = [
    "from IPython.display import HTML, Javascript, display\n"
    f'display(HTML("<script>{payload(1)}</script><b>hello</b>"))',
    f'display(HTML("<img src=x onerror=\\"{payload(2)}\\">"))',
    f'display(Javascript("{payload(3)}"))',
    # a PNG that does not decode (so that onerror fires), its width read under image/png as
    # nbconvert's get_metadata reads it
    'display({"image/png": "iVBORw0KGgo="}, raw=True,\n'
    f'        metadata={{"image/png": {{"width": "1 onerror={payload(5)}"}}}})',
]
HONEST_CELLS = [
    "print('honest text 42')",
    "%matplotlib inline\nimport matplotlib.pyplot as plt\n"
    "plt.plot([0, 1], [1, 0]); plt.title('loss'); plt.show()",
    'display(HTML(\'<table class="honest"><tr><th>epoch</th><th>loss</th></tr>'
    "<tr><td>1</td><td>0.25</td></tr></table>'))",
]
MARKDOWN_PAYLOAD = f'My answer <img src=x onerror="{payload(4)}">'
PAYLOADS = (1, 2, 3, 4, 5)


def source_notebook():
    return notebook(
        markdown("# Toy"),
        solution_cell(
            "def square(x):\n    ### BEGIN SOLUTION\n    return x * x\n    ### END SOLUTION", "square"
        ),
        grade_cell("assert square(3) == 9", "test_square", 1),
    )


def hostile_submission(course: Path):
    nb = release(course, "toy")
    for cell in nb.cells:
        if cell.metadata.get("nbgrader", {}).get("grade_id") == "square":
            cell.source = "def square(x):\n    return x * x"
    at = 2
    for source in HOSTILE_CELLS + HONEST_CELLS:
        nb.cells.insert(at, new_code_cell(source))
        at += 1
    nb.cells.insert(at, new_markdown_cell(MARKDOWN_PAYLOAD))
    return nb


def executed_without_sanitizer(nb, cwd: Path):
    """The submission as the kernel displays it, with nothing removed (the control)."""
    from nbclient import NotebookClient

    nb = nbformat.from_dict(nb)
    NotebookClient(
        nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}
    ).execute()
    return nb


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class JupyterServer:
    """``jupyter server`` with formgrader, rooted at the course, on 127.0.0.1 with a token."""

    def __init__(self, course: Path, tmp: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = nbgrader_env(
            {
                "JUPYTER_CONFIG_DIR": str(tmp / "jupyter-config"),
                "JUPYTER_RUNTIME_DIR": str(tmp / "jupyter-runtime"),
                "JUPYTER_DATA_DIR": str(tmp / "jd"),
            }
        )
        self.log = open(tmp / "server.log", "w")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "jupyter_server",
                "--no-browser",
                "--ip=127.0.0.1",
                f"--port={self.port}",
                f"--ServerApp.root_dir={course}",
                f"--IdentityProvider.token={TOKEN}",
                "--ServerApp.port_retries=0",
                *(["--allow-root"] if os.geteuid() == 0 else []),
            ],
            cwd=course,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{self.url}/api/status?token={TOKEN}", timeout=2)
                return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(
                        f"jupyter server did not start: {(tmp / 'server.log').read_text()}") from None
                time.sleep(0.3)

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def open_in_chromium(url: str, tmp: Path, profile: Path | None = None) -> str:
    """The page's DOM after it loaded and its scripts had 5 s (virtual time) to run.

    ``profile``: a Chromium profile to reuse (its cookies: a logged-in session); default a new one.
    """
    profile = profile or Path(tempfile.mkdtemp(dir=tmp, prefix="chromium-"))
    cmd = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
        f"--user-data-dir={profile}",
        "--virtual-time-budget=5000",
        "--dump-dom",
        url,
    ]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and "<html" in run.stdout.lower(), (
        f"chromium failed on {url}:\n{run.stderr[-2000:]}"
    )
    return run.stdout


def ran(dom: str, course: Path) -> set[int]:
    """The payloads that ran: their element is in the DOM, or their file exists in the course."""
    time.sleep(1)  # let a PUT still in flight land
    return {n for n in PAYLOADS if f'id="pwned-{n}"' in dom or (course / f"pwned-{n}.txt").exists()}


def honest_outputs(dom: str) -> dict[str, bool]:
    return {
        "text": "honest text 42" in dom,
        "png": re.search(r'<img [^>]*src="data:image/png;base64,iVBORw0KGgoAAAANSUhEUg', dom) is not None,
        "table": "<td>0.25</td>" in dom and 'class="honest"' in dom,
        "markdown text": "My answer" in dom,
    }


@pytest.mark.timeout(900)
def test_student_scripts_run_neither_in_formgrader_nor_in_feedback(tmp_path):
    """Does a hostile submission's script stay inert in formgrader and feedback, with honest outputs shown?"""
    assert Path(CHROMIUM).exists(), "chromium is missing: run `make setup` (scripts/setup_browser.sh)"
    course = make_course(tmp_path, {"toy": source_notebook()})
    nb = hostile_submission(course)
    for student in ("mallory", "control"):
        submit(course, student, {"toy.ipynb": nb})
    run = autograde(course, timeout=120)
    assert run.returncode == 0, run.output
    assert scores(course, "mallory") == {("toy", "test_square"): (1.0, 1.0)}  # grading is unaffected
    feedback = subprocess.run(
        [sys.executable, "-m", "nbgrader", "generate_feedback", "toy"],
        cwd=course,
        capture_output=True,
        text=True,
        timeout=300,
        env=nbgrader_env(),
    )
    assert feedback.returncode == 0, feedback.stdout + feedback.stderr

    # the control: mallory's notebook as the kernel displays it, without the sanitizer
    control = course / "autograded" / "control" / "toy" / "toy.ipynb"
    nbformat.write(executed_without_sanitizer(nb, control.parent), control)
    from nbconvert import HTMLExporter

    control_feedback = tmp_path / "control-feedback.html"
    control_feedback.write_text(HTMLExporter(template_name="classic").from_filename(str(control))[0])

    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        ids = {s: gb.find_submission_notebook("toy", "toy", s).id for s in ("mallory", "control")}

    server = JupyterServer(course, tmp_path)
    try:
        # the instructor logs in to Jupyter (a session cookie for the whole server), then opens formgrader
        session = Path(tempfile.mkdtemp(dir=tmp_path, prefix="chromium-"))
        open_in_chromium(f"{server.url}/api/status?token={TOKEN}", tmp_path, session)
        pages = {
            s: open_in_chromium(f"{server.url}/formgrader/submissions/{ids[s]}/", tmp_path, session)
            for s in ("control", "mallory")
        }
    finally:
        server.stop()
    assert server.proc.poll() is not None

    # the control proves that the payloads run when nothing removes them, and that we would see it
    assert ran(pages["control"], course) == set(PAYLOADS), pages["control"][-3000:]
    assert {f"pwned-{n}.txt" for n in PAYLOADS} <= {p.name for p in course.iterdir()}, (
        "the control's scripts did not reach the Jupyter API with the page's session"
    )
    for n in PAYLOADS:
        (course / f"pwned-{n}.txt").unlink()
    # (the JavaScript output's wrapper needs jQuery, which a standalone page loads from a CDN: offline here)
    assert ran(open_in_chromium(control_feedback.as_uri(), tmp_path), course) >= {1, 2, 4, 5}

    # the sanitized submission: no script ran, the honest outputs show, notes say what was removed
    assert ran(pages["mallory"], course) == set(), "a student script ran in formgrader"
    assert all(honest_outputs(pages["mallory"]).values()), honest_outputs(pages["mallory"])
    assert pages["mallory"].count("[grader] removed from this") >= 5

    feedback_html = course / "feedback" / "mallory" / "toy" / "toy.html"
    page = open_in_chromium(feedback_html.as_uri(), tmp_path)
    assert ran(page, course) == set(), "a student script ran in the feedback page"
    assert all(honest_outputs(page).values()), honest_outputs(page)
    assert not [p for p in course.rglob("pwned-*")], "a payload wrote into the course"
    assert os.path.exists(feedback_html)
