"""List the public functions and classes whose docstring lacks an example (or is missing), and
every docstring that would not render as written.

Public = the names in ``__all__`` (or, without one, the top-level functions and classes whose name
has no leading underscore) of every module of the package whose dotted path has no part starting
with an underscore. An object counts as having an example when its own docstring has one that
doctest runs (a line not marked ``+SKIP``), or when such an example line of its module's
docstring names it. Prints one line per gap and a summary; exits 0 (an audit, not
a gate: the doctests themselves are run by tests/docs/test_docs.py).

Rendering (:func:`render_problems`, checked on every docstring of the package, private modules,
classes' methods and module docstrings included; tests/docs/test_docs.py makes it a gate):

* a control character, i.e. a LaTeX command whose backslash Python ate in a non-raw docstring
  (there ``"\\frac"`` is a form feed followed by ``rac``, ``"\\beta"`` a backspace and ``eta``):
  write ``\\\\frac``;
* a Sphinx role (``:math:`...```, ``:func:`...```) whose text runs over a line break: the docs
  build rewrites roles line by line (tools/docs_griffe.py), so it would print literally.

    PYTHONPATH=. python tools/docs_audit.py
"""
from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
import sys

import finercam


def public_objects():
    names = ["finercam"] + [m.name for m in pkgutil.walk_packages(finercam.__path__, "finercam.")]
    for modname in sorted(names):
        if any(p.startswith("_") for p in modname.split(".")[1:]):
            continue
        try:
            mod = importlib.import_module(modname)
        except Exception as exc:  # noqa: BLE001 - reported, the audit goes on
            yield modname, None, None, f"import failed: {exc}"
            continue
        names = getattr(mod, "__all__", None)
        if names is None:  # no __all__: the module's own top-level names without an underscore
            names = [n for n, o in vars(mod).items() if not n.startswith("_")
                     and getattr(o, "__module__", None) == modname]
        for name in names:
            obj = getattr(mod, name, None)
            if inspect.isfunction(obj) or inspect.isclass(obj):
                if getattr(obj, "__module__", modname) != modname:
                    continue  # re-exported: audited where it is defined
                yield modname, name, obj, None


_SPLIT_ROLE = re.compile(r":[a-z]+:`[^`]*\n")


def render_problems(doc: str) -> list[str]:
    """What in one raw docstring (``obj.__doc__``) would not render as written."""
    problems = []
    ctrl = sorted({f"\\x{ord(c):02x}" for c in doc if ord(c) < 32 and c not in "\n"})
    if ctrl:
        problems.append(f"control character(s) {', '.join(ctrl)} (an eaten LaTeX backslash? write \\\\)")
    for m in _SPLIT_ROLE.finditer(doc):
        problems.append(f"role split over a line break: {m.group(0).strip()!r}")
    return problems


def all_docstrings():
    """``(qualified name, raw docstring)`` of every module, function, class and method defined in
    the package (private ones too)."""
    names = ["finercam"] + [m.name for m in pkgutil.walk_packages(finercam.__path__, "finercam.")]
    for modname in sorted(names):
        mod = importlib.import_module(modname)
        yield modname, mod.__doc__ or ""
        for name, obj in vars(mod).items():
            if not (inspect.isfunction(obj) or inspect.isclass(obj)) or obj.__module__ != modname:
                continue
            yield f"{modname}.{name}", obj.__doc__ or ""
            if inspect.isclass(obj):
                for attr, member in vars(obj).items():
                    member = getattr(member, "__func__", member)  # static and class methods
                    if inspect.isfunction(member) or isinstance(member, property):
                        yield f"{modname}.{name}.{attr}", member.__doc__ or ""


def _runs(doc: str) -> bool:
    """Whether a docstring has an example line that doctest runs (not marked ``+SKIP``)."""
    return any(ln.lstrip().startswith(">>>") and "+SKIP" not in ln for ln in doc.splitlines())


def main() -> int:
    for qualname, doc in all_docstrings():
        for problem in render_problems(doc):
            print(f"{qualname}: {problem}")
    gaps = total = 0
    for modname, name, obj, error in public_objects():
        if error:
            print(f"{modname}: {error}")
            continue
        total += 1
        doc = inspect.getdoc(obj) or ""
        moddoc = inspect.getdoc(sys.modules[modname]) or ""
        problems = []
        if not doc:
            problems.append("no docstring")
        elif not _runs(doc) and not any(ln.lstrip().startswith((">>>", "...")) and name in ln
                                        and "+SKIP" not in ln for ln in moddoc.splitlines()):
            problems.append("no example" if ">>>" not in doc else "only skipped examples")
        if problems:
            gaps += 1
            print(f"{modname}.{name}: {', '.join(problems)}")
    print(f"{gaps} of {total} public functions and classes have gaps")
    return 0


if __name__ == "__main__":
    sys.exit(main())
