"""The fairness corpus: students' code, in the styles that real submissions use, with the
points each must get (``tests/test_fairness_e2e.py`` grades it through real nbgrader;
``docs/fairness.md`` lists it)."""

from .students import ENTRIES as _STUDENTS

ENTRIES = _STUDENTS
