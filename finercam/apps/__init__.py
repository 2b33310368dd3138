"""The applications built on the engine: the command line, the demo, the runners and the report.

* :mod:`finercam.apps.cli`: ``finercam demo | evaluate | explain | train | zeroshot``.
* :mod:`finercam.apps.demo`: the embedded benchmark and its HTML report.
* :mod:`finercam.apps.explain`: ``finercam explain``, maps for image files.
* :mod:`finercam.apps.inputs`: models by name, class names, labels and preprocessing options,
  shared by explain and evaluate.
* :mod:`finercam.apps.evaluate`: the data-set runner (the paper's Table 1): resume, shards.
* :mod:`finercam.apps.report`, :mod:`finercam.apps.viz`: the HTML report and the figures.

Nothing in the engine (:mod:`finercam`) or the bird world (:mod:`finercam.world`) imports these.
"""
