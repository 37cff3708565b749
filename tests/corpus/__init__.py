"""The fairness corpus: students' code, in the styles that real submissions use, with the
points each must get (``tests/test_fairness_e2e.py`` grades it through real nbgrader;
``docs/fairness.md`` lists it).

``students.py`` holds whole submissions (several cells, cells of the student's own);
``variants.py`` single-cell variants that the structural checks' unit tests also run.
"""
from __future__ import annotations

from .entry import Entry
from .students import ENTRIES as _STUDENTS
from .variants import KNOWN_GAPS, MESSAGES, VARIANTS

# The variants whose code is correct (the others carry a bug that costs the cells they lose).
_CORRECT_VARIANTS = frozenset({"dae_gated_after_batchnorm", "ae_decoder_relu_dark_start"})


def _entry(name: str) -> Entry:
    variant = VARIANTS[name]
    return Entry(name, variant.notebook, "constructed in the solution's style (tests/corpus/variants.py)",
                 variant.provenance, cells={variant.grade_id: variant.cell},
                 weights=variant.weights,
                 lost=tuple(cell for cell, points in variant.points.items() if points == 0),
                 messages=MESSAGES.get(name, {}), correct=name in _CORRECT_VARIANTS)


ENTRIES = (*_STUDENTS, *(_entry(name) for name in VARIANTS))
__all__ = ["ENTRIES", "KNOWN_GAPS", "Entry"]
