"""An interactive view of an :class:`~finercam.explanation.Explanation`: one self-contained HTML file.

The page holds what :meth:`Explanation.recombine` needs, per image and per target layer, for
*every stored class*, and recombines in the browser (inline JavaScript, no network fetch): moving
the gamma slider, picking another target or other references among the stored classes, another
layer (or the fusion of all), the aggregation or the base method repaints the overlay without a
model call. What is embedded depends on the base method:

* **linear methods** (``gradcam``, ``xgradcam``, ``cam``, ``hirescam``, ``scorecam``): the weights
  of an objective ``o = sum_s c_s y_s`` are the same combination of the per-class weights, so the
  signed map of any objective, for any target and references among the S stored classes, is
  ``sum_s c_s M_s`` with one raw map per stored class, ``M_s = sum_k alpha^s_k A_k`` (for hirescam
  the per-class map ``sum_k G^s_k A_k``), computed in float64 and sent as two float32 arrays
  (``hi + lo``: 48 bits of mantissa), so that a map that is nearly flat after the classes cancel
  keeps its shape. Score-CAM's zero-input term (Eq. 9) adds ``- (sum_s p_s f(x_b)_s) sum_k A_k``,
  so its page also holds ``sum_k A_k`` (hi + lo) and the S zero-input logits. Every aggregation
  follows: ``mean`` = ``ReLU(M_c - gamma mean_t M_t)``, ``max`` = ``ReLU(max_t (M_c - gamma M_t))``,
  ``mean_after_relu`` = ``mean_t ReLU(M_c - gamma M_t)``.
* **layercam**, **gradcam++**: their weights are not linear in the gradient, so the page holds the
  activations ``A`` (K, h, w) and the per-class gradients ``G_s`` (S, K, h, w) at the layer's grid,
  and the browser evaluates the method's formula on ``g = sum_s c_s G_s`` as
  :func:`finercam.methods.signed_maps` does (any gamma is exact). This is the largest page:
  ``(S + 1) K h w`` floats per image and layer (about 2.7 MB for a 1,280-channel 7 x 7 layer with
  10 stored references).
* ``objective="pgc"`` explanations cannot be recombined (pgc's objective depends on all logits):
  the page holds their map and base map only and the controls other than "base method", layer
  and colour map are off.

Post-processing in the browser follows the C core (:mod:`finercam.kernels`): ReLU, half-pixel
bilinear resize to the input (``src = max((dst + 0.5) in / out - 0.5, 0)``, ``align_corners=False``),
min-max ``(u - min u) / (max u - min u + 1e-8)`` with an all-equal map becoming zeros; several
layers are averaged after their own min-max and min-maxed again (the "fusion", what
``Explanation.maps`` holds for several layers).

The page's scripting interface (``window.finercam``): ``set({image, target, references, gamma,
aggregate, layer, base, reverse, cmap, opacity})`` applies a state as the controls would,
``state()`` returns it (with ``correlation``: the Pearson r of the map with its base map, on the
input's H x W grid, :func:`finercam.diagnose.map_correlation`), ``map()`` returns ``{width,
height, data}``, ``data`` the current normalised map at the input's resolution, row-major; for the
explanation's own target it equals ``exp.recombine(gamma, references, aggregate, reverse).maps[image]``
(or ``exp.baseline()`` with ``base: true``), and for any target ``A`` among the stored classes
``FinerCAM(..., targets=A, references=...)`` at that gamma, within 1e-4. The state lives in the
URL fragment (opening the URL restores it); "download PNG" saves the overlay at the photo's size.

>>> import torch, finercam
>>> head = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(6, 5))
>>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 6, 5), torch.nn.ReLU(), head)
>>> page = to_html(finercam.FinerCAM(net, "1", candidates=10)(torch.rand(1, 3, 20, 20)), class_names=list("abcde"))
>>> page.startswith("<!DOCTYPE html>"), "window.finercam" in page, "http://" in page
(True, True, False)
"""
from .data import COLORMAPS, FUSED, LINEAR_METHODS, comparison_words, view_data
from .page import asset, page_html, repr_html, script, to_html, write_html

__all__ = ["COLORMAPS", "FUSED", "LINEAR_METHODS", "asset", "comparison_words", "page_html", "repr_html",
           "script", "to_html", "view_data", "write_html"]
