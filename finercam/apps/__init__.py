"""The applications built on the engine: the command line, the demo, the runners and the report.

* :mod:`finercam.apps.cli`: ``finercam demo | evaluate | explain | train | zeroshot``.
* :mod:`finercam.apps.demo`: the embedded benchmark and its HTML report (its numbers through
  :mod:`finercam.evaluation`).
* :mod:`finercam.apps.explain`: ``finercam explain``, maps for image files.
* :mod:`finercam.apps.inputs`: models by name, class names, labels and preprocessing options,
  shared by explain and evaluate.
* :mod:`finercam.apps.evaluate`: ``finercam evaluate``, the command line of
  :func:`finercam.evaluate` (the data-set runner, :mod:`finercam.evaluation`).
* :mod:`finercam.apps.report`, :mod:`finercam.apps.viz`: the HTML report and the figures.

Nothing in the engine (:mod:`finercam`) or the bird world (:mod:`finercam.world`) imports these.
"""
