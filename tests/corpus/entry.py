"""One submission of the fairness corpus."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Entry:
    """A student's notebook: the solution notebook ``notebook`` with the solution cells of
    ``cells`` replaced and the cells of ``added`` inserted, submitted with ``weights``.

    ``weights``: ``"reference"`` (the reference weights, moved by position into the student's
    own parameters: the student's model computes the reference's function) or ``"untrained"``
    (the student's own classes, freshly initialised: weights saved before training).
    ``lost``: the grade cells that lose their points (every other cell keeps all of them);
    ``messages``: a phrase that the cell's message must contain.
    """

    name: str
    notebook: str
    source: str            # where the code, or its pattern, comes from
    exercises: str         # what it exercises
    cells: dict[str, str] = field(default_factory=dict)
    added: tuple[tuple[str, str], ...] = ()  # (the grade_id of the cell above, source)
    weights: str = "reference"
    lost: tuple[str, ...] = ()
    messages: dict[str, str] = field(default_factory=dict)
    correct: bool = True   # correct code (False: a real bug, which loses exactly ``lost``)
