"""List the public functions and classes whose docstring lacks an example (or is missing).

Public = the names in ``__all__`` (or, without one, the top-level functions and classes whose name
has no leading underscore) of every module of the package whose dotted path has no part starting
with an underscore. An object counts as having an example when its own docstring has one, or
when an example line of its module's docstring names it. Prints one line per gap and a summary; exits 0 (an audit, not
a gate: the doctests themselves are run by tests/test_docs.py).

    PYTHONPATH=. python tools/docs_audit.py
"""
from __future__ import annotations

import importlib
import inspect
import pkgutil
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


def main() -> int:
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
        elif ">>>" not in doc and not any(ln.lstrip().startswith((">>>", "...")) and name in ln
                                          for ln in moddoc.splitlines()):
            problems.append("no example")
        if problems:
            gaps += 1
            print(f"{modname}.{name}: {', '.join(problems)}")
    print(f"{gaps} of {total} public functions and classes have gaps")
    return 0


if __name__ == "__main__":
    sys.exit(main())
