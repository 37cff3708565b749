"""A Jupyter kernel as a job of the warm sandbox (``autograder.sandbox.warm``).

``main(*argv)`` is what ``python -m ipykernel_launcher *argv`` runs; the server imported
ipykernel (and what the notebooks import) before, so the kernel starts in a fraction of a
second instead of paying for a new interpreter and ``import torch``.
"""
from __future__ import annotations


def main(*argv: str) -> None:
    from ipykernel.kernelapp import IPKernelApp

    IPKernelApp.launch_instance(argv=list(argv))
