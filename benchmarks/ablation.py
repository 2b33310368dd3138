"""Which gamma, T, reference rule, aggregation and target layer localise the differing parts best?

The paper chose gamma 0.6 and three nearest-logit references averaged before the ReLU on its own
data (linear probes on frozen CLIP / DINOv2). The bird world knows the ground truth: the parts
whose attributes differ between the target and its references
(:func:`finercam.world.datasets.discriminative_mask`). For the three embedded models (the CNN, the
ViT and the linear probe on a frozen ImageNet EfficientNet-Lite0) and Grad-CAM, Layer-CAM (and
Score-CAM on the first ``--score-n`` images, CNN and ViT at their default layers), this script
explains ``--n`` fresh test images with their true labels once per (model, layer, method, image
batch), storing the weights of every class, and scores every setting by ``Explanation.recombine``:

* every gamma in :data:`GAMMAS` with T = 1 and T = 3 (nearest-logit references, ``"mean"``);
* around the defaults (gamma 0.6): T = 2; the rules ``top_predicted`` and ``weight_similarity``
  (T = 1 and 3); the aggregations ``max`` and ``mean_after_relu`` (T = 3).

Columns of ``DIR/ablation.json`` (one row per model, layer, method, gamma, T, rule, aggregate),
each a mean over the images, the ``_se`` the standard error of the paired difference against the
base method (gamma = 0) on the same images and the same ground truth, ``_base`` the base method's
mean:

* ``disc_energy``: share of the map's energy inside the discriminative region of the row's
  references; ``part_pg``: its pointing game; ``box_energy``: share inside the bird's box;
* ``rd5``: relative confidence drop (Eq. 10) after masking the top 5 % pixels, target against
  the row's first reference, over the first ``--rd-n`` images (``--probe-rd-n`` for the probe,
  whose forward costs most);
* ``map_corr``: the Pearson correlation with the base map (1: Finer changed nothing).

Every map is scored by :mod:`finercam.evaluation` (the runner's and the demo's scorers); the
tables use its column headers (``disc_energy``, ``part_pg``, ``box_energy`` and ``rd5`` are its
``Disc. energy``, ``Part PG``, ``Loc.`` and ``RD@0.05``; the JSON keeps its keys, which name the
files of the committed figures).

    python benchmarks/ablation.py --seed 0 --n 200 --out out/ablation

also writes ``DIR/curves_<metric>.png`` (the gamma curves per model and layer) and
``DIR/similarity.png`` (the paper's Fig. 1: sorted classifier-weight similarity of the three
models). Needs nothing but the repository and the ``imagenet`` extra (for the probe).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from finercam import FinerCAM, metrics
from finercam.diagnose import map_correlation
from finercam.evaluation.scoring import region_scores, score_maps
from finercam.evaluation.tables import columns, mean_of_defined
from finercam.references import rank_classes
from finercam.world import datasets, models

GAMMAS = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0, 1.5, 2.0)
DEFAULT_GAMMA = 0.6
#: Per model: the default target layer first, then earlier ones.
LAYERS = {"cnn": ("block3", "block2"), "vit": ("blocks.3.norm1", "blocks.2.norm1"),
          "probe": ("_bn1", "_blocks.12", "_blocks.10")}
METHODS = ("gradcam", "layercam")
SCORE_MODELS = ("cnn", "vit")
METRICS = ("disc_energy", "part_pg", "box_energy", "rd5", "map_corr")
#: The headers of finercam.evaluation's columns for the metrics of this study's tables.
HEADERS = {c.key: c.header.rstrip(" \u2191\u2193") for c in columns((0.05,))}


def settings() -> list[dict]:
    """The (gamma, T, rule, aggregate) rows: every gamma at T = 1 and 3, and the axes around the
    defaults (T = 2, the other two rules, the other two aggregations)."""
    rows = [dict(gamma=g, T=T, rule="nearest_logit", aggregate="mean") for g in GAMMAS for T in (1, 3)]
    rows.append(dict(gamma=DEFAULT_GAMMA, T=2, rule="nearest_logit", aggregate="mean"))
    rows += [dict(gamma=DEFAULT_GAMMA, T=T, rule=r, aggregate="mean")
             for r in ("top_predicted", "weight_similarity") for T in (1, 3)]
    rows += [dict(gamma=DEFAULT_GAMMA, T=3, rule="nearest_logit", aggregate=a) for a in ("max", "mean_after_relu")]
    return rows


def load_models(names) -> dict:
    """name -> eval-mode model; the probe from :mod:`finercam.world.models.probe`."""
    from finercam.world.models.probe import load_probe

    return {n: (load_probe() if n == "probe" else models.load(n)) for n in names}


def classifier_weight(net) -> np.ndarray:
    """The last nn.Linear's weight (C, D), the classifier whose rows the rules and Fig. 1 compare."""
    return [m for m in net.modules() if isinstance(m, torch.nn.Linear)][-1].weight.detach().double().numpy()


def explain(net, layer: str, method: str, x: torch.Tensor, labels: np.ndarray, chunk: int) -> list:
    """One FinerCAM call per image chunk, all 15 non-target classes stored: the Explanations."""
    cam = FinerCAM(net, layer, method=method, gamma=DEFAULT_GAMMA, num_references=3,
                   candidates=datasets.NUM_CLASSES - 1)
    return [cam(x[lo:lo + chunk], targets=torch.as_tensor(labels[lo:lo + chunk])) for lo in range(0, len(x), chunk)]


def recombined(exps: list, refs: np.ndarray, gamma: float, aggregate: str) -> np.ndarray:
    """The maps (N, H, W) of every chunk recombined with ``refs`` (N, T), gamma and aggregate."""
    out, lo = [], 0
    for e in exps:
        n = len(e.targets)
        out.append(e.recombine(gamma=gamma, references=refs[lo:lo + n], aggregate=aggregate).maps)
        lo += n
    return np.concatenate(out)


def _mean_se(finer: np.ndarray, base: np.ndarray) -> tuple[float, float, float, float]:
    """Means of finer and base over images where both are defined, and the paired difference's
    standard error; NaN entries (an all-zero map has no energy share) are skipped."""
    ok = np.isfinite(finer) & np.isfinite(base)
    d = finer[ok] - base[ok]
    if d.size == 0:
        return (float("nan"),) * 4
    se = float(d.std(ddof=1) / np.sqrt(d.size)) if d.size > 1 else float("nan")
    return mean_of_defined(finer[ok]), se, mean_of_defined(base[ok]), float(d.mean())


def _rd5(net, x, maps, labels, compare_to) -> np.ndarray:
    """RD@0.05 per image, scored by finercam.evaluation (NaN when no image is asked for)."""
    if len(x) == 0:
        return np.full(1, np.nan)
    return score_maps(net, x, maps, labels, compare_to, fractions=(0.05,), steps=None)["rd@0.05"]


def _region_values(maps: np.ndarray, base: np.ndarray, region: np.ndarray) -> dict:
    """Energy share and pointing game in the discriminative region, of the row's maps and of
    the base maps (finercam.evaluation's disc_energy and disc_pointing)."""
    f = region_scores(maps, region, prefix="disc_")
    b = region_scores(base, region, prefix="disc_")
    return {"disc_energy": (f["disc_energy"], b["disc_energy"]),
            "part_pg": (f["disc_pointing"].astype(float), b["disc_pointing"].astype(float))}


def score_rows(net, exps: list, x, batch, weight, rd_n: int) -> list[dict]:
    """Every row of :func:`settings` for one (model, layer, method): means, paired SEs, n."""
    labels = batch.labels
    logits = np.concatenate([e.logits for e in exps])
    ranks = {r: rank_classes(logits, labels, r, weight) for r in ("nearest_logit", "top_predicted", "weight_similarity")}
    base = np.concatenate([e.baseline().maps for e in exps])
    boxes = metrics.boxes_to_masks(batch.boxes, x.shape[-2:])
    base_box = region_scores(base, boxes)["energy"]
    base_rd: dict = {}
    rows = []
    for s in settings():
        refs = ranks[s["rule"]][:, :s["T"]]
        maps = base if s["gamma"] == 0 else recombined(exps, refs, s["gamma"], s["aggregate"])
        region = np.stack([datasets.discriminative_mask(batch.parts[i], int(labels[i]), refs[i].tolist())
                           for i in range(len(labels))])
        first = refs[:, 0]
        key = first[:rd_n].tobytes()
        if key not in base_rd:
            base_rd[key] = _rd5(net, x[:rd_n], base[:rd_n], labels[:rd_n], first[:rd_n])
        rd = base_rd[key] if s["gamma"] == 0 else _rd5(net, x[:rd_n], maps[:rd_n], labels[:rd_n], first[:rd_n])
        values = {**_region_values(maps, base, region),
                  "box_energy": (region_scores(maps, boxes)["energy"], base_box),
                  "rd5": (rd, base_rd[key])}
        row = dict(s, n=len(labels), rd_n=int(min(rd_n, len(labels))))
        for k, (f, b) in values.items():
            row[k], row[k + "_se"], row[k + "_base"], row[k + "_diff"] = _mean_se(f, b)
        row["map_corr"] = mean_of_defined(map_correlation(base, maps))
        rows.append(row)
    return rows


def diagnosis_medians(exps: list, weight: np.ndarray) -> dict:
    """Medians over the images of :func:`finercam.diagnose.diagnose` at the paper's defaults and
    with the nearest reference alone (gamma 0.6): why the maps changed as much as they did."""
    out = {}
    for label, pick in (("T=3", None), ("T=1", slice(0, 1))):
        ds = [(e if pick is None else e.recombine(references=e.references[:, pick])).diagnose(weight) for e in exps]
        cat = {k: np.concatenate([getattr(d, k) for d in ds]) for k in
               ("map_correlation", "reference_mass", "weight_cosine", "logit_gap")}
        out[label] = {k: round(float(np.nanmedian(v)), 3) for k, v in cat.items()}
    return out


def run_model(name: str, net, args) -> tuple[list[dict], float, dict]:
    """Every (layer, method) of one model: its rows and its accuracy on the images. The probe's
    images are rendered at its input size (the same birds, sharper), the others' at 96 x 96."""
    batch = datasets.generate(args.n, seed=args.seed, split="test", size=getattr(net, "input_size", 96))
    x = torch.from_numpy(batch.images)
    weight = classifier_weight(net)
    rd_n = args.probe_rd_n if name == "probe" else args.rd_n
    layers = LAYERS[name] if args.layers == "all" else LAYERS[name][:1]
    rows, accuracy, why = [], float("nan"), {}
    for layer in layers:
        methods = METHODS + (("scorecam",) if name in SCORE_MODELS and layer == LAYERS[name][0]
                             and args.score_n > 0 else ())
        for method in methods:
            t1 = time.time()
            n = args.score_n if method == "scorecam" else args.n
            sub = datasets.Batch(batch.images[:n], batch.labels[:n], batch.boxes[:n], batch.parts[:n])
            exps = explain(net, layer, method, x[:n], sub.labels, args.chunk)
            if method == "gradcam" and layer == layers[0]:
                accuracy = float(np.mean(np.concatenate([e.logits for e in exps]).argmax(1) == sub.labels))
                why = diagnosis_medians(exps, weight)
            for row in score_rows(net, exps, x[:n], sub, weight, min(rd_n, n)):
                rows.append(dict(model=name, layer=layer, method=method, **row))
            print(f"{name:5s} {layer:15s} {method:9s} n={n}: {time.time() - t1:.0f} s", flush=True)
    return rows, accuracy, why


def run(args, previous: dict | None = None) -> dict:
    """The whole study; returns ``{"meta": ..., "rows": [...]}``. With ``previous`` (an earlier
    result), its rows of the other models are kept."""
    meta = {"seed": args.seed, "n": args.n, "score_n": args.score_n, "rd_n": args.rd_n,
            "probe_rd_n": args.probe_rd_n, "threads": torch.get_num_threads(), "accuracy": {}, "wall_s": {},
            "diagnosis": {}}
    rows = []
    if previous is not None:
        keep = [m for m in previous["meta"]["accuracy"] if m not in args.models]
        rows = [r for r in previous["rows"] if r["model"] in keep]
        for k in ("accuracy", "wall_s", "diagnosis"):
            meta[k].update({m: previous["meta"].get(k, {}).get(m) for m in keep})
    for name, net in load_models(args.models).items():
        t0 = time.time()
        model_rows, meta["accuracy"][name], meta["diagnosis"][name] = run_model(name, net, args)
        rows += model_rows
        meta["wall_s"][name] = round(time.time() - t0, 1)
    return {"meta": meta, "rows": rows}


# --- tables ---------------------------------------------------------------------------------------


def _pm(r: dict, metric: str) -> str:
    return f"{r[metric + '_diff']:+.3f} ± {r[metric + '_se']:.3f}"


def _default(rows: list[dict], **keys) -> dict:
    return _select(rows, gamma=DEFAULT_GAMMA, T=3, rule="nearest_logit", aggregate="mean", **keys)[0]


def markdown(result: dict) -> str:
    """The tables of docs/benchmark.md's ablation section, from ``ablation.json``."""
    rows = result["rows"]
    disc, pg, loc, rd = (HEADERS[k] for k in ("disc_energy", "disc_pointing", "energy", "rd@0.05"))
    out = [f"| model | layer | method | {disc} base | Δ at the defaults | best (gamma, T) "
           f"| Δ there | {pg} Δ there | {loc} Δ there | {rd} Δ there | map corr. there |",
           "|---|---|---|---:|---:|---|---:|---:|---:|---:|---:|"]
    for run in dict.fromkeys((r["model"], r["layer"], r["method"]) for r in rows):
        sel = _select(rows, model=run[0], layer=run[1], method=run[2], rule="nearest_logit", aggregate="mean")
        best = max((r for r in sel if r["T"] in (1, 3)), key=lambda r: r["disc_energy_diff"])
        d = _default(rows, model=run[0], layer=run[1], method=run[2])
        out.append(f"| {run[0]} | `{run[1]}` | {run[2]} (n = {d['n']}) | {d['disc_energy_base']:.3f} | "
                   f"{_pm(d, 'disc_energy')} | ({best['gamma']:g}, {best['T']}) | {_pm(best, 'disc_energy')} | "
                   f"{_pm(best, 'part_pg')} | {_pm(best, 'box_energy')} | {_pm(best, 'rd5')} | "
                   f"{best['map_corr']:.2f} |")
    out += ["", f"Gamma sweep, Grad-CAM, each model's default layer: {disc} Δ (Finer - base) "
            "and in brackets the map correlation with the base map.", "",
            "| model | T | " + " | ".join(f"γ = {g:g}" for g in GAMMAS[1:]) + " |",
            "|---|---|" + "---:|" * (len(GAMMAS) - 1)]
    for name in dict.fromkeys(r["model"] for r in rows):
        layer = LAYERS[name][0]
        for T in (1, 3):
            sel = sorted(_select(rows, model=name, layer=layer, method="gradcam", T=T, rule="nearest_logit",
                                 aggregate="mean"), key=lambda r: r["gamma"])[1:]
            out.append(f"| {name} | {T} | " + " | ".join(
                f"{r['disc_energy_diff']:+.3f} ({r['map_corr']:.2f})" for r in sel) + " |")
    out += ["", "Around the defaults (gamma 0.6), Grad-CAM, default layers: reference rule, T and "
            f"aggregation (the paper's Table 3 axes); {disc} Δ ± SE, {rd} Δ ± SE, map corr.", "",
            f"| model | rule | T | aggregate | {disc} Δ | {rd} Δ | map corr. |", "|---|---|---:|---|---:|---:|---:|"]
    for name in dict.fromkeys(r["model"] for r in rows):
        for r in _select(rows, model=name, layer=LAYERS[name][0], method="gradcam", gamma=DEFAULT_GAMMA):
            out.append(f"| {name} | {r['rule']} | {r['T']} | {r['aggregate']} | {_pm(r, 'disc_energy')} | "
                       f"{_pm(r, 'rd5')} | {r['map_corr']:.2f} |")
    return "\n".join(out) + "\n"


# --- figures ------------------------------------------------------------------------------------


def _select(rows: list[dict], **keys) -> list[dict]:
    return [r for r in rows if all(r[k] == v for k, v in keys.items())]


def plot_curves(result: dict, out: Path) -> list[Path]:
    """Per metric, one figure with a panel per model: the paired gain over the base method
    (``<metric>_diff``; for ``map_corr`` the correlation itself) against gamma, one colour per
    (layer, method), solid T = 1, dashed T = 3, the band the paired standard error; the paper's
    gamma 0.6 dotted."""
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    rows = result["rows"]
    names = list(dict.fromkeys(r["model"] for r in rows))
    colours = colormaps["tab10"].colors
    written = []
    for metric in METRICS:
        key = metric if metric == "map_corr" else metric + "_diff"
        fig = Figure(figsize=(4.3 * len(names), 3.5), layout="constrained")
        axes = fig.subplots(1, len(names), squeeze=False)[0]
        for ax, name in zip(axes, names, strict=True):
            combos = [(l, m) for l in dict.fromkeys(r["layer"] for r in _select(rows, model=name))
                      for m in ("gradcam", "layercam")]
            for colour, (layer, method) in zip(colours, combos, strict=False):  # combos <= colours
                for T, style in ((1, "-"), (3, "--")):
                    sel = sorted(_select(rows, model=name, layer=layer, method=method, T=T,
                                         rule="nearest_logit", aggregate="mean"), key=lambda r: r["gamma"])
                    g = np.array([r["gamma"] for r in sel])
                    m = np.array([r[key] for r in sel])
                    ax.plot(g, m, style, color=colour, marker="o", ms=2.5, lw=1.2,
                            label=f"{method} @ {layer} T={T}")  # a label may not start with "_"
                    if metric != "map_corr":
                        se = np.array([r[metric + "_se"] for r in sel], float)
                        ax.fill_between(g, m - se, m + se, color=colour, alpha=0.12, lw=0)
            ax.axvline(DEFAULT_GAMMA, color="0.5", lw=0.8, ls=":")
            ax.axhline(1.0 if metric == "map_corr" else 0.0, color="0.6", lw=0.5)
            ax.set_title(name, fontsize=9)
            ax.set_xlabel("gamma", fontsize=8)
            ax.set_ylabel(key if metric == "map_corr" else f"{metric}: Finer - base", fontsize=8)
            ax.tick_params(labelsize=7)
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=5.5, frameon=False, ncol=2)
        fig.suptitle(f"{metric}: nearest-logit references, 'mean' aggregation; band: paired SE "
                     f"(n = {result['meta']['n']}, seed {result['meta']['seed']})", fontsize=9)
        path = out / f"curves_{metric}.png"
        fig.savefig(path, dpi=110)
        written.append(path)
    return written


def plot_similarity(nets: dict, out: Path) -> Path:
    """The paper's Fig. 1 (left) for our models: sorted classifier-weight cosine similarity."""
    from finercam import viz

    curves = {name: viz.similarity_curve(classifier_weight(net)) for name, net in nets.items()}
    fig = viz.plot_similarity_curve(curves, title="sorted cosine similarity of classifier weights")
    fig.set_size_inches(4.6, 3.2)
    path = out / "similarity.png"
    fig.savefig(path, dpi=120)
    (out / "similarity.json").write_text(json.dumps(
        {k: {"mean": [round(float(v), 4) for v in m], "std": [round(float(v), 4) for v in s]}
         for k, (m, s) in curves.items()}, indent=1))
    return path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n", type=int, default=200, help="test images (Grad-CAM, Layer-CAM)")
    p.add_argument("--score-n", type=int, default=32, help="the first M images for Score-CAM (0: none)")
    p.add_argument("--rd-n", type=int, default=200, help="the first images for RD@0.05 (CNN, ViT)")
    p.add_argument("--probe-rd-n", type=int, default=48, help="the first images for the probe's RD@0.05")
    p.add_argument("--models", default="cnn,vit,probe")
    p.add_argument("--layers", choices=("default", "all"), default="all")
    p.add_argument("--chunk", type=int, default=32)
    p.add_argument("--out", type=Path, default=Path("out/ablation"))
    p.add_argument("--no-plots", action="store_true")
    p.add_argument("--merge", action="store_true",
                   help="keep the rows of the models not run now from an existing DIR/ablation.json")
    args = p.parse_args(argv)
    args.models = [m for m in args.models.split(",") if m]
    path = args.out / "ablation.json"
    result = run(args, json.loads(path.read_text()) if args.merge and path.is_file() else None)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "ablation.json").write_text(json.dumps(result, indent=1))
    if not args.no_plots:
        plot_curves(result, args.out)
        plot_similarity(load_models(list(result["meta"]["accuracy"])), args.out)
    (args.out / "ablation.md").write_text(markdown(result), encoding="utf-8")
    print(f"wrote {path} ({len(result['rows'])} rows; seconds per model {result['meta']['wall_s']})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
