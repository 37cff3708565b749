"""Does a student who pasted an image into a markdown cell get graded and get feedback?

Jupyter stores a pasted image as the cell's attachment (``![image.png](attachment:image.png)``
and ``{"image.png": {"image/png": <base64>}}``); nbconvert renders the markdown with the cell's
own attachments. Real ``nbgrader autograde`` and ``nbgrader generate_feedback`` on a toy
notebook (no weights), next to the same notebook without the image.
"""
from __future__ import annotations

import base64
import struct
import zlib

import nbformat
import pytest
from nbformat.v4 import new_markdown_cell
from nbgrader_harness import (
    autograde,
    fill,
    grade_cell,
    graded,
    make_course,
    markdown,
    nbgrader,
    notebook,
    release,
    scores,
    solution_cell,
    submit,
)

pytestmark = pytest.mark.slow

PASTED = "My plot of the loss:\n\n![image.png](attachment:image.png)"


def tiny_png() -> bytes:
    """A valid 2x2 grey PNG."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\0" + bytes([128, 64]) for _ in range(2))  # filter byte, 2 grey pixels
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 2, 2, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


PNG = base64.b64encode(tiny_png()).decode()


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    """A toy course in which "pasted" and "plain" submitted the same correct notebook, "pasted"
    with an image pasted into a markdown cell; autograded, then feedback generated."""
    source = notebook(
        markdown("# Toy"),
        solution_cell("def square(x):\n    ### BEGIN SOLUTION\n    return x * x\n    ### END SOLUTION", "square"),
        grade_cell("assert square(3) == 9", "test_square", 1),
    )
    course = make_course(tmp_path_factory.mktemp("attachments"), {"toy": source})
    plain = fill(release(course, "toy"), {"square": "def square(x):\n    return x * x"})
    pasted = nbformat.from_dict(plain)
    pasted.cells.insert(2, new_markdown_cell(PASTED, attachments={"image.png": {"image/png": PNG}}))
    submit(course, "plain", {"toy.ipynb": plain})
    submit(course, "pasted", {"toy.ipynb": pasted})
    run = autograde(course, timeout=120)
    assert run.returncode == 0, run.output[-6000:]
    feedback = nbgrader(course, "generate_feedback", "toy", "--force", timeout=300)
    assert feedback.returncode == 0, (feedback.stdout + feedback.stderr)[-6000:]
    return course


def test_pasted_image_is_graded_like_the_same_notebook_without_it(course):
    """Is the submission with a pasted image autograded, its image kept, with the scores of the
    same notebook without the image?"""
    nb = graded(course, "pasted", "toy")
    assert nb is not None, "no autograded notebook: the submission failed to grade"
    (cell,) = [c for c in nb.cells if c.cell_type == "markdown" and "attachment:" in c.source]
    assert cell.source == PASTED and cell.attachments == {"image.png": {"image/png": PNG}}
    assert scores(course, "pasted") == scores(course, "plain") == {("toy", "test_square"): (1.0, 1.0)}


def test_feedback_shows_the_pasted_image(course):
    """Is the feedback page written, with the pasted image in it and no note of removal?"""
    page = (course / "feedback" / "pasted" / "toy" / "toy.html").read_text()
    assert f'src="data:image/png;base64,{PNG}"' in page
    assert "My plot of the loss" in page and "[grader]" not in page
