"""The zero-shot section of the demo report: prompt alone vs prompt against "a bird" (the paper's
Fig. 2 and 12, measured), and the faithfulness examination's aggregate (Sec. 4.3, App. A.2)."""
from __future__ import annotations

from typing import Any, Dict, Optional

__all__ = ["add_section"]


def add_section(report: Any, n: int = 128, seed: int = 0, classifier: Optional[Any] = None,
                target_layer: Optional[str] = None, classifier_label: str = "CNN",
                gamma: float = 0.6) -> Dict[str, Any]:
    """Compute the zero-shot numbers on ``n`` test images and add them to ``report`` (a
    :class:`finercam.report.Report`): a table of energy shares per part, a panel figure, and the
    faithfulness aggregate of ``classifier`` (default: the embedded CNN). Returns the numbers.

    The energy share of a map :math:`L` inside a mask :math:`M` is
    :math:`\\sum_{x \\in M} L(x) / \\sum_x L(x)` (a uniform map scores the mask's area). A part's
    prompt is explained alone (the base method on :math:`y_\\text{prompt}`) and against "a bird"
    (Finer: :math:`y_\\text{prompt} - \\gamma\\, y_\\text{a bird}`), see
    :func:`finercam.world.zeroshot.study.prompt_localisation`. The faithfulness aggregate
    (:func:`finercam.world.zeroshot.study.faithfulness_study`) compares the classifier's Finer map of
    class c against its nearest-logit class d with the zero-shot maps of the attributes c has and
    d lacks: Pearson correlation and IoU of the top-10% pixels. When the classifier's weights are
    missing, the faithfulness part is replaced by a sentence saying so and left out of the
    returned numbers.

    >>> import tempfile
    >>> from finercam.report import Report
    >>> report = Report(tempfile.mkdtemp(), "zero-shot")
    >>> numbers = add_section(report, n=4)
    >>> sorted(numbers), numbers["prompt_localisation"]["n"], numbers["faithfulness"]["images"]
    (['faithfulness', 'prompt_localisation'], 4, 4)
    >>> shares = numbers["prompt_localisation"]["all"]
    >>> all(0.0 <= shares[k] <= 1.0 for k in ("alone", "vs_bird", "area"))
    True
    >>> path = report.write()               # index.html with the tables and the panel figure
    """
    from ..world.zeroshot.dual_encoder import load_dual_encoder
    from ..world.zeroshot.study import faithfulness_study, prompt_localisation

    model = load_dual_encoder()
    loc = prompt_localisation(model, n=n, seed=seed, gamma=gamma, examples=4)
    _prompt_table(report, loc, n, gamma)
    if loc["examples"]:
        _prompt_figure(report, loc["examples"])
    out: Dict[str, Any] = {"prompt_localisation": {k: v for k, v in loc.items() if k != "examples"}}
    try:
        f = faithfulness_study(classifier, target_layer, model, n=n, seed=seed, gamma=gamma)
    except (FileNotFoundError, ImportError) as e:  # no classifier weights: the section says so
        report.text(f"Faithfulness examination skipped: {e}")
        return out
    _faithfulness_table(report, f, classifier_label)
    out["faithfulness"] = {k: v for k, v in f.items() if k != "example"}
    return out


def _prompt_table(report: Any, loc: Dict[str, Any], n: int, gamma: float) -> None:
    """The energy shares per part, the prompt alone against the prompt compared with "a bird"."""
    report.heading("Zero-shot: a part's prompt alone and compared with \u201ca bird\u201d")
    report.text(
        f"The tiny dual encoder shipped with the package (finercam.zeroshot), {n} test images. For "
        "every visible part, the prompt naming its colour (\u201ca black wing\u201d) is explained "
        f"alone (Grad-CAM of the prompt's logit) and against \u201ca bird\u201d (Finer, gamma = {gamma}); "
        "both maps come from one call. Score: the share of the map's energy inside that part's "
        "ground-truth mask (a uniform map scores the mask's area), and inside the whole bird.")
    rows = []
    for part, s in list(loc["parts"].items()) + [("all parts", loc["all"])]:
        rows.append([part, s["alone"], s["vs_bird"], s["area"], s["bird_alone"], s["bird_vs_bird"], s["count"]])
    # bold the better of the two maps where they differ beyond the table's rounding
    best = [(i, 2 if r[2] > r[1] else 1) for i, r in enumerate(rows) if abs(r[2] - r[1]) > 5e-4]
    report.table(rows, ["part", "prompt alone", "vs \u201ca bird\u201d", "mask area", "bird: alone",
                        "bird: vs \u201ca bird\u201d", "images"], best=best,
                 caption="Mean energy share inside the part's mask (and inside the whole bird). "
                         "Bold: the better of the two maps.")


def _prompt_figure(report: Any, examples: list) -> None:
    """One row per example: the image, the part's mask, the prompt alone, the prompt vs "a bird"."""
    from .. import viz

    cells, titles = [], []
    for ex in examples:
        img = ex["image"]
        cells.append([img, ex["mask"].astype("float32"), viz.overlay(img, ex["alone"]),
                      viz.overlay(img, ex["vs_bird"])])
        titles.append(["image", f"{ex['part']} mask", f"\u201c{ex['prompt']}\u201d {ex['alone_share']:.2f}",
                       f"vs \u201ca bird\u201d {ex['vs_bird_share']:.2f}"])
    report.figure(viz.panel_grid(cells, titles=titles, cell_size=1.6,
                                 suptitle="prompt alone vs prompt compared with \u201ca bird\u201d"),
                  "zeroshot-prompts", "Each row: image, the part's mask, the prompt alone, the "
                  "prompt against \u201ca bird\u201d (titles: energy share inside the mask).")


def _faithfulness_table(report: Any, f: Dict[str, Any], classifier_label: str) -> None:
    """The classifier's Finer maps against the zero-shot maps of the discriminative attributes."""
    report.heading("Faithfulness examination (Sec. 4.3, App. A.2)")
    report.text(
        f"For each image of class c ({f['images']} images): d = the {classifier_label}'s nearest-logit "
        f"class (a sibling for {100 * f['sibling_share']:.0f}% of images); the {classifier_label}'s "
        "Finer-Grad-CAM map of c against d; the zero-shot maps of the (up to 3) attributes c has and "
        "d lacks, each against \u201ca bird\u201d. Agreement: Pearson correlation and IoU of the top "
        "10% pixels, against the mean of the attribute maps (combined) and the best attribute. "
        "Control: the same against the map of the body-colour prompt, a trait siblings share.")
    a, c, g = f["attributes"], f["control_body"], f["region_share"]
    report.table([["discriminative attributes (combined)", a["combined_correlation"], a["combined_overlap"]],
                  ["discriminative attributes (best one)", a["best_correlation"], a["best_overlap"]],
                  ["control: body colour", c["correlation"], c["overlap"]]],
                 ["zero-shot maps", "correlation", "top-10% IoU"],
                 caption=f"Agreement with the {classifier_label}'s Finer maps. Energy share inside the "
                         f"ground-truth discriminative region: {classifier_label} {g['classifier']:.3f}, "
                         f"zero-shot attributes {g['zero_shot']:.3f}.")
