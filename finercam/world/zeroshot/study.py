"""Measured versions of the paper's zero-shot figures, on the bird world with its part masks.

* :func:`prompt_localisation` (Fig. 2 and 12, measured): for prompts naming one part's colour
  ("a black wing"), the share of the map's energy inside that part's ground-truth mask, for the
  prompt alone (plain Grad-CAM of ``y_prompt``) and for the prompt compared with "a bird"
  (``y_prompt - gamma * y_bird``).
* :func:`examine_faithfulness` (Section 4.3, Appendix A.2): does a classifier's Finer map for
  class c against its most similar class d look where the zero-shot model's prompt-comparison maps
  for the attributes that tell c from d look? Agreement = Pearson correlation and overlap (IoU) of
  the top 10% regions. :func:`faithfulness_study` runs it over test images of the bird world.

Energy share of a map M >= 0 in a mask R: ``sum(M * R) / sum(M)``; a uniform map scores the mask's
area fraction, which is reported alongside as the chance level.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import torch

from ...zeroshot import ZeroShotFinerCAM
from ..datasets import birds, generate
from .captions import BIRD, attribute_prompt, discriminative_attributes
from .dual_encoder import DualEncoder, load_dual_encoder

__all__ = ["energy_share", "top_overlap", "correlation", "world_prompts", "zero_shot_cam",
           "prompt_localisation", "Faithfulness", "examine_faithfulness", "faithfulness_study"]

#: Parts whose colour prompts the localisation study asks for (all drawn parts).
STUDY_PARTS = ("body", "breast", "head", "crest", "eye", "beak", "wing", "tail")


def energy_share(maps: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """``sum(M * R) / sum(M)`` per map (NaN for an all-zero map); maps (N, H, W), masks (N, H, W).

    >>> energy_share(np.array([[[1.0, 3.0]], [[0.0, 0.0]]]), np.array([[[0, 1]], [[0, 1]]]))
    array([0.75,  nan])
    """
    m = np.asarray(maps, dtype=np.float64)
    r = np.asarray(masks, dtype=bool)
    total = m.sum(axis=(1, 2))
    inside = (m * r).sum(axis=(1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, inside / np.where(total > 0, total, 1.0), np.nan)


def _top_mask(m: np.ndarray, fraction: float) -> np.ndarray:
    flat = m.reshape(m.shape[0], -1)
    k = max(1, int(round(fraction * flat.shape[1])))
    order = np.argsort(-flat, axis=1, kind="stable")[:, :k]
    out = np.zeros_like(flat, dtype=bool)
    np.put_along_axis(out, order, True, axis=1)
    return out.reshape(m.shape)


def top_overlap(a: np.ndarray, b: np.ndarray, fraction: float = 0.1) -> np.ndarray:
    """IoU of the top-``fraction`` pixels of two map batches (stable ranks: ties to the lower index).

    ``k = max(1, round(fraction * H * W))`` pixels per map; ``|top_k(a) & top_k(b)| / |top_k(a) | top_k(b)|``.

    >>> a, b = np.array([[[4.0, 3.0, 2.0, 1.0]]]), np.array([[[1.0, 2.0, 3.0, 4.0]]])
    >>> top_overlap(a, b, 0.5), top_overlap(a, b, 0.75)      # {0,1} vs {3,2}; {0,1,2} vs {3,2,1}
    (array([0.]), array([0.5]))
    """
    ta, tb = _top_mask(np.asarray(a, np.float64), fraction), _top_mask(np.asarray(b, np.float64), fraction)
    inter = (ta & tb).sum(axis=(1, 2))
    union = (ta | tb).sum(axis=(1, 2))
    return inter / np.maximum(union, 1)


def correlation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson correlation per pair of maps (NaN where a map is constant):
    :math:`\\sum_x \\bar a(x) \\bar b(x) / \\sqrt{\\sum_x \\bar a(x)^2 \\sum_x \\bar b(x)^2}`,
    :math:`\\bar a = a - \\mathrm{mean}(a)`, over the pixels x of each map.

    >>> a = np.array([[[0.0, 1.0, 2.0]], [[1.0, 1.0, 1.0]]])
    >>> correlation(a, a[:, :, ::-1])
    array([-1.,  nan])
    """
    x = np.asarray(a, np.float64).reshape(len(a), -1)
    y = np.asarray(b, np.float64).reshape(len(b), -1)
    x = x - x.mean(1, keepdims=True)
    y = y - y.mean(1, keepdims=True)
    den = np.sqrt((x * x).sum(1) * (y * y).sum(1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (x * y).sum(1) / np.where(den > 0, den, 1.0), np.nan)


def world_prompts() -> List[str]:
    """"a bird" and every single-attribute prompt of the world ("a black wing", "a long tail").

    >>> prompts = world_prompts()
    >>> len(prompts), prompts[:3]
    (56, ['a bird', 'a brown tail', 'a forked tail'])
    """
    prompts = [BIRD]
    for attrs in birds.CLASS_PARTS:
        for part, (colour, shape) in attrs.items():
            prompts.append(attribute_prompt(part, "colour", colour))
            if len(birds.SHAPES[part]) > 1:
                prompts.append(attribute_prompt(part, "shape", shape))
    return list(dict.fromkeys(prompts))


def zero_shot_cam(model: Optional[DualEncoder] = None, prompts: Optional[Sequence[str]] = None,
                  **options: Any) -> ZeroShotFinerCAM:
    """A :class:`ZeroShotFinerCAM` on the tiny dual encoder over :func:`world_prompts`.

    >>> zs = zero_shot_cam(prompts=["a red crest", "a bird"])
    >>> type(zs).__name__, list(zs.prompts)
    ('ZeroShotFinerCAM', ['a red crest', 'a bird'])
    """
    model = load_dual_encoder() if model is None else model
    return ZeroShotFinerCAM(model.image_encoder, model.target_layer,
                            prompts=list(world_prompts() if prompts is None else prompts),
                            text_encoder=model.encode_text, tokenizer=model.tokenizer, scale=model.scale,
                            **options)


def prompt_localisation(model: Optional[DualEncoder] = None, n: int = 128, seed: int = 0,
                        split: str = "test", gamma: float = 0.6, method: str = "gradcam",
                        parts: Sequence[str] = STUDY_PARTS, batch: int = 64,
                        examples: int = 4) -> Dict[str, Any]:
    """Energy share inside a part's mask: the part's colour prompt alone vs compared with "a bird".

    For each of ``n`` generated images of class c and each part p visible in it, the prompt
    ``"a <colour of p in c> <p>"`` is explained twice from one model call: alone (gamma = 0, the
    plain base method) and against ``"a bird"`` (``y_prompt - gamma * y_bird``).

    Returns ``{"parts": {p: {"alone", "vs_bird", "area", "bird_alone", "bird_vs_bird", "count"}},
    "all": {...}, "gamma", "method", "n", "examples": [...]}`` with mean energy shares inside the
    part (``area``: mean mask area fraction, the share of a uniform map; ``bird_*``: the share
    inside the whole bird, all parts together) and, for figures, ``examples`` dicts holding the image
    (3, H, W), the two maps, the mask, the prompt and both shares.

    The share of a map :math:`L` inside a mask :math:`M` is
    :math:`\\sum_{x \\in M} L(x) / \\sum_x L(x)`.

    >>> r = prompt_localisation(n=4, batch=4, examples=0)
    >>> r["n"], sorted(r["parts"]["wing"])
    (4, ['alone', 'area', 'bird_alone', 'bird_vs_bird', 'count', 'vs_bird'])
    """
    # one reference ("a bird") per map: store no other prompt's weights
    zs = zero_shot_cam(model, method=method, gamma=gamma, num_references=1, candidates=1)
    keys = ("alone", "vs_bird", "area", "bird_alone", "bird_vs_bird")
    per_part: Dict[str, Dict[str, list]] = {p: {k: [] for k in keys} for p in parts}
    shown: List[Dict[str, Any]] = []
    for start in range(0, n, batch):
        b = generate(min(batch, n - start), seed=seed, split=split, start=start)
        x = torch.from_numpy(b.images)
        for p in parts:
            pi = birds.PARTS.index(p)
            masks = b.parts[:, pi]
            visible = masks.any(axis=(1, 2))
            if not visible.any():
                continue
            idx = np.flatnonzero(visible)
            prompts = [attribute_prompt(p, "colour", birds.CLASS_PARTS[int(b.labels[i])][p][0]) for i in idx]
            exp = zs.explain(x[idx], target=prompts, references=[BIRD])
            alone, versus = exp.baseline().maps, exp.maps
            s_alone, s_vs = energy_share(alone, masks[idx]), energy_share(versus, masks[idx])
            per_part[p]["alone"] += s_alone.tolist()
            per_part[p]["vs_bird"] += s_vs.tolist()
            per_part[p]["area"] += masks[idx].mean(axis=(1, 2)).tolist()
            whole = np.asarray(b.parts[idx].any(axis=1))
            per_part[p]["bird_alone"] += energy_share(alone, whole).tolist()
            per_part[p]["bird_vs_bird"] += energy_share(versus, whole).tolist()
            if len(shown) < examples and p in ("wing", "head", "breast", "tail"):
                j = int(len(shown) % len(idx))
                shown.append({"image": b.images[idx[j]], "prompt": prompts[j], "part": p,
                              "alone": alone[j], "vs_bird": versus[j], "mask": masks[idx[j]],
                              "alone_share": float(s_alone[j]), "vs_bird_share": float(s_vs[j])})
    summary = {p: {k: float(np.nanmean(v)) if v else float("nan") for k, v in d.items()} | {"count": len(d["alone"])}
               for p, d in per_part.items()}
    allv = {k: float(np.nanmean(sum((per_part[p][k] for p in parts), []))) for k in keys}
    allv["count"] = sum(s["count"] for s in summary.values())
    return {"parts": summary, "all": allv, "gamma": gamma, "method": method, "n": n, "examples": shown}


def _row_max(a: np.ndarray) -> np.ndarray:
    """Max over each row ignoring NaN; NaN for an all-NaN row (a constant map), without a warning."""
    filled = np.where(np.isnan(a), -np.inf, a).max(axis=1)
    return np.where(np.isfinite(filled), filled, np.nan)


@dataclass
class Faithfulness:
    """Agreement of a classifier's Finer maps with zero-shot attribute maps, per image.

    ``correlation`` and ``overlap`` (N, K): per image and attribute (NaN where an image has fewer
    than K attributes); ``best_*``: the best attribute per image; ``combined_*``: against the mean
    of an image's attribute maps; ``classifier_maps`` (N, H, W), ``attribute_maps`` (N, K, H, W).

    >>> nan = float("nan")
    >>> f = Faithfulness([["a red crest"], ["a red crest", "a black wing"]],
    ...                  correlation=np.array([[0.5, nan], [0.2, 0.8]]), overlap=np.zeros((2, 2)),
    ...                  combined_correlation=np.array([0.5, 0.6]), combined_overlap=np.zeros(2),
    ...                  classifier_maps=np.zeros((2, 4, 4)), attribute_maps=np.zeros((2, 2, 4, 4)),
    ...                  top_fraction=0.1)
    >>> f.best_correlation.tolist(), round(f.summary()["best_correlation"], 2)
    ([0.5, 0.8], 0.65)
    """

    prompts: List[List[str]]
    correlation: np.ndarray
    overlap: np.ndarray
    combined_correlation: np.ndarray
    combined_overlap: np.ndarray
    classifier_maps: np.ndarray
    attribute_maps: np.ndarray
    top_fraction: float
    extra: Dict[str, Any] = field(default_factory=dict)

    @property
    def best_correlation(self) -> np.ndarray:
        return _row_max(self.correlation)

    @property
    def best_overlap(self) -> np.ndarray:
        return _row_max(self.overlap)

    def summary(self) -> Dict[str, float]:
        """Means over images of the combined and best-attribute agreements."""
        return {"combined_correlation": float(np.nanmean(self.combined_correlation)),
                "combined_overlap": float(np.nanmean(self.combined_overlap)),
                "best_correlation": float(np.nanmean(self.best_correlation)),
                "best_overlap": float(np.nanmean(self.best_overlap)),
                "images": int(len(self.prompts))}


def examine_faithfulness(classifier_maps: np.ndarray, zeroshot: ZeroShotFinerCAM, images: torch.Tensor,
                         attribute_prompts: Sequence[Sequence[str]], reference: str = BIRD,
                         top_fraction: float = 0.1) -> Faithfulness:
    """Score a classifier's Finer maps against the zero-shot maps of the named attributes.

    ``classifier_maps`` (N, H, W): the classifier's Finer maps of each image's class against its
    most similar class (Eq. 5), e.g. ``finercam.FinerCAM(clf, layer)(images, targets=c,
    references=[[d] for d in most_similar]).maps``. ``attribute_prompts[i]``: the (up to 3)
    attributes that tell image i's class from that similar class, as prompts of ``zeroshot``;
    each is explained against ``reference`` ("a bird"), the paper's "ground truth" difference.
    :func:`faithfulness_study` runs it on the bird world; any classifier and zero-shot model work.

    >>> from finercam.world.datasets import generate
    >>> images = torch.from_numpy(generate(2, split="test").images)
    >>> zs = zero_shot_cam(prompts=["a red crest", "a black wing", "a bird"])
    >>> maps = np.random.default_rng(0).random((2, 96, 96))
    >>> f = examine_faithfulness(maps, zs, images, [["a red crest"], ["a red crest", "a black wing"]])
    >>> f.correlation.shape, f.attribute_maps.shape, bool(np.isnan(f.correlation[0, 1]))
    ((2, 2), (2, 2, 96, 96), True)
    """
    cls = np.asarray(classifier_maps, np.float32)
    n = len(attribute_prompts)
    if cls.ndim != 3 or cls.shape[0] != n or images.shape[0] != n:
        raise ValueError(f"classifier_maps must be (N, H, W) with N = len(attribute_prompts) = "
                         f"images.shape[0]; got {cls.shape}, {n} prompt lists, {images.shape[0]} images")
    if not (0 < top_fraction <= 1):
        raise ValueError(f"top_fraction must be in (0, 1], got {top_fraction}")
    k = max((len(p) for p in attribute_prompts), default=0)
    if k == 0:
        raise ValueError("attribute_prompts holds no prompt")
    H, W = cls.shape[1:]
    att = np.full((n, k, H, W), np.nan, np.float32)
    for j in range(k):
        idx = [i for i, p in enumerate(attribute_prompts) if len(p) > j]
        exp = zeroshot.explain(images[idx], target=[attribute_prompts[i][j] for i in idx], references=[reference])
        att[idx, j] = exp.maps
    corr = np.full((n, k), np.nan)
    ovl = np.full((n, k), np.nan)
    for j in range(k):
        idx = [i for i, p in enumerate(attribute_prompts) if len(p) > j]
        corr[idx, j] = correlation(cls[idx], att[idx, j])
        ovl[idx, j] = top_overlap(cls[idx], att[idx, j], top_fraction)
    with np.errstate(invalid="ignore"):
        combined = np.nanmean(att, axis=1)
    lo = combined.min(axis=(1, 2), keepdims=True)
    hi = combined.max(axis=(1, 2), keepdims=True)
    combined = (combined - lo) / (hi - lo + 1e-8)
    return Faithfulness([list(p) for p in attribute_prompts], corr, ovl, correlation(cls, combined),
                        top_overlap(cls, combined, top_fraction), cls, att, top_fraction)


def faithfulness_study(classifier: Optional[torch.nn.Module] = None, target_layer: Any = None,
                       model: Optional[DualEncoder] = None, n: int = 128, seed: int = 0, split: str = "test",
                       method: str = "gradcam", gamma: float = 0.6, batch: int = 64,
                       top_fraction: float = 0.1) -> Dict[str, Any]:
    """The faithfulness examination over ``n`` test images of the bird world (Appendix A.2).

    For each image of class c: d = the classifier's nearest-logit class (its most similar class for
    this image); the classifier's Finer map of c against d; the zero-shot maps of the up-to-3
    attributes c has and d lacks, each against "a bird"; their agreement. As a control, the same
    scores against the zero-shot map of the body-colour prompt, a trait siblings share. Also the
    energy share of both kinds of map inside the ground-truth discriminative region.

    ``classifier``/``target_layer`` default to the embedded CNN (``finercam.world.models.load("cnn")``).

    >>> r = faithfulness_study(n=4, batch=4)
    >>> r["images"], sorted(r)[:3]
    (4, ['attributes', 'control_body', 'example'])
    """
    import finercam

    from ..datasets import discriminative_mask

    if classifier is None:
        from .. import models

        classifier = models.load("cnn")
        target_layer = target_layer if target_layer is not None else classifier.default_target_layer
    if target_layer is None:
        raise ValueError("target_layer is required with a user classifier")
    zs = zero_shot_cam(model, method=method, gamma=gamma, num_references=1, candidates=1)
    cam = finercam.FinerCAM(classifier, target_layer, method=method, gamma=gamma, num_references=1,
                            candidates=1)
    results, controls, gt_cls, gt_zs, pairs = [], [], [], [], []
    for start in range(0, n, batch):
        b = generate(min(batch, n - start), seed=seed, split=split, start=start)
        x = torch.from_numpy(b.images)
        labels = b.labels.tolist()
        exp = cam(x, targets=labels)
        similar = exp.references[:, 0].tolist()
        prompts = [[attribute_prompt(*f) for f in discriminative_attributes(c, d)] for c, d in zip(labels, similar, strict=True)]
        keep = [i for i, p in enumerate(prompts) if p]
        if not keep:
            continue
        res = examine_faithfulness(exp.maps[keep], zs, x[keep], [prompts[i] for i in keep],
                                   top_fraction=top_fraction)
        body = [[attribute_prompt("body", "colour", birds.CLASS_PARTS[labels[i]]["body"][0])] for i in keep]
        ctrl = examine_faithfulness(exp.maps[keep], zs, x[keep], body, top_fraction=top_fraction)
        region = np.stack([discriminative_mask(b.parts[i], labels[i], similar[i]) for i in keep])
        gt_cls += energy_share(exp.maps[keep], region).tolist()
        gt_zs += energy_share(np.nanmean(res.attribute_maps, axis=1), region).tolist()
        results.append(res)
        controls.append(ctrl)
        pairs += [(labels[i], similar[i]) for i in keep]
    cat = lambda key, rs: np.concatenate([getattr(r, key) for r in rs])  # noqa: E731
    out = {
        "images": len(pairs),
        "sibling_share": float(np.mean([birds.CLASS_FAMILY[c] == birds.CLASS_FAMILY[d] for c, d in pairs])),
        "attributes": {"combined_correlation": float(np.nanmean(cat("combined_correlation", results))),
                       "combined_overlap": float(np.nanmean(cat("combined_overlap", results))),
                       "best_correlation": float(np.nanmean(np.concatenate([r.best_correlation for r in results]))),
                       "best_overlap": float(np.nanmean(np.concatenate([r.best_overlap for r in results])))},
        "control_body": {"correlation": float(np.nanmean(cat("combined_correlation", controls))),
                         "overlap": float(np.nanmean(cat("combined_overlap", controls)))},
        "region_share": {"classifier": float(np.nanmean(gt_cls)), "zero_shot": float(np.nanmean(gt_zs))},
        "top_fraction": top_fraction, "gamma": gamma, "method": method,
        "example": {"classifier_map": results[0].classifier_maps[0], "attribute_maps": results[0].attribute_maps[0],
                    "prompts": results[0].prompts[0], "pair": pairs[0]} if results else None,
    }
    return out
