"""The documentation is part of the product: it builds without a warning, its examples run, and
the tutorial notebooks run top to bottom.

* ``mkdocs build --strict`` into a temporary folder (every warning, a broken link or a docstring
  that mkdocstrings cannot render, fails the build), and every public name of every module in the
  API reference has its own entry on the rendered page;
* every ``>>>`` example in every module of the package runs and prints what it says (doctest);
* every docstring renders as written: no LaTeX backslash eaten by Python, no role split over a
  line (``tools/docs_audit.py``), and the docs build turns ``:math:`` into MathJax
  (``tools/docs_griffe.py``);
* every notebook in ``notebooks/`` equals what ``tools/make_notebooks.py`` writes from its source
  and runs top to bottom in a fresh kernel of this interpreter (nbclient).
"""
from __future__ import annotations

import doctest
import importlib
import json
import os
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import pytest

import finercam
from locations import ROOT  # noqa: E402

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
MODULES = sorted(m.name for m in pkgutil.walk_packages(finercam.__path__, "finercam."))


def _api_pages() -> dict[str, Path]:
    """module name -> its page in docs/api/, from the ``::: finercam.x`` directives."""
    pages = {}
    for page in sorted((ROOT / "docs" / "api").glob("*.md")):
        for name in re.findall(r"^::: (finercam[\w.]*)\s*$", page.read_text(), re.M):
            pages[name] = page
    return pages


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp("site")
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(ROOT / "mkdocs.yml"),
         "-d", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{proc.stdout}\n{proc.stderr}"
    return out


def test_docs_build_strict(site):
    for name in ("index", "installation", "tutorials", "faq", "api/index"):
        assert (site / f"{name}.html").is_file(), name


@pytest.mark.parametrize("module", sorted(_api_pages()))
def test_api_reference_lists_every_public_name(site, module):
    page = _api_pages()[module]
    html = (site / "api" / (page.stem + ".html")).read_text()
    public = getattr(importlib.import_module(module), "__all__", None)
    assert public, f"{module} has no __all__: the reference cannot know its public names"
    missing = [n for n in public if f'id="{module}.{n}"' not in html]
    assert not missing, f"{module}: no reference entry for {missing}"


@pytest.mark.parametrize("module", MODULES)
def test_doctests(module):
    mod = importlib.import_module(module)
    result = doctest.testmod(mod, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE,
                             verbose=False, report=True)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {module}"


def _tool(name: str):
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.pop(0)


def test_docstrings_render_as_written():
    audit = _tool("docs_audit")
    # the oracle of the checks themselves: one known case of each problem, one clean docstring
    assert audit.render_problems("Eq. :math:`\frac{1}{Z}`") and audit.render_problems(":math:`a +\n b`")
    assert audit.render_problems("Eq. :math:`\\frac{1}{Z}` and ``x``\n") == []
    found = [f"{name}: {p}" for name, doc in audit.all_docstrings() for p in audit.render_problems(doc)]
    assert len(list(audit.all_docstrings())) > 300
    assert not found, "\n".join(found)


def test_math_roles_become_mathjax():
    md = _tool("docs_griffe").markdown_docstring(
        "Weights :math:`\\alpha_k^c` (see :func:`f`):\n\n.. math::\n\n    L = x\n    + y\n\nafter")
    assert md == ("Weights \\(\\alpha_k^c\\) (see `f`):\n\n\\[\nL = x\n+ y\n\\]\n\nafter")


@pytest.mark.parametrize("page", sorted(p.relative_to(ROOT / "docs").as_posix()
                                         for p in (ROOT / "docs").rglob("*.md")))
def test_doc_page_examples(page):
    """The ``>>>`` examples written in the Markdown pages run too (a blank line ends each one)."""
    result = doctest.testfile(str(ROOT / "docs" / page), module_relative=False,
                              optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {page}"


def test_notebooks_match_their_sources():
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        import make_notebooks
    finally:
        sys.path.pop(0)
    sources = sorted((ROOT / "notebooks" / "src").glob("*.py"))
    assert [s.stem for s in sources] == [n.stem for n in NOTEBOOKS]
    for src, nb in zip(sources, NOTEBOOKS):
        committed = json.loads(nb.read_text())
        # the cells' sources only: the committed outputs differ from run to run (timings)
        assert make_notebooks.sources(committed) == \
            make_notebooks.sources(json.loads(make_notebooks.render(src.read_text()))), (
            f"{nb.name} differs from {src.name}: run python tools/make_notebooks.py --execute")
        code = [c for c in committed["cells"] if c["cell_type"] == "code"]
        assert all(c["execution_count"] for c in code), f"{nb.name} is committed without outputs"


@pytest.fixture(scope="module")
def kernel_env(tmp_path_factory):
    """A kernelspec named python3 that starts this very interpreter with the package importable."""
    base = tmp_path_factory.mktemp("jupyter")
    spec = base / "kernels" / "python3"
    spec.mkdir(parents=True)
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "finercam tests", "language": "python",
        "env": {"PYTHONPATH": path, "MPLBACKEND": "Agg"},
    }))
    return str(base)


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path, kernel_env, monkeypatch):
    import nbformat
    from nbclient import NotebookClient

    monkeypatch.setenv("JUPYTER_PATH", kernel_env)
    monkeypatch.setenv("JUPYTER_PLATFORM_DIRS", "1")
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=120, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    client.execute()
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(c.execution_count for c in code), path.name
    # a reader sees no warning (e.g. tqdm's "IProgress not found" in a kernel without ipywidgets)
    warned = [o["text"] for c in code for o in c.get("outputs", [])
              if o.get("name") == "stderr" and "Warning" in o.get("text", "")]
    assert not warned, f"{path.name} prints warnings:\n" + "\n".join(warned)
