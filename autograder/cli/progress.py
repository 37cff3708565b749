"""Show a notebook's progress while it executes: the cell that starts, and what it prints.

``make weights`` and ``make demo`` train the reference models by executing the solution
notebooks, which takes minutes. :class:`ProgressClient` is nbclient's ``NotebookClient`` that
writes, as they happen,

- one line per code cell as it starts (``[ae 12/31] train(encoder, decoder, ...)``),
- the kernel's stdout and stderr, relayed live: the notebook's tqdm bar over epochs and what
  its cells print,
- ``... still running (2 min)`` after a minute without output, so it is never silent for long.
"""
from __future__ import annotations

import sys
import threading
import time
from typing import TextIO

from nbclient import NotebookClient

HEARTBEAT_S = 60


def first_line(source: str, width: int = 70) -> str:
    """The first non-empty line of a cell's source, shortened to `width` characters."""
    line = next((ln.strip() for ln in source.splitlines() if ln.strip()), "")
    return line if len(line) <= width else line[:width - 3] + "..."


class ProgressClient(NotebookClient):
    """A NotebookClient that reports each cell and relays the kernel's output as it comes."""

    def __init__(self, nb, *, label: str, stream: TextIO | None = None, heartbeat: float = HEARTBEAT_S,
                 **kw):
        super().__init__(nb, **kw)
        self.label = label
        self.stream = stream or sys.stdout
        self.heartbeat = heartbeat
        self._codes = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and c.source.strip()]
        self._line_open = False  # the last relayed text did not end with a newline (a tqdm bar)
        self._last = time.monotonic()
        self._cell_started = self._last
        self._lock = threading.Lock()
        self._done = threading.Event()
        self.on_cell_start = self._report_cell

    def _write(self, text: str) -> None:
        with self._lock:
            self.stream.write(text)
            self.stream.flush()
            if text:
                self._line_open = not text.endswith("\n")
            self._last = time.monotonic()

    def _newline(self) -> str:
        return "\n" if self._line_open else ""

    def _report_cell(self, cell, cell_index: int) -> None:
        if cell_index not in self._codes:
            return
        self._cell_started = time.monotonic()
        n = self._codes.index(cell_index) + 1
        self._write(f"{self._newline()}[{self.label} {n}/{len(self._codes)}] {first_line(cell.source)}\n")

    def output(self, outs, msg, display_id, cell_index):
        if msg["msg_type"] == "stream":
            self._write(msg["content"].get("text", ""))
        return super().output(outs, msg, display_id, cell_index)

    def _beat(self) -> None:
        while not self._done.wait(5):
            if time.monotonic() - self._last >= self.heartbeat:
                minutes = (time.monotonic() - self._cell_started) / 60
                self._write(f"{self._newline()}[{self.label}] ... still running "
                            f"({minutes:.0f} min in this cell)\n")

    def execute(self, **kw):
        beat = threading.Thread(target=self._beat, daemon=True)
        beat.start()
        try:
            return super().execute(**kw)
        finally:
            self._done.set()
            beat.join()
            if self._line_open:
                self._write("\n")
