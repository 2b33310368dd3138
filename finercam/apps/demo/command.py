"""``finercam demo`` end to end: plan, compute, then the page (figures as they are made, tables,
prose), ``results.json`` and ``tables.md``."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from ... import __version__
from ...progress import progress_bar
from ...report import Report
from ...world.datasets import CLASS_FAMILY
from ..sanity import demo_section
from ..zeroshot_section import add_section
from .compute import Run, explain_all, score_all
from .figures import explorer_view, model_figures, pick, similarity_section
from .plan import GAMMA, NUM_REFERENCES, Model, Plan, check_arguments, load_models, model_inputs, render
from .tables import markdown, model_tables
from .text import PROBE_TEXT, WHAT_FINER_SHOWS, column_definitions, finding, setup_text

__all__ = ["run"]


def run(args) -> int:
    """Build the demo report in ``args.out`` (options of :func:`~finercam.apps.demo.plan.add_arguments`); returns 0.

    Explains the test images with the three embedded models, measures the Table-1-style columns
    and writes every figure and the table as an HTML report. It takes seconds with ``--quick``
    and minutes without, so the example only prepares the arguments:

    >>> import argparse
    >>> from finercam.apps.demo import add_arguments
    >>> p = argparse.ArgumentParser(prog="finercam demo")
    >>> add_arguments(p)
    >>> args = p.parse_args(["--quick"])
    >>> callable(run), args.out
    (True, 'out/demo')
    """
    t0 = time.perf_counter()
    plan = check_arguments(args)
    models = load_models(plan)
    data = render(models, args.seed)
    runs = explain_all(models, data)
    scores = score_all(models, runs, data, plan.steps)
    meta = {"images": plan.images, "score_images": plan.score_images,
            "deletion_images": plan.deletion_images, "seed": args.seed, "steps": plan.steps,
            "probe_images": plan.probe_images, "probe_deletion_images": plan.probe_deletion_images,
            "gamma": GAMMA, "num_references": NUM_REFERENCES, "quick": bool(args.quick),
            "finercam": __version__, "torch": torch.__version__, "_t0": t0}
    path = _write_report(args, plan, models, runs, scores, data, meta)
    print(f"report: {path.resolve()}")
    return 0


def _model_facts(run0: Run, batch) -> tuple[float, np.ndarray]:
    """(accuracy on the test images, share of same-family references by rank)."""
    acc = float(np.mean(run0.logits.argmax(1) == batch.labels))
    fam = np.array([[CLASS_FAMILY[int(r)] == CLASS_FAMILY[int(c)] for r in rr]
                    for rr, c in zip(run0.references, batch.labels, strict=True)])
    return acc, fam.mean(0)


def _model_section(report, model: Model, runs: dict, scores: dict, data: dict, meta: dict,
                   bar) -> None:
    """One model's heading, facts, figures and tables; records its facts in ``meta``."""
    x, batch = model_inputs(model, data)
    run0 = runs[model.key, "gradcam"]
    acc, same_family = _model_facts(run0, batch)
    meta["accuracy"][model.key] = acc
    meta["same_family_references"][model.key] = same_family.tolist()
    meta["models"][model.key] = model.counts
    report.heading(f"{model.label} (layer {model.layer}, test accuracy "
                   f"{100 * acc:.1f}% on these images)")
    if model.key == "probe":
        report.text(PROBE_TEXT.format(n=model.images, d=min(model.deletion_images, model.images)))
    report.text("Share of references from the target's own family, by rank: " +
                ", ".join(f"#{t + 1}: {100 * v:.0f}%" for t, v in enumerate(same_family)))
    rows = pick(batch, run0, 3, model.score_images or model.images)
    model_figures(report, model, runs, x, batch, rows, bar)
    explorer_view(report, model, x, batch, rows)
    model_tables(report, model, scores[model.key], column_definitions(meta["steps"], model))


def _write_report(args, plan: Plan, models, runs, scores, data: dict, meta: dict) -> Path:
    """The HTML report (figures written as they are made), results.json and tables.md."""
    out = Path(args.out)
    report = Report(out, "finercam demo: Finer-CAM on the spot-the-difference bird world")
    with progress_bar(total=len(models) * 4, desc="figures", unit="fig", file=sys.stderr) as bar:
        report.heading("What Finer-CAM shows, and what this run found")
        report.text(WHAT_FINER_SHOWS)
        report.text(finding(scores, models), highlight=True)
        report.text(setup_text(plan, args.seed))
        meta["accuracy"], meta["same_family_references"], meta["models"] = {}, {}, {}
        for model in models:
            _model_section(report, model, runs, scores, data, meta, bar)
    similarity_section(report, models, meta)
    # the randomisation sanity check on the first model (the CNN), a few test images
    x0, _ = model_inputs(models[0], data)
    meta["sanity"] = demo_section(report, models[0].net, models[0].layer, x0[:4 if args.quick else 8],
                                  models[0].label)
    # the tiny dual encoder's section: prompts compared on the same bird world
    meta["zeroshot"] = add_section(report, n=16 if args.quick else 128, seed=args.seed,
                                   classifier=models[0].net, target_layer=models[0].layer,
                                   classifier_label=models[0].label)
    meta["seconds"] = round(time.perf_counter() - meta.pop("_t0"), 1)
    report.heading("Reproduce")
    report.code("finercam demo" + (" --quick" if args.quick else "") +
                f"  # {meta['seconds']} s, finercam {meta['finercam']}, torch {meta['torch']}")
    (out / "results.json").write_text(json.dumps({"meta": meta, "scores": scores}, indent=1))
    (out / "tables.md").write_text(markdown(scores, models))
    return report.write()
