"""The demo's tables: Table-1-style means per setting, the paired differences Finer - baseline
and the energy share per part, with the columns and the writer of :mod:`finercam.evaluation.tables`."""
from __future__ import annotations

from ...evaluation.tables import Column, columns, markdown_table
from .plan import COLUMN_KEYS, METHODS, NO_SCORECAM, SETTINGS, Model, rendered

#: The columns of the demo's tables, as finercam.evaluation defines them.
COLUMNS: list[Column] = [c for c in columns((0.05, 0.1)) if c.key in COLUMN_KEYS]
HEADERS = [c.header for c in COLUMNS]


def row_labels(counts: dict) -> dict:
    """Method key -> row label; ``counts``: a model's prefixes (:attr:`Model.counts`)."""
    labels = dict(METHODS)
    if 0 < counts["score_images"] < counts["images"]:
        labels["scorecam"] += f" ({counts['score_images']} images)"
    return labels


def subsets(counts: dict) -> str:
    """Which prefixes the deletion and Score-CAM columns cover, for a caption."""
    deletion = f"Del. over the first {min(counts['deletion_images'], counts['images'])}"
    if not counts["score_images"]:
        return f"{deletion}; {NO_SCORECAM}"
    return f"{deletion}, Score-CAM over the first {counts['score_images']}"


def _methods_scored(scores: dict) -> tuple:
    """The (key, label) of METHODS that a model's scores cover."""
    return tuple(m for m in METHODS if m[0] in scores)


def table_rows(scores: dict, setting: str, labels: dict) -> tuple[list, list]:
    """(rows, bold cells) of one setting's table: per method the baseline and "+ Finer", each
    column to 3 decimals and the empty-map count; bold the better of the two where they differ."""
    rows, best = [], []
    for m, (key, _) in enumerate(_methods_scored(scores)):
        s = scores[key][setting]
        for kind in ("base", "finer"):
            rows.append([labels[key] if kind == "base" else "+ Finer"] +
                        [round(s[kind][c.key], 3) + 0.0 for c in COLUMNS] + [s[kind]["empty"]])
        for col, c in enumerate(COLUMNS, start=1):
            b, f = round(s["base"][c.key], 3), round(s["finer"][c.key], 3)
            if b == f:
                continue
            win = (f < b) if c.lower_is_better else (f > b)
            best.append((2 * m + (1 if win else 0), col))
    return rows, best


def diff_rows(scores: dict, labels: dict) -> list:
    """Per method and setting: each column's paired difference, the pairs, the maps' correlation."""
    rows = []
    for key, _ in _methods_scored(scores):
        for setting, short, _ in SETTINGS:
            d = scores[key][setting]["diff"]
            rows.append([labels[key], short] +
                        [f"{d[c.key]['mean']:+.3f} \u00b1 {d[c.key]['se']:.3f}" for c in COLUMNS] +
                        [str(d["energy"]["n"]), f"{scores[key][setting]['map_correlation']:.2f}"])
    return rows


def markdown(scores_by_model: dict, models: list[Model]) -> str:
    """tables.md: every model's setting tables and its paired differences."""
    lines = []
    for model in models:
        counts, labels = model.counts, row_labels(model.counts)
        for setting, _, title in SETTINGS:
            lines.append(f"**{model.label}, {title}**, {counts['images']} test images "
                         f"{rendered(model)}({subsets(counts)})\n")
            rows, best = table_rows(scores_by_model[model.key], setting, labels)
            lines += [markdown_table(["method", *HEADERS, "empty maps"], rows, bold=best), ""]
        lines.append(f"**{model.label}: Finer minus baseline**, paired, mean \u00b1 standard "
                     "error\n")
        lines += [markdown_table(["method", "setting", *HEADERS, "pairs", "map corr."],
                                 diff_rows(scores_by_model[model.key], labels), left=2), ""]
    return "\n".join(lines)


def model_tables(report, model: Model, scores: dict, definitions: list) -> None:
    """The Table-1-style tables, the paired differences and the part shares of one model, after
    the ``definitions`` of their columns."""
    counts = model.counts
    labels = row_labels(counts)
    report.definitions(definitions)
    for setting, _, title in SETTINGS:
        rows, best = table_rows(scores, setting, labels)
        report.table(rows, ["method", *HEADERS, "empty maps"], best=best,
                     caption=f"{model.label}, {title}; {counts['images']} images "
                     f"{rendered(model)}({subsets(counts)})."
                     " Bold: the better of baseline and Finer where they differ at 3 decimals.")
    report.table(diff_rows(scores, labels), ["method", "setting", *HEADERS, "pairs", "map corr."],
                 caption=f"{model.label}: Finer minus baseline, paired over the same "
                 "images, mean \u00b1 standard error (for Del. lower is better); pairs: "
                 "images where neither map is empty (Del.: the deletion prefix); map "
                 "corr.: mean Pearson correlation of the baseline and Finer maps.")
    parts = scores["gradcam"]["parts"]
    names = list(parts["base"])
    kinds = {"base": "Grad-CAM"} | {key: f"Finer, {short}" for key, short, _ in SETTINGS}
    report.table([[label] + [parts[k][p] for p in names] for k, label in kinds.items()],
                 ["Grad-CAM map"] + names,
                 caption=f"{model.label}: mean share of map energy on each part "
                 f"({counts['images']} images).")
