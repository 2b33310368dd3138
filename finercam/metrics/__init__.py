"""Evaluation metrics: the paper's (relative confidence drop, deletion, energy pointing game) and
the ones users of explanation metrics ask for beside them (insertion, ROAD, sanity checks).

All masking follows one rule. The pixels of a map are ranked by decreasing value, ties to the
lower flat index (row-major); "masking the top k pixels" replaces those k pixels, in every channel
of the model's input as given (normalised or not), by the baseline:

* a number (default ``0.0``): that constant;
* ``"mean"``: the image's own mean of each channel;
* ``"blur"``: the image blurred by a Gaussian of ``BLUR_SIGMA`` pixels (edges replicated);
* an array or tensor broadcastable to the images.

Probabilities are ``softmax`` of the model's logits, computed in float64; the logits are read from
the model's output as FinerCAM reads them (:func:`finercam.capture.extract_logits`). The ranking and the
construction of every masked copy happen in the C core (:func:`finercam.kernels.mask_top`): all
fractions or steps of a group of images are written in one call into one preallocated buffer,
which is then forwarded in chunks of ``batch_size`` rows. Masked inputs go through float32.

Definitions (exact; see ``docs/metrics.md``):

* ``count(f) = ceil(f * H * W)``, the product first rounded to 6 decimals so that ``0.1 * 100`` is
  10 and not 11, and at least 1;
* relative drop (Eq. 10): ``RD = (p_c - p*_c) - (p_d - p*_d)``;
* confidence drop (Fig. 6b bars): ``p_c - p*_c``;
* deletion: step ``k = 0..steps`` masks ``ceil(k * H * W / steps)`` pixels (integer arithmetic);
  AUC = trapezoid of ``p_c`` over the deleted fraction ``k / steps`` in [0, 1];
* energy in mask ("Loc."): ``sum(map inside) / sum(map)``, NaN for an all-zero map;
* insertion: the same counts of top-ranked pixels put back into the blurred image; AUC as deletion;
* pointing game: the map's top-ranked pixel lies in the mask (optionally within a tolerance);
* ROAD (:mod:`finercam.metrics.road_scores`): the removed pixels are imputed by the noisy linear
  imputation of Rong et al. (solved in the C core) instead of a baseline;
* sanity checks (:mod:`finercam.metrics.sanity`): model-parameter randomisation (Adebayo et al.).

The protocol of every metric (what is removed, in what order, the direction, how it differs from
pytorch-grad-cam, Quantus and the paper) is ``docs/metrics.md``.

The model is used as given: no mode change, no hooks, forwards under ``torch.no_grad()``. Put it
in ``eval()`` mode first if it has dropout or batch norm.
"""
from __future__ import annotations

from ._masking import BLUR_SIGMA, BUFFER_BYTES, baseline_values, deletion_counts, nearest_logit_class, top_count
from .confidence import (
    Deletion,
    Insertion,
    confidence_drop,
    deletion_auc,
    evaluate_maps,
    insertion_auc,
    relative_drop,
)
from .localisation import TORCHRAY_TOLERANCE, boxes_to_masks, energy_in_mask, pointing_game
from .road_scores import ROAD, ROAD_FRACTIONS, ROAD_NOISE, road, road_combined, road_lerf, road_masks, road_morf
from .sanity import (
    Randomisation,
    cam_explainer,
    edge_explainer,
    model_blocks,
    randomisation_test,
    randomise_blocks,
    spearman,
)

__all__ = [
    "relative_drop", "confidence_drop", "deletion_auc", "insertion_auc", "energy_in_mask",
    "pointing_game", "boxes_to_masks", "nearest_logit_class", "evaluate_maps", "Deletion", "Insertion",
    "top_count", "deletion_counts", "baseline_values", "BLUR_SIGMA", "BUFFER_BYTES", "TORCHRAY_TOLERANCE",
    "road", "road_morf", "road_lerf", "road_combined", "road_masks", "ROAD", "ROAD_FRACTIONS", "ROAD_NOISE",
    "randomisation_test", "Randomisation", "model_blocks", "randomise_blocks", "spearman", "cam_explainer",
    "edge_explainer",
]
