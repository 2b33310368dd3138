"""The applications built on the engine: the ``finercam`` command, one module per command.

* :mod:`finercam.apps.cli`: ``finercam app | demo | evaluate | explain | train | zeroshot``, one
  table of command modules; :mod:`finercam.apps.common`: ``UsageError`` (a user's error, printed
  as one line) and the helpers every command shares.
* :mod:`finercam.apps.explain` (and :mod:`finercam.apps.explain_panel`): ``finercam explain``,
  maps for image files.
* :mod:`finercam.apps.inputs`: models by name and preprocessing options;
  :mod:`finercam.apps.classes`: class names and classes given by name; both shared by explain,
  evaluate and the app.
* :mod:`finercam.apps.evaluate`: ``finercam evaluate``, the command line of
  :func:`finercam.evaluate` (the data-set runner, :mod:`finercam.evaluation`).
* :mod:`finercam.apps.demo`: the embedded benchmark and its HTML report (its numbers through
  :mod:`finercam.evaluation`).
* :mod:`finercam.apps.app`: the local web app; :mod:`finercam.apps.train_command` and
  :mod:`finercam.apps.zeroshot_command`: ``finercam train`` and ``finercam zeroshot``.

The figures (:mod:`finercam.viz`), the HTML report (:mod:`finercam.report`) and image reading
(:mod:`finercam.images`) belong to the engine. Nothing outside this package imports it but
``python -m finercam`` (``tests/test_layout.py`` checks it).
"""
