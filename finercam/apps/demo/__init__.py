"""``finercam demo``: the spot-the-difference benchmark end to end, as a self-contained HTML report.

For the three embedded models of :mod:`finercam.world.models` (the small CNN and the small ViT on
96 x 96 renders, and the linear probe on a frozen ImageNet EfficientNet-Lite0, the paper's setting,
on the same birds rendered at 224 x 224) and the base methods Grad-CAM, Layer-CAM and Score-CAM
(not for the probe: its 1,280 channels would cost 1,280 forwards at 224 x 224 per image), the demo
explains a seeded test set of the bird world (:mod:`finercam.world.datasets`; the probe a prefix
of it) once per method (one model call; every other setting is an ``Explanation.recombine``) and
writes:

* the paper's figures: Fig. 4 panels, Fig. 7 (one image against each of its top-3 references),
  Fig. 8 (a gamma sweep), Fig. 5 (deletion curves of the target and the second class), Fig. 1
  left (sorted classifier-weight similarity);
* the Table-1-style table (deletion AUC, RD@0.05, RD@0.1, energy in the object box "Loc.") plus
  two columns only a generated data set can give: the share of each map's energy inside the
  ground-truth discriminative region (the parts whose attributes differ between the target and
  its references) and the pointing game on that region; the single-reference (T = 1, nearest
  logit) and 3-reference (T = 3, the paper's default) settings are reported separately;
* ``results.json`` with every number of the tables.

Maps and scores come from :mod:`finercam.evaluation` (the rows, the metrics, the columns and the
table writer of ``finercam evaluate``); the demo adds the paired differences, the figures and
the prose. Targets are the true labels; references are the classes with the nearest logits (the
paper's rule); masked pixels are set to 0 (black) as in the metrics' default.

    finercam demo                 # >= 200 test images, the full report
    finercam demo --quick         # a few images, every figure (what CI runs)

The modules: :mod:`.plan` (models, settings, image counts), :mod:`.compute` (maps and scores),
:mod:`.figures`, :mod:`.tables`, :mod:`.text` (the prose) and :mod:`.command` (the page).
"""
from .plan import METHODS, add_arguments

__all__ = ["METHODS", "add_arguments", "run"]


def run(args) -> int:
    """Build the report (:func:`finercam.apps.demo.command.run`); returns 0."""
    # The command's modules (matplotlib, the figures) load when the demo runs, not when
    # `finercam --help` builds every command's options.
    from .command import run as run_demo

    return run_demo(args)
