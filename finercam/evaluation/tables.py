"""Tables: one column set, one writer (Markdown, CSV, JSON) for every Table-1-style table.

:data:`COLUMN_KINDS` is the one list of columns: a key (the per-image record's key, the
row's mean), a header and whether lower is better; ``{f}`` stands for each masking fraction of
a run. A new metric column is one entry here plus its scorer in
:mod:`finercam.evaluation.scoring`. A table shows the columns its rows have, in this order.

A row's value for a column is the mean over the images where it is defined,
:math:`\\frac{1}{|D|} \\sum_{i \\in D} m_i` (``math.fsum``, so the order of the images does not
matter), so a pointing column is a hit rate; an image whose value is NaN (the energy share of an
all-zero map, a deletion curve outside the images that have one) is left out of :math:`D`.

>>> [c.header for c in columns((0.05,))][:4]
['Del. ↓', 'RD@0.05 ↑', 'Drop@0.05 ↑', 'Loc. ↑']
>>> print(markdown_table(["Method", "Del. ↓"], [["Grad-CAM", 0.25], ["+ Finer", float("nan")]]))
| Method | Del. ↓ |
|---|---:|
| Grad-CAM | 0.250 |
| + Finer | nan |
"""
from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

__all__ = ["COLUMN_KINDS", "Column", "EvalResult", "columns", "format_cell", "markdown_table",
           "mean_of_defined", "mean_rows", "write_table"]


@dataclass(frozen=True)
class Column:
    """A column: ``key`` of the records and rows, ``header`` as tables show it,
    ``lower_is_better``; ``shown`` False for a column kept in CSV/JSON only."""

    key: str
    header: str
    lower_is_better: bool = False
    shown: bool = True


#: (key, header, lower is better, shown in Markdown): every column of every table, in order.
COLUMN_KINDS: tuple[tuple[str, str, bool, bool], ...] = (
    ("deletion", "Del.", True, True),               # deletion AUC of the target
    ("rd@{f}", "RD@{f}", False, True),              # relative confidence drop (Eq. 10)
    ("drop@{f}", "Drop@{f}", False, True),          # the target's own confidence drop
    ("energy", "Loc.", False, True),                # energy share in the object's box or mask
    ("pointing", "Point.", False, True),            # pointing game on the object's box or mask
    ("disc_energy", "Disc. energy", False, True),   # energy share in the discriminative parts
    ("disc_pointing", "Part PG", False, True),      # pointing game on the discriminative parts
    ("insertion", "Ins.", False, True),             # insertion AUC from the blurred image
    ("road_morf", "ROAD-MoRF", True, True),         # ROAD, most relevant first (change of p_c)
    ("road_lerf", "ROAD-LeRF", False, True),        # ROAD, least relevant first
    ("road", "ROAD", False, True),                  # (LeRF - MoRF) / 2
    ("part_energy", "Part Loc.", False, True),      # energy share in the annotated parts (evaluation.parts)
    ("part_pointing", "Part Point.", False, True),  # pointing game on the annotated parts
    ("deletion_ref", "Del. (compared class)", False, False),
)


def columns(fractions: Iterable[float] = (0.05, 0.1)) -> list[Column]:
    """The columns of :data:`COLUMN_KINDS`, ``{f}`` expanded for each fraction."""
    out = []
    for key, header, lower, shown in COLUMN_KINDS:
        arrow = " \u2193" if lower else " \u2191"
        for f in (fractions if "{f}" in key else (None,)):
            text = f"{f:g}" if f is not None else ""
            out.append(Column(key.replace("{f}", text), header.replace("{f}", text) + arrow,
                              lower, shown))
    return out


def mean_of_defined(values: Iterable[float]) -> float:
    """The mean over the finite values (``math.fsum``); NaN when there is none.

    >>> mean_of_defined([0.5, float("nan"), 0.25])
    0.375
    """
    vals = [float(v) for v in values]
    finite = [v for v in vals if not math.isnan(v)]
    return math.fsum(finite) / len(finite) if finite else float("nan")


def mean_rows(records: list[dict], names: Sequence[str], keys: Sequence[str]) -> list[dict]:
    """One row per setting name: each key's :func:`mean_of_defined` over the records that have
    it, ``<key>_nan`` counting the NaN ones, and ``n`` the images of the row."""
    rows = []
    for name in names:
        row: dict[str, Any] = {"setting": name}
        for key in keys:
            vals = [float(r["metrics"][name][key]) for r in records
                    if name in r["metrics"] and key in r["metrics"][name]]
            if vals:
                row[key] = mean_of_defined(vals)
                nans = sum(math.isnan(v) for v in vals)
                if nans:
                    row[f"{key}_nan"] = nans
        row["n"] = sum(1 for r in records if name in r["metrics"])
        rows.append(row)
    return rows


def format_cell(value) -> str:
    """A table cell: numbers to 3 decimals (``-0.000`` written ``0.000``), NaN ``nan``, None
    empty, text as it is."""
    if value is None:
        return ""
    if isinstance(value, (str, bool, int)):
        return str(value)
    v = float(value)
    return "nan" if math.isnan(v) else f"{round(v, 3) + 0.0:.3f}"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]], *,
                   bold: Iterable[tuple[int, int]] = (), left: int = 1) -> str:
    """A Markdown table; the first ``left`` columns are left-aligned, the others right-aligned;
    the cells at ``bold`` ((row, column) positions) in bold."""
    strong = set(bold)
    lines = ["| " + " | ".join(header) + " |",
             "|" + "---|" * left + "---:|" * (len(header) - left)]
    for i, row in enumerate(rows):
        cells = [f"**{format_cell(v)}**" if (i, j) in strong else format_cell(v)
                 for j, v in enumerate(row)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


@dataclass
class EvalResult:
    """A run's table: ``rows`` (one dict per setting with the means of :func:`mean_rows`),
    the image count, the unreadable images, the configuration and where it was written.

    >>> r = EvalResult(rows=[{"setting": "gradcam", "deletion": 0.25}], n_images=8)
    >>> print(r.markdown())
    | Method | Del. ↓ |
    |---|---:|
    | gradcam | 0.250 |
    <BLANKLINE>
    8 images
    """

    rows: list
    n_images: int
    skipped: list = field(default_factory=list)
    config: dict = field(default_factory=dict)
    out_dir: str | None = None

    def columns(self, shown_only: bool = True) -> list[Column]:
        """The columns this table's rows have."""
        return [c for c in columns(self.config.get("fractions", (0.05, 0.1)))
                if (c.shown or not shown_only) and any(c.key in r for r in self.rows)]

    def markdown(self) -> str:
        cols = self.columns()
        table = markdown_table(["Method"] + [c.header for c in cols],
                               [[r["setting"]] + [r.get(c.key) for c in cols] for r in self.rows])
        tail = f"\n{self.n_images} images"
        if self.skipped:
            tail += f"; {len(self.skipped)} unreadable image(s) skipped"
        return table + tail


def write_table(result: EvalResult, out: Path) -> None:
    """``table.md``, ``table.csv`` (every column, ``repr`` of the means) and ``table.json``
    (rows, image count, unreadable images, configuration; NaN as null) in ``out``."""
    out.mkdir(parents=True, exist_ok=True)  # a run with nothing left to evaluate
    keys = [c.key for c in result.columns(shown_only=False)]
    with open(out / "table.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["setting", *keys, "n"])
        for r in result.rows:
            w.writerow([r["setting"], *[repr(r[k]) if k in r else "" for k in keys], r["n"]])

    def strict(v):  # NaN (a mean over no defined value) is null in standard JSON
        return None if isinstance(v, float) and math.isnan(v) else v

    rows = [{k: strict(v) for k, v in r.items()} for r in result.rows]
    with open(out / "table.json", "w") as f:
        json.dump({"rows": rows, "n_images": result.n_images, "skipped": result.skipped,
                   "config": result.config}, f, indent=1, allow_nan=False)
    with open(out / "table.md", "w") as f:
        f.write(result.markdown() + "\n")
