"""``finercam zeroshot --faithfulness --data cub:ROOT``: the faithfulness examination on CUB (App. A.2).

For each of the first ``n`` images of the split (class ``c``): the classifier's most similar class
``d`` (its nearest logit) and its Finer map of ``c`` against ``d`` (Eq. 5, one reference); the
top-3 attributes by class-attribute difference
(:func:`finercam.evaluation.faithfulness.discriminative_attributes`); their prompts explained by the zero-shot model against "a bird";
the agreement of the two kinds of map (Pearson correlation and top-10 % overlap,
:func:`finercam.world.zeroshot.study.examine_faithfulness`, the same scores as the bird world's
study). The zero-shot model is the embedded dual encoder unless ``--clip PKG:FACTORY`` names a
factory ``f(prompts) -> ZeroShotFinerCAM`` (e.g. around :func:`finercam.zeroshot.from_huggingface`).

Both models see the same part of each photo: the zero-shot image is the classifier's crop region
resized to the zero-shot input, and the classifier's map is resized to that size before scoring.
"""
from __future__ import annotations

from typing import Any, Dict, Optional

import numpy as np
import torch

__all__ = ["cub_faithfulness"]

#: CLIP's input convention, used for a ``--clip`` model.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def cub_faithfulness(data: str, classifier: str, layer: Optional[str] = None, *, n: int = 128,
                     method: str = "gradcam", gamma: float = 0.6, batch: int = 16, clip: Optional[str] = None,
                     weights: Optional[str] = None, top_fraction: float = 0.1) -> Dict[str, Any]:
    """The examination over the first ``n`` images of ``data`` (a ``cub:ROOT[:split]`` spec) for the
    ``classifier`` (a ``--model`` value: ``probe:FILE``, ``cnn``, ...); returns the mean agreements,
    the image count and one example."""
    from ..evaluation.datasets import CUB, View, resize_view
    from ..evaluation.faithfulness import BIRD_PROMPT, attribute_prompt
    from ..finer import FinerCAM
    from . import inputs
    from .common import UsageError

    # --layer, else the classifier's own, else the first suggested (inputs.with_layer); one
    # target layer here: the first when the classifier names several
    found = inputs.with_layer(inputs.load_model(classifier), layer)
    layer = found.layer[0] if isinstance(found.layer, list) else found.layer
    root, split, names, matrix, ds = _open_cub(data, found)
    prompts_all = list(dict.fromkeys([attribute_prompt(a) for a in names] + [BIRD_PROMPT]))
    zs, zs_size, zs_mean, zs_std = _zero_shot_model(clip, prompts_all, method, gamma, weights)
    zs_view = resize_view(zs_size, zs_mean, zs_std)
    # the zero-shot image is the classifier's crop region at the zero-shot input size
    zs_ds = CUB(root, split, view=View(lambda photo: zs_view.transform(photo.crop(found.crop(*photo.size))), found.crop))
    cam = FinerCAM(found.model, layer, method=method, gamma=gamma, num_references=1, candidates=1)
    found.model.eval()
    results, pairs = [], []
    count = min(int(n), len(ds))
    for lo in range(0, count, batch):
        found_batch = _examine_batch(cam, ds, zs_ds, zs, zs_size, names, matrix, range(lo, min(count, lo + batch)),
                                     top_fraction)
        if found_batch is not None:
            results.append(found_batch[0])
            pairs += found_batch[1]
    if not results:
        raise UsageError("no image had an attribute that tells its class from its most similar class")
    cat = lambda key: np.concatenate([getattr(r, key) for r in results])  # noqa: E731
    return {"images": len(pairs), "data": data, "classifier": classifier, "method": method, "gamma": gamma,
            "top_fraction": top_fraction, "zero_shot": clip or "embedded dual encoder",
            "attributes": {"combined_correlation": float(np.nanmean(cat("combined_correlation"))),
                           "combined_overlap": float(np.nanmean(cat("combined_overlap"))),
                           "best_correlation": float(np.nanmean(cat("best_correlation"))),
                           "best_overlap": float(np.nanmean(cat("best_overlap")))},
            "example": {"pair": list(pairs[0]), "prompts": results[0].prompts[0]}}


def _open_cub(data: str, found) -> tuple:
    """``(root, split, attribute names, class-attribute matrix, the data set in the classifier's
    view)``, each problem a one-line UsageError naming ``--data`` or ``--classifier``."""
    from ..evaluation.datasets import CUB, DataFormatError, View, class_attributes, parse_spec
    from .common import UsageError

    try:
        name, root, split = parse_spec(data)
    except ValueError as e:
        raise UsageError(f"--data: {e}") from None
    if name != "cub":
        raise UsageError(f"--faithfulness --data needs CUB's class attributes (cub:ROOT), got {name}")
    try:
        names, matrix = class_attributes(root)
        ds = CUB(root, split, view=View(found.transform, found.crop))
    except DataFormatError as e:
        raise UsageError(f"--data: {e}") from None
    if found.class_names is not None and len(found.class_names) != ds.num_classes:
        raise UsageError(f"--classifier has {len(found.class_names)} classes, CUB {ds.num_classes}: "
                         "train it on this data set (finercam probe --data cub:ROOT)")
    return root, split, names, matrix, ds


def _zero_shot_model(clip: Optional[str], prompts: list, method: str, gamma: float, weights: Optional[str]) -> tuple:
    """``(zero-shot explainer, input size, mean, std)``: ``--clip``'s factory, else the embedded
    dual encoder (which knows only the bird world's words)."""
    from ..world.zeroshot.study import zero_shot_cam
    from . import inputs
    from .common import UsageError

    if clip is not None:
        factory = inputs.import_object(clip, "--clip")
        return factory(prompts), 224, CLIP_MEAN, CLIP_STD
    from ..world.zeroshot.dual_encoder import load_dual_encoder

    try:
        zs = zero_shot_cam(load_dual_encoder(weights), prompts=prompts, method=method, gamma=gamma,
                           num_references=1, candidates=1)
    except ValueError as e:  # words the embedded encoder never saw: real CUB needs a CLIP
        raise UsageError(f"the embedded dual encoder cannot read CUB's attribute prompts ({e}); "
                         "give --clip PKG:FACTORY") from None
    return zs, 96, (0.0,) * 3, (1.0,) * 3


def _examine_batch(cam, ds, zs_ds, zs, zs_size: int, names, matrix, idx: range, top_fraction: float):
    """One batch: the classifier's Finer maps against its nearest class, the discriminative
    attributes' zero-shot maps, their agreement; ``None`` when no image has such an attribute."""
    import torch.nn.functional as F

    from ..evaluation.faithfulness import BIRD_PROMPT, attribute_prompt, discriminative_attributes
    from ..world.zeroshot.study import examine_faithfulness

    x = torch.stack([ds[i][0] for i in idx])
    labels = [int(ds.samples[i].label) for i in idx]
    exp = cam(x, targets=labels)
    similar = [int(r) for r in exp.references[:, 0]]
    chosen = [discriminative_attributes(matrix, c, d) for c, d in zip(labels, similar, strict=True)]
    keep = [j for j, a in enumerate(chosen) if a]
    if not keep:
        return None
    maps = F.interpolate(torch.from_numpy(np.asarray(exp.maps, np.float32))[keep, None], size=(zs_size, zs_size),
                         mode="bilinear", align_corners=False)[:, 0].numpy()
    x_zs = torch.stack([zs_ds[idx[j]][0] for j in keep])
    res = examine_faithfulness(maps, zs, x_zs, [[attribute_prompt(names[a]) for a in chosen[j]] for j in keep],
                               reference=BIRD_PROMPT, top_fraction=top_fraction)
    return res, [(ds.class_names[labels[j]], ds.class_names[similar[j]]) for j in keep]
