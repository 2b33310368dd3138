"""The package's layering, read from the source: the engine imports neither the bird world nor the
applications, and the bird world does not import the applications.

    finercam/          the engine (capture, layers, references, methods, finer, explanation,
                       compat, kernels, metrics, zeroshot head and adapters)
    finercam/world/    the spot-the-difference bird world: data, embedded models, dual encoder
    finercam/apps/     cli, demo, explain, evaluate, report, viz

``finercam/__main__.py`` is the command line's door (``python -m finercam``) and may import the
apps. Imports are read with ``ast``, so a lazy import inside a function counts too.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "finercam"


def _module_name(path: Path, package_dir: Path = PACKAGE) -> str:
    parts = list(path.relative_to(package_dir.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imported_modules(path: Path, package_dir: Path = PACKAGE) -> set[str]:
    """Every module an ``import``/``from ... import`` in the file names, relative ones resolved."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = _module_name(path, package_dir).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            found.add(module)
            # `from . import viz` names a module through its alias.
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def _layer(path: Path, package_dir: Path = PACKAGE) -> str:
    relative = path.relative_to(package_dir).parts
    if relative[0] in ("world", "apps"):
        return relative[0]
    return "main" if relative == ("__main__.py",) else "engine"


def _sources(layer: str) -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if _layer(p) == layer)


FORBIDDEN = {"engine": ("finercam.world", "finercam.apps"), "world": ("finercam.apps",)}


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layer_imports_nothing_above_it(layer):
    sources = _sources(layer)
    assert len(sources) >= (10 if layer == "engine" else 8), f"too few {layer} modules found: {sources}"
    offences = []
    for path in sources:
        for module in sorted(_imported_modules(path)):
            if any(module == f or module.startswith(f + ".") for f in FORBIDDEN[layer]):
                offences.append(f"{path.relative_to(PACKAGE.parent)} imports {module}")
    assert not offences, "\n".join(offences)


def test_the_walker_sees_relative_and_lazy_imports(tmp_path):
    # The check above is only as good as the import reader: a relative import two levels up
    # inside a function must resolve to the absolute module it names.
    fake = tmp_path / "finercam"
    (fake / "zeroshot").mkdir(parents=True)
    source = fake / "zeroshot" / "head.py"
    source.write_text("def f():\n    from ..apps import viz\n    from ..world.models import load\n")
    found = _imported_modules(source, fake)
    assert {"finercam.apps", "finercam.apps.viz", "finercam.world.models"} <= found
    assert _layer(source, fake) == "engine"


def test_the_public_doors_still_work():
    import finercam

    assert finercam.FinerCAM.__module__ == "finercam.finer"
    assert finercam.ZeroShotFinerCAM.__module__ == "finercam.zeroshot.head"
    assert hasattr(finercam.metrics, "relative_drop")
    assert hasattr(finercam.kernels, "combine")


ROOT = PACKAGE.parent
#: Scripts beside the package that use the library, never the applications.
SCRIPT_DIRS = ("benchmarks", "tools", "notebooks/src")


def _script_imports(path: Path) -> set[str]:
    """The absolute modules a script outside the package imports (``from finercam import apps``
    names ``finercam.apps``), lazy imports included. A notebook source's IPython magics
    (``%matplotlib inline``) are not Python: they are read as comments."""
    lines = ["#" + line if line.lstrip().startswith(("%", "!")) else line
             for line in path.read_text().splitlines()]
    found = set()
    for node in ast.walk(ast.parse("\n".join(lines), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def _apps_importers(root: Path = ROOT, package_dir: Path = PACKAGE) -> list[str]:
    """``file imports module`` for every import of ``finercam.apps`` outside the applications
    (``finercam/apps/``) and the command line's door (``finercam/__main__.py``)."""
    found = []
    for path in sorted(package_dir.rglob("*.py")):
        if _layer(path, package_dir) in ("apps", "main"):
            continue
        found += [(path, m) for m in _imported_modules(path, package_dir)]
    for folder in SCRIPT_DIRS:
        found += [(path, m) for path in sorted((root / folder).glob("*.py")) for m in _script_imports(path)]
    def named(module: str, prefix: str) -> bool:
        return module == prefix or module.startswith(prefix + ".")

    return [f"{name} imports {m}" for name, m in ((p.relative_to(root).as_posix(), m) for p, m in found)
            if named(m, "finercam.apps")]


def test_the_applications_are_imported_by_nothing_but_the_command_line():
    assert len(list(PACKAGE.rglob("*.py"))) >= 40
    assert all(len(list((ROOT / d).glob("*.py"))) >= 3 for d in SCRIPT_DIRS)
    offences = _apps_importers()
    assert not offences, "\n".join(offences)


def test_the_apps_check_sees_an_injected_import(tmp_path):
    # The oracle of the check above: a copy of the tree with one lazy import of the applications
    # added to an engine module and one to a benchmark; the check names exactly those two.
    fake = tmp_path / "repo"
    (fake / "finercam" / "apps").mkdir(parents=True)
    (fake / "finercam" / "apps" / "cli.py").write_text("from ..world import models\n")
    (fake / "finercam" / "__main__.py").write_text("from .apps.cli import main\n")
    (fake / "finercam" / "metrics.py").write_text("def f():\n    from .apps import cli\n")
    (fake / "finercam" / "kernels.py").write_text("from . import layers\n")
    for folder in SCRIPT_DIRS:
        (fake / folder).mkdir(parents=True)
    (fake / "benchmarks" / "bench_x.py").write_text("def main():\n    from finercam import apps\n")
    (fake / "tools" / "tool.py").write_text("import finercam.viz\n")
    assert sorted(_apps_importers(fake, fake / "finercam")) == [
        "benchmarks/bench_x.py imports finercam.apps", "finercam/metrics.py imports finercam.apps",
        "finercam/metrics.py imports finercam.apps.cli"]
