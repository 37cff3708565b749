"""What a student's outputs and markdown become before anyone renders them (fast, no kernel)."""

from __future__ import annotations

import base64
import io
import re

import nbformat
import pytest
from nbconvert import HTMLExporter
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output, new_raw_cell

from autograder.grading import sanitize
from autograder.grading.sanitize import (
    NOTE,
    SanitizeOutputs,
    clean_attachments,
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
    # an attribute's name is markdown too: the note that names it must not render it as a link
    ("<div [a](javascript:alert(1))>x</div>", ["javascript"], "div [a](javascript:alert(1))="),
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
                    new_output(  # nbconvert writes the width into the <img> tag unquoted
                        "display_data",
                        data={"image/png": PNG},
                        metadata={"image/png": {"width": "1 onerror=window.PWNED_BY_STUDENT=8"}},
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
    assert body.count("[grader] removed from this") >= 7


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


# -- attachments (a pasted image) and cells whose sanitizing fails ----------------------------

PASTED = "My loss curve:\n\n![image.png](attachment:image.png)"


def pasted_image_cell(attachments=None):
    """A markdown cell as Jupyter writes it when an image is pasted into it."""
    return new_markdown_cell(PASTED, attachments=attachments or {"image.png": {"image/png": PNG}})


def render(nb) -> str:
    return HTMLExporter(template_name="classic").from_notebook_node(nb)[0]


def test_markdown_cell_keeps_its_pasted_image():
    """Does a markdown cell with a pasted PNG keep its text and image, with no note, and render
    the image in the HTML?"""
    nb, _ = SanitizeOutputs().preprocess(new_notebook(cells=[pasted_image_cell()]), {})
    (cell,) = nb.cells
    assert cell.source == PASTED and cell.attachments == {"image.png": {"image/png": PNG}}
    body = render(nb)
    assert f'src="data:image/png;base64,{PNG}"' in body and "[grader]" not in body


ATTACHMENTS = [
    ({"image/svg+xml": base64.b64encode(b'<svg onload="alert(1)"/>').decode()}, "image/svg+xml"),
    ({"text/html": base64.b64encode(b"<script>alert(1)</script>").decode()}, "text/html"),
    ({"image/png": base64.b64encode(b"<script>alert(1)</script>").decode()}, "image/png"),
    ({"image/png": "not base64!"}, "image/png"),
    ({"image/png": {"nested": PNG}}, "image/png"),
]


@pytest.mark.parametrize("bundle, named", ATTACHMENTS, ids=["svg", "html", "png-of-html", "bad-base64", "not-text"])
def test_attachments_other_than_images_are_dropped(bundle, named):
    """Is an attachment that is not a PNG, JPEG, GIF or WebP in valid base64 dropped and named,
    next to a valid image that is kept?"""
    kept, dropped = clean_attachments({"bad": bundle, "ok.png": {"image/png": PNG}})
    assert kept == {"ok.png": {"image/png": PNG}}
    assert dropped == [f"attachment bad ({named})"]


def test_dropped_attachment_is_named_in_the_cell():
    """Does a cell that keeps rendering after an unused attachment was dropped say so?"""
    cell = pasted_image_cell({"image.png": {"image/png": PNG}, "x.svg": {"image/svg+xml": "PHN2Zz4="}})
    nb, _ = SanitizeOutputs().preprocess(new_notebook(cells=[cell]), {})
    (cell,) = nb.cells
    assert set(cell.attachments) == {"image.png"}
    assert cell.source.endswith(PASTED) and "attachment x.svg" in render(nb)


def test_markdown_output_naming_a_missing_attachment_is_shown_as_text():
    """Is a text/markdown output naming an attachment (outputs have none) turned into its text,
    escaped, after a note, with the cell's other outputs kept?"""
    out = new_output("display_data", data={"text/markdown": "see ![a](attachment:a.png) <b>", "text/plain": "md"})
    kept = new_output("display_data", data={"image/png": PNG, "text/plain": "<Figure>"})
    nb = new_notebook(cells=[new_code_cell("x", outputs=[out, kept])])
    nb, _ = SanitizeOutputs().preprocess(nb, {})
    text, image = nb.cells[0].outputs
    assert text.output_type == "stream" and text.text.startswith("[grader] shown as text")
    assert "missing attachment: a.png" in text.text and "see ![a](attachment:a.png) <b>" in text.text
    assert image == kept
    body = render(nb)
    assert "see ![a](attachment:a.png) &lt;b&gt;" in body and f"data:image/png;base64,{PNG}" in body


def test_markdown_cell_naming_a_missing_attachment_fails_alone():
    """Is a markdown cell naming an attachment it does not have shown as its text, escaped,
    with a note, while the other cells are sanitized as usual?"""
    nb = hostile_notebook()
    nb.cells.insert(1, new_markdown_cell("copied ![plot](attachment:plot.png) <script>x</script>"))
    nb, _ = SanitizeOutputs().preprocess(nb, {})
    cell = nb.cells[1]
    assert cell.source.startswith("*\\[grader\\] shown as text") and "missing attachment" in cell.source
    assert "```text\ncopied ![plot](attachment:plot.png) <script>x</script>\n```" in cell.source
    body = render(nb)
    _, scripts, attributes = active_parts(body)
    assert not [s for s in scripts if "PWNED" in s] and not [a for a in attributes if "PWNED" in a]
    assert "copied ![plot](attachment:plot.png) &lt;script&gt;" in body
    assert body.count("[grader] removed from this") >= 6  # the hostile cells were still cleaned


def test_any_error_while_sanitizing_fails_one_cell_or_output(monkeypatch):
    """When sanitizing a markdown cell, a raw cell or an output raises, is that cell or output
    alone shown as escaped text with a note naming the error?"""

    def broken(real):
        def call(text, *args, **kwargs):
            if "BOOM" in text:
                raise RuntimeError("renderer broke")
            return real(text, *args, **kwargs)
        return call

    monkeypatch.setattr(sanitize, "_render_markdown", broken(sanitize._render_markdown))
    monkeypatch.setattr(sanitize, "clean_svg", broken(sanitize.clean_svg))
    monkeypatch.setattr(sanitize, "clean_html", broken(sanitize.clean_html))
    svg = new_output("display_data", data={"image/svg+xml": "<svg>BOOM</svg>", "text/plain": "<Figure>"})
    html_out = new_output("display_data", data={"text/html": "<script>x</script><b>ok</b>"})
    nb = new_notebook(cells=[
        new_markdown_cell("BOOM <i>md</i>"),
        new_code_cell("x", outputs=[svg, html_out]),
        new_raw_cell("<b>BOOM</b>", metadata={"format": "text/html"}),
        new_markdown_cell("fine <img src=x onerror=y>"),
    ])
    nb, _ = SanitizeOutputs().preprocess(nb, {})
    markdown, code, raw, fine = nb.cells
    assert "renderer broke" in markdown.source and "```text\nBOOM <i>md</i>\n```" in markdown.source
    assert [o.output_type for o in code.outputs] == ["stream", "display_data", "stream"]
    assert "RuntimeError: renderer broke\n<Figure>" in code.outputs[0].text
    assert code.outputs[1].data["text/html"] == "x<b>ok</b>"
    assert raw.source.endswith("<pre>&lt;b&gt;BOOM&lt;/b&gt;</pre>") and "renderer broke" in raw.source
    assert "onerror=y" not in fine.source and "removed from this cell" in fine.source


def test_locked_markdown_without_its_attachment_is_shown_as_text():
    """Does a locked cell of the course's text naming an attachment the submission dropped
    render as text instead of failing, and one that has it stay as it is?"""
    meta = {"nbgrader": {"locked": True, "solution": False, "grade": False, "grade_id": "intro"}}
    present = new_markdown_cell(PASTED, metadata=meta, attachments={"image.png": {"image/png": PNG}})
    missing = new_markdown_cell(PASTED, metadata=meta)
    nb, _ = SanitizeOutputs().preprocess(new_notebook(cells=[present, missing]), {})
    assert nb.cells[0].source == PASTED and "shown as text" in nb.cells[1].source
    assert f"data:image/png;base64,{PNG}" in render(nb)


# -- output metadata and prompt numbers (nbconvert writes width, height and In [n] unquoted) ---

JPEG = base64.b64encode(b"\xff\xd8\xff\xe0" + b"\0" * 16).decode()
ONERROR = "1 onerror=window.PWNED_BY_STUDENT=8"

# an image output's metadata ("{m}": its mime type) -> what the note names
METADATA_PAYLOADS = {
    "width": ({"{m}": {"width": ONERROR}}, "metadata width ({m})"),  # where get_metadata looks first
    "top-level-width": ({"width": ONERROR}, "metadata width"),  # its fallback
    "height": ({"{m}": {"height": ONERROR}}, "metadata height ({m})"),
    "height-dict": ({"{m}": {"height": {"a": 1}}}, "metadata height ({m})"),
    "height-list": ({"{m}": {"height": [1, 2]}}, "metadata height ({m})"),
    "percent": ({"{m}": {"width": "100%"}}, "metadata width ({m})"),
    "bool": ({"{m}": {"width": True}}, "metadata width ({m})"),
    "negative": ({"{m}": {"width": -5}}, "metadata width ({m})"),
    "filenames": ({"filenames": {"{m}": "http://evil.example/beacon.png"}}, "metadata filenames"),
    "not-a-mapping": ({"{m}": "1 onerror=x"}, "metadata ({m})"),
}


def for_mimetype(value, mimetype: str):
    """``value`` with every "{m}" (in keys and strings) replaced by ``mimetype``."""
    if isinstance(value, dict):
        return {for_mimetype(k, mimetype): for_mimetype(v, mimetype) for k, v in value.items()}
    return value.replace("{m}", mimetype) if isinstance(value, str) else value


def image_output(metadata, mimetype="image/png", data=PNG):
    return nbformat.from_dict(
        {"output_type": "display_data", "data": {mimetype: data, "text/plain": "<Figure>"}, "metadata": metadata}
    )


def img_attributes(nb) -> dict[str, str]:
    """The attributes of the <img> tags nbconvert's classic template writes for ``nb``, as
    a browser reads them (nbconvert's own alt text included)."""
    from html.parser import HTMLParser

    class Images(HTMLParser):
        def handle_starttag(self, tag, attrs):
            if tag == "img":
                found.update(attrs)

    found: dict[str, str] = {}
    Images().feed(render(nb))
    return found


def test_image_metadata_payload_is_live_without_the_sanitizer():
    """Does nbconvert really write a width read under the mime type's key into the <img> tag
    unquoted, so that it adds an onerror handler (what the sanitizer must prevent)?"""
    nb = new_notebook(cells=[new_code_cell("x", outputs=[image_output({"image/png": {"width": ONERROR}})])])
    assert "onerror" in img_attributes(nb)


@pytest.mark.parametrize("metadata, named", METADATA_PAYLOADS.values(), ids=METADATA_PAYLOADS)
@pytest.mark.parametrize("mimetype, data", [("image/png", PNG), ("image/jpeg", JPEG)], ids=["png", "jpeg"])
def test_hostile_image_metadata_is_dropped(metadata, named, mimetype, data):
    """Is a width or height that is not a positive number, an image file name (an outside URL)
    or a mime type's metadata that is not a mapping dropped and named, with the image kept, so
    that nbconvert writes an <img> with no attribute of the student's choosing?"""
    metadata, named = for_mimetype(metadata, mimetype), for_mimetype(named, mimetype)
    outputs = clean_output(image_output(metadata, mimetype, data))
    nb = new_notebook(cells=[new_code_cell("x", outputs=outputs)])
    attributes = img_attributes(nb)
    assert set(attributes) == {"src", "alt"} and attributes["src"] == f"data:{mimetype};base64,{data}", (
        re.findall(r"<img[^>]*>", render(nb))
    )
    kept, note = outputs
    assert kept.data[mimetype] == data and kept.metadata == {}
    assert note.text.startswith(NOTE) and named in note.text


def test_honest_image_metadata_is_kept_as_numbers():
    """Do IPython's and matplotlib's image metadata (width, height, unconfined, needs_background,
    alt) stay, a width given as "300px" or "300" become the number, with no note, and keys that
    no template reads go silently?"""
    out = image_output(
        {
            "image/png": {"width": 640, "height": 480.5, "unconfined": True, "needs_background": "light"},
            "image/jpeg": {"width": "300px"},  # the output has no JPEG: nothing to keep
            "alt": "loss curve",
            "height": " 300 ",
            "application/json": {"expanded": True},
        }
    )
    assert clean_output(out) == [out]
    assert out.metadata == {
        "image/png": {"width": 640, "height": 480.5, "unconfined": True, "needs_background": "light"},
        "alt": "loss curve",
        "height": 300,
    }
    out = image_output({"image/png": {"width": "300px", "height": "200"}})
    assert clean_output(out) == [out] and out.metadata == {"image/png": {"width": 300, "height": 200}}
    attributes = img_attributes(new_notebook(cells=[new_code_cell("x", outputs=[out])]))
    assert attributes["width"] == "300" and attributes["height"] == "200"


def test_matplotlib_retina_figure_metadata_passes_unchanged():
    """Does an inline matplotlib figure as IPython stores a retina one (its width and height in
    pixels under image/png) keep its metadata exactly, with no note?"""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from IPython.core.pylabtools import retina_figure

    fig, ax = plt.subplots(figsize=(2, 2))
    ax.plot([0, 1], [1, 0])
    png, metadata = retina_figure(fig, base64=True)
    plt.close(fig)
    out = image_output({"image/png": metadata}, data=png)
    assert {type(v) for v in metadata.values()} == {int}
    assert clean_output(out) == [out] and out.metadata == {"image/png": metadata}


PROMPT = "<script>window.PWNED_BY_STUDENT = 9</script>"


@pytest.mark.parametrize(
    "count", [PROMPT, "3", 1.5, True, -1, [1]], ids=["script", "digits", "float", "bool", "negative", "list"]
)
def test_prompt_number_that_is_not_an_int_becomes_none(count):
    """Is a code cell's or execute_result's execution_count that is not an int >= 0 (a string of
    HTML, which nbconvert writes unescaped as In [...]) replaced by None, and named?"""
    out = new_output("execute_result", data={"text/plain": "42"}, execution_count=1)
    nb = new_notebook(cells=[new_code_cell("x", outputs=[out])])
    nb.cells[0].execution_count = out.execution_count = count  # as a forged kernel message leaves it
    nb, _ = SanitizeOutputs().preprocess(nb, {})
    (cell,) = nb.cells
    assert cell.execution_count is None
    note, result, output_note = cell.outputs
    assert note.text.startswith("[grader] removed from this cell: execution_count")
    assert result.execution_count is None and "execution_count" in output_note.text
    body = render(nb)  # nbconvert validates the notebook: a string prompt would not even render
    _, scripts, _ = active_parts(body)
    assert not [s for s in scripts if "PWNED" in s]


def test_int_prompt_numbers_are_kept():
    """Do the kernel's own prompt numbers (ints, or None for a cell not run) stay, with no note?"""
    cells = [
        new_code_cell("1", execution_count=3,
                      outputs=[new_output("execute_result", data={"text/plain": "1"}, execution_count=3)]),
        new_code_cell("pass", execution_count=None),
    ]
    nb, _ = SanitizeOutputs().preprocess(new_notebook(cells=cells), {})
    assert [c.execution_count for c in nb.cells] == [3, None]
    assert [len(c.outputs) for c in nb.cells] == [1, 0] and nb.cells[0].outputs[0].execution_count == 3
