"""A griffe extension for the docs build: the package's docstrings are reST-flavoured prose with
doctest examples; Markdown would read ``>>>`` as nested block quotes and print Sphinx roles
literally. Docstrings stay untouched in the source; only the rendered copy is rewritten:

* each doctest block (a ``>>>`` line and its continuation/output lines, up to a blank line)
  becomes a fenced ``pycon`` code block;
* ``:func:`x```, ``:class:`x``` and the other Sphinx roles become inline code ``x``;
* ``:math:`x``` becomes ``\\(x\\)`` and a ``.. math::`` directive (its indented block) becomes a
  ``\\[ ... \\]`` block, which pymdownx.arithmatex hands to MathJax (without this the formulas
  would print as ``:math:`` followed by code);
* in a NumPy-style section (``Parameters`` underlined by dashes) each ``name: text`` entry becomes
  a list item, so that the entries do not run together into one paragraph;
* instance attributes without a docstring (``self.x = x`` in ``__init__``) are left out of the
  pages: they repeat the constructor's parameters.
"""
from __future__ import annotations

import re
from typing import Any

import griffe

_SECTION = re.compile(r"^(Parameters|Returns|Attributes|Raises|Yields|Other Parameters)\s*$")
_PROSE_SECTION = re.compile(r"^(Examples?|Notes?|See Also|References|Warnings?)\s*$")
_ENTRY = re.compile(r"^(\*{0,2}\w+)\s*(?:\(([^)]*)\))?\s*:\s*(.*)$")
_ROLE = re.compile(r":(?:py:)?(?:func|class|meth|mod|attr|data|obj|exc|const):`~?([^`]+)`")
_MATH = re.compile(r":math:`([^`]+)`")


def _inline(text: str) -> str:
    """Sphinx roles -> inline code, ``:math:`` -> arithmatex inline math."""
    return _ROLE.sub(r"`\1`", _MATH.sub(lambda m: "\\(" + m.group(1) + "\\)", text))


def markdown_docstring(text: str) -> str:
    """Rewrite doctest blocks and Sphinx roles of one docstring (already dedented)."""
    out: list[str] = []
    lines = text.splitlines()
    i = 0
    section = False
    while i < len(lines):
        line = lines[i]
        stripped = line.lstrip()
        if _SECTION.match(line) and i + 1 < len(lines) and set(lines[i + 1].strip()) == {"-"}:
            out.extend([f"**{line.strip()}**", ""])
            section = True
            i += 2
            continue
        if _PROSE_SECTION.match(line) and i + 1 < len(lines) and set(lines[i + 1].strip()) == {"-"}:
            out.extend([f"**{line.strip()}**", ""])
            i += 2
            continue
        if section:
            entry = _ENTRY.match(line)
            if entry:
                name, kind, rest = entry.groups()
                kind = f" ({kind})" if kind else ""
                out.append(f"- `{name}`{kind}: " + _inline(rest))
                i += 1
                continue
            if not line.strip():
                section = False
            elif line.startswith((" ", "\t")):
                out.append("  " + _inline(line.strip()))
                i += 1
                continue
            else:
                section = False
        if stripped.startswith(".. math::"):
            # the directive's body: the following lines indented deeper (blank lines inside kept)
            indent = len(line) - len(stripped)
            body = [stripped[len(".. math::"):].strip()]
            i += 1
            while i < len(lines) and (not lines[i].strip()
                                      or len(lines[i]) - len(lines[i].lstrip()) > indent):
                body.append(lines[i].strip())
                i += 1
            if out and out[-1].strip():
                out.append("")
            out.extend([line[:indent] + "\\[", *(line[:indent] + b for b in body if b),
                        line[:indent] + "\\]", ""])
            continue
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
        out.append(_inline(line))
        i += 1
    return "\n".join(out)


class DoctestMarkdown(griffe.Extension):
    """Rewrites every docstring griffe loads into the Markdown the docs theme expects."""

    def on_instance(self, *, node: Any, obj: griffe.Object, agent: Any, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = markdown_docstring(obj.docstring.value)

    def on_class_members(self, *, node: Any, cls: griffe.Class, agent: Any, **kwargs: Any) -> None:
        for name, member in list(cls.members.items()):
            if (not member.is_alias and member.is_attribute and "instance-attribute" in member.labels
                    and member.docstring is None):
                del cls.members[name]
