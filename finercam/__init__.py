"""finercam: Finer-CAM (CVPR 2025) for any PyTorch classifier, with a fast C core.

Finer-CAM explains ``y_c - gamma * mean_t y_t``, the target logit against visually similar
reference classes t, so that features shared with those classes cancel and the details that tell
them apart remain.
"""
__version__ = "0.1.0"

from . import kernels, metrics
from .explanation import Explanation
from .finer import FinerCAM
from .suggest import LayerSuggestion, suggest_layers
from .zeroshot import ZeroShotFinerCAM

__all__ = ["FinerCAM", "Explanation", "LayerSuggestion", "ZeroShotFinerCAM", "kernels", "metrics", "suggest_layers"]
