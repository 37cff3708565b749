"""Make what a student's notebook displays safe to render in the instructor's browser.

formgrader renders autograded notebooks inside the instructor's Jupyter server, on its origin,
and ``generate_feedback`` writes them out as HTML. A ``<script>`` in a student's output or
markdown would run there with the instructor's session (open a terminal, rewrite grades).
``SanitizeOutputs`` is the last step of ``nbgrader autograde`` (what is saved in ``autograded/``
is already clean) and a step of ``nbgrader generate_feedback`` (feedback of notebooks graded
before it existed is clean too). For every cell it:

- keeps ``text/plain``, ``image/png``, ``image/jpeg``, ``image/gif``, ``text/latex`` and the
  stream and error outputs as they are (nbconvert escapes them);
- passes ``text/html`` and ``image/svg+xml`` through `bleach <https://github.com/mozilla/bleach>`_,
  the sanitizer behind nbconvert's own ``SanitizeHTML`` preprocessor and ``sanitize_html``
  option, with an allow-list that keeps formatting, tables, lists, links and images (``data:``
  PNG/JPEG/GIF/WebP or files next to the notebook) and removes everything else: scripts, event
  handlers, ``javascript:`` URLs, iframes, forms, ``<meta>``, ``<object>``/``<embed>``,
  ``<style>`` and style properties other than colours, fonts and alignment (no ``url()``);
- renders ``text/markdown`` outputs and markdown cells as nbconvert does, a markdown cell with
  its own attachments (what Jupyter stores for a pasted image); when the sanitizer changes the
  rendered HTML, the cell gets the sanitized HTML instead (and if even that would not render
  unchanged, the student's text shown verbatim as a code block);
- keeps a markdown cell's attachments only as PNG, JPEG, GIF or WebP images in valid base64
  (what the allow-list accepts in an ``<img src="data:...">``), and drops the others;
- drops every other output type: ``application/javascript``, widget views and whatever a
  browser extension would render with code of its own;
- keeps of an output's metadata only what nbconvert's templates read and can show safely
  (:data:`OUTPUT_METADATA`): ``width`` and ``height``, which they write unquoted into the
  ``<img>`` tag (``width=1 onerror=...`` would add an attribute), only as positive numbers;
  ``filenames`` (an ``<img src>`` of the student's choosing) never;
- keeps a code cell's and an ``execute_result``'s prompt number (``execution_count``, written
  unescaped as ``In [...]``) only as an int >= 0, else makes it None;
- sanitizes raw cells meant for HTML, and drops the notebook's ``widgets`` metadata (it makes
  nbconvert load widget code that renders student-chosen HTML).

Whatever was removed is named in a visible note, a stdout stream after the output
("[grader] removed from this output: <script>, img onerror="), or the first line of the
markdown cell, so the instructor knows. Clean content gets no note and renders as before
(HTML is always stored as the sanitizer rewrote it), and running the step twice changes
nothing. Grading is not affected: the step runs after the grades are saved, and
``text/plain`` (which nbgrader reads for partial credit) is never touched.

The step fails one cell at a time, never the notebook: an output or a cell whose sanitizing
raises (a markdown output or cell naming an attachment it does not have makes nbconvert's
renderer raise ``InvalidNotebook``) becomes its text, shown escaped (a stdout stream, a code
block, a ``<pre>``), after a note naming the error; the other cells are sanitized as usual.
"""

from __future__ import annotations

import base64
import binascii
import functools
import html
import math
import re
from collections import Counter

import bleach
from bleach import html5lib_shim
from bleach.css_sanitizer import ALLOWED_CSS_PROPERTIES, ALLOWED_SVG_PROPERTIES, CSSSanitizer
from nbconvert.filters.markdown_mistune import IPythonRenderer, MarkdownWithMath
from nbformat import from_dict
from nbformat.v4 import new_output
from nbgrader.preprocessors import NbGraderPreprocessor

NOTE = "[grader] removed from this output: "
MARKDOWN_NOTE = "[grader] removed from this cell: "
FAILED_NOTE = "[grader] shown as text, the sanitizer failed on this {part}: "

#: Output types nbconvert renders escaped (or as an ``<img>`` of base64 data): kept as they are.
SAFE_MIMETYPES = frozenset({"text/plain", "image/png", "image/jpeg", "image/gif", "text/latex"})
#: Raw cells with these formats are rendered into the HTML page.
HTML_RAW_FORMATS = frozenset({"text/html", "html", "text/markdown", "markdown", "text/restructuredtext"})

HTML_TAGS = frozenset(
    {
        "a",
        "abbr",
        "acronym",
        "b",
        "blockquote",
        "br",
        "caption",
        "cite",
        "code",
        "col",
        "colgroup",
        "dd",
        "del",
        "details",
        "dfn",
        "div",
        "dl",
        "dt",
        "em",
        "figcaption",
        "figure",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "hr",
        "i",
        "img",
        "ins",
        "kbd",
        "li",
        "mark",
        "ol",
        "p",
        "pre",
        "q",
        "s",
        "samp",
        "small",
        "span",
        "strike",
        "strong",
        "sub",
        "summary",
        "sup",
        "table",
        "tbody",
        "td",
        "tfoot",
        "th",
        "thead",
        "tr",
        "tt",
        "u",
        "ul",
        "var",
    }
)
HTML_ATTRIBUTES = {
    "*": ["class", "title", "style", "align", "lang", "dir"],
    "a": ["href", "rel"],
    "img": ["src", "alt", "width", "height"],
    "td": ["colspan", "rowspan", "valign"],
    "th": ["colspan", "rowspan", "valign", "scope"],
    "col": ["span", "width"],
    "colgroup": ["span", "width"],
    "table": ["border", "cellpadding", "cellspacing"],
    "ol": ["start", "type", "reversed"],
    "li": ["value"],
    "details": ["open"],
    # ids are kept only where nbconvert's markdown puts them (heading anchors)
    **{f"h{n}": ["id"] for n in range(1, 7)},
}
SVG_TAGS = frozenset(
    {
        "svg",
        "g",
        "defs",
        "title",
        "desc",
        "path",
        "rect",
        "circle",
        "ellipse",
        "line",
        "polyline",
        "polygon",
        "text",
        "tspan",
        "clipPath",
        "mask",
        "linearGradient",
        "radialGradient",
        "stop",
        "marker",
        "pattern",
        "symbol",
        "use",
    }
)
SVG_ATTRIBUTES = [
    "id",
    "class",
    "style",
    "transform",
    "viewBox",
    "width",
    "height",
    "x",
    "y",
    "x1",
    "y1",
    "x2",
    "y2",
    "cx",
    "cy",
    "r",
    "rx",
    "ry",
    "d",
    "points",
    "fill",
    "fill-opacity",
    "fill-rule",
    "stroke",
    "stroke-width",
    "stroke-linecap",
    "stroke-linejoin",
    "stroke-dasharray",
    "stroke-dashoffset",
    "stroke-miterlimit",
    "stroke-opacity",
    "opacity",
    "clip-path",
    "clip-rule",
    "mask",
    "font-size",
    "font-family",
    "font-weight",
    "font-style",
    "text-anchor",
    "dominant-baseline",
    "offset",
    "stop-color",
    "stop-opacity",
    "gradientUnits",
    "gradientTransform",
    "patternUnits",
    "markerWidth",
    "markerHeight",
    "refX",
    "refY",
    "orient",
    "preserveAspectRatio",
    "version",
    "xmlns",
    "href",  # bleach hands over xlink:href as href, and writes it so
]
# Properties that fetch nothing (no url(), no layout that can cover the page).
CSS_PROPERTIES = frozenset(ALLOWED_CSS_PROPERTIES) - {
    "cursor",
    "azimuth",
    "elevation",
    "pause",
    "pause-after",
    "pause-before",
    "pitch",
    "pitch-range",
    "richness",
    "speak",
    "speak-header",
    "speak-numeral",
    "speak-punctuation",
    "speech-rate",
    "stress",
    "voice-family",
    "volume",
}
PROTOCOLS = frozenset({"http", "https", "mailto", "data"})
DATA_IMAGE = re.compile(r"data:image/(png|jpeg|gif|webp);base64,[A-Za-z0-9+/=\s]*\Z", re.I)
URL_ATTRIBUTES = frozenset({"href", "src"})
#: The attachments a markdown cell keeps (the images DATA_IMAGE lets into an <img>), and how
#: each image format's bytes begin.
IMAGE_SIGNATURES = {
    "image/png": re.compile(rb"\x89PNG\r\n\x1a\n"),
    "image/jpeg": re.compile(rb"\xff\xd8\xff"),
    "image/gif": re.compile(rb"GIF8[79]a"),
    "image/webp": re.compile(rb"RIFF.{4}WEBP", re.S),
}


def _html_attribute_allowed(tag: str, name: str, value: str) -> bool:
    if name not in HTML_ATTRIBUTES.get(tag, ()) and name not in HTML_ATTRIBUTES["*"]:
        return False
    if tag == "img" and name == "src":
        # images only from data (PNG, JPEG, GIF, WebP) or files next to the notebook: no beacons
        return bool(DATA_IMAGE.match(value)) or _relative(value)
    if name == "href":
        return not value.strip().lower().startswith("data:")
    return True


def _svg_attribute_allowed(tag: str, name: str, value: str) -> bool:
    if name not in SVG_ATTRIBUTES:
        return False
    if name == "href":  # <use> may point inside the image only
        return value.strip().startswith("#")
    return True


def _relative(url: str) -> bool:
    url = url.strip()
    return bool(url) and ":" not in url.split("/", 1)[0] and not url.startswith(("/", "\\"))


def _cleaner(tags, attributes, **css) -> bleach.Cleaner:
    """A cleaner keeping only ``tags`` and the ``attributes`` it allows, the allowed URL
    schemes and style properties (``css``: further CSSSanitizer options), dropping comments."""
    return bleach.Cleaner(tags=tags, attributes=attributes, protocols=PROTOCOLS, strip=True,
                          strip_comments=True,
                          css_sanitizer=CSSSanitizer(allowed_css_properties=CSS_PROPERTIES, **css))


_HTML = _cleaner(HTML_TAGS, _html_attribute_allowed)
_SVG = _cleaner(SVG_TAGS, _svg_attribute_allowed, allowed_svg_properties=ALLOWED_SVG_PROPERTIES)


def _inventory(markup: str) -> Counter:
    """What markup a fragment holds (tags, attributes, URL schemes, style properties), as the
    sanitizer's own parser (html5lib, as browsers parse HTML) reads it."""
    items: Counter = Counter()
    parser = html5lib_shim.BleachHTMLParser(
        tags=None, strip=False, consume_entities=False, namespaceHTMLElements=False
    )
    for token in html5lib_shim.getTreeWalker("etree")(parser.parseFragment(markup)):
        if token["type"] not in ("StartTag", "EmptyTag"):
            continue
        items[f"<{token['name'].lower()}>"] += 1
        for (namespace, name), value in token["data"].items():
            if namespace and namespace.endswith("/xmlns/"):
                continue  # a namespace declaration (bleach writes SVG's xlink:href as href)
            if name in URL_ATTRIBUTES and re.match(r"\s*[a-z][a-z0-9+.-]*:", value, re.I):
                items[f'{name}="{value.split(":", 1)[0].strip().lower()}:..."'] += 1
            elif name == "style":
                for decl in value.split(";"):
                    prop = decl.split(":", 1)[0].strip().lower()
                    if prop:
                        items[f"style {prop}"] += 1
            else:
                items[f"{token['name'].lower()} {name}="] += 1
    return items


def _removed(before: str, after: str) -> list[str]:
    """The markup in ``before`` that is not in ``after``, read by the sanitizer's own parser.

    Outputs always keep the sanitizer's output, so for them this only words the note; a markdown
    cell is kept as written only when its rendering loses nothing here (``clean_markdown``).
    """
    return sorted(_inventory(before) - _inventory(after))


def _render_markdown(source: str, attachments: dict | None = None) -> str:
    """``source`` rendered as nbconvert renders markdown cells (raw HTML passes through), with
    the cell's ``attachments``: naming an ``attachment:`` it does not have raises
    ``InvalidNotebook``, as nbconvert does (a code cell's outputs have none)."""
    return MarkdownWithMath(renderer=IPythonRenderer(escape=False, attachments=attachments)).render(source)


def _literal(text: str) -> str:
    """Markdown that renders as exactly ``text``, on one line: every ASCII punctuation mark is
    backslash-escaped, so that what a student chose (an attribute's name, an attachment's name,
    an error message) cannot become a link, an image or HTML inside a note."""
    return re.sub(r"([!-/:-@\[-`{-~])", r"\\\1", " ".join(text.split()))


def _markdown_note(text: str) -> str:
    """A note as the first paragraph of a markdown cell, in italics."""
    return f"*{_literal(text)}*\n\n"


def _verbatim(source: str) -> str:
    """``source`` as a fenced code block: markdown that shows the text as written, escaped."""
    fence = "`" * max(3, 1 + max((len(run) for run in re.findall(r"`+", source)), default=0))
    return f"{fence}text\n{source}\n{fence}"


def _image_base64(mimetype: str, data) -> str | None:
    """``data`` (base64, as nbformat stores it: a string or a list of lines) without whitespace,
    if it is declared as a kept image format and decodes to a PNG, JPEG, GIF or WebP; else None."""
    if isinstance(data, list) and all(isinstance(line, str) for line in data):
        data = "".join(data)
    if mimetype not in IMAGE_SIGNATURES or not isinstance(data, str):
        return None
    data = "".join(data.split())
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        return None
    return data if any(signature.match(raw) for signature in IMAGE_SIGNATURES.values()) else None


def clean_attachments(attachments) -> tuple[dict, list[str]]:
    """A markdown cell's attachments (``{name: {mimetype: base64}}``, what Jupyter stores for a
    pasted image) reduced to images an ``<img>`` shows and nothing runs: PNG, JPEG, GIF or WebP
    in valid base64 (no SVG, no HTML). Returns them and what was dropped."""
    kept, dropped = {}, []
    for name, bundle in (attachments or {}).items():
        if not isinstance(bundle, dict):
            dropped.append(f"attachment {name}")
            continue
        images = {}
        for mimetype, data in bundle.items():
            image = _image_base64(mimetype, data)
            if image is None:
                dropped.append(f"attachment {name} ({mimetype})")
            else:
                images[mimetype] = image
        if images:
            kept[name] = images
    return kept, dropped


def clean_html(markup: str) -> tuple[str, list[str]]:
    """``markup`` (an HTML fragment) sanitized, and what was removed ([] when nothing was)."""
    safe = _HTML.clean(markup)
    return safe, _removed(markup, safe)


def clean_svg(markup: str) -> tuple[str, list[str]]:
    """An SVG image sanitized (no script, handler, foreign content or outside reference)."""
    markup = re.sub(r"\A\s*(<\?xml[^>]*\?>|<!DOCTYPE[^>]*>|\s)*", "", markup)  # prologue and
    markup = re.sub(r"<metadata>.*?</metadata>", "", markup, flags=re.S)  # matplotlib's RDF: no note
    safe = _SVG.clean(markup)
    return safe, _removed(markup, safe)


def clean_markdown(source: str, note: str = "", attachments: dict | None = None) -> tuple[str, list[str]]:
    """Markdown whose rendering (as nbconvert renders it) is safe, and what was removed.

    ``attachments`` are the markdown cell's (outputs have none): rendered only as far as
    :func:`clean_attachments` keeps them, what it drops counting among what was removed.
    Markdown whose rendering the sanitizer leaves whole is returned unchanged. Otherwise
    ``note`` + what was removed, then the markdown (when only attachments were dropped) or its
    sanitized rendering, provided that renders to HTML the sanitizer leaves whole; else the
    text, verbatim, in a code block (rendered escaped). Markdown that cannot be rendered
    (an ``attachment:`` that is not there) raises, as in nbconvert.
    """
    if not attachments:
        text, removed = _clean_markdown_cached(source, note)
    else:
        images, dropped = clean_attachments(attachments)
        text, removed = _clean_markdown(source, note, images, tuple(dropped))
    return text, list(removed)


def _clean_markdown(source: str, note: str, attachments: dict | None,
                    dropped: tuple[str, ...]) -> tuple[str, tuple[str, ...]]:
    safe, gone = clean_html(_render_markdown(source, attachments))
    removed = (*dropped, *gone)
    if not removed:
        return source, ()
    note = _markdown_note(note + ", ".join(removed)) if note else ""
    text = note + (safe if gone else source)
    if not clean_html(_render_markdown(text, attachments))[1]:
        return text, removed
    return note + _verbatim(source), removed


# Most markdown cells of a class are the assignment's own text, the same in every submission:
# each is rendered and parsed once per process (this was a fifth of writing a graded student).
# Cells with attachments (pasted images, rare and large) are not kept.
@functools.lru_cache(maxsize=4096)
def _clean_markdown_cached(source: str, note: str) -> tuple[str, tuple[str, ...]]:
    return _clean_markdown(source, note, None, ())


def _note(text: str) -> dict:
    return new_output("stream", name="stdout", text=text + "\n")


def _join(value) -> str:
    return "".join(value) if isinstance(value, list) else value


def _plain(value) -> str:
    """A notebook text field (a string or a list of lines) as a string; "" if it is neither."""
    if isinstance(value, list) and all(isinstance(line, str) for line in value):
        return "".join(value)
    return value if isinstance(value, str) else ""


def _failure(error: BaseException) -> str:
    """What went wrong, on one short line."""
    text = " ".join(f"{type(error).__name__}: {error}".split()).rstrip(":")
    return text if len(text) <= 200 else text[:199] + "..."


#: What of a failed output is shown as text: its first representation of these.
TEXT_MIMETYPES = ("text/markdown", "text/plain", "text/latex", "text/html")


def escaped_output(output, error: BaseException) -> dict:
    """An output whose sanitizing raised ``error``, as a stdout stream (rendered escaped): a note
    naming the error, then the output's text (its markdown, plain text, LaTeX or HTML source,
    the first it has)."""
    data = output.get("data") if isinstance(output, dict) else None
    data = data if isinstance(data, dict) else {}
    text = next((_plain(data[m]) for m in TEXT_MIMETYPES if _plain(data.get(m))), "")
    return _note(FAILED_NOTE.format(part="output") + _failure(error) + ("\n" + text if text else ""))


def escape_cell(cell, source: str, error: BaseException) -> str:
    """Turn a cell whose sanitizing raised ``error`` into its ``source`` shown as escaped text
    (a code cell: its outputs into a note), after a note naming the error; returns the note."""
    note = FAILED_NOTE.format(part="cell") + _failure(error)
    kind = cell.get("cell_type")
    if kind == "markdown":
        try:
            dropped = clean_attachments(cell.get("attachments"))[1]
        except Exception:  # attachments that are not even a mapping
            dropped = ["attachments"]
        if dropped:
            note += "; removed: " + ", ".join(dropped)
        cell.pop("attachments", None)
        cell.source = _markdown_note(note) + _verbatim(source)
    elif kind == "raw":
        cell.source = f"<p><em>{html.escape(note)}</em></p>\n<pre>{html.escape(source)}</pre>"
    elif kind == "code":
        cell.outputs = [_note(note)]
    return note


_LENGTH = re.compile(r"\s*(\d{1,9}(?:\.\d{1,9})?)\s*(?:px)?\s*", re.I)


def _positive_number(value) -> int | float | None:
    """``value`` as a plain positive finite number (an int, a float, or a string of one with or
    without "px"); None for anything else (text, a percentage, a mapping, a bool)."""
    if isinstance(value, str):
        match = _LENGTH.fullmatch(value)
        if match is None:
            return None
        value = float(match[1])
        value = int(value) if value.is_integer() else value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = int(value) if isinstance(value, int) else float(value)
    return value if 0 < value < math.inf else None


#: What nbconvert's HTML templates read from an output's metadata (``get_metadata``: under the
#: mime type's key, else at the top level) and what of each is kept (None: dropped). ``width``
#: and ``height`` are written unquoted into the ``<img>`` tag, so only positive numbers pass
#: (a string such as "200" or "200px" becomes the number).
OUTPUT_METADATA = {
    "width": _positive_number,
    "height": _positive_number,
    "unconfined": lambda value: value if isinstance(value, bool) else None,  # class="unconfined"
    "needs_background": lambda value: value if value in ("light", "dark") else None,  # compared
    "alt": lambda value: value if isinstance(value, str) else None,  # quoted and escaped
}
#: Metadata the templates also render, dropped (with a note): ``filenames`` becomes an ``<img
#: src>`` (any URL: a beacon), ``isolated`` an ``<iframe>`` around the HTML.
DROPPED_METADATA = frozenset({"filenames", "isolated"})


def _count(value) -> int | None:
    """A prompt number as nbformat allows it (an int >= 0), else None: templates write it
    unescaped, so a string there would be markup."""
    return value if type(value) is int and value >= 0 else None


def _metadata_fields(fields: dict, where: str) -> tuple[dict, list[str]]:
    kept, removed = {}, []
    for key, value in fields.items():
        clean = OUTPUT_METADATA.get(key) if isinstance(key, str) else None
        value = clean(value) if clean else None
        if value is not None:
            kept[key] = value
        elif key in OUTPUT_METADATA or key in DROPPED_METADATA:
            removed.append(f"metadata {key}{where}")
    return kept, removed


def clean_metadata(metadata, mimetypes) -> tuple[dict, list[str]]:
    """An output's ``metadata`` reduced to :data:`OUTPUT_METADATA`'s keys with safe values, at
    the top level and under each of ``mimetypes`` (the output's data), and what was dropped of
    what the templates render (other keys, which nothing renders, go without a note)."""
    if not isinstance(metadata, dict):
        return {}, ["metadata"] if metadata else []
    kept, removed = _metadata_fields(metadata, "")
    for mimetype in mimetypes:
        fields = metadata.get(mimetype)
        if isinstance(fields, dict):
            kept[mimetype], gone = _metadata_fields(fields, f" ({mimetype})")
            removed += gone
            if not kept[mimetype]:
                del kept[mimetype]
        elif fields is not None:  # the templates would call .get on it
            removed.append(f"metadata ({mimetype})")
    return kept, removed


def clean_output(output) -> list:
    """The output made safe (its data, metadata and prompt number), followed by a note naming
    what was removed, if anything was."""
    kind = output.get("output_type")
    if kind not in ("display_data", "execute_result"):
        return [output]  # stream and error outputs render escaped
    data, removed = output.get("data", {}), []
    for mimetype in list(data):
        if mimetype in SAFE_MIMETYPES:
            continue
        if mimetype == "text/html":
            data[mimetype], gone = clean_html(_join(data[mimetype]))
        elif mimetype == "image/svg+xml":
            data[mimetype], gone = clean_svg(_join(data[mimetype]))
        elif mimetype == "text/markdown":
            data[mimetype], gone = clean_markdown(_join(data[mimetype]))
        else:
            del data[mimetype]
            gone = [f"a {mimetype} output"]
        removed += [
            f"{g} ({mimetype})" if mimetype != "text/html" and not g.startswith("a ") else g for g in gone
        ]
    if "metadata" in output:
        metadata, gone = clean_metadata(output["metadata"], data)
        output["metadata"] = from_dict(metadata)
        removed += gone
    if kind == "execute_result" and _count(output.get("execution_count")) != output.get("execution_count"):
        output["execution_count"] = None
        removed.append("execution_count")
    if not removed:
        return [output]
    note = _note(NOTE + ", ".join(dict.fromkeys(removed)))
    return [note] if not data else [output, note]


def clean_cell(cell) -> list[str]:
    """Sanitize one cell in place; returns what was removed. An output whose sanitizing raises
    becomes its text (:func:`escaped_output`); any other error is the caller's."""
    if cell.cell_type == "code":
        outputs, removed = [], []
        if _count(cell.get("execution_count")) != cell.get("execution_count"):  # first: cannot raise
            cell.execution_count = None
            outputs.append(_note(MARKDOWN_NOTE + "execution_count"))
            removed.append(MARKDOWN_NOTE + "execution_count")
        for output in cell.get("outputs", []):
            try:
                cleaned = clean_output(output)
            except Exception as error:  # this output alone is shown as text
                cleaned = [escaped_output(output, error)]
            outputs += cleaned
            removed += [o.text.split("\n", 1)[0] for o in cleaned if o is not output]  # the notes
        cell.outputs = outputs
        return removed
    if cell.cell_type == "markdown":
        attachments = cell.get("attachments")
        cell.source, removed = clean_markdown(_join(cell.source), note=MARKDOWN_NOTE, attachments=attachments)
        if attachments is not None:
            cell.attachments = clean_attachments(attachments)[0]
        return removed
    if cell.cell_type == "raw":
        fmt = cell.metadata.get("format", cell.metadata.get("raw_mimetype", ""))
        if str(fmt).lower() in HTML_RAW_FORMATS:
            cell.source, removed = clean_html(_join(cell.source))
            if removed:
                cell.source = (
                    f"<p><em>{MARKDOWN_NOTE}{html.escape(', '.join(removed))}</em></p>\n{cell.source}"
                )
            return removed
    return []


class SanitizeOutputs(NbGraderPreprocessor):
    """Remove from outputs, markdown and raw cells what could run in the browser that shows them."""

    def preprocess(self, nb, resources):
        if nb.metadata.pop("widgets", None) is not None:
            self.log.warning("Removed the notebook's widget state (it would load widget code in the browser)")
        return super().preprocess(nb, resources)

    def preprocess_cell(self, cell, resources, cell_index):
        source = _plain(cell.get("source"))
        try:
            removed = self._sanitize(cell)
        except Exception as error:  # this cell alone fails: shown as text, the others as usual
            self.log.warning("Cell %d: %s", cell_index, escape_cell(cell, source, error))
            return cell, resources
        if removed:
            self.log.warning(
                "Cell %d: removed what could run in a browser: %s",
                cell_index,
                "; ".join(r.strip() for r in removed),
            )
        return cell, resources

    @staticmethod
    def _sanitize(cell) -> list[str]:
        meta = cell.metadata.get("nbgrader", {})
        if cell.cell_type == "markdown" and meta.get("locked") and not meta.get("solution"):
            # the course's own text: OverwriteCells has put back the source's (RestoreCellMetadata
            # made sure that only cells the source locked are marked locked); the attachments are
            # the submission's, so the text must still render with them (or it is shown as text)
            if "attachment:" in _join(cell.source):
                _render_markdown(_join(cell.source), cell.get("attachments"))
            return []
        return clean_cell(cell)
