"""The failure types of the checks (no heavy imports: nbgrader loads this package)."""


class CheckFailure(AssertionError):
    """A check found a problem; the message says what, and how to fix it."""


class NotImplementedYet(CheckFailure):
    """The student's function still raises NotImplementedError."""
