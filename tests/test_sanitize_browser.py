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

A student's feedback page of a course notebook (the AE notebook with one mistake) is opened in
Chromium too: its summary comes first, its links jump to the test cells, and no text of the
hidden tests is visible. Its screenshot is docs/feedback.png, written by
``SAVE_FEEDBACK_SCREENSHOT=docs/feedback.png pytest tests/test_sanitize_browser.py -k feedback_page``.
"""

from __future__ import annotations

import base64
import html as html_lib
import json
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
from conftest import SOLUTIONS, WEIGHTS, hidden_test_lines, reference_weights, swap
from nbformat.v4 import new_code_cell, new_markdown_cell
from nbgrader_harness import (
    autograde,
    build_course,
    grade_cell,
    make_course,
    markdown,
    nbgrader,
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


def chromium_command(url: str, tmp: Path, *extra: str, profile: Path | None = None) -> list[str]:
    """Headless Chromium, offline but for 127.0.0.1, that gives a page's scripts 5 s (virtual
    time) to run and then does ``extra`` (``--dump-dom``, ``--screenshot=...``) with ``url``."""
    profile = profile or Path(tempfile.mkdtemp(dir=tmp, prefix="chromium-"))
    return [
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
        *extra,
        url,
    ]


def open_in_chromium(url: str, tmp: Path, profile: Path | None = None) -> str:
    """The page's DOM after it loaded and its scripts had 5 s (virtual time) to run.

    ``profile``: a Chromium profile to reuse (its cookies: a logged-in session); default a new one.
    """
    run = subprocess.run(chromium_command(url, tmp, "--dump-dom", profile=profile),
                         capture_output=True, text=True, timeout=120)
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


# -- a student's feedback page as the student's browser shows it ------------------------------

#: Where the test also writes its screenshot of the feedback page when set (a path, e.g.
#: ``docs/feedback.png``: ``SAVE_FEEDBACK_SCREENSHOT=docs/feedback.png pytest
#: tests/test_sanitize_browser.py -k feedback_page``); by default it stays in the test's folder.
SAVE_SCREENSHOT = "SAVE_FEEDBACK_SCREENSHOT"
VIEWPORT = (1200, 900)

#: A page that opens the feedback page (same origin) in a frame of the viewport's size and
#: writes what the student's browser shows into ``<pre id="result">`` (JSON): the page's visible
#: text, the summary's position and text, and for each of its links the anchor it jumped to.
PROBE = """<!doctype html><meta charset="utf-8">
<iframe id="page" src="%(page)s" style="width:%(w)dpx;height:%(h)dpx;border:0"></iframe>
<pre id="result"></pre>
<script>
const frame = document.getElementById("page");
frame.onload = async () => {
  const w = frame.contentWindow, d = frame.contentDocument;
  const wait = () => new Promise(r => setTimeout(r, 100));
  const heading = [...d.querySelectorAll("h2")].find(h => h.innerText.startsWith("Summary:"));
  const cell = heading && heading.closest(".cell");
  const text = d.body.innerText;
  const result = {text: text, summary: null, links: [],
                  first_cell_is_summary: !!cell && d.querySelector(".cell") === cell};
  if (cell) {
    result.summary = {text: cell.innerText, top: heading.getBoundingClientRect().top,
                      before: text.slice(0, text.indexOf(heading.innerText))};
    for (const a of cell.querySelectorAll('a[href^="#"]:not(.anchor-link)')) {
      const name = decodeURIComponent(a.getAttribute("href").slice(1));
      w.scrollTo(0, 0); await wait();
      a.click(); await wait();
      const target = d.getElementsByName(name)[0] || d.getElementById(name);
      const box = target && target.getBoundingClientRect();
      result.links.push({name: name, hash: w.location.hash, scrolled: w.scrollY,
                         target: target ? target.parentElement.innerText.slice(0, 200) : null,
                         top: box ? box.top : null, height: w.innerHeight});
    }
  }
  document.getElementById("result").textContent = JSON.stringify(result);
};
</script>
"""


class StaticServer:
    """A folder served over HTTP on 127.0.0.1 (one origin for the page and the probe's frame)."""

    def __init__(self, folder: Path):
        import functools
        import http.server
        import threading

        class Quiet(http.server.SimpleHTTPRequestHandler):
            def log_message(self, *args):
                pass

        handler = functools.partial(Quiet, directory=str(folder))
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def screenshot(url: str, path: Path, tmp: Path) -> bytes:
    """A PNG of the viewport (``VIEWPORT``) of the page at ``url``, in headless Chromium."""
    width, height = VIEWPORT
    run = subprocess.run(
        chromium_command(url, tmp, f"--window-size={width},{height}", "--hide-scrollbars",
                         f"--screenshot={path}"),
        capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and path.exists(), f"chromium took no screenshot of {url}:\n{run.stderr[-2000:]}"
    return path.read_bytes()


def png_size(data: bytes) -> tuple[int, int]:
    """The width and height of a PNG (its IHDR chunk)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


@pytest.mark.timeout(600)
def test_feedback_page_in_the_browser_summary_first_links_jump_no_hidden_tests(tmp_path):
    """Does a student's feedback page, rendered in Chromium, start with the summary (its points
    those of the gradebook), do the summary's links jump to the test cells, and is no text of the
    hidden tests visible? The student submits the AE notebook's solution with the Encoder's
    known mistake (a code of 10) and the reference's weights: 6 of 8 points, one cell lost."""
    assert Path(CHROMIUM).exists(), "chromium is missing: run `make setup` (scripts/setup_browser.sh)"
    assignment, name, student = "autoencoders", "ae", "mistakes"
    course = build_course(tmp_path / "course", (assignment,))
    weights = reference_weights(name)
    solution = (SOLUTIONS / f"{name}.ipynb").read_text()
    submit(course, student, {
        f"{name}.ipynb": swap(solution, "nn.Linear(250, n_components),", "nn.Linear(250, 10),"),
        **{w: weights / w for w in WEIGHTS[name]}}, assignment)
    run = autograde(course, student, force=True, assignment=assignment)
    assert run.returncode == 0, run.output[-6000:]
    feedback = nbgrader(course, "generate_feedback", assignment, "--student", student, "--force")
    assert feedback.returncode == 0, (feedback.stdout + feedback.stderr)[-2000:]
    graded = {cell: points for (nb, cell), points in scores(course, student, assignment).items() if nb == name}
    assert graded["test_ae_encoder"] == (0.0, 2.0), graded  # the page is one of a student who lost points

    site = tmp_path / "site"
    site.mkdir()
    shutil.copy(course / "feedback" / student / assignment / f"{name}.html", site / "page.html")
    width, height = VIEWPORT
    (site / "probe.html").write_text(PROBE % {"page": "page.html", "w": width, "h": height})
    server = StaticServer(site)
    try:
        dom = open_in_chromium(f"{server.url}/probe.html", tmp_path)
        png = screenshot(f"{server.url}/page.html", tmp_path / "feedback.png", tmp_path)
    finally:
        server.stop()
    found = re.search(r'<pre id="result">(.*?)</pre>', dom, re.S)
    assert found and found.group(1), f"the probe wrote no result: {dom[-3000:]}"
    shown = json.loads(html_lib.unescape(found.group(1)))

    # the summary is the notebook's first cell, in the first screen, below only nbgrader's header
    summary = shown["summary"]
    assert summary is not None and shown["first_cell_is_summary"], shown["text"][:2000]
    total, maximum = sum(s for s, _ in graded.values()), sum(m for _, m in graded.values())
    assert summary["text"].startswith(f"Summary: {total:g} / {maximum:g} points"), summary["text"][:300]
    assert 0 <= summary["top"] < height, f"the summary starts {summary['top']:.0f} px down, below the first screen"
    header = [line for line in summary["before"].splitlines() if line.strip()]
    assert all(re.fullmatch(rf"({name}|Test cell) \(Score: [\d.]+ / [\d.]+\)", line.strip()) for line in header), (
        f"something other than nbgrader's score header comes before the summary: {header}")
    for cell, (score, points) in graded.items():
        assert re.search(rf"^{cell}\s+{score:g} / {points:g}$", summary["text"], re.M), (cell, summary["text"])
    assert "Where points were lost, and why" in summary["text"]
    assert "expected shape (1, 2); got shape (1, 10)" in summary["text"], summary["text"]
    assert "hint: n_components is not honoured" in summary["text"], summary["text"]

    # each link of the summary jumps to its test cell
    links = {link["name"]: link for link in shown["links"]}
    assert set(links) == set(graded), (sorted(links), sorted(graded))
    for cell, link in links.items():
        assert link["target"] is not None, f"the summary links to #{cell}, an anchor that the page lacks"
        assert f"Grade cell: {cell}" in link["target"], (cell, link["target"])
        assert link["hash"] == f"#{cell}" and link["scrolled"] > 0, (cell, link)
        # (at the top of the window, or in it when the page ends before the cell reaches the top)
        assert -2 <= link["top"] < link["height"], f"#{cell}: the cell is {link['top']:.0f} px down after the jump"

    # no text of the hidden tests is visible; the page says that hidden checks ran
    text = " ".join(shown["text"].split())
    hidden = hidden_test_lines(SOLUTIONS / f"{name}.ipynb")
    assert hidden, "the notebook has hidden tests"
    assert "HIDDEN TESTS" not in text
    assert not [line for line in hidden if " ".join(line.split()) in text], "a hidden test's code is visible"
    said = re.findall(r"# \.\.\. and \d+ hidden checks?, run by the grader \(not shown\)", text)
    assert len(said) == solution.count("BEGIN HIDDEN TESTS"), said

    # the screenshot: the viewport, the summary at the top
    assert png_size(png) == VIEWPORT and len(png) > 20_000, (png_size(png), len(png))
    if os.environ.get(SAVE_SCREENSHOT):
        target = Path(os.environ[SAVE_SCREENSHOT])
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(tmp_path / "feedback.png", target)
