"""A small, self-contained HTML report: one folder with ``index.html`` and its PNG figures.

No external assets (styles inline, images as sibling files, no scripts), so the folder can be
zipped, mailed or opened from disk as it is. Figures are written when added, so a long report never
holds all of them in memory.

>>> import tempfile, numpy as np
>>> from finercam.report import Report
>>> r = Report(tempfile.mkdtemp(), "Finer-CAM on my data")
>>> r.heading("Numbers")
>>> r.table([["Grad-CAM", 0.1234], ["+ Finer", 0.2]], header=["method", "RD@5%"])
>>> r.definitions([("RD@5%", "relative confidence drop after deleting the top 5 % of pixels")])
>>> "<dt>RD@5%</dt>" in r.html()
True
>>> path = r.write()   # .../index.html
"""
from __future__ import annotations

import html
import os
import re
from pathlib import Path
from typing import Sequence

import numpy as np

__all__ = ["Report", "save_png"]

_STYLE = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em auto;
       max-width: 1100px; padding: 0 1em; color: #222; line-height: 1.45; }
h1 { border-bottom: 2px solid #ddd; padding-bottom: .2em; }
h2 { border-bottom: 1px solid #eee; margin-top: 2em; }
figure { margin: 1.2em 0; }
figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: .9em; color: #555; }
table { border-collapse: collapse; margin: 1em 0; font-size: .92em; }
th, td { border: 1px solid #ccc; padding: .25em .6em; text-align: right; }
th { background: #f4f4f4; }
td:first-child, th:first-child { text-align: left; }
td.best { font-weight: bold; }
caption { caption-side: top; text-align: left; padding-bottom: .3em; color: #555; }
pre { background: #f6f6f6; padding: .6em; overflow-x: auto; }
dl { font-size: .9em; color: #333; margin: .6em 0; }
dt { font-weight: bold; float: left; clear: left; margin-right: .5em; }
dd { margin: 0 0 .25em 0; }
p.finding { background: #f3f7fb; border-left: 4px solid #4a7fb5; padding: .5em .8em; }
""".strip()

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def save_png(image, path: str | os.PathLike) -> None:
    """Write a matplotlib Figure, or an (H, W[, 3|4]) uint8 / [0, 1]-float array, as a PNG.

    Float arrays are written as ``round(clip(x, 0, 1) * 255)``, NaN as 0.

    >>> import os, tempfile
    >>> import numpy as np
    >>> from PIL import Image
    >>> path = os.path.join(tempfile.mkdtemp(), "ramp.png")
    >>> save_png(np.array([[0.0, 0.5, 1.0, np.nan]]), path)
    >>> np.asarray(Image.open(path)).tolist()
    [[0, 128, 255, 0]]
    """
    if hasattr(image, "savefig"):
        image.savefig(path, format="png", dpi=110)
        return
    try:
        from PIL import Image
    except ImportError as exc:
        raise ImportError("writing image arrays needs Pillow: pip install finercam[viz]") from exc
    a = np.asarray(image)
    if a.dtype != np.uint8:
        if not np.issubdtype(a.dtype, np.floating):
            raise TypeError(f"image: arrays must be uint8 or float in [0, 1], got {a.dtype}")
        a = np.round(np.clip(np.nan_to_num(a), 0.0, 1.0) * 255.0).astype(np.uint8)
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (3, 4)):
        raise ValueError(f"image: arrays must be (H, W) or (H, W, 3|4), got shape {a.shape}")
    Image.fromarray(a).save(path, format="PNG")


def _check_href(href) -> str:
    if not isinstance(href, str) or not href:
        raise TypeError(f"href must be a non-empty path string, got {href!r}")
    return href


def _cell(value, floatfmt: str) -> str:
    if isinstance(value, (float, np.floating)):
        return "n/a" if not np.isfinite(value) else format(float(value), floatfmt)
    return html.escape(str(value))


class Report:
    """Build a report piece by piece, then :meth:`write` ``index.html``.

    ``out_dir`` is created if needed; figure files are named by the caller (``name`` + ``.png``).
    """

    def __init__(self, out_dir: str | os.PathLike, title: str):
        if not isinstance(title, str):
            raise TypeError(f"title must be a string, got {type(title).__name__}")
        self.out_dir = Path(out_dir)
        if self.out_dir.exists() and not self.out_dir.is_dir():
            raise ValueError(f"out_dir exists and is not a folder: {self.out_dir}")
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.title = title
        self._parts: list[str] = []
        self._names: set[str] = set()

    def heading(self, text: str, level: int = 2) -> None:
        """A section heading (``level`` 2 to 4; the title is the only level 1)."""
        if level not in (2, 3, 4):
            raise ValueError(f"level must be 2, 3 or 4, got {level!r}")
        self._parts.append(f"<h{level}>{html.escape(text)}</h{level}>")

    def text(self, text: str, *, highlight: bool = False) -> None:
        """A paragraph of plain text (escaped; blank lines start new paragraphs); ``highlight``
        sets it off as a finding."""
        cls = ' class="finding"' if highlight else ""
        for para in str(text).strip().split("\n\n"):
            self._parts.append(f"<p{cls}>{html.escape(para.strip())}</p>")

    def definitions(self, items: Sequence[tuple[str, str]]) -> None:
        """A list of terms and what they mean (``(term, meaning)`` pairs), e.g. a table's
        columns, placed where the table appears."""
        rows = [f"<dt>{html.escape(str(term))}</dt><dd>{html.escape(str(text))}</dd>"
                for term, text in items]
        self._parts.append("<dl>\n" + "\n".join(rows) + "\n</dl>")

    def link(self, text: str, href: str) -> None:
        """A paragraph holding one link to a file beside the report (``href`` relative to it).

        >>> import tempfile
        >>> r = Report(tempfile.mkdtemp(), "t")
        >>> r.link("interactive view", "bird.html")
        >>> r.html().count('<a href="bird.html">interactive view</a>')
        1
        """
        _check_href(href)
        self._parts.append(f'<p><a href="{html.escape(href, quote=True)}">{html.escape(str(text))}</a></p>')

    def embed(self, href: str, caption: str, height: int = 560) -> None:
        """A page beside the report (``href`` relative to it) shown inside this one, with a link to
        open it alone; e.g. the interactive view of a few images.

        >>> import tempfile
        >>> r = Report(tempfile.mkdtemp(), "t")
        >>> r.embed("cnn-explore.html", "Interactive view")
        >>> '<iframe src="cnn-explore.html"' in r.html()
        True
        """
        src = html.escape(_check_href(href), quote=True)
        self._parts.append(f'<figure><iframe src="{src}" title="{html.escape(caption, quote=True)}" '
                           f'style="width:100%;height:{int(height)}px;border:1px solid #ddd"></iframe>'
                           f'<figcaption>{html.escape(caption)} (<a href="{src}">open alone</a>)'
                           f'</figcaption></figure>')

    def code(self, text: str) -> None:
        """A preformatted block, e.g. the command that produced the report."""
        self._parts.append(f"<pre>{html.escape(str(text))}</pre>")

    def figure(self, image, name: str, caption: str | None = None) -> Path:
        """Write a matplotlib Figure or an (H, W[, 3|4]) uint8/[0, 1]-float array as ``name``.png
        and place it here; returns the PNG's path."""
        if not isinstance(name, str) or not _NAME.match(name) or name.endswith(".png"):
            raise ValueError(f"name must be a plain file stem (letters, digits, _ . -), got {name!r}")
        if name in self._names:
            raise ValueError(f"name {name!r} is already used in this report")
        path = self.out_dir / f"{name}.png"
        save_png(image, path)
        self._names.add(name)
        alt = html.escape(caption or name, quote=True)
        cap = f"<figcaption>{html.escape(caption)}</figcaption>" if caption else ""
        self._parts.append(f'<figure><img src="{html.escape(path.name, quote=True)}" '
                           f'alt="{alt}">{cap}</figure>')
        return path

    def table(self, rows: Sequence[Sequence], header: Sequence[str], *,
              caption: str | None = None, floatfmt: str = ".3f",
              best: Sequence[tuple[int, int]] = ()) -> None:
        """An HTML table; floats formatted with ``floatfmt`` (NaN shows as n/a); cells listed in
        ``best`` as (row, column) are bold."""
        header = list(header)
        if any(len(r) != len(header) for r in rows):
            raise ValueError(f"rows must each have {len(header)} cells, like header")
        bold = set(best)
        out = ["<table>"]
        if caption:
            out.append(f"<caption>{html.escape(caption)}</caption>")
        out.append("<tr>" + "".join(f"<th>{html.escape(str(h))}</th>" for h in header) + "</tr>")
        for i, row in enumerate(rows):
            cells = []
            for j, v in enumerate(row):
                cls = ' class="best"' if (i, j) in bold else ""
                cells.append(f"<td{cls}>{_cell(v, floatfmt)}</td>")
            out.append("<tr>" + "".join(cells) + "</tr>")
        out.append("</table>")
        self._parts.append("\n".join(out))

    def html(self) -> str:
        """The page as a string."""
        body = "\n".join(self._parts)
        t = html.escape(self.title)
        return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
                f"<title>{t}</title>\n<style>\n{_STYLE}\n</style>\n</head>\n<body>\n"
                f"<h1>{t}</h1>\n{body}\n</body>\n</html>\n")

    def write(self) -> Path:
        """Write ``index.html`` (figures are already on disk) and return its path."""
        path = self.out_dir / "index.html"
        path.write_text(self.html(), encoding="utf-8")
        return path
