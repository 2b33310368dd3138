"""Write notebooks/NN_name.ipynb from notebooks/src/NN_name.py (the sources that are reviewed).

A source is plain Python in the "percent" format: a line ``# %%`` starts a code cell, a line
``# %% [markdown]`` starts a Markdown cell whose lines are comments (``# `` is stripped). The
notebooks are committed with their outputs, so that a reader on GitHub sees the results:
``--execute`` writes each notebook and runs it top to bottom in a kernel of this interpreter,
keeping the outputs (execution timestamps dropped). tests/docs/test_docs.py checks that the cells of
each notebook equal its source (the sources only: outputs may differ from run to run) and runs
each of them again.

    python tools/make_notebooks.py --execute  # rewrite and run every notebook (commit these)
    python tools/make_notebooks.py            # rewrite every notebook, without outputs
    python tools/make_notebooks.py --check    # exit 1 if a notebook's cells differ from its source
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "notebooks" / "src"
OUT = ROOT / "notebooks"


def _cell(kind: str, lines: list[str]) -> dict:
    while lines and not lines[-1].strip():
        lines.pop()
    while lines and not lines[0].strip():
        lines.pop(0)
    if kind == "markdown":
        lines = [ln[2:] if ln.startswith("# ") else ln.lstrip("#") for ln in lines]
    source = [ln + "\n" for ln in lines]
    if source:
        source[-1] = source[-1][:-1]
    cell = {"cell_type": kind, "metadata": {}, "source": source}
    if kind == "code":
        cell.update(execution_count=None, outputs=[])
    return cell


def notebook(text: str) -> dict:
    """The notebook (nbformat 4.5 JSON as a dict) of one percent-format source."""
    cells, kind, lines = [], None, []
    for line in text.splitlines():
        if line.startswith("# %%"):
            if kind is not None:
                cells.append(_cell(kind, lines))
            kind, lines = ("markdown" if "[markdown]" in line else "code"), []
        elif kind is not None:
            lines.append(line)
    if kind is not None:
        cells.append(_cell(kind, lines))
    for i, cell in enumerate(cells):
        cell["id"] = f"cell-{i:02d}"
    return {
        "cells": cells,
        "metadata": {
            "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
            "language_info": {"name": "python"},
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }


def render(text: str) -> str:
    return json.dumps(notebook(text), indent=1, ensure_ascii=False) + "\n"


def sources(nb: dict) -> list[tuple[str, str]]:
    """The (cell type, source) of every cell: what must equal the source file."""
    return [(c["cell_type"], "".join(c["source"])) for c in nb["cells"]]


def execute(path: Path) -> None:
    """Run the notebook at ``path`` in a kernel of this interpreter (the package importable,
    matplotlib's inline backend) and write it back with its outputs."""
    import os
    import tempfile

    import nbformat
    from nbclient import NotebookClient

    with tempfile.TemporaryDirectory() as jupyter:
        spec = Path(jupyter) / "kernels" / "python3"
        spec.mkdir(parents=True)
        env = {"PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH"))
                                              if p)}
        (spec / "kernel.json").write_text(json.dumps({
            "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "finercam", "language": "python", "env": env}))
        os.environ.update(JUPYTER_PATH=jupyter, JUPYTER_PLATFORM_DIRS="1")
        nb = nbformat.read(path, as_version=4)
        NotebookClient(nb, timeout=600, kernel_name="python3",
                       resources={"metadata": {"path": str(path.parent)}}).execute()
    for cell in nb.cells:
        cell.get("metadata", {}).pop("execution", None)  # timestamps: noise in every diff
    nb.metadata.pop("widgets", None)
    path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")


def main(argv: list[str]) -> int:
    check = "--check" in argv
    stale = []
    for src in sorted(SRC.glob("*.py")):
        target = OUT / (src.stem + ".ipynb")
        text = render(src.read_text())
        if check:
            if not target.exists() or sources(json.loads(target.read_text())) != \
                    sources(json.loads(text)):
                stale.append(target.name)
        else:
            target.write_text(text)
            if "--execute" in argv:
                execute(target)
    if stale:
        print("out of date (run python tools/make_notebooks.py --execute):", ", ".join(stale))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
