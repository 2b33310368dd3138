"""A griffe extension for the docs build: the package's docstrings are reST-flavoured prose with
doctest examples; Markdown would read ``>>>`` as nested block quotes and print Sphinx roles
literally. Docstrings stay untouched in the source; only the rendered copy is rewritten:

* each doctest block (a ``>>>`` line and its continuation/output lines, up to a blank line)
  becomes a fenced ``pycon`` code block;
* ``:func:`x```, ``:class:`x``` and the other Sphinx roles become inline code ``x``.
"""
from __future__ import annotations

import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:py:)?(?:func|class|meth|mod|attr|data|obj|exc|const):`~?([^`]+)`")


def markdown_docstring(text: str) -> str:
    """Rewrite doctest blocks and Sphinx roles of one docstring (already dedented)."""
    out: list[str] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.lstrip()
        if stripped.startswith(">>>"):
            indent = line[: len(line) - len(stripped)]
            block = []
            while i < len(lines) and lines[i].strip():
                block.append(lines[i][len(indent):] if lines[i].startswith(indent) else lines[i])
                i += 1
            if out and out[-1].strip():
                out.append("")
            out.extend([indent + "```pycon", *(indent + b for b in block), indent + "```"])
            continue
        out.append(_ROLE.sub(r"`\1`", line))
        i += 1
    return "\n".join(out)


class DoctestMarkdown(griffe.Extension):
    """Rewrites every docstring griffe loads into the Markdown the docs theme expects."""

    def on_instance(self, *, node: Any, obj: griffe.Object, agent: Any, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = markdown_docstring(obj.docstring.value)
