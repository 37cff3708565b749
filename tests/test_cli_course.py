"""Does every `python -m autograder` verb take the current directory as the course by default,
like nbgrader, with `--course DIR` to name another?"""
from __future__ import annotations

import re

import pytest

from autograder.__main__ import VERBS, main


@pytest.mark.parametrize("verb", sorted(VERBS))
def test_verb_defaults_to_the_current_directory(verb, capsys):
    """Does the verb's --help offer --course, with the current directory as its default?"""
    with pytest.raises(SystemExit) as stop:
        main([verb, "--help"])
    assert stop.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "--course" in text, f"{verb}: no --course option"
    assert re.search(r"--course [A-Z]+ .*?\(default: (the current directory|\.)[,)]", text), \
        f"{verb}: --course does not default to the current directory"
