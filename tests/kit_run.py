"""Run notebooks in a kernel of the Python that runs this script (tests/test_kit.py runs it with
a kit's clean venv): ``python kit_run.py NOTEBOOK ...`` executes each notebook from the top in
its own folder until the end or the first error, saves it in place, and prints one JSON line per
notebook: ``{"notebook": ..., "seconds": ..., "error": null | {"cell": index, "grade_id": ...,
"ename": ..., "evalue": ...}}``. It imports only what the kit installs (nbclient, nbformat)."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError


def run(path: Path, timeout: int = 600) -> dict:
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    start, error = time.perf_counter(), None
    try:
        client.execute()
    except CellExecutionError:
        for index, cell in enumerate(nb.cells):
            errors = [o for o in cell.get("outputs", []) if o.output_type == "error"]
            if errors:
                error = {"cell": index, "grade_id": cell.metadata.get("nbgrader", {}).get("grade_id"),
                         "ename": errors[0].ename, "evalue": errors[0].evalue}
                break
    nbformat.write(nb, path)
    return {"notebook": path.name, "seconds": round(time.perf_counter() - start, 1), "error": error}


if __name__ == "__main__":
    for arg in sys.argv[1:]:
        print(json.dumps(run(Path(arg))), flush=True)
