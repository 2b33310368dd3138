"""finercam: Finer-CAM (CVPR 2025) for any PyTorch classifier, with a fast C core.

Finer-CAM explains ``y_c - gamma * mean_t y_t``, the target logit against visually similar
reference classes t, so that features shared with those classes cancel and the details that tell
them apart remain. ``finercam.evaluate`` runs the paper's Table 1 on a model and data set
(:mod:`finercam.evaluation`, imported on first use).
"""
__version__ = "0.1.0"

from . import kernels, metrics
from .explanation import Explanation
from .finer import FinerCAM
from .zeroshot import ZeroShotFinerCAM

__all__ = ["FinerCAM", "Explanation", "ZeroShotFinerCAM", "evaluate", "kernels", "metrics"]


def __getattr__(name: str):
    # finercam.evaluate is the data-set runner; its package loads on first use, so that
    # `import finercam` stays as cheap as the engine itself.
    if name == "evaluate":
        from .evaluation import evaluate

        return evaluate
    raise AttributeError(f"module 'finercam' has no attribute {name!r}")
